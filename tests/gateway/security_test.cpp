// The gateway's side of issue 8 (docs/security.md): the factory broker as airlock-gateway
// broker-config sets it up, against a real Mosquitto (TLS with certificates from the gateway's
// device CA, and an ACL that keeps each device to its own topics), and plain HTTP refused off
// loopback. HTTPS with device certificates end to end: tests/system/secure_system_test.cpp.
#include "gateway/broker_config.hpp"

#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "core/fs.hpp"
#include "core/pki.hpp"
#include "delivery/mosquitto.hpp"
#include "gateway/state_store.hpp"
#include "net/mqtt.hpp"
#include "support/mosquitto.hpp"
#include "support/received_messages.hpp"
#include "support/test_support.hpp"

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using airlock::testing::MosquittoBroker;
using airlock::testing::ReceivedMessages;
using airlock::testing::WaitUntil;

constexpr char kDeviceA[] = "dev-aaaaaaaaaaaaaaaa";
constexpr char kDeviceB[] = "dev-bbbbbbbbbbbbbbbb";
constexpr char kDev[] = "airlock/v1/dev/";

class FactoryBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_.emplace(pki::CertificateAuthority::Open(dir_ / "ca", "test devices", Now()).value());
    FactoryBrokerOptions o;
    o.gateway_name = "plant-1";
    o.names = {"localhost", "127.0.0.1"};
    o.dir = dir_ / "broker";
    ASSERT_TRUE(WriteFactoryBrokerFiles(*ca_, o, Now()));
    broker_.emplace(airlock::testing::MosquittoOptions{
        .port = 0,
        .username = "",
        .password = "",
        .listener_config = delivery::MosquittoTlsListener(o.dir),
        .acl_file = o.dir / "acl"});
  }

  // A device's key and certificate, as enrollment makes them.
  net::MqttTls Device(const std::string& id, const pki::CertificateAuthority& ca) {
    std::string key = pki::MakeKey().value();
    auto issued = ca.Issue(pki::MakeCsr(key, id).value(), id, Now(), 24h).value();
    const std::string& cert = issued.pem;
    fs::path d = dir_ / ("device-" + id + "-" + std::to_string(++made_));
    serials_[(d / "cert.pem").string()] = issued.serial;
    EXPECT_TRUE(MakeDirectories(d));
    EXPECT_TRUE(WriteFileAtomic(d / "key.pem", key, 0600));
    EXPECT_TRUE(WriteFileAtomic(d / "cert.pem", cert, 0644));
    return net::MqttTls{.ca_file = (dir_ / "broker" / "ca.pem").string(),
                        .cert_file = (d / "cert.pem").string(),
                        .key_file = (d / "key.pem").string(),
                        .verify_hostname = true};
  }
  net::MqttTls Gateway() {
    fs::path b = dir_ / "broker";
    return net::MqttTls{.ca_file = (b / "ca.pem").string(),
                        .cert_file = (b / "gateway.pem").string(),
                        .key_file = (b / "gateway.key").string(),
                        .verify_hostname = true};
  }

  std::unique_ptr<net::MqttClient> Client(const std::string& id, net::MqttTls tls,
                                          std::string url = "") {
    net::MqttOptions o;
    o.broker_url = url.empty() ? broker_->url() : url;
    o.client_id = id;
    o.tls = std::move(tls);
    o.connect_timeout = 3s;
    o.operation_timeout = 3s;
    return net::MqttClient::Create(o).value();
  }
  std::unique_ptr<net::MqttClient> Connected(const std::string& id, net::MqttTls tls) {
    auto c = Client(id, std::move(tls));
    EXPECT_TRUE(c->WaitConnected(10s)) << broker_->Log();
    return c;
  }

  static TimePoint Now() { return std::chrono::system_clock::now(); }

  airlock::testing::TempDir dir_;
  std::optional<pki::CertificateAuthority> ca_;
  std::optional<MosquittoBroker> broker_;
  int made_ = 0;
  std::map<std::string, std::string> serials_;  // by certificate file
};

TEST_F(FactoryBrokerTest, EachDeviceReachesOnlyItsOwnTopicsAndTheGatewayReachesAll) {
  auto gateway = Connected("airlock-gw-plant-1", Gateway());
  ReceivedMessages at_gateway;
  ASSERT_TRUE(gateway->Subscribe(std::string(kDev) + "+/state", 1, at_gateway.Handler()));
  auto a = Connected(kDeviceA, Device(kDeviceA, *ca_));
  auto b = Connected(kDeviceB, Device(kDeviceB, *ca_));
  ReceivedMessages at_b;
  ASSERT_TRUE(b->Subscribe(std::string(kDev) + kDeviceB + "/directive", 1, at_b.Handler()));

  // Its own state reaches the gateway.
  ASSERT_TRUE(a->Publish(std::string(kDev) + kDeviceA + "/state", "a-own"));
  EXPECT_TRUE(WaitUntil([&] { return at_gateway.Has(std::string(kDev) + kDeviceA + "/state", "a-own"); }));

  // A's state in B's name and a directive for B: not delivered to anyone.
  (void)a->Publish(std::string(kDev) + kDeviceB + "/state", "a-as-b");
  (void)a->Publish(std::string(kDev) + kDeviceB + "/directive", "a-directs-b");
  // Nor may a device direct itself: directives are the gateway's.
  ReceivedMessages at_a;
  ASSERT_TRUE(a->Subscribe(std::string(kDev) + kDeviceA + "/directive", 1, at_a.Handler()));
  (void)a->Publish(std::string(kDev) + kDeviceA + "/directive", "a-directs-a");

  // A may not read B's topics, nor everyone's: Mosquitto 2.0 grants the subscription and then
  // delivers nothing the ACL does not let A read.
  ReceivedMessages spy;
  (void)a->Subscribe(std::string(kDev) + kDeviceB + "/directive", 1, spy.Handler());
  (void)a->Subscribe(std::string(kDev) + "+/state", 1, spy.Handler());

  // The gateway directs both; each gets its own.
  ASSERT_TRUE(gateway->Publish(std::string(kDev) + kDeviceB + "/directive", "for-b"));
  ASSERT_TRUE(gateway->Publish(std::string(kDev) + kDeviceA + "/directive", "for-a"));
  EXPECT_TRUE(WaitUntil([&] { return at_b.Has(std::string(kDev) + kDeviceB + "/directive", "for-b"); }));
  EXPECT_TRUE(WaitUntil([&] { return at_a.Has(std::string(kDev) + kDeviceA + "/directive", "for-a"); }));
  // By now the refused messages would have arrived before the gateway's (one broker, in order).
  EXPECT_FALSE(at_gateway.Has(std::string(kDev) + kDeviceB + "/state", "a-as-b"));
  EXPECT_FALSE(at_b.Has(std::string(kDev) + kDeviceB + "/directive", "a-directs-b"));
  EXPECT_FALSE(at_a.Has(std::string(kDev) + kDeviceA + "/directive", "a-directs-a"));
  // B's state, published by B, reaches the gateway and not A.
  ASSERT_TRUE(b->Publish(std::string(kDev) + kDeviceB + "/state", "b-own"));
  EXPECT_TRUE(WaitUntil([&] { return at_gateway.Has(std::string(kDev) + kDeviceB + "/state", "b-own"); }));
  ASSERT_TRUE(gateway->Publish(std::string(kDev) + kDeviceA + "/directive", "for-a-again"));
  EXPECT_TRUE(WaitUntil([&] { return at_a.Has(std::string(kDev) + kDeviceA + "/directive", "for-a-again"); }));
  EXPECT_FALSE(spy.Has(std::string(kDev) + kDeviceB + "/directive", "for-b"));
  EXPECT_FALSE(spy.Has(std::string(kDev) + kDeviceB + "/state", "b-own"));
  EXPECT_FALSE(spy.Has(std::string(kDev) + kDeviceA + "/state", "a-own"));
}

TEST_F(FactoryBrokerTest, RefusesClientsWithoutACertificateOfTheDeviceCa) {
  // No client certificate.
  net::MqttTls bare = Gateway();
  bare.cert_file.clear();
  bare.key_file.clear();
  auto anonymous = Client("anonymous", bare);
  // A certificate from another CA, with a device's name.
  auto other_ca = pki::CertificateAuthority::Open(dir_ / "other-ca", "intruder", Now()).value();
  auto forged = Client(kDeviceA, Device(kDeviceA, other_ca));
  // Plain MQTT to the TLS listener.
  net::MqttOptions plain;
  plain.broker_url = "tcp://127.0.0.1:" + std::to_string(broker_->port());
  plain.client_id = "plain";
  plain.connect_timeout = 3s;
  auto cleartext = net::MqttClient::Create(plain).value();
  // The broker's certificate checked against another CA: the client refuses the broker.
  net::MqttTls wrong_trust = Device(kDeviceB, *ca_);
  fs::path other_pem = dir_ / "other-ca" / "ca.pem";
  wrong_trust.ca_file = other_pem.string();
  auto misled = Client(kDeviceB, wrong_trust);

  // A legitimate device connects meanwhile, so the refusals are not a broker that is down.
  auto good = Connected(kDeviceA, Device(kDeviceA, *ca_));
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(anonymous->IsConnected());
  EXPECT_FALSE(forged->IsConnected());
  EXPECT_FALSE(cleartext->IsConnected());
  EXPECT_FALSE(misled->IsConnected());
  EXPECT_TRUE(good->IsConnected());
}

// A revoked device's certificate is refused by the factory broker at its next connection: the
// gateway writes the device CA's revocation list and makes the broker reload it (SIGHUP through
// devices.mqtt_broker_pid_file). The other devices go on connecting.
TEST_F(FactoryBrokerTest, ARevokedDeviceIsRefusedAtItsNextConnection) {
  GatewayConfig config;
  config.name = "plant-1";
  config.data = dir_ / "data";
  ASSERT_TRUE(MakeDirectories(config.data));
  auto opened = GatewayStateStore::Open(config.data, Now());
  ASSERT_TRUE(opened) << opened.error().ToString();
  auto& store = *opened;
  std::map<std::string, net::MqttTls> tls;
  for (const char* id : {kDeviceA, kDeviceB}) {
    tls[id] = Device(id, *ca_);
    const std::string serial = serials_.at(tls[id].cert_file);
    auto token = store->CreateEnrollmentToken({}, Now() + 1h, Now());
    ASSERT_TRUE(token);
    ASSERT_TRUE(store->Enroll(
        *token,
        [&](const Labels& labels) -> Result<DeviceRecord> {
          return DeviceRecord{.id = id,
                              .labels = labels,
                              .cert_serial = serial,
                              .cert_not_after = Now() + 24h,
                              .mqtt_password_hash = "",
                              .revoked_at = std::nullopt,
                              .enrolled_at = Now()};
        },
        Now()));
  }
  ASSERT_TRUE(PublishDeviceCrl(*ca_, *store, config, Now()));
  MosquittoBroker broker(airlock::testing::MosquittoOptions{
      .port = 0,
      .username = "",
      .password = "",
      .listener_config = delivery::MosquittoTlsListener(dir_ / "broker", DeviceCrlFile(config)),
      .acl_file = dir_ / "broker" / "acl"});
  auto connect = [&](const std::string& id) {
    net::MqttOptions o;
    o.broker_url = broker.url();
    o.client_id = id;  // as the agent does
    o.tls = tls[id];
    o.connect_timeout = 3s;
    return net::MqttClient::Create(o).value();
  };
  auto b_before = connect(kDeviceB);
  ASSERT_TRUE(b_before->WaitConnected(10s)) << broker.Log();

  ASSERT_TRUE(store->RevokeDevice(kDeviceB, Now()));
  ASSERT_TRUE(WriteFileAtomic(dir_ / "mosquitto.pid", std::to_string(broker.pid()) + "\n"));
  config.devices_mqtt_broker_pid_file = dir_ / "mosquitto.pid";
  ASSERT_TRUE(PublishDeviceCrl(*ca_, *store, config, Now()));
  std::this_thread::sleep_for(500ms);  // the broker reloads on SIGHUP, in its own time
  // Its open connection is ended at once (a session takeover under its client id); its
  // reconnection is refused.
  config.devices_mqtt_broker = broker.url();
  config.devices_mqtt_tls_dir = dir_ / "broker";
  ASSERT_TRUE(DisconnectDevice(*ca_, config, kDeviceB, Now()));
  EXPECT_TRUE(WaitUntil([&] { return !b_before->IsConnected(); })) << broker.Log();

  auto b_after = connect(kDeviceB);
  auto a = connect(kDeviceA);
  ASSERT_TRUE(a->WaitConnected(10s)) << broker.Log();
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(b_after->IsConnected()) << broker.Log();
  EXPECT_NE(broker.Log().find("certificate verify failed"), std::string::npos) << broker.Log();
}

TEST_F(FactoryBrokerTest, TheBrokersCertificateMustNameTheHostConnectedTo) {
  // The same broker, restarted with a certificate from the same CA for another name only.
  FactoryBrokerOptions o;
  o.gateway_name = "plant-1";
  o.names = {"factory-broker.example"};
  o.dir = dir_ / "broker";
  ASSERT_TRUE(WriteFactoryBrokerFiles(*ca_, o, Now()));
  broker_->Stop();
  broker_->Start();
  auto checked = Client(kDeviceA, Device(kDeviceA, *ca_));
  net::MqttTls unchecked_tls = Device(kDeviceB, *ca_);
  unchecked_tls.verify_hostname = false;
  // Without the name check the chain alone is enough: so what refuses the first is the name.
  auto unchecked = Connected(kDeviceB, unchecked_tls);
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(checked->IsConnected());
  EXPECT_TRUE(unchecked->IsConnected());
}

TEST(MosquittoDeviceAcl, GivesEachDeviceItsOwnTopicsInOneDirection) {
  auto acl = delivery::MosquittoDeviceAcl("site/v1", "airlock-gateway-g").value();
  EXPECT_NE(acl.find("user airlock-gateway-g\ntopic readwrite site/v1/dev/#\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern read site/v1/dev/%u/directive\n"), std::string::npos);
  EXPECT_NE(acl.find("pattern write site/v1/dev/%u/state\n"), std::string::npos);
  EXPECT_EQ(acl.find("pattern readwrite"), std::string::npos);
  EXPECT_FALSE(delivery::MosquittoDeviceAcl("bad/#", "g"));
}

}  // namespace
}  // namespace airlock::gateway

namespace airlock::gateway {
namespace {

TEST(GatewayConfig, AnMqttsFactoryBrokerNeedsTheBrokerConfigFiles) {
  auto bare = ParseGatewayConfig("name: plant-1\ndevices: {mqtt_broker: 'mqtts://broker:8883'}\n",
                                 "gateway.yaml");
  ASSERT_FALSE(bare);
  EXPECT_NE(bare.error().ToString().find("devices.mqtt_tls_dir"), std::string::npos)
      << bare.error().ToString();
  auto with = ParseGatewayConfig(
      "name: plant-1\ndevices: {mqtt_broker: 'mqtts://broker:8883', mqtt_tls_dir: /etc/b}\n",
      "gateway.yaml");
  ASSERT_TRUE(with) << with.error().ToString();
  EXPECT_EQ(with->devices_mqtt_tls_dir, std::filesystem::path("/etc/b"));
}

TEST(GatewayConfig, TheHubCertificateIsItsOwnElseTheCloudBrokersForAnHttpsHub) {
  const std::string mqtt = "mqtt: {cert_file: /etc/gw/mqtt.pem, key_file: /etc/gw/mqtt.key}\n";
  auto own = ParseGatewayConfig("name: plant-1\nhub: {url: 'https://hub:7400', cert_file: "
                                "/etc/gw/hub.pem, key_file: /etc/gw/hub.key}\n" + mqtt,
                                "gateway.yaml");
  ASSERT_TRUE(own) << own.error().ToString();
  EXPECT_EQ(own->hub_client_cert().first, std::filesystem::path("/etc/gw/hub.pem"));
  EXPECT_EQ(own->hub_client_cert().second, std::filesystem::path("/etc/gw/hub.key"));
  auto reused = ParseGatewayConfig("name: plant-1\nhub: {url: 'https://hub:7400'}\n" + mqtt,
                                   "gateway.yaml");
  ASSERT_TRUE(reused) << reused.error().ToString();
  EXPECT_EQ(reused->hub_client_cert().first, std::filesystem::path("/etc/gw/mqtt.pem"));
  EXPECT_EQ(reused->hub_client_cert().second, std::filesystem::path("/etc/gw/mqtt.key"));
  auto plain = ParseGatewayConfig("name: plant-1\nhub: {url: 'http://127.0.0.1:7400'}\n" + mqtt,
                                  "gateway.yaml");
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_TRUE(plain->hub_client_cert().first.empty());
  for (const std::string& bad :
       {std::string("name: g\nhub: {url: 'https://hub', cert_file: /etc/gw/hub.pem}\n"),
        std::string("name: g\nhub: {url: 'http://hub', cert_file: /a.pem, key_file: /a.key}\n")}) {
    auto refused = ParseGatewayConfig(bad, "gateway.yaml");
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().ToString().find("hub.cert_file"), std::string::npos)
        << refused.error().ToString();
  }
}

TEST(GatewayCli, ServeRefusesPlainHttpOffLoopbackUnlessAllowedAndTakesOnlyWholeTlsPairs) {
  airlock::testing::TempDir dir;
  airlock::testing::WriteAll(dir / "open.yaml", "name: plant-1\ndata: " + (dir / "data").string() +
                                                    "\nhttp: {address: 0.0.0.0, port: 0}\n");
  auto r = airlock::testing::RunCommand(
      {AIRLOCK_GATEWAY_BINARY, "serve", "--config", (dir / "open.yaml").string()}, {}, 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("plain HTTP on 0.0.0.0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("http.allow_plain"), std::string::npos) << r.err;
  auto half = ParseGatewayConfig("name: g\nhttp: {tls_cert: /etc/g.pem}\n", "gateway.yaml");
  ASSERT_FALSE(half);
  EXPECT_NE(half.error().ToString().find("http.tls_key"), std::string::npos);
  auto allowed = ParseGatewayConfig("name: g\nhttp: {address: 0.0.0.0, allow_plain: true}\n",
                                    "gateway.yaml");
  ASSERT_TRUE(allowed) << allowed.error().ToString();
  EXPECT_TRUE(allowed->http_allow_plain);
}

TEST(GatewayCli, TlsCertWritesTheGatewaysHttpsPairFromItsDeviceCa) {
  airlock::testing::TempDir dir;
  airlock::testing::WriteAll(dir / "gateway.yaml",
                             "name: plant-1\ndata: " + (dir / "data").string() + "\n");
  auto r = airlock::testing::RunCommand(
      {AIRLOCK_GATEWAY_BINARY, "tls-cert", "--config", (dir / "gateway.yaml").string(), "--out",
       (dir / "tls").string(), "--name", "gw.example", "--name", "10.0.0.7"},
      {}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tls_cert: " + (dir / "tls" / "https.pem").string()), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("--ca " + (dir / "data" / "devices" / "ca.pem").string()),
            std::string::npos)
      << r.out;
  auto perms = std::filesystem::status(dir / "tls" / "https.key").permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST(GatewayCli, BrokerConfigWritesTheBrokersFilesWithPrivateKeys) {
  airlock::testing::TempDir dir;
  airlock::testing::WriteAll(dir / "gateway.yaml",
                             "name: plant-1\ndata: " + (dir / "data").string() + "\n");
  std::vector<std::string> args = {AIRLOCK_GATEWAY_BINARY, "broker-config", "--config",
                                   (dir / "gateway.yaml").string(), "--out",
                                   (dir / "broker").string(), "--name", "broker.plant-1.example",
                                   "--name", "10.0.0.5", "--port", "18883"};
  auto r = airlock::testing::RunCommand(args, {}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("mqtts://broker.plant-1.example:18883"), std::string::npos) << r.out;
  for (const char* key : {"server.key", "gateway.key"}) {
    auto perms = std::filesystem::status(dir / "broker" / key).permissions();
    EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_read |
                                                       std::filesystem::perms::owner_write)
        << key;
  }
  std::string conf = airlock::testing::ReadAll(dir / "broker" / "mosquitto.conf");
  EXPECT_NE(conf.find("listener 18883\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("require_certificate true"), std::string::npos);
  EXPECT_NE(conf.find("allow_anonymous false"), std::string::npos);
  // The broker trusts the CA the gateway enrolls its devices with.
  EXPECT_EQ(airlock::testing::ReadAll(dir / "broker" / "ca.pem"),
            airlock::testing::ReadAll(dir / "data" / "devices" / "ca.pem"));
  // Without a name the devices could check, nothing is written.
  args = {AIRLOCK_GATEWAY_BINARY, "broker-config", "--config", (dir / "gateway.yaml").string(),
          "--out", (dir / "none").string()};
  r = airlock::testing::RunCommand(args, {}, 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(dir / "none"));
}

}  // namespace
}  // namespace airlock::gateway
