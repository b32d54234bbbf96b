#pragma once
// The gateway's rollout engine (DESIGN §6 "Rollout", docs/rollout.md §6), one per deployment on
// this gateway, as a pure function like delivery::Apply: Apply(rollout, event, inputs) returns the
// next record and the actions the gateway must perform. Nothing here reads a clock, signs,
// publishes or stores anything; the caller persists the returned record, then performs the
// actions (docs/rollout-strategies.md says what the strategy means to a user).
//
//   running ──pause──► paused ──resume──► running ──last wave done──► complete
//      │                  │
//      └──────────────────┴──failures ≥ threshold──► aborted (updated devices directed back)
//   running / paused ──cancel──► cancelled (devices left as they are)
//
// The rollout starts running (or paused, when the hub paused the deployment before it started):
// the gateway creates it once the package is available and approved.
// At the start the selected devices are split into waves, online devices first, then by id: wave
// i ends at the cumulative size strategy.waves[i] resolves to (a percentage of the selected
// devices rounded up, a count capped), never smaller than the wave before, and the last wave takes
// every remaining device. Within the current wave at most max_in_flight online devices are being
// updated (directed, activating or shadowing) at once; the next are directed as those finish. A
// device is done when it has been active on the target for health_window. A wave is done when
// each of its devices is done, failed, or offline: an offline device is directed all the same
// (without taking a slot), its retained directive brings it up to date when it returns, and it
// does not hold the rollout back. When the last wave is done the rollout is complete.
//
// Each device's status, in order:
//   pending ─► [shadowing ─►] directed ─► activating ─► health-window ─► done
//                    └────────────┴────────────┴─────────────┴─► failed (directed back)
//   after an abort: directed … done ─► rolling-back ─► rolled-back
// A device that fails counts against failure_threshold; when the failures reach it the rollout
// aborts and every device that was directed to the target and has not failed is directed back to
// what it ran before (to nothing for this model if it ran nothing); pending devices get nothing.
//
// Final states: complete, aborted and cancelled never change again and start nothing new. A
// complete rollout still follows its stragglers (an offline device that returns and activates,
// a device that joins: each goes its own way to done or failed, without aborting anything), and
// an aborted one follows its devices back to rolled-back; a cancelled one ignores everything.
//
// Directive versions: a Direct action carries this device's direction number; the caller signs a
// directive with the device's next version and gives it back with DirectiveSent before applying
// any other event to this rollout. Reports that refer to an older directive version, or arrive
// before the direction is sent, are stale. Idempotent by construction: an event that does not
// apply (a repeat, a stale report, anything after a final state) is ignored: Step::applied is
// false, the record is returned unchanged and Step::note says why. Apply never fails. Plain
// values and free functions; thread-compatible.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "core/rollout_strategy.hpp"
#include "core/time.hpp"
#include "delivery/device_protocol.hpp"

namespace airlock::gateway {

// A release of the rollout's model, as directives name it.
struct ReleaseRef {
  std::string version;  // delivery::ValidVersion
  std::string release;  // the release document's digest, "sha256:…"
  bool operator==(const ReleaseRef&) const = default;
};

// What the deployment asks for: which devices and how (core/rollout_strategy.hpp has the rules).
struct RolloutPlan {
  Selector selector;
  RolloutStrategy strategy;
  bool operator==(const RolloutPlan&) const = default;

  // From the deployment's "selector" and "strategy" objects (absent strategy keys take their
  // defaults); kInvalidArgument naming the field.
  [[nodiscard]] static Result<RolloutPlan> FromDeployment(const nlohmann::json& selector,
                                                          const nlohmann::json& strategy);
};

enum class RolloutState {
  kRunning,    // directing devices wave by wave
  kPaused,     // directing no one new; devices already directed carry on, failures still count
  kComplete,   // final: the last wave is done
  kAborted,    // final: failures reached the threshold; devices were directed back (reason)
  kCancelled,  // final: cancelled (reason); devices were left as they were
};
const char* RolloutStateName(RolloutState state);  // "running", "paused", …
std::optional<RolloutState> ParseRolloutState(std::string_view name);
bool IsFinal(RolloutState state);

enum class DeviceStatus {
  kPending,       // not directed yet: its wave has not come, or it waits for a slot
  kShadowing,     // directed to run the target in shadow beside what it runs (the shadow gate)
  kDirected,      // directed to run the target active; no report on that directive yet
  kActivating,    // reports a phase of activating the target (downloading … validating)
  kHealthWindow,  // active on the target since health_until - health_window; being watched
  kDone,          // active on the target for a whole health window
  kFailed,        // failed (reason); directed back to its previous release
  kRollingBack,   // after an abort: directed back to its previous release
  kRolledBack,    // after an abort: reports its previous release again
};
inline constexpr std::size_t kDeviceStatusCount = 9;
const char* DeviceStatusName(DeviceStatus status);  // "pending", "health-window", …
std::optional<DeviceStatus> ParseDeviceStatus(std::string_view name);

// Shadow inferences a device compared with its active model, and how many agreed.
struct Agreement {
  std::uint64_t compared = 0;
  std::uint64_t agreed = 0;  // ≤ compared
  bool operator==(const Agreement&) const = default;
};

// One selected device in the rollout.
struct RolloutDevice {
  std::string id;                      // "dev-" + 16 hex
  std::uint32_t wave = 0;              // index into the plan's waves
  bool online = false;                 // as dev/{dev}/online last said
  std::optional<ReleaseRef> previous;  // what it ran active before; the rollback target
  DeviceStatus status = DeviceStatus::kPending;
  // Directions this rollout gave the device (each a Direct action); the latest is implied by the
  // status (see ActionKind::kDirect).
  std::uint32_t directions = 0;
  // The directive version that carried the latest direction (DirectiveSent); 0 until it is sent.
  std::uint64_t directive_version = 0;
  std::optional<TimePoint> health_until;  // present exactly while kHealthWindow
  std::optional<Agreement> agreement;     // the latest shadow report, while or after shadowing
  std::string reason;                     // why it failed; empty unless kFailed
  bool operator==(const RolloutDevice&) const = default;
};

// The record the gateway persists for one rollout; everything the machine needs. Times are whole
// seconds, so ToJson / FromJson round-trip exactly.
struct Rollout {
  std::string deployment;  // "dep-…" (delivery::ValidDeploymentId)
  std::string model;
  ReleaseRef target;
  RolloutPlan plan;
  RolloutState state = RolloutState::kRunning;
  std::uint32_t wave = 0;  // the current wave: an index into plan.strategy.waves
  // failure_threshold resolved against the devices selected at the start (at least 1); devices
  // that join later do not change it.
  std::uint32_t failure_limit = 1;
  // Devices that failed, counted once each; a failed device that leaves still counts.
  std::uint32_t failures = 0;
  std::string reason;                  // why it was aborted or cancelled
  std::vector<RolloutDevice> devices;  // by wave; within a wave, in the order they are directed
  TimePoint created_at;
  TimePoint updated_at;

  bool operator==(const Rollout&) const = default;

  const RolloutDevice* Find(std::string_view device) const;

  nlohmann::json ToJson() const;
  // kCorrupt naming the field on anything malformed or inconsistent (an unknown status, a device
  // twice, a wave out of range, health_until without the health-window status, …).
  [[nodiscard]] static Result<Rollout> FromJson(const nlohmann::json& j);
};

// ---- events ----

// A device as the gateway knows it when the rollout starts or the device joins.
struct DeviceInfo {
  std::string id;
  std::map<std::string, std::string> labels;
  std::optional<ReleaseRef> current;  // what it runs active for this model now, if anything
  bool online = false;
};

// dev/{dev}/state for this model (ReportFrom makes it from the message).
struct DeviceReport {
  std::string device;
  // The agent's activation phase (downloading … validating, active, failed, rolled-back, idle),
  // or "refused": the agent refused directive_version (error says why).
  std::string phase;
  std::optional<ReleaseRef> active;     // what it runs active now
  std::string error;                    // the agent's error message, if any
  std::optional<ReleaseRef> shadow;     // what runs in shadow, if anything
  std::optional<Agreement> agreement;   // of the shadow with the active model
  std::uint64_t directive_version = 0;  // the directive the report refers to
};
// The report for model in a device's state message: "idle" on nothing when the device reports
// nothing of the model; "refused" when its latest refusal is newer than the directive it applied.
DeviceReport ReportFrom(const delivery::DeviceState& state, std::string_view model);
struct DeviceOnline {  // dev/{dev}/online
  std::string device;
  bool online = false;
};
// A device that enrolled, or was relabelled, while the rollout runs. It joins if the selector
// selects it (in the last wave), unless it is already in.
struct DeviceAdded {
  DeviceInfo device;
};
struct DeviceRemoved {  // revoked, or relabelled out of the selector: it leaves as it is
  std::string device;
};
// The caller signed and published the Direct action numbered `direction` for device, as
// directive version `version`.
struct DirectiveSent {
  std::string device;
  std::uint32_t direction = 0;
  std::uint64_t version = 0;
};
struct Tick {};  // time passed (Inputs::now): health windows may have ended
struct Pause {};
struct Resume {};
struct Cancel {
  std::string reason;
};

using Event = std::variant<DeviceReport, DeviceOnline, DeviceAdded, DeviceRemoved, DirectiveSent,
                           Tick, Pause, Resume, Cancel>;
const char* EventName(const Event& event);  // "device-report", …

// ---- actions ----

enum class ActionKind {
  // Sign and publish a directive for `device` in which this model's desired state is `active`
  // (removed when absent) and `shadow` (none when absent); then apply DirectiveSent with
  // `direction`. Targets: shadowing → {previous, target}; directed → {target, —}; failed and
  // rolling-back → {previous, —}.
  kDirect,
  kPublishSummary,  // publish Summarize(rollout) on gw/{gw}/fleet: its counts changed
  kScheduleTimer,   // apply Tick at `at` (replaces any earlier timer of this rollout)
  kCompleted,       // tell the hub: the rollout is complete
  kAborted,         // tell the hub: the rollout aborted (reason)
};
const char* ActionKindName(ActionKind kind);

struct Action {
  ActionKind kind = ActionKind::kPublishSummary;
  std::string device;                // kDirect
  std::uint32_t direction = 0;       // kDirect
  std::optional<ReleaseRef> active;  // kDirect
  std::optional<ReleaseRef> shadow;  // kDirect
  TimePoint at;                      // kScheduleTimer
  std::string reason;                // kAborted
  bool operator==(const Action&) const = default;
};

struct Step {
  Rollout rollout;  // persist this before performing the actions
  std::vector<Action> actions;
  bool applied = false;  // false: the event was ignored and rollout is the input, unchanged
  std::string note;      // what happened, or why the event was ignored
};

struct Inputs {
  TimePoint now;
};

// A new rollout, running: selects from devices those the plan's selector selects, splits them
// into waves and directs the first. With no device selected it is complete at once.
// A device listed twice counts once. With paused, the rollout starts paused instead (the hub
// paused its deployment before the gateway could start it): it directs no one until Resume.
// Preconditions (asserted): a valid deployment id, model name and target, valid device ids and
// releases.
Step StartRollout(std::string deployment, std::string model, ReleaseRef target, RolloutPlan plan,
                  const std::vector<DeviceInfo>& devices, const Inputs& in, bool paused = false);

// The transition for event. Never fails: an event that does not apply is ignored (see above).
Step Apply(const Rollout& rollout, const Event& event, const Inputs& in);

// When the next health window ends (Tick is due then); nullopt when none is running.
std::optional<TimePoint> NextWakeup(const Rollout& rollout);

// What a restarted gateway must do for a persisted rollout: the Direct actions whose directive
// may not have been sent (no DirectiveSent yet), and its timer.
std::vector<Action> ResumeActions(const Rollout& rollout);

// ---- the fleet summary ----

// Device counts of a rollout, or of one of its waves.
struct DeviceCounts {
  std::size_t total = 0;
  std::array<std::size_t, kDeviceStatusCount> by_status{};  // indexed by DeviceStatus
  // Offline devices that still have a step to take (pending, shadowing, directed, activating or
  // rolling-back): a subset of those counts, "pending (offline)" to a person.
  std::size_t offline = 0;
  std::size_t Of(DeviceStatus status) const { return by_status[static_cast<std::size_t>(status)]; }
  bool operator==(const DeviceCounts&) const = default;
  // {"total": 5, "offline": 0, "pending": 0, "shadowing": 0, …}: every status, zeros included.
  nlohmann::json ToJson() const;
};

// What gw/{gw}/fleet and `airlock status` show for a rollout.
struct FleetSummary {
  std::string deployment;
  std::string model;
  ReleaseRef target;
  RolloutState state = RolloutState::kRunning;
  std::uint32_t wave = 0;  // the current wave's index
  std::uint32_t waves = 0;
  std::uint32_t failures = 0;
  std::uint32_t failure_limit = 1;
  std::string reason;
  DeviceCounts devices;
  std::vector<DeviceCounts> by_wave;  // one per wave of the plan
  bool operator==(const FleetSummary&) const = default;
  // Waves are numbered from 1 here, as a person counts them ("wave": 2, "waves": 3).
  nlohmann::json ToJson() const;
};
FleetSummary Summarize(const Rollout& rollout);

}  // namespace airlock::gateway
