// The cloud broker as airlock-hub broker-config sets it up, against a real Mosquitto: TLS with
// certificates from an `airlock ca` CA, and an ACL that keeps each gateway to its own
// gw/{name}/… topics while the hub reaches all of them (issue 8; docs/security.md).
#include <gtest/gtest.h>

#include "core/pki.hpp"
#include "delivery/mosquitto.hpp"
#include "net/mqtt.hpp"
#include "support/mosquitto.hpp"
#include "support/received_messages.hpp"
#include "support/test_support.hpp"

namespace airlock::hub {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using airlock::testing::ReceivedMessages;
using airlock::testing::WaitUntil;

constexpr char kGw[] = "airlock/v1/gw/";

TEST(CloudBroker, EachGatewayReachesOnlyItsOwnTopicsAndTheHubReachesAll) {
  airlock::testing::TempDir dir;
  // As the operator would: airlock ca init, airlock-hub broker-config, airlock ca issue.
  ASSERT_EQ(airlock::testing::RunAirlock({"ca", "init", (dir / "ca").string()}).exit_code, 0);
  auto broker_config = airlock::testing::RunCommand(
      {AIRLOCK_HUB_BINARY, "broker-config", "--ca", (dir / "ca").string(), "--out",
       (dir / "broker").string(), "--name", "127.0.0.1"},
      {}, 60);
  ASSERT_EQ(broker_config.exit_code, 0) << broker_config.err;
  EXPECT_NE(broker_config.out.find("tls_dir: " + (dir / "broker").string()), std::string::npos)
      << broker_config.out;
  for (const char* gw : {"plant-1", "plant-2"}) {
    auto issued = airlock::testing::RunAirlock({"ca", "issue", "--ca", (dir / "ca").string(),
                                                "--name", gw, "-o", (dir / gw).string()});
    ASSERT_EQ(issued.exit_code, 0) << issued.err;
  }
  airlock::testing::MosquittoBroker broker(
      {.port = 0,
       .username = "",
       .password = "",
       .listener_config = delivery::MosquittoTlsListener(dir / "broker"),
       .acl_file = dir / "broker" / "acl"});
  auto client = [&](const std::string& id, const fs::path& stem) {
    net::MqttOptions o;
    o.broker_url = broker.url();
    o.client_id = id;
    o.tls = net::MqttTls{.ca_file = (dir / "ca" / "ca.pem").string(),
                         .cert_file = stem.string() + ".pem",
                         .key_file = stem.string() + ".key",
                         .verify_hostname = true};
    o.operation_timeout = 3s;
    auto c = net::MqttClient::Create(o).value();
    EXPECT_TRUE(c->WaitConnected(10s)) << broker.Log();
    return c;
  };
  auto hub = client("airlock-hub", dir / "broker" / "hub");
  auto one = client("airlock-gw-plant-1", dir / "plant-1");
  auto two = client("airlock-gw-plant-2", dir / "plant-2");
  ReceivedMessages at_hub, at_one, spy;
  const std::string p1 = std::string(kGw) + "plant-1/";
  ASSERT_TRUE(hub->Subscribe(std::string(kGw) + "+/delivery/+/ready", 1, at_hub.Handler()));
  ASSERT_TRUE(one->Subscribe(p1 + "delivery/offer", 1, at_one.Handler()));
  (void)two->Subscribe(p1 + "delivery/offer", 1, spy.Handler());
  (void)two->Subscribe(std::string(kGw) + "+/delivery/+/grant", 1, spy.Handler());
  ASSERT_TRUE(one->Subscribe(p1 + "rollout/command", 1, at_one.Handler()));
  (void)two->Subscribe(p1 + "rollout/command", 1, spy.Handler());

  // plant-2 answers for plant-1, and plant-1 offers itself a delivery: neither is delivered.
  (void)two->Publish(p1 + "delivery/d-1/ready", "forged-ready");
  (void)one->Publish(p1 + "delivery/offer", "self-offer");
  (void)one->Publish(p1 + "rollout/command", "self-command");
  (void)two->Publish(p1 + "rollout/command", "forged-command");
  // The real exchange goes through.
  ASSERT_TRUE(hub->Publish(p1 + "delivery/offer", "offer"));
  ASSERT_TRUE(hub->Publish(p1 + "delivery/d-1/grant", "grant"));
  ASSERT_TRUE(hub->Publish(p1 + "rollout/command", "command"));
  EXPECT_TRUE(WaitUntil([&] { return at_one.Has(p1 + "delivery/offer", "offer"); }));
  ASSERT_TRUE(one->Publish(p1 + "delivery/d-1/ready", "ready"));
  EXPECT_TRUE(WaitUntil([&] { return at_hub.Has(p1 + "delivery/d-1/ready", "ready"); }));
  // In order on one broker: the refused messages would have arrived by now.
  EXPECT_FALSE(at_hub.Has(p1 + "delivery/d-1/ready", "forged-ready"));
  EXPECT_FALSE(at_one.Has(p1 + "delivery/offer", "self-offer"));
  EXPECT_FALSE(spy.Has(p1 + "delivery/offer", "offer"));
  EXPECT_FALSE(spy.Has(p1 + "delivery/d-1/grant", "grant"));
  EXPECT_TRUE(WaitUntil([&] { return at_one.Has(p1 + "rollout/command", "command"); }));
  EXPECT_FALSE(at_one.Has(p1 + "rollout/command", "self-command"));
  EXPECT_FALSE(at_one.Has(p1 + "rollout/command", "forged-command"));
  EXPECT_FALSE(spy.Has(p1 + "rollout/command", "command"));
}

TEST(CloudBroker, TheAclNamesEachGatewaysTopicsInTheirDirection) {
  auto acl = delivery::MosquittoGatewayAcl("airlock/v1", "airlock-hub").value();
  EXPECT_NE(acl.find("user airlock-hub\ntopic readwrite airlock/v1/gw/#\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern read airlock/v1/gw/%u/delivery/offer\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern write airlock/v1/gw/%u/delivery/+/ready\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern write airlock/v1/gw/%u/fleet\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern read airlock/v1/gw/%u/rollout/command\n"), std::string::npos);
  EXPECT_EQ(acl.find("pattern readwrite"), std::string::npos);
  EXPECT_FALSE(delivery::MosquittoGatewayAcl("a/+", "airlock-hub"));
}

}  // namespace
}  // namespace airlock::hub
