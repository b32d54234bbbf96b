#pragma once
// What an agent measures of one served model version, interval by interval (docs/monitoring.md):
// requests, errors and latency, the distribution of its predictions, and the drift of each input
// feature and of the predictions against the package's baseline layer (baseline.json, schema
// airlock.baseline.v1). This header holds the baseline and the interval report (the body of a
// "metrics" telemetry record), which the gateway and the hub read too;
// monitor/version_monitor.hpp measures them on the request path. Plain values; thread-compatible.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "monitor/drift.hpp"

namespace airlock::monitor {

inline constexpr std::string_view kTelemetrySchema = "airlock.telemetry.v1";

// One input feature of the baseline: the values of `tensor` whose index along `axis` is `index`
// (an image channel), or every value when axis is unset.
struct BaselineFeature {
  std::string name;
  std::string tensor;
  std::optional<std::size_t> axis;
  std::int64_t index = 0;
  Histogram histogram;
};

// What the model says: class counts (kind "class": argmax of the tensor's last dimension over
// labels) or a histogram of the tensor's values (kind "score").
struct PredictionSpec {
  std::string tensor;
  bool classes = true;
  std::vector<std::string> labels;  // classes
  Histogram histogram;              // its edges for scores; counts per class for classes
  bool has_baseline = false;        // whether the counts are the training data's (drift needs it)
};

struct Baseline {
  std::vector<BaselineFeature> features;
  std::optional<PredictionSpec> predictions;
  // The model owner's thresholds ("thresholds": {"psi_watch", "psi_alert", "ks_p_value"}, each
  // optional); the defaults otherwise.
  DriftThresholds thresholds;

  // Parses an airlock.baseline.v1 document. kInvalidArgument naming what is wrong.
  [[nodiscard]] static Result<Baseline> FromJson(const nlohmann::json& doc);
};

// The agent's latency buckets (upper bounds, µs), as its /metrics histogram has them.
inline const std::vector<std::uint64_t> kLatencyBoundsUs = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

struct MonitorOptions {
  std::size_t sample_per_request = 256;
  std::size_t ks_points = 200;
  std::uint64_t min_requests = 10;
  DriftThresholds thresholds;
  // The share of the serving time the monitor may spend reading requests' values: when reading
  // every request would cost more, it reads every k-th (VersionMonitor::ShouldObserve).
  double budget = 0.005;
};

// Requests over one interval.
struct RequestCounts {
  std::uint64_t requests = 0;  // answered or failed
  std::uint64_t errors = 0;
  std::vector<std::uint64_t> latency_bounds_us;  // upper bounds; counts has one more (above all)
  std::vector<std::uint64_t> latency_counts;
  std::uint64_t latency_sum_us = 0;
};

struct FeatureDrift {
  std::string feature;  // a baseline feature's name, or "predictions"
  std::uint64_t values = 0;
  std::optional<double> psi;  // unset: too little data this interval
  std::optional<KsResult> ks;
  DriftLevel level = DriftLevel::kOk;
};

// The body of a telemetry record of kind "alert": a feature of a version on a device reached the
// alert level in the interval that ended at end_ms.
struct AlertReport {
  std::string device, model, version, feature;
  std::optional<double> psi;
  std::int64_t end_ms = 0;

  // kInvalidArgument naming what is missing; end_ms is created_ms (the record's) when absent.
  [[nodiscard]] static Result<AlertReport> FromJson(const nlohmann::json& j,
                                                    std::int64_t created_ms);
};

// One interval of one version on one device: the body of a telemetry record of kind "metrics".
struct IntervalReport {
  std::string device;
  std::string model;
  std::string version;
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;
  RequestCounts counts;
  std::uint64_t observed = 0;  // requests whose inputs the monitor saw
  std::optional<PredictionSpec> predictions;  // this interval's counts
  std::vector<FeatureDrift> drift;
  DriftLevel level = DriftLevel::kOk;  // the worst of drift
  std::vector<std::string> new_alerts;  // features that reached alert in this interval

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<IntervalReport> FromJson(const nlohmann::json& j);
};

// The latency percentile q (0..1) from bucket counts, interpolated linearly within the bucket it
// falls in (the last, open bucket reports its lower bound). nullopt without any count.
std::optional<double> LatencyPercentileUs(const std::vector<std::uint64_t>& bounds_us,
                                          const std::vector<std::uint64_t>& counts, double q);

}  // namespace airlock::monitor
