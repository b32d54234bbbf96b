#include "gateway/rollout.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include "core/digest.hpp"
#include "core/name_table.hpp"
#include "core/record_json.hpp"
#include "delivery/protocol.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr std::pair<RolloutState, const char*> kStates[] = {
    {RolloutState::kRunning, "running"},     {RolloutState::kPaused, "paused"},
    {RolloutState::kComplete, "complete"},   {RolloutState::kAborted, "aborted"},
    {RolloutState::kCancelled, "cancelled"},
};

constexpr std::pair<DeviceStatus, const char*> kStatuses[] = {
    {DeviceStatus::kPending, "pending"},
    {DeviceStatus::kShadowing, "shadowing"},
    {DeviceStatus::kDirected, "directed"},
    {DeviceStatus::kActivating, "activating"},
    {DeviceStatus::kHealthWindow, "health-window"},
    {DeviceStatus::kDone, "done"},
    {DeviceStatus::kFailed, "failed"},
    {DeviceStatus::kRollingBack, "rolling-back"},
    {DeviceStatus::kRolledBack, "rolled-back"},
};
static_assert(std::size(kStatuses) == kDeviceStatusCount);

// The names a fleet summary carries are the protocol's, which the hub counts by in its /metrics.
template <typename Names, typename Protocol>
constexpr bool SameNames(const Names& names, const Protocol& protocol) {
  if (std::size(names) != protocol.size()) {
    return false;
  }
  for (std::size_t i = 0; i < protocol.size(); ++i) {
    if (std::string_view(names[i].second) != protocol[i]) {
      return false;
    }
  }
  return true;
}
static_assert(SameNames(kStates, delivery::kFleetRolloutStates));
static_assert(SameNames(kStatuses, delivery::kFleetDeviceStatuses));

// The agent's phases on the way to active (docs/rollout.md §4).
constexpr std::string_view kActivationPhases[] = {"downloading", "verifying",  "staged",
                                                  "loading",     "warming-up", "validating"};
// The longest reason kept in the record; agents' error messages are cut to it.
constexpr std::size_t kMaxReason = 512;

TimePoint FloorSeconds(TimePoint t) { return std::chrono::floor<seconds>(t); }
TimePoint CeilSeconds(TimePoint t) { return std::chrono::ceil<seconds>(t); }

bool ValidRelease(const ReleaseRef& r) {
  return delivery::ValidVersion(r.version) && Digest::Parse(r.release).has_value();
}

// At most max bytes of s, cut before a UTF-8 continuation byte so that it stays valid UTF-8.
std::string Truncate(std::string_view s, std::size_t max) {
  if (s.size() <= max) {
    return std::string(s);
  }
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return std::string(s.substr(0, n));
}

// "91.2%": a fraction as a percentage with at most one decimal, rounded down when `down` (so that
// a value below a gate never prints as the gate itself).
std::string Percent(double fraction, bool down) {
  double tenths = fraction * 1000;
  tenths = down ? std::floor(tenths + 1e-9) : std::round(tenths);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", tenths / 10);
  std::string s = buf;
  if (s.ends_with(".0")) {
    s.resize(s.size() - 2);
  }
  return s + "%";
}

std::string Describe(const std::optional<ReleaseRef>& r) { return r ? r->version : "nothing"; }

// Whether the device runs r active (an absent r: nothing), judged by the release digest.
bool Runs(const std::optional<ReleaseRef>& active, const std::optional<ReleaseRef>& r) {
  if (!r) {
    return !active || active->release.empty();
  }
  return active && active->release == r->release;
}

bool IsActivationPhase(std::string_view phase) {
  return std::find(std::begin(kActivationPhases), std::end(kActivationPhases), phase) !=
         std::end(kActivationPhases);
}

bool IsFailurePhase(std::string_view phase) {
  return phase == "failed" || phase == "rolled-back" || phase == "refused";
}

// Statuses of a device being updated: with max_in_flight of them online at once.
bool InFlight(DeviceStatus s) {
  return s == DeviceStatus::kShadowing || s == DeviceStatus::kDirected ||
         s == DeviceStatus::kActivating;
}

// Whether the rollout need not wait for the device before going on.
bool Settled(const RolloutDevice& d) {
  return d.status == DeviceStatus::kDone || d.status == DeviceStatus::kFailed ||
         (!d.online && InFlight(d.status));
}

// The Direct action for the device's latest direction, which its status implies.
Action DirectionOf(const Rollout& r, const RolloutDevice& d) {
  Action a{.kind = ActionKind::kDirect,
           .device = d.id,
           .direction = d.directions,
           .active = std::nullopt,
           .shadow = std::nullopt,
           .at = {},
           .reason = ""};
  switch (d.status) {
    case DeviceStatus::kShadowing:
      a.active = d.previous;
      a.shadow = r.target;
      break;
    case DeviceStatus::kDirected:
    case DeviceStatus::kActivating:
    case DeviceStatus::kHealthWindow:
    case DeviceStatus::kDone:
      a.active = r.target;
      break;
    default:
      a.active = d.previous;
      break;
  }
  return a;
}

class Machine {
 public:
  Machine(const Rollout& r, const Inputs& in) : in_(in), before_(Summarize(r)) {
    step_.rollout = r;
  }

  Rollout& r() { return step_.rollout; }

  Step Ignore(std::string why) && {
    step_.applied = false;
    step_.actions.clear();
    step_.note = std::move(why);
    return std::move(step_);
  }

  // Finishes an applied step: stamps it, and adds the summary to publish (when its counts
  // changed) and the timer.
  Step Done(std::string note) && {
    r().updated_at = FloorSeconds(in_.now);
    step_.applied = true;
    step_.note = std::move(note);
    if (Summarize(r()) != before_) {
      step_.actions.push_back(Simple(ActionKind::kPublishSummary));
    }
    if (auto at = NextWakeup(r())) {
      Action timer = Simple(ActionKind::kScheduleTimer);
      timer.at = *at;
      step_.actions.push_back(timer);
    }
    return std::move(step_);
  }

  RolloutDevice* Find(std::string_view id) {
    auto it = std::find_if(r().devices.begin(), r().devices.end(),
                           [&](const RolloutDevice& d) { return d.id == id; });
    return it == r().devices.end() ? nullptr : &*it;
  }

  // A new direction for d: its status says what it is.
  void Direct(RolloutDevice& d, DeviceStatus status) {
    d.status = status;
    d.directions += 1;
    d.directive_version = 0;
    d.health_until.reset();
    step_.actions.push_back(DirectionOf(r(), d));
  }

  // The first direction of a device: the shadow when there is a gate, else the target.
  void DirectFirst(RolloutDevice& d) {
    Direct(d, r().plan.strategy.shadow ? DeviceStatus::kShadowing : DeviceStatus::kDirected);
  }

  // d failed: it goes back to what it ran, and counts against the threshold. Returns the note.
  std::string FailDevice(RolloutDevice& d, std::string why) {
    d.reason = Truncate(why, kMaxReason);
    Direct(d, DeviceStatus::kFailed);
    if (r().failures < std::numeric_limits<std::uint32_t>::max()) {
      r().failures += 1;
    }
    std::string note = d.id + " failed: " + d.reason;
    bool live = r().state == RolloutState::kRunning || r().state == RolloutState::kPaused;
    if (live && r().failures >= r().failure_limit) {
      Abort(d);
      note += "; aborted, " + r().reason;
    }
    return note;
  }

  void Abort(const RolloutDevice& last) {
    r().state = RolloutState::kAborted;
    r().reason = Truncate(std::to_string(r().failures) + " devices failed, the threshold is " +
                              std::to_string(r().failure_limit) + " (last " + last.id + ": " +
                              last.reason + ")",
                          kMaxReason);
    for (auto& d : r().devices) {
      switch (d.status) {
        case DeviceStatus::kShadowing:
        case DeviceStatus::kDirected:
        case DeviceStatus::kActivating:
        case DeviceStatus::kHealthWindow:
        case DeviceStatus::kDone:
          Direct(d, DeviceStatus::kRollingBack);
          break;
        default:
          break;
      }
    }
    Action a = Simple(ActionKind::kAborted);
    a.reason = r().reason;
    step_.actions.push_back(a);
  }

  // While running: directs the current wave's devices as slots allow, and moves on to the next
  // wave, or completes, when the rollout has reached the current one.
  void Progress() {
    if (r().state != RolloutState::kRunning) {
      return;
    }
    const std::uint32_t last = static_cast<std::uint32_t>(r().plan.strategy.waves.size() - 1);
    while (true) {
      std::size_t in_flight = static_cast<std::size_t>(
          std::count_if(r().devices.begin(), r().devices.end(),
                        [](const RolloutDevice& d) { return d.online && InFlight(d.status); }));
      for (auto& d : r().devices) {
        if (d.wave != r().wave || d.status != DeviceStatus::kPending) {
          continue;
        }
        // An offline device takes no slot: it downloads nothing until it returns.
        if (!d.online) {
          DirectFirst(d);
        } else if (in_flight < r().plan.strategy.max_in_flight) {
          DirectFirst(d);
          in_flight += 1;
        }
      }
      bool reached = std::all_of(r().devices.begin(), r().devices.end(),
                                 [&](const auto& d) { return d.wave > r().wave || Settled(d); });
      if (!reached) {
        return;
      }
      if (r().wave == last) {
        r().state = RolloutState::kComplete;
        step_.actions.push_back(Simple(ActionKind::kCompleted));
        return;
      }
      r().wave += 1;
    }
  }

  std::string Where() const {
    return "wave " + std::to_string(step_.rollout.wave + 1) + " of " +
           std::to_string(step_.rollout.plan.strategy.waves.size());
  }

  // What the step did to the rollout as a whole, after the device's own note.
  std::string Outcome(const std::string& note, RolloutState was, std::uint32_t wave_was) {
    std::string out = note;
    if (step_.rollout.state == RolloutState::kComplete && was != RolloutState::kComplete) {
      out += "; the rollout is complete";
    } else if (step_.rollout.wave != wave_was) {
      out += "; now in " + Where();
    }
    return out;
  }

  Step On(const DeviceReport& e) && {
    if (r().state == RolloutState::kCancelled) {
      return std::move(*this).Ignore("report from " + e.device + ": the rollout is cancelled");
    }
    RolloutDevice* d = Find(e.device);
    if (d == nullptr) {
      return std::move(*this).Ignore("report from " + e.device + ", which is not in this rollout");
    }
    if (d->status == DeviceStatus::kPending) {
      return std::move(*this).Ignore("report from " + e.device + ", which is not directed yet");
    }
    if (d->directive_version == 0) {
      return std::move(*this).Ignore("report from " + e.device + " before direction " +
                                     std::to_string(d->directions) + " was sent");
    }
    if (e.directive_version < d->directive_version) {
      return std::move(*this).Ignore("stale report from " + e.device + ": directive " +
                                     std::to_string(e.directive_version) + ", the latest is " +
                                     std::to_string(d->directive_version));
    }
    RolloutState was = r().state;
    std::uint32_t wave_was = r().wave;
    std::string note;
    switch (d->status) {
      case DeviceStatus::kShadowing: {
        if (IsFailurePhase(e.phase)) {
          note = FailDevice(*d, "the shadow " + e.phase + (e.error.empty() ? "" : ": " + e.error));
          break;
        }
        if (!e.agreement || !e.shadow || e.shadow->release != r().target.release) {
          return std::move(*this).Ignore(e.device + " is shadowing (" + e.phase +
                                         "), no agreement on " + r().target.version + " yet");
        }
        const Agreement& a = *e.agreement;
        if (a.agreed > a.compared) {
          return std::move(*this).Ignore(e.device + " reports more agreed than compared");
        }
        if (d->agreement && *d->agreement == a) {
          return std::move(*this).Ignore(e.device + " reports the same agreement again");
        }
        d->agreement = a;
        const ShadowGate& gate = *r().plan.strategy.shadow;
        std::string measured;
        double fraction = 0;
        if (a.compared > 0) {
          fraction = static_cast<double>(a.agreed) / static_cast<double>(a.compared);
        }
        measured =
            "shadow agreement " + Percent(fraction, true) + " over " + std::to_string(a.compared);
        if (a.compared < gate.min_compared) {
          note = e.device + ": " + measured + " of " + std::to_string(gate.min_compared) +
                 " compared needed";
        } else if (fraction + 1e-12 >= gate.min_agreement) {
          Direct(*d, DeviceStatus::kDirected);
          note = e.device + ": " + measured + " passes the gate; directed to " + r().target.version;
        } else {
          note = FailDevice(*d, "shadow agreement " + Percent(fraction, true) + " below " +
                                    Percent(gate.min_agreement, false));
        }
        break;
      }
      case DeviceStatus::kDirected:
      case DeviceStatus::kActivating:
        if (e.phase == "active" && Runs(e.active, r().target)) {
          seconds window = r().plan.strategy.health_window;
          if (window.count() == 0) {
            d->status = DeviceStatus::kDone;
            note = e.device + " is active on " + r().target.version + " (no health window)";
          } else {
            d->status = DeviceStatus::kHealthWindow;
            d->health_until = CeilSeconds(in_.now + window);
            note = e.device + " is active on " + r().target.version + "; healthy until " +
                   FormatRfc3339(*d->health_until);
          }
        } else if (IsFailurePhase(e.phase)) {
          std::string what = e.phase == "refused" ? "directive refused" : "activation " + e.phase;
          note = FailDevice(*d, what + (e.error.empty() ? "" : ": " + e.error));
        } else if (IsActivationPhase(e.phase) && d->status == DeviceStatus::kDirected) {
          d->status = DeviceStatus::kActivating;
          note = e.device + " is activating (" + e.phase + ")";
        } else {
          return std::move(*this).Ignore(e.device + " reports " + e.phase + " on " +
                                         Describe(e.active) + ": nothing new");
        }
        break;
      case DeviceStatus::kHealthWindow:
        if (!IsFailurePhase(e.phase)) {
          return std::move(*this).Ignore(e.device + " reports " + e.phase +
                                         " during its health window: nothing new");
        }
        note = FailDevice(
            *d, e.phase + " during its health window" + (e.error.empty() ? "" : ": " + e.error));
        break;
      case DeviceStatus::kRollingBack:
        if ((e.phase == "active" || e.phase == "idle" || e.phase == "rolled-back") &&
            Runs(e.active, d->previous)) {
          d->status = DeviceStatus::kRolledBack;
          note = e.device + " is back on " + Describe(d->previous);
          break;
        }
        return std::move(*this).Ignore(e.device + " reports " + e.phase + " on " +
                                       Describe(e.active) + ", not yet back on " +
                                       Describe(d->previous));
      default:
        return std::move(*this).Ignore(e.device + " is " + DeviceStatusName(d->status) +
                                       "; later reports do not change it");
    }
    Progress();
    return std::move(*this).Done(Outcome(note, was, wave_was));
  }

  Step On(const DeviceOnline& e) && {
    if (r().state == RolloutState::kCancelled) {
      return std::move(*this).Ignore(e.device + " online: the rollout is cancelled");
    }
    RolloutDevice* d = Find(e.device);
    if (d == nullptr) {
      return std::move(*this).Ignore(e.device + " is not in this rollout");
    }
    if (d->online == e.online) {
      return std::move(*this).Ignore(e.device + " is already " + (e.online ? "online" : "offline"));
    }
    RolloutState was = r().state;
    std::uint32_t wave_was = r().wave;
    d->online = e.online;
    Progress();
    return std::move(*this).Done(
        Outcome(e.device + (e.online ? " is online" : " is offline"), was, wave_was));
  }

  Step On(const DeviceAdded& e) && {
    const DeviceInfo& info = e.device;
    if (r().state == RolloutState::kCancelled || r().state == RolloutState::kAborted) {
      return std::move(*this).Ignore(info.id + " joins nothing: the rollout is " +
                                     RolloutStateName(r().state));
    }
    if (!delivery::ValidDeviceId(info.id)) {
      return std::move(*this).Ignore("\"" + Truncate(info.id, 64) + "\" is not a device id");
    }
    if (Find(info.id) != nullptr) {
      return std::move(*this).Ignore(info.id + " is already in this rollout");
    }
    if (!Selects(r().plan.selector, info.labels)) {
      return std::move(*this).Ignore(info.id + " is not selected by this deployment");
    }
    if (info.current && !ValidRelease(*info.current)) {
      return std::move(*this).Ignore(info.id + " runs an invalid release reference");
    }
    RolloutState was = r().state;
    std::uint32_t wave_was = r().wave;
    RolloutDevice d;
    d.id = info.id;
    d.wave = static_cast<std::uint32_t>(r().plan.strategy.waves.size() - 1);
    d.online = info.online;
    d.previous = info.current;
    r().devices.push_back(d);
    std::string note = info.id + " joins the last wave";
    if (r().state == RolloutState::kComplete) {
      // The rollout is over, and the target is what its devices run: a newcomer gets it at once.
      DirectFirst(r().devices.back());
      note += " and is directed at once (the rollout is complete)";
    }
    Progress();
    return std::move(*this).Done(Outcome(note, was, wave_was));
  }

  Step On(const DeviceRemoved& e) && {
    if (r().state == RolloutState::kCancelled) {
      return std::move(*this).Ignore(e.device + " removed: the rollout is cancelled");
    }
    auto it = std::find_if(r().devices.begin(), r().devices.end(),
                           [&](const RolloutDevice& d) { return d.id == e.device; });
    if (it == r().devices.end()) {
      return std::move(*this).Ignore(e.device + " is not in this rollout");
    }
    RolloutState was = r().state;
    std::uint32_t wave_was = r().wave;
    std::string note = e.device + " left (" + DeviceStatusName(it->status) + ")";
    r().devices.erase(it);
    Progress();
    return std::move(*this).Done(Outcome(note, was, wave_was));
  }

  Step On(const DirectiveSent& e) && {
    if (r().state == RolloutState::kCancelled) {
      return std::move(*this).Ignore("directive sent to " + e.device +
                                     ": the rollout is cancelled");
    }
    RolloutDevice* d = Find(e.device);
    if (d == nullptr) {
      return std::move(*this).Ignore("directive sent to " + e.device +
                                     ", which is not in this rollout");
    }
    if (e.direction != d->directions) {
      return std::move(*this).Ignore("directive for direction " + std::to_string(e.direction) +
                                     " of " + e.device + ", the latest is " +
                                     std::to_string(d->directions));
    }
    if (e.version <= d->directive_version) {
      return std::move(*this).Ignore("directive version " + std::to_string(e.version) + " for " +
                                     e.device + " is not above " +
                                     std::to_string(d->directive_version));
    }
    d->directive_version = e.version;
    return std::move(*this).Done("direction " + std::to_string(e.direction) + " of " + e.device +
                                 " sent as directive " + std::to_string(e.version));
  }

  Step On(const Tick&) && {
    if (r().state == RolloutState::kCancelled || r().state == RolloutState::kAborted) {
      return std::move(*this).Ignore(std::string("tick: the rollout is ") +
                                     RolloutStateName(r().state));
    }
    RolloutState was = r().state;
    std::uint32_t wave_was = r().wave;
    std::vector<std::string> done;
    for (auto& d : r().devices) {
      if (d.status == DeviceStatus::kHealthWindow && *d.health_until <= in_.now) {
        d.status = DeviceStatus::kDone;
        d.health_until.reset();
        done.push_back(d.id);
      }
    }
    if (done.empty()) {
      return std::move(*this).Ignore("tick: no health window has ended");
    }
    Progress();
    std::string note;
    for (const auto& id : done) {
      note += (note.empty() ? "" : ", ") + id;
    }
    return std::move(*this).Done(Outcome(note + " done", was, wave_was));
  }

  Step On(const Pause&) && {
    if (r().state != RolloutState::kRunning) {
      return std::move(*this).Ignore(std::string("pause: the rollout is ") +
                                     RolloutStateName(r().state));
    }
    r().state = RolloutState::kPaused;
    return std::move(*this).Done("paused in " + Where());
  }

  Step On(const Resume&) && {
    if (r().state != RolloutState::kPaused) {
      return std::move(*this).Ignore(std::string("resume: the rollout is ") +
                                     RolloutStateName(r().state));
    }
    std::uint32_t wave_was = r().wave;
    std::string note = "resumed in " + Where();
    r().state = RolloutState::kRunning;
    Progress();
    return std::move(*this).Done(Outcome(note, RolloutState::kRunning, wave_was));
  }

  Step On(const Cancel& e) && {
    if (IsFinal(r().state)) {
      return std::move(*this).Ignore(std::string("cancel: the rollout is ") +
                                     RolloutStateName(r().state));
    }
    r().state = RolloutState::kCancelled;
    r().reason = Truncate(e.reason, kMaxReason);
    return std::move(*this).Done("cancelled: " + r().reason);
  }

 private:
  static Action Simple(ActionKind kind) {
    return {.kind = kind,
            .device = "",
            .direction = 0,
            .active = std::nullopt,
            .shadow = std::nullopt,
            .at = {},
            .reason = ""};
  }

  Inputs in_;
  FleetSummary before_;
  Step step_;
};

// ---- JSON ----

constexpr RecordReader kRecord("rollout record");

json ReleaseJson(const ReleaseRef& r) { return {{"version", r.version}, {"release", r.release}}; }

Result<ReleaseRef> GetRelease(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_object() || it->size() != 2) {
    return Fail(kRecord.Malformed(key, "must be {\"version\", \"release\"}"));
  }
  ReleaseRef r;
  AIRLOCK_ASSIGN_OR_RETURN(r.version, kRecord.String(*it, "version"));
  AIRLOCK_ASSIGN_OR_RETURN(r.release, kRecord.String(*it, "release"));
  if (!ValidRelease(r)) {
    return Fail(kRecord.Malformed(key, "must name a valid version and a \"sha256:…\" release"));
  }
  return r;
}

constexpr std::uint64_t kMax32 = std::numeric_limits<std::uint32_t>::max();

Result<RolloutDevice> DeviceFromJson(const json& j, const Rollout& r) {
  if (!j.is_object()) {
    return Fail(kRecord.Malformed("devices", "must hold objects"));
  }
  RolloutDevice d;
  AIRLOCK_ASSIGN_OR_RETURN(d.id, kRecord.String(j, "id"));
  if (!delivery::ValidDeviceId(d.id)) {
    return Fail(kRecord.Malformed("id", "must be \"dev-\" and 16 lowercase hex digits"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t wave,
                           kRecord.Unsigned(j, "wave", r.plan.strategy.waves.size() - 1));
  d.wave = static_cast<std::uint32_t>(wave);
  AIRLOCK_ASSIGN_OR_RETURN(d.online, kRecord.Bool(j, "online"));
  if (j.contains("previous")) {
    AIRLOCK_ASSIGN_OR_RETURN(d.previous, GetRelease(j, "previous"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string status, kRecord.String(j, "status"));
  auto parsed = ParseDeviceStatus(status);
  if (!parsed) {
    return Fail(kRecord.Malformed("status", "is not a device status"));
  }
  d.status = *parsed;
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t directions, kRecord.Unsigned(j, "directions", kMax32));
  d.directions = static_cast<std::uint32_t>(directions);
  AIRLOCK_ASSIGN_OR_RETURN(
      d.directive_version,
      kRecord.Unsigned(j, "directive_version", std::numeric_limits<std::uint64_t>::max()));
  if (j.contains("health_until")) {
    AIRLOCK_ASSIGN_OR_RETURN(d.health_until, kRecord.Time(j, "health_until"));
  }
  if (j.contains("agreement")) {
    const json& a = j["agreement"];
    if (!a.is_object()) {
      return Fail(kRecord.Malformed("agreement", "must be {\"compared\", \"agreed\"}"));
    }
    auto compared = kRecord.Unsigned(a, "compared", std::numeric_limits<std::uint64_t>::max());
    auto agreed = compared ? kRecord.Unsigned(a, "agreed", *compared) : compared;
    if (!agreed) {
      return Fail(kRecord.Malformed("agreement", "must be {\"compared\", \"agreed\"}, agreed ≤ compared"));
    }
    d.agreement = Agreement{*compared, *agreed};
  }
  if (j.contains("reason")) {
    AIRLOCK_ASSIGN_OR_RETURN(d.reason, kRecord.String(j, "reason"));
  }
  // What the statuses imply.
  if ((d.status == DeviceStatus::kPending) != (d.directions == 0)) {
    return Fail(kRecord.Malformed("directions", "must be 0 exactly while pending"));
  }
  if (d.status != DeviceStatus::kPending && d.wave > r.wave) {
    return Fail(kRecord.Malformed("wave", "of a directed device is beyond the rollout's"));
  }
  if (d.health_until.has_value() != (d.status == DeviceStatus::kHealthWindow)) {
    return Fail(kRecord.Malformed("health_until", "must be present exactly in the health window"));
  }
  if (d.reason.empty() == (d.status == DeviceStatus::kFailed) || d.reason.size() > kMaxReason) {
    return Fail(kRecord.Malformed("reason", "must say why exactly when failed"));
  }
  if (d.status == DeviceStatus::kShadowing && !r.plan.strategy.shadow) {
    return Fail(kRecord.Malformed("status", "shadowing without a shadow gate"));
  }
  bool rollback = d.status == DeviceStatus::kRollingBack || d.status == DeviceStatus::kRolledBack;
  if (rollback && r.state != RolloutState::kAborted) {
    return Fail(kRecord.Malformed("status", "rolling back outside an aborted rollout"));
  }
  return d;
}

}  // namespace

Result<RolloutPlan> RolloutPlan::FromDeployment(const json& selector, const json& strategy) {
  RolloutPlan plan;
  AIRLOCK_ASSIGN_OR_RETURN(plan.selector, ParseSelector(selector));
  AIRLOCK_ASSIGN_OR_RETURN(plan.strategy, RolloutStrategy::FromJson(strategy));
  return plan;
}

const char* RolloutStateName(RolloutState state) { return NameOf(kStates, state); }
std::optional<RolloutState> ParseRolloutState(std::string_view name) {
  return FindName(kStates, name);
}
bool IsFinal(RolloutState state) {
  return state == RolloutState::kComplete || state == RolloutState::kAborted ||
         state == RolloutState::kCancelled;
}
const char* DeviceStatusName(DeviceStatus status) { return NameOf(kStatuses, status); }
std::optional<DeviceStatus> ParseDeviceStatus(std::string_view name) {
  return FindName(kStatuses, name);
}

const char* EventName(const Event& event) {
  static constexpr const char* kNames[] = {"device-report",  "device-online",  "device-added",
                                           "device-removed", "directive-sent", "tick",
                                           "pause",          "resume",         "cancel"};
  static_assert(std::variant_size_v<Event> == std::size(kNames));
  return kNames[event.index()];
}

const char* ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDirect:
      return "direct";
    case ActionKind::kPublishSummary:
      return "publish-summary";
    case ActionKind::kScheduleTimer:
      return "schedule-timer";
    case ActionKind::kCompleted:
      return "completed";
    case ActionKind::kAborted:
      return "aborted";
  }
  return "?";
}

const RolloutDevice* Rollout::Find(std::string_view device) const {
  auto it = std::find_if(devices.begin(), devices.end(),
                         [&](const RolloutDevice& d) { return d.id == device; });
  return it == devices.end() ? nullptr : &*it;
}

Step StartRollout(std::string deployment, std::string model, ReleaseRef target, RolloutPlan plan,
                  const std::vector<DeviceInfo>& devices, const Inputs& in, bool paused) {
  assert(delivery::ValidDeploymentId(deployment) && delivery::ValidModelName(model));
  assert(ValidRelease(target) && !plan.strategy.waves.empty());
  Rollout r;
  r.deployment = std::move(deployment);
  r.model = std::move(model);
  r.target = std::move(target);
  r.plan = std::move(plan);
  r.created_at = FloorSeconds(in.now);
  r.updated_at = r.created_at;

  std::vector<DeviceInfo> selected;
  std::set<std::string> ids;
  for (const auto& info : devices) {
    assert(delivery::ValidDeviceId(info.id) && (!info.current || ValidRelease(*info.current)));
    if (Selects(r.plan.selector, info.labels) && ids.insert(info.id).second) {
      selected.push_back(info);
    }
  }
  // The canary should be a device that can answer now: online devices first.
  std::sort(selected.begin(), selected.end(), [](const DeviceInfo& a, const DeviceInfo& b) {
    return std::pair(!a.online, a.id) < std::pair(!b.online, b.id);
  });

  const auto& waves = r.plan.strategy.waves;
  std::size_t n = selected.size();
  std::size_t end = 0;
  const std::vector<std::size_t> ends = r.plan.strategy.WaveEnds(n);  // shared with the hub
  for (std::size_t w = 0; w < waves.size(); ++w) {
    std::size_t reach = ends[w];
    for (; end < reach; ++end) {
      DeviceInfo& info = selected[end];
      r.devices.push_back({.id = std::move(info.id),
                           .wave = static_cast<std::uint32_t>(w),
                           .online = info.online,
                           .previous = std::move(info.current),
                           .status = DeviceStatus::kPending,
                           .directions = 0,
                           .directive_version = 0,
                           .health_until = std::nullopt,
                           .agreement = std::nullopt,
                           .reason = ""});
    }
  }
  r.failure_limit =
      static_cast<std::uint32_t>(std::min<std::size_t>(r.plan.strategy.FailureLimit(n), kMax32));

  std::string note =
      "started on " + std::to_string(n) + " devices in " + std::to_string(waves.size()) + " waves";
  // Start from an empty summary, so that the first one is always published.
  Rollout empty;
  Machine m(empty, in);
  m.r() = std::move(r);
  if (paused) {
    m.r().state = RolloutState::kPaused;  // the hub paused the deployment first: direct no one
    note += ", paused";
  }
  m.Progress();
  if (m.r().state == RolloutState::kComplete) {
    note += "; the rollout is complete";
  }
  return std::move(m).Done(note);
}

Step Apply(const Rollout& rollout, const Event& event, const Inputs& in) {
  return std::visit([&](const auto& e) { return Machine(rollout, in).On(e); }, event);
}

std::optional<TimePoint> NextWakeup(const Rollout& r) {
  std::optional<TimePoint> at;
  if (r.state == RolloutState::kCancelled) {
    return at;
  }
  for (const auto& d : r.devices) {
    if (d.status == DeviceStatus::kHealthWindow && (!at || *d.health_until < *at)) {
      at = d.health_until;
    }
  }
  return at;
}

std::vector<Action> ResumeActions(const Rollout& r) {
  std::vector<Action> out;
  if (r.state == RolloutState::kCancelled) {
    return out;
  }
  for (const auto& d : r.devices) {
    if (d.status != DeviceStatus::kPending && d.directive_version == 0) {
      out.push_back(DirectionOf(r, d));
    }
  }
  if (auto at = NextWakeup(r)) {
    out.push_back({.kind = ActionKind::kScheduleTimer,
                   .device = "",
                   .direction = 0,
                   .active = std::nullopt,
                   .shadow = std::nullopt,
                   .at = *at,
                   .reason = ""});
  }
  return out;
}

DeviceReport ReportFrom(const delivery::DeviceState& state, std::string_view model) {
  DeviceReport out;
  out.device = state.device;
  out.directive_version = state.directive_version;
  out.phase = "idle";
  auto release = [](const std::string& version, const std::string& id) {
    return id.empty() ? std::nullopt : std::optional<ReleaseRef>(ReleaseRef{version, id});
  };
  auto it = std::find_if(state.models.begin(), state.models.end(),
                         [&](const delivery::ModelReport& m) { return m.model == model; });
  if (it != state.models.end()) {
    out.phase = it->phase;
    out.active = release(it->active_version, it->active_release);
    if (it->error) {
      out.error = it->error->code + ": " + it->error->message;
    }
    if (it->shadow) {
      out.shadow = release(it->shadow->version, it->shadow->release);
      out.agreement = Agreement{it->shadow->compared, it->shadow->agreed};
    }
  }
  if (state.refused && state.refused_version > state.directive_version) {
    out.phase = "refused";
    out.directive_version = state.refused_version;
    out.error = state.refused->code + ": " + state.refused->message;
  }
  return out;
}

// ---- the record as JSON ----

json Rollout::ToJson() const {
  json devs = json::array();
  for (const auto& d : devices) {
    json j = {{"id", d.id},
              {"wave", d.wave},
              {"online", d.online},
              {"status", DeviceStatusName(d.status)},
              {"directions", d.directions},
              {"directive_version", d.directive_version}};
    if (d.previous) {
      j["previous"] = ReleaseJson(*d.previous);
    }
    if (d.health_until) {
      j["health_until"] = FormatRfc3339(*d.health_until);
    }
    if (d.agreement) {
      j["agreement"] = {{"compared", d.agreement->compared}, {"agreed", d.agreement->agreed}};
    }
    if (!d.reason.empty()) {
      j["reason"] = d.reason;
    }
    devs.push_back(std::move(j));
  }
  json j = {{"deployment", deployment},
            {"model", model},
            {"target", ReleaseJson(target)},
            {"plan", {{"selector", plan.selector}, {"strategy", plan.strategy.ToJson()}}},
            {"state", RolloutStateName(state)},
            {"wave", wave},
            {"failure_limit", failure_limit},
            {"failures", failures},
            {"devices", std::move(devs)},
            {"created_at", FormatRfc3339(created_at)},
            {"updated_at", FormatRfc3339(updated_at)}};
  if (!reason.empty()) {
    j["reason"] = reason;
  }
  return j;
}

Result<Rollout> Rollout::FromJson(const json& j) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kCorrupt, "malformed rollout record: want a JSON object");
  }
  Rollout r;
  AIRLOCK_ASSIGN_OR_RETURN(r.deployment, kRecord.String(j, "deployment"));
  if (!delivery::ValidDeploymentId(r.deployment)) {
    return Fail(kRecord.Malformed("deployment", "must be \"dep-\" and 8-64 lowercase hex digits"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(r.model, kRecord.String(j, "model"));
  if (!delivery::ValidModelName(r.model)) {
    return Fail(kRecord.Malformed("model", "must be a model name"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(r.target, GetRelease(j, "target"));
  auto plan = j.find("plan");
  if (plan == j.end() || !plan->is_object() || !plan->contains("selector") ||
      !plan->contains("strategy")) {
    return Fail(kRecord.Malformed("plan", "must be {\"selector\", \"strategy\"}"));
  }
  auto parsed_plan = RolloutPlan::FromDeployment((*plan)["selector"], (*plan)["strategy"]);
  if (!parsed_plan) {
    return Fail(kRecord.Malformed("plan", parsed_plan.error().message()));
  }
  r.plan = std::move(*parsed_plan);
  AIRLOCK_ASSIGN_OR_RETURN(std::string state, kRecord.String(j, "state"));
  auto parsed_state = ParseRolloutState(state);
  if (!parsed_state) {
    return Fail(kRecord.Malformed("state", "is not a rollout state"));
  }
  r.state = *parsed_state;
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t wave,
                           kRecord.Unsigned(j, "wave", r.plan.strategy.waves.size() - 1));
  r.wave = static_cast<std::uint32_t>(wave);
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t limit, kRecord.Unsigned(j, "failure_limit", kMax32));
  if (limit == 0) {
    return Fail(kRecord.Malformed("failure_limit", "must be at least 1"));
  }
  r.failure_limit = static_cast<std::uint32_t>(limit);
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t failures, kRecord.Unsigned(j, "failures", kMax32));
  r.failures = static_cast<std::uint32_t>(failures);
  if (j.contains("reason")) {
    AIRLOCK_ASSIGN_OR_RETURN(r.reason, kRecord.String(j, "reason"));
    if (r.reason.size() > kMaxReason) {
      return Fail(kRecord.Malformed("reason", "is too long"));
    }
  }
  auto devices = j.find("devices");
  if (devices == j.end() || !devices->is_array()) {
    return Fail(kRecord.Malformed("devices", "must be an array"));
  }
  std::set<std::string> seen;
  std::size_t failed = 0;
  for (const json& dj : *devices) {
    AIRLOCK_ASSIGN_OR_RETURN(RolloutDevice d, DeviceFromJson(dj, r));
    if (!seen.insert(d.id).second) {
      return Fail(kRecord.Malformed("devices", "holds " + d.id + " twice"));
    }
    failed += d.status == DeviceStatus::kFailed ? 1 : 0;
    r.devices.push_back(std::move(d));
  }
  if (failed > r.failures) {
    return Fail(kRecord.Malformed("failures", "counts fewer than the failed devices"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(r.created_at, kRecord.Time(j, "created_at"));
  AIRLOCK_ASSIGN_OR_RETURN(r.updated_at, kRecord.Time(j, "updated_at"));
  return r;
}

// ---- the fleet summary ----

json DeviceCounts::ToJson() const {
  json j = {{"total", total}, {"offline", offline}};
  for (const auto& [status, name] : kStatuses) {
    j[name] = Of(status);
  }
  return j;
}

FleetSummary Summarize(const Rollout& r) {
  FleetSummary s;
  s.deployment = r.deployment;
  s.model = r.model;
  s.target = r.target;
  s.state = r.state;
  s.wave = r.wave;
  s.waves = static_cast<std::uint32_t>(r.plan.strategy.waves.size());
  s.failures = r.failures;
  s.failure_limit = r.failure_limit;
  s.reason = r.reason;
  s.by_wave.resize(s.waves);
  auto count = [](DeviceCounts& c, const RolloutDevice& d) {
    bool waiting = InFlight(d.status) || d.status == DeviceStatus::kPending ||
                   d.status == DeviceStatus::kRollingBack;
    c.total += 1;
    c.by_status[static_cast<std::size_t>(d.status)] += 1;
    c.offline += (!d.online && waiting) ? 1 : 0;
  };
  for (const auto& d : r.devices) {
    count(s.devices, d);
    if (d.wave < s.by_wave.size()) {
      count(s.by_wave[d.wave], d);
    }
  }
  return s;
}

json FleetSummary::ToJson() const {
  json w = json::array();
  for (const auto& c : by_wave) {
    w.push_back(c.ToJson());
  }
  json j = {{"deployment", deployment},
            {"model", model},
            {"target", ReleaseJson(target)},
            {"state", RolloutStateName(state)},
            {"wave", wave + 1},
            {"waves", waves},
            {"failures", failures},
            {"failure_limit", failure_limit},
            {"devices", devices.ToJson()},
            {"by_wave", std::move(w)}};
  if (!reason.empty()) {
    j["reason"] = reason;
  }
  return j;
}

}  // namespace airlock::gateway
