#pragma once
// RegistryStore: the hub's model registry (issue 4) — models and their versions with lineage,
// signed releases, channel documents (current, pending approval, history), deployments with their
// history, gateways with their one-time registration tokens and reported inventories.
//
// Written once over SqlDatabase (store/sql.hpp), so it runs on SQLite and PostgreSQL alike; its
// tables are the "registry" component's migrations. It stores what the hub has already checked
// (signatures are verified by the hub before anything reaches here) and enforces, inside each
// transaction, what must hold against concurrent writers: a release's counter above the model's
// others, a channel version above the current one, a registration token used once, a deployment
// leaving a final state never.
//
// Documents and JSON values are kept as text. Times are Unix seconds, given by the caller.
// Errors: kNotFound for what does not exist; kAlreadyExists for a conflict with what is stored
// (the hub's 409); kInvalidArgument for a request that contradicts stored facts (the hub's 422);
// kIo for the database. Thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace airlock::store {

struct ModelVersionRecord {
  std::string model;
  std::string version;
  std::string repository;    // the OCI repository it was pushed to
  std::string index_digest;  // "sha256:…"
  std::uint64_t index_size = 0;
  nlohmann::json platforms = nlohmann::json::array();  // ["linux/amd64", …]
  std::string description;
  nlohmann::json lineage = nlohmann::json::object();  // training_run, dataset_digest, …
  std::string pushed_by;
  std::int64_t pushed_at = 0;
};

struct ModelSummary {
  std::string name;
  std::string description;  // of its newest version
  std::int64_t versions = 0;
  std::string latest;                           // newest version pushed; "" when none
  std::map<std::string, std::string> channels;  // channel → its current release's version
  std::int64_t updated_at = 0;
};

struct ReleaseRecord {
  std::string model;
  std::string version;
  std::uint64_t release_counter = 0;
  std::string id;        // trust::ReleaseId, "sha256:…"
  std::string index_digest;
  std::string document;  // the signed release document (canonical text)
  std::int64_t signatures = 0;
  std::string uploaded_by;
  std::int64_t uploaded_at = 0;
};

struct ChannelRecord {
  std::string model;
  std::string channel;
  std::uint64_t version = 0;
  std::string current_release;  // the version string of releases[0]
  std::string document;         // the signed channel document; "" in history listings
  std::int64_t signatures = 0;
  std::string updated_by;
  std::int64_t updated_at = 0;
};

struct ChannelState {
  std::optional<ChannelRecord> current;
  std::optional<ChannelRecord> pending;  // a proposal below the signing threshold
  std::vector<ChannelRecord> history;    // every version that was current, newest first
};

struct DeploymentEvent {
  std::int64_t at = 0;
  std::string actor;
  std::string action;  // "created", "cancelled", …
  std::string detail;
};

struct DeploymentRecord {
  std::string id;
  std::string model;
  std::string channel;
  std::uint64_t channel_version = 0;
  std::string release_version;
  std::string release_id;
  nlohmann::json gateways = nlohmann::json::array();  // gateway names
  nlohmann::json selector = nlohmann::json::object();
  nlohmann::json strategy = nlohmann::json::object();
  std::string state;
  std::string created_by;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
  std::vector<DeploymentEvent> history;  // oldest first; filled by GetDeployment only
  // Paused from the hub (POST …/pause): the gateways start no new wave of its rollouts until it
  // is resumed. A flag beside the state, which follows the deliveries (docs/decisions.md).
  bool paused = false;
  std::int64_t paused_changed_at = 0;  // when it was last paused or resumed; 0: never
};

// The states a deployment never leaves: cancelled (by a person), complete (every delivery
// available), failed (every delivery over, and not all of them available).
inline const std::set<std::string>& FinalDeploymentStates() {
  static const std::set<std::string> states = {"cancelled", "complete", "failed"};
  return states;
}

// One delivery of a deployment to one gateway (docs/delivery.md): the hub orchestrator's record,
// kept as the JSON of delivery::Delivery (this store does not interpret it), with the columns the
// queries need beside it.
struct DeliveryRow {
  std::string id;          // "dlv-…"
  std::string deployment;  // "dep-…"
  std::string gateway;
  std::string state;   // the record's state, for listings
  bool final = false;  // the record's state is final: the orchestrator is done with it
  std::string record;  // delivery::Delivery::ToJson, compact
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

struct GatewayRecord {
  std::string id;
  std::string name;
  nlohmann::json labels = nlohmann::json::object();
  std::string token_name;  // its access token's name in the auth store
  std::int64_t registered_at = 0;
  std::optional<std::int64_t> last_seen;
  std::int64_t devices = 0;  // in its last inventory
};

struct InventoryRecord {
  std::string gateway;
  std::int64_t reported_at = 0;
  nlohmann::json devices = nlohmann::json::array();
};

// How many of each thing the registry holds, for the hub's /metrics.
struct RegistryCounts {
  std::map<std::string, std::int64_t> deployments;  // by state ("pending", "delivering", …)
  std::map<std::string, std::int64_t> deliveries;   // by state ("offered", "available", …)
  // The deliveries not yet final, by target gateway and state (what each gateway still owes).
  std::map<std::pair<std::string, std::string>, std::int64_t> active_deliveries;
  std::vector<std::string> gateways;  // the registered gateways' names, in order
};

class RegistryStore {
 public:
  // Applies the registry component's migrations. db must outlive the store.
  [[nodiscard]] static Result<std::unique_ptr<RegistryStore>> Open(SqlDatabase& db,
                                                                   std::int64_t now);

  // ---- models and versions ----
  // Whether version may be (re)pushed with this index: kAlreadyExists when it has a release for
  // another index (a released version is immutable).
  [[nodiscard]] Status CheckVersionPush(std::string_view model, std::string_view version,
                                        std::string_view index_digest);
  // Creates or updates the version (and the model).
  [[nodiscard]] Status RecordVersion(const ModelVersionRecord& v);
  // Models by name; only those whose name, description, versions or lineage contain query
  // (case-insensitive) when it is not empty.
  [[nodiscard]] Result<std::vector<ModelSummary>> ListModels(std::string_view query);
  // Newest first. kNotFound for an unknown model.
  [[nodiscard]] Result<std::vector<ModelVersionRecord>> ListVersions(std::string_view model);
  [[nodiscard]] Result<ModelVersionRecord> GetVersion(std::string_view model,
                                                      std::string_view version);

  // ---- releases ----
  // Stores a release of a pushed version. The same release again (same id) replaces the stored
  // document when it has more signatures (*created = false). kInvalidArgument when the version
  // was not pushed or its index differs; kAlreadyExists when the version has another release or
  // the counter is not above every other release's of the model.
  [[nodiscard]] Result<ReleaseRecord> PutRelease(const ReleaseRecord& r, bool* created);
  [[nodiscard]] Result<std::vector<ReleaseRecord>> ListReleases(std::string_view model);
  [[nodiscard]] Result<ReleaseRecord> GetRelease(std::string_view model, std::string_view version);
  // The release with this id; kNotFound when the model has none.
  [[nodiscard]] Result<ReleaseRecord> GetReleaseById(std::string_view model, std::string_view id);

  // ---- channels ----
  [[nodiscard]] Result<ChannelState> GetChannel(std::string_view model, std::string_view channel);
  // The current document of every channel of model.
  [[nodiscard]] Result<std::vector<ChannelRecord>> ListChannels(std::string_view model);
  // Makes c the current document (and history), dropping proposals it supersedes.
  // kAlreadyExists when its version is not above the current one.
  [[nodiscard]] Status SetChannel(const ChannelRecord& c);
  // Stores c as the pending proposal, replacing an earlier one. kAlreadyExists when its version
  // is not above the current one.
  [[nodiscard]] Status ProposeChannel(const ChannelRecord& c);

  // ---- deployments ----
  // d.history holds the first event(s). kAlreadyExists for a used id.
  [[nodiscard]] Status CreateDeployment(const DeploymentRecord& d);
  // Newest first; filtered by model and state when they are not empty. Without history.
  [[nodiscard]] Result<std::vector<DeploymentRecord>> ListDeployments(std::string_view model,
                                                                      std::string_view state);
  [[nodiscard]] Result<DeploymentRecord> GetDeployment(std::string_view id);
  // Moves the deployment to state and appends event — unless its state is one of final
  // (kAlreadyExists naming the state). Returns it with its history.
  [[nodiscard]] Result<DeploymentRecord> TransitionDeployment(std::string_view id,
                                                              std::string_view state,
                                                              const DeploymentEvent& event,
                                                              const std::set<std::string>& final);

  // ---- deliveries ----
  // Pauses (paused) or resumes the deployment and appends event, in one transaction. kNotFound
  // for an unknown id; kAlreadyExists, saying why, when its state is one of ended or it is
  // paused already (pausing) or not paused (resuming).
  [[nodiscard]] Result<DeploymentRecord> SetDeploymentPaused(std::string_view id, bool paused,
                                                             const DeploymentEvent& event,
                                                             const std::set<std::string>& ended);
  // Stores new deliveries (all of one deployment) and appends events to that deployment's
  // history, in one transaction. kAlreadyExists when a delivery id, or a (deployment, gateway)
  // pair, is taken.
  [[nodiscard]] Status CreateDeliveries(const std::vector<DeliveryRow>& rows,
                                        const std::vector<DeploymentEvent>& events);
  // Replaces a delivery's state and record (its id, deployment and gateway never change) and
  // appends event, if any, to its deployment's history. kNotFound for an unknown id.
  [[nodiscard]] Status UpdateDelivery(const DeliveryRow& d,
                                      const std::optional<DeploymentEvent>& event);
  // The deliveries of deployment ("" for every deployment), by deployment and gateway; only the
  // non-final ones when active_only.
  [[nodiscard]] Result<std::vector<DeliveryRow>> ListDeliveries(std::string_view deployment,
                                                                bool active_only);
  [[nodiscard]] Result<DeliveryRow> GetDelivery(std::string_view id);

  // ---- gateways ----
  [[nodiscard]] Status AddRegistrationToken(std::string_view hash, std::string_view created_by,
                                            std::int64_t created_at, std::int64_t expires_at);
  // Uses the registration token with this hash (once, unexpired at g.registered_at) and records
  // the gateway. kNotFound / kInvalidArgument (used or expired) for the token; kAlreadyExists for
  // a name in use.
  [[nodiscard]] Status RegisterGateway(std::string_view token_hash, const GatewayRecord& g);
  [[nodiscard]] Result<std::vector<GatewayRecord>> ListGateways();
  [[nodiscard]] Result<GatewayRecord> GetGateway(std::string_view name);
  // Replaces the gateway's inventory and marks it seen at `at`.
  [[nodiscard]] Status PutInventory(std::string_view name, const nlohmann::json& devices,
                                    std::int64_t at);
  [[nodiscard]] Result<InventoryRecord> GetInventory(std::string_view name);

  // ---- counts ----
  // Deployments and deliveries by state, and registered gateways, read in one transaction (a
  // few GROUP BY queries, whatever the number of rows).
  [[nodiscard]] Result<RegistryCounts> Counts();

 private:
  explicit RegistryStore(SqlDatabase& db) : db_(db) {}
  SqlDatabase& db_;
};

}  // namespace airlock::store
