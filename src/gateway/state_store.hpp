#pragma once
// GatewayStateStore: what a gateway remembers across restarts (DESIGN §6, §7): one record per
// delivery the hub offered it (the offer, what the gateway answered, the grant it works from,
// progress, the operator's decisions), the operators' API tokens (hashed), the enrolled devices,
// what each device last reported and was last directed to, and the rollouts. SQLite in the data
// directory (gateway.db, component "gateway_state"), next to the cache's own index.
//
// A delivery record is stored as one JSON document per id (DeliveryRecord::ToJson), written
// whole on every change: records are small and changed a handful of times each.
//
// Thread-safe (SqliteDatabase serialises); every method blocks on the disk. Another process (the
// `airlock-gateway token create` command) may open the same file while the gateway runs.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/encoding.hpp"  // RandomHex
#include "core/result.hpp"
#include "core/time.hpp"
#include "store/sqlite_database.hpp"

namespace airlock::gateway {

// Where the gateway is with one delivery. Each state says what the gateway answered last, so
// that a repeated offer or grant is answered the same way.
enum class DeliveryPhase {
  kHeld,         // "held": the offer passed the checks; waiting for an operator (offers: operator)
  kReady,        // "ready": answered ready; waiting for a grant
  kRejected,     // "rejected": answered reject (reason in `reason`; operator included). Final.
  kDownloading,  // "downloading": working from grant `attempt`
  kFailed,       // "failed": attempt `attempt` failed (`failure`); a higher grant resumes it
  kAvailable,    // "available": in the cache, complete and pinned. Final.
  kCancelled,    // "cancelled": the hub cancelled it; nothing more is sent. Final.
};
const char* DeliveryPhaseName(DeliveryPhase phase);
std::optional<DeliveryPhase> ParseDeliveryPhase(std::string_view name);

// The operator's say over one delivery (docs/gateway.md, "Approvals").
enum class Approval {
  kNone,             // "none": nothing to decide (auto policies, or not yet at that point)
  kOfferPending,     // "offer-pending": a held offer waits for a decision
  kOfferApproved,    // "offer-approved": the download may go ahead
  kRolloutPending,   // "rollout-pending": delivered; waits before any device rollout
  kRolloutApproved,  // "rollout-approved": devices may get it (by an operator or policy)
  kRejected,         // "rejected": an operator said no (to the offer or to the rollout)
};
const char* ApprovalName(Approval approval);
std::optional<Approval> ParseApproval(std::string_view name);

struct DeliveryRecord {
  std::string id;
  std::string deployment;
  std::string model;
  std::string version;
  nlohmann::json offer;  // the latest offer as received (delivery::DeliveryOffer::ToJson)
  DeliveryPhase phase = DeliveryPhase::kHeld;
  std::vector<std::string> platforms;  // what the gateway wants (its ready)
  std::string reason;                  // the reject reason name, when rejected
  std::string message;                 // the reject message, or the failure's
  std::string failure;                 // the failure code name, when failed
  std::uint32_t attempt = 0;           // the grant worked from (0: none yet)
  nlohmann::json grant;                // that grant (DeliveryGrant::ToJson), null before one
  std::string repository;              // in the cache, once known (from the grant's URLs)
  // Where it came from: "" for the hub (over MQTT), else "bundle FILE, exported from URL at T"
  // for an air-gapped import.
  std::string source;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  Approval approval = Approval::kNone;
  std::string decided_by;  // the operator token's name
  std::string comment;
  TimePoint decided_at{};
  TimePoint created_at{};
  TimePoint updated_at{};

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryRecord> FromJson(const nlohmann::json& j);
};

// An operator's API token as stored: only the SHA-256 of the secret.
struct OperatorToken {
  std::string name;
  std::string hash;  // hex SHA-256 of the token
  TimePoint created_at{};
};

// What a token made by `airlock-gateway token create` may do.
enum class TokenScope {
  kOperator,  // "operator": every /api/v1/ route (approvals, devices, rollouts, imports), /metrics
  kMetrics,   // "metrics": GET /metrics only, for a Prometheus server (docs/decisions.md)
  kViewer,    // "viewer": every GET of /api/v1/ and /metrics; no action (the console's watchers)
};
const char* TokenScopeName(TokenScope scope);
std::optional<TokenScope> ParseTokenScope(std::string_view name);

// Who a token is.
struct TokenHolder {
  std::string name;
  TokenScope scope = TokenScope::kOperator;
};

// How many of each thing the store holds, for /metrics.
struct StateCounts {
  std::map<std::string, std::int64_t> deliveries;  // by DeliveryPhaseName
  std::int64_t offers_pending = 0;    // held offers waiting for an operator (offer-pending)
  std::int64_t rollouts_pending = 0;  // delivered, waiting for an operator (rollout-pending)
  std::int64_t devices_enrolled = 0;  // not revoked
  std::int64_t devices_revoked = 0;
  std::int64_t devices_online = 0;  // enrolled (not revoked), and the last online message said so
};

// Labels of a device: "line" → "3", … (docs/rollout.md, "Enrollment").
using Labels = std::map<std::string, std::string>;
inline constexpr std::size_t kMaxDeviceLabels = 32;

// An enrollment token as the gateway keeps it: never the token, only its hash, whose first 12 hex
// digits name it (in the console, and to withdraw it).
struct EnrollmentTokenRecord {
  std::string id;
  Labels labels;
  TimePoint created_at{};
  TimePoint expires_at{};
  std::string used_by;  // the device it enrolled; "" while unused
};
// The id of an enrollment token.
std::string EnrollmentTokenId(std::string_view token);

// An enrolled device as the gateway keeps it (docs/rollout.md, "Enrollment").
struct DeviceRecord {
  std::string id;  // "dev-" + 16 hex, made by the gateway
  Labels labels;
  std::string cert_serial;  // of the certificate it was given
  TimePoint cert_not_after{};
  std::string mqtt_password_hash;  // hex SHA-256 of its broker password
  std::optional<TimePoint> revoked_at;
  TimePoint enrolled_at{};
};

// What a device last said on dev/{dev}/state and dev/{dev}/online (docs/gateway.md, "Rolling out
// to devices"). A device that never spoke has the defaults.
struct DeviceStateRecord {
  std::string device;
  nlohmann::json state;   // the last delivery::DeviceState taken (its ToJson); null before one
  std::uint64_t seq = 0;  // its seq: a report must be above it to be taken
  bool online = false;
  std::optional<TimePoint> last_seen;  // the last state or online message taken

  // The models its state names: [{"model", "phase", "active_version"}], empty before a state.
  nlohmann::json Models() const;
};

// What the gateway last directed a device to (the fleet service's, docs/gateway.md).
struct DeviceDirectiveRecord {
  std::string device;
  std::uint64_t version = 0;  // of the last directive signed for it; 0 before the first
  // The device's desired state over all models: {model: {"deployment": "dep-…", "active":
  // {"version", "release"}, "shadow": {…}}} ("active" and "shadow" each optional), the latest
  // direction any rollout gave it for that model.
  nlohmann::json desired = nlohmann::json::object();
  std::string message;  // the last DirectiveMessage published (JSON); "" before one, or revoked
};

// A rollout as stored: its record (gateway::Rollout::ToJson) and the order rollouts started in.
struct StoredRollout {
  std::string deployment;
  std::string model;
  std::uint64_t started = 0;  // 1 for the first rollout this gateway started, then 2, …
  nlohmann::json record;
};

// The latest command the hub sent about a deployment's rollout here (gw/{gw}/rollout/command):
// kept so that a rollout started after it (the package was still downloading, or awaiting
// approval) starts paused, or cancelled, and so that older and repeated commands are dropped.
struct HubCommandRecord {
  std::string deployment;
  std::string command;  // "pause", "resume", "cancel" (delivery::RolloutCommandKindName)
  std::string reason;
  std::string message_id;
  TimePoint sent_at;  // the hub's
  TimePoint received_at;
};

class GatewayStateStore {
 public:
  // Opens (creating) gateway.db in dir and applies its migrations.
  [[nodiscard]] static Result<std::unique_ptr<GatewayStateStore>> Open(
      const std::filesystem::path& dir, TimePoint now);

  // kNotFound when the gateway never heard of id.
  [[nodiscard]] Result<DeliveryRecord> Get(std::string_view id);
  // Inserts or replaces the record of r.id.
  [[nodiscard]] Status Put(const DeliveryRecord& r);
  // Every record, newest first.
  [[nodiscard]] Result<std::vector<DeliveryRecord>> List();

  // Makes a token "alkop_" + 64 hex for name with scope (kAlreadyExists when the name is taken)
  // and stores its hash; returns the token, which is not kept.
  [[nodiscard]] Result<std::string> CreateToken(std::string_view name, TimePoint now,
                                                TokenScope scope = TokenScope::kOperator);
  // Whose the token is and what it may do, or kVerification when it is unknown.
  [[nodiscard]] Result<TokenHolder> CheckToken(std::string_view token);

  // Deliveries by phase, the approvals waiting, devices by state: a few GROUP BY queries in one
  // transaction, whatever the number of rows.
  [[nodiscard]] Result<StateCounts> Counts();

  // ---- devices ----
  // Makes a one-time enrollment token "alken_" + 64 hex, valid until expires, whose device gets
  // labels; stores its hash and returns the token, which is not kept.
  [[nodiscard]] Result<std::string> CreateEnrollmentToken(const Labels& labels, TimePoint expires,
                                                          TimePoint now);
  // Every enrollment token, newest first.
  [[nodiscard]] Result<std::vector<EnrollmentTokenRecord>> EnrollmentTokens();
  // Deletes the unused token named id, so that no device can enroll with it. kNotFound when no
  // unused token has that id (unknown, or used already: a used token is kept as a record).
  [[nodiscard]] Status WithdrawEnrollmentToken(std::string_view id);
  // Consumes token and records the device that make returns (given the token's labels), in one
  // transaction: two enrollments racing with one token get one device. kVerification saying
  // whether the token is unknown, used or expired; make's own error as it is.
  [[nodiscard]] Result<DeviceRecord> Enroll(
      std::string_view token, const std::function<Result<DeviceRecord>(const Labels&)>& make,
      TimePoint now);
  // Every device, enrolled first first.
  [[nodiscard]] Result<std::vector<DeviceRecord>> Devices();
  // kNotFound for an unknown id.
  [[nodiscard]] Result<DeviceRecord> Device(std::string_view id);
  // Marks the device revoked (once: a second revoke keeps the first time). kNotFound for an
  // unknown id.
  [[nodiscard]] Status RevokeDevice(std::string_view id, TimePoint now);
  // Removes the keys in remove, then sets those in set, in one transaction; the labels after.
  // kNotFound for an unknown id, kInvalidArgument when it would have over kMaxDeviceLabels.
  [[nodiscard]] Result<Labels> UpdateDeviceLabels(std::string_view id, const Labels& set,
                                                  const std::vector<std::string>& remove);

  // ---- what devices report, and what they are directed to (migration 3) ----
  // The device's record, the defaults when it never spoke.
  [[nodiscard]] Result<DeviceStateRecord> DeviceState(std::string_view id);
  // Every device that ever spoke.
  [[nodiscard]] Result<std::vector<DeviceStateRecord>> DeviceStates();
  // Stores state with seq when seq is above the stored one (in one transaction, so that a replay
  // racing a newer report cannot win); false, storing nothing, when it is not.
  [[nodiscard]] Result<bool> PutDeviceState(std::string_view id, std::uint64_t seq,
                                            const nlohmann::json& state, TimePoint now);
  [[nodiscard]] Status SetDeviceOnline(std::string_view id, bool online, TimePoint now);
  // The defaults (version 0, nothing desired) for a device never directed.
  [[nodiscard]] Result<DeviceDirectiveRecord> DeviceDirective(std::string_view id);
  [[nodiscard]] Status PutDeviceDirective(const DeviceDirectiveRecord& r);

  // ---- rollouts (migration 3) ----
  // Inserts (numbered after every earlier rollout) or replaces the record of deployment.
  [[nodiscard]] Status PutRollout(std::string_view deployment, std::string_view model,
                                  const nlohmann::json& record, TimePoint updated_at);
  // Every rollout, in the order they started.
  [[nodiscard]] Result<std::vector<StoredRollout>> Rollouts();

  // ---- the hub's rollout commands (migration 5) ----
  // The latest kept for deployment; nullopt when the hub sent none.
  [[nodiscard]] Result<std::optional<HubCommandRecord>> HubCommand(std::string_view deployment);
  // Inserts or replaces the deployment's command.
  [[nodiscard]] Status PutHubCommand(const HubCommandRecord& r);

 private:
  explicit GatewayStateStore(std::unique_ptr<store::SqliteDatabase> db) : db_(std::move(db)) {}
  std::unique_ptr<store::SqliteDatabase> db_;
};

}  // namespace airlock::gateway
