// The gateway's /metrics in process: GatewayMetrics installed on a real DeviceRegistry over a real
// cache and gateway.db, scraped over HTTP with the tokens an operator makes. What the store and
// the cache hold shows as numbers, the hook's families follow the gateway's, a metrics token reads
// /metrics and nothing else, and promtool accepts the text. (fleet_test.cpp scrapes the real
// `airlock-gateway serve` in the middle of a rollout.)

#include "gateway/metrics.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <string>

#include "gateway/approvals_api.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/registry.hpp"
#include "support/promtool.hpp"

namespace airlock::gateway {
namespace {

class GatewayMetricsTest : public CacheFixture {
 protected:
  void SetUp() override {
    CacheFixture::SetUp();
    Reopen(1 << 20);
    auto store = GatewayStateStore::Open(dir_.path(), clock_.Now());
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    metrics_ = std::make_unique<GatewayMetrics>(
        GatewayMetricsSources{.store = store_.get(), .cache = cache_.get()});
  }
  void TearDown() override {
    registry_.reset();  // before what its handlers use
    metrics_.reset();
  }

  void Serve() {
    auto registry = DeviceRegistry::Start(
        *cache_, {.address = "127.0.0.1", .port = 0, .threads = 2, .tls_cert = {}, .tls_key = {}, .client_ca = {}}, {}, [this](httplib::Server& s) {
          InstallApprovalsApi(s, {.store = store_.get(),
                                  .service = nullptr,
                                  .cache = cache_.get(),
                                  .root = nullptr,
                                  .hub_url = "",
                                  .imports_dir = dir_.path() / "imports"});
          metrics_->Install(s);
        });
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
  }
  httplib::Result Get(const std::string& path, const std::string& token = "") {
    httplib::Client c("127.0.0.1", registry_->port());
    httplib::Headers h;
    if (!token.empty()) {
      h.emplace("Authorization", "Bearer " + token);
    }
    return c.Get(path, h);
  }

  void PutDelivery(const std::string& id, DeliveryPhase phase, Approval approval) {
    DeliveryRecord r;
    r.id = id;
    r.deployment = "dep-0123456789abcdef";
    r.model = "vib";
    r.version = "1.0.0";
    r.phase = phase;
    r.approval = approval;
    r.created_at = r.updated_at = clock_.Now();
    ASSERT_TRUE(store_->Put(r));
  }
  std::string EnrollDevice(const std::string& id) {
    auto token =
        store_->CreateEnrollmentToken({}, clock_.Now() + std::chrono::hours(1), clock_.Now());
    EXPECT_TRUE(token);
    auto enrolled = store_->Enroll(
        *token,
        [&](const Labels& labels) -> Result<DeviceRecord> {
          return DeviceRecord{.id = id,
                              .labels = labels,
                              .cert_serial = "01",
                              .cert_not_after = clock_.Now() + std::chrono::hours(24),
                              .mqtt_password_hash = "ab",
                              .revoked_at = std::nullopt,
                              .enrolled_at = clock_.Now()};
        },
        clock_.Now());
    EXPECT_TRUE(enrolled);
    return id;
  }

  std::unique_ptr<GatewayStateStore> store_;
  std::unique_ptr<GatewayMetrics> metrics_;
  std::unique_ptr<DeviceRegistry> registry_;
};

TEST_F(GatewayMetricsTest, TheStoreAndTheCacheShowAsNumbersAndTheHookFollows) {
  // A package in the cache (its config, layer, the referrer's config and the release document),
  // and a download left half done.
  TestPackage package = MakePackage("models/vib", "1.0.0", {"config", "weights of 1.0.0"});
  Deliver(package);
  std::uint64_t bytes = 0;
  for (const std::string& b : package.blobs) {
    bytes += b.size();
  }
  auto partial = cache_->BeginBlob(Sha256Of(std::string(100, 'p')), 100);
  ASSERT_TRUE(partial);
  ASSERT_TRUE(partial->Append(0, std::string(10, 'p')));
  // Three deliveries: an offer held for the operator, a package waiting for its rollout
  // approval, a rejected offer.
  PutDelivery("dlv-" + std::string(32, '1'), DeliveryPhase::kHeld, Approval::kOfferPending);
  PutDelivery("dlv-" + std::string(32, '2'), DeliveryPhase::kAvailable, Approval::kRolloutPending);
  PutDelivery("dlv-" + std::string(32, '3'), DeliveryPhase::kRejected, Approval::kNone);
  // Three devices: one online, one never heard from, one revoked.
  std::string online = EnrollDevice("dev-0000000000000001");
  EnrollDevice("dev-0000000000000002");
  std::string revoked = EnrollDevice("dev-0000000000000003");
  ASSERT_TRUE(store_->SetDeviceOnline(online, true, clock_.Now()));
  ASSERT_TRUE(store_->SetDeviceOnline(revoked, true, clock_.Now()));
  ASSERT_TRUE(store_->RevokeDevice(revoked, clock_.Now()));

  // The hook the telemetry outbox will use; a second call continues the same family.
  metrics_->AddMetricsAppender([](prometheus::MetricsText& out) {
    out.Family("airlock_test_outbox_records", prometheus::MetricType::kGauge,
               "Records waiting in a test outbox");
    out.Sample({{"outbox", "devices"}}, 12);
  });
  metrics_->AddMetricsAppender([](prometheus::MetricsText& out) {
    out.Family("airlock_test_outbox_records", prometheus::MetricType::kGauge, "(ignored)");
    out.Sample({{"outbox", "hub"}}, 0);
  });

  std::string op = store_->CreateToken("olga", clock_.Now()).value();
  std::string prometheus =
      store_->CreateToken("prometheus", clock_.Now(), TokenScope::kMetrics).value();
  Serve();

  // No token: 401. A metrics token on the operator's API: 403, saying why.
  auto anonymous = Get("/metrics");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(anonymous->get_header_value("WWW-Authenticate"), "Bearer realm=\"airlock-gateway\"");
  auto denied = Get("/api/v1/approvals", prometheus);
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_NE(denied->body.find("the token prometheus is a metrics token: it may only read /metrics"),
            std::string::npos)
      << denied->body;
  EXPECT_EQ(Get("/api/v1/approvals", op)->status, 200);

  auto scraped = Get("/metrics", prometheus);
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200) << scraped->body;
  EXPECT_EQ(scraped->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = scraped->body;
  for (const std::string& line : {
           std::string("\nairlock_http_requests_total 3\n"),
           std::string("\nairlock_http_errors_total 2\n"),
           std::string("airlock_gateway_deliveries{state=\"held\"} 1\n"),
           std::string("airlock_gateway_deliveries{state=\"available\"} 1\n"),
           std::string("airlock_gateway_deliveries{state=\"rejected\"} 1\n"),
           std::string("airlock_gateway_deliveries{state=\"downloading\"} 0\n"),
           std::string("airlock_gateway_approvals_pending{kind=\"offer\"} 1\n"),
           std::string("airlock_gateway_approvals_pending{kind=\"rollout\"} 1\n"),
           std::string("airlock_gateway_devices{state=\"enrolled\"} 2\n"),
           std::string("airlock_gateway_devices{state=\"revoked\"} 1\n"),
           std::string("\nairlock_gateway_devices_online 1\n"),
           "\nairlock_gateway_cache_bytes " + std::to_string(bytes) + "\n",
           "\nairlock_gateway_cache_blobs " + std::to_string(package.blobs.size()) + "\n",
           std::string("\nairlock_gateway_cache_limit_bytes 1048576\n"),
           std::string("\nairlock_gateway_cache_downloads 1\n"),
           std::string("\nairlock_gateway_cache_download_bytes 10\n"),
           std::string("# TYPE airlock_test_outbox_records gauge\n"
                       "airlock_test_outbox_records{outbox=\"devices\"} 12\n"
                       "airlock_test_outbox_records{outbox=\"hub\"} 0\n"),
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  // The hook's families come after the gateway's; services not given are left out.
  EXPECT_GT(text.find("airlock_test_outbox_records"), text.find("airlock_gateway_cache_blobs"));
  EXPECT_EQ(text.find("airlock_gateway_rollouts"), std::string::npos);
  EXPECT_EQ(text.find("airlock_mqtt_connected"), std::string::npos);
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(text));

  // An operator token reads it too.
  EXPECT_EQ(Get("/metrics", op)->status, 200);
}

// A token is an operator's unless it was made for metrics.
TEST_F(GatewayMetricsTest, TokensAreOperatorTokensUnlessMadeForMetrics) {
  std::string op = store_->CreateToken("olga", clock_.Now()).value();
  std::string prometheus =
      store_->CreateToken("prometheus", clock_.Now(), TokenScope::kMetrics).value();
  auto a = store_->CheckToken(op);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "olga");
  EXPECT_EQ(a->scope, TokenScope::kOperator);
  auto b = store_->CheckToken(prometheus);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->scope, TokenScope::kMetrics);
  EXPECT_EQ(store_->CheckToken("alkop_unknown").error().code(), ErrorCode::kVerification);
  EXPECT_EQ(ParseTokenScope("metrics"), TokenScope::kMetrics);
  EXPECT_FALSE(ParseTokenScope("admin"));
}

}  // namespace
}  // namespace airlock::gateway
