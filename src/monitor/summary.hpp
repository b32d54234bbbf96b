#pragma once
// What `airlock monitor` shows (docs/monitoring.md): the interval reports of one model, from any
// number of devices and sites, summed per version — throughput, errors, latency percentiles from
// the merged latency buckets, the prediction distribution, and per feature the drift of the
// latest interval of each device (mean and worst PSI) and the worst level seen in the window.
// Plain functions over values; thread-compatible.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "monitor/telemetry.hpp"

namespace airlock::monitor {

struct FeatureSummary {
  std::string feature;
  std::size_t devices = 0;  // devices whose latest interval judged it
  double psi_mean = 0;      // over those latest intervals
  double psi_max = 0;
  DriftLevel level = DriftLevel::kOk;        // of the latest intervals, the worst
  DriftLevel worst_level = DriftLevel::kOk;  // in the whole window
};

struct VersionSummary {
  std::string version;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t observed = 0;  // requests whose values drift and predictions are counted from
  std::int64_t start_ms = 0;   // first interval's start
  std::int64_t end_ms = 0;     // last interval's end
  std::size_t devices = 0;
  std::size_t intervals = 0;
  std::optional<double> p50_ms, p95_ms, p99_ms;
  std::optional<PredictionSpec> predictions;  // summed counts
  std::vector<FeatureSummary> drift;

  // Requests per second over the time the intervals cover (0 when they cover none).
  double Throughput() const;
  nlohmann::json ToJson() const;
};

// One summary per version, in natural order ("1.9.0" before "1.10.0"). Reports of other models are
// ignored; a report whose latency buckets differ from the first one's is left out of the
// percentiles only.
std::vector<VersionSummary> Summarize(const std::string& model,
                                      const std::vector<IntervalReport>& reports);

// The reports in steps of step_ms from since_ms (by the end of each interval), each step summed
// per version: {"step_ms", "points": [{"t_ms", "version", "requests", "errors", "throughput_rps",
// "latency_ms": {"p50", "p95", "p99"}, "psi_max", "drift_level"}]}, oldest first; steps without
// reports have no points (docs/hub-api.md, "Monitoring").
nlohmann::json Series(const std::string& model, const std::vector<IntervalReport>& reports,
                      std::int64_t since_ms, std::int64_t step_ms);

// The most steps Series makes of a window.
inline constexpr std::int64_t kMaxSeriesSteps = 1000;
// A series' step from its text ("1m"), for a window of window_ms: kInvalidArgument, saying what
// to do, when it is not a positive duration or cuts the window into kMaxSeriesSteps or more.
[[nodiscard]] Result<std::int64_t> ParseStep(std::string_view text, std::int64_t window_ms);

}  // namespace airlock::monitor
