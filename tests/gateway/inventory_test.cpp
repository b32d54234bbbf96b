// InventoryReporter: the site's devices as the hub is told of them (PUT
// /api/v1/gateways/NAME/inventory), against a hub stand-in on loopback that records what it is
// sent: enrolled devices only, with their labels and what they last reported; again on a change;
// and again after a hub that refused.

#include "gateway/inventory.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
using std::chrono::seconds;

TimePoint T0() { return TimePoint(seconds(1'796'000'000)); }

class InventoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = GatewayStateStore::Open(dir_.path(), T0());
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
    hub_.Put("/api/v1/gateways/plant-1/inventory",
             [this](const httplib::Request& req, httplib::Response& res) {
               std::lock_guard lock(mu_);
               res.status = refuse_ ? 503 : 204;
               if (!refuse_) {
                 received_.push_back(json::parse(req.body));
               }
               auth_ = req.get_header_value("Authorization");
             });
    port_ = hub_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { hub_.listen_after_bind(); });
  }
  void TearDown() override {
    hub_.stop();
    thread_.join();
  }
  std::string Enroll(const std::string& id, Labels labels) {
    auto token = store_->CreateEnrollmentToken(labels, T0() + std::chrono::hours(1), T0());
    auto d = store_->Enroll(
        *token,
        [&](const Labels& l) -> Result<DeviceRecord> {
          return DeviceRecord{.id = id,
                              .labels = l,
                              .cert_serial = "01",
                              .cert_not_after = T0() + std::chrono::hours(24),
                              .mqtt_password_hash = "ab",
                              .revoked_at = std::nullopt,
                              .enrolled_at = T0()};
        },
        T0());
    EXPECT_TRUE(d) << d.error().ToString();
    return id;
  }
  // Waits until the stand-in has n inventories; the last.
  json Nth(std::size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu_);
        if (received_.size() >= n) {
          return received_[n - 1];
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "no inventory number " << n;
    return json();
  }

  airlock::testing::TempDir dir_;
  std::unique_ptr<GatewayStateStore> store_;
  httplib::Server hub_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<json> received_;
  std::string auth_;
  bool refuse_ = false;
};

TEST_F(InventoryTest, EnrolledDevicesGoWithWhatTheyLastReported) {
  std::string a = Enroll("dev-000000000000000a", {{"line", "3"}});
  std::string b = Enroll("dev-000000000000000b", {{"line", "4"}});
  std::string c = Enroll("dev-000000000000000c", {{"line", "3"}});
  ASSERT_TRUE(store_->RevokeDevice(c, T0()));
  ASSERT_TRUE(store_->PutDeviceState(
      a, 1,
      json{{"platform", "linux/arm64"},
           {"models",
            {{{"model", "visual-inspection"}, {"active_version", "1.1.0"}, {"phase", "active"}}}}},
      T0() + seconds(5)));
  ASSERT_TRUE(store_->SetDeviceOnline(a, true, T0() + seconds(6)));

  auto inventory = InventoryOf(*store_);
  ASSERT_TRUE(inventory) << inventory.error().ToString();
  const json& devices = (*inventory)["devices"];
  ASSERT_EQ(devices.size(), 2u) << devices.dump();  // c is revoked
  EXPECT_EQ(devices[0]["id"], a);
  EXPECT_EQ(devices[0]["labels"], (json{{"line", "3"}}));
  EXPECT_EQ(devices[0]["platform"], "linux/arm64");
  EXPECT_EQ(devices[0]["online"], true);
  EXPECT_EQ(devices[0]["last_seen"], FormatRfc3339(T0() + seconds(6)));
  EXPECT_EQ(devices[0]["models"][0]["active_version"], "1.1.0");
  EXPECT_EQ(devices[1]["id"], b);
  EXPECT_FALSE(devices[1].contains("platform"));  // it never reported
  EXPECT_EQ(devices[1]["online"], false);
  EXPECT_TRUE(devices[1]["models"].empty());
}

TEST_F(InventoryTest, GoesAtStartOnAChangeAndAgainAfterARefusal) {
  Enroll("dev-000000000000000a", {{"line", "3"}});
  HubHttp hub("http://127.0.0.1:" + std::to_string(port_), "alk_credential");
  {
    InventoryReporter reporter(*store_, hub, "plant-1", std::chrono::hours(1));
    EXPECT_EQ(Nth(1)["devices"].size(), 1u);
    {
      std::lock_guard lock(mu_);
      EXPECT_EQ(auth_, "Bearer alk_credential");
    }
    Enroll("dev-000000000000000b", {{"line", "4"}});
    reporter.Changed();
    EXPECT_EQ(Nth(2)["devices"].size(), 2u);
    // Counted once the answer is in, just after the stand-in recorded it.
    for (int i = 0; i < 500 && reporter.reported() < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(reporter.reported(), 2u);
  }
  // A hub that refuses: counted as nothing, and the next tick tries again.
  {
    std::lock_guard lock(mu_);
    refuse_ = true;
  }
  InventoryReporter reporter(*store_, hub, "plant-1", std::chrono::milliseconds(50),
                             std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(reporter.reported(), 0u);
  {
    std::lock_guard lock(mu_);
    refuse_ = false;
  }
  EXPECT_EQ(Nth(3)["devices"].size(), 2u);
}

}  // namespace
}  // namespace airlock::gateway
