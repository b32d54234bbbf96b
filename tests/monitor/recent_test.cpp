// RecentTelemetry: what the gateway keeps of its devices' reports for the site's own view. It
// keeps metrics and alerts, passes over captures and malformed payloads, filters by model,
// device and time, and forgets by age and by count.

#include "monitor/recent.hpp"

#include <gtest/gtest.h>

#include <string>

#include "support/telemetry_records.hpp"

namespace airlock::monitor {
namespace {

using airlock::testing::AlertRecord;
using airlock::testing::Metrics;
using airlock::testing::MetricsRecord;

constexpr std::int64_t kT = 1'800'000'000'000;  // ms
constexpr char kA[] = "dev-0000000000000a0a";
constexpr char kB[] = "dev-0000000000000b0b";

TEST(RecentTelemetryTest, KeepsReportsAndAlertsAndFiltersThem) {
  RecentTelemetry recent(std::chrono::hours(24), 100);
  OutboxRecord capture{.id = "c/1",
                       .priority = Priority::kCapture,
                       .kind = "capture",
                       .created_ms = kT,
                       .payload = "{}"};
  OutboxRecord broken = MetricsRecord("a/9", Metrics().End(kT));
  broken.payload = std::string(10000, '[');  // nested past the parser's limit: passed over
  recent.Add({MetricsRecord("a/1", Metrics().Device(kA).End(kT - 60000).Requests(5)),
              MetricsRecord("b/1", Metrics().Device(kB).End(kT).Requests(7)),
              MetricsRecord("a/2", Metrics().Device(kA).Model("vibration-anomaly").End(kT)),
              AlertRecord("a/3", kA, "1.0.0", "image/channel0", 0.9, kT - 30000),
              AlertRecord("b/2", kB, "1.0.0", "image/channel1", std::nullopt, kT), capture, broken},
             kT);

  EXPECT_EQ(recent.Models(), (std::set<std::string>{"visual-inspection", "vibration-anomaly"}));
  auto all = recent.Reports("visual-inspection", "", 0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].counts.requests, 5u);
  EXPECT_EQ(recent.Reports("visual-inspection", kB, 0).size(), 1u);
  EXPECT_EQ(recent.Reports("visual-inspection", "", kT - 1000).size(), 1u);

  auto alerts = recent.Alerts("visual-inspection", "", 0);
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_EQ(alerts[0].id, "b/2");  // newest first
  EXPECT_FALSE(alerts[0].psi);
  EXPECT_EQ(alerts[1].feature, "image/channel0");
  EXPECT_EQ(alerts[1].at_ms, kT - 30000);
  EXPECT_EQ(alerts[1].ToJson()["psi"], 0.9);
  EXPECT_EQ(recent.Alerts("visual-inspection", kA, 0).size(), 1u);
}

TEST(RecentTelemetryTest, ForgetsTheOldestByAgeAndByCount) {
  RecentTelemetry recent(std::chrono::hours(1), 3);
  for (int i = 0; i < 5; ++i) {
    recent.Add({MetricsRecord("a/" + std::to_string(i), Metrics().End(kT + i).Requests(i))}, kT);
  }
  auto kept = recent.Reports("visual-inspection", "", 0);
  ASSERT_EQ(kept.size(), 3u);  // the count: the last three
  EXPECT_EQ(kept[0].counts.requests, 2u);
  // Two hours on, everything is past the age.
  recent.Add({}, kT + 2 * 3600 * 1000);
  EXPECT_TRUE(recent.Reports("visual-inspection", "", 0).empty());
  EXPECT_TRUE(recent.Models().empty());
}

}  // namespace
}  // namespace airlock::monitor
