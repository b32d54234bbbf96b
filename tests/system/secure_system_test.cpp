// Issue 8 with every part real: the factory broker as `airlock-gateway broker-config` writes it
// (TLS, client certificates from the gateway's device CA, an ACL per device), and a gateway and
// an agent that reach each other only through it: the agent enrolls, is directed, installs,
// reports and serves.

#include <gtest/gtest.h>

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
  // The broker runs the generated listener settings and ACL (on a port of the test's).
  std::string conf = ReadAll(files / "mosquitto.conf");
  std::string listener = conf.substr(conf.find('\n', conf.find("\nlistener ") + 1) + 1);
  MosquittoBroker factory(MosquittoOptions{.port = 0,
                                           .username = "",
                                           .password = "",
                                           .listener_config = listener,
                                           .acl_file = files / "acl"});
  ASSERT_EQ(factory.url().rfind("mqtts://", 0), 0u);
  WriteAll(config, ReadAll(config) + "devices:\n  mqtt_broker: " + factory.url() +
                       "\n  mqtt_tls_dir: " + files.string() + "\n");
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
}

}  // namespace
}  // namespace airlock::testing
