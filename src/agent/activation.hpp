#pragma once
// The agent's activation state machine (DESIGN §6 "Activation", docs/rollout.md §4), one per
// model on a device, as a pure function: Apply(record, event, now) returns the next record and
// the actions the agent performs. Nothing here reads a clock, touches the model store, loads a
// model or publishes; after an applied step the agent persists the returned record (SaveJournal)
// and then performs the actions, in order, before it applies the next event of that model.
//
//   idle/active/failed/rolled-back ──NewTarget──► downloading ─► verifying ─► staged ─► loading
//        (installed already: straight to loading)
//   loading ─► warming-up ─► validating ──commit──► active (health window) ──Tick──► active
//   a failure before active, or in the health window ──► failed ──RolledBack──► rolled-back
//
// Who serves. `active` is the committed version: it serves in every phase, the new version is
// loaded beside it and only the Commit action switches. `previous` is the version the active one
// replaced at its commit; it stays installed and is what a failure during the health window goes
// back to. Before the commit a failure goes back to `active`, which never stopped being the
// committed version. So a SIGKILL at any point ends, after Restarted, on the old or the new
// version: before the journal says active the old one, from then on the new one.
//
// Superseding. A NewTarget with a newer directive version that names another release abandons a
// target in progress (the agent drops what it loaded for it; the active version keeps serving)
// and starts the new one. Finishing first was rejected: a directive that changed its mind (a
// rollout aborted and sent the previous release) must not wait for a download it no longer wants.
// A rollback directive is an ordinary NewTarget naming an older release that is still installed
// (NewTarget::installed): download, verify and stage are skipped.
//
// Failures. A failed target is not retried by the machine: the gateway sees the failure on
// dev/{dev}/state and decides (a NewTarget with a newer directive version may name it again).
// A failure with nothing to go back to (the model's first activation) ends in failed with
// nothing serving the model; the error's message says so, and RolledBack is not expected.
//
// Crashes. A model can crash the process that loads it. Each phase's work is started at most
// kMaxAttempts times: the restarts within loading, warming-up and validating (one piece of work
// in memory, redone from loading) or within one of the other phases are counted, and the third
// restart fails the target and goes back. The health window counts restarts the same way.
//
// Idempotent by construction: an event that does not apply (a repeat, a report of an abandoned
// target, a stale timer, an older directive) is ignored: Step::applied is false, the record is
// returned unchanged and Step::note says why. Apply never fails. Plain values and free functions;
// thread-compatible.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock::agent {

enum class Phase {
  kIdle,         // nothing to do: the active version (maybe none) is what the directives want
  kDownloading,  // fetching the target's package from the gateway's registry
  kVerifying,    // checking the package against its signed release and the pinned root
  kStaged,       // verified; being installed into the model store beside the other versions
  kLoading,      // installed; being loaded into the runtime beside the active version
  kWarmingUp,    // loaded; running warm-up requests
  kValidating,   // warmed up; running the package's samples against their expected outputs
  kActive,       // committed and serving; health_until is set while the health window runs
  kFailed,       // the target failed; going back to the active version (or none is left)
  kRolledBack,   // the target failed and the active version serves again
};
// "idle", "downloading", "verifying", "staged", "loading", "warming-up", "validating", "active",
// "failed", "rolled-back": stable, they go on the wire in dev/{dev}/state.
const char* PhaseName(Phase phase);
std::optional<Phase> ParsePhase(std::string_view name);
// The phases of a target on its way to active, before the commit.
bool InProgress(Phase phase);

// A restart inside one phase's work this many times fails the target (see above).
inline constexpr std::uint32_t kMaxAttempts = 3;

// When a committed version is judged healthy, from the directive's "health" (the agent maps
// trust's form onto these fields).
struct HealthLimits {
  std::chrono::seconds window{0};        // 0: no health window; the commit is final at once
  std::optional<double> max_error_rate;  // a fraction in [0, 1]; none: not judged
  std::optional<double> max_p99_ms;      // positive; none: not judged
  // Samples over fewer requests are not judged: one failed request out of two is no evidence.
  std::uint64_t min_requests = 10;
  bool operator==(const HealthLimits&) const = default;
};

// What the newest directive asks this model to run.
struct Target {
  std::string version;  // ValidVersion
  std::string release;  // the release's id, "sha256:<64 hex>"
  HealthLimits health;
  bool operator==(const Target&) const = default;
};

// Why the last target failed: a stable code and text for a person.
struct ActivationError {
  // The agent's code ("download", "digest-mismatch", "no-space", "load-error",
  // "samples-mismatch", …) or the machine's own: "health", "restarted". 1-64 of [a-z0-9-].
  std::string code;
  std::string message;  // at most kMaxMessageLength bytes of UTF-8, no control characters
  bool operator==(const ActivationError&) const = default;
};
inline constexpr std::size_t kMaxMessageLength = 1024;

// The record the agent journals for one model; everything the machine needs, so that a restarted
// agent resumes from it. Invariants (FromJson refuses records that break them):
//   - target is absent exactly in idle; in every other phase it is the directive's target;
//   - active_version and active_release are both empty (nothing committed) or both set, and so
//     are previous_*; previous is set only when active is, and differs from it;
//   - active: active is the target's release; in progress, failed, rolled-back: it is not;
//   - health_until only in active, with a health window; attempts is 1..kMaxAttempts exactly
//     while work runs (in progress, or the health window), else 0;
//   - last_error exactly in failed and rolled-back; rolled-back has an active version.
struct Activation {
  std::string model;  // ValidModelName; also the journal's file name
  Phase phase = Phase::kIdle;
  // The newest directive applied to this model (0: none). A NewTarget must be newer.
  std::uint64_t directive_version = 0;
  std::optional<Target> target;
  std::string active_version;  // committed and serving; "" when nothing ever was
  std::string active_release;
  std::string previous_version;  // what active replaced at its commit; still installed
  std::string previous_release;
  std::uint32_t attempts = 0;
  std::optional<TimePoint> health_until;
  std::optional<ActivationError> last_error;
  TimePoint updated_at;

  bool operator==(const Activation&) const = default;

  nlohmann::json ToJson() const;
  // kCorrupt naming the field on anything malformed or breaking an invariant above.
  [[nodiscard]] static Result<Activation> FromJson(const nlohmann::json& j);
};

// The record of a model no directive has touched yet: idle, serving active_version (maybe none,
// then both strings are empty; what the agent loaded at start otherwise). Preconditions
// (asserted): a valid model name, and a valid version with a release id or neither.
Activation NewActivation(std::string model, std::string active_version, std::string active_release,
                         TimePoint now);

// ---- events ----

// A newer directive names a release for this model. installed: the agent's store already holds
// that version with that release (a rollback target, or a target tried before), so the package
// need not be fetched, verified and staged again.
struct NewTarget {
  std::uint64_t directive_version = 0;
  std::string version;
  std::string release;
  HealthLimits health;
  bool installed = false;
};
// The agent finished the work of `phase` for the target with release `release`: downloaded,
// verified, staged into the store, loaded, warmed up, validated.
struct PhaseDone {
  Phase phase = Phase::kDownloading;
  std::string release;
};
// The work of `phase` failed for that target. code: a stable reason, as ActivationError::code
// (an invalid code is recorded as "error"); message: for a person (cut to kMaxMessageLength,
// control characters made spaces).
struct PhaseFailed {
  Phase phase = Phase::kDownloading;
  std::string release;
  std::string code;
  std::string message;
};
// What the active version did since its commit, measured by the agent over the health window so
// far: requests answered, those that failed, and their 99th-percentile latency.
struct HealthSample {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  double p99_ms = 0;
};
struct Tick {};       // time passed: at NextWakeup, the health window ends
struct Restarted {};  // the agent process started and read this journal
// The agent performed a RollBack action: `version` serves again.
struct RolledBack {
  std::string version;
};

using Event =
    std::variant<NewTarget, PhaseDone, PhaseFailed, HealthSample, Tick, Restarted, RolledBack>;
const char* EventName(const Event& event);  // "new-target", "phase-done", …

// ---- actions ----

enum class ActionKind {
  kDownload,  // fetch the package of (model, version); send PhaseDone/PhaseFailed(downloading)
  kVerify,    // verify it against the release and the root; PhaseDone/PhaseFailed(verifying)
  kStage,     // install it into the model store; PhaseDone/PhaseFailed(staged)
  // Load version beside the serving one without serving it, warm it up, run the package's
  // samples: PhaseDone(loading), PhaseDone(warming-up), PhaseDone(validating) in turn, or
  // PhaseFailed of the phase that failed.
  kLoad,
  kCommit,    // make version (loaded and validated) serve; unload the others (they stay installed)
  kServe,     // make version serve, loading it if needed, and unload every other version of the
              // model; "" means serve nothing. No event back.
  kRollBack,  // as kServe, for a failed target; then send RolledBack{version}
  kReport,    // publish this model's state on dev/{dev}/state
};
const char* ActionKindName(ActionKind kind);  // "download", …, "roll-back", "report"

struct Action {
  ActionKind kind = ActionKind::kReport;
  std::string version;  // the version acted on; "" for kReport (and kServe of nothing)
  std::string release;  // the target's release for kDownload … kCommit, else ""
  bool operator==(const Action&) const = default;
};

// The result of a transition. Every applied step ends with a kReport action.
struct Step {
  Activation activation;  // persist this before performing the actions
  std::vector<Action> actions;
  bool applied = false;  // false: the event was ignored and activation is the input, unchanged
  std::string note;      // what happened, or why the event was ignored
};

// The transition for event at now (whole seconds are kept). Never fails.
Step Apply(const Activation& activation, const Event& event, TimePoint now);

// When the agent must send Tick: the end of a running health window; nullopt otherwise.
std::optional<TimePoint> NextWakeup(const Activation& activation);

// ---- the journal: one file per model, <dir>/<model>.json ----

// Writes the record atomically (temporary file, fsync, rename, fsync of dir), creating dir if
// needed, and removes the temporaries an agent killed while writing this model's journal left.
// kIo when the disk says no; the previous record is then intact.
[[nodiscard]] Status SaveJournal(const std::filesystem::path& dir, const Activation& activation);

// Reads every <model>.json in dir, keyed by model. A missing dir is an empty journal. Dot files
// (temporaries) and files not ending in .json are skipped. kCorrupt naming the file when one is
// not JSON, is not a valid record, or holds another model than its name says; kIo when it cannot
// be read.
[[nodiscard]] Result<std::map<std::string, Activation>> LoadJournals(
    const std::filesystem::path& dir);

}  // namespace airlock::agent
