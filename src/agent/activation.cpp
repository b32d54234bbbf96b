#include "agent/activation.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>
#include <system_error>
#include <utility>

#include "core/digest.hpp"
#include "core/fs.hpp"
#include "core/record_json.hpp"
#include "delivery/protocol.hpp"
#include "delivery/wire.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr seconds kMaxHealthWindow{365 * 24 * 3600};

constexpr std::pair<Phase, const char*> kPhases[] = {
    {Phase::kIdle, "idle"},
    {Phase::kDownloading, "downloading"},
    {Phase::kVerifying, "verifying"},
    {Phase::kStaged, "staged"},
    {Phase::kLoading, "loading"},
    {Phase::kWarmingUp, "warming-up"},
    {Phase::kValidating, "validating"},
    {Phase::kActive, "active"},
    {Phase::kFailed, "failed"},
    {Phase::kRolledBack, "rolled-back"},
};

// Loading, warming up and validating are one piece of work held in the process's memory: a
// restart in any of them redoes it from loading, and their restarts count together.
bool InMemoryPhase(Phase p) {
  return p == Phase::kLoading || p == Phase::kWarmingUp || p == Phase::kValidating;
}

// The action that starts a phase's work; kReport for the phases that have none of their own.
ActionKind WorkOf(Phase p) {
  switch (p) {
    case Phase::kDownloading:
      return ActionKind::kDownload;
    case Phase::kVerifying:
      return ActionKind::kVerify;
    case Phase::kStaged:
      return ActionKind::kStage;
    case Phase::kLoading:
      return ActionKind::kLoad;
    default:
      return ActionKind::kReport;
  }
}

std::string Name(Phase p) { return PhaseName(p); }

// At most max bytes of s, cut before a UTF-8 continuation byte so that the result stays valid
// UTF-8 (nlohmann's dump throws on invalid UTF-8).
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

// Text for a person with its control characters made spaces: it ends up in the state report,
// terminals and logs, where an escape sequence could rewrite what an operator sees.
std::string Displayable(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

bool ValidErrorCode(std::string_view code) {
  return !code.empty() && code.size() <= 64 && std::all_of(code.begin(), code.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool ValidRelease(std::string_view release) { return Digest::Parse(release).has_value(); }

// "12.0" for 12, "0.5" for 0.5: one decimal, for percentages.
std::string Fixed1(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// "250" for 250, "312.5" for 312.5: milliseconds as people write them.
std::string Millis(double v) {
  std::string s = Fixed1(v);
  if (s.ends_with(".0")) {
    s.resize(s.size() - 2);
  }
  return s;
}

// Why limits are unusable, or "" when they are fine.
std::string CheckHealth(const HealthLimits& h) {
  if (h.window.count() < 0 || h.window > kMaxHealthWindow) {
    return "window must be from 0 to 365 days";
  }
  if (h.max_error_rate && !(*h.max_error_rate >= 0 && *h.max_error_rate <= 1)) {
    return "max_error_rate must be within [0, 1]";
  }
  if (h.max_p99_ms && !(std::isfinite(*h.max_p99_ms) && *h.max_p99_ms > 0)) {
    return "max_p99_ms must be positive";
  }
  return "";
}

// Why a target is unusable, or "" when it is fine.
std::string CheckTarget(const Target& t) {
  if (!delivery::ValidVersion(t.version)) {
    return "version must be an OCI tag";
  }
  if (!ValidRelease(t.release)) {
    return "release must be \"sha256:\" and 64 lowercase hex digits";
  }
  return CheckHealth(t.health);
}

class Machine {
 public:
  Machine(const Activation& a, TimePoint now) : now_(std::chrono::floor<seconds>(now)) {
    step_.activation = a;
  }

  Step Ignore(std::string why) && {
    step_.applied = false;
    step_.actions.clear();
    step_.note = std::move(why);
    return std::move(step_);
  }

  // Finishes an applied step: stamps it and reports the new state.
  Step Done(std::string note) && {
    a().updated_at = now_;
    Do(ActionKind::kReport, "", "");
    step_.applied = true;
    step_.note = std::move(note);
    return std::move(step_);
  }

  Activation& a() { return step_.activation; }
  const Target& target() { return *step_.activation.target; }

  void Do(ActionKind kind, std::string version, std::string release) {
    step_.actions.push_back(
        {.kind = kind, .version = std::move(version), .release = std::move(release)});
  }

  // Enters a phase of the target with a fresh count of attempts, and starts its work.
  void Start(Phase p) {
    a().phase = p;
    a().attempts = 1;
    StartWork();
  }
  void StartWork() {
    ActionKind work = WorkOf(a().phase);
    assert(work != ActionKind::kReport);
    Do(work, target().version, target().release);
  }

  // The active version serves again, and nothing else of the model is loaded: what a restart or
  // an abandoned target needs.
  void ServeActive() { Do(ActionKind::kServe, a().active_version, ""); }

  // The target failed. Before the commit the active version never stopped being the committed
  // one; in the health window the committed one is the target, and previous takes its place.
  Step Fail(std::string code, std::string message) && {
    Phase from = a().phase;
    if (from == Phase::kActive) {
      a().active_version = std::exchange(a().previous_version, "");
      a().active_release = std::exchange(a().previous_release, "");
    }
    std::string suffix;
    if (a().active_version.empty()) {
      suffix = " (no earlier version to go back to: nothing serves " + a().model + ")";
    }
    std::size_t room = kMaxMessageLength - std::min(kMaxMessageLength, suffix.size());
    a().last_error = ActivationError{std::move(code), Truncate(message, room) + suffix};
    a().phase = Phase::kFailed;
    a().attempts = 0;
    a().health_until.reset();
    std::string note = Name(from) + " of " + target().version + " failed: " + a().last_error->code;
    if (a().active_version.empty()) {
      Do(ActionKind::kServe, "", "");
      note += "; nothing to go back to";
    } else {
      Do(ActionKind::kRollBack, a().active_version, "");
      note += "; going back to " + a().active_version;
    }
    return std::move(*this).Done(std::move(note));
  }

  Step On(const NewTarget& e) && {
    if (e.directive_version <= a().directive_version) {
      return std::move(*this).Ignore("directive " + std::to_string(e.directive_version) +
                                     " is not newer than " + std::to_string(a().directive_version) +
                                     " (a repeat or a replay)");
    }
    Target t{.version = e.version, .release = e.release, .health = e.health};
    if (std::string why = CheckTarget(t); !why.empty()) {
      return std::move(*this).Ignore("directive " + std::to_string(e.directive_version) +
                                     " has an unusable target: " + why);
    }
    a().directive_version = e.directive_version;
    std::string dv = "directive " + std::to_string(e.directive_version);
    Phase from = a().phase;

    if (!a().active_release.empty() && e.release == a().active_release) {
      if (from == Phase::kIdle || from == Phase::kActive) {
        return std::move(*this).Done(dv + " asks for the active " + a().active_version +
                                     "; nothing to do");
      }
      // Whatever was under way, or failed, is dropped: the directive wants what serves.
      std::string dropped = target().version;
      a().phase = Phase::kIdle;
      a().target.reset();
      a().attempts = 0;
      a().last_error.reset();
      if (InProgress(from)) {
        ServeActive();
        return std::move(*this).Done(dv + " asks for the active " + a().active_version +
                                     " again; abandoned " + dropped);
      }
      return std::move(*this).Done(dv + " asks for the active " + a().active_version +
                                   "; idle after the failure of " + dropped);
    }

    if (InProgress(from) && e.release == target().release) {
      a().target->health = e.health;
      return std::move(*this).Done(dv + " names " + e.version +
                                   ", already under way; carrying on while " + Name(from));
    }

    std::string note = dv + " names " + e.version;
    if (InProgress(from)) {
      note += "; abandoned " + target().version + " while " + Name(from);
      ServeActive();
    } else if (from == Phase::kActive && a().health_until) {
      note += "; the health window of " + a().active_version + " ends early";
    }
    a().target = std::move(t);
    a().health_until.reset();
    a().last_error.reset();
    Start(e.installed ? Phase::kLoading : Phase::kDownloading);
    note += e.installed ? "; installed already, loading" : "; downloading";
    return std::move(*this).Done(std::move(note));
  }

  // Checks that a phase report is about the current target and phase; "" when it is.
  std::string Mismatch(std::string_view what, Phase phase, const std::string& release) {
    if (!InProgress(a().phase)) {
      return std::string(what) + " of " + Name(phase) + " while " + Name(a().phase);
    }
    if (release != target().release) {
      return std::string(what) + " of " + Name(phase) + " for " + release + ", not the target " +
             target().release + " (an abandoned target)";
    }
    if (phase != a().phase) {
      return std::string(what) + " of " + Name(phase) + " while " + Name(a().phase) +
             " (a repeat or out of order)";
    }
    return "";
  }

  Step On(const PhaseDone& e) && {
    if (std::string why = Mismatch("done", e.phase, e.release); !why.empty()) {
      return std::move(*this).Ignore(std::move(why));
    }
    const std::string version = target().version;
    switch (a().phase) {
      case Phase::kDownloading:
        Start(Phase::kVerifying);
        return std::move(*this).Done("downloaded " + version + "; verifying");
      case Phase::kVerifying:
        Start(Phase::kStaged);
        return std::move(*this).Done("verified " + version + "; installing it into the store");
      case Phase::kStaged:
        Start(Phase::kLoading);
        return std::move(*this).Done("installed " + version + "; loading");
      case Phase::kLoading:
        // The same Load action goes on: no new work, and the attempts carry on.
        a().phase = Phase::kWarmingUp;
        return std::move(*this).Done("loaded " + version + "; warming up");
      case Phase::kWarmingUp:
        a().phase = Phase::kValidating;
        return std::move(*this).Done("warmed up " + version + "; running its samples");
      default:
        break;
    }
    // Validated: commit.
    a().previous_version = std::exchange(a().active_version, version);
    a().previous_release = std::exchange(a().active_release, target().release);
    a().phase = Phase::kActive;
    std::string note = "validated " + version + "; committed";
    if (target().health.window.count() > 0) {
      a().health_until = now_ + target().health.window;
      a().attempts = 1;
      note += ", health window until " + FormatRfc3339(*a().health_until);
    } else {
      a().attempts = 0;
    }
    Do(ActionKind::kCommit, version, target().release);
    return std::move(*this).Done(std::move(note));
  }

  Step On(const PhaseFailed& e) && {
    if (std::string why = Mismatch("failure", e.phase, e.release); !why.empty()) {
      return std::move(*this).Ignore(std::move(why));
    }
    std::string code = ValidErrorCode(e.code) ? e.code : "error";
    return std::move(*this).Fail(
        std::move(code), Name(e.phase) + " " + target().version + ": " + Displayable(e.message));
  }

  bool WindowRunning() { return a().phase == Phase::kActive && a().health_until.has_value(); }

  Step On(const HealthSample& e) && {
    if (!WindowRunning()) {
      return std::move(*this).Ignore("health sample while " + Name(a().phase) +
                                     " with no health window");
    }
    if (now_ >= *a().health_until) {
      return std::move(*this).Ignore("health sample after the window ended at " +
                                     FormatRfc3339(*a().health_until) + " (Tick closes it)");
    }
    if (e.errors > e.requests || !std::isfinite(e.p99_ms) || e.p99_ms < 0) {
      return std::move(*this).Ignore("malformed health sample: " + std::to_string(e.errors) +
                                     " errors of " + std::to_string(e.requests) + " requests");
    }
    const HealthLimits& h = target().health;
    if (e.requests < h.min_requests) {
      return std::move(*this).Ignore("health sample of " + std::to_string(e.requests) +
                                     " requests; at least " + std::to_string(h.min_requests) +
                                     " are judged");
    }
    std::string breaches;
    double rate =
        e.requests == 0 ? 0 : static_cast<double>(e.errors) / static_cast<double>(e.requests);
    if (h.max_error_rate && rate > *h.max_error_rate) {
      breaches = "error rate " + Fixed1(rate * 100) + "% (" + std::to_string(e.errors) + " of " +
                 std::to_string(e.requests) + " requests) over the limit " +
                 Fixed1(*h.max_error_rate * 100) + "%";
    }
    if (h.max_p99_ms && e.p99_ms > *h.max_p99_ms) {
      breaches += std::string(breaches.empty() ? "" : ", ") + "p99 latency " + Millis(e.p99_ms) +
                  " ms over the limit " + Millis(*h.max_p99_ms) + " ms";
    }
    if (breaches.empty()) {
      return std::move(*this).Ignore("health sample within the limits");
    }
    return std::move(*this).Fail("health",
                                 breaches + " during the health window of " + target().version);
  }

  Step On(const Tick&) && {
    if (!WindowRunning()) {
      return std::move(*this).Ignore("tick while " + Name(a().phase) + " with no health window");
    }
    if (now_ < *a().health_until) {
      return std::move(*this).Ignore("tick before the health window ends at " +
                                     FormatRfc3339(*a().health_until) + " (a stale timer)");
    }
    CloseWindow();
    return std::move(*this).Done("the health window of " + a().active_version +
                                 " passed with no breach; committed for good");
  }

  void CloseWindow() {
    a().health_until.reset();
    a().attempts = 0;
  }

  Step On(const Restarted&) && {
    Phase p = a().phase;
    if (InProgress(p) || WindowRunning()) {
      if (WindowRunning() && now_ >= *a().health_until) {
        // The window ended while the agent was down: it passed.
        CloseWindow();
        ServeActive();
        return std::move(*this).Done("restarted after the health window of " + a().active_version +
                                     " passed; serving it");
      }
      if (a().attempts >= kMaxAttempts) {
        std::string where =
            p == Phase::kActive ? "during the health window of " : "while activating ";
        return std::move(*this).Fail(
            "restarted", "the agent restarted " + std::to_string(kMaxAttempts) + " times " + where +
                             target().version + ", the last time during " + Name(p));
      }
      a().attempts += 1;
      std::string attempt =
          " (attempt " + std::to_string(a().attempts) + " of " + std::to_string(kMaxAttempts) + ")";
      if (p == Phase::kActive) {
        ServeActive();
        return std::move(*this).Done("restarted during the health window; serving " +
                                     a().active_version + attempt);
      }
      // The old version first, then the phase's work again.
      if (!a().active_version.empty()) {
        ServeActive();
      }
      if (InMemoryPhase(p)) {
        a().phase = Phase::kLoading;
      }
      StartWork();
      return std::move(*this).Done("restarted while " + Name(p) + "; " + Name(a().phase) + " " +
                                   target().version + " again" + attempt);
    }
    if (p == Phase::kFailed) {
      if (a().active_version.empty()) {
        return std::move(*this).Done("restarted after a failure; nothing to serve");
      }
      Do(ActionKind::kRollBack, a().active_version, "");
      return std::move(*this).Done("restarted while going back; going back to " +
                                   a().active_version + " again");
    }
    if (a().active_version.empty()) {
      return std::move(*this).Done("restarted while " + Name(p) + "; nothing to serve");
    }
    ServeActive();
    return std::move(*this).Done("restarted while " + Name(p) + "; serving " + a().active_version);
  }

  Step On(const RolledBack& e) && {
    if (a().phase != Phase::kFailed || a().active_version.empty()) {
      return std::move(*this).Ignore(
          "rolled back while " + Name(a().phase) +
          (a().phase == Phase::kFailed ? " with nothing to go back to" : ""));
    }
    if (e.version != a().active_version) {
      return std::move(*this).Ignore("rolled back to " + e.version + ", not to " +
                                     a().active_version);
    }
    a().phase = Phase::kRolledBack;
    return std::move(*this).Done(a().active_version + " serves again");
  }

 private:
  TimePoint now_;
  Step step_;
};

// ---- the record's JSON ----

constexpr RecordReader kRecord("activation record");

Result<std::optional<double>> GetOptionalNumber(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) {
    return std::optional<double>();
  }
  if (!it->is_number()) {
    return Fail(kRecord.Malformed(key, "must be a number"));
  }
  return std::optional<double>(it->get<double>());
}

json HealthToJson(const HealthLimits& h) {
  json j = {{"window_seconds", h.window.count()}, {"min_requests", h.min_requests}};
  if (h.max_error_rate) {
    j["max_error_rate"] = *h.max_error_rate;
  }
  if (h.max_p99_ms) {
    j["max_p99_ms"] = *h.max_p99_ms;
  }
  return j;
}

Result<Target> TargetFromJson(const json& j) {
  if (!j.is_object()) {
    return Fail(kRecord.Malformed("target", "must be an object"));
  }
  Target t;
  AIRLOCK_ASSIGN_OR_RETURN(t.version, kRecord.String(j, "version"));
  AIRLOCK_ASSIGN_OR_RETURN(t.release, kRecord.String(j, "release"));
  auto h = j.find("health");
  if (h == j.end() || !h->is_object()) {
    return Fail(kRecord.Malformed("health", "must be an object"));
  }
  constexpr auto kMaxWindow = static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t window, kRecord.Unsigned(*h, "window_seconds", kMaxWindow));
  t.health.window = seconds(static_cast<seconds::rep>(window));
  AIRLOCK_ASSIGN_OR_RETURN(
      t.health.min_requests,
      kRecord.Unsigned(*h, "min_requests", std::numeric_limits<std::uint64_t>::max()));
  AIRLOCK_ASSIGN_OR_RETURN(t.health.max_error_rate, GetOptionalNumber(*h, "max_error_rate"));
  AIRLOCK_ASSIGN_OR_RETURN(t.health.max_p99_ms, GetOptionalNumber(*h, "max_p99_ms"));
  if (std::string why = CheckTarget(t); !why.empty()) {
    return Fail(kRecord.Malformed("target", why));
  }
  return t;
}

// The journal's file for a model.
std::filesystem::path JournalPath(const std::filesystem::path& dir, const std::string& model) {
  return dir / (model + ".json");
}

constexpr std::uint64_t kMaxJournalSize = 64 * 1024;

}  // namespace

const char* PhaseName(Phase phase) {
  for (const auto& [p, text] : kPhases) {
    if (p == phase) {
      return text;
    }
  }
  return "?";
}

std::optional<Phase> ParsePhase(std::string_view name) {
  for (const auto& [p, text] : kPhases) {
    if (name == text) {
      return p;
    }
  }
  return std::nullopt;
}

bool InProgress(Phase phase) {
  return phase == Phase::kDownloading || phase == Phase::kVerifying || phase == Phase::kStaged ||
         InMemoryPhase(phase);
}

const char* EventName(const Event& event) {
  static constexpr const char* kNames[] = {"new-target",    "phase-done", "phase-failed",
                                           "health-sample", "tick",       "restarted",
                                           "rolled-back"};
  static_assert(std::variant_size_v<Event> == std::size(kNames));
  return kNames[event.index()];
}

const char* ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDownload:
      return "download";
    case ActionKind::kVerify:
      return "verify";
    case ActionKind::kStage:
      return "stage";
    case ActionKind::kLoad:
      return "load";
    case ActionKind::kCommit:
      return "commit";
    case ActionKind::kServe:
      return "serve";
    case ActionKind::kRollBack:
      return "roll-back";
    case ActionKind::kReport:
      return "report";
  }
  return "?";
}

Activation NewActivation(std::string model, std::string active_version, std::string active_release,
                         TimePoint now) {
  assert(delivery::ValidModelName(model));
  assert(active_version.empty() == active_release.empty());
  assert(active_version.empty() ||
         (delivery::ValidVersion(active_version) && ValidRelease(active_release)));
  Activation a;
  a.model = std::move(model);
  a.active_version = std::move(active_version);
  a.active_release = std::move(active_release);
  a.updated_at = std::chrono::floor<seconds>(now);
  return a;
}

Step Apply(const Activation& activation, const Event& event, TimePoint now) {
  return std::visit([&](const auto& e) { return Machine(activation, now).On(e); }, event);
}

std::optional<TimePoint> NextWakeup(const Activation& activation) {
  if (activation.phase != Phase::kActive) {
    return std::nullopt;
  }
  return activation.health_until;
}

json Activation::ToJson() const {
  json j = {{"model", model},
            {"phase", PhaseName(phase)},
            {"directive_version", directive_version},
            {"active_version", active_version},
            {"active_release", active_release},
            {"previous_version", previous_version},
            {"previous_release", previous_release},
            {"attempts", attempts},
            {"updated_at", FormatRfc3339(updated_at)}};
  if (target) {
    j["target"] = {{"version", target->version},
                   {"release", target->release},
                   {"health", HealthToJson(target->health)}};
  }
  if (health_until) {
    j["health_until"] = FormatRfc3339(*health_until);
  }
  if (last_error) {
    j["last_error"] = {{"code", last_error->code}, {"message", last_error->message}};
  }
  return j;
}

Result<Activation> Activation::FromJson(const json& j) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kCorrupt, "malformed activation record: want a JSON object");
  }
  Activation a;
  AIRLOCK_ASSIGN_OR_RETURN(a.model, kRecord.String(j, "model"));
  if (!delivery::ValidModelName(a.model)) {
    return Fail(kRecord.Malformed("model", "must be a model name"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string phase, kRecord.String(j, "phase"));
  auto parsed = ParsePhase(phase);
  if (!parsed) {
    return Fail(kRecord.Malformed("phase", "is not an activation phase"));
  }
  a.phase = *parsed;
  AIRLOCK_ASSIGN_OR_RETURN(
      a.directive_version,
      kRecord.Unsigned(j, "directive_version", std::numeric_limits<std::uint64_t>::max()));
  if (auto t = j.find("target"); t != j.end()) {
    AIRLOCK_ASSIGN_OR_RETURN(a.target, TargetFromJson(*t));
  }
  if (a.target.has_value() == (a.phase == Phase::kIdle)) {
    return Fail(kRecord.Malformed("target",
                          a.target ? "must be absent while idle" : "must be present unless idle"));
  }
  // Versions and releases, in pairs: both empty or both valid.
  struct Pair {
    const char* version_key;
    const char* release_key;
    std::string* version;
    std::string* release;
  };
  for (const Pair& pair :
       {Pair{"active_version", "active_release", &a.active_version, &a.active_release},
        Pair{"previous_version", "previous_release", &a.previous_version, &a.previous_release}}) {
    AIRLOCK_ASSIGN_OR_RETURN(*pair.version, kRecord.String(j, pair.version_key));
    AIRLOCK_ASSIGN_OR_RETURN(*pair.release, kRecord.String(j, pair.release_key));
    if (!pair.version->empty() && !delivery::ValidVersion(*pair.version)) {
      return Fail(kRecord.Malformed(pair.version_key, "must be an OCI tag or empty"));
    }
    if (!pair.release->empty() && !ValidRelease(*pair.release)) {
      return Fail(kRecord.Malformed(pair.release_key, "must be a sha256 digest or empty"));
    }
    if (pair.version->empty() != pair.release->empty()) {
      return Fail(kRecord.Malformed(pair.release_key,
                            std::string("must be set exactly when ") + pair.version_key + " is"));
    }
  }
  if (!a.previous_version.empty() &&
      (a.active_version.empty() || a.previous_release == a.active_release)) {
    return Fail(kRecord.Malformed("previous_version", "needs an active version other than itself"));
  }
  if (a.target) {
    bool targets_active = a.target->release == a.active_release;
    if ((a.phase == Phase::kActive) != targets_active) {
      return Fail(kRecord.Malformed("active_release", a.phase == Phase::kActive
                                                  ? "must be the target's release while active"
                                                  : "must not be the target's release unless "
                                                    "active"));
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(a.health_until, kRecord.OptionalTime(j, "health_until"));
  if (a.health_until && (a.phase != Phase::kActive || a.target->health.window.count() == 0)) {
    return Fail(kRecord.Malformed("health_until", "only while active with a health window"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t attempts, kRecord.Unsigned(j, "attempts", kMaxAttempts));
  a.attempts = static_cast<std::uint32_t>(attempts);
  bool working = InProgress(a.phase) || a.health_until.has_value();
  if (working != (a.attempts > 0)) {
    return Fail(kRecord.Malformed("attempts", working ? "must be at least 1 while work runs"
                                              : "must be 0 while no work runs"));
  }
  if (auto e = j.find("last_error"); e != j.end()) {
    if (!e->is_object()) {
      return Fail(kRecord.Malformed("last_error", "must be {\"code\", \"message\"}"));
    }
    ActivationError error;
    AIRLOCK_ASSIGN_OR_RETURN(error.code, kRecord.String(*e, "code"));
    AIRLOCK_ASSIGN_OR_RETURN(error.message, kRecord.String(*e, "message"));
    if (!ValidErrorCode(error.code)) {
      return Fail(kRecord.Malformed("last_error", "code must be 1-64 of [a-z0-9-]"));
    }
    if (error.message.size() > kMaxMessageLength) {
      return Fail(kRecord.Malformed(
          "last_error", "message is longer than " + std::to_string(kMaxMessageLength) + " bytes"));
    }
    if (!delivery::wire::IsDisplayableText(error.message)) {
      return Fail(kRecord.Malformed("last_error", "message must not contain control characters"));
    }
    a.last_error = std::move(error);
  }
  bool failed = a.phase == Phase::kFailed || a.phase == Phase::kRolledBack;
  if (failed != a.last_error.has_value()) {
    return Fail(kRecord.Malformed("last_error", failed ? "must be present after a failure"
                                               : "must be absent unless failed or rolled back"));
  }
  if (a.phase == Phase::kRolledBack && a.active_version.empty()) {
    return Fail(kRecord.Malformed("active_version", "must be set when rolled back"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string updated, kRecord.String(j, "updated_at"));
  auto updated_at = ParseRfc3339(updated);
  if (!updated_at) {
    return Fail(kRecord.Malformed("updated_at", "must be an RFC 3339 time"));
  }
  a.updated_at = *updated_at;
  return a;
}

Status SaveJournal(const std::filesystem::path& dir, const Activation& activation) {
  assert(delivery::ValidModelName(activation.model));
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
    // So that the new directory itself survives a power cut.
    AIRLOCK_RETURN_IF_ERROR(
        SyncDirectory(dir.has_parent_path() ? dir.parent_path() : std::filesystem::path(".")));
  }
  std::filesystem::path path = JournalPath(dir, activation.model);
  RemoveStaleTemporaries(path);
  return WithContext(WriteFileAtomic(path, activation.ToJson().dump(2) + "\n"),
                     "while writing the activation journal of " + activation.model);
}

Result<std::map<std::string, Activation>> LoadJournals(const std::filesystem::path& dir) {
  std::map<std::string, Activation> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    return out;
  }
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::filesystem::path& path = it->path();
    std::string name = path.filename().string();
    std::error_code type_ec;
    if (name.starts_with(".") || path.extension() != ".json" || !it->is_regular_file(type_ec)) {
      continue;
    }
    auto corrupt = [&path](const std::string& why) {
      return Fail(ErrorCode::kCorrupt, "activation journal " + path.string() + ": " + why);
    };
    auto text = ReadFile(path, kMaxJournalSize);
    if (!text && text.error().code() == ErrorCode::kInvalidArgument) {
      return corrupt("larger than " + std::to_string(kMaxJournalSize) + " bytes");
    }
    if (!text) {
      return Fail(std::move(text).error().WithContext("while reading the activation journal " +
                                                      path.string()));
    }
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) {
      return corrupt("not JSON");
    }
    auto record = Activation::FromJson(j);
    if (!record) {
      return corrupt(record.error().message());
    }
    if (path.stem().string() != record->model) {
      return corrupt("holds the record of " + record->model);
    }
    std::string model = record->model;
    out.emplace(std::move(model), std::move(*record));
  }
  if (ec) {
    return Fail(ErrorCode::kIo,
                "cannot list the activation journal " + dir.string() + ": " + ec.message());
  }
  return out;
}

}  // namespace airlock::agent
