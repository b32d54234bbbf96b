#include "gateway/rollout.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace airlock::gateway {
namespace {

using nlohmann::json;
using std::chrono::minutes;
using std::chrono::seconds;
using K = ActionKind;
using S = DeviceStatus;

// 2026-11-22T10:00:00Z.
TimePoint T0() { return TimePoint(seconds(1795341600)); }

const std::string kDeployment = "dep-00112233aabbccdd";
const std::string kModel = "visual-inspection";
const ReleaseRef kTarget{"2.0.0", "sha256:" + std::string(64, 'b')};
const ReleaseRef kPrevious{"1.0.0", "sha256:" + std::string(64, 'a')};

std::string Dev(int n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "dev-%016x", n);
  return buf;
}

DeviceInfo Device(int n, bool online = true, std::map<std::string, std::string> labels = {}) {
  return {Dev(n), std::move(labels), kPrevious, online};
}

std::vector<DeviceInfo> Devices(int count) {
  std::vector<DeviceInfo> out;
  for (int i = 1; i <= count; ++i) {
    out.push_back(Device(i));
  }
  return out;
}

RolloutPlan Plan(const std::string& strategy, json selector = json::object()) {
  auto plan = RolloutPlan::FromDeployment(selector, json::parse(strategy));
  EXPECT_TRUE(plan) << plan.error().ToString();
  return *plan;
}

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

std::size_t OnlineInFlight(const Rollout& r) {
  return static_cast<std::size_t>(std::count_if(r.devices.begin(), r.devices.end(), [](auto& d) {
    return d.online &&
           (d.status == S::kShadowing || d.status == S::kDirected || d.status == S::kActivating);
  }));
}

// Drives one rollout through the machine the way the gateway will: each step's record replaces
// the last; each Direct action is signed as the device's next directive version and confirmed
// with DirectiveSent at once; the clock moves by hand.
class Driver {
 public:
  Driver(RolloutPlan plan, const std::vector<DeviceInfo>& devices) {
    Take(StartRollout(kDeployment, kModel, kTarget, std::move(plan), devices, {now_}));
  }
  explicit Driver(Rollout r, TimePoint now) : r_(std::move(r)), now_(now) {}

  Step& On(const Event& e) {
    Take(Apply(r_, e, {now_}));
    return last_;
  }
  // A report from the device about its latest directive (older by `behind` versions).
  Step& Report(const std::string& dev, std::string phase, std::optional<ReleaseRef> active,
               std::optional<Agreement> agreement = std::nullopt, std::uint64_t behind = 0) {
    std::optional<ReleaseRef> shadow;
    if (agreement) {
      shadow = kTarget;
    }
    return On(DeviceReport{dev, std::move(phase), std::move(active), "", shadow, agreement,
                           versions_[dev] - behind});
  }
  // The agent's usual way from a directive to active on the target.
  Step& Activate(const std::string& dev) {
    Report(dev, "downloading", kPrevious);
    return Report(dev, "active", kTarget);
  }
  Step& Fail(const std::string& dev, std::string error = "validation: 3 of 8 samples differ") {
    return On(DeviceReport{dev, "failed", kPrevious, std::move(error), std::nullopt, std::nullopt,
                           versions_[dev]});
  }
  // Moves the clock on and applies the Tick a timer would bring.
  Step& Tick(seconds s) {
    now_ += s;
    return On(gateway::Tick{});
  }

  const Rollout& r() const { return r_; }
  const RolloutDevice& dev(const std::string& id) const {
    const RolloutDevice* d = r_.Find(id);
    EXPECT_NE(d, nullptr) << id;
    return *d;
  }
  S status(const std::string& id) const { return dev(id).status; }
  const Step& last() const { return last_; }
  TimePoint now() const { return now_; }
  // Every Direct action since the last call, in order.
  std::vector<Action> TakeDirects() { return std::exchange(directs_, {}); }
  std::vector<std::string> DirectedDevices() {
    std::vector<std::string> out;
    for (const auto& a : TakeDirects()) {
      out.push_back(a.device);
    }
    return out;
  }
  std::size_t max_in_flight() const { return max_in_flight_; }
  std::size_t count(ActionKind kind) const {
    return static_cast<std::size_t>(std::count(kinds_.begin(), kinds_.end(), kind));
  }

 private:
  void Take(Step s) {
    last_ = s;
    r_ = s.rollout;
    for (const auto& a : s.actions) {
      kinds_.push_back(a.kind);
      if (a.kind != K::kDirect) {
        continue;
      }
      directs_.push_back(a);
      std::uint64_t& v = versions_[a.device];
      v = std::max<std::uint64_t>(v, 4) + 1;  // the device had directives before this rollout
      Step sent = Apply(r_, DirectiveSent{a.device, a.direction, v}, {now_});
      EXPECT_TRUE(sent.applied) << sent.note;
      r_ = sent.rollout;
    }
    max_in_flight_ = std::max(max_in_flight_, OnlineInFlight(r_));
  }

  Rollout r_;
  Step last_;
  TimePoint now_ = T0();
  std::map<std::string, std::uint64_t> versions_;
  std::vector<Action> directs_;
  std::vector<ActionKind> kinds_;
  std::size_t max_in_flight_ = 0;
};

const char* kCanary = R"({"waves": ["1", "100%"], "health_window": "5m",
                          "failure_threshold": "1"})";

// ---- scenarios ----

TEST(RolloutScenario, OneCanaryThenTheRestOfFiveDevicesAllSucceed) {
  Driver d(Plan(kCanary), Devices(5));
  EXPECT_EQ(d.r().state, RolloutState::kRunning);
  EXPECT_EQ(d.last().note, "started on 5 devices in 2 waves");
  auto first = d.TakeDirects();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].device, Dev(1));
  EXPECT_EQ(first[0].active, kTarget);
  EXPECT_EQ(first[0].shadow, std::nullopt);
  EXPECT_EQ(d.r().devices[0].wave, 0u);
  for (int i = 2; i <= 5; ++i) {
    EXPECT_EQ(d.dev(Dev(i)).wave, 1u);
    EXPECT_EQ(d.status(Dev(i)), S::kPending);
  }

  d.Report(Dev(1), "downloading", kPrevious);
  EXPECT_EQ(d.status(Dev(1)), S::kActivating);
  d.Report(Dev(1), "active", kTarget);
  EXPECT_EQ(d.status(Dev(1)), S::kHealthWindow);
  EXPECT_EQ(d.dev(Dev(1)).health_until, d.now() + minutes(5));
  EXPECT_EQ(NextWakeup(d.r()), d.now() + minutes(5));
  // The canary's window has not passed: nobody else is directed.
  EXPECT_FALSE(d.Tick(minutes(4)).applied);
  EXPECT_TRUE(d.TakeDirects().empty());

  Step& s = d.Tick(minutes(1));
  EXPECT_TRUE(s.applied);
  EXPECT_EQ(s.note, Dev(1) + " done; now in wave 2 of 2");
  EXPECT_EQ(d.status(Dev(1)), S::kDone);
  EXPECT_EQ(d.r().wave, 1u);
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(2), Dev(3), Dev(4), Dev(5)}));

  for (int i = 2; i <= 5; ++i) {
    d.Activate(Dev(i));
  }
  EXPECT_EQ(d.r().state, RolloutState::kRunning);
  Step& end = d.Tick(minutes(5));
  EXPECT_EQ(d.r().state, RolloutState::kComplete);
  EXPECT_EQ(Kinds(end.actions), (std::vector<K>{K::kCompleted, K::kPublishSummary}));
  EXPECT_EQ(d.count(K::kCompleted), 1u);
  FleetSummary sum = Summarize(d.r());
  EXPECT_EQ(sum.devices.total, 5u);
  EXPECT_EQ(sum.devices.Of(S::kDone), 5u);
  EXPECT_EQ(sum.by_wave[0].Of(S::kDone), 1u);
  EXPECT_EQ(sum.by_wave[1].Of(S::kDone), 4u);
  // A final rollout starts nothing new.
  EXPECT_FALSE(d.On(Pause{}).applied);
  EXPECT_FALSE(d.On(Cancel{"late"}).applied);
}

TEST(RolloutScenario, AFailedCanaryAbortsAndGoesBack) {
  Driver d(Plan(kCanary), Devices(5));
  d.TakeDirects();
  d.Report(Dev(1), "downloading", kPrevious);
  Step& s = d.Fail(Dev(1));
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
  EXPECT_EQ(d.status(Dev(1)), S::kFailed);
  EXPECT_EQ(d.dev(Dev(1)).reason, "activation failed: validation: 3 of 8 samples differ");
  EXPECT_EQ(d.r().reason, "1 devices failed, the threshold is 1 (last " + Dev(1) +
                              ": activation failed: validation: 3 of 8 samples differ)");
  EXPECT_EQ(Kinds(s.actions), (std::vector<K>{K::kDirect, K::kAborted, K::kPublishSummary}));
  auto back = d.TakeDirects();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].device, Dev(1));
  EXPECT_EQ(back[0].active, kPrevious);
  // The other four were never directed, and never will be.
  for (int i = 2; i <= 5; ++i) {
    EXPECT_EQ(d.status(Dev(i)), S::kPending);
  }
  EXPECT_FALSE(d.Tick(minutes(10)).applied);
  EXPECT_TRUE(d.TakeDirects().empty());
}

TEST(RolloutScenario, FailuresBelowTheThresholdContinue) {
  Driver d(Plan(R"({"waves": ["1", "100%"], "failure_threshold": "2"})"), Devices(5));
  d.Fail(Dev(1));  // the canary fails: 1 of 2
  EXPECT_EQ(d.r().state, RolloutState::kRunning);
  EXPECT_EQ(d.r().failures, 1u);
  // A failed device is settled, so the canary wave is over and the rest are directed.
  EXPECT_EQ(d.r().wave, 1u);
  auto directs = d.TakeDirects();
  ASSERT_EQ(directs.size(), 6u);  // the canary, the canary back, the four others
  EXPECT_EQ(directs[1].device, Dev(1));
  EXPECT_EQ(directs[1].active, kPrevious);  // the failed canary goes back
  EXPECT_EQ(directs[5].device, Dev(5));
  EXPECT_EQ(directs[5].active, kTarget);
  for (int i = 2; i <= 5; ++i) {
    d.Activate(Dev(i));
  }
  d.Tick(minutes(5));
  EXPECT_EQ(d.r().state, RolloutState::kComplete);
  EXPECT_EQ(Summarize(d.r()).devices.Of(S::kDone), 4u);
  EXPECT_EQ(Summarize(d.r()).devices.Of(S::kFailed), 1u);
}

TEST(RolloutScenario, CrossingTheThresholdInWaveTwoRollsBackWavesOneAndTwo) {
  auto devices = Devices(5);
  devices[4].current = std::nullopt;  // dev 5 ran nothing of this model before
  Driver d(Plan(R"({"waves": ["1", "100%"], "failure_threshold": "2"})"), devices);
  d.Activate(Dev(1));
  d.Tick(minutes(5));
  ASSERT_EQ(d.r().wave, 1u);
  d.TakeDirects();
  d.Activate(Dev(2));                        // in its health window
  d.Report(Dev(3), "verifying", kPrevious);  // activating
  d.Fail(Dev(4));                            // 1 of 2
  d.Activate(Dev(5));                        // in its health window
  EXPECT_EQ(d.r().state, RolloutState::kRunning);
  d.TakeDirects();
  Step& s = d.On(DeviceReport{Dev(2), "rolled-back", kPrevious, "error rate 9% above 5%",
                              std::nullopt, std::nullopt, d.dev(Dev(2)).directive_version});
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
  EXPECT_NE(s.note.find("aborted"), std::string::npos);
  EXPECT_EQ(d.dev(Dev(2)).reason, "rolled-back during its health window: error rate 9% above 5%");

  std::map<std::string, Action> back;
  for (const auto& a : d.TakeDirects()) {
    back[a.device] = a;
  }
  // Dev 2 failed and goes back like every failure; the canary (done), dev 3 (activating) and
  // dev 5 (in its window) are directed back; dev 4 went back when it failed.
  EXPECT_EQ(back.size(), 4u);
  EXPECT_EQ(back.count(Dev(4)), 0u);
  for (int i : {1, 2, 3}) {
    EXPECT_EQ(back[Dev(i)].active, kPrevious) << i;
  }
  EXPECT_EQ(back[Dev(5)].active, std::nullopt);  // back to nothing for this model
  for (int i : {1, 3, 5}) {
    EXPECT_EQ(d.status(Dev(i)), S::kRollingBack) << i;
  }
  EXPECT_EQ(NextWakeup(d.r()), std::nullopt);

  // They report being back.
  d.Report(Dev(1), "active", kPrevious);
  EXPECT_EQ(d.status(Dev(1)), S::kRolledBack);
  EXPECT_FALSE(d.Report(Dev(3), "active", kTarget).applied);  // not back yet
  d.Report(Dev(3), "active", kPrevious);
  d.Report(Dev(5), "idle", std::nullopt);
  EXPECT_EQ(Summarize(d.r()).devices.Of(S::kRolledBack), 3u);
  EXPECT_EQ(Summarize(d.r()).devices.Of(S::kFailed), 2u);
  EXPECT_EQ(d.count(K::kAborted), 1u);
}

TEST(RolloutScenario, MaxInFlightTwoWithSixDevicesDirectsAtMostTwoAtOnce) {
  Driver d(Plan(R"({"waves": ["100%"], "max_in_flight": 2, "failure_threshold": "6"})"),
           Devices(6));
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(1), Dev(2)}));
  d.Report(Dev(1), "downloading", kPrevious);
  EXPECT_TRUE(d.TakeDirects().empty());
  // Once active, a device is watched, not in flight: the next one is directed.
  d.Report(Dev(1), "active", kTarget);
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(3)}));
  d.Fail(Dev(2));  // a failure frees its slot too
  auto next = d.DirectedDevices();
  EXPECT_EQ(next, (std::vector<std::string>{Dev(2), Dev(4)}));  // dev 2 back, dev 4 new
  for (int i : {3, 4}) {
    d.Activate(Dev(i));
  }
  for (int i : {5, 6}) {
    d.Activate(Dev(i));
  }
  EXPECT_EQ(d.max_in_flight(), 2u);
  d.Tick(minutes(5));
  EXPECT_EQ(d.r().state, RolloutState::kComplete);
}

TEST(RolloutScenario, PauseHoldsNewDirectionsAndResumeCarriesOn) {
  Driver d(Plan(kCanary), Devices(3));
  d.TakeDirects();
  d.Report(Dev(1), "downloading", kPrevious);
  Step& p = d.On(Pause{});
  EXPECT_TRUE(p.applied);
  EXPECT_EQ(p.note, "paused in wave 1 of 2");
  EXPECT_FALSE(d.On(Pause{}).applied);
  // The canary's update carries on, and its window ends; the next wave waits.
  d.Report(Dev(1), "active", kTarget);
  d.Tick(minutes(5));
  EXPECT_EQ(d.status(Dev(1)), S::kDone);
  EXPECT_EQ(d.r().wave, 0u);
  EXPECT_TRUE(d.TakeDirects().empty());
  EXPECT_EQ(d.r().state, RolloutState::kPaused);

  Step& r = d.On(Resume{});
  EXPECT_EQ(r.note, "resumed in wave 1 of 2; now in wave 2 of 2");
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(2), Dev(3)}));
  EXPECT_FALSE(d.On(Resume{}).applied);
}

TEST(RolloutScenario, AFailureWhilePausedStillAborts) {
  Driver d(Plan(kCanary), Devices(3));
  d.On(Pause{});
  d.Fail(Dev(1));
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
}

TEST(RolloutScenario, CancelStopsEverythingAndLeavesDevicesAsTheyAre) {
  Driver d(Plan(kCanary), Devices(4));
  d.Activate(Dev(1));
  d.TakeDirects();
  Step& c = d.On(Cancel{"wrong line"});
  EXPECT_EQ(d.r().state, RolloutState::kCancelled);
  EXPECT_EQ(d.r().reason, "wrong line");
  EXPECT_EQ(Kinds(c.actions), (std::vector<K>{K::kPublishSummary}));  // no directive, no rollback
  EXPECT_EQ(d.status(Dev(1)), S::kHealthWindow);
  EXPECT_EQ(NextWakeup(d.r()), std::nullopt);
  Rollout frozen = d.r();
  EXPECT_FALSE(d.Tick(minutes(10)).applied);
  EXPECT_FALSE(d.Fail(Dev(1)).applied);
  EXPECT_FALSE(d.On(DeviceOnline{Dev(2), false}).applied);
  EXPECT_FALSE(d.On(Resume{}).applied);
  EXPECT_FALSE(d.On(DeviceAdded{Device(9)}).applied);
  EXPECT_FALSE(d.On(Cancel{"again"}).applied);
  EXPECT_EQ(d.r(), frozen);
  EXPECT_TRUE(ResumeActions(d.r()).empty());
}

TEST(RolloutScenario, AnOfflineDeviceDoesNotBlockAndCatchesUpLater) {
  auto devices = Devices(3);
  devices[0].online = false;  // dev 1 would be the canary by id, but it is offline
  Driver d(Plan(kCanary), devices);
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(2)}));
  EXPECT_EQ(d.dev(Dev(1)).wave, 1u);
  EXPECT_EQ(Summarize(d.r()).devices.offline, 1u);
  d.Activate(Dev(2));
  d.Tick(minutes(5));
  // Wave 2: the offline device is directed too (its retained directive waits for it).
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(3), Dev(1)}));
  d.Activate(Dev(3));
  d.Tick(minutes(5));
  EXPECT_EQ(d.r().state, RolloutState::kComplete);
  EXPECT_EQ(d.status(Dev(1)), S::kDirected);
  FleetSummary sum = Summarize(d.r());
  EXPECT_EQ(sum.devices.offline, 1u);
  EXPECT_EQ(sum.devices.Of(S::kDirected), 1u);
  EXPECT_EQ(sum.ToJson()["devices"]["offline"], 1);

  // It returns, its directive brings it up to date, and the complete rollout follows it.
  EXPECT_TRUE(d.On(DeviceOnline{Dev(1), true}).applied);
  d.Activate(Dev(1));
  EXPECT_EQ(d.status(Dev(1)), S::kHealthWindow);
  d.Tick(minutes(5));
  EXPECT_EQ(d.status(Dev(1)), S::kDone);
  EXPECT_EQ(Summarize(d.r()).devices.Of(S::kDone), 3u);
  EXPECT_EQ(Summarize(d.r()).devices.offline, 0u);
  EXPECT_EQ(d.count(K::kCompleted), 1u);
}

TEST(RolloutScenario, ADeviceGoingOfflineFreesItsSlot) {
  Driver d(Plan(R"({"waves": ["100%"], "max_in_flight": 1})"), Devices(3));
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(1)}));
  d.On(DeviceOnline{Dev(1), false});
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(2)}));
  EXPECT_FALSE(d.On(DeviceOnline{Dev(1), false}).applied);  // a repeat
}

TEST(RolloutScenario, StaleAndRepeatedReportsAreIgnored) {
  Driver d(Plan(kCanary), Devices(2));
  const std::string dev = Dev(1);
  // A report about the directive before ours: the device has not seen the new one yet.
  Step& stale = d.Report(dev, "failed", kPrevious, std::nullopt, 1);
  EXPECT_FALSE(stale.applied);
  EXPECT_EQ(stale.note, "stale report from " + dev + ": directive 4, the latest is 5");
  EXPECT_EQ(d.status(dev), S::kDirected);
  d.Report(dev, "downloading", kPrevious);
  EXPECT_FALSE(d.Report(dev, "downloading", kPrevious).applied);  // QoS 1 repeat
  EXPECT_FALSE(d.Report(dev, "verifying", kPrevious).applied);    // still activating
  d.Report(dev, "active", kTarget);
  Rollout before = d.r();
  Step& again = d.Report(dev, "active", kTarget);
  EXPECT_FALSE(again.applied);
  EXPECT_TRUE(again.actions.empty());
  EXPECT_EQ(d.r(), before);
  // A repeated DirectiveSent, and one for a superseded direction.
  EXPECT_FALSE(d.On(DirectiveSent{dev, 1, 5}).applied);
  EXPECT_FALSE(d.On(DirectiveSent{dev, 0, 9}).applied);
  // Reports from devices the rollout does not know or has not directed.
  EXPECT_FALSE(d.Report(Dev(9), "active", kTarget).applied);
  EXPECT_FALSE(d.Report(Dev(2), "active", kTarget).applied);
  d.Tick(minutes(5));
  d.Activate(Dev(2));
  d.Tick(minutes(5));
  ASSERT_EQ(d.r().state, RolloutState::kComplete);
  // After it is done, what a device does is no longer this rollout's business.
  EXPECT_FALSE(d.Fail(dev).applied);
  EXPECT_EQ(d.r().failures, 0u);
}

TEST(RolloutScenario, AReportBeforeItsDirectiveIsSentIsIgnored) {
  Step s = StartRollout(kDeployment, kModel, kTarget, Plan(kCanary), Devices(1), {T0()});
  ASSERT_EQ(Kinds(s.actions), (std::vector<K>{K::kDirect, K::kPublishSummary}));
  Step r = Apply(s.rollout,
                 DeviceReport{Dev(1), "failed", kPrevious, "from an old directive", std::nullopt,
                              std::nullopt, 4},
                 {T0()});
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.note, "report from " + Dev(1) + " before direction 1 was sent");
  // A restarted gateway sends what may not have been sent.
  auto resume = ResumeActions(s.rollout);
  ASSERT_EQ(resume.size(), 1u);
  EXPECT_EQ(resume[0], s.actions[0]);
}

TEST(RolloutScenario, PercentagesRoundUpAndCountsAreCapped) {
  // 10% of 3 devices is one canary; the failure threshold 10% of 3 is 1.
  Driver tenth(Plan(R"({"waves": ["10%", "100%"], "failure_threshold": "10%"})"), Devices(3));
  EXPECT_EQ(tenth.DirectedDevices().size(), 1u);
  EXPECT_EQ(tenth.r().failure_limit, 1u);
  FleetSummary sum = Summarize(tenth.r());
  EXPECT_EQ(sum.by_wave[0].total, 1u);
  EXPECT_EQ(sum.by_wave[1].total, 2u);

  // A count above the fleet takes it all; the waves after it are empty and pass at once.
  Driver capped(Plan(R"({"waves": ["5", "10", "100%"]})"), Devices(3));
  EXPECT_EQ(capped.DirectedDevices().size(), 3u);
  for (int i = 1; i <= 3; ++i) {
    capped.Activate(Dev(i));
  }
  capped.Tick(minutes(5));
  EXPECT_EQ(capped.r().state, RolloutState::kComplete);
  EXPECT_EQ(capped.r().wave, 2u);

  // Cumulative sizes never shrink, and the last wave takes everyone whatever it says.
  Driver odd(Plan(R"({"waves": ["50%", "1", "2"]})"), Devices(6));
  FleetSummary o = Summarize(odd.r());
  EXPECT_EQ(o.by_wave[0].total, 3u);
  EXPECT_EQ(o.by_wave[1].total, 0u);
  EXPECT_EQ(o.by_wave[2].total, 3u);
}

TEST(RolloutScenario, NoSelectedDeviceCompletesAtOnce) {
  Step s = StartRollout(kDeployment, kModel, kTarget, Plan(kCanary, {{"line", "9"}}), Devices(3),
                        {T0()});
  EXPECT_EQ(s.rollout.state, RolloutState::kComplete);
  EXPECT_TRUE(s.rollout.devices.empty());
  EXPECT_EQ(Kinds(s.actions), (std::vector<K>{K::kCompleted, K::kPublishSummary}));
}

TEST(RolloutScenario, TheSelectorPicksDevicesAndNewcomersJoinTheLastWave) {
  std::vector<DeviceInfo> devices = {Device(1, true, {{"line", "3"}}),
                                     Device(2, true, {{"line", "4"}}),
                                     Device(3, true, {{"line", "3"}, {"cam", "top"}})};
  Driver d(Plan(kCanary, {{"line", "3"}}), devices);
  EXPECT_EQ(d.r().devices.size(), 2u);
  EXPECT_EQ(d.r().Find(Dev(2)), nullptr);
  EXPECT_FALSE(d.On(DeviceAdded{Device(7, true, {{"line", "4"}})}).applied);
  EXPECT_FALSE(d.On(DeviceAdded{Device(1, true, {{"line", "3"}})}).applied);  // already in
  Step& added = d.On(DeviceAdded{Device(7, true, {{"line", "3"}})});
  EXPECT_TRUE(added.applied);
  EXPECT_EQ(d.dev(Dev(7)).wave, 1u);
  EXPECT_EQ(d.status(Dev(7)), S::kPending);
  d.TakeDirects();
  d.Activate(Dev(1));
  d.Tick(minutes(5));
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(3), Dev(7)}));
  d.Activate(Dev(3));
  d.Activate(Dev(7));
  d.Tick(minutes(5));
  ASSERT_EQ(d.r().state, RolloutState::kComplete);
  // A device that joins a complete rollout is directed to its release at once.
  d.On(DeviceAdded{Device(8, false, {{"line", "3"}})});
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(8)}));
  EXPECT_EQ(d.r().state, RolloutState::kComplete);
}

TEST(RolloutScenario, ARemovedDeviceLeavesWithoutChangingTheThreshold) {
  Driver d(Plan(R"({"waves": ["100%"], "max_in_flight": 1, "failure_threshold": "2"})"),
           Devices(4));
  d.Fail(Dev(1));
  ASSERT_EQ(d.r().failures, 1u);
  d.TakeDirects();
  EXPECT_TRUE(d.On(DeviceRemoved{Dev(1)}).applied);  // revoked: its failure still counts
  EXPECT_EQ(d.r().failures, 1u);
  EXPECT_EQ(d.r().failure_limit, 2u);
  // Dev 2 holds the only slot; when it leaves, dev 3 takes it.
  EXPECT_TRUE(d.On(DeviceRemoved{Dev(2)}).applied);
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(3)}));
  EXPECT_FALSE(d.On(DeviceRemoved{Dev(2)}).applied);
  d.Fail(Dev(3));
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
}

const char* kShadow = R"({"waves": ["1", "100%"], "failure_threshold": "1",
                          "shadow": {"min_agreement": 0.99, "min_compared": 200}})";

TEST(RolloutScenario, TheShadowGatePassesAndTheCandidateBecomesActive) {
  Driver d(Plan(kShadow), Devices(2));
  auto first = d.TakeDirects();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].active, kPrevious);
  EXPECT_EQ(first[0].shadow, kTarget);
  EXPECT_EQ(d.status(Dev(1)), S::kShadowing);
  EXPECT_FALSE(d.Report(Dev(1), "loading", kPrevious).applied);
  // Agreement of some other shadow is not the candidate's.
  EXPECT_FALSE(d.On(DeviceReport{Dev(1), "active", kPrevious, "", kPrevious, Agreement{500, 500},
                                 d.dev(Dev(1)).directive_version})
                   .applied);
  Step& few = d.Report(Dev(1), "active", kPrevious, Agreement{120, 120});
  EXPECT_TRUE(few.applied);
  EXPECT_EQ(few.note, Dev(1) + ": shadow agreement 100% over 120 of 200 compared needed");
  EXPECT_EQ(d.status(Dev(1)), S::kShadowing);
  EXPECT_FALSE(d.Report(Dev(1), "active", kPrevious, Agreement{120, 120}).applied);
  Step& pass = d.Report(Dev(1), "active", kPrevious, Agreement{200, 198});
  EXPECT_EQ(pass.note,
            Dev(1) + ": shadow agreement 99% over 200 passes the gate; directed to 2.0.0");
  auto promote = d.TakeDirects();
  ASSERT_EQ(promote.size(), 1u);
  EXPECT_EQ(promote[0].active, kTarget);
  EXPECT_EQ(promote[0].shadow, std::nullopt);
  EXPECT_EQ(promote[0].direction, 2u);
  EXPECT_EQ(d.status(Dev(1)), S::kDirected);
  d.Activate(Dev(1));
  d.Tick(minutes(5));
  EXPECT_EQ(d.r().wave, 1u);
  EXPECT_EQ(d.status(Dev(2)), S::kShadowing);
}

TEST(RolloutScenario, AShadowBelowTheGateFailsTheDevice) {
  Driver d(Plan(kShadow), Devices(2));
  d.TakeDirects();
  Step& s = d.Report(Dev(1), "active", kPrevious, Agreement{1000, 912});
  EXPECT_EQ(d.status(Dev(1)), S::kFailed);
  EXPECT_EQ(d.dev(Dev(1)).reason, "shadow agreement 91.2% below 99%");
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
  EXPECT_EQ(Kinds(s.actions), (std::vector<K>{K::kDirect, K::kAborted, K::kPublishSummary}));
  auto back = d.TakeDirects();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].active, kPrevious);
  EXPECT_EQ(back[0].shadow, std::nullopt);  // the shadow stops
  // Just under the gate never reads as the gate itself.
  Driver close(Plan(kShadow), Devices(2));
  close.Report(Dev(1), "active", kPrevious, Agreement{1000, 989});
  EXPECT_EQ(close.dev(Dev(1)).reason, "shadow agreement 98.9% below 99%");
}

TEST(RolloutScenario, AnEmptyHealthWindowMakesActiveDone) {
  Driver d(Plan(R"({"waves": ["1", "100%"], "health_window": "0s"})"), Devices(2));
  d.Activate(Dev(1));
  EXPECT_EQ(d.status(Dev(1)), S::kDone);
  EXPECT_EQ(d.DirectedDevices(), (std::vector<std::string>{Dev(1), Dev(2)}));
}

TEST(RolloutScenario, ARefusedDirectiveFailsTheDevice) {
  Driver d(Plan(kCanary), Devices(2));
  d.On(DeviceReport{Dev(1), "refused", kPrevious, "verification: the channel expired", std::nullopt,
                    std::nullopt, d.dev(Dev(1)).directive_version});
  EXPECT_EQ(d.dev(Dev(1)).reason, "directive refused: verification: the channel expired");
  EXPECT_EQ(d.r().state, RolloutState::kAborted);
}

TEST(RolloutReport, MadeFromTheDevicesStateMessage) {
  delivery::DeviceState state;
  state.device = Dev(1);
  state.seq = 1795341600123;
  state.platform = "linux/arm64/v8";
  state.directive_version = 7;
  delivery::ModelReport m;
  m.model = kModel;
  m.phase = "active";
  m.active_version = kPrevious.version;
  m.active_release = kPrevious.release;
  m.shadow = delivery::ShadowReport{kTarget.version, kTarget.release, 300, 297};
  m.error = delivery::ReportError{"validation", "sample 3 differs"};
  state.models = {m};
  DeviceReport r = ReportFrom(state, kModel);
  EXPECT_EQ(r.device, Dev(1));
  EXPECT_EQ(r.phase, "active");
  EXPECT_EQ(r.active, kPrevious);
  EXPECT_EQ(r.shadow, kTarget);
  EXPECT_EQ(r.agreement, (Agreement{300, 297}));
  EXPECT_EQ(r.error, "validation: sample 3 differs");
  EXPECT_EQ(r.directive_version, 7u);
  // Nothing of the model: idle on nothing.
  DeviceReport none = ReportFrom(state, "other-model");
  EXPECT_EQ(none.phase, "idle");
  EXPECT_EQ(none.active, std::nullopt);
  // A refusal newer than the directive applied is about the newer one.
  state.refused_version = 8;
  state.refused = delivery::ReportError{"verification", "the channel expired"};
  DeviceReport refused = ReportFrom(state, kModel);
  EXPECT_EQ(refused.phase, "refused");
  EXPECT_EQ(refused.directive_version, 8u);
  EXPECT_EQ(refused.error, "verification: the channel expired");
  state.directive_version = 9;
  EXPECT_EQ(ReportFrom(state, kModel).phase, "active");
}

// ---- the table of single transitions ----

// A rollout with device A in a given status, reached through the machine; B, C are other
// devices that keep the rollout from finishing. A sorts first, so it is the canary.
struct Fixture {
  Rollout rollout;
  TimePoint now;
  std::map<std::string, std::uint64_t> versions;
};

const std::string A = Dev(0xa);
const std::string B = Dev(0xb);
const std::string C = Dev(0xc);

std::map<std::string, Fixture> Fixtures() {
  std::map<std::string, Fixture> f;
  auto make = [&](const std::string& name, const char* strategy,
                  const std::function<void(Driver&)>& steps) {
    Driver d(Plan(strategy), {Device(0xa), Device(0xb), Device(0xc)});
    steps(d);
    Fixture x{d.r(), d.now(), {}};
    for (const auto& dev : d.r().devices) {
      x.versions[dev.id] = dev.directive_version;
    }
    f[name] = x;
  };
  // Everyone in one wave, two at a time, two failures to abort.
  const char* one = R"({"waves": ["100%"], "max_in_flight": 2, "failure_threshold": "2"})";
  const char* shadow = R"({"waves": ["100%"], "max_in_flight": 2, "failure_threshold": "2",
                           "shadow": {"min_agreement": 0.99, "min_compared": 200}})";
  const char* tight = R"({"waves": ["100%"], "max_in_flight": 2, "failure_threshold": "1"})";
  make("directed", one, [](Driver&) {});
  make("shadowing", shadow, [](Driver&) {});
  make("activating", one, [](Driver& d) { d.Report(A, "downloading", kPrevious); });
  make("health-window", one, [](Driver& d) { d.Activate(A); });
  make("done", one, [](Driver& d) {
    d.Activate(A);
    d.Tick(minutes(5));
  });
  make("failed", one, [](Driver& d) { d.Fail(A); });
  make("rolling-back", tight, [](Driver& d) {
    d.Activate(A);
    d.Fail(B);
  });
  make("rolled-back", tight, [](Driver& d) {
    d.Activate(A);
    d.Fail(B);
    d.Report(A, "active", kPrevious);
  });
  make("paused", one, [](Driver& d) { d.On(Pause{}); });
  make("cancelled", one, [](Driver& d) { d.On(Cancel{"operator"}); });
  return f;
}

enum class E {
  kDownloading,
  kVerifying,
  kActiveTarget,
  kActivePrevious,
  kFailed,
  kRolledBackPhase,
  kStaleFailed,
  kRefused,
  kAgreementFew,
  kAgreementPass,
  kAgreementLow,
  kOffline,
  kTickEarly,
  kTickDue,
  kSentAgain,
  kPause,
  kResume,
  kCancel,
};

Event Make(E e, const Fixture& f, TimePoint* at) {
  std::uint64_t v = f.versions.at(A);
  *at = f.now + seconds(10);
  switch (e) {
    case E::kDownloading:
      return DeviceReport{A, "downloading", kPrevious, "", std::nullopt, std::nullopt, v};
    case E::kVerifying:
      return DeviceReport{A, "verifying", kPrevious, "", std::nullopt, std::nullopt, v};
    case E::kActiveTarget:
      return DeviceReport{A, "active", kTarget, "", std::nullopt, std::nullopt, v};
    case E::kActivePrevious:
      return DeviceReport{A, "active", kPrevious, "", std::nullopt, std::nullopt, v};
    case E::kFailed:
      return DeviceReport{A, "failed", kPrevious, "out of memory", std::nullopt, std::nullopt, v};
    case E::kRolledBackPhase:
      return DeviceReport{
          A, "rolled-back", kPrevious, "p99 300ms above 250ms", std::nullopt, std::nullopt, v};
    case E::kStaleFailed:
      return DeviceReport{A, "failed", kPrevious, "old", std::nullopt, std::nullopt, v - 1};
    case E::kRefused:
      return DeviceReport{
          A,    "refused", kPrevious, "verification: channel expired", std::nullopt, std::nullopt,
          v + 1};
    case E::kAgreementFew:
      return DeviceReport{A, "active", kPrevious, "", kTarget, Agreement{100, 100}, v};
    case E::kAgreementPass:
      return DeviceReport{A, "active", kPrevious, "", kTarget, Agreement{400, 399}, v};
    case E::kAgreementLow:
      return DeviceReport{A, "active", kPrevious, "", kTarget, Agreement{400, 300}, v};
    case E::kOffline:
      return DeviceOnline{A, false};
    case E::kTickEarly:
      return Tick{};
    case E::kTickDue:
      *at = f.now + minutes(5);
      return Tick{};
    case E::kSentAgain:
      return DirectiveSent{A, f.rollout.Find(A)->directions, v};
    case E::kPause:
      return Pause{};
    case E::kResume:
      return Resume{};
    case E::kCancel:
      return Cancel{"operator"};
  }
  return Tick{};
}

struct Row {
  std::string from;
  E event;
  bool applied;
  DeviceStatus to;  // A's status after
  RolloutState state;
  std::vector<ActionKind> actions;
};

constexpr bool kApplied = true;
constexpr bool kIgnored = false;
constexpr RolloutState kRun = RolloutState::kRunning;
constexpr RolloutState kPaused = RolloutState::kPaused;
constexpr RolloutState kAborted = RolloutState::kAborted;
constexpr RolloutState kCancelled = RolloutState::kCancelled;
const std::vector<K> kNothing = {};
const std::vector<K> kSummary = {K::kPublishSummary};
const std::vector<K> kSummaryTimer = {K::kPublishSummary, K::kScheduleTimer};
const std::vector<K> kDirectSummary = {K::kDirect, K::kPublishSummary};
const std::vector<K> kTimer = {K::kScheduleTimer};
const std::vector<K> kDirectSummaryTimer = {K::kDirect, K::kPublishSummary, K::kScheduleTimer};

const std::vector<Row> kTable = {
    // directed: waiting for the device's first report on the new directive
    {"directed", E::kDownloading, kApplied, S::kActivating, kRun, kSummary},
    // active: watched, no longer in flight, so C takes the slot
    {"directed", E::kActiveTarget, kApplied, S::kHealthWindow, kRun, kDirectSummaryTimer},
    {"directed", E::kActivePrevious, kIgnored, S::kDirected, kRun, kNothing},
    // a failure sends A back and frees its slot: C is directed
    {"directed",
     E::kFailed,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"directed",
     E::kRolledBackPhase,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"directed", E::kStaleFailed, kIgnored, S::kDirected, kRun, kNothing},
    // the agent refused the directive: the device will not update
    {"directed",
     E::kRefused,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"directed", E::kAgreementPass, kIgnored, S::kDirected, kRun, kNothing},
    {"directed", E::kOffline, kApplied, S::kDirected, kRun, kDirectSummary},
    {"directed", E::kTickDue, kIgnored, S::kDirected, kRun, kNothing},
    {"directed", E::kSentAgain, kIgnored, S::kDirected, kRun, kNothing},
    {"directed", E::kPause, kApplied, S::kDirected, kPaused, kSummary},
    {"directed", E::kResume, kIgnored, S::kDirected, kRun, kNothing},
    {"directed", E::kCancel, kApplied, S::kDirected, kCancelled, kSummary},
    // shadowing: the gate decides
    {"shadowing", E::kDownloading, kIgnored, S::kShadowing, kRun, kNothing},
    {"shadowing", E::kAgreementFew, kApplied, S::kShadowing, kRun, kNothing},
    {"shadowing", E::kAgreementPass, kApplied, S::kDirected, kRun, kDirectSummary},
    {"shadowing",
     E::kAgreementLow,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"shadowing",
     E::kFailed,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"shadowing", E::kActiveTarget, kIgnored, S::kShadowing, kRun, kNothing},
    {"shadowing", E::kStaleFailed, kIgnored, S::kShadowing, kRun, kNothing},
    // activating
    {"activating", E::kDownloading, kIgnored, S::kActivating, kRun, kNothing},
    {"activating", E::kVerifying, kIgnored, S::kActivating, kRun, kNothing},
    {"activating", E::kActiveTarget, kApplied, S::kHealthWindow, kRun, kDirectSummaryTimer},
    {"activating",
     E::kFailed,
     kApplied,
     S::kFailed,
     kRun,
     {K::kDirect, K::kDirect, K::kPublishSummary}},
    {"activating", E::kOffline, kApplied, S::kActivating, kRun, kDirectSummary},
    // health-window: A is active; C took its slot
    {"health-window", E::kActiveTarget, kIgnored, S::kHealthWindow, kRun, kNothing},
    {"health-window", E::kDownloading, kIgnored, S::kHealthWindow, kRun, kNothing},
    {"health-window", E::kRolledBackPhase, kApplied, S::kFailed, kRun, kDirectSummary},
    {"health-window", E::kFailed, kApplied, S::kFailed, kRun, kDirectSummary},
    {"health-window", E::kTickEarly, kIgnored, S::kHealthWindow, kRun, kNothing},
    {"health-window", E::kTickDue, kApplied, S::kDone, kRun, kSummary},
    {"health-window", E::kOffline, kApplied, S::kHealthWindow, kRun, kTimer},
    {"health-window", E::kPause, kApplied, S::kHealthWindow, kPaused, kSummaryTimer},
    // done, failed: the device's part is over
    {"done", E::kFailed, kIgnored, S::kDone, kRun, kNothing},
    {"done", E::kActivePrevious, kIgnored, S::kDone, kRun, kNothing},
    {"done", E::kTickDue, kIgnored, S::kDone, kRun, kNothing},
    {"failed", E::kActiveTarget, kIgnored, S::kFailed, kRun, kNothing},
    {"failed", E::kFailed, kIgnored, S::kFailed, kRun, kNothing},
    // after an abort
    {"rolling-back", E::kActivePrevious, kApplied, S::kRolledBack, kAborted, kSummary},
    {"rolling-back", E::kRolledBackPhase, kApplied, S::kRolledBack, kAborted, kSummary},
    {"rolling-back", E::kActiveTarget, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kDownloading, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kStaleFailed, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kOffline, kApplied, S::kRollingBack, kAborted, kSummary},
    {"rolling-back", E::kTickDue, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kPause, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kResume, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolling-back", E::kCancel, kIgnored, S::kRollingBack, kAborted, kNothing},
    {"rolled-back", E::kActivePrevious, kIgnored, S::kRolledBack, kAborted, kNothing},
    {"rolled-back", E::kActiveTarget, kIgnored, S::kRolledBack, kAborted, kNothing},
    // paused: devices carry on, nobody new is directed
    {"paused", E::kActiveTarget, kApplied, S::kHealthWindow, kPaused, kSummaryTimer},
    {"paused", E::kFailed, kApplied, S::kFailed, kPaused, kDirectSummary},
    {"paused", E::kOffline, kApplied, S::kDirected, kPaused, kSummary},
    {"paused", E::kPause, kIgnored, S::kDirected, kPaused, kNothing},
    {"paused", E::kResume, kApplied, S::kDirected, kRun, kSummary},
    {"paused", E::kCancel, kApplied, S::kDirected, kCancelled, kSummary},
    // cancelled: final, deaf
    {"cancelled", E::kActiveTarget, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kFailed, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kOffline, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kSentAgain, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kTickDue, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kResume, kIgnored, S::kDirected, kCancelled, kNothing},
    {"cancelled", E::kCancel, kIgnored, S::kDirected, kCancelled, kNothing},
};

TEST(RolloutTable, EveryTransition) {
  auto fixtures = Fixtures();
  for (const auto& row : kTable) {
    SCOPED_TRACE(row.from + " + event " + std::to_string(static_cast<int>(row.event)));
    const Fixture& f = fixtures.at(row.from);
    TimePoint at;
    Event e = Make(row.event, f, &at);
    Step s = Apply(f.rollout, e, {at});
    EXPECT_EQ(s.applied, row.applied) << s.note;
    EXPECT_FALSE(s.note.empty());
    EXPECT_EQ(DeviceStatusName(s.rollout.Find(A)->status), std::string(DeviceStatusName(row.to)))
        << s.note;
    EXPECT_EQ(RolloutStateName(s.rollout.state), std::string(RolloutStateName(row.state)));
    EXPECT_EQ(KindsText(Kinds(s.actions)), KindsText(row.actions)) << s.note;
    if (!s.applied) {
      EXPECT_EQ(s.rollout, f.rollout) << "an ignored event changed the record";
    } else {
      EXPECT_EQ(s.rollout.updated_at, std::chrono::floor<seconds>(at));
      // Whatever the step did, its record survives being stored.
      EXPECT_EQ(Rollout::FromJson(s.rollout.ToJson()).value(), s.rollout);
    }
  }
}

TEST(RolloutTable, FixturesAreWhatTheirNamesSay) {
  for (const auto& [name, f] : Fixtures()) {
    if (name == "paused" || name == "cancelled") {
      EXPECT_EQ(RolloutStateName(f.rollout.state), name);
    } else {
      EXPECT_EQ(DeviceStatusName(f.rollout.Find(A)->status), name);
    }
  }
}

// ---- JSON ----

TEST(RolloutJson, RoundTripsEveryFixtureExactly) {
  for (const auto& [name, f] : Fixtures()) {
    json j = f.rollout.ToJson();
    auto back = Rollout::FromJson(j);
    ASSERT_TRUE(back) << name << ": " << back.error().ToString();
    EXPECT_EQ(*back, f.rollout) << name;
    EXPECT_EQ(back->ToJson(), j) << name;
  }
  // With a shadow agreement, a failure reason, an abort reason and a device with no previous.
  auto devices = Devices(2);
  devices[1].current = std::nullopt;
  Driver d(Plan(kShadow), devices);
  d.Report(Dev(1), "active", kPrevious, Agreement{300, 200});
  json j = d.r().ToJson();
  EXPECT_EQ(j["state"], "aborted");
  EXPECT_EQ(j["devices"][0]["agreement"], json::parse(R"({"compared": 300, "agreed": 200})"));
  EXPECT_FALSE(j["devices"][1].contains("previous"));
  EXPECT_EQ(Rollout::FromJson(j).value(), d.r());
}

TEST(RolloutJson, RefusesACorruptRecordNamingTheField) {
  auto fixtures = Fixtures();
  json good = fixtures.at("health-window").rollout.ToJson();
  json aborted = fixtures.at("rolling-back").rollout.ToJson();
  const std::vector<std::pair<std::string, std::function<void(json&)>>> cases = {
      {"deployment", [](json& j) { j["deployment"] = "plant-7"; }},
      {"model", [](json& j) { j["model"] = "Not A Model"; }},
      {"target", [](json& j) { j["target"]["release"] = "sha256:123"; }},
      {"plan", [](json& j) { j["plan"]["strategy"]["waves"] = json::array(); }},
      {"plan", [](json& j) { j.erase("plan"); }},
      {"state", [](json& j) { j["state"] = "finished"; }},
      {"wave", [](json& j) { j["wave"] = 1; }},
      {"failure_limit", [](json& j) { j["failure_limit"] = 0; }},
      {"failures", [](json& j) { j["failures"] = -1; }},
      {"devices", [](json& j) { j["devices"] = json::object(); }},
      {"devices", [](json& j) { j["devices"].push_back(j["devices"][0]); }},
      {"id", [](json& j) { j["devices"][0]["id"] = "dev-XYZ"; }},
      {"online", [](json& j) { j["devices"][0]["online"] = "yes"; }},
      {"status", [](json& j) { j["devices"][0]["status"] = "waiting"; }},
      {"status", [](json& j) { j["devices"][1]["status"] = "shadowing"; }},
      {"status", [](json& j) { j["devices"][1]["status"] = "rolled-back"; }},
      {"health_until", [](json& j) { j["devices"][0].erase("health_until"); }},
      {"health_until", [](json& j) { j["devices"][1]["health_until"] = j["created_at"]; }},
      {"directions", [](json& j) { j["devices"][0]["directions"] = 0; }},
      {"reason", [](json& j) { j["devices"][0]["reason"] = "why not"; }},
      {"agreement",
       [](json& j) {
         j["devices"][0]["agreement"] = {{"compared", 1}, {"agreed", 2}};
       }},
      {"previous",
       [](json& j) {
         j["devices"][0]["previous"] = {{"version", "1.0.0"}};
       }},
      {"updated_at", [](json& j) { j["updated_at"] = "yesterday"; }},
  };
  for (const auto& [field, mutate] : cases) {
    json j = good;
    mutate(j);
    auto r = Rollout::FromJson(j);
    ASSERT_FALSE(r) << field << ": " << j.dump();
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << field;
    EXPECT_NE(r.error().message().find("\"" + field + "\""), std::string::npos)
        << field << ": " << r.error().message();
  }
  // An aborted record with a failed device needs its failure counted.
  aborted["failures"] = 0;
  auto r = Rollout::FromJson(aborted);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("\"failures\""), std::string::npos);
  EXPECT_FALSE(Rollout::FromJson(json::array()));
}

TEST(RolloutSummary, CountsByStatusAndWaveAsJson) {
  auto devices = Devices(4);
  devices[3].online = false;
  Driver d(Plan(R"({"waves": ["1", "100%"], "failure_threshold": "2"})"), devices);
  d.Activate(Dev(1));
  json j = Summarize(d.r()).ToJson();
  EXPECT_EQ(j["deployment"], kDeployment);
  EXPECT_EQ(j["model"], kModel);
  EXPECT_EQ(j["target"]["version"], "2.0.0");
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["wave"], 1);
  EXPECT_EQ(j["waves"], 2);
  EXPECT_EQ(j["failure_limit"], 2);
  EXPECT_EQ(j["devices"], json::parse(R"({"total": 4, "offline": 1, "pending": 3, "shadowing": 0,
      "directed": 0, "activating": 0, "health-window": 1, "done": 0, "failed": 0,
      "rolling-back": 0, "rolled-back": 0})"));
  ASSERT_EQ(j["by_wave"].size(), 2u);
  EXPECT_EQ(j["by_wave"][0]["health-window"], 1);
  EXPECT_EQ(j["by_wave"][1]["pending"], 3);
  EXPECT_EQ(j["by_wave"][1]["offline"], 1);
}

TEST(RolloutNames, RoundTrip) {
  for (auto s : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kComplete,
                 RolloutState::kAborted, RolloutState::kCancelled}) {
    EXPECT_EQ(ParseRolloutState(RolloutStateName(s)), s);
  }
  for (std::size_t i = 0; i < kDeviceStatusCount; ++i) {
    auto s = static_cast<DeviceStatus>(i);
    EXPECT_EQ(ParseDeviceStatus(DeviceStatusName(s)), s);
  }
  EXPECT_EQ(ParseDeviceStatus("waiting"), std::nullopt);
  EXPECT_STREQ(EventName(Event(Tick{})), "tick");
  EXPECT_STREQ(ActionKindName(K::kDirect), "direct");
}

}  // namespace
}  // namespace airlock::gateway
