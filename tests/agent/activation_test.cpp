#include "agent/activation.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/fs.hpp"
#include "support/test_support.hpp"

namespace airlock::agent {
namespace {

using airlock::testing::TempDir;
using std::chrono::minutes;
using std::chrono::seconds;

// 2026-11-22T10:00:00Z.
TimePoint T0() { return TimePoint(seconds(1795341600)); }

const std::string kModel = "visual-inspection";
const std::string kOld = "1.0.0";    // what serves before the directive
const std::string kNew = "1.1.0";    // what the directive asks for
const std::string kOther = "1.2.0";  // what a later directive asks for
const std::string kOldRelease = "sha256:" + std::string(64, 'a');
const std::string kNewRelease = "sha256:" + std::string(64, 'b');
const std::string kOtherRelease = "sha256:" + std::string(64, 'c');

HealthLimits Limits() {
  HealthLimits h;
  h.window = minutes(5);
  h.max_error_rate = 0.05;
  h.max_p99_ms = 250;
  return h;
}

NewTarget NewTargetFor(std::uint64_t directive_version, const std::string& version,
                       const std::string& release, bool installed = false) {
  return NewTarget{.directive_version = directive_version,
                   .version = version,
                   .release = release,
                   .health = Limits(),
                   .installed = installed};
}

using K = ActionKind;
using P = Phase;

std::vector<ActionKind> Kinds(const std::vector<Action>& actions) {
  std::vector<ActionKind> out;
  for (const auto& a : actions) {
    out.push_back(a.kind);
  }
  return out;
}

std::string KindsText(const std::vector<ActionKind>& kinds) {
  std::string out = "[";
  for (auto k : kinds) {
    out += std::string(out.size() > 1 ? " " : "") + ActionKindName(k);
  }
  return out + "]";
}

// ---- fixtures: a record in each phase, reached through the machine itself ----

Activation Next(const Activation& a, const Event& e, seconds after = seconds(10)) {
  Step s = Apply(a, e, a.updated_at + after);
  EXPECT_TRUE(s.applied) << EventName(e) << " while " << PhaseName(a.phase) << ": " << s.note;
  return s.activation;
}

std::map<std::string, Activation> Fixtures() {
  std::map<std::string, Activation> f;
  f["idle"] = NewActivation(kModel, kOld, kOldRelease, T0());
  f["idle-empty"] = NewActivation(kModel, "", "", T0());
  f["downloading"] = Next(f["idle"], NewTargetFor(5, kNew, kNewRelease));
  f["verifying"] = Next(f["downloading"], PhaseDone{P::kDownloading, kNewRelease});
  f["staged"] = Next(f["verifying"], PhaseDone{P::kVerifying, kNewRelease});
  f["loading"] = Next(f["staged"], PhaseDone{P::kStaged, kNewRelease});
  f["warming-up"] = Next(f["loading"], PhaseDone{P::kLoading, kNewRelease});
  f["validating"] = Next(f["warming-up"], PhaseDone{P::kWarmingUp, kNewRelease});
  f["active~window"] = Next(f["validating"], PhaseDone{P::kValidating, kNewRelease});
  f["active"] = Next(f["active~window"], Tick{}, minutes(5));
  f["failed"] = Next(f["loading"],
                     PhaseFailed{P::kLoading, kNewRelease, "load-error", "unsupported operator"});
  f["rolled-back"] = Next(f["failed"], RolledBack{kOld});
  // The model's first activation fails: there is nothing to go back to.
  Activation first = Next(f["idle-empty"], NewTargetFor(2, kNew, kNewRelease));
  f["failed-nothing"] =
      Next(first, PhaseFailed{P::kDownloading, kNewRelease, "no-space", "needs 80 MB, 12 MB free"});
  return f;
}

// The events of the table, made for the fixture they are applied to.
enum class E {
  kNewOther,      // a newer directive names another release, to download
  kNewInstalled,  // … another release the store holds already
  kNewActive,     // … the active release (1.0.0 when nothing is active)
  kNewSame,       // … the target's release (1.1.0 when there is no target)
  kNewStale,      // a directive that is not newer, naming another release
  kDone,          // the current phase's work is done (downloading outside the phases of work)
  kDoneStale,     // … for another release (an abandoned target)
  kFailed,        // the current phase's work failed
  kHealthy,       // a health sample within the limits
  kBreach,        // a health sample over them
  kTick,          // at the end of the health window, or 10 s on
  kRestarted,
  kRolledBack,  // to the active version (1.0.0 when nothing is active)
};
constexpr E kAllEvents[] = {E::kNewOther,  E::kNewInstalled, E::kNewActive, E::kNewSame,
                            E::kNewStale,  E::kDone,         E::kDoneStale, E::kFailed,
                            E::kHealthy,   E::kBreach,       E::kTick,      E::kRestarted,
                            E::kRolledBack};

const char* EName(E e) {
  static constexpr const char* kNames[] = {"new-other",  "new-installed", "new-active", "new-same",
                                           "new-stale",  "done",          "done-stale", "failed",
                                           "healthy",    "breach",        "tick",       "restarted",
                                           "rolled-back"};
  return kNames[static_cast<int>(e)];
}

std::pair<Event, TimePoint> Make(E e, const Activation& a) {
  TimePoint soon = a.updated_at + seconds(10);
  std::uint64_t dv = a.directive_version;
  Phase work = InProgress(a.phase) ? a.phase : P::kDownloading;
  std::string release = a.target ? a.target->release : kNewRelease;
  std::string version = a.target ? a.target->version : kNew;
  std::string active = a.active_version.empty() ? kOld : a.active_version;
  std::string active_release = a.active_release.empty() ? kOldRelease : a.active_release;
  switch (e) {
    case E::kNewOther:
      return {NewTargetFor(dv + 1, kOther, kOtherRelease), soon};
    case E::kNewInstalled:
      return {NewTargetFor(dv + 1, kOther, kOtherRelease, true), soon};
    case E::kNewActive:
      return {NewTargetFor(dv + 1, active, active_release), soon};
    case E::kNewSame:
      return {NewTargetFor(dv + 1, version, release), soon};
    case E::kNewStale:
      return {NewTargetFor(dv, kOther, kOtherRelease), soon};
    case E::kDone:
      return {PhaseDone{work, release}, soon};
    case E::kDoneStale:
      return {PhaseDone{work, kOtherRelease}, soon};
    case E::kFailed:
      return {PhaseFailed{work, release, "load-error", "boom"}, soon};
    case E::kHealthy:
      return {HealthSample{100, 1, 120}, soon};
    case E::kBreach:
      return {HealthSample{100, 12, 120}, soon};
    case E::kTick:
      return {Tick{}, a.health_until.value_or(soon)};
    case E::kRestarted:
      return {Restarted{}, soon};
    case E::kRolledBack:
      return {RolledBack{active}, soon};
  }
  return {Restarted{}, soon};
}

struct Row {
  std::string from;
  E event;
  bool applied;
  Phase to;
  std::vector<ActionKind> actions;
};

constexpr bool kApplied = true;
constexpr bool kIgnored = false;

// Short names for the table's action lists.
const std::vector<ActionKind> kNothing = {};
const std::vector<ActionKind> kReport = {K::kReport};
const std::vector<ActionKind> kDownload = {K::kDownload, K::kReport};
const std::vector<ActionKind> kLoad = {K::kLoad, K::kReport};
const std::vector<ActionKind> kServe = {K::kServe, K::kReport};
const std::vector<ActionKind> kRollBack = {K::kRollBack, K::kReport};
const std::vector<ActionKind> kServeDownload = {K::kServe, K::kDownload, K::kReport};
const std::vector<ActionKind> kServeLoad = {K::kServe, K::kLoad, K::kReport};

// The rows every phase of work (downloading … validating) shares: a newer directive supersedes or
// confirms the target, reports of an abandoned target and anything about health are ignored.
std::vector<Row> WorkRows(const std::string& from, Phase phase, std::vector<ActionKind> done,
                          Phase after_done, std::vector<ActionKind> restart) {
  Phase after_restart = phase == P::kWarmingUp || phase == P::kValidating ? P::kLoading : phase;
  return {
      {from, E::kNewOther, kApplied, P::kDownloading, kServeDownload},
      {from, E::kNewInstalled, kApplied, P::kLoading, kServeLoad},
      {from, E::kNewActive, kApplied, P::kIdle, kServe},
      {from, E::kNewSame, kApplied, phase, kReport},
      {from, E::kNewStale, kIgnored, phase, kNothing},
      {from, E::kDone, kApplied, after_done, std::move(done)},
      {from, E::kDoneStale, kIgnored, phase, kNothing},
      {from, E::kFailed, kApplied, P::kFailed, kRollBack},
      {from, E::kHealthy, kIgnored, phase, kNothing},
      {from, E::kBreach, kIgnored, phase, kNothing},
      {from, E::kTick, kIgnored, phase, kNothing},
      {from, E::kRestarted, kApplied, after_restart, std::move(restart)},
      {from, E::kRolledBack, kIgnored, phase, kNothing},
  };
}

// Every (phase, event) pair; "~window" is active with its health window running, "-empty" and
// "-nothing" have no active version. Ignored rows keep the fixture's phase.
std::vector<Row> Table() {
  std::vector<Row> t = {
      // idle: the directive asks for what serves.
      {"idle", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"idle", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"idle", E::kNewActive, kApplied, P::kIdle, kReport},
      {"idle", E::kNewSame, kApplied, P::kDownloading, kDownload},
      {"idle", E::kNewStale, kIgnored, P::kIdle, kNothing},
      {"idle", E::kDone, kIgnored, P::kIdle, kNothing},
      {"idle", E::kDoneStale, kIgnored, P::kIdle, kNothing},
      {"idle", E::kFailed, kIgnored, P::kIdle, kNothing},
      {"idle", E::kHealthy, kIgnored, P::kIdle, kNothing},
      {"idle", E::kBreach, kIgnored, P::kIdle, kNothing},
      {"idle", E::kTick, kIgnored, P::kIdle, kNothing},
      {"idle", E::kRestarted, kApplied, P::kIdle, kServe},
      {"idle", E::kRolledBack, kIgnored, P::kIdle, kNothing},
      // idle with nothing installed or served yet: every release is new.
      {"idle-empty", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"idle-empty", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"idle-empty", E::kNewActive, kApplied, P::kDownloading, kDownload},
      {"idle-empty", E::kNewSame, kApplied, P::kDownloading, kDownload},
      {"idle-empty", E::kNewStale, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kDone, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kDoneStale, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kFailed, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kHealthy, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kBreach, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kTick, kIgnored, P::kIdle, kNothing},
      {"idle-empty", E::kRestarted, kApplied, P::kIdle, kReport},
      {"idle-empty", E::kRolledBack, kIgnored, P::kIdle, kNothing},
      // active, health window running: only health, the window's end and newer directives count.
      {"active~window", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"active~window", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"active~window", E::kNewActive, kApplied, P::kActive, kReport},
      {"active~window", E::kNewSame, kApplied, P::kActive, kReport},
      {"active~window", E::kNewStale, kIgnored, P::kActive, kNothing},
      {"active~window", E::kDone, kIgnored, P::kActive, kNothing},
      {"active~window", E::kDoneStale, kIgnored, P::kActive, kNothing},
      {"active~window", E::kFailed, kIgnored, P::kActive, kNothing},
      {"active~window", E::kHealthy, kIgnored, P::kActive, kNothing},
      {"active~window", E::kBreach, kApplied, P::kFailed, kRollBack},
      {"active~window", E::kTick, kApplied, P::kActive, kReport},
      {"active~window", E::kRestarted, kApplied, P::kActive, kServe},
      {"active~window", E::kRolledBack, kIgnored, P::kActive, kNothing},
      // active for good.
      {"active", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"active", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"active", E::kNewActive, kApplied, P::kActive, kReport},
      {"active", E::kNewSame, kApplied, P::kActive, kReport},
      {"active", E::kNewStale, kIgnored, P::kActive, kNothing},
      {"active", E::kDone, kIgnored, P::kActive, kNothing},
      {"active", E::kDoneStale, kIgnored, P::kActive, kNothing},
      {"active", E::kFailed, kIgnored, P::kActive, kNothing},
      {"active", E::kHealthy, kIgnored, P::kActive, kNothing},
      {"active", E::kBreach, kIgnored, P::kActive, kNothing},
      {"active", E::kTick, kIgnored, P::kActive, kNothing},
      {"active", E::kRestarted, kApplied, P::kActive, kServe},
      {"active", E::kRolledBack, kIgnored, P::kActive, kNothing},
      // failed, going back to 1.0.0: the target is not retried until a newer directive.
      {"failed", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"failed", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"failed", E::kNewActive, kApplied, P::kIdle, kReport},
      {"failed", E::kNewSame, kApplied, P::kDownloading, kDownload},
      {"failed", E::kNewStale, kIgnored, P::kFailed, kNothing},
      {"failed", E::kDone, kIgnored, P::kFailed, kNothing},
      {"failed", E::kDoneStale, kIgnored, P::kFailed, kNothing},
      {"failed", E::kFailed, kIgnored, P::kFailed, kNothing},
      {"failed", E::kHealthy, kIgnored, P::kFailed, kNothing},
      {"failed", E::kBreach, kIgnored, P::kFailed, kNothing},
      {"failed", E::kTick, kIgnored, P::kFailed, kNothing},
      {"failed", E::kRestarted, kApplied, P::kFailed, kRollBack},
      {"failed", E::kRolledBack, kApplied, P::kRolledBack, kReport},
      // failed on the first activation: nothing serves, nothing to go back to.
      {"failed-nothing", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"failed-nothing", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"failed-nothing", E::kNewActive, kApplied, P::kDownloading, kDownload},
      {"failed-nothing", E::kNewSame, kApplied, P::kDownloading, kDownload},
      {"failed-nothing", E::kNewStale, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kDone, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kDoneStale, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kFailed, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kHealthy, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kBreach, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kTick, kIgnored, P::kFailed, kNothing},
      {"failed-nothing", E::kRestarted, kApplied, P::kFailed, kReport},
      {"failed-nothing", E::kRolledBack, kIgnored, P::kFailed, kNothing},
      // rolled back: 1.0.0 serves again.
      {"rolled-back", E::kNewOther, kApplied, P::kDownloading, kDownload},
      {"rolled-back", E::kNewInstalled, kApplied, P::kLoading, kLoad},
      {"rolled-back", E::kNewActive, kApplied, P::kIdle, kReport},
      {"rolled-back", E::kNewSame, kApplied, P::kDownloading, kDownload},
      {"rolled-back", E::kNewStale, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kDone, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kDoneStale, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kFailed, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kHealthy, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kBreach, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kTick, kIgnored, P::kRolledBack, kNothing},
      {"rolled-back", E::kRestarted, kApplied, P::kRolledBack, kServe},
      {"rolled-back", E::kRolledBack, kIgnored, P::kRolledBack, kNothing},
  };
  auto add = [&t](std::vector<Row> rows) { t.insert(t.end(), rows.begin(), rows.end()); };
  add(WorkRows("downloading", P::kDownloading, {K::kVerify, K::kReport}, P::kVerifying,
               kServeDownload));
  add(WorkRows("verifying", P::kVerifying, {K::kStage, K::kReport}, P::kStaged,
               {K::kServe, K::kVerify, K::kReport}));
  add(WorkRows("staged", P::kStaged, kLoad, P::kLoading, {K::kServe, K::kStage, K::kReport}));
  add(WorkRows("loading", P::kLoading, kReport, P::kWarmingUp, kServeLoad));
  add(WorkRows("warming-up", P::kWarmingUp, kReport, P::kValidating, kServeLoad));
  add(WorkRows("validating", P::kValidating, {K::kCommit, K::kReport}, P::kActive, kServeLoad));
  return t;
}

void CheckRow(const Row& row, const Activation& from) {
  SCOPED_TRACE(row.from + " + " + EName(row.event));
  auto [event, now] = Make(row.event, from);
  Step step = Apply(from, event, now);
  EXPECT_EQ(step.applied, row.applied) << step.note;
  EXPECT_FALSE(step.note.empty());
  EXPECT_EQ(PhaseName(step.activation.phase), std::string(PhaseName(row.to))) << step.note;
  EXPECT_EQ(KindsText(Kinds(step.actions)), KindsText(row.actions)) << step.note;
  if (!row.applied) {
    EXPECT_EQ(step.activation, from) << "an ignored event changed the record";
    return;
  }
  EXPECT_EQ(step.activation.updated_at, now);
  ASSERT_FALSE(step.actions.empty());
  EXPECT_EQ(step.actions.back().kind, K::kReport);
  // A persisted step reads back as it was written.
  auto back = Activation::FromJson(step.activation.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, step.activation);
}

TEST(ActivationTableTest, EveryEventInEveryPhase) {
  auto fixtures = Fixtures();
  std::map<std::string, int> rows_per_fixture;
  std::set<Phase> phases;
  for (const Row& row : Table()) {
    ASSERT_TRUE(fixtures.contains(row.from)) << row.from;
    CheckRow(row, fixtures.at(row.from));
    rows_per_fixture[row.from] += 1;
    phases.insert(fixtures.at(row.from).phase);
  }
  // The table is complete: every event for every fixture, and the fixtures cover every phase.
  EXPECT_EQ(rows_per_fixture.size(), fixtures.size());
  for (const auto& [from, n] : rows_per_fixture) {
    EXPECT_EQ(n, static_cast<int>(std::size(kAllEvents))) << from;
  }
  EXPECT_EQ(phases.size(), 10u);
}

TEST(ActivationTableTest, FixturesHaveTheExpectedShape) {
  auto f = Fixtures();
  EXPECT_EQ(f["downloading"].attempts, 1u);
  EXPECT_EQ(f["downloading"].directive_version, 5u);
  EXPECT_EQ(f["downloading"].active_version, kOld);
  EXPECT_EQ(f["validating"].attempts, 1u);
  const Activation& window = f["active~window"];
  EXPECT_EQ(window.active_version, kNew);
  EXPECT_EQ(window.previous_version, kOld);
  EXPECT_EQ(window.health_until, window.updated_at + minutes(5));
  EXPECT_EQ(NextWakeup(window), window.health_until);
  EXPECT_FALSE(f["active"].health_until);
  EXPECT_EQ(f["active"].previous_version, kOld);  // still installed, for a rollback directive
  EXPECT_FALSE(NextWakeup(f["active"]));
  EXPECT_EQ(f["failed"].last_error,
            (ActivationError{"load-error", "loading 1.1.0: unsupported operator"}));
  EXPECT_EQ(f["rolled-back"].active_version, kOld);
  EXPECT_EQ(f["failed-nothing"].last_error->code, "no-space");
  EXPECT_EQ(f["failed-nothing"].last_error->message,
            "downloading 1.1.0: needs 80 MB, 12 MB free (no earlier version to go back to: "
            "nothing serves visual-inspection)");
}

// ---- a simulated device: the journal on disk, what serves, and SIGKILL ----

// Performs the machine's actions the way the agent will, on a pretend runtime, and persists each
// step with SaveJournal before acting. Kill() loses everything but the disk.
class Device {
 public:
  explicit Device(const std::filesystem::path& dir, std::string serving = kOld)
      : dir_(dir), serving_(std::move(serving)) {
    if (!serving_.empty()) {
      loaded_.insert(serving_);
    }
    record_ = serving_.empty() ? NewActivation(kModel, "", "", now_)
                               : NewActivation(kModel, kOld, kOldRelease, now_);
    EXPECT_TRUE(SaveJournal(dir_, record_));
  }

  // Applies event; when persisted, performs the step's actions unless killed before them.
  Step On(const Event& e, bool kill_before_actions = false) {
    now_ += seconds(1);
    Step s = Apply(record_, e, now_);
    if (s.applied) {
      auto saved = SaveJournal(dir_, s.activation);
      EXPECT_TRUE(saved) << saved.error().ToString();
      record_ = s.activation;
    }
    if (kill_before_actions) {
      Kill();
      return s;
    }
    for (const Action& a : s.actions) {
      Perform(a);
    }
    return s;
  }

  // SIGKILL: nothing in memory survives; then the agent starts again from the journal.
  void Kill() {
    serving_.clear();
    loaded_.clear();
    pending_.clear();
    alive_ = false;
  }
  Step Restart() {
    auto journals = LoadJournals(dir_);
    EXPECT_TRUE(journals) << journals.error().ToString();
    record_ = journals->at(kModel);
    alive_ = true;
    return On(Restarted{});
  }

  // Feeds the events the performed actions produced (RolledBack) and the agent's work: each
  // phase of work succeeds, until the activation is out of its phases of work.
  void FinishWork(int max_steps = 20) {
    for (int i = 0; i < max_steps && alive_; ++i) {
      if (!pending_.empty()) {
        Event e = pending_.front();
        pending_.pop_front();
        On(e);
      } else if (InProgress(record_.phase)) {
        On(PhaseDone{record_.phase, record_.target->release});
      } else {
        return;
      }
    }
  }
  void DrainPending() {
    while (!pending_.empty() && alive_) {
      Event e = pending_.front();
      pending_.pop_front();
      On(e);
    }
  }

  const Activation& record() const { return record_; }
  const std::string& serving() const { return serving_; }
  const std::set<std::string>& loaded() const { return loaded_; }
  TimePoint now() const { return now_; }
  void Advance(seconds s) { now_ += s; }

 private:
  void Perform(const Action& a) {
    switch (a.kind) {
      case K::kLoad:
        loaded_.insert(a.version);
        break;
      case K::kCommit:
      case K::kServe:
      case K::kRollBack:
        serving_ = a.version;
        loaded_.clear();
        if (!a.version.empty()) {
          loaded_.insert(a.version);
        }
        if (a.kind == K::kRollBack) {
          pending_.push_back(RolledBack{a.version});
        }
        break;
      default:
        break;
    }
  }

  std::filesystem::path dir_;
  TimePoint now_ = T0();
  Activation record_;
  std::string serving_;
  std::set<std::string> loaded_;
  std::deque<Event> pending_;
  bool alive_ = true;
};

// ---- scenarios ----

TEST(ActivationScenarioTest, HappyPath) {
  TempDir tmp;
  Device dev(tmp / "journal");
  Step s = dev.On(NewTargetFor(7, kNew, kNewRelease));
  ASSERT_EQ(s.actions.size(), 2u);
  EXPECT_EQ(s.actions[0], (Action{K::kDownload, kNew, kNewRelease}));
  EXPECT_EQ(dev.record().phase, P::kDownloading);
  std::vector<Phase> seen;
  while (InProgress(dev.record().phase)) {
    seen.push_back(dev.record().phase);
    EXPECT_EQ(dev.serving(), kOld) << "the old version serves until the commit";
    dev.On(PhaseDone{dev.record().phase, kNewRelease});
  }
  EXPECT_EQ(seen, (std::vector<Phase>{P::kDownloading, P::kVerifying, P::kStaged, P::kLoading,
                                      P::kWarmingUp, P::kValidating}));
  const Activation& a = dev.record();
  EXPECT_EQ(a.phase, P::kActive);
  EXPECT_EQ(dev.serving(), kNew);
  EXPECT_EQ(a.active_release, kNewRelease);
  EXPECT_EQ(a.previous_version, kOld);
  EXPECT_EQ(a.previous_release, kOldRelease);
  EXPECT_EQ(a.directive_version, 7u);
  EXPECT_EQ(a.health_until, dev.now() + minutes(5));
  EXPECT_FALSE(a.last_error);

  // Healthy samples change nothing; the window ends at its time and not before.
  EXPECT_FALSE(dev.On(HealthSample{500, 3, 180}).applied);
  EXPECT_FALSE(dev.On(Tick{}).applied);
  dev.Advance(minutes(5));
  s = dev.On(Tick{});
  EXPECT_TRUE(s.applied) << s.note;
  EXPECT_EQ(dev.record().phase, P::kActive);
  EXPECT_FALSE(dev.record().health_until);
  EXPECT_EQ(dev.record().previous_version, kOld);
  EXPECT_FALSE(NextWakeup(dev.record()));
  EXPECT_EQ(dev.serving(), kNew);
}

TEST(ActivationScenarioTest, NoHealthWindowCommitsForGood) {
  Activation a = NewActivation(kModel, kOld, kOldRelease, T0());
  NewTarget t = NewTargetFor(1, kNew, kNewRelease, true);
  t.health = {};
  a = Next(a, t);
  EXPECT_EQ(a.phase, P::kLoading);
  for (Phase p : {P::kLoading, P::kWarmingUp, P::kValidating}) {
    a = Next(a, PhaseDone{p, kNewRelease});
  }
  EXPECT_EQ(a.phase, P::kActive);
  EXPECT_FALSE(a.health_until);
  EXPECT_EQ(a.attempts, 0u);
  EXPECT_FALSE(NextWakeup(a));
}

TEST(ActivationScenarioTest, FailureInEachPhaseGoesBackToTheOldVersion) {
  const std::map<Phase, std::string> codes = {
      {P::kDownloading, "download"}, {P::kVerifying, "digest-mismatch"},
      {P::kStaged, "no-space"},      {P::kLoading, "load-error"},
      {P::kWarmingUp, "load-error"}, {P::kValidating, "samples-mismatch"}};
  for (const auto& [phase, code] : codes) {
    SCOPED_TRACE(PhaseName(phase));
    TempDir tmp;
    Device dev(tmp / "journal");
    dev.On(NewTargetFor(3, kNew, kNewRelease));
    while (dev.record().phase != phase) {
      dev.On(PhaseDone{dev.record().phase, kNewRelease});
    }
    Step s = dev.On(PhaseFailed{phase, kNewRelease, code, "what went wrong"});
    EXPECT_EQ(s.activation.phase, P::kFailed);
    EXPECT_EQ(s.actions[0], (Action{K::kRollBack, kOld, ""}));
    EXPECT_EQ(dev.record().last_error->code, code);
    EXPECT_EQ(dev.record().last_error->message,
              std::string(PhaseName(phase)) + " 1.1.0: what went wrong");
    dev.DrainPending();  // the agent's RolledBack
    EXPECT_EQ(dev.record().phase, P::kRolledBack);
    EXPECT_EQ(dev.serving(), kOld);
    EXPECT_EQ(dev.loaded(), std::set<std::string>{kOld}) << "the failed version was unloaded";
    EXPECT_EQ(dev.record().active_version, kOld);
    EXPECT_EQ(dev.record().last_error->code, code);  // the gateway sees why
    // The machine does not try again on its own: the same directive repeated changes nothing.
    EXPECT_FALSE(dev.On(NewTargetFor(3, kNew, kNewRelease)).applied);
    // A newer directive may name it again.
    EXPECT_EQ(dev.On(NewTargetFor(4, kNew, kNewRelease)).activation.phase, P::kDownloading);
    EXPECT_FALSE(dev.record().last_error);
  }
}

TEST(ActivationScenarioTest, FirstActivationFailingLeavesNothingServing) {
  TempDir tmp;
  Device dev(tmp / "journal", "");
  dev.On(NewTargetFor(1, kNew, kNewRelease));
  dev.FinishWork();
  ASSERT_EQ(dev.record().phase, P::kActive);
  EXPECT_EQ(dev.record().previous_version, "");
  // A breach in the window: there is no older version to go back to.
  Step s = dev.On(HealthSample{40, 40, 10});
  EXPECT_EQ(s.activation.phase, P::kFailed);
  EXPECT_EQ(s.actions[0], (Action{K::kServe, "", ""}));
  EXPECT_EQ(dev.serving(), "");
  EXPECT_EQ(dev.record().active_version, "");
  EXPECT_NE(dev.record().last_error->message.find("nothing serves visual-inspection"),
            std::string::npos)
      << dev.record().last_error->message;
  // It stays failed: no RolledBack is expected, a stray one is ignored, and a restart serves
  // nothing.
  EXPECT_FALSE(dev.On(RolledBack{kNew}).applied);
  dev.Kill();
  s = dev.Restart();
  EXPECT_EQ(Kinds(s.actions), std::vector<ActionKind>{K::kReport});
  EXPECT_EQ(dev.record().phase, P::kFailed);
}

// What a SIGKILL does at every point of an activation: after each step is persisted, the agent
// dies before performing its actions; the restarted agent must serve the old or the new version
// at once, and finish the activation on the new one.
TEST(ActivationScenarioTest, KilledAtEveryStepEndsOnTheOldOrTheNewVersion) {
  // The happy path's events, fed one by one; the kill comes after the k-th is persisted.
  std::vector<Event> path = {
      NewTargetFor(9, kNew, kNewRelease),    PhaseDone{P::kDownloading, kNewRelease},
      PhaseDone{P::kVerifying, kNewRelease}, PhaseDone{P::kStaged, kNewRelease},
      PhaseDone{P::kLoading, kNewRelease},   PhaseDone{P::kWarmingUp, kNewRelease},
      PhaseDone{P::kValidating, kNewRelease}};
  for (std::size_t k = 0; k < path.size(); ++k) {
    SCOPED_TRACE("killed after step " + std::to_string(k));
    TempDir tmp;
    Device dev(tmp / "journal");
    for (std::size_t i = 0; i < k; ++i) {
      dev.On(path[i]);
    }
    Step s = dev.On(path[k], /*kill_before_actions=*/true);
    Phase journaled = s.activation.phase;
    EXPECT_EQ(dev.serving(), "");
    s = dev.Restart();
    // Before the commit was journaled the old version serves; from then on the new one.
    std::string expected = journaled == P::kActive ? kNew : kOld;
    EXPECT_EQ(dev.serving(), expected) << PhaseName(journaled) << ": " << s.note;
    if (InProgress(journaled)) {
      EXPECT_EQ(dev.record().attempts, 2u);
      EXPECT_EQ(s.actions.front(), (Action{K::kServe, kOld, ""})) << "the old version first";
    }
    dev.FinishWork();
    EXPECT_EQ(dev.record().phase, P::kActive);
    EXPECT_EQ(dev.serving(), kNew);
    EXPECT_EQ(dev.record().previous_version, kOld);
  }
}

// The same, with the agent killed while doing a phase's work (after its actions, before its
// report): each crash is counted, and the third restart gives the target up.
TEST(ActivationScenarioTest, ThreeRestartsWhileLoadingFailTheTarget) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease, /*installed=*/true));
  ASSERT_EQ(dev.record().phase, P::kLoading);
  ASSERT_EQ(dev.loaded(), (std::set<std::string>{kOld, kNew}));
  // The model crashes the process while loading, warming up, then validating.
  dev.Kill();
  Step s = dev.Restart();
  EXPECT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kServe, K::kLoad, K::kReport}));
  EXPECT_EQ(dev.record().attempts, 2u);
  dev.On(PhaseDone{P::kLoading, kNewRelease});
  dev.Kill();
  s = dev.Restart();
  EXPECT_EQ(dev.record().phase, P::kLoading) << "loaded models do not survive a restart";
  EXPECT_EQ(dev.record().attempts, 3u);
  EXPECT_EQ(dev.serving(), kOld);
  dev.On(PhaseDone{P::kLoading, kNewRelease});
  dev.On(PhaseDone{P::kWarmingUp, kNewRelease});
  dev.Kill();
  s = dev.Restart();
  EXPECT_EQ(s.activation.phase, P::kFailed);
  EXPECT_EQ(dev.record().last_error->code, "restarted");
  EXPECT_EQ(dev.record().last_error->message,
            "the agent restarted 3 times while activating 1.1.0, the last time during validating");
  EXPECT_EQ(dev.serving(), kOld);
  dev.DrainPending();
  EXPECT_EQ(dev.record().phase, P::kRolledBack);
}

TEST(ActivationScenarioTest, RestartsInEveryPhaseAreCountedThere) {
  for (Phase phase : {P::kDownloading, P::kVerifying, P::kStaged}) {
    SCOPED_TRACE(PhaseName(phase));
    TempDir tmp;
    Device dev(tmp / "journal");
    dev.On(NewTargetFor(2, kNew, kNewRelease));
    while (dev.record().phase != phase) {
      dev.On(PhaseDone{dev.record().phase, kNewRelease});
    }
    for (std::uint32_t attempt = 2; attempt <= kMaxAttempts; ++attempt) {
      dev.Kill();
      dev.Restart();
      EXPECT_EQ(dev.record().phase, phase);
      EXPECT_EQ(dev.record().attempts, attempt);
      EXPECT_EQ(dev.serving(), kOld);
    }
    dev.Kill();
    dev.Restart();
    EXPECT_EQ(dev.record().phase, P::kFailed);
    EXPECT_EQ(dev.serving(), kOld);
    // A phase that completes starts the next with a fresh count.
  }
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.Kill();
  dev.Restart();
  dev.Kill();
  dev.Restart();
  EXPECT_EQ(dev.record().attempts, 3u);
  dev.On(PhaseDone{P::kDownloading, kNewRelease});
  EXPECT_EQ(dev.record().attempts, 1u);
}

TEST(ActivationScenarioTest, KilledDuringTheRollbackGoesBackAgain) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  ASSERT_EQ(dev.serving(), kNew);
  // The breach is journaled, and the agent dies before it switched back.
  dev.On(HealthSample{100, 30, 90}, /*kill_before_actions=*/true);
  Step s = dev.Restart();
  EXPECT_EQ(s.actions.front(), (Action{K::kRollBack, kOld, ""}));
  EXPECT_EQ(dev.serving(), kOld);
  dev.DrainPending();
  EXPECT_EQ(dev.record().phase, P::kRolledBack);
  // Restarted in rolled-back just serves the active version.
  dev.Kill();
  s = dev.Restart();
  EXPECT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kServe, K::kReport}));
  EXPECT_EQ(dev.serving(), kOld);
}

TEST(ActivationScenarioTest, HealthBreachRollsBackWithTheNumbers) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  // Too few requests are not judged; a sample that makes no sense is ignored.
  EXPECT_FALSE(dev.On(HealthSample{5, 5, 900}).applied);
  EXPECT_FALSE(dev.On(HealthSample{10, 11, 1}).applied);
  Step s = dev.On(HealthSample{50, 6, 310});
  ASSERT_TRUE(s.applied);
  EXPECT_EQ(dev.record().phase, P::kFailed);
  EXPECT_EQ(dev.record().last_error->code, "health");
  EXPECT_EQ(dev.record().last_error->message,
            "error rate 12.0% (6 of 50 requests) over the limit 5.0%, p99 latency 310 ms over "
            "the limit 250 ms during the health window of 1.1.0");
  EXPECT_EQ(dev.record().active_version, kOld);
  EXPECT_EQ(dev.record().previous_version, "");
  EXPECT_FALSE(dev.record().health_until);
  dev.DrainPending();
  EXPECT_EQ(dev.record().phase, P::kRolledBack);
  EXPECT_EQ(dev.serving(), kOld);

  // Latency alone is enough.
  TempDir tmp2;
  Device dev2(tmp2 / "journal");
  dev2.On(NewTargetFor(2, kNew, kNewRelease));
  dev2.FinishWork();
  dev2.On(HealthSample{1000, 0, 312.5});
  EXPECT_EQ(dev2.record().last_error->message,
            "p99 latency 312.5 ms over the limit 250 ms during the health window of 1.1.0");
}

TEST(ActivationScenarioTest, RestartsDuringTheHealthWindow) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  TimePoint until = *dev.record().health_until;
  // A restart keeps the new version serving, and the window's end.
  dev.Kill();
  Step s = dev.Restart();
  EXPECT_EQ(s.actions.front(), (Action{K::kServe, kNew, ""}));
  EXPECT_EQ(dev.serving(), kNew);
  EXPECT_EQ(dev.record().health_until, until);
  EXPECT_EQ(NextWakeup(dev.record()), until);
  // A model that keeps crashing the process is rolled back at the third restart.
  dev.Kill();
  dev.Restart();
  EXPECT_EQ(dev.serving(), kNew);
  dev.Kill();
  s = dev.Restart();
  EXPECT_EQ(dev.record().phase, P::kFailed);
  EXPECT_EQ(dev.record().last_error->code, "restarted");
  EXPECT_EQ(dev.serving(), kOld);

  // A restart after the window ended while the agent was down: it passed.
  TempDir tmp2;
  Device dev2(tmp2 / "journal");
  dev2.On(NewTargetFor(2, kNew, kNewRelease));
  dev2.FinishWork();
  dev2.Kill();
  dev2.Kill();
  dev2.Advance(minutes(30));
  s = dev2.Restart();
  EXPECT_EQ(dev2.record().phase, P::kActive);
  EXPECT_FALSE(dev2.record().health_until);
  EXPECT_EQ(dev2.serving(), kNew);
  // A late sample or timer changes nothing.
  EXPECT_FALSE(dev2.On(HealthSample{100, 100, 1000}).applied);
  EXPECT_FALSE(dev2.On(Tick{}).applied);
}

TEST(ActivationScenarioTest, SamplesAfterTheWindowEndedAreNotJudged) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  dev.Advance(minutes(5));
  EXPECT_FALSE(dev.On(HealthSample{100, 100, 1000}).applied);
  EXPECT_TRUE(dev.On(Tick{}).applied);
  EXPECT_EQ(dev.record().phase, P::kActive);
}

TEST(ActivationScenarioTest, NewerTargetSupersedesTheOneInProgress) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.On(PhaseDone{P::kDownloading, kNewRelease});
  dev.On(PhaseDone{P::kVerifying, kNewRelease});
  dev.On(PhaseDone{P::kStaged, kNewRelease});
  ASSERT_EQ(dev.loaded(), (std::set<std::string>{kOld, kNew}));
  // Directive 3 changes its mind while 1.1.0 loads.
  Step s = dev.On(NewTargetFor(3, kOther, kOtherRelease));
  EXPECT_EQ(s.actions[0], (Action{K::kServe, kOld, ""}));
  EXPECT_EQ(s.actions[1], (Action{K::kDownload, kOther, kOtherRelease}));
  EXPECT_EQ(dev.loaded(), std::set<std::string>{kOld}) << "the abandoned target was unloaded";
  EXPECT_EQ(dev.record().target->version, kOther);
  EXPECT_EQ(dev.record().attempts, 1u);
  // What the agent was still finishing for 1.1.0 is stale now.
  EXPECT_FALSE(dev.On(PhaseDone{P::kLoading, kNewRelease}).applied);
  EXPECT_FALSE(dev.On(PhaseFailed{P::kLoading, kNewRelease, "load-error", "late"}).applied);
  // The same release again in a newer directive carries on, with that directive's limits.
  NewTarget again = NewTargetFor(4, kOther, kOtherRelease);
  again.health.window = minutes(1);
  s = dev.On(again);
  EXPECT_EQ(Kinds(s.actions), std::vector<ActionKind>{K::kReport});
  EXPECT_EQ(dev.record().directive_version, 4u);
  EXPECT_EQ(dev.record().target->health.window, minutes(1));
  dev.FinishWork();
  EXPECT_EQ(dev.record().phase, P::kActive);
  EXPECT_EQ(dev.serving(), kOther);
  EXPECT_EQ(dev.record().previous_version, kOld);
  EXPECT_EQ(dev.record().health_until, dev.now() + minutes(1));

  // A directive that goes back to what serves abandons the target in progress.
  TempDir tmp2;
  Device dev2(tmp2 / "journal");
  dev2.On(NewTargetFor(2, kNew, kNewRelease));
  s = dev2.On(NewTargetFor(3, kOld, kOldRelease));
  EXPECT_EQ(dev2.record().phase, P::kIdle);
  EXPECT_FALSE(dev2.record().target);
  EXPECT_EQ(s.actions[0], (Action{K::kServe, kOld, ""}));
  EXPECT_FALSE(dev2.On(PhaseDone{P::kDownloading, kNewRelease}).applied);
}

TEST(ActivationScenarioTest, RollbackDirectiveToAnInstalledReleaseSkipsTheDownload) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  dev.Advance(minutes(5));
  dev.On(Tick{});
  ASSERT_EQ(dev.record().previous_version, kOld);
  // The rollout aborts elsewhere: the gateway sends the previous release, which is installed.
  Step s = dev.On(NewTargetFor(3, kOld, kOldRelease, /*installed=*/true));
  EXPECT_EQ(dev.record().phase, P::kLoading);
  EXPECT_EQ(s.actions[0], (Action{K::kLoad, kOld, kOldRelease}));
  EXPECT_EQ(dev.serving(), kNew) << "the current version serves while the old one loads";
  dev.FinishWork();
  EXPECT_EQ(dev.record().phase, P::kActive);
  EXPECT_EQ(dev.serving(), kOld);
  EXPECT_EQ(dev.record().active_release, kOldRelease);
  EXPECT_EQ(dev.record().previous_version, kNew);
}

TEST(ActivationScenarioTest, TheWindowOfASupersededVersionEndsEarly) {
  TempDir tmp;
  Device dev(tmp / "journal");
  dev.On(NewTargetFor(2, kNew, kNewRelease));
  dev.FinishWork();
  ASSERT_TRUE(dev.record().health_until);
  dev.On(NewTargetFor(3, kOther, kOtherRelease));
  EXPECT_FALSE(dev.record().health_until);
  EXPECT_EQ(dev.record().active_version, kNew);
  dev.FinishWork();
  EXPECT_EQ(dev.record().active_version, kOther);
  EXPECT_EQ(dev.record().previous_version, kNew);
}

TEST(ActivationScenarioTest, DirectivesMustBeNewerAndUsable) {
  Activation a = NewActivation(kModel, kOld, kOldRelease, T0());
  a = Next(a, NewTargetFor(5, kNew, kNewRelease));
  for (const Event& e : std::vector<Event>{
           NewTargetFor(5, kOther, kOtherRelease), NewTargetFor(4, kOther, kOtherRelease),
           NewTargetFor(6, "", kOtherRelease), NewTargetFor(6, kOther, "sha256:abc"),
           NewTargetFor(6, kOther, "sha512:" + std::string(64, 'c'))}) {
    Step s = Apply(a, e, T0() + minutes(1));
    EXPECT_FALSE(s.applied) << s.note;
    EXPECT_EQ(s.activation, a);
  }
  NewTarget bad = NewTargetFor(6, kOther, kOtherRelease);
  bad.health.max_error_rate = 1.5;
  EXPECT_FALSE(Apply(a, bad, T0()).applied);
  bad = NewTargetFor(6, kOther, kOtherRelease);
  bad.health.window = std::chrono::hours(24 * 400);
  EXPECT_FALSE(Apply(a, bad, T0()).applied);
}

TEST(ActivationScenarioTest, ReportsOfAnotherPhaseOrAnInvalidCodeAreHandled) {
  Activation a = NewActivation(kModel, kOld, kOldRelease, T0());
  a = Next(a, NewTargetFor(5, kNew, kNewRelease));
  // A repeat of an earlier phase's report after the machine moved on.
  a = Next(a, PhaseDone{P::kDownloading, kNewRelease});
  Step s = Apply(a, PhaseDone{P::kDownloading, kNewRelease}, T0() + minutes(1));
  EXPECT_FALSE(s.applied);
  EXPECT_NE(s.note.find("a repeat"), std::string::npos) << s.note;
  // A code the journal could not hold becomes "error"; a long message is cut, in valid UTF-8.
  std::string long_message(2000, 'x');
  long_message[3] = '\n';
  long_message[4] = '\x1b';
  // "verifying 1.1.0: " comes first: the two bytes of an é straddle the limit.
  long_message[1006] = '\xC3';
  long_message[1007] = '\xA9';
  s = Apply(a, PhaseFailed{P::kVerifying, kNewRelease, "Bad Code!", long_message}, T0());
  ASSERT_TRUE(s.applied);
  EXPECT_EQ(s.activation.last_error->code, "error");
  EXPECT_LE(s.activation.last_error->message.size(), kMaxMessageLength);
  EXPECT_EQ(s.activation.last_error->message.substr(0, 24), "verifying 1.1.0: xxx  xx");
  EXPECT_NO_THROW(s.activation.ToJson().dump());
  EXPECT_TRUE(Activation::FromJson(s.activation.ToJson()));
}

TEST(ActivationScenarioTest, NamesAreStable) {
  std::vector<std::string> names;
  for (Phase p : {P::kIdle, P::kDownloading, P::kVerifying, P::kStaged, P::kLoading, P::kWarmingUp,
                  P::kValidating, P::kActive, P::kFailed, P::kRolledBack}) {
    names.push_back(PhaseName(p));
    EXPECT_EQ(ParsePhase(PhaseName(p)), p);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"idle", "downloading", "verifying", "staged",
                                             "loading", "warming-up", "validating", "active",
                                             "failed", "rolled-back"}));
  EXPECT_FALSE(ParsePhase("Active"));
  EXPECT_STREQ(EventName(Event(Tick{})), "tick");
  EXPECT_STREQ(ActionKindName(K::kRollBack), "roll-back");
}

// ---- the record and the journal ----

TEST(ActivationRecordTest, RoundTripsAndRefusesInconsistentRecords) {
  auto f = Fixtures();
  for (const auto& [name, a] : f) {
    auto back = Activation::FromJson(nlohmann::json::parse(a.ToJson().dump()));
    ASSERT_TRUE(back) << name << ": " << back.error().ToString();
    EXPECT_EQ(*back, a) << name;
  }
  nlohmann::json window = f["active~window"].ToJson();
  nlohmann::json failed = f["failed"].ToJson();
  using Mutate = std::function<void(nlohmann::json&)>;
  std::vector<std::tuple<std::string, nlohmann::json, Mutate>> bad = {
      {"model", window, [](nlohmann::json& j) { j["model"] = "../etc"; }},
      {"phase", window, [](nlohmann::json& j) { j["phase"] = "Active"; }},
      {"directive_version", window, [](nlohmann::json& j) { j["directive_version"] = -1; }},
      {"target", window, [](nlohmann::json& j) { j.erase("target"); }},
      {"target", window, [](nlohmann::json& j) { j["phase"] = "idle"; }},
      {"target", window, [](nlohmann::json& j) { j["target"]["release"] = "sha256:xyz"; }},
      {"target", window, [](nlohmann::json& j) { j["target"]["health"]["max_error_rate"] = 2.0; }},
      {"health", window, [](nlohmann::json& j) { j["target"].erase("health"); }},
      {"window_seconds", window,
       [](nlohmann::json& j) { j["target"]["health"]["window_seconds"] = "5m"; }},
      {"max_p99_ms", window,
       [](nlohmann::json& j) { j["target"]["health"]["max_p99_ms"] = "fast"; }},
      {"active_version", window, [](nlohmann::json& j) { j["active_version"] = "-bad"; }},
      {"active_release", window, [](nlohmann::json& j) { j["active_release"] = ""; }},
      {"active_release", window,
       [](nlohmann::json& j) { j["active_release"] = "sha256:" + std::string(64, 'd'); }},
      {"previous_version", window,
       [](nlohmann::json& j) { j["previous_release"] = j["active_release"]; }},
      {"health_until", window, [](nlohmann::json& j) { j["health_until"] = "later"; }},
      {"health_until", failed,
       [](nlohmann::json& j) { j["health_until"] = "2026-11-22T10:00:00Z"; }},
      {"attempts", window, [](nlohmann::json& j) { j["attempts"] = 0; }},
      {"attempts", window, [](nlohmann::json& j) { j["attempts"] = 4; }},
      {"attempts", failed, [](nlohmann::json& j) { j["attempts"] = 1; }},
      {"last_error", window,
       [](nlohmann::json& j) {
         j["last_error"] = {{"code", "x"}, {"message", ""}};
       }},
      {"last_error", failed, [](nlohmann::json& j) { j.erase("last_error"); }},
      {"last_error", failed, [](nlohmann::json& j) { j["last_error"]["code"] = "Not Ok"; }},
      {"last_error", failed,
       [](nlohmann::json& j) { j["last_error"]["message"] = std::string(1025, 'm'); }},
      {"last_error", failed, [](nlohmann::json& j) { j["last_error"]["message"] = "a\x1b[2Jb"; }},
      {"active_version", failed,
       [](nlohmann::json& j) {
         j["phase"] = "rolled-back";
         j["active_version"] = "";
         j["active_release"] = "";
       }},
      {"updated_at", window, [](nlohmann::json& j) { j.erase("updated_at"); }},
  };
  for (const auto& [field, good, mutate] : bad) {
    nlohmann::json j = good;
    mutate(j);
    auto r = Activation::FromJson(j);
    ASSERT_FALSE(r) << field << ": " << j.dump();
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("\"" + field + "\""), std::string::npos)
        << r.error().ToString();
  }
}

TEST(ActivationJournalTest, SavesOneFilePerModelAndReadsThemBack) {
  TempDir tmp;
  std::filesystem::path dir = tmp / "state" / "journal";
  auto none = LoadJournals(dir);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_TRUE(none->empty()) << "a missing journal is an empty one";

  auto f = Fixtures();
  Activation other = f["validating"];
  other.model = "defect-detector";
  ASSERT_TRUE(SaveJournal(dir, f["active~window"]));
  ASSERT_TRUE(SaveJournal(dir, other));
  EXPECT_TRUE(std::filesystem::exists(dir / "visual-inspection.json"));
  // What a killed write left behind, and stray files, are not journals.
  ASSERT_TRUE(WriteFileAtomic(dir / ".visual-inspection.json.tmp-999999-x", "{"));
  ASSERT_TRUE(WriteFileAtomic(dir / "README", "not a journal"));
  auto all = LoadJournals(dir);
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at("visual-inspection"), f["active~window"]);
  EXPECT_EQ(all->at("defect-detector"), other);
  // Saving again replaces the record.
  ASSERT_TRUE(SaveJournal(dir, f["active"]));
  EXPECT_EQ(LoadJournals(dir)->at("visual-inspection"), f["active"]);
}

TEST(ActivationJournalTest, ACorruptFileIsAnErrorNamingIt) {
  TempDir tmp;
  std::filesystem::path dir = tmp / "journal";
  auto f = Fixtures();
  ASSERT_TRUE(SaveJournal(dir, f["loading"]));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated.json", "{\"model\": \"truncated\", \"pha"},
      {"wrong-phase.json", ""},  // filled below
      {"another-name.json", f["loading"].ToJson().dump()},
      {"huge.json", std::string(100'000, ' ')},
  };
  for (auto [name, text] : cases) {
    SCOPED_TRACE(name);
    if (name == "wrong-phase.json") {
      nlohmann::json j = f["loading"].ToJson();
      j["model"] = "wrong-phase";
      j["phase"] = "done";
      text = j.dump();
    }
    ASSERT_TRUE(WriteFileAtomic(dir / name, text));
    auto r = LoadJournals(dir);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().ToString().find((dir / name).string()), std::string::npos)
        << r.error().ToString();
    std::filesystem::remove(dir / name);
  }
  // With the bad file gone, the good one reads again.
  auto r = LoadJournals(dir);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->at(kModel), f["loading"]);
}

}  // namespace
}  // namespace airlock::agent
