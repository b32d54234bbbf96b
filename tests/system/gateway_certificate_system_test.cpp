// The gateway authenticating to the hub with its certificate (issue 8), with every part real:
// `airlock-hub serve` over HTTPS with http.client_ca, `airlock-gateway serve` presenting
// hub.cert_file on every request, Mosquitto, and the `airlock` commands of its users.

#include <gtest/gtest.h>

#include <sstream>

#include "system/system_fixture.hpp"

namespace airlock::testing {
namespace {

class GatewayCertificateSystem : public DeliverySystem {
 protected:
  void SetUp() override {
    hub_https_ = true;
    DeliverySystem::SetUp();
  }

  // The hub's audit log (airlock-hub audit, offline beside the running hub; a line an entry).
  std::vector<json> Audit() {
    CommandResult audit = RunCommand({Bin("airlock-hub").string(), "audit", "--data",
                                      (dir_ / "hub").string(), "--json", "-n", "1000"});
    EXPECT_EQ(audit.exit_code, 0) << audit.err;
    std::vector<json> entries;
    std::istringstream lines(audit.out);
    for (std::string line; std::getline(lines, line);) {
      entries.push_back(json::parse(line, nullptr, false));
    }
    return entries;
  }
};

// Registration, the root rotations, the manifests of the delivery and its pre-signed blobs: all
// with the gateway's certificate, and nothing refused.
TEST_F(GatewayCertificateSystem, AGatewayWithItsCertificateRegistersAndIsDeliveredTo) {
  IssueHubCertificate("plant-1");
  StartGateway("plant-1", GatewayConfig("plant-1"));
  std::string id = Deploy("plant-1");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  json d = Delivery(id);
  EXPECT_EQ(d["state"], "available") << d.dump(2);
  EXPECT_EQ(d["bytes_done"], d["bytes_total"]);
  std::string logs = GatewayLogs();
  EXPECT_EQ(logs.find("HTTP 401"), std::string::npos) << logs;
  EXPECT_EQ(logs.find("HTTP 403"), std::string::npos) << logs;
  std::vector<json> audit = Audit();
  EXPECT_FALSE(audit.empty());  // the registration, at least
  for (const json& e : audit) {
    EXPECT_FALSE(e.value("action", "").starts_with("refused")) << e.dump();
  }
  // Operators reach the same hub with tokens and no certificate.
  CommandResult ls = As("viewer", {"gateways", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find("plant-1"), std::string::npos) << ls.out;
}

// Without its certificate a gateway is not let in, and is told what to configure; with it, the
// same registration token still works.
TEST_F(GatewayCertificateSystem, AGatewayWithoutItsCertificateIsRefusedAndToldWhatToConfigure) {
  fs::path config = GatewayConfig("plant-2");
  CommandResult refused =
      RunCommand({Bin("airlock-gateway").string(), "serve", "--config", config.string()},
                 dir_.path(), 60);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("hub.cert_file and hub.key_file"), std::string::npos)
      << refused.err;
  EXPECT_FALSE(fs::exists(dir_ / "plant-2" / "hub-credential"));
  CommandResult ls = As("viewer", {"gateways", "ls", "--json"});
  EXPECT_EQ(ls.out.find("plant-2"), std::string::npos) << ls.out;

  std::string yaml = ReadAll(config);
  IssueHubCertificate("plant-2");
  std::string token = yaml.substr(yaml.find("alkreg_"), 7 + 64);
  config = GatewayConfig("plant-2");  // now with the certificate (and a new token, unused)
  std::string with = ReadAll(config);
  with.replace(with.find("alkreg_"), 7 + 64, token);
  WriteAll(config, with);
  StartGateway("plant-2", config);
  ls = As("viewer", {"gateways", "ls"});
  EXPECT_NE(ls.out.find("plant-2"), std::string::npos) << ls.out;
}

}  // namespace
}  // namespace airlock::testing
