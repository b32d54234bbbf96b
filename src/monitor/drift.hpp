#pragma once
// Drift of what a model sees and says against the training data's baseline (the package's
// baseline.json, docs/package-format.md): the population stability index over the baseline's
// histogram bins, and, where the baseline holds enough points, the Kolmogorov–Smirnov statistic
// and its p-value. Plain values and free functions; thread-compatible. Nothing here reads a clock
// or does I/O.
//
// PSI = Σ (a_i − e_i) · ln(a_i / e_i) over the bins, with e_i and a_i the baseline's and the
// observed shares of bin i. A share of 0 is taken as kPsiFloor, so an empty bin counts as a large
// but finite difference. Conventional reading (the thresholds' defaults): below 0.1 no real shift,
// 0.1 to 0.25 a shift worth watching, above 0.25 a shift to act on.
//
// KS = the largest gap between the baseline's cumulative distribution (linear within each bin,
// which is all a histogram can say) and the observed one; its p-value from the asymptotic
// Kolmogorov distribution with the effective size n·m/(n+m). With few points either way the
// p-value means little, so it is computed only when both sides hold kMinKsPoints.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace airlock::monitor {

inline constexpr double kPsiFloor = 1e-4;
inline constexpr std::uint64_t kMinKsPoints = 50;

// A histogram: edges.size() == counts.size() + 1, edges strictly increasing.
struct Histogram {
  std::vector<double> edges;
  std::vector<std::uint64_t> counts;

  // An empty histogram over the same bins.
  [[nodiscard]] static Result<Histogram> Over(std::vector<double> edges);
  // kInvalidArgument unless the shape above holds (at least one bin).
  [[nodiscard]] Status Check() const;
  // Counts value in its bin; values below the first edge count in the first bin and values above
  // the last in the last (drift compares populations over the baseline's bins, and a value out of
  // the training range is the strongest sign of drift, not something to drop). NaN is not counted.
  void Add(double value);
  // The bin Add counts value in. Preconditions: value is not NaN, and there is a bin.
  std::size_t Bin(double value) const;
  std::uint64_t Total() const;
};

// PSI of observed against expected, bin by bin; kInvalidArgument when they have different
// numbers of bins or either is empty.
[[nodiscard]] Result<double> PopulationStabilityIndex(const std::vector<std::uint64_t>& expected,
                                                      const std::vector<std::uint64_t>& observed);

struct KsResult {
  double statistic = 0;  // in [0, 1]
  double p_value = 1;    // the chance of a gap this large if both came from one distribution
};
// KS between the baseline and observed values (in any order); nullopt when either side has fewer
// than kMinKsPoints points. kInvalidArgument for a malformed baseline.
[[nodiscard]] Result<std::optional<KsResult>> KolmogorovSmirnov(const Histogram& baseline,
                                                                std::vector<double> observed);

enum class DriftLevel { kOk, kWatch, kAlert };
const char* DriftLevelName(DriftLevel level);  // "ok", "watch", "alert"
// The more severe of two levels.
inline DriftLevel Worse(DriftLevel a, DriftLevel b) {
  return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

struct DriftThresholds {
  double psi_watch = 0.1;
  double psi_alert = 0.25;
  // A KS p-value below this (with enough points) raises the level to at least watch.
  double ks_p_value = 0.01;
};
DriftLevel Judge(double psi, const std::optional<KsResult>& ks, const DriftThresholds& t = {});

}  // namespace airlock::monitor
