#pragma once
// FleetService: the gateway's side of its devices (docs/gateway.md, "Rolling out to devices";
// docs/rollout.md §5-6). It runs one rollout engine (rollout.hpp) per deployment and does what
// the engine asks:
//
//   dev/{dev}/state, dev/{dev}/online ──► stored (gateway.db) ──► DeviceReport / DeviceOnline
//   delivery available + approved     ──► StartRollout (a newer deployment of the same model
//                                          cancels the older rollout if it still runs; the
//                                          hub's stored command may start it paused)
//   gw/{gw}/rollout/command (hub)     ──► stored, then Pause / Resume / Cancel of its rollout
//   Direct         ──► the device's desired state over ALL models, signed as its next directive,
//                      published retained on dev/{dev}/directive, then DirectiveSent
//   PublishSummary ──► every rollout's FleetSummary, retained on the cloud broker's gw/{gw}/fleet
//   ScheduleTimer  ──► Tick at that time
//   enrolled / relabelled / revoked device ──► DeviceAdded / DeviceRemoved (revoked: its retained
//                      directive is cleared)
//
// Every engine step is written to the store before its actions are performed, and each directive
// (with the device's new version and desired state) before it is published, so a gateway killed
// at any point resumes: Start re-sends the directions whose directive may not have gone out
// (ResumeActions) and re-arms the timers.
//
// The desired state: for each model, the latest direction any rollout of that model gave the
// device, kept per device in the store, so that a directive for model B keeps model A's entry.
// Each entry names a channel document that lists its release (the offer's channel of some
// available delivery of the model, verified against the pinned root; the newest such document),
// the release document, and the package (the delivery's repository in this gateway's registry).
// An entry for which no channel document or no release document is known is logged and left out.
//
// Messages and hooks only queue work (they never block: Paho's thread calls OnDeviceMessage); one
// worker thread does the work in order. The operator's calls (Pause, Resume, Cancel, the
// getters) run on the caller's thread under the same lock as the worker. Thread-safe. The store
// must outlive the service; the destructor stops the worker.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"
#include "gateway/rollout.hpp"
#include "gateway/state_store.hpp"
#include "trust/directive.hpp"
#include "trust/documents.hpp"

namespace airlock::gateway {

struct FleetServiceOptions {
  std::string gateway;                       // our name, for gw/{gw}/fleet
  std::string device_prefix = "airlock/v1";  // the factory broker's topics: PREFIX/dev/{dev}/…
  std::string hub_prefix = "airlock/v1";     // the cloud broker's: PREFIX/gw/{gw}/fleet
  std::chrono::seconds directive_life{30 * 24 * 3600};  // how long a signed directive is valid
  // The site's capture policy, sent to every device in its directives (none: capture nothing).
  std::optional<trust::CapturePolicy> capture;
  // The rotations of the gateway's root since the root it was installed with (trust/root_store),
  // sent to the devices in every directive. At start, a device whose last directive carried
  // fewer gets its directive renewed with them (the same entries, a new version).
  std::vector<trust::SignedDocument> root_rotations;
  // Called (on the worker) after a device's state or online report was stored: the inventory
  // the hub is told of follows it.
  std::function<void(const std::string& device)> on_device_report;
};

// Publishes one message at QoS 1, retained or not; an error when the broker did not take it.
using FleetPublisher =
    std::function<Status(const std::string& topic, const std::string& payload, bool retained)>;

// What /metrics says of the fleet service.
struct FleetStats {
  std::map<RolloutState, std::size_t> rollouts;  // every rollout here, by state
  DeviceCounts devices;    // the devices of the running and paused rollouts, added up
  std::size_t queued = 0;  // work waiting for the worker (device messages, hooks, commands)
};

class FleetService {
 public:
  // to_devices publishes on the factory broker, to_hub on the cloud broker. kInvalidArgument for
  // an invalid gateway name or topic prefix.
  [[nodiscard]] static Result<std::unique_ptr<FleetService>> Create(
      FleetServiceOptions options, trust::Root root, GatewayStateStore& store,
      PrivateKey directive_key, FleetPublisher to_devices, FleetPublisher to_hub,
      const Clock& clock);
  ~FleetService();
  FleetService(const FleetService&) = delete;
  FleetService& operator=(const FleetService&) = delete;

  // Starts the worker, which first loads the stored rollouts, resumes them, publishes the fleet
  // summary and starts the rollouts of deliveries approved while no rollout was made for them.
  void Start();
  // Stops the worker (queued work is dropped: it is redone from the store at the next Start).
  // Idempotent.
  void Stop();

  // ---- queue only; any thread ----
  // A message on PREFIX/dev/{dev}/state or …/online.
  void OnDeviceMessage(const std::string& topic, const std::string& payload);
  // A delivery stored available and approved (DeliveryService's hook).
  void OnDeliveryApproved(const std::string& delivery_id);
  // The hub cancelled a delivery of deployment (DeliveryService's hook): its rollout here is
  // cancelled too (devices are left as they are, as when the operator cancels it).
  void OnDeploymentCancelled(const std::string& deployment, const std::string& reason);
  // A message on the cloud broker's gw/{gw}/rollout/command (delivery::RolloutCommand): the hub
  // pauses, resumes or cancels its deployment. Checked strictly (the topic and the payload's
  // gateway must be ours); a refused one is logged and changes nothing. The latest command per
  // deployment is stored first, then applied to the deployment's rollout when there is one; a
  // rollout started later starts paused (pause) or is cancelled at once (cancel). A command older
  // than the stored one, or a repeat of it, is dropped.
  void OnHubCommand(const std::string& topic, const std::string& payload);
  // A device enrolled, was relabelled or revoked (the devices API).
  void OnDeviceChanged(const std::string& device);
  // The factory broker connection came (back): directions that could not be published go now.
  void OnDevicesConnected();

  // ---- the operator's; blocking ----
  // Every rollout, in the order they started.
  [[nodiscard]] std::vector<Rollout> Rollouts();
  // kNotFound for a deployment with no rollout here.
  [[nodiscard]] Result<Rollout> Get(const std::string& deployment);
  enum class Command { kPause, kResume, kCancel };
  // The rollout after the command; kNotFound, or kInvalidArgument saying why the command does
  // not apply (pausing a paused rollout, anything on a finished one).
  [[nodiscard]] Result<Rollout> Control(const std::string& deployment, Command command,
                                        const std::string& by);

  // Work items done so far (for tests).
  std::uint64_t handled() const;
  // For /metrics; blocking (it waits for the work in hand, as the operator's calls do).
  [[nodiscard]] FleetStats Stats();

 private:
  FleetService(FleetServiceOptions options, trust::Root root, GatewayStateStore& store,
               PrivateKey directive_key, FleetPublisher to_devices, FleetPublisher to_hub,
               const Clock& clock, delivery::DeviceTopics device_topics,
               delivery::Topics hub_topics);

  void Enqueue(std::function<void()> job);
  Result<Rollout> ControlLocked(const std::string& deployment, Command command,
                                const std::string& by);
  void WorkerLoop();

  // ---- under mu_ ----
  void Load();
  void StartDueRollouts();
  void StartRollout(const DeliveryRecord& record);
  // Persists the step and performs its actions; false when it was not applied or not stored.
  bool Run(Step step);
  void Perform(const std::string& deployment, const std::vector<Action>& actions);
  // Signs and publishes the device's directive for the Direct action; its version, or nullopt
  // when nothing was published.
  std::optional<std::uint64_t> Direct(const Rollout& rollout, const Action& action);
  // Builds record's next directive (build gets its version), stores it, then publishes it
  // (retained). The version, or nothing (logged, with why: what asked for it) when any step failed.
  using MessageBuilder = std::function<Result<delivery::DirectiveMessage>(std::uint64_t version)>;
  std::optional<std::uint64_t> SignAndPublish(DeviceDirectiveRecord& record, const std::string& why,
                                              const MessageBuilder& build);
  // A new directive, with the root rotations, to every directed device whose last one lacked some.
  void AnnounceRootRotations();
  void PublishFleet();
  void HandleDeviceMessage(const std::string& topic, const std::string& payload);
  void HandleDeviceChanged(const std::string& device);
  void HandleHubCommand(const std::string& topic, const std::string& payload);
  void Resume();
  void FireTimers();
  // The rollout each model's events go to: the one started last for it.
  std::vector<std::string> CurrentRollouts();
  std::vector<DeviceInfo> DeviceInfos(const std::string& model);
  Result<delivery::DirectiveMessage> BuildDirective(const std::string& device,
                                                    std::uint64_t version,
                                                    const nlohmann::json& desired);

  const FleetServiceOptions options_;
  const trust::Root root_;
  GatewayStateStore& store_;
  const PrivateKey directive_key_;
  const FleetPublisher to_devices_;
  const FleetPublisher to_hub_;
  const Clock& clock_;
  const delivery::DeviceTopics device_topics_;
  const delivery::Topics hub_topics_;

  std::mutex mu_;                               // the rollouts and everything done with them
  std::map<std::string, Rollout> rollouts_;     // by deployment
  std::vector<std::string> started_;            // deployments, in the order they started
  std::map<std::string, std::string> current_;  // model → its current rollout's deployment

  mutable std::mutex queue_mu_;  // taken after mu_ when both are held
  std::condition_variable queue_cv_;
  std::deque<std::function<void()>> queue_;
  std::map<std::string, TimePoint> timers_;  // deployment → when Tick is due
  bool stopping_ = false;
  std::thread worker_;
  std::atomic<std::uint64_t> handled_{0};
};

}  // namespace airlock::gateway
