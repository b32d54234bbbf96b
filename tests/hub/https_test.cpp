// The hub over HTTPS, and its refusal of plain HTTP off loopback (issue 8; docs/security.md).
#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "hub/config.hpp"
#include "hub/server.hpp"
#include "support/test_support.hpp"
#include "support/tls.hpp"

namespace airlock::hub {
namespace {

using airlock::testing::MakeTestCertificate;

HubConfig Config(const airlock::testing::TempDir& dir) {
  HubConfig c = DefaultHubConfig();
  c.data = dir / "data";
  c.http.port = 0;
  return c;
}

TEST(HubHttps, ServesHttpsWithItsCertificateAndNothingInTheClear) {
  spdlog::set_level(spdlog::level::warn);
  airlock::testing::TempDir dir;
  auto tls = MakeTestCertificate(dir.path(), "hub", {"127.0.0.1", "localhost"});
  HubConfig config = Config(dir);
  config.http.tls_cert = tls.cert;
  config.http.tls_key = tls.key;
  auto hub = Hub::Open(config, nullptr);
  ASSERT_TRUE(hub) << hub.error().ToString();
  ASSERT_TRUE((*hub)->server().Bind());
  std::thread serving([&] { (*hub)->server().Serve(); });
  int port = (*hub)->server().port();

  httplib::SSLClient good("127.0.0.1", port);
  good.set_ca_cert_path(tls.ca.c_str());
  good.enable_server_certificate_verification(true);
  auto r = good.Get("/v2/");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 401);  // tokens are on: the registry answers, over TLS

  // A client that does not trust the hub's CA gets nothing.
  httplib::SSLClient untrusting("127.0.0.1", port);
  untrusting.enable_server_certificate_verification(true);
  untrusting.set_ca_cert_path("/dev/null");
  EXPECT_FALSE(untrusting.Get("/v2/"));
  // Nor does plain HTTP.
  httplib::Client plain("127.0.0.1", port);
  plain.set_read_timeout(5);
  auto p = plain.Get("/v2/");
  EXPECT_TRUE(!p || p->status == 400) << (p ? p->body : "");

  (*hub)->server().Stop();
  serving.join();
}

TEST(HubHttps, RefusesPlainHttpOffLoopbackUnlessToldToAcceptIt) {
  spdlog::set_level(spdlog::level::err);
  airlock::testing::TempDir dir;
  HubConfig config = Config(dir);
  config.http.address = "0.0.0.0";
  auto refused = Hub::Open(config, nullptr);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().ToString().find("http.tls_cert"), std::string::npos)
      << refused.error().ToString();
  EXPECT_NE(refused.error().ToString().find("http.allow_plain"), std::string::npos);
  config.http.allow_plain = true;
  EXPECT_TRUE(Hub::Open(config, nullptr));
  // A certificate whose key is another's is refused when the server is made.
  auto one = MakeTestCertificate(dir.path(), "one", {"127.0.0.1"});
  auto two = MakeTestCertificate(dir.path(), "two", {"127.0.0.1"});
  HubConfig mixed = Config(dir);
  mixed.data = dir / "data2";
  mixed.http.tls_cert = one.cert;
  mixed.http.tls_key = two.key;
  auto hub = Hub::Open(mixed, nullptr);
  ASSERT_TRUE(hub) << hub.error().ToString();
  auto bound = (*hub)->server().Bind();
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().ToString().find(one.cert.string()), std::string::npos);
}

TEST(HubHttps, TheConfigurationTakesACertificateOnlyWithItsKey) {
  auto half = ParseHubConfig("http: {tls_cert: /etc/hub.pem}\n", "hub.yaml");
  ASSERT_FALSE(half);
  EXPECT_NE(half.error().ToString().find("give both"), std::string::npos);
  auto whole = ParseHubConfig(
      "http: {tls_cert: /etc/hub.pem, tls_key: /etc/hub.key, allow_plain: true}\n", "hub.yaml");
  ASSERT_TRUE(whole) << whole.error().ToString();
  EXPECT_EQ(whole->http.tls_key, std::filesystem::path("/etc/hub.key"));
  EXPECT_TRUE(whole->http.allow_plain);
}

}  // namespace
}  // namespace airlock::hub
