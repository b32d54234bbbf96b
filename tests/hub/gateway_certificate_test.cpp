// Gateways authenticating to the hub with their client certificates (http.client_ca,
// http.gateway_auth; docs/hub.md "Gateways' certificates"), over real HTTPS on 127.0.0.1: a
// gateway's certificate alone or beside its credential, a credential without the certificate, a
// credential with another gateway's certificate, a certificate from another CA, and operators,
// who need no certificate.

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "core/digest.hpp"
#include "core/encoding.hpp"
#include "hub/config.hpp"
#include "hub/server.hpp"
#include "monitor/batch.hpp"
#include "support/test_support.hpp"
#include "support/tls.hpp"

namespace airlock::hub {
namespace {

using airlock::testing::MakeTestCertificate;
using airlock::testing::TestCertificate;
using nlohmann::json;

constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";

std::string Detail(const httplib::Result& r) {
  if (!r) {
    return "(no response)";
  }
  auto j = json::parse(r->body, nullptr, false);
  return j.is_object() && j.contains("errors") ? j["errors"][0].value("detail", "") : r->body;
}

httplib::Headers Bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

// A hub over HTTPS whose gateways' certificates come from the test CA (dir/ca), which certifies
// the hub too; gateway_auth as the test says.
class GatewayCertificates : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::off);
    server_ = MakeTestCertificate(dir_.path(), "hub", {"127.0.0.1"});
    for (const char* name : {"plant-1", "plant-2", "plant-3"}) {
      certs_[name] = MakeTestCertificate(dir_.path(), name);
    }
  }
  void TearDown() override { Stop(); }

  void Start(std::optional<GatewayAuth> mode) {
    HubConfig config = DefaultHubConfig();
    config.data = dir_ / "data";
    config.http.port = 0;
    config.http.tls_cert = server_.cert;
    config.http.tls_key = server_.key;
    config.http.client_ca = server_.ca;
    config.http.gateway_auth = mode;
    auto hub = Hub::Open(config, nullptr);
    ASSERT_TRUE(hub) << hub.error().ToString();
    hub_ = std::move(*hub);
    ASSERT_TRUE(hub_->server().Bind());
    serving_ = std::thread([this] { hub_->server().Serve(); });
    admin_ = hub_->access().CreateToken("admin", Role::kAdmin, "test", std::nullopt).value().token;
  }
  void Stop() {
    if (hub_) {
      hub_->server().Stop();
    }
    if (serving_.joinable()) {
      serving_.join();
    }
    hub_.reset();
  }

  // A client that trusts the hub, presenting `cert` (a gateway's name in certs_, or "" for none).
  std::unique_ptr<httplib::SSLClient> Client(const std::string& cert = "") {
    auto c = cert.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", port())
                          : std::make_unique<httplib::SSLClient>("127.0.0.1", port(),
                                                                 certs_.at(cert).cert.string(),
                                                                 certs_.at(cert).key.string());
    c->set_ca_cert_path(server_.ca.c_str());
    c->enable_server_certificate_verification(true);
    c->set_read_timeout(30);
    return c;
  }
  int port() const { return hub_->server().port(); }

  // A one-time registration token, made by the admin without a certificate.
  std::string RegistrationToken() {
    auto r = Client()->Post("/api/v1/gateways/tokens", Bearer(admin_), R"({"expires_in":"1h"})",
                            "application/json");
    EXPECT_TRUE(r && r->status == 201) << Detail(r);
    return r ? json::parse(r->body).value("token", "") : "";
  }
  httplib::Result Register(const std::string& name, const std::string& token,
                           const std::string& cert) {
    json body = {{"token", token}, {"name", name}};
    return Client(cert)->Post("/api/v1/gateways/register", body.dump(), "application/json");
  }
  // Registers name with its own certificate; returns its credential.
  std::string RegisterWithCertificate(const std::string& name) {
    auto r = Register(name, RegistrationToken(), name);
    EXPECT_TRUE(r && r->status == 201) << Detail(r);
    return r ? json::parse(r->body).value("credential", "") : "";
  }

  // PUT gateway's inventory of one device `device`, with the credential (when not empty) over a
  // connection presenting cert.
  httplib::Result PutInventory(const std::string& gateway, const std::string& device,
                               const std::string& credential, const std::string& cert) {
    json body = {{"devices", json::array({{{"id", device}}})}};
    auto c = Client(cert);
    return credential.empty()
               ? c->Put("/api/v1/gateways/" + gateway + "/inventory", body.dump(),
                        "application/json")
               : c->Put("/api/v1/gateways/" + gateway + "/inventory", Bearer(credential),
                        body.dump(), "application/json");
  }
  // The devices of gateway's inventory, as the admin reads it.
  json Inventory(const std::string& gateway) {
    auto r = Client()->Get("/api/v1/gateways/" + gateway + "/inventory", Bearer(admin_));
    EXPECT_TRUE(r && r->status == 200) << Detail(r);
    return r ? json::parse(r->body)["devices"] : json();
  }
  // The audit log's refusals.
  std::vector<json> Refusals() {
    auto r = Client()->Get("/api/v1/audit?limit=1000", Bearer(admin_));
    EXPECT_TRUE(r && r->status == 200) << Detail(r);
    std::vector<json> out;
    const json page = json::parse(r->body);
    for (const json& e : page["entries"]) {
      if (e.value("action", "").starts_with("refused")) {
        out.push_back(e);
      }
    }
    return out;
  }

  // A manifest in models/demo, pushed by the admin (no certificate); returns its digest.
  std::string Seed() {
    auto c = Client();
    const std::string config = "{}";
    auto blob = c->Post("/v2/models/demo/blobs/uploads/?digest=" + Sha256Of(config).ToString(),
                        Bearer(admin_), config, "application/octet-stream");
    EXPECT_TRUE(blob && blob->status == 201) << Detail(blob);
    json m = {{"schemaVersion", 2},
              {"mediaType", kManifestType},
              {"config",
               {{"mediaType", "application/vnd.oci.empty.v1+json"},
                {"digest", Sha256Of(config).ToString()},
                {"size", config.size()}}},
              {"layers", json::array()}};
    auto put = c->Put("/v2/models/demo/manifests/1.0.0", Bearer(admin_), m.dump(), kManifestType);
    EXPECT_TRUE(put && put->status == 201) << Detail(put);
    return Sha256Of(m.dump()).ToString();
  }

  airlock::testing::TempDir dir_;
  TestCertificate server_;
  std::map<std::string, TestCertificate> certs_;
  std::unique_ptr<Hub> hub_;
  std::thread serving_;
  std::string admin_;
};

TEST_F(GatewayCertificates, AGatewayIsItsCertificateWithOrWithoutItsCredential) {
  Start(std::nullopt);  // with a client CA, certificates are the default
  std::string digest = Seed();
  std::string credential = RegisterWithCertificate("plant-1");
  ASSERT_TRUE(credential.starts_with("alk_"));

  // Its credential with its certificate, and its certificate alone: both are plant-1.
  auto both = PutInventory("plant-1", "dev-1", credential, "plant-1");
  ASSERT_TRUE(both);
  EXPECT_EQ(both->status, 204) << Detail(both);
  auto alone = PutInventory("plant-1", "dev-2", "", "plant-1");
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->status, 204) << Detail(alone);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-2");
  // It pulls the manifests of its deliveries, and forwards telemetry, by its certificate.
  auto manifest = Client("plant-1")->Get("/v2/models/demo/manifests/" + digest,
                                         {{"Accept", kManifestType}});
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->status, 200) << Detail(manifest);
  monitor::TelemetryBatch batch;
  batch.source = "plant-1";
  batch.site = "plant-1";
  auto telemetry = Client("plant-1")->Post("/api/v1/gateways/plant-1/telemetry",
                                           batch.Serialize(), "application/json");
  ASSERT_TRUE(telemetry);
  EXPECT_EQ(telemetry->status, 200) << Detail(telemetry);
  // Still only its own routes: no other gateway's inventory, nothing an operator does.
  auto other = PutInventory("plant-2", "dev-9", "", "plant-1");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404) << Detail(other);  // plant-2 is not registered
  RegisterWithCertificate("plant-2");
  other = PutInventory("plant-2", "dev-9", "", "plant-1");
  EXPECT_EQ(other->status, 403) << Detail(other);
  auto deploy = Client("plant-1")->Get("/api/v1/tokens");
  EXPECT_EQ(deploy->status, 403) << Detail(deploy);

  // Operators need no certificate: the admin's token works without one, and with one.
  auto listed = Client()->Get("/api/v1/gateways", Bearer(admin_));
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200) << Detail(listed);
  EXPECT_EQ(json::parse(listed->body)["gateways"].size(), 2u);
  EXPECT_EQ(Client("plant-1")->Get("/api/v1/gateways", Bearer(admin_))->status, 200);
  // A certificate that names no gateway is nobody.
  auto nobody = Client("plant-3")->Get("/api/v1/gateways");
  EXPECT_EQ(nobody->status, 401);
  EXPECT_NE(Detail(nobody).find("not a registered gateway"), std::string::npos) << Detail(nobody);
}

// A credential that leaked without the gateway's key is worth nothing to whoever holds it.
TEST_F(GatewayCertificates, ACredentialWithoutItsCertificateIsRefusedAndSaysWhatToConfigure) {
  Start(GatewayAuth::kCertificate);
  std::string digest = Seed();
  // A registration without the certificate is refused before the one-time token is used...
  std::string token = RegistrationToken();
  auto bare = Register("plant-1", token, "");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 401);
  EXPECT_NE(Detail(bare).find("hub.cert_file"), std::string::npos) << Detail(bare);
  EXPECT_EQ(Client()->Get("/api/v1/gateways", Bearer(admin_))->body.find("plant-1"),
            std::string::npos);
  // ... so the same token registers the gateway once it has its certificate.
  auto registered = Register("plant-1", token, "plant-1");
  ASSERT_TRUE(registered);
  ASSERT_EQ(registered->status, 201) << Detail(registered);
  std::string credential = json::parse(registered->body)["credential"];
  ASSERT_EQ(PutInventory("plant-1", "dev-1", credential, "plant-1")->status, 204);

  // The credential alone: 401 on every route a gateway uses, saying what to configure.
  auto put = PutInventory("plant-1", "forged", credential, "");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 401);
  EXPECT_NE(Detail(put).find("hub.cert_file and hub.key_file"), std::string::npos) << Detail(put);
  EXPECT_NE(Detail(put).find("http.gateway_auth: certificate"), std::string::npos) << Detail(put);
  EXPECT_EQ(Client()->Get("/v2/models/demo/manifests/" + digest, Bearer(credential))->status, 401);
  auto session = Client()->Get(
      "/v2/token", {{"Authorization", "Basic " + Base64Encode("gw:" + credential)}});
  EXPECT_EQ(session->status, 401);
  // The trusted state is unchanged, the refusal is audited, and the gateway goes on with its
  // certificate.
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-1");
  auto refusals = Refusals();
  ASSERT_FALSE(refusals.empty());
  EXPECT_TRUE(std::all_of(refusals.begin(), refusals.end(), [](const json& e) {
    return e.value("token", "").starts_with("gateway-plant-1-");
  })) << json(refusals).dump(2);
  auto good = PutInventory("plant-1", "dev-2", credential, "plant-1");
  EXPECT_EQ(good->status, 204) << Detail(good);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-2");

  // Revoking the credential ends what the certificate can do too.
  auto tokens = json::parse(Client()->Get("/api/v1/tokens", Bearer(admin_))->body)["tokens"];
  std::string name;
  for (const json& t : tokens) {
    if (t["role"] == "gateway") {
      name = t["name"];
    }
  }
  ASSERT_FALSE(name.empty());
  ASSERT_EQ(Client()->Delete("/api/v1/tokens/" + name, Bearer(admin_))->status, 204);
  auto revoked = PutInventory("plant-1", "dev-3", "", "plant-1");
  EXPECT_EQ(revoked->status, 401);
  EXPECT_NE(Detail(revoked).find("revoked"), std::string::npos) << Detail(revoked);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-2");
}

TEST_F(GatewayCertificates, ACredentialWithAnotherGatewaysCertificateIs403) {
  Start(GatewayAuth::kCertificate);
  std::string one = RegisterWithCertificate("plant-1");
  std::string two = RegisterWithCertificate("plant-2");
  ASSERT_EQ(PutInventory("plant-1", "dev-1", one, "plant-1")->status, 204);
  ASSERT_EQ(PutInventory("plant-2", "dev-2", two, "plant-2")->status, 204);

  // plant-1's credential over plant-2's certificate, for either gateway's inventory.
  for (const char* target : {"plant-1", "plant-2"}) {
    auto mixed = PutInventory(target, "forged", one, "plant-2");
    ASSERT_TRUE(mixed);
    EXPECT_EQ(mixed->status, 403) << target;
    EXPECT_NE(Detail(mixed).find("certificate names plant-2"), std::string::npos)
        << Detail(mixed);
  }
  // A registration under another gateway's certificate.
  auto stolen = Register("plant-3", RegistrationToken(), "plant-2");
  ASSERT_TRUE(stolen);
  EXPECT_EQ(stolen->status, 403);
  EXPECT_NE(Detail(stolen).find("not the gateway being registered"), std::string::npos)
      << Detail(stolen);

  // Nothing changed, the refusals are audited, and each gateway goes on.
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-1");
  EXPECT_EQ(Inventory("plant-2")[0]["id"], "dev-2");
  EXPECT_EQ(Client()->Get("/api/v1/gateways/plant-3", Bearer(admin_))->status, 404);
  EXPECT_GE(Refusals().size(), 2u);
  EXPECT_EQ(PutInventory("plant-1", "dev-3", one, "plant-1")->status, 204);
  EXPECT_EQ(PutInventory("plant-2", "dev-4", two, "plant-2")->status, 204);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-3");
  EXPECT_EQ(Inventory("plant-2")[0]["id"], "dev-4");
}

TEST_F(GatewayCertificates, ACertificateFromAnotherCaEndsTheHandshake) {
  Start(GatewayAuth::kCertificate);
  std::string credential = RegisterWithCertificate("plant-1");
  ASSERT_EQ(PutInventory("plant-1", "dev-1", credential, "plant-1")->status, 204);
  // The same name, from a CA the hub does not trust.
  TestCertificate forged = MakeTestCertificate(dir_ / "elsewhere", "plant-1");
  httplib::SSLClient c("127.0.0.1", port(), forged.cert.string(), forged.key.string());
  c.set_ca_cert_path(server_.ca.c_str());
  c.enable_server_certificate_verification(true);
  json body = {{"devices", json::array({{{"id", "forged"}}})}};
  auto r = c.Put("/api/v1/gateways/plant-1/inventory", Bearer(credential), body.dump(),
                 "application/json");
  EXPECT_FALSE(r) << r->status;
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-1");
  EXPECT_EQ(PutInventory("plant-1", "dev-2", credential, "plant-1")->status, 204);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-2");
}

TEST_F(GatewayCertificates, EitherTakesTheCredentialAloneButNeverWithAnotherGatewaysCertificate) {
  Start(GatewayAuth::kEither);
  std::string token = RegistrationToken();
  auto bare = Register("plant-1", token, "");  // a registration without a certificate
  ASSERT_TRUE(bare);
  ASSERT_EQ(bare->status, 201) << Detail(bare);
  std::string credential = json::parse(bare->body)["credential"];
  EXPECT_EQ(PutInventory("plant-1", "dev-1", credential, "")->status, 204);
  EXPECT_EQ(PutInventory("plant-1", "dev-2", "", "plant-1")->status, 204);
  EXPECT_EQ(PutInventory("plant-1", "dev-3", credential, "plant-1")->status, 204);
  RegisterWithCertificate("plant-2");
  auto mixed = PutInventory("plant-1", "forged", credential, "plant-2");
  EXPECT_EQ(mixed->status, 403) << Detail(mixed);
  EXPECT_EQ(Inventory("plant-1")[0]["id"], "dev-3");
}

TEST(HubGatewayAuthConfig, ClientCertificatesNeedHttpsAndTheModeMustFitTheCa) {
  const std::string tls = "http: {tls_cert: /etc/h.pem, tls_key: /etc/h.key, ";
  auto plain = ParseHubConfig("http: {client_ca: /etc/ca.pem}\n", "hub.yaml");
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().ToString().find("http.client_ca"), std::string::npos)
      << plain.error().ToString();
  auto defaulted = ParseHubConfig(tls + "client_ca: /etc/ca.pem}\n", "hub.yaml");
  ASSERT_TRUE(defaulted) << defaulted.error().ToString();
  EXPECT_EQ(defaulted->http.client_ca, std::filesystem::path("/etc/ca.pem"));
  EXPECT_EQ(defaulted->http.effective_gateway_auth(), GatewayAuth::kCertificate);
  EXPECT_EQ(DefaultHubConfig().http.effective_gateway_auth(), GatewayAuth::kToken);
  auto either = ParseHubConfig(tls + "client_ca: /etc/ca.pem, gateway_auth: either}\n", "h.yaml");
  ASSERT_TRUE(either) << either.error().ToString();
  EXPECT_EQ(either->http.effective_gateway_auth(), GatewayAuth::kEither);
  for (const std::string& bad :
       {tls + "gateway_auth: certificate}\n", tls + "gateway_auth: either}\n",
        tls + "client_ca: /etc/ca.pem, gateway_auth: token}\n",
        tls + "client_ca: /etc/ca.pem, gateway_auth: sometimes}\n"}) {
    auto refused = ParseHubConfig(bad, "hub.yaml");
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().ToString().find("http.gateway_auth"), std::string::npos)
        << refused.error().ToString();
  }
}

}  // namespace
}  // namespace airlock::hub
