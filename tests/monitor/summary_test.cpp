// What `airlock monitor` shows (Summarize over interval reports of several devices and versions),
// and the telemetry batch's wire format (round trip and refusals).

#include "monitor/summary.hpp"

#include <gtest/gtest.h>

#include "monitor/batch.hpp"

namespace airlock::monitor {
namespace {

using nlohmann::json;

const std::vector<std::uint64_t> kBounds = {1000, 2000, 4000};  // µs

FeatureDrift Drift(std::string feature, std::optional<double> psi, DriftLevel level) {
  return FeatureDrift{
      .feature = std::move(feature), .values = 100, .psi = psi, .ks = std::nullopt, .level = level};
}

IntervalReport Report(std::string device, std::string version, std::int64_t start_ms,
                      std::int64_t end_ms, std::uint64_t requests, std::uint64_t errors,
                      std::vector<std::uint64_t> latency, std::vector<FeatureDrift> drift = {},
                      std::vector<std::uint64_t> classes = {},
                      std::vector<std::uint64_t> bounds = kBounds) {
  IntervalReport r;
  r.device = std::move(device);
  r.model = "visual-inspection";
  r.version = std::move(version);
  r.start_ms = start_ms;
  r.end_ms = end_ms;
  r.counts.requests = requests;
  r.counts.errors = errors;
  r.counts.latency_bounds_us = std::move(bounds);
  r.counts.latency_counts = std::move(latency);
  r.observed = requests;
  if (!classes.empty()) {
    r.predictions = PredictionSpec{.tensor = "scores",
                                   .classes = true,
                                   .labels = {"good", "defect"},
                                   .histogram = {{}, std::move(classes)},
                                   .has_baseline = true};
  }
  for (const auto& d : drift) {
    r.level = static_cast<int>(d.level) > static_cast<int>(r.level) ? d.level : r.level;
  }
  r.drift = std::move(drift);
  return r;
}

// Two devices (dev-a, dev-b) serving 1.0.0 over overlapping windows, both serving 1.1.0 later,
// and a report of another model that must not count.
std::vector<IntervalReport> Fleet() {
  using L = DriftLevel;
  std::vector<IntervalReport> r;
  // 1.0.0
  r.push_back(Report("dev-a", "1.0.0", 0, 60000, 100, 2, {0, 100, 0, 0},
                     {Drift("image/channel0", 0.05, L::kOk), Drift("predictions", 0.3, L::kAlert)},
                     {90, 10}));
  r.push_back(Report("dev-a", "1.0.0", 60000, 120000, 50, 0, {0, 0, 50, 0},
                     {Drift("image/channel0", 0.2, L::kWatch), Drift("predictions", 0.05, L::kOk)},
                     {50, 0}));
  r.push_back(Report(
      "dev-b", "1.0.0", 30000, 90000, 50, 3, {50, 0, 0, 0},
      {Drift("image/channel0", 0.4, L::kAlert), Drift("predictions", 0.1, L::kWatch)}, {45, 5}));
  // dev-b's last interval judged nothing (too few requests): its latest judged one stays the one
  // before.
  r.push_back(Report(
      "dev-b", "1.0.0", 90000, 150000, 0, 0, {0, 0, 0, 0},
      {Drift("image/channel0", std::nullopt, L::kOk), Drift("predictions", std::nullopt, L::kOk)}));
  // 1.1.0; dev-b's buckets differ from the first report's: counted, but not in the percentiles.
  r.push_back(Report("dev-a", "1.1.0", 120000, 180000, 10, 1, {10, 0, 0, 0}));
  r.push_back(Report("dev-b", "1.1.0", 120000, 180000, 20, 0, {0, 20}, {}, {}, {500}));
  IntervalReport other = Report("dev-a", "1.0.0", 0, 60000, 1000, 1000, {0, 0, 0, 1000});
  other.model = "vibration-anomaly";
  r.push_back(other);
  return r;
}

TEST(Summarize, SumsEachVersionOverDevicesAndIntervals) {
  auto summaries = Summarize("visual-inspection", Fleet());
  ASSERT_EQ(summaries.size(), 2u);
  const VersionSummary& v1 = summaries[0];
  EXPECT_EQ(v1.version, "1.0.0");
  EXPECT_EQ(v1.requests, 200u);
  EXPECT_EQ(v1.errors, 5u);
  EXPECT_EQ(v1.devices, 2u);
  EXPECT_EQ(v1.intervals, 4u);
  EXPECT_EQ(v1.start_ms, 0);
  EXPECT_EQ(v1.end_ms, 150000);
  EXPECT_DOUBLE_EQ(v1.Throughput(), 200.0 / 150.0);
  ASSERT_TRUE(v1.predictions);
  EXPECT_EQ(v1.predictions->labels, (std::vector<std::string>{"good", "defect"}));
  EXPECT_EQ(v1.predictions->histogram.counts, (std::vector<std::uint64_t>{185, 15}));

  const VersionSummary& v2 = summaries[1];
  EXPECT_EQ(v2.version, "1.1.0");
  EXPECT_EQ(v2.requests, 30u);
  EXPECT_EQ(v2.errors, 1u);
  EXPECT_EQ(v2.devices, 2u);
  EXPECT_EQ(v2.intervals, 2u);
  EXPECT_DOUBLE_EQ(v2.Throughput(), 0.5);
  EXPECT_FALSE(v2.predictions);
  EXPECT_TRUE(v2.drift.empty());

  EXPECT_TRUE(Summarize("unknown-model", Fleet()).empty());
  EXPECT_TRUE(Summarize("visual-inspection", {}).empty());
}

TEST(Summarize, PercentilesComeFromTheMergedBuckets) {
  auto summaries = Summarize("visual-inspection", Fleet());
  ASSERT_EQ(summaries.size(), 2u);
  // 1.0.0 merged: 50 in [0, 1 ms], 100 in (1, 2 ms], 50 in (2, 4 ms].
  const VersionSummary& v1 = summaries[0];
  ASSERT_TRUE(v1.p50_ms && v1.p95_ms && v1.p99_ms);
  EXPECT_NEAR(*v1.p50_ms, 1.5, 1e-9);   // rank 100: half into the second bucket
  EXPECT_NEAR(*v1.p95_ms, 3.6, 1e-9);   // rank 190: 40 of 50 into the third
  EXPECT_NEAR(*v1.p99_ms, 3.92, 1e-9);  // rank 198
  // 1.1.0: only dev-a's buckets (10 under 1 ms) count.
  const VersionSummary& v2 = summaries[1];
  ASSERT_TRUE(v2.p50_ms && v2.p99_ms);
  EXPECT_NEAR(*v2.p50_ms, 0.5, 1e-9);
  EXPECT_NEAR(*v2.p99_ms, 0.99, 1e-9);

  // Without any request there is no percentile.
  auto idle =
      Summarize("visual-inspection", {Report("dev-a", "1.0.0", 0, 60000, 0, 0, {0, 0, 0, 0})});
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_FALSE(idle[0].p50_ms);
  EXPECT_FALSE(idle[0].p99_ms);
  EXPECT_EQ(idle[0].ToJson()["latency_ms"]["p99"], nullptr);
  EXPECT_EQ(idle[0].ToJson()["error_rate"], 0.0);
}

TEST(Summarize, DriftIsEachDevicesLatestJudgedIntervalAndTheWorstLevelOfTheWindow) {
  auto summaries = Summarize("visual-inspection", Fleet());
  ASSERT_EQ(summaries.size(), 2u);
  const auto& drift = summaries[0].drift;
  ASSERT_EQ(drift.size(), 2u);
  // dev-a's latest judged interval: channel0 0.2 (watch), predictions 0.05 (ok); dev-b's:
  // channel0 0.4 (alert), predictions 0.1 (watch).
  const FeatureSummary& channel0 = drift[0];
  EXPECT_EQ(channel0.feature, "image/channel0");
  EXPECT_EQ(channel0.devices, 2u);
  EXPECT_NEAR(channel0.psi_mean, 0.3, 1e-12);
  EXPECT_DOUBLE_EQ(channel0.psi_max, 0.4);
  EXPECT_EQ(channel0.level, DriftLevel::kAlert);
  EXPECT_EQ(channel0.worst_level, DriftLevel::kAlert);
  const FeatureSummary& predictions = drift[1];
  EXPECT_EQ(predictions.feature, "predictions");
  EXPECT_EQ(predictions.devices, 2u);
  EXPECT_NEAR(predictions.psi_mean, 0.075, 1e-12);
  EXPECT_DOUBLE_EQ(predictions.psi_max, 0.1);
  EXPECT_EQ(predictions.level, DriftLevel::kWatch);        // of the latest intervals
  EXPECT_EQ(predictions.worst_level, DriftLevel::kAlert);  // dev-a's first interval

  // The JSON the API answers carries the same.
  json j = summaries[0].ToJson();
  EXPECT_EQ(j["requests"], 200);
  EXPECT_EQ(j["errors"], 5);
  EXPECT_DOUBLE_EQ(j["error_rate"].get<double>(), 5.0 / 200.0);
  EXPECT_EQ(j["drift"][0]["level"], "alert");
  EXPECT_EQ(j["drift"][1]["level"], "watch");
  EXPECT_EQ(j["drift"][1]["worst_level"], "alert");
  EXPECT_EQ(j["predictions"]["kind"], "class");
  EXPECT_EQ(j["predictions"]["counts"], json({185, 15}));
  EXPECT_NE(j["latency_ms"]["p99"], nullptr);
}

// A record's payload comes from a device: a field of the wrong type is a refusal, not an
// exception (the hub reads payloads with IntervalReport::FromJson).
TEST(IntervalReportFromJson, RefusesASchemaOfTheWrongType) {
  json j = Report("dev-a", "1.0.0", 0, 60000, 1, 0, {1, 0, 0, 0}).ToJson();
  ASSERT_TRUE(IntervalReport::FromJson(j));
  j["schema"] = 5;
  EXPECT_FALSE(IntervalReport::FromJson(j));
  j["schema"] = nullptr;
  EXPECT_FALSE(IntervalReport::FromJson(j));
}

TEST(IntervalReportFromJson, RefusesNumbersThatDoNotFitTheirField) {
  json good = Report("dev-a", "1.0.0", 0, 60000, 1, 0, {1, 0, 0, 0}).ToJson();
  ASSERT_TRUE(IntervalReport::FromJson(good));
  for (const char* field : {"requests", "errors", "observed", "start_ms"}) {
    for (json bad_value : {json(1e127), json(-1.5), json(1e19)}) {
      json bad = good;
      bad[field] = bad_value;
      EXPECT_FALSE(IntervalReport::FromJson(bad)) << field << " = " << bad_value;
    }
  }
  json bad = good;
  bad["latency"]["counts"][0] = -1;
  EXPECT_FALSE(IntervalReport::FromJson(bad));
}

// Nor does a baseline (from a package) throw for a field of the wrong type: a baseline that does
// not parse only turns drift monitoring off (agent/model_repository.cpp).
TEST(BaselineFromJson, RefusesFieldsOfTheWrongType) {
  EXPECT_FALSE(Baseline::FromJson(json{{"schema", 1}}));
  json doc = {{"schema", "airlock.baseline.v1"},
              {"features", json::array()},
              {"predictions", {{"tensor", "y"}, {"kind", 3}}}};
  EXPECT_FALSE(Baseline::FromJson(doc));
  doc["predictions"]["kind"] = "class";
  doc["predictions"]["labels"] = {"a", "b"};
  doc["predictions"]["counts"] = {1, 1};
  EXPECT_TRUE(Baseline::FromJson(doc));
}

// ---- The batch's wire format ----

TelemetryBatch SampleBatch() {
  TelemetryBatch b;
  b.source = "dev-0123456789abcdef";
  b.records = {
      OutboxRecord{.id = "dev-0123456789abcdef/7",
                   .priority = Priority::kAlert,
                   .kind = "alert",
                   .created_ms = 1764576000000,
                   .payload = R"({"feature":"image/channel0"})"},
      OutboxRecord{.id = "dev-0123456789abcdef/8",
                   .priority = Priority::kMetrics,
                   .kind = "metrics",
                   .created_ms = 1764576060000,
                   .payload = "{\"quoted\": \"a \\\"b\\\" \\u00e9\"}"},
      OutboxRecord{.id = "dev-0123456789abcdef/9",
                   .priority = Priority::kCapture,
                   .kind = "capture",
                   .created_ms = 0,
                   .payload = std::string("raw\0bytes\n", 10)},
  };
  b.outbox = OutboxCounters{
      .records = 3, .bytes = 4096, .dropped = {1, 2, 3}, .dropped_bytes = 777, .disk_full = 4};
  return b;
}

void ExpectSame(const TelemetryBatch& a, const TelemetryBatch& b) {
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.site, b.site);
  EXPECT_EQ(a.records, b.records);
  EXPECT_EQ(a.outbox.records, b.outbox.records);
  EXPECT_EQ(a.outbox.bytes, b.outbox.bytes);
  EXPECT_EQ(a.outbox.dropped, b.outbox.dropped);
  EXPECT_EQ(a.outbox.dropped_bytes, b.outbox.dropped_bytes);
  EXPECT_EQ(a.outbox.disk_full, b.outbox.disk_full);
}

TEST(TelemetryBatch, RoundTripsEveryField) {
  TelemetryBatch b = SampleBatch();
  auto back = TelemetryBatch::Parse(b.Serialize());
  ASSERT_TRUE(back) << back.error().ToString();
  ExpectSame(*back, b);
  EXPECT_EQ(back->site, "");
  EXPECT_EQ(json::parse(b.Serialize()).count("site"), 0u);  // a device's batch names no site

  b.site = "plant-1";
  back = TelemetryBatch::Parse(b.Serialize());
  ASSERT_TRUE(back) << back.error().ToString();
  ExpectSame(*back, b);

  // The counters read as the outbox's dropped names them.
  json j = json::parse(b.Serialize());
  EXPECT_EQ(j["schema"], "airlock.telemetry-batch.v1");
  EXPECT_EQ(j["outbox"]["dropped"]["capture"], 1);
  EXPECT_EQ(j["outbox"]["dropped"]["metrics"], 2);
  EXPECT_EQ(j["outbox"]["dropped"]["alert"], 3);

  // An empty batch, and a batch without counters (they read as zero).
  TelemetryBatch empty;
  empty.source = "gw";
  auto e = TelemetryBatch::Parse(empty.Serialize());
  ASSERT_TRUE(e) << e.error().ToString();
  EXPECT_TRUE(e->records.empty());
  json no_counters = json::parse(empty.Serialize());
  no_counters.erase("outbox");
  e = TelemetryBatch::Parse(no_counters.dump());
  ASSERT_TRUE(e) << e.error().ToString();
  EXPECT_EQ(e->outbox.records, 0u);
}

TEST(TelemetryBatch, RefusesWhatIsNotAValidBatch) {
  json good = json::parse(SampleBatch().Serialize());
  auto refused = [](const json& j) {
    auto r = TelemetryBatch::Parse(j.dump());
    return r ? std::string() : r.error().ToString();
  };
  json bad = good;
  bad["schema"] = "airlock.telemetry-batch.v2";
  EXPECT_NE(refused(bad).find("schema"), std::string::npos) << refused(bad);
  bad.erase("schema");
  EXPECT_NE(refused(bad), "");
  // A schema of the wrong type is refused too, not thrown.
  bad["schema"] = 1;
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["records"][1]["priority"] = "urgent";
  EXPECT_NE(refused(bad).find("unknown priority"), std::string::npos) << refused(bad);
  bad = good;
  bad["source"] = "";
  EXPECT_NE(refused(bad).find("source"), std::string::npos) << refused(bad);
  bad.erase("source");
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["records"][0]["id"] = "";
  EXPECT_NE(refused(bad), "");
  bad["records"][0]["id"] = std::string(257, 'x');
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["records"][0].erase("payload");
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["records"][0]["created_ms"] = "yesterday";
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["records"] = "none";
  EXPECT_NE(refused(bad), "");
  bad = good;
  bad["outbox"]["records"] = "many";
  EXPECT_NE(refused(bad), "");
  EXPECT_NE(refused(json::array()), "");
  EXPECT_FALSE(TelemetryBatch::Parse("{not json"));
  EXPECT_FALSE(TelemetryBatch::Parse(""));

  // Larger than kMaxBatchBytes: refused before it is parsed, though it is valid JSON.
  TelemetryBatch big = SampleBatch();
  big.records[1].payload = std::string(kMaxBatchBytes, 'x');
  std::string text = big.Serialize();
  ASSERT_GT(text.size(), kMaxBatchBytes);
  EXPECT_FALSE(TelemetryBatch::Parse(text));
  // Just under the limit is fine.
  big.records[1].payload.resize(kMaxBatchBytes - 2048);
  text = big.Serialize();
  ASSERT_LE(text.size(), kMaxBatchBytes);
  EXPECT_TRUE(TelemetryBatch::Parse(text));

  // The good one still parses.
  EXPECT_TRUE(TelemetryBatch::Parse(good.dump()));
}

TEST(TelemetryAck, RoundTripsAndRefusesMalformedOnes) {
  std::vector<std::string> ids = {"dev-0123456789abcdef/7", "dev-0123456789abcdef/8"};
  auto back = ParseAck(SerializeAck(ids));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, ids);
  auto none = ParseAck(SerializeAck({}));
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(ParseAck(R"({"ids": "dev-1/1"})"));
  EXPECT_FALSE(ParseAck(R"({"ids": [1, 2]})"));
  EXPECT_FALSE(ParseAck(R"({})"));
  EXPECT_FALSE(ParseAck("not json"));
}

}  // namespace
}  // namespace airlock::monitor

namespace airlock::monitor {
namespace {

TEST(Summarize, OrdersVersionsNaturally) {
  std::vector<IntervalReport> reports;
  for (const char* v : {"1.10.0", "1.9.0", "2.0.0-rc1", "1.9.1"}) {
    IntervalReport r;
    r.device = "dev-a";
    r.model = "m";
    r.version = v;
    r.end_ms = 1000;
    reports.push_back(r);
  }
  std::vector<std::string> order;
  for (const auto& s : Summarize("m", reports)) {
    order.push_back(s.version);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"1.9.0", "1.9.1", "1.10.0", "2.0.0-rc1"}));
}

// Numbers that do not fit are refused, not converted: nlohmann's get<std::uint64_t>() turns
// 1e127 into undefined behaviour and -1 into 2^64 - 1 (fuzz_telemetry found the first, in an
// outbox count; fuzz/corpus/fuzz_telemetry/regression-outbox-float-count).
TEST(TelemetryBatch, RefusesNumbersThatDoNotFitTheirField) {
  json good = json::parse(SampleBatch().Serialize());
  for (json bad_value : {json(1e127), json(-1), json(0.5), json("7")}) {
    json bad = good;
    bad["outbox"]["records"] = bad_value;
    EXPECT_FALSE(TelemetryBatch::Parse(bad.dump())) << bad_value;
    bad = good;
    bad["outbox"]["dropped"]["alert"] = bad_value;
    EXPECT_FALSE(TelemetryBatch::Parse(bad.dump())) << bad_value;
  }
  json bad = good;
  bad["records"][0]["created_ms"] = 1e30;
  EXPECT_FALSE(TelemetryBatch::Parse(bad.dump()));
  bad = good;
  bad["outbox"]["dropped"] = 3;
  EXPECT_FALSE(TelemetryBatch::Parse(bad.dump()));
}

}  // namespace
}  // namespace airlock::monitor
