#pragma once
// The hub's delivery orchestrator (DESIGN §1 step 4, §6 "Delivery"; docs/delivery.md,
// "The orchestrator"): one persisted delivery per deployment × target gateway, driven by the pure
// state machine of src/delivery over MQTT.
//
// It creates the deliveries of a new deployment, subscribes to every gateway's ready, reject and
// status topics, turns each strictly parsed message into an event, applies it, stores the next
// record (RegistryStore::UpdateDelivery), and only then performs the actions: publish an offer
// (with the release document and the bytes per platform), pre-sign and publish a grant (exactly
// the blobs of the platforms the gateway asked for, relative URLs from AccessControl::PresignBlob),
// publish a cancel, keep the delivery's timer. It rolls each deployment's state up from its
// deliveries (pending → delivering → complete | failed) and records both in the deployment's
// history.
//
// Threads: one worker runs everything above, one event at a time for all deliveries (which
// serialises the events of each); MQTT handlers and the registry API only hand it work through a
// queue and never block. The worker also keeps the timers: it wakes at the earliest one, and at
// least every second, so a Clock that jumps (tests) is noticed. On start it loads every non-final
// delivery, creates the missing deliveries of deployments that have none yet (a hub stopped, or
// without a broker, when they were made), cancels the live deliveries of cancelled deployments,
// and on every (re)connect to the broker performs delivery::ResumeActions for each: a restarted
// hub resumes every delivery where it was.
//
// One orchestrator per metadata database: hubs sharing a PostgreSQL database must configure a
// broker on one of them only. Thread-safe: the public methods may be called from any thread.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <variant>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/protocol.hpp"
#include "delivery/state_machine.hpp"
#include "hub/access.hpp"
#include "net/mqtt.hpp"
#include "store/metadata_store.hpp"
#include "store/registry_store.hpp"

namespace airlock::hub {

// What the registry API tells the orchestrator about deployments. The calls only queue work.
class DeploymentObserver {
 public:
  virtual ~DeploymentObserver() = default;
  // The deployment was stored: deliver it to its gateways.
  virtual void DeploymentCreated(std::string_view id) = 0;
  // The deployment was cancelled: cancel its live deliveries and its rollouts at every one of its
  // gateways (the gateways are told).
  virtual void DeploymentCancelled(std::string_view id, std::string_view reason) = 0;
  // The deployment was paused or resumed (its stored flag says which): its gateways are told.
  virtual void DeploymentPauseChanged(std::string_view /*id*/) {}
  // What the gateways last reported of the deployment's device rollouts (gw/{gw}/fleet): one
  // object per gateway that has one, its summary with "gateway" and "reported_at" added.
  virtual nlohmann::json Fleet(std::string_view /*deployment*/) const {
    return nlohmann::json::array();
  }
};

// One blob of a package.
struct PackageBlob {
  Digest digest = Digest::FromHex(std::string(64, '0'));
  std::uint64_t size = 0;
  std::string media_type;
};

// What a package is made of, read from the hub's manifests: its index, and per platform the
// blobs that platform needs (its manifest, config and layers).
struct PackagePlan {
  std::string repository;
  PackageBlob index;
  std::map<std::string, std::vector<PackageBlob>> platforms;  // "linux/amd64" → blobs
  std::uint64_t total_size = 0;  // the index and every distinct blob of every platform

  // The bytes one platform needs, the index included; 0 for a platform the package lacks.
  std::uint64_t PlatformSize(const std::string& platform) const;
  // The index and the distinct blobs of platforms; kNotFound naming a platform the package lacks.
  [[nodiscard]] Result<std::vector<PackageBlob>> BlobsFor(
      const std::vector<std::string>& platforms) const;
};

// Reads the index and its manifests from the repository's manifests in meta. kNotFound for a
// missing manifest, kCorrupt for an index or manifest that is not one.
[[nodiscard]] Result<PackagePlan> PlanPackage(store::MetadataStore& meta,
                                              std::string_view repository,
                                              const Digest& index_digest,
                                              std::string_view index_media_type);

// The rollout command a deployment's gateways must have heard last, from its stored record:
// cancel when it is cancelled, else pause or resume when it was ever paused; nullopt otherwise.
// Its message id is made from the deployment, the command and the time of the change, so that a
// command sent again (after a restart, a reconnect) is the same message and a gateway that already
// took it drops it; sent_at is the time of the change.
std::optional<delivery::RolloutCommand> RolloutCommandOf(const store::DeploymentRecord& d,
                                                         std::string_view gateway);

// A deployment's state from its deliveries' states: "complete" when all are available, "failed"
// when all are final and not all available, "delivering" once any gateway was granted (or is
// done), else "pending". Empty: "pending".
std::string RollUpDeployment(const std::vector<delivery::DeliveryState>& deliveries);

class DeliveryOrchestrator final : public DeploymentObserver {
 public:
  struct Options {
    std::string prefix = std::string(delivery::Topics::kDefaultPrefix);
    delivery::Policy policy;
  };
  // Everything passed in must outlive the orchestrator. kInvalidArgument for a bad prefix or
  // policy.
  [[nodiscard]] static Result<std::unique_ptr<DeliveryOrchestrator>> Create(
      Options options, net::MqttClient& mqtt, store::RegistryStore& registry,
      store::MetadataStore& meta, AccessControl& access, const Clock& clock);
  // Stops (see Stop).
  ~DeliveryOrchestrator() override;
  DeliveryOrchestrator(const DeliveryOrchestrator&) = delete;
  DeliveryOrchestrator& operator=(const DeliveryOrchestrator&) = delete;

  // Subscribes to the gateways' topics and starts the worker (which then loads and resumes the
  // stored deliveries). kIo when the broker refuses the subscriptions.
  [[nodiscard]] Status Start();
  // Joins the worker once it finished the event in hand. What is still queued is dropped, and
  // so is what the broker delivers until the connection closes: the deliveries' timers and
  // ResumeActions at the next start recover from that (receivers are idempotent). The
  // subscriptions are kept, so that the broker's persistent session holds what the gateways
  // send while the hub is away. Idempotent.
  void Stop();

  void DeploymentCreated(std::string_view id) override;
  void DeploymentCancelled(std::string_view id, std::string_view reason) override;
  void DeploymentPauseChanged(std::string_view id) override;
  // Kept in memory, per gateway, as the latest retained gw/{gw}/fleet said: the broker gives a
  // restarted hub the retained reports again.
  nlohmann::json Fleet(std::string_view deployment) const override;
  // Checks the timers now (after a test moved its clock).
  void Wake();

  // ---- for /metrics; any thread ----
  // The latest fleet report of each gateway that sent one (gw/{gw}/fleet), by gateway.
  std::map<std::string, delivery::FleetReport> FleetReports() const;
  // Work waiting for the worker (gateways' messages, deployments created or cancelled).
  std::size_t QueueDepth() const;
  // Work dropped because the queue was full (the deliveries' timers recover from it).
  std::uint64_t DroppedWork() const;

  const delivery::Policy& policy() const { return options_.policy; }

 private:
  struct Received {  // a message from a gateway
    net::MqttMessage message;
  };
  struct Created {
    std::string deployment;
  };
  struct Cancelled {
    std::string deployment;
    std::string reason;
  };
  struct PauseChanged {
    std::string deployment;
  };
  struct Connected {};  // (re)connected to the broker: resume every delivery
  struct Loaded {};     // first item: load the stored deliveries
  using Work = std::variant<Received, Created, Cancelled, PauseChanged, Connected, Loaded>;

  // The queue between the handlers and the worker; shared with the MQTT client's handlers, which
  // may outlive a Stop by a moment.
  struct Inbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Work> items;
    std::uint64_t dropped = 0;  // items refused because the queue was full
    bool closed = false;
    bool wake = false;
    void Push(Work w);
  };

  // What a delivery needs from its deployment; cached per deployment.
  struct Package {
    store::DeploymentRecord deployment;
    trust::SignedDocument release;
    PackagePlan plan;
    // The channel's current document, when there is one: it lists the deployment's release, or
    // the gateway and its devices refuse it (a channel that moved on to another release).
    std::optional<trust::SignedDocument> channel;
  };

  DeliveryOrchestrator(Options options, delivery::Topics topics, net::MqttClient& mqtt,
                       store::RegistryStore& registry, store::MetadataStore& meta,
                       AccessControl& access, const Clock& clock);

  void Run();
  void Do(Work& work);
  void Load();
  void ResumeAll();
  void StartDeployment(const std::string& id);
  void CancelDeployment(const std::string& id, const std::string& reason);
  // Publishes the deployment's latest rollout command (RolloutCommandOf) to each of its gateways.
  void SendRolloutCommand(const std::string& id);
  // SendRolloutCommand for every deployment whose command a gateway may still lack: the paused
  // or resumed ones that have not ended, and those cancelled in the last day.
  void ResendRolloutCommands();
  void OnMessage(const net::MqttMessage& m);
  void FireTimers();
  // Applies event to the live delivery id: persist, then act, then roll up its deployment.
  void Handle(const std::string& id, const delivery::Event& event);
  void Perform(const delivery::Delivery& d, const std::vector<delivery::Action>& actions);
  void PublishOffer(const delivery::Delivery& d, const delivery::Action& a);
  void PublishGrant(const delivery::Delivery& d, const delivery::Action& a);
  void PublishCancel(const delivery::Delivery& d, const delivery::Action& a);
  [[nodiscard]] Status Publish(delivery::TopicKind kind, const delivery::Delivery& d,
                               const nlohmann::json& payload);
  void RollUp(const std::string& deployment);
  [[nodiscard]] Result<std::shared_ptr<const Package>> PackageOf(const std::string& deployment);
  [[nodiscard]] Result<delivery::Envelope> NewEnvelope();
  double Jitter();
  std::int64_t NowSeconds() const;

  const Options options_;
  const delivery::Topics topics_;
  net::MqttClient& mqtt_;
  store::RegistryStore& registry_;
  store::MetadataStore& meta_;
  AccessControl& access_;
  const Clock& clock_;
  const std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  std::vector<std::string> filters_;
  std::thread worker_;
  std::mutex lifecycle_mu_;  // Start / Stop

  mutable std::mutex fleet_mu_;
  std::map<std::string, delivery::FleetReport, std::less<>> fleet_;  // by gateway
  bool started_ = false;

  // The worker's own state (no lock: only the worker touches it).
  std::map<std::string, delivery::Delivery> live_;  // non-final deliveries by id
  std::map<std::string, TimePoint> timers_;         // by delivery id
  std::map<std::string, std::shared_ptr<const Package>> packages_;  // by deployment id
  std::unordered_set<std::string> seen_messages_;   // message ids, for dropping repeats
  std::deque<std::string> seen_order_;
  std::mt19937_64 random_{std::random_device{}()};
};

}  // namespace airlock::hub
