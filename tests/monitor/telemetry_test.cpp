#include "monitor/version_monitor.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "support/test_support.hpp"

namespace airlock::monitor {
namespace {

using nlohmann::json;

runtime::Tensor Fp32(std::string name, std::vector<std::int64_t> shape,
                     const std::vector<float>& values) {
  runtime::Tensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.data.resize(values.size() * sizeof(float));
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

// A baseline feature over ten equal bins of [-5, 5] holding a standard normal's shares.
BaselineFeature NormalFeature(std::string name, std::string tensor, std::optional<std::size_t> axis,
                              std::int64_t index) {
  BaselineFeature f;
  f.name = std::move(name);
  f.tensor = std::move(tensor);
  f.axis = axis;
  f.index = index;
  std::vector<double> edges;
  for (int i = 0; i <= 10; ++i) {
    edges.push_back(-5.0 + i);
  }
  f.histogram = Histogram::Over(edges).value();
  std::mt19937 rng(1);
  std::normal_distribution<double> normal(0, 1);
  for (int i = 0; i < 100000; ++i) {
    f.histogram.Add(normal(rng));
  }
  return f;
}


// A [1, 2, 8, 8] image whose channel 0 is drawn from normal(shift0, 1) and channel 1 from
// normal(shift1, 1).
runtime::Tensor Image(std::mt19937& rng, double shift0, double shift1) {
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(2 * 64);
  for (int i = 0; i < 64; ++i) {
    v[i] = static_cast<float>(shift0) + normal(rng);
    v[64 + i] = static_cast<float>(shift1) + normal(rng);
  }
  return Fp32("image", {1, 2, 8, 8}, v);
}

TEST(Baseline, ParsesTheExamplesAndRefusesMalformedOnes) {
  for (const char* example : {"visual-inspection", "vibration-anomaly"}) {
    json doc = json::parse(
        testing::ReadAll(testing::SourceDir() / "examples" / example / "baseline.json"));
    auto b = Baseline::FromJson(doc);
    ASSERT_TRUE(b) << example << ": " << b.error().ToString();
    EXPECT_FALSE(b->features.empty());
    ASSERT_TRUE(b->predictions);
    EXPECT_TRUE(b->predictions->has_baseline);
  }
  auto vi = Baseline::FromJson(json::parse(testing::ReadAll(
                                   testing::SourceDir() / "examples/visual-inspection/baseline.json")))
                .value();
  EXPECT_EQ(vi.features[1].axis, std::optional<std::size_t>(1));
  EXPECT_EQ(vi.features[1].index, 1);
  EXPECT_TRUE(vi.predictions->classes);

  EXPECT_FALSE(Baseline::FromJson(json{{"schema", "other"}}));
  json bad_edges = {{"schema", "airlock.baseline.v1"},
                    {"features", {{{"name", "x"}, {"tensor", "x"}, {"edges", {1, 0}},
                                   {"counts", {1}}}}}};
  auto refused = Baseline::FromJson(bad_edges);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("feature x"), std::string::npos);
  json bad_kind = {{"schema", "airlock.baseline.v1"},
                   {"features", json::array()},
                   {"predictions", {{"tensor", "y"}, {"kind", "verdict"}}}};
  EXPECT_FALSE(Baseline::FromJson(bad_kind));

  json own = {{"schema", "airlock.baseline.v1"},
              {"features", json::array()},
              {"thresholds", {{"psi_watch", 0.2}, {"psi_alert", 0.5}}}};
  auto with_thresholds = Baseline::FromJson(own);
  ASSERT_TRUE(with_thresholds);
  EXPECT_EQ(with_thresholds->thresholds.psi_watch, 0.2);
  EXPECT_EQ(with_thresholds->thresholds.psi_alert, 0.5);
  EXPECT_EQ(with_thresholds->thresholds.ks_p_value, 0.01);
  own["thresholds"]["psi_alert"] = 0.1;
  EXPECT_FALSE(Baseline::FromJson(own));
}

TEST(VersionMonitor, ReadsEachChannelOfAnImageIntoItsOwnFeature) {
  std::vector<BaselineFeature> features = {NormalFeature("c0", "image", 1, 0),
                                           NormalFeature("c1", "image", 1, 1)};
  VersionMonitor m("m", "1", features, std::nullopt, 0, MonitorOptions{.sample_per_request = 1000,
                                                                         .ks_points = 200,
                                                                         .min_requests = 1,
                                                                         .thresholds = {}});
  std::vector<float> v(2 * 4);
  std::fill(v.begin(), v.begin() + 4, -4.5f);  // channel 0: bin 0
  std::fill(v.begin() + 4, v.end(), 4.5f);     // channel 1: bin 9
  m.ObserveInputs({Fp32("image", {1, 2, 2, 2}, v)});
  IntervalReport r = m.Cut(1000);
  ASSERT_EQ(r.drift.size(), 2u);
  EXPECT_EQ(r.drift[0].values, 4u);
  EXPECT_EQ(r.drift[1].values, 4u);
  // Everything in one extreme bin is as far from the baseline as it gets.
  EXPECT_EQ(r.drift[0].level, DriftLevel::kAlert);
  EXPECT_EQ(r.level, DriftLevel::kAlert);
  EXPECT_EQ(r.start_ms, 0);
  EXPECT_EQ(r.end_ms, 1000);
}

TEST(VersionMonitor, ReadsAtMostTheSampleSizeOfALargeTensor) {
  VersionMonitor m("m", "1", {NormalFeature("all", "x", std::nullopt, 0)}, std::nullopt, 0,
                   MonitorOptions{.sample_per_request = 16, .ks_points = 8, .min_requests = 1,
                                  .thresholds = {}});
  m.ObserveInputs({Fp32("x", {1000}, std::vector<float>(1000, 0.5f))});
  m.ObserveInputs({Fp32("other", {3}, {1, 2, 3})});  // not a feature: only counted as observed
  IntervalReport r = m.Cut(5);
  EXPECT_EQ(r.drift[0].values, 16u);
  EXPECT_EQ(r.observed, 2u);
}

TEST(VersionMonitor, UnshiftedInputsStayOkAndShiftedOnesAlertOnce) {
  std::vector<BaselineFeature> features = {NormalFeature("c0", "image", 1, 0),
                                           NormalFeature("c1", "image", 1, 1)};
  VersionMonitor m("m", "1", features, std::nullopt, 0);
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    m.ObserveInputs({Image(rng, 0, 0)});
  }
  IntervalReport calm = m.Cut(60000);
  EXPECT_EQ(calm.level, DriftLevel::kOk) << calm.ToJson().dump();
  for (const auto& d : calm.drift) {
    ASSERT_TRUE(d.psi);
    EXPECT_LT(*d.psi, 0.1) << d.feature;
    ASSERT_TRUE(d.ks);
  }
  EXPECT_TRUE(calm.new_alerts.empty());

  // Channel 1 moves by 1.5 standard deviations; channel 0 does not.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 200; ++i) {
      m.ObserveInputs({Image(rng, 0, 1.5)});
    }
    IntervalReport shifted = m.Cut(120000 + round * 60000);
    EXPECT_EQ(shifted.level, DriftLevel::kAlert);
    EXPECT_EQ(shifted.drift[0].level, DriftLevel::kOk);
    EXPECT_EQ(shifted.drift[1].level, DriftLevel::kAlert);
    EXPECT_GT(*shifted.drift[1].psi, 0.25);
    // An alert is new only in the interval that reaches it.
    EXPECT_EQ(shifted.new_alerts, round == 0 ? std::vector<std::string>{"c1"}
                                             : std::vector<std::string>{});
  }
}

// Serves n requests through m as the agent does: observed when ShouldObserve says so, each taking
// `latency`. Returns how many were observed.
int Serve(VersionMonitor& m, std::mt19937& rng, int n, std::chrono::nanoseconds latency,
          double shift = 0) {
  int observed = 0;
  for (int i = 0; i < n; ++i) {
    if (m.ShouldObserve()) {
      m.ObserveInputs({Image(rng, shift, shift)});
      ++observed;
    }
    m.Finish(true, latency);
  }
  return observed;
}

TEST(VersionMonitor, ObservesEveryRequestWhileThatIsWithinItsBudget) {
  // Requests that take a second each, but no more of the wall time (times the hardware threads)
  // than this loop takes, of which observing is a part: within a budget of 100 %.
  VersionMonitor m("m", "1", {NormalFeature("c0", "image", 1, 0)}, std::nullopt, 0,
                   MonitorOptions{.sample_per_request = 256, .ks_points = 200, .min_requests = 10,
                                  .thresholds = {}, .budget = 1.0});
  std::mt19937 rng(5);
  constexpr int kRequests = 3 * static_cast<int>(VersionMonitor::kWindow);
  EXPECT_EQ(Serve(m, rng, kRequests, std::chrono::seconds(1)), kRequests);
  EXPECT_EQ(m.stride(), 1u);
  IntervalReport r = m.Cut(60000);
  EXPECT_EQ(r.observed, r.counts.requests);
  EXPECT_EQ(m.stride(), 1u);
}

TEST(VersionMonitor, ObservesEveryKthRequestWhenObservingAllWouldCostMoreThanItsBudget) {
  VersionMonitor m("m", "1", {NormalFeature("c0", "image", 1, 0)}, std::nullopt, 0);
  std::mt19937 rng(5);
  // Requests that take a nanosecond: observing even one of a window is over 1 % of that.
  constexpr auto kWindow = static_cast<int>(VersionMonitor::kWindow);
  EXPECT_EQ(Serve(m, rng, kWindow, std::chrono::nanoseconds(1)), kWindow);  // the first window
  EXPECT_EQ(m.stride(), VersionMonitor::kWindow);  // as few as it can: one a window
  EXPECT_EQ(Serve(m, rng, 3 * kWindow, std::chrono::nanoseconds(1)), 3);
  // The interval must still observe enough to judge drift: at this rate, the next one observes
  // at least 4 * min_requests (10) of its 4096 requests.
  IntervalReport r = m.Cut(60000);
  EXPECT_EQ(r.counts.requests, 4u * VersionMonitor::kWindow);
  EXPECT_EQ(r.observed, VersionMonitor::kWindow + 3);
  EXPECT_EQ(m.stride(), 4u * VersionMonitor::kWindow / 40);
  int observed = Serve(m, rng, 4 * kWindow, std::chrono::nanoseconds(1), 3);
  EXPECT_GE(observed, 40);
  IntervalReport shifted = m.Cut(120000);
  EXPECT_EQ(shifted.observed, static_cast<std::uint64_t>(observed));
  EXPECT_EQ(shifted.counts.requests, 4u * VersionMonitor::kWindow);
  EXPECT_EQ(shifted.level, DriftLevel::kAlert);  // a sample of the requests still shows drift
}

TEST(VersionMonitor, JudgesNothingWithTooFewRequests) {
  VersionMonitor m("m", "1", {NormalFeature("c0", "image", 1, 0)}, std::nullopt, 0);
  std::mt19937 rng(3);
  for (int i = 0; i < 5; ++i) {
    m.ObserveInputs({Image(rng, 3, 3)});
  }
  IntervalReport r = m.Cut(10);
  EXPECT_FALSE(r.drift[0].psi);
  EXPECT_EQ(r.level, DriftLevel::kOk);
  EXPECT_GT(r.drift[0].values, 0u);
}

TEST(VersionMonitor, CountsClassPredictionsAndJudgesThemAgainstTheBaseline) {
  PredictionSpec classes{.tensor = "probabilities",
                         .classes = true,
                         .labels = {"ok", "scratched"},
                         .histogram = {{}, {500, 500}},
                         .has_baseline = true};
  VersionMonitor m("m", "1", {}, classes, 0, MonitorOptions{.sample_per_request = 256,
                                                             .ks_points = 200,
                                                             .min_requests = 1,
                                                             .thresholds = {}});
  for (int i = 0; i < 20; ++i) {
    m.ObserveInputs({});
    // A batch of two rows: both "scratched".
    m.ObserveOutputs({Fp32("probabilities", {2, 2}, {0.1f, 0.9f, 0.2f, 0.8f})});
  }
  IntervalReport r = m.Cut(1);
  ASSERT_TRUE(r.predictions);
  EXPECT_EQ(r.predictions->histogram.counts, (std::vector<std::uint64_t>{0, 40}));
  ASSERT_EQ(r.drift.size(), 1u);
  EXPECT_EQ(r.drift[0].feature, "predictions");
  EXPECT_EQ(r.drift[0].level, DriftLevel::kAlert);
  EXPECT_FALSE(r.drift[0].ks);  // classes have no order

  // Without the training data's counts the distribution is reported, not judged.
  classes.has_baseline = false;
  VersionMonitor plain("m", "1", {}, classes, 0);
  plain.ObserveOutputs({Fp32("probabilities", {1, 2}, {0.7f, 0.3f})});
  IntervalReport p = plain.Cut(1);
  EXPECT_EQ(p.predictions->histogram.counts, (std::vector<std::uint64_t>{1, 0}));
  EXPECT_TRUE(p.drift.empty());
}

TEST(VersionMonitor, HistogramsScorePredictions) {
  PredictionSpec score{.tensor = "score",
                       .classes = false,
                       .labels = {},
                       .histogram = {{0, 1, 2}, {90, 10}},
                       .has_baseline = true};
  VersionMonitor m("m", "1", {}, score, 0, MonitorOptions{.sample_per_request = 256,
                                                           .ks_points = 200,
                                                           .min_requests = 1,
                                                           .thresholds = {}});
  m.ObserveInputs({});
  m.ObserveOutputs({Fp32("score", {4}, {0.5f, 0.5f, 1.5f, 9.0f})});
  IntervalReport r = m.Cut(1);
  EXPECT_EQ(r.predictions->histogram.counts, (std::vector<std::uint64_t>{2, 2}));
  EXPECT_EQ(r.drift[0].feature, "predictions");
  EXPECT_TRUE(r.drift[0].psi);
}

TEST(IntervalReport, RoundTripsThroughJsonAndRefusesMalformedRecords) {
  VersionMonitor m("visual-inspection", "1.0.0", {NormalFeature("c0", "image", 1, 0)},
                   PredictionSpec{.tensor = "p",
                                  .classes = true,
                                  .labels = {"a", "b"},
                                  .histogram = {{}, {1, 1}},
                                  .has_baseline = true},
                   100, MonitorOptions{.sample_per_request = 256,
                                       .ks_points = 200,
                                       .min_requests = 1,
                                       .thresholds = {}});
  std::mt19937 rng(5);
  m.ObserveInputs({Image(rng, 0, 0)});
  m.ObserveOutputs({Fp32("p", {1, 2}, {0.4f, 0.6f})});
  m.Finish(true, std::chrono::microseconds(80));
  m.Finish(true, std::chrono::microseconds(3000));
  m.Finish(false, std::chrono::seconds(9));
  IntervalReport r = m.Cut(60100);
  EXPECT_EQ(r.counts.requests, 3u);
  EXPECT_EQ(r.counts.errors, 1u);
  EXPECT_EQ(r.counts.latency_counts[0], 1u);   // <= 100 µs
  EXPECT_EQ(r.counts.latency_counts[5], 1u);   // <= 5000 µs
  EXPECT_EQ(r.counts.latency_counts.back(), 1u);  // above every bound
  EXPECT_EQ(r.counts.latency_sum_us, 9003080u);
  EXPECT_EQ(m.Cut(60200).counts.requests, 0u);  // a new interval starts empty
  r.device = "cam-1";
  json j = r.ToJson();
  EXPECT_EQ(j["schema"], "airlock.telemetry.v1");
  auto back = IntervalReport::FromJson(j);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->ToJson(), j);

  json broken = j;
  broken["latency"]["counts"] = {1};
  EXPECT_FALSE(IntervalReport::FromJson(broken));
  broken = j;
  broken.erase("model");
  EXPECT_FALSE(IntervalReport::FromJson(broken));
  EXPECT_FALSE(IntervalReport::FromJson(json::array()));
}

TEST(LatencyPercentile, InterpolatesWithinTheBucket) {
  std::vector<std::uint64_t> bounds = {100, 1000};
  EXPECT_FALSE(LatencyPercentileUs(bounds, {0, 0, 0}, 0.5));
  // 10 under 100 µs, 10 in (100, 1000].
  EXPECT_DOUBLE_EQ(*LatencyPercentileUs(bounds, {10, 10, 0}, 0.5), 100.0);
  EXPECT_DOUBLE_EQ(*LatencyPercentileUs(bounds, {10, 10, 0}, 0.75), 550.0);
  EXPECT_DOUBLE_EQ(*LatencyPercentileUs(bounds, {10, 10, 0}, 0.25), 50.0);
  // The open bucket reports its lower bound.
  EXPECT_DOUBLE_EQ(*LatencyPercentileUs(bounds, {0, 0, 5}, 0.99), 1000.0);
}

}  // namespace
}  // namespace airlock::monitor
