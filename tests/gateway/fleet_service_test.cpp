// The fleet service in process: a real gateway.db, the devices' messages handed in as the MQTT
// client would, the published messages captured, and a clock the test moves (health windows end
// on it). What the process tests (fleet_test.cpp) leave to this one: a directive carries every
// model's entry, a health window's end completes the rollout, a newer deployment supersedes.

#include "gateway/fleet_service.hpp"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/serve_fixture.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"
#include "trust/directive.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::WaitUntil;
using std::chrono::seconds;

// The wall clock's time when the test starts (the documents expire against it), moved by hand.
class StepClock final : public Clock {
 public:
  TimePoint Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void Advance(seconds d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_ = airlock::gateway::Now();
};

class FleetServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = GatewayStateStore::Open(dir_.path(), clock_.Now()).value();
    StartFleet();
  }

  // (Re)starts the service, as a gateway restart does, with the root rotations it accepted.
  void StartFleet(std::vector<trust::SignedDocument> root_rotations = {}) {
    fleet_.reset();
    auto root = trust::VerifyRoot(trust::SignedDocument::Parse(trust_.root_text).value(), Now());
    ASSERT_TRUE(root);
    auto publisher = [this](std::map<std::string, std::string>& to) {
      return [this, &to](const std::string& topic, const std::string& payload, bool) -> Status {
        std::lock_guard lock(mu_);
        to[topic] = payload;
        return {};
      };
    };
    fleet_ =
        FleetService::Create({.gateway = "gw1",
                              .device_prefix = "airlock/v1",
                              .hub_prefix = "airlock/v1",
                              .directive_life = std::chrono::hours(24),
                              .capture = std::nullopt,
                              .root_rotations = std::move(root_rotations)},
                             *root, *store_, key_, publisher(devices_), publisher(hub_), clock_)
            .value();
    fleet_->Start();
  }

  // A device enrolled with labels, online.
  std::string Enroll(const Labels& labels) {
    std::string id = "dev-000000000000000" + std::to_string(++enrolled_);
    auto token =
        store_->CreateEnrollmentToken(labels, clock_.Now() + std::chrono::hours(1), clock_.Now());
    EXPECT_TRUE(store_->Enroll(
        *token,
        [&](const Labels& given) -> Result<DeviceRecord> {
          return DeviceRecord{.id = id,
                              .labels = given,
                              .cert_serial = "01",
                              .cert_not_after = clock_.Now() + std::chrono::hours(24),
                              .mqtt_password_hash = "ab",
                              .revoked_at = std::nullopt,
                              .enrolled_at = clock_.Now()};
        },
        clock_.Now()));
    fleet_->OnDeviceChanged(id);
    fleet_->OnDeviceMessage("airlock/v1/dev/" + id + "/online", "true");
    return id;
  }

  // A delivery of model version, available and approved for rollout, and its release id.
  std::string Deliver(const std::string& deployment, const std::string& model,
                      const std::string& version, const nlohmann::json& rollout) {
    TestPackage package = MakePackage("models/" + model, version, {"{}", model + version});
    trust::SignedDocument release = trust_.Release(model, version, package, {"linux/amd64"});
    DeliveryRecord r;
    r.id = "dlv-" + Sha256Of(deployment).hex().substr(0, 32);
    r.deployment = deployment;
    r.model = model;
    r.version = version;
    r.offer = delivery::DeliveryOffer{.envelope = {.message_id = "m" + r.id, .sent_at = Now()},
                                      .delivery_id = r.id,
                                      .deployment_id = deployment,
                                      .model = model,
                                      .version = version,
                                      .release = release,
                                      .total_size = 100,
                                      .platform_sizes = {},
                                      .expires = Now() + std::chrono::hours(1),
                                      .channel = trust_.Channel(model, "production",
                                                                ++channel_version_, {release}),
                                      .rollout = rollout}
                  .ToJson();
    r.phase = DeliveryPhase::kAvailable;
    r.repository = "models/" + model;
    r.bytes_total = 100;
    r.approval = Approval::kRolloutApproved;
    r.created_at = r.updated_at = clock_.Now();
    EXPECT_TRUE(store_->Put(r));
    fleet_->OnDeliveryApproved(r.id);
    return trust::ReleaseId(release).value().ToString();
  }

  // The device's current directive, verified against the service's key (nullopt before one).
  std::optional<trust::Directive> DirectiveOf(const std::string& device) {
    std::string payload;
    {
      std::lock_guard lock(mu_);
      auto it = devices_.find("airlock/v1/dev/" + device + "/directive");
      if (it == devices_.end() || it->second.empty()) {
        return std::nullopt;
      }
      payload = it->second;
    }
    auto message = delivery::DirectiveMessage::FromJson(nlohmann::json::parse(payload)).value();
    auto d = trust::VerifyDirective(message.directive, key_.public_key(), device, 0, clock_.Now());
    EXPECT_TRUE(d) << d.error().ToString();
    return d ? std::optional(*d) : std::nullopt;
  }
  std::uint64_t VersionOf(const std::string& device) {
    auto d = DirectiveOf(device);
    return d ? d->version : 0;
  }

  // Reports model active on release, referring to the device's current directive.
  void Report(const std::string& device, const std::string& model, const std::string& version,
              const std::string& release) {
    delivery::DeviceState s{
        .envelope = {.message_id = "s" + std::to_string(++seq_), .sent_at = Now()},
        .device = device,
        .seq = seq_,
        .platform = "linux/amd64",
        .directive_version = VersionOf(device),
        .refused_version = 0,
        .refused = std::nullopt,
        .models = {{.model = model,
                    .phase = "active",
                    .active_version = version,
                    .active_release = release,
                    .target_version = "",
                    .target_release = "",
                    .installed = {version},
                    .shadow = std::nullopt,
                    .error = std::nullopt}}};
    fleet_->OnDeviceMessage("airlock/v1/dev/" + device + "/state", s.ToJson().dump());
  }

  // The rollout of deployment in the latest gw/gw1/fleet message, or null.
  nlohmann::json Fleet(const std::string& deployment) {
    std::lock_guard lock(mu_);
    auto it = hub_.find("airlock/v1/gw/gw1/fleet");
    if (it == hub_.end()) {
      return nullptr;
    }
    nlohmann::json rollouts = nlohmann::json::parse(it->second)["rollouts"];
    for (const nlohmann::json& r : rollouts) {
      if (r["deployment"] == deployment) {
        return r;
      }
    }
    return nullptr;
  }
  bool FleetSays(const std::string& deployment, const std::string& state, const std::string& status,
                 int count) {
    nlohmann::json r = Fleet(deployment);
    return r.is_object() && r["state"] == state && r["devices"][status] == count;
  }

  airlock::testing::TempDir dir_;
  StepClock clock_;
  Trust trust_;
  PrivateKey key_ = PrivateKey::Generate().value();
  std::unique_ptr<GatewayStateStore> store_;
  std::mutex mu_;
  std::map<std::string, std::string> devices_, hub_;  // topic → the last payload
  std::unique_ptr<FleetService> fleet_;
  int enrolled_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t channel_version_ = 0;
};

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
