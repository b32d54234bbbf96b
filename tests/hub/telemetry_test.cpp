// The hub's telemetry (docs/monitoring.md) on SQLite and on PostgreSQL: TelemetryStore (each
// record once by id, malformed ones rejected by id, the queries the monitor view makes, each
// sender's latest outbox counters) and its HTTP API through a running hub with access control on
// (who may post for which gateway, malformed batches, GET /api/v1/monitor/MODEL and
// /api/v1/events).

#include "monitor/telemetry.hpp"

#include <chrono>
#include <map>
#include <set>

#include "core/time.hpp"
#include "hub/hub_fixture.hpp"
#include "monitor/batch.hpp"
#include "support/telemetry_records.hpp"

namespace airlock::hub {
namespace {

using monitor::DriftLevel;
using monitor::OutboxCounters;
using monitor::OutboxRecord;
using monitor::Priority;
using monitor::TelemetryBatch;
using nlohmann::json;

constexpr char kModel[] = "visual-inspection";
constexpr char kDevA[] = "dev-0000000000000a0a";
constexpr char kDevB[] = "dev-0000000000000b0b";
constexpr std::int64_t kNowSeconds = 1800000000;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using airlock::testing::AlertRecord;
using airlock::testing::Metrics;
using airlock::testing::MetricsRecord;

TelemetryBatch Batch(const std::string& gateway, std::vector<OutboxRecord> records,
                     OutboxCounters counters = {}) {
  TelemetryBatch b;
  b.source = gateway;
  b.site = gateway;
  b.records = std::move(records);
  b.outbox = counters;
  return b;
}

OutboxCounters Dropped(std::uint64_t metrics, std::uint64_t disk_full = 0) {
  OutboxCounters c;
  c.records = 5;
  c.bytes = 5000;
  c.dropped[static_cast<std::size_t>(Priority::kMetrics)] = metrics;
  c.dropped_bytes = metrics * 1000;
  c.disk_full = disk_full;
  return c;
}

std::vector<std::string> IdsOf(const std::vector<std::pair<std::string, std::string>>& rejected) {
  std::vector<std::string> ids;
  for (const auto& [id, why] : rejected) {
    ids.push_back(id);
  }
  return ids;
}

class TelemetryTest : public HubFixture {
 protected:
  void SetUp() override {
    auth_enabled_ = true;
    HubFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    admin_ = Mint("admin", Role::kAdmin);
    viewer_ = Mint("viewer", Role::kViewer);
  }

  std::string Mint(const std::string& name, Role role) {
    auto m = hub_->access().CreateToken(name, role, "test", std::nullopt);
    EXPECT_TRUE(m) << m.error().ToString();
    return m ? m->token : "";
  }
  static httplib::Headers Bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }

  // Registers a gateway the way `airlock-gateway register` does; returns its credential.
  std::string RegisterGateway(const std::string& name) {
    auto token = c().Post("/api/v1/gateways/tokens", Bearer(admin_), R"({"expires_in":"1h"})",
                          "application/json");
    EXPECT_TRUE(token && token->status == 201) << (token ? token->body : "no response");
    json request = {{"token", json::parse(token->body)["token"]}, {"name", name}};
    auto registered = c().Post("/api/v1/gateways/register", request.dump(), "application/json");
    EXPECT_TRUE(registered && registered->status == 201)
        << (registered ? registered->body : "no response");
    return json::parse(registered->body)["credential"];
  }

  httplib::Result Post(const std::string& gateway, const std::string& token,
                       const std::string& body) {
    return c().Post("/api/v1/gateways/" + gateway + "/telemetry", Bearer(token), body,
                    "application/json");
  }

  json Get(const std::string& path, const std::string& token) {
    auto r = c().Get(path, Bearer(token));
    EXPECT_TRUE(r) << path;
    if (!r) {
      return json();
    }
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  std::vector<monitor::IntervalReport> Reports(TelemetryQuery q) {
    auto r = hub_->telemetry().Reports(q);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : std::vector<monitor::IntervalReport>{};
  }
  std::size_t CountReports() { return Reports(TelemetryQuery{}).size(); }

  IngestResult Ingest(const std::string& site, const TelemetryBatch& b,
                      std::int64_t now = kNowSeconds) {
    auto r = hub_->telemetry().Ingest(site, b, now);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : IngestResult{};
  }

  std::string admin_, viewer_;
};

INSTANTIATE_TEST_SUITE_P(Backends, TelemetryTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

// ---- TelemetryStore ----

TEST_P(TelemetryTest, StoresEachRecordOnceAndCountsRepeatsAsDuplicates) {
  TelemetryBatch b = Batch(
      "plant-1",
      {MetricsRecord(std::string(kDevA) + "/1", Metrics().End(60000).Requests(10)),
       MetricsRecord(std::string(kDevA) + "/2", Metrics().End(120000).Requests(20)),
       AlertRecord(std::string(kDevA) + "/3", kDevA, "1.0.0", "image/channel0", 0.7, 120000)});
  IngestResult first = Ingest("plant-1", b);
  EXPECT_EQ(first.stored, 3u);
  EXPECT_EQ(first.duplicates, 0u);
  EXPECT_TRUE(first.rejected.empty());
  ASSERT_EQ(first.alerts.size(), 1u);  // the new alert, to log
  EXPECT_EQ(first.alerts[0].id, std::string(kDevA) + "/3");
  EXPECT_EQ(first.alerts[0].site, "plant-1");
  EXPECT_EQ(first.alerts[0].received, kNowSeconds);
  json answer = first.ToJson();
  EXPECT_EQ(answer["stored"], 3);
  EXPECT_EQ(answer["duplicates"], 0);
  EXPECT_EQ(answer["rejected"], json::array());

  // The same batch again (the gateway crashed before it removed it): all duplicates.
  IngestResult again = Ingest("plant-1", b, kNowSeconds + 10);
  EXPECT_EQ(again.stored, 0u);
  EXPECT_EQ(again.duplicates, 3u);
  EXPECT_TRUE(again.rejected.empty());
  EXPECT_TRUE(again.alerts.empty()) << "a repeated alert is no new event";
  // Even through another gateway (a device that moved): the id decides.
  EXPECT_EQ(Ingest("plant-2", Batch("plant-2", {b.records[0]})).duplicates, 1u);

  auto reports = Reports(TelemetryQuery{});
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].counts.requests, 10u);
  EXPECT_EQ(reports[1].counts.requests, 20u);
  auto alerts = hub_->telemetry().Alerts(TelemetryQuery{});
  ASSERT_TRUE(alerts) << alerts.error().ToString();
  ASSERT_EQ(alerts->size(), 1u);
  EXPECT_EQ((*alerts)[0].received, kNowSeconds);  // the first arrival's
  EXPECT_EQ(hub_->telemetry().stored(), 3u);
  EXPECT_EQ(hub_->telemetry().duplicates(), 4u);
  EXPECT_EQ(hub_->telemetry().rejected(), 0u);
}

TEST_P(TelemetryTest, RejectsMalformedRecordsByIdAndStoresTheOthers) {
  std::string a = std::string(kDevA) + "/";
  OutboxRecord not_json = MetricsRecord(a + "1", Metrics().End(60000));
  not_json.payload = "{not json";
  OutboxRecord wrong_schema = MetricsRecord(a + "2", Metrics().End(60000));
  json j = json::parse(wrong_schema.payload);
  j["schema"] = "airlock.telemetry.v0";
  wrong_schema.payload = j.dump();
  OutboxRecord schema_not_a_string = wrong_schema;
  schema_not_a_string.id = a + "3";
  j["schema"] = 5;
  schema_not_a_string.payload = j.dump();
  OutboxRecord no_latency = MetricsRecord(a + "4", Metrics().End(60000));
  j = json::parse(no_latency.payload);
  j.erase("latency");
  no_latency.payload = j.dump();
  OutboxRecord alert_without_feature = AlertRecord(a + "5", kDevA, "1.0.0", "x", 0.5, 60000);
  j = json::parse(alert_without_feature.payload);
  j.erase("feature");
  alert_without_feature.payload = j.dump();
  OutboxRecord alert_not_an_object = AlertRecord(a + "6", kDevA, "1.0.0", "x", 0.5, 60000);
  alert_not_an_object.payload = "[1, 2]";
  OutboxRecord good = MetricsRecord(a + "7", Metrics().End(120000).Requests(7));
  OutboxRecord good_alert = AlertRecord(a + "8", kDevA, "1.0.0", "image/channel0", 0.9, 120000);

  IngestResult r = Ingest(
      "plant-1", Batch("plant-1", {not_json, wrong_schema, schema_not_a_string, good, no_latency,
                                   alert_without_feature, alert_not_an_object, good_alert}));
  EXPECT_EQ(r.stored, 2u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(IdsOf(r.rejected),
            (std::vector<std::string>{a + "1", a + "2", a + "3", a + "4", a + "5", a + "6"}));
  for (const auto& [id, why] : r.rejected) {
    EXPECT_FALSE(why.empty()) << id;
  }
  json answer = r.ToJson();
  ASSERT_EQ(answer["rejected"].size(), 6u);
  EXPECT_EQ(answer["rejected"][0]["id"], a + "1");
  EXPECT_TRUE(answer["rejected"][0]["error"].is_string());
  EXPECT_EQ(hub_->telemetry().rejected(), 6u);

  auto reports = Reports(TelemetryQuery{});
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].counts.requests, 7u);
  auto alerts = hub_->telemetry().Alerts(TelemetryQuery{});
  ASSERT_TRUE(alerts);
  ASSERT_EQ(alerts->size(), 1u);
  EXPECT_EQ((*alerts)[0].id, a + "8");

  // A rejected record is not stored, so a corrected one under its id is (the next good
  // operation succeeds).
  IngestResult fixed =
      Ingest("plant-1", Batch("plant-1", {MetricsRecord(a + "1", Metrics().End(180000))}));
  EXPECT_EQ(fixed.stored, 1u);
  EXPECT_EQ(CountReports(), 2u);
}

TEST_P(TelemetryTest, ReportsFilterByModelSiteDeviceAndSince) {
  std::string a = std::string(kDevA) + "/", b = std::string(kDevB) + "/";
  Ingest("plant-1",
         Batch("plant-1",
               {MetricsRecord(a + "1", Metrics().Device(kDevA).End(3000).Requests(1)),
                MetricsRecord(a + "2", Metrics().Device(kDevA).End(1000).Requests(2)),
                MetricsRecord(
                    a + "3",
                    Metrics().Device(kDevA).Model("vibration-anomaly").End(2000).Requests(3))}));
  Ingest("plant-2",
         Batch("plant-2", {MetricsRecord(b + "1", Metrics().Device(kDevB).End(2000).Requests(4)),
                           AlertRecord(b + "2", kDevB, "1.0.0", "image/channel0", 0.5, 2500)}));
  auto requests = [&](TelemetryQuery q) {
    std::vector<std::uint64_t> out;
    for (const auto& r : Reports(std::move(q))) {
      out.push_back(r.counts.requests);
    }
    return out;
  };
  using V = std::vector<std::uint64_t>;
  // Oldest first (by the interval's end); alerts are not reports.
  EXPECT_EQ(requests({.model = kModel, .site = "", .device = "", .since_ms = 0}), (V{2, 4, 1}));
  EXPECT_EQ(requests({.model = "", .site = "", .device = "", .since_ms = 0}), (V{2, 3, 4, 1}));
  EXPECT_EQ(requests({.model = "vibration-anomaly", .site = "", .device = "", .since_ms = 0}),
            (V{3}));
  EXPECT_EQ(requests({.model = kModel, .site = "plant-1", .device = "", .since_ms = 0}), (V{2, 1}));
  EXPECT_EQ(requests({.model = kModel, .site = "plant-2", .device = "", .since_ms = 0}), (V{4}));
  EXPECT_EQ(requests({.model = kModel, .site = "", .device = kDevB, .since_ms = 0}), (V{4}));
  EXPECT_EQ(requests({.model = kModel, .site = "plant-1", .device = kDevB, .since_ms = 0}), (V{}));
  EXPECT_EQ(requests({.model = kModel, .site = "", .device = "", .since_ms = 2000}), (V{4, 1}));
  EXPECT_EQ(requests({.model = kModel, .site = "", .device = "", .since_ms = 3001}), (V{}));
  EXPECT_EQ(requests({.model = "other", .site = "", .device = "", .since_ms = 0}), (V{}));

  auto limited =
      hub_->telemetry().Reports({.model = kModel, .site = "", .device = "", .since_ms = 0}, 2);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->size(), 2u);
}

TEST_P(TelemetryTest, AlertsComeNewestFirstNamingWhereAndWhat) {
  std::string a = std::string(kDevA) + "/", b = std::string(kDevB) + "/";
  Ingest("plant-1",
         Batch("plant-1",
               {AlertRecord(a + "1", kDevA, "1.0.0", "image/channel0", 0.5, 1000),
                AlertRecord(a + "2", kDevA, "1.1.0", "predictions", std::nullopt, 3000),
                AlertRecord(a + "3", kDevA, "1.0.0", "x", 0.4, 2000, "vibration-anomaly")}));
  Ingest("plant-2",
         Batch("plant-2", {AlertRecord(b + "1", kDevB, "1.0.0", "image/channel1", 1.25, 2000)}),
         kNowSeconds + 5);

  auto all = hub_->telemetry().Alerts({.model = kModel, .site = "", .device = "", .since_ms = 0});
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, a + "2");
  EXPECT_EQ((*all)[1].id, b + "1");
  EXPECT_EQ((*all)[2].id, a + "1");
  const DriftAlert& plant2 = (*all)[1];
  EXPECT_EQ(plant2.site, "plant-2");
  EXPECT_EQ(plant2.device, kDevB);
  EXPECT_EQ(plant2.model, kModel);
  EXPECT_EQ(plant2.version, "1.0.0");
  EXPECT_EQ(plant2.feature, "image/channel1");
  ASSERT_TRUE(plant2.psi);
  EXPECT_DOUBLE_EQ(*plant2.psi, 1.25);
  EXPECT_EQ(plant2.at_ms, 2000);
  EXPECT_EQ(plant2.received, kNowSeconds + 5);
  EXPECT_FALSE((*all)[0].psi);  // none recorded
  json event = plant2.ToJson();
  EXPECT_EQ(event["event"], "drift.alert");
  EXPECT_EQ(event["site"], "plant-2");
  EXPECT_EQ(event["feature"], "image/channel1");
  EXPECT_EQ((*all)[0].ToJson()["psi"], nullptr);

  // Every model when none is named; by site, device and since.
  auto every = hub_->telemetry().Alerts({.model = "", .site = "", .device = "", .since_ms = 0});
  ASSERT_TRUE(every);
  EXPECT_EQ(every->size(), 4u);
  auto site =
      hub_->telemetry().Alerts({.model = "", .site = "plant-1", .device = "", .since_ms = 0});
  ASSERT_TRUE(site);
  ASSERT_EQ(site->size(), 3u);
  EXPECT_EQ((*site)[1].model, "vibration-anomaly");
  auto device =
      hub_->telemetry().Alerts({.model = kModel, .site = "", .device = kDevB, .since_ms = 0});
  ASSERT_TRUE(device);
  ASSERT_EQ(device->size(), 1u);
  auto recent =
      hub_->telemetry().Alerts({.model = kModel, .site = "", .device = "", .since_ms = 2500});
  ASSERT_TRUE(recent);
  ASSERT_EQ(recent->size(), 1u);
  EXPECT_EQ((*recent)[0].id, a + "2");
  auto one = hub_->telemetry().Alerts({.model = "", .site = "", .device = "", .since_ms = 0}, 1);
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].id, a + "2");
}

TEST_P(TelemetryTest, SourcesKeepEachSendersLatestCounters) {
  std::string a = std::string(kDevA) + "/", b = std::string(kDevB) + "/";
  Ingest("plant-1",
         Batch("plant-1",
               {MetricsRecord(a + "1", Metrics().Device(kDevA).End(1000).Outbox(Dropped(0))),
                MetricsRecord(a + "2", Metrics().Device(kDevA).End(2000).Outbox(Dropped(3, 1)))},
               Dropped(1)),
         kNowSeconds);
  Ingest("plant-2",
         Batch("plant-2", {MetricsRecord(b + "1", Metrics().Device(kDevB).End(1000))}, Dropped(0)),
         kNowSeconds);
  // Later: the gateway dropped more, and dev-a's next report carries its new counters.
  Ingest("plant-1",
         Batch("plant-1",
               {MetricsRecord(a + "3", Metrics().Device(kDevA).End(3000).Outbox(Dropped(5, 2)))},
               Dropped(4, 1)),
         kNowSeconds + 60);

  auto sources = hub_->telemetry().Sources("");
  ASSERT_TRUE(sources) << sources.error().ToString();
  std::map<std::pair<std::string, std::string>, SourceCounters> by;
  for (const auto& s : *sources) {
    by[{s.site, s.source}] = s;
  }
  // plant-1, dev-a, plant-2, and dev-b (its metrics carried no counters: not a source).
  ASSERT_EQ(by.size(), 3u);
  const SourceCounters& gw = by[std::pair<std::string, std::string>("plant-1", "plant-1")];
  EXPECT_EQ(gw.counters.dropped[static_cast<std::size_t>(Priority::kMetrics)], 4u);
  EXPECT_EQ(gw.counters.disk_full, 1u);
  EXPECT_EQ(gw.counters.dropped_bytes, 4000u);
  EXPECT_EQ(gw.updated, kNowSeconds + 60);
  const SourceCounters& dev = by[std::pair<std::string, std::string>("plant-1", kDevA)];
  EXPECT_EQ(dev.counters.dropped[static_cast<std::size_t>(Priority::kMetrics)], 5u);
  EXPECT_EQ(dev.counters.disk_full, 2u);
  EXPECT_EQ(dev.counters.records, 5u);
  EXPECT_EQ(dev.updated, kNowSeconds + 60);
  const std::pair<std::string, std::string> plant2_itself = {"plant-2", "plant-2"};
  ASSERT_EQ(by.count(plant2_itself), 1u);
  EXPECT_EQ(by[plant2_itself].updated, kNowSeconds);

  // One site's.
  auto plant2 = hub_->telemetry().Sources("plant-2");
  ASSERT_TRUE(plant2);
  ASSERT_EQ(plant2->size(), 1u);
  EXPECT_EQ((*plant2)[0].source, "plant-2");

  // A duplicate brings no counters of its own: dev-a's stay as its latest new record said.
  Ingest("plant-1",
         Batch("plant-1",
               {MetricsRecord(a + "3", Metrics().Device(kDevA).End(3000).Outbox(Dropped(9)))},
               Dropped(4, 1)),
         kNowSeconds + 120);
  sources = hub_->telemetry().Sources("plant-1");
  ASSERT_TRUE(sources);
  for (const auto& s : *sources) {
    if (s.source == kDevA) {
      EXPECT_EQ(s.counters.dropped[static_cast<std::size_t>(Priority::kMetrics)], 5u);
    }
  }
}

// ---- The HTTP API ----

TEST_P(TelemetryTest, OnlyTheGatewayItselfOrAnAdminMayPostItsTelemetry) {
  std::string plant1 = RegisterGateway("plant-1");
  std::string plant2 = RegisterGateway("plant-2");
  std::string a = std::string(kDevA) + "/";
  auto body = [&](const std::string& site, int n) {
    return Batch(site, {MetricsRecord(a + std::to_string(n), Metrics().End(NowMs() - 1000))})
        .Serialize();
  };

  auto own = Post("plant-1", plant1, body("plant-1", 1));
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 200) << own->body;
  json answer = json::parse(own->body);
  EXPECT_EQ(answer["stored"], 1);
  EXPECT_EQ(answer["duplicates"], 0);
  EXPECT_EQ(answer["rejected"], json::array());
  // Again: answered, as a duplicate.
  auto repeat = Post("plant-1", plant1, body("plant-1", 1));
  ASSERT_TRUE(repeat);
  ASSERT_EQ(repeat->status, 200) << repeat->body;
  EXPECT_EQ(json::parse(repeat->body)["duplicates"], 1);

  // plant-1's credential for plant-2; a viewer; nobody; an unknown gateway.
  auto other = Post("plant-2", plant1, body("plant-2", 2));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403) << other->body;
  EXPECT_EQ(ErrorCodeOf(other), "DENIED");
  auto viewer = Post("plant-1", viewer_, body("plant-1", 3));
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->status, 403) << viewer->body;
  auto anonymous =
      c().Post("/api/v1/gateways/plant-1/telemetry", body("plant-1", 4), "application/json");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401) << anonymous->body;
  auto unknown = Post("plant-9", admin_, body("plant-9", 5));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404) << unknown->body;
  EXPECT_EQ(CountReports(), 1u) << "a refused post stores nothing";
  auto sources = hub_->telemetry().Sources("plant-2");
  ASSERT_TRUE(sources);
  EXPECT_TRUE(sources->empty()) << "nor the counters of the gateway it claimed to be";

  // The gateways' own posts, and an admin's for any gateway, go on working.
  auto second = Post("plant-2", plant2, body("plant-2", 6));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200) << second->body;
  auto admin = Post("plant-1", admin_, body("plant-1", 7));
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 200) << admin->body;
  EXPECT_EQ(CountReports(), 3u);
  auto stored = Reports({.model = kModel, .site = "plant-2", .device = "", .since_ms = 0});
  ASSERT_EQ(stored.size(), 1u);
}

TEST_P(TelemetryTest, AMalformedBatchIs400AndStoresNothing) {
  std::string plant1 = RegisterGateway("plant-1");
  TelemetryBatch good =
      Batch("plant-1", {MetricsRecord(std::string(kDevA) + "/1", Metrics().End(NowMs() - 1000))});
  json j = json::parse(good.Serialize());
  json wrong_schema = j;
  wrong_schema["schema"] = "airlock.telemetry-batch.v0";
  json schema_not_a_string = j;
  schema_not_a_string["schema"] = 7;
  json unknown_priority = j;
  unknown_priority["records"][0]["priority"] = "urgent";
  json no_source = j;
  no_source["source"] = "";
  for (const std::string& bad :
       {std::string("{not json"), std::string(""), wrong_schema.dump(), schema_not_a_string.dump(),
        unknown_priority.dump(), no_source.dump(), json::array().dump()}) {
    auto r = Post("plant-1", plant1, bad);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad.substr(0, 100) << ": " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "INVALID_REQUEST");
  }
  EXPECT_EQ(CountReports(), 0u);
  auto sources = hub_->telemetry().Sources("");
  ASSERT_TRUE(sources);
  EXPECT_TRUE(sources->empty());

  auto r = Post("plant-1", plant1, good.Serialize());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(CountReports(), 1u);
}

TEST_P(TelemetryTest, MonitorSumsEachVersionAndListsAlertsAndDrops) {
  std::string plant1 = RegisterGateway("plant-1");
  std::string plant2 = RegisterGateway("plant-2");
  std::string a = std::string(kDevA) + "/", b = std::string(kDevB) + "/";
  std::int64_t now = NowMs();
  auto posted = [&](const std::string& gateway, const std::string& token,
                    const TelemetryBatch& batch) {
    auto r = Post(gateway, token, batch.Serialize());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["stored"], batch.records.size());
  };
  posted(
      "plant-1", plant1,
      Batch("plant-1",
            {MetricsRecord(
                 a + "1",
                 Metrics().Device(kDevA).End(now - 120000).Requests(100).Errors(2).Psi(0.05)),
             MetricsRecord(a + "2", Metrics()
                                        .Device(kDevA)
                                        .End(now - 60000)
                                        .Requests(50)
                                        .Errors(1)
                                        .Psi(0.9)
                                        .Outbox(Dropped(2))),
             AlertRecord(a + "3", kDevA, "1.0.0", "image/channel0", 0.9, now - 60000),
             MetricsRecord(
                 a + "4", Metrics().Device(kDevA).Version("1.1.0").End(now - 60000).Requests(5))}));
  posted(
      "plant-2", plant2,
      Batch("plant-2",
            {MetricsRecord(
                b + "1", Metrics().Device(kDevB).End(now - 60000).Requests(30).Errors(0).Psi(0.2))},
            Dropped(0, 3)));
  // Outside the default window (1h), and another model: neither counts.
  posted("plant-1", plant1,
         Batch("plant-1",
               {MetricsRecord(a + "5",
                              Metrics().Device(kDevA).End(now - 2 * 3600 * 1000).Requests(1000)),
                MetricsRecord(a + "6", Metrics()
                                           .Device(kDevA)
                                           .Model("vibration-anomaly")
                                           .End(now - 1000)
                                           .Requests(1000))}));

  json m = Get(std::string("/api/v1/monitor/") + kModel, viewer_);
  EXPECT_EQ(m["model"], kModel);
  ASSERT_EQ(m["versions"].size(), 2u) << m.dump(2);
  json v1 = m["versions"][0];
  EXPECT_EQ(v1["version"], "1.0.0");
  EXPECT_EQ(v1["requests"], 180);
  EXPECT_EQ(v1["errors"], 3);
  EXPECT_EQ(v1["devices"], 2);
  EXPECT_EQ(v1["intervals"], 3);
  EXPECT_GT(v1["throughput_rps"].get<double>(), 0.0);
  ASSERT_TRUE(v1["latency_ms"]["p99"].is_number()) << v1.dump();
  EXPECT_GT(v1["latency_ms"]["p99"].get<double>(), 1.0);  // every request in (1, 2.5] ms
  EXPECT_LE(v1["latency_ms"]["p99"].get<double>(), 2.5);
  ASSERT_EQ(v1["drift"].size(), 1u);
  EXPECT_EQ(v1["drift"][0]["feature"], "image/channel0");
  EXPECT_EQ(v1["drift"][0]["devices"], 2);
  EXPECT_NEAR(v1["drift"][0]["psi_max"].get<double>(), 0.9, 1e-9);
  EXPECT_NEAR(v1["drift"][0]["psi_mean"].get<double>(), 0.55, 1e-9);
  EXPECT_EQ(v1["drift"][0]["level"], "alert");
  EXPECT_EQ(m["versions"][1]["version"], "1.1.0");
  EXPECT_EQ(m["versions"][1]["requests"], 5);

  ASSERT_EQ(m["alerts"].size(), 1u);
  EXPECT_EQ(m["alerts"][0]["site"], "plant-1");
  EXPECT_EQ(m["alerts"][0]["device"], kDevA);
  EXPECT_EQ(m["alerts"][0]["feature"], "image/channel0");
  EXPECT_NEAR(m["alerts"][0]["psi"].get<double>(), 0.9, 1e-9);

  // What senders had to drop: dev-a (2 metrics) and plant-2 (3 writes met a full disk); plant-1
  // dropped nothing and is not listed.
  std::set<std::string> dropped;
  for (const auto& d : m["dropped"]) {
    dropped.insert(d["site"].get<std::string>() + ":" + d["source"].get<std::string>());
  }
  EXPECT_EQ(dropped, (std::set<std::string>{"plant-1:" + std::string(kDevA), "plant-2:plant-2"}))
      << m["dropped"].dump();

  // Narrowed to a site, a device, a longer window.
  json site = Get(std::string("/api/v1/monitor/") + kModel + "?site=plant-2", viewer_);
  EXPECT_EQ(site["site"], "plant-2");
  ASSERT_EQ(site["versions"].size(), 1u);
  EXPECT_EQ(site["versions"][0]["requests"], 30);
  EXPECT_TRUE(site["alerts"].empty());
  json device = Get(std::string("/api/v1/monitor/") + kModel + "?device=" + kDevA, viewer_);
  ASSERT_EQ(device["versions"].size(), 2u);
  EXPECT_EQ(device["versions"][0]["requests"], 150);
  json longer = Get(std::string("/api/v1/monitor/") + kModel + "?since=3h", viewer_);
  ASSERT_EQ(longer["versions"].size(), 2u);
  EXPECT_EQ(longer["versions"][0]["requests"], 1180);
  json none = Get("/api/v1/monitor/unknown-model", viewer_);
  EXPECT_TRUE(none["versions"].empty());
  EXPECT_TRUE(none["alerts"].empty());

  // Reading needs a viewer at least.
  auto anonymous = c().Get(std::string("/api/v1/monitor/") + kModel);
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
}

TEST_P(TelemetryTest, EventsListDriftAlertsAndABadSinceIs400) {
  std::string plant1 = RegisterGateway("plant-1");
  std::string a = std::string(kDevA) + "/";
  std::int64_t now = NowMs();
  auto r = Post(
      "plant-1", plant1,
      Batch("plant-1",
            {AlertRecord(a + "1", kDevA, "1.0.0", "image/channel0", 0.5, now - 3 * 3600 * 1000),
             AlertRecord(a + "2", kDevA, "1.0.0", "image/channel1", 0.7, now - 120000),
             AlertRecord(a + "3", kDevA, "2.0.0", "x", 0.3, now - 60000, "vibration-anomaly")})
          .Serialize());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;

  json events = Get("/api/v1/events", viewer_)["events"];  // the last hour, newest first
  ASSERT_EQ(events.size(), 2u) << events.dump(2);
  EXPECT_EQ(events[0]["id"], a + "3");
  EXPECT_EQ(events[0]["model"], "vibration-anomaly");
  EXPECT_EQ(events[1]["id"], a + "2");
  EXPECT_EQ(events[1]["event"], "drift.alert");
  EXPECT_EQ(events[1]["site"], "plant-1");
  EXPECT_EQ(events[1]["device"], kDevA);
  EXPECT_EQ(events[1]["version"], "1.0.0");
  EXPECT_EQ(events[1]["feature"], "image/channel1");
  EXPECT_NEAR(events[1]["psi"].get<double>(), 0.7, 1e-9);

  EXPECT_EQ(Get("/api/v1/events?since=24h", viewer_)["events"].size(), 3u);
  json model = Get(std::string("/api/v1/events?since=24h&model=") + kModel, viewer_)["events"];
  ASSERT_EQ(model.size(), 2u);
  EXPECT_EQ(model[0]["id"], a + "2");
  EXPECT_EQ(model[1]["id"], a + "1");
  EXPECT_TRUE(Get("/api/v1/events?since=24h&site=plant-9", viewer_)["events"].empty());
  // An RFC 3339 time works as well as a duration.
  std::string since = FormatRfc3339(TimePoint(std::chrono::milliseconds(now - 90000)));
  json rfc = Get("/api/v1/events?since=" + since, viewer_)["events"];
  ASSERT_EQ(rfc.size(), 1u) << since;
  EXPECT_EQ(rfc[0]["id"], a + "3");

  for (const std::string& path :
       {std::string("/api/v1/events?since=yesterday"), std::string("/api/v1/events?since=-"),
        std::string("/api/v1/monitor/") + kModel + "?since=soon"}) {
    auto bad = c().Get(path, Bearer(viewer_));
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400) << path << ": " << bad->body;
    EXPECT_EQ(ErrorCodeOf(bad), "INVALID_REQUEST");
  }
  auto anonymous = c().Get("/api/v1/events");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
}

TEST_P(TelemetryTest, AStepCutsTheWindowIntoASeriesPerVersion) {
  std::string plant1 = RegisterGateway("plant-1");
  std::string a = std::string(kDevA) + "/";
  std::int64_t now = NowMs();
  auto r = Post(
      "plant-1", plant1,
      Batch("plant-1",
            {MetricsRecord(a + "1",
                           Metrics().Device(kDevA).End(now - 45 * 60000).Requests(60).Psi(0.05)),
             MetricsRecord(
                 a + "2",
                 Metrics().Device(kDevA).End(now - 44 * 60000).Requests(30).Errors(3).Psi(0.9)),
             MetricsRecord(
                 a + "3",
                 Metrics().Device(kDevA).Version("1.1.0").End(now - 5 * 60000).Requests(12))})
          .Serialize());
  ASSERT_EQ(r->status, 200) << r->body;

  // 10-minute steps over the last hour: the first two reports share a bucket, the third has its
  // own; buckets without reports have no points.
  json m = Get(std::string("/api/v1/monitor/") + kModel + "?since=1h&step=10m", viewer_);
  ASSERT_TRUE(m.contains("series")) << m.dump();
  EXPECT_EQ(m["series"]["step_ms"], 600000);
  json points = m["series"]["points"];
  ASSERT_EQ(points.size(), 2u) << points.dump(2);
  EXPECT_EQ(points[0]["version"], "1.0.0");
  EXPECT_EQ(points[0]["requests"], 90);
  EXPECT_EQ(points[0]["errors"], 3);
  EXPECT_NEAR(points[0]["throughput_rps"].get<double>(), 90.0 / 600.0, 1e-9);
  EXPECT_NEAR(points[0]["psi_max"].get<double>(), 0.9, 1e-9);
  EXPECT_EQ(points[0]["drift_level"], "alert");
  EXPECT_TRUE(points[0]["latency_ms"]["p95"].is_number());
  EXPECT_EQ(points[1]["version"], "1.1.0");
  EXPECT_EQ(points[1]["requests"], 12);
  EXPECT_TRUE(points[1]["psi_max"].is_null());
  std::int64_t since = m["since_ms"];
  EXPECT_EQ(points[0]["t_ms"], since + 600000);  // 45 and 44 minutes ago: the second ten
  EXPECT_EQ(points[1]["t_ms"], since + 5 * 600000);
  // Without a step, no series (the summary alone, as before).
  EXPECT_FALSE(Get(std::string("/api/v1/monitor/") + kModel, viewer_).contains("series"));

  // A step that is not a duration, or one that cuts the window into more than 1000 steps: 400.
  for (const char* query : {"?step=often", "?step=0s", "?since=7d&step=1s"}) {
    auto bad = c().Get(std::string("/api/v1/monitor/") + kModel + query, Bearer(viewer_));
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400) << query << ": " << bad->body;
    EXPECT_NE(bad->body.find("step"), std::string::npos) << bad->body;
  }
}

}  // namespace
}  // namespace airlock::hub
