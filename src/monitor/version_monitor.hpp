#pragma once
// VersionMonitor: measures one served model version (monitor/telemetry.hpp) on its request path:
// ObserveInputs before a request runs, ObserveOutputs with what it answered, Finish once it is
// done (answered or failed). It reads a bounded sample of each feature's values per request (at
// most sample_per_request, evenly strided with a moving offset), so its cost does not grow with
// the size of an image. Cut closes the interval, judges drift and starts the next one.
//
// Drift needs enough data to mean anything: a feature is judged only when the interval saw at
// least min_requests requests; KS uses a uniform reservoir of at most ks_points values per
// feature (values of one image are not independent, and the baseline's histogram resolves the
// training distribution only to its bins, so a larger sample would flag the histogram's own
// coarseness).
//
// Thread-safe: Observe* may be called from any number of request threads while Cut runs.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "monitor/telemetry.hpp"
#include "runtime/tensor.hpp"

namespace airlock::monitor {

class VersionMonitor {
 public:
  // predictions: the baseline's when it has them, else what the caller knows of the outputs (the
  // pipeline's labels), else nothing. start_ms opens the first interval.
  VersionMonitor(std::string model, std::string version, std::vector<BaselineFeature> features,
                 std::optional<PredictionSpec> predictions, std::int64_t start_ms,
                 MonitorOptions options = {});

  void ObserveInputs(const std::vector<runtime::Tensor>& inputs);
  void ObserveOutputs(const std::vector<runtime::Tensor>& outputs);
  // One request done, answered (ok) or failed, after latency from its arrival.
  void Finish(bool ok, std::chrono::nanoseconds latency);

  // Closes the interval at now_ms; the next starts at now_ms.
  IntervalReport Cut(std::int64_t now_ms);

  const std::string& model() const { return model_; }
  const std::string& version() const { return version_; }

 private:
  // A uniform sample of at most cap of the values offered since it was last taken. Li's
  // Algorithm L: once full, it draws random numbers only for the values it keeps (about
  // cap * ln(offered / cap) of them) instead of one for every value as Algorithm R does; the
  // sample has the same distribution.
  class Reservoir {
   public:
    // Offers the n values at v, in order.
    void Offer(const double* v, std::size_t n, std::size_t cap, std::minstd_rand& rng);
    std::vector<double> Take();  // the sample; the reservoir starts again empty

   private:
    void DrawNext(std::uint64_t after, std::minstd_rand& rng);
    std::vector<double> values_;
    std::uint64_t seen_ = 0;  // values offered
    std::uint64_t next_ = 0;  // when full: the number (from 0) of the next value it keeps
    double w_ = 0;            // when full: Algorithm L's W
  };
  struct FeatureState {
    BaselineFeature baseline;
    Histogram current;
    Reservoir reservoir;
  };
  // Appends the values of f that request number `request` of the interval reads from t.
  void Sample(const FeatureState& f, const runtime::Tensor& t, std::uint64_t request,
              std::vector<double>& out) const;

  const std::string model_;
  const std::string version_;
  const MonitorOptions options_;
  std::mutex mu_;
  std::vector<FeatureState> features_;
  std::optional<PredictionSpec> baseline_predictions_;
  std::optional<PredictionSpec> predictions_;  // this interval's
  Reservoir score_reservoir_;
  std::uint64_t observed_ = 0;
  RequestCounts counts_;
  std::int64_t start_ms_;
  std::minstd_rand rng_{20261201};
  std::map<std::string, DriftLevel> last_level_;
};

}  // namespace airlock::monitor
