// The gateway's console and the roles behind it (docs/console.md): its page served by the
// gateway's own HTTP server without a token, GET /api/v1/whoami for every kind of token, and the
// viewer token, which may read every /api/v1/ route and act on none; and the site's own monitor
// view, which the console's Telemetry page shows.

#include "console/console.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "console/assets.hpp"
#include "core/time.hpp"
#include "gateway/approvals_api.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/monitor_api.hpp"
#include "gateway/registry.hpp"
#include "monitor/recent.hpp"
#include "support/telemetry_records.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;

class GatewayConsoleTest : public CacheFixture {
 protected:
  void SetUp() override {
    CacheFixture::SetUp();
    Reopen(1 << 20);
    auto store = GatewayStateStore::Open(dir_.path(), clock_.Now());
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto registry = DeviceRegistry::Start(
        *cache_,
        {.address = "127.0.0.1",
         .port = 0,
         .threads = 2,
         .tls_cert = {},
         .tls_key = {},
         .client_ca = {}},
        {}, [this](httplib::Server& s) {
          InstallWhoAmI(s, store_.get());
          InstallApprovalsApi(s, {.store = store_.get(),
                                  .service = nullptr,
                                  .cache = cache_.get(),
                                  .root = nullptr,
                                  .hub_url = "",
                                  .imports_dir = dir_.path() / "imports"});
          InstallMonitorApi(
              s, {.store = store_.get(), .recent = &recent_, .kept = std::chrono::hours(24)});
          console::Mount(s, console::App::kGateway);
        });
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
  }
  void TearDown() override { registry_.reset(); }

  httplib::Result Send(const std::string& method, const std::string& path,
                       const std::string& token = "", const std::string& body = "{}") {
    httplib::Client c("127.0.0.1", registry_->port());
    httplib::Headers h;
    if (!token.empty()) {
      h.emplace("Authorization", "Bearer " + token);
    }
    return method == "GET" ? c.Get(path, h) : c.Post(path, h, body, "application/json");
  }

  monitor::RecentTelemetry recent_{std::chrono::hours(24), 1000};
  std::unique_ptr<GatewayStateStore> store_;
  std::unique_ptr<DeviceRegistry> registry_;
};

TEST_F(GatewayConsoleTest, WhoAmINamesEveryKindOfToken) {
  for (TokenScope scope : {TokenScope::kOperator, TokenScope::kViewer, TokenScope::kMetrics}) {
    std::string name = std::string("t-") + TokenScopeName(scope);
    std::string token = store_->CreateToken(name, clock_.Now(), scope).value();
    auto r = Send("GET", "/api/v1/whoami", token);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body), (json{{"name", name}, {"role", TokenScopeName(scope)}}));
  }
  EXPECT_EQ(Send("GET", "/api/v1/whoami")->status, 401);
  EXPECT_EQ(Send("GET", "/api/v1/whoami", "alkop_unknown")->status, 401);
  EXPECT_EQ(ParseTokenScope("viewer"), TokenScope::kViewer);
}

TEST_F(GatewayConsoleTest, AViewerLooksButDoesNotAct) {
  std::string viewer = store_->CreateToken("vera", clock_.Now(), TokenScope::kViewer).value();
  std::string op = store_->CreateToken("olga", clock_.Now()).value();
  EXPECT_EQ(Send("GET", "/api/v1/approvals", viewer)->status, 200);
  auto refused = Send("POST", "/api/v1/approvals/dlv-0123456789abcdef/approve", viewer);
  EXPECT_EQ(refused->status, 403);
  EXPECT_NE(refused->body.find("the token vera is a viewer token: it may look, not act"),
            std::string::npos)
      << refused->body;
  // The operator gets past the role check, to the body's.
  auto checked = Send("POST", "/api/v1/approvals/dlv-0123456789abcdef/approve", op, "[1]");
  EXPECT_EQ(checked->status, 400) << checked->body;
}

TEST_F(GatewayConsoleTest, TheSitesMonitorViewSumsWhatItsDevicesReported) {
  using airlock::testing::AlertRecord;
  using airlock::testing::Metrics;
  using airlock::testing::MetricsRecord;
  const std::int64_t now = UnixMillis(std::chrono::system_clock::now());
  const char* a = "dev-0000000000000a0a";
  recent_.Add({MetricsRecord("a/1", Metrics().Device(a).End(now - 120000).Requests(40).Psi(0.9)),
               MetricsRecord("a/2", Metrics().Device(a).End(now - 60000).Requests(20).Errors(2)),
               AlertRecord("a/3", a, "1.0.0", "image/channel0", 0.9, now - 120000)},
              now);
  std::string viewer = store_->CreateToken("vera", clock_.Now(), TokenScope::kViewer).value();

  auto models = Send("GET", "/api/v1/monitor", viewer);
  ASSERT_EQ(models->status, 200) << models->body;
  EXPECT_EQ(json::parse(models->body), (json{{"models", {"visual-inspection"}}, {"kept", "1d"}}));

  auto view = Send("GET", "/api/v1/monitor/visual-inspection?since=1h&step=1m", viewer);
  ASSERT_EQ(view->status, 200) << view->body;
  json m = json::parse(view->body);
  ASSERT_EQ(m["versions"].size(), 1u);
  EXPECT_EQ(m["versions"][0]["requests"], 60);
  EXPECT_EQ(m["versions"][0]["errors"], 2);
  EXPECT_EQ(m["versions"][0]["drift"][0]["feature"], "image/channel0");
  ASSERT_EQ(m["alerts"].size(), 1u);
  EXPECT_EQ(m["alerts"][0]["device"], a);
  EXPECT_EQ(m["series"]["step_ms"], 60000);
  EXPECT_EQ(m["series"]["points"].size(), 2u);
  EXPECT_FALSE(json::parse(Send("GET", "/api/v1/monitor/visual-inspection", viewer)->body)
                   .contains("series"));
  EXPECT_TRUE(
      json::parse(Send("GET", "/api/v1/monitor/other-model", viewer)->body)["versions"].empty());

  for (const char* bad : {"/api/v1/monitor/visual-inspection?since=soon",
                          "/api/v1/monitor/visual-inspection?step=often",
                          "/api/v1/monitor/visual-inspection?since=7d&step=1s"}) {
    EXPECT_EQ(Send("GET", bad, viewer)->status, 400) << bad;
  }
  EXPECT_EQ(Send("GET", "/api/v1/monitor/visual-inspection")->status, 401);
}

TEST_F(GatewayConsoleTest, TheGatewaysConsoleIsServedWithoutAToken) {
  auto page = Send("GET", "/console/");
  ASSERT_TRUE(page);
  if (console::Assets().empty()) {  // built with -DAIRLOCK_CONSOLE=OFF
    EXPECT_EQ(page->status, 404);
    return;
  }
  ASSERT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<title>Airlock gateway</title>"), std::string::npos) << page->body;
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("script-src 'self'"),
            std::string::npos);
  EXPECT_EQ(Send("GET", "/console/hub/index.html")->status, 404);
  // Writes stay refused before routing: the console adds nothing writable.
  EXPECT_EQ(Send("POST", "/console/")->status, 405);
}

}  // namespace
}  // namespace airlock::gateway
