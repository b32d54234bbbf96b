// Issue 8 with every part real: the factory broker as `airlock-gateway broker-config` writes it
// (TLS, client certificates from the gateway's device CA, an ACL per device), and a gateway and
// an agent that reach each other only through it: the agent enrolls, is directed, installs,
// reports and serves.

#include <gtest/gtest.h>
#include <httplib.h>

#include "net/mqtt.hpp"
#include "system/camera_fixture.hpp"

namespace airlock::testing {
namespace {

class SecureSystem : public CameraSystem {};

TEST_F(SecureSystem, ADeviceIsDeliveredToAndReportsThroughATlsFactoryBrokerWithAcls) {
  Pack(SourceDir() / "examples" / kModel / "airlock.yaml", "1.0.0", 1);
  Promote("1.0.0");
  fs::path config =
      GatewayConfig("plant-1", "", "policy:\n  offers: auto\n  rollout_approval: auto\n");
  fs::path files = dir_ / "factory-broker";
  CommandResult written =
      RunCommand({Bin("airlock-gateway").string(), "broker-config", "--config", config.string(),
                  "--out", files.string(), "--name", "127.0.0.1"});
  ASSERT_EQ(written.exit_code, 0) << written.err;
  // HTTPS for the gateway too, from the same device CA.
  CommandResult tls = RunCommand({Bin("airlock-gateway").string(), "tls-cert", "--config",
                                  config.string(), "--out", files.string(), "--name",
                                  "127.0.0.1"});
  ASSERT_EQ(tls.exit_code, 0) << tls.err;
  std::string text = ReadAll(config);
  text.replace(text.find("http:\n  port: 0\n"), std::string("http:\n  port: 0\n").size(),
               "http:\n  port: 0\n  tls_cert: " + (files / "https.pem").string() +
                   "\n  tls_key: " + (files / "https.key").string() + "\n");
  WriteAll(config, text);
  gateway_ca_ = dir_ / "plant-1" / "devices" / "ca.pem";
  // The broker runs the generated listener settings and ACL (on a port of the test's).
  std::string conf = ReadAll(files / "mosquitto.conf");
  std::string listener = conf.substr(conf.find('\n', conf.find("\nlistener ") + 1) + 1);
  MosquittoBroker factory(MosquittoOptions{.port = 0,
                                           .username = "",
                                           .password = "",
                                           .listener_config = listener,
                                           .acl_file = files / "acl"});
  ASSERT_EQ(factory.url().rfind("mqtts://", 0), 0u);
  WriteAll(dir_ / "factory.pid", std::to_string(factory.pid()) + "\n");
  WriteAll(config, ReadAll(config) + "devices:\n  mqtt_broker: " + factory.url() +
                       "\n  mqtt_tls_dir: " + files.string() +
                       "\n  mqtt_broker_pid_file: " + (dir_ / "factory.pid").string() + "\n");
  StartGateway("plant-1", config);

  EnrollCamera("a");
  std::string deployment = DeployToLine3("0s");
  ASSERT_TRUE(WaitForFleet(deployment, "complete", 1)) << GatewayLogs() << factory.Log();
  const Camera& a = cameras_[0];
  EXPECT_EQ(Serves(a), "1.0.0");
  EXPECT_TRUE(Predict(a));
  // The broker knew each client by its certificate: the device by its id, the gateway by its name.
  std::string log = factory.Log();
  EXPECT_NE(log.find(" u'" + a.id + "'"), std::string::npos) << log;
  EXPECT_NE(log.find(" u'airlock-gateway-plant-1'"), std::string::npos) << log;

  // The registry serves devices only, known by their certificates.
  std::string manifest = "/v2/models/" + kModel + "/manifests/1.0.0";
  httplib::SSLClient anonymous("127.0.0.1", gateway_ports_["plant-1"]);
  anonymous.set_ca_cert_path(gateway_ca_.c_str());
  anonymous.enable_server_certificate_verification(true);
  auto refused = anonymous.Get(manifest);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401) << refused->body;
  fs::path id = a.store / "identity";
  httplib::SSLClient device("127.0.0.1", gateway_ports_["plant-1"],
                            (id / "cert.pem").string(), (id / "key.pem").string());
  device.set_ca_cert_path(gateway_ca_.c_str());
  device.enable_server_certificate_verification(true);
  auto pulled = device.Get(manifest, {{"Accept", "application/vnd.oci.image.index.v1+json"}});
  ASSERT_TRUE(pulled);
  EXPECT_NE(pulled->status, 401);
  EXPECT_NE(pulled->status, 403) << pulled->body;
  // Revoked, the same certificate is refused.
  CommandResult revoked = Operator("plant-1", {"devices", "revoke", a.id});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  auto after = device.Get(manifest);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 403) << after->body;
  EXPECT_NE(after->body.find("revoked"), std::string::npos) << after->body;
  // And the factory broker: the gateway ended the device's connection (a session takeover under
  // its id), rewrote the revocation list and made the broker reload it, so the agent's
  // reconnections and any other connection with its certificate are refused.
  EXPECT_TRUE(WaitUntil([&] {
    return factory.Log().find("already connected, closing old connection") != std::string::npos;
  })) << factory.Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  net::MqttOptions o;
  o.broker_url = factory.url();
  o.client_id = a.id + "-again";
  o.tls = net::MqttTls{.ca_file = (id / "ca.pem").string(),
                       .cert_file = (id / "cert.pem").string(),
                       .key_file = (id / "key.pem").string(),
                       .verify_hostname = true};
  o.connect_timeout = std::chrono::seconds(3);
  auto again = net::MqttClient::Create(o).value();
  EXPECT_FALSE(again->WaitConnected(std::chrono::seconds(3))) << factory.Log();
  EXPECT_NE(factory.Log().find("certificate verify failed"), std::string::npos) << factory.Log();
}

}  // namespace
}  // namespace airlock::testing
