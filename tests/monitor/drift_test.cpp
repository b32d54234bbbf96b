#include "monitor/drift.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace airlock::monitor {
namespace {

// Ten equal bins over [0, 1].
Histogram Unit() {
  std::vector<double> edges;
  for (int i = 0; i <= 10; ++i) {
    edges.push_back(i / 10.0);
  }
  return Histogram::Over(edges).value();
}

TEST(Histogram, CountsValuesInTheirBinsAndOutliersAtTheEnds) {
  Histogram h = Unit();
  for (double v : {0.0, 0.05, 0.1, 0.95, 1.0, -3.0, 7.0, std::nan("")}) {
    h.Add(v);
  }
  EXPECT_EQ(h.counts, (std::vector<std::uint64_t>{3, 1, 0, 0, 0, 0, 0, 0, 0, 3}));
  EXPECT_EQ(h.Total(), 7u);
  EXPECT_FALSE(Histogram::Over({1.0}));
  EXPECT_FALSE(Histogram::Over({0.0, 1.0, 1.0}));
  EXPECT_FALSE((Histogram{{0.0, 1.0}, {1, 2}}.Check()));
}

TEST(PopulationStabilityIndex, IsZeroForTheSameSharesAndMatchesAWorkedExample) {
  EXPECT_NEAR(PopulationStabilityIndex({25, 25, 25, 25}, {50, 50, 50, 50}).value(), 0, 1e-12);
  // Σ (a − e) ln(a / e) for e = 0.25 each, a = 0.1, 0.2, 0.3, 0.4.
  double expected = -0.15 * std::log(0.4) - 0.05 * std::log(0.8) + 0.05 * std::log(1.2) +
                    0.15 * std::log(1.6);
  EXPECT_NEAR(PopulationStabilityIndex({25, 25, 25, 25}, {10, 20, 30, 40}).value(), expected,
              1e-12);
  EXPECT_NEAR(expected, 0.2283, 1e-4);
  // An empty bin is a large, finite difference.
  double empty = PopulationStabilityIndex({50, 50}, {100, 0}).value();
  EXPECT_TRUE(std::isfinite(empty));
  EXPECT_GT(empty, 1.0);
  EXPECT_FALSE(PopulationStabilityIndex({1, 2}, {1, 2, 3}));
  EXPECT_FALSE(PopulationStabilityIndex({0, 0}, {1, 2}));
}

TEST(KolmogorovSmirnov, SameDistributionPassesAShiftedOneDoesNot) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0, 1);
  Histogram baseline = Unit();
  for (int i = 0; i < 10000; ++i) {
    baseline.Add(uniform(rng));
  }
  std::vector<double> same;
  std::vector<double> shifted;
  for (int i = 0; i < 500; ++i) {
    same.push_back(uniform(rng));
    shifted.push_back(std::min(uniform(rng) + 0.2, 0.999));
  }
  auto ok = KolmogorovSmirnov(baseline, same).value();
  ASSERT_TRUE(ok);
  EXPECT_LT(ok->statistic, 0.08);
  EXPECT_GT(ok->p_value, 0.01);
  auto drifted = KolmogorovSmirnov(baseline, shifted).value();
  ASSERT_TRUE(drifted);
  EXPECT_NEAR(drifted->statistic, 0.2, 0.05);
  EXPECT_LT(drifted->p_value, 1e-6);
  // Too few points: no verdict rather than a meaningless one.
  EXPECT_FALSE(KolmogorovSmirnov(baseline, {0.5, 0.6}).value());
}

TEST(Judge, UsesThePsiThresholdsAndLetsKsRaiseToWatch) {
  EXPECT_EQ(Judge(0.05, std::nullopt), DriftLevel::kOk);
  EXPECT_EQ(Judge(0.1, std::nullopt), DriftLevel::kWatch);
  EXPECT_EQ(Judge(0.3, std::nullopt), DriftLevel::kAlert);
  EXPECT_EQ(Judge(0.05, KsResult{0.3, 1e-5}), DriftLevel::kWatch);
  EXPECT_EQ(Judge(0.05, KsResult{0.01, 0.5}), DriftLevel::kOk);
  EXPECT_EQ(Judge(0.2, std::nullopt, {.psi_watch = 0.3, .psi_alert = 0.5, .ks_p_value = 0.01}),
            DriftLevel::kOk);
  EXPECT_STREQ(DriftLevelName(DriftLevel::kAlert), "alert");
}

}  // namespace
}  // namespace airlock::monitor
