#pragma once
// The fleet service in process (gateway/fleet_service.hpp): a real gateway.db, the devices'
// messages handed in as the MQTT client would, the published messages captured, and a clock the
// test moves. Used by the fleet service's tests and by the attack suite (tests/attack/).

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"
#include "gateway/fleet_service.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/serve_fixture.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"
#include "trust/directive.hpp"

namespace airlock::gateway {

// The wall clock's time when the test starts (the documents expire against it), moved by hand.
class StepClock final : public Clock {
 public:
  TimePoint Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void Advance(std::chrono::seconds d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_ = airlock::gateway::Now();
};

class FleetFixture : public ::testing::Test {
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
                              .root_rotations = std::move(root_rotations),
                              .on_device_report = {}},
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

}  // namespace airlock::gateway
