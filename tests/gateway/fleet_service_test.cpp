// The fleet service in process: a real gateway.db, the devices' messages handed in as the MQTT
// client would, the published messages captured, and a clock the test moves (health windows end
// on it). What the process tests (fleet_test.cpp) leave to this one: a directive carries every
// model's entry, a health window's end completes the rollout, a newer deployment supersedes.

#include "gateway/fleet_service.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/fleet_fixture.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::WaitUntil;
using std::chrono::seconds;

class FleetServiceTest : public FleetFixture {};

const std::string kDep1 = "dep-0000000000000001";
const std::string kDep2 = "dep-0000000000000002";

TEST_F(FleetServiceTest, AHealthWindowEndsOnTheClockAndADirectiveKeepsEveryModel) {
  std::string d = Enroll({});
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(d)->online; }));
  nlohmann::json plan = {
      {"selector", nlohmann::json::object()},
      {"strategy", {{"waves", nlohmann::json::array({"100%"})}, {"health_window", "1m"}}}};
  std::string vib = Deliver(kDep1, "vib", "1.0.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return DirectiveOf(d).has_value(); }));
  auto first = *DirectiveOf(d);
  ASSERT_EQ(first.models.size(), 1u);
  ASSERT_TRUE(first.models[0].health);
  EXPECT_EQ(first.models[0].health->window, std::chrono::minutes(1));

  // Active: in its health window until the clock passes it.
  Report(d, "vib", "1.0.0", vib);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "running", "health-window", 1); }));
  clock_.Advance(seconds(30));
  clock_.Advance(seconds(31));
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 1); }));

  // Another model (no rollout plan in its offer: every device, the default strategy): the
  // device's next directive names both.
  std::string cam = Deliver(kDep2, "cam", "2.0.0", nullptr);
  ASSERT_TRUE(WaitUntil([&] { return VersionOf(d) == 2; }));
  auto both = *DirectiveOf(d);
  ASSERT_EQ(both.models.size(), 2u);
  EXPECT_EQ(both.models[0].model, "cam");
  EXPECT_EQ(both.models[0].release.ToString(), cam);
  EXPECT_EQ(both.models[1].model, "vib");
  EXPECT_EQ(both.models[1].release.ToString(), vib);
  EXPECT_EQ(store_->DeviceDirective(d)->version, 2u);
  // The default waves, a canary then the rest. (The fleet summary is published after the
  // directive: waited for, not read at once.)
  EXPECT_TRUE(WaitUntil([&] { return Fleet(kDep2).is_object() && Fleet(kDep2)["waves"] == 2; }))
      << Fleet(kDep2).dump();
}

// A gateway restarted with a root rotation sends every directed device a new directive that
// carries it; restarted again, it sends nothing more (the devices have it).
TEST_F(FleetServiceTest, ARootRotationReachesEveryDirectedDeviceOnce) {
  std::string d = Enroll({{"line", "1"}});
  std::string idle = Enroll({{"line", "2"}});  // no directive: gets the roots with its first
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(d)->online; }));
  nlohmann::json plan = {{"selector", {{"line", "1"}}},
                         {"strategy", {{"waves", nlohmann::json::array({"100%"})}}}};
  Deliver(kDep1, "vib", "1.0.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return VersionOf(d) == 1; }));

  auto rotation = trust::SignedDocument::Parse(trust_.root_text).value();
  StartFleet({rotation});
  ASSERT_TRUE(WaitUntil([&] { return VersionOf(d) == 2; }));
  std::string payload;
  {
    std::lock_guard lock(mu_);
    payload = devices_["airlock/v1/dev/" + d + "/directive"];
  }
  auto message = delivery::DirectiveMessage::FromJson(nlohmann::json::parse(payload)).value();
  ASSERT_EQ(message.roots.size(), 1u);
  EXPECT_EQ(message.roots[0].body(), rotation.body());
  // The desired state is what it was.
  ASSERT_EQ(DirectiveOf(d)->models.size(), 1u);
  EXPECT_EQ(DirectiveOf(d)->models[0].model, "vib");
  EXPECT_EQ(VersionOf(idle), 0u);

  StartFleet({rotation});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing is expected to happen
  EXPECT_EQ(VersionOf(d), 2u);
  EXPECT_EQ(store_->DeviceDirective(d)->version, 2u);
}

TEST_F(FleetServiceTest, ANewDeploymentOfTheModelSupersedesTheRunningRollout) {
  std::string a = Enroll({{"line", "3"}});
  std::string b = Enroll({{"line", "3"}});
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(b)->online; }));
  nlohmann::json plan = {
      {"selector", {{"line", "3"}}},
      {"strategy", {{"waves", nlohmann::json::array({"1", "100%"})}, {"health_window", "0s"}}}};
  std::string old_release = Deliver(kDep1, "vib", "1.0.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return DirectiveOf(a).has_value(); }));
  EXPECT_EQ(DirectiveOf(a)->models[0].release.ToString(), old_release);

  std::string new_release = Deliver(kDep2, "vib", "1.1.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "running", "directed", 1); }));
  EXPECT_EQ(Fleet(kDep1)["state"], "cancelled");
  EXPECT_NE(Fleet(kDep1)["reason"].get<std::string>().find(kDep2), std::string::npos);
  ASSERT_TRUE(WaitUntil([&] { return VersionOf(a) == 2; }));
  EXPECT_EQ(DirectiveOf(a)->models[0].release.ToString(), new_release);
  // Reports go to the new rollout only.
  Report(a, "vib", "1.1.0", new_release);
  ASSERT_TRUE(WaitUntil([&] { return DirectiveOf(b).has_value(); }));
  EXPECT_EQ(DirectiveOf(b)->models[0].release.ToString(), new_release);
  EXPECT_EQ(fleet_->Get(kDep1)->state, RolloutState::kCancelled);
  EXPECT_EQ(fleet_->Rollouts().size(), 2u);
}

// A device that enrolls into the selector joins the running rollout (in the last wave); one
// relabelled out of it leaves as it is.
TEST_F(FleetServiceTest, DevicesJoinAndLeaveAsTheSelectorSays) {
  std::string a = Enroll({{"line", "3"}});
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(a)->online; }));
  nlohmann::json plan = {
      {"selector", {{"line", "3"}}},
      {"strategy", {{"waves", nlohmann::json::array({"1", "100%"})}, {"health_window", "1h"}}}};
  Deliver(kDep1, "vib", "1.0.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "running", "directed", 1); }));
  std::string b = Enroll({{"line", "3"}});
  std::string c = Enroll({{"line", "4"}});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "running", "pending", 1); }));
  auto r = fleet_->Get(kDep1).value();
  ASSERT_EQ(r.devices.size(), 2u);
  EXPECT_EQ(r.devices[1].id, b);
  EXPECT_EQ(r.devices[1].wave, 1u);
  EXPECT_FALSE(r.Find(c));

  ASSERT_TRUE(store_->UpdateDeviceLabels(b, {{"line", "4"}}, {}));
  fleet_->OnDeviceChanged(b);
  ASSERT_TRUE(store_->UpdateDeviceLabels(c, {{"line", "3"}}, {}));
  fleet_->OnDeviceChanged(c);
  ASSERT_TRUE(WaitUntil([&] {
    auto now = fleet_->Get(kDep1).value();
    return now.Find(c) != nullptr && now.Find(b) == nullptr;
  }));
  EXPECT_FALSE(DirectiveOf(b));
}

}  // namespace
}  // namespace airlock::gateway
