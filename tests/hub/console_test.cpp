// The hub's console as the browser gets it (docs/console.md): the page and its assets without a
// token, under a strict Content-Security-Policy, cached as their names allow, gzipped when the
// browser takes it; and GET /api/v1/whoami, with which the console learns the signed-in role.
// The console's behaviour in a browser is tested by console/e2e/ (scripts/console-e2e).

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "console/assets.hpp"
#include "hub/access.hpp"
#include "hub/hub_fixture.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

class HubConsoleTest : public HubFixture {
 protected:
  void SetUp() override {
    auth_enabled_ = true;
    HubFixture::SetUp();
  }
  std::string Mint(const std::string& name, Role role) {
    auto m = hub_->access().CreateToken(name, role, "test", std::nullopt);
    EXPECT_TRUE(m) << m.error().ToString();
    return m ? m->token : "";
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, HubConsoleTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(HubConsoleTest, WhoAmINamesTheTokenAndItsRoleAndRefusesAnyoneElse) {
  for (Role role :
       {Role::kViewer, Role::kPublisher, Role::kReleaseManager, Role::kAdmin, Role::kMetrics}) {
    std::string name = std::string("t-") + RoleName(role);
    auto r = c().Get("/api/v1/whoami", {{"Authorization", "Bearer " + Mint(name, role)}});
    ASSERT_EQ(r->status, 200) << r->body;
    json who = json::parse(r->body);
    EXPECT_EQ(who["name"], name);
    EXPECT_EQ(who["role"], RoleName(role));
    EXPECT_EQ(who["anonymous"], false);
  }
  EXPECT_EQ(c().Get("/api/v1/whoami")->status, 401);
  auto bad = c().Get("/api/v1/whoami", {{"Authorization", "Bearer alk_" + std::string(64, '0')}});
  EXPECT_EQ(bad->status, 401);
  EXPECT_EQ(ErrorCodeOf(bad), "UNAUTHORIZED");
}

TEST_P(HubConsoleTest, ThePageAndItsAssetsNeedNoTokenAndAllowOnlyTheHubsOwnScripts) {
  auto root = c().Get("/");
  EXPECT_EQ(root->status, 302);
  EXPECT_EQ(root->get_header_value("Location"), "/console/");
  EXPECT_EQ(c().Get("/console")->get_header_value("Location"), "/console/");

  auto page = c().Get("/console/");
  ASSERT_TRUE(page);
  if (console::Assets().empty()) {  // built with -DAIRLOCK_CONSOLE=OFF
    EXPECT_EQ(page->status, 404);
    EXPECT_NE(page->body.find("AIRLOCK_CONSOLE=OFF"), std::string::npos) << page->body;
    return;
  }
  ASSERT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("<title>Airlock hub</title>"), std::string::npos) << page->body;
  EXPECT_EQ(page->get_header_value("Cache-Control"), "no-cache");
  const std::string csp = page->get_header_value("Content-Security-Policy");
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");

  // The page's script, by the name the build gave it: cached for good, gzipped when asked.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(page->body, m, std::regex(R"(/console/(assets/hub-[^"]+\.js))")))
      << page->body;
  const std::string script = "/console/" + m[1].str();
  auto plain = c().Get(script);
  ASSERT_EQ(plain->status, 200);
  EXPECT_EQ(plain->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(plain->get_header_value("Cache-Control"), "public, max-age=31536000, immutable");
  EXPECT_FALSE(plain->has_header("Content-Encoding"));
  auto gzipped = c().Get(script, {{"Accept-Encoding", "gzip"}});
  ASSERT_EQ(gzipped->status, 200);
  EXPECT_EQ(gzipped->get_header_value("Content-Encoding"), "gzip");
  EXPECT_LT(gzipped->body.size(), plain->body.size());
  auto again = c().Get(script, {{"If-None-Match", plain->get_header_value("ETag")}});
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());

  // Nothing else is served: not the gateway's console, not a path that climbs out of assets/.
  for (const char* path :
       {"/console/gateway/index.html", "/console/hub/index.html",
        "/console/assets/../hub/index.html", "/console/assets/nope.js", "/console/.env"}) {
    auto r = c().Get(path);
    EXPECT_EQ(r->status, 404) << path;
  }
}

}  // namespace
}  // namespace airlock::hub
