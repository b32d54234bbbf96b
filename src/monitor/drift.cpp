#include "monitor/drift.hpp"

#include <algorithm>
#include <cmath>

namespace airlock::monitor {

Result<Histogram> Histogram::Over(std::vector<double> edges) {
  Histogram h;
  h.counts.assign(edges.empty() ? 0 : edges.size() - 1, 0);
  h.edges = std::move(edges);
  AIRLOCK_RETURN_IF_ERROR(h.Check());
  return h;
}

Status Histogram::Check() const {
  if (counts.empty() || edges.size() != counts.size() + 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "a histogram needs n + 1 edges for n >= 1 counts, not " +
                    std::to_string(edges.size()) + " edges for " + std::to_string(counts.size()));
  }
  for (std::size_t i = 0; i < edges.size(); ++i) {
    if (!std::isfinite(edges[i]) || (i > 0 && edges[i] <= edges[i - 1])) {
      return Fail(ErrorCode::kInvalidArgument,
                  "histogram edges must be finite and strictly increasing (edge " +
                      std::to_string(i) + ")");
    }
  }
  return {};
}

void Histogram::Add(double value) {
  if (std::isnan(value) || counts.empty()) {
    return;
  }
  ++counts[Bin(value)];
}

std::size_t Histogram::Bin(double value) const {
  // The bin whose upper edge is the first edge above value; the last bin includes its upper edge.
  // That is the number of inner edges at or below value (std::upper_bound's answer over them),
  // found by halving without a branch that depends on value: a monitor bins hundreds of values per
  // request, and with real data a branchy search mispredicts about every other step.
  const double* first = edges.data() + 1;
  std::size_t n = edges.size() - 2;  // inner edges
  if (n == 0) {
    return 0;
  }
  const double* base = first;
  while (n > 1) {
    std::size_t half = n / 2;
    base = base[half] <= value ? base + half : base;
    n -= half;
  }
  return static_cast<std::size_t>(base - first) + (*base <= value ? 1 : 0);
}

std::uint64_t Histogram::Total() const {
  std::uint64_t n = 0;
  for (auto c : counts) {
    n += c;
  }
  return n;
}

Result<double> PopulationStabilityIndex(const std::vector<std::uint64_t>& expected,
                                        const std::vector<std::uint64_t>& observed) {
  if (expected.size() != observed.size() || expected.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "PSI needs the same bins on both sides, not " + std::to_string(expected.size()) +
                    " and " + std::to_string(observed.size()));
  }
  double e_total = 0;
  double a_total = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    e_total += static_cast<double>(expected[i]);
    a_total += static_cast<double>(observed[i]);
  }
  if (e_total == 0 || a_total == 0) {
    return Fail(ErrorCode::kInvalidArgument, "PSI needs counts on both sides");
  }
  double psi = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    double e = std::max(static_cast<double>(expected[i]) / e_total, kPsiFloor);
    double a = std::max(static_cast<double>(observed[i]) / a_total, kPsiFloor);
    psi += (a - e) * std::log(a / e);
  }
  return psi;
}

namespace {

// The baseline's cumulative share at x: linear within a bin.
double BaselineCdf(const Histogram& h, double total, double x) {
  if (x <= h.edges.front()) {
    return 0;
  }
  double below = 0;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    double lo = h.edges[i];
    double hi = h.edges[i + 1];
    double c = static_cast<double>(h.counts[i]);
    if (x < hi) {
      return (below + c * (x - lo) / (hi - lo)) / total;
    }
    below += c;
  }
  return 1;
}

// Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}: the chance the scaled gap exceeds λ.
double KolmogorovTail(double lambda) {
  if (lambda < 1e-3) {
    return 1;
  }
  double sum = 0;
  for (int k = 1; k <= 100; ++k) {
    double term = std::exp(-2.0 * k * k * lambda * lambda);
    sum += (k % 2 == 1 ? term : -term);
    if (term < 1e-12) {
      break;
    }
  }
  return std::clamp(2 * sum, 0.0, 1.0);
}

}  // namespace

Result<std::optional<KsResult>> KolmogorovSmirnov(const Histogram& baseline,
                                                  std::vector<double> observed) {
  AIRLOCK_RETURN_IF_ERROR(baseline.Check());
  observed.erase(std::remove_if(observed.begin(), observed.end(),
                                [](double v) { return std::isnan(v); }),
                 observed.end());
  const double n = static_cast<double>(baseline.Total());
  const double m = static_cast<double>(observed.size());
  if (n < kMinKsPoints || m < kMinKsPoints) {
    return std::optional<KsResult>();
  }
  std::sort(observed.begin(), observed.end());
  // The largest gap is at an observed point (just before or after its step) or at a bin edge.
  double d = 0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    double f = BaselineCdf(baseline, n, observed[i]);
    d = std::max({d, std::abs(static_cast<double>(i + 1) / m - f),
                  std::abs(static_cast<double>(i) / m - f)});
  }
  for (double edge : baseline.edges) {
    double f = BaselineCdf(baseline, n, edge);
    double g = static_cast<double>(std::upper_bound(observed.begin(), observed.end(), edge) -
                                   observed.begin()) /
               m;
    d = std::max(d, std::abs(g - f));
  }
  double ne = n * m / (n + m);
  double sq = std::sqrt(ne);
  double lambda = (sq + 0.12 + 0.11 / sq) * d;
  return std::optional<KsResult>(KsResult{d, KolmogorovTail(lambda)});
}

const char* DriftLevelName(DriftLevel level) {
  switch (level) {
    case DriftLevel::kOk:
      return "ok";
    case DriftLevel::kWatch:
      return "watch";
    case DriftLevel::kAlert:
      return "alert";
  }
  return "ok";
}

DriftLevel Judge(double psi, const std::optional<KsResult>& ks, const DriftThresholds& t) {
  DriftLevel level = psi >= t.psi_alert   ? DriftLevel::kAlert
                     : psi >= t.psi_watch ? DriftLevel::kWatch
                                          : DriftLevel::kOk;
  if (level == DriftLevel::kOk && ks && ks->p_value < t.ks_p_value) {
    level = DriftLevel::kWatch;
  }
  return level;
}

}  // namespace airlock::monitor
