#include "core/prometheus.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "support/promtool.hpp"

namespace airlock::prometheus {
namespace {

TEST(PrometheusTest, WritesHelpAndTypeOnceAndEverySampleOfAFamilyTogether) {
  MetricsText m;
  m.Family("airlock_jobs_total", MetricType::kCounter, "Jobs done");
  m.Sample({{"kind", "a"}}, 1u);
  m.Family("airlock_queue_depth", MetricType::kGauge, "Jobs waiting");
  m.Sample(4);
  // A hook continues a family started before: its samples join the first ones.
  m.Family("airlock_jobs_total", MetricType::kCounter, "ignored: the first help stands");
  m.Sample({{"kind", "b"}}, std::uint64_t{2});
  EXPECT_EQ(m.Text(),
            "# HELP airlock_jobs_total Jobs done\n"
            "# TYPE airlock_jobs_total counter\n"
            "airlock_jobs_total{kind=\"a\"} 1\n"
            "airlock_jobs_total{kind=\"b\"} 2\n"
            "# HELP airlock_queue_depth Jobs waiting\n"
            "# TYPE airlock_queue_depth gauge\n"
            "airlock_queue_depth 4\n");
  EXPECT_TRUE(m.Contains("airlock_queue_depth"));
  EXPECT_FALSE(m.Contains("airlock_queue"));
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(m.Text()));
}

TEST(PrometheusTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue(R"(a\b"c)"
                             "\n"
                             "d"),
            R"(a\\b\"c\nd)");
  MetricsText m;
  m.Family("airlock_things", MetricType::kGauge, "Things, per \"name\" \\ path\nsecond line");
  m.Sample({{"name", "line \"3\"\nC:\\cam"}, {"site", "é"}}, 1);
  EXPECT_EQ(m.Text(),
            "# HELP airlock_things Things, per \"name\" \\\\ path\\nsecond line\n"
            "# TYPE airlock_things gauge\n"
            "airlock_things{name=\"line \\\"3\\\"\\nC:\\\\cam\",site=\"é\"} 1\n");
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(m.Text()));
}

TEST(PrometheusTest, FormatsIntegersFloatsAndSpecialValues) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(5), "5");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(0.0001), "0.0001");
  EXPECT_EQ(FormatValue(0.00025), "0.00025");
  EXPECT_EQ(FormatValue(1.5), "1.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(FormatValue(third)), third);  // the shortest form that reads back exactly

  MetricsText m;
  m.Family("airlock_big_total", MetricType::kCounter, "A counter near its limit");
  m.Sample(std::numeric_limits<std::uint64_t>::max());
  m.Family("airlock_offset_seconds", MetricType::kGauge, "Signed and fractional");
  m.Sample({{"clock", "a"}}, std::int64_t{-7});
  m.Sample({{"clock", "b"}}, 2.5);
  EXPECT_NE(m.Text().find("airlock_big_total 18446744073709551615\n"), std::string::npos);
  EXPECT_NE(m.Text().find("airlock_offset_seconds{clock=\"a\"} -7\n"), std::string::npos);
  EXPECT_NE(m.Text().find("airlock_offset_seconds{clock=\"b\"} 2.5\n"), std::string::npos);
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(m.Text()));
}

TEST(PrometheusTest, WritesCumulativeHistogramBuckets) {
  const std::array<double, 3> bounds = {0.001, 0.01, 0.1};
  const std::array<std::uint64_t, 4> counts = {2, 0, 3, 1};  // the last: above 0.1 s
  MetricsText m;
  m.Family("airlock_request_duration_seconds", MetricType::kHistogram, "Request latency");
  m.Histogram({{"route", "infer"}}, {.upper_bounds = bounds, .counts = counts, .sum = 0.75});
  EXPECT_EQ(m.Text(),
            "# HELP airlock_request_duration_seconds Request latency\n"
            "# TYPE airlock_request_duration_seconds histogram\n"
            "airlock_request_duration_seconds_bucket{route=\"infer\",le=\"0.001\"} 2\n"
            "airlock_request_duration_seconds_bucket{route=\"infer\",le=\"0.01\"} 2\n"
            "airlock_request_duration_seconds_bucket{route=\"infer\",le=\"0.1\"} 5\n"
            "airlock_request_duration_seconds_bucket{route=\"infer\",le=\"+Inf\"} 6\n"
            "airlock_request_duration_seconds_sum{route=\"infer\"} 0.75\n"
            "airlock_request_duration_seconds_count{route=\"infer\"} 6\n");
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(m.Text()));
}

TEST(PrometheusTest, NamesFollowTheFormat) {
  EXPECT_TRUE(IsMetricName("airlock_http_requests_total"));
  EXPECT_TRUE(IsMetricName("job:rate5m"));
  EXPECT_FALSE(IsMetricName("1abc"));
  EXPECT_FALSE(IsMetricName("a-b"));
  EXPECT_FALSE(IsMetricName(""));
  EXPECT_TRUE(IsLabelName("gateway"));
  EXPECT_FALSE(IsLabelName("a:b"));
  EXPECT_FALSE(IsLabelName("0a"));
}

// An empty exposition is valid (a daemon with nothing to say yet).
TEST(PrometheusTest, AnEmptyExpositionIsEmpty) {
  MetricsText m;
  EXPECT_EQ(m.Text(), "");
  m.Family("airlock_nothing_yet", MetricType::kGauge, "A family without samples");
  EXPECT_EQ(m.Text(),
            "# HELP airlock_nothing_yet A family without samples\n"
            "# TYPE airlock_nothing_yet gauge\n");
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(m.Text()));
}

}  // namespace
}  // namespace airlock::prometheus
