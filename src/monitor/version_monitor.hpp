#pragma once
// VersionMonitor: measures one served model version (monitor/telemetry.hpp) on its request path.
// For every request, Finish once it is done (answered or failed): counts, errors and latency.
// For the requests ShouldObserve picks, also ObserveInputs before it runs and ObserveOutputs with
// what it answered: the values drift is judged on, and the prediction distribution. Cut closes
// the interval, judges drift and starts the next one.
//
// Its cost is bounded twice. Per observed request it reads a bounded sample of each feature's
// values (at most sample_per_request, evenly strided with a moving offset), so the cost does not
// grow with the size of an image. And it observes every request only while that costs at most
// `budget` (0.5 %) of the time spent serving; for a model whose inference takes microseconds it
// observes every k-th request of each thread instead, with k re-chosen at every kWindow-th request
// of a thread from what observing has cost and what serving took (the sum of the latencies, at most the wall time
// times the hardware threads). Drift is a statement about a population, which a systematic
// sample of thousands of requests per interval describes as well as all of them.
//
// Drift needs enough data to mean anything: a feature is judged only when the interval observed
// at least min_requests requests, and k is kept low enough that, at the last interval's request
// rate, an interval observes four times that. KS uses a uniform reservoir of at most ks_points
// values per feature (values of one image are not independent, and the baseline's histogram
// resolves the training distribution only to its bins, so a larger sample would flag the
// histogram's own coarseness).
//
// Thread-safe: ShouldObserve, Observe* and Finish may be called from any number of request
// threads while Cut runs.

#include <array>
#include <atomic>
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

  // Whether to observe the request about to run (every k-th of this thread's; see above).
  bool ShouldObserve();
  void ObserveInputs(const std::vector<runtime::Tensor>& inputs);
  void ObserveOutputs(const std::vector<runtime::Tensor>& outputs);
  // One request done, answered (ok) or failed, after latency from its arrival.
  void Finish(bool ok, std::chrono::nanoseconds latency);

  // Closes the interval at now_ms; the next starts at now_ms.
  IntervalReport Cut(std::int64_t now_ms);

  const std::string& model() const { return model_; }
  const std::string& version() const { return version_; }
  // Observes every stride()-th request.
  std::uint64_t stride() const { return stride_.load(std::memory_order_relaxed); }

  // A thread's requests between two choices of the stride.
  static constexpr std::uint64_t kWindow = 1024;
  static constexpr std::uint64_t kMaxStride = 1 << 16;

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

  // Under mu_: the predictions in outputs.
  void CountPredictions(const std::vector<runtime::Tensor>& outputs);
  // Under mu_: re-chooses the stride from the window that ends at now, and starts the next.
  void ChooseStride(std::chrono::steady_clock::time_point now);

  const std::string model_;
  const std::string version_;
  const MonitorOptions options_;
  std::mutex mu_;
  std::vector<FeatureState> features_;
  std::optional<PredictionSpec> baseline_predictions_;
  std::optional<PredictionSpec> predictions_;  // this interval's
  Reservoir score_reservoir_;
  std::uint64_t observed_ = 0;
  std::int64_t start_ms_;
  std::minstd_rand rng_{20261201};
  std::map<std::string, DriftLevel> last_level_;

  // What Finish and ShouldObserve count for every request, spread over shards that threads take in
  // turn, each on its own cache lines: concurrent requests would otherwise wait for each other's
  // cache line (or lock) on every request, which from two threads costs a microsecond model more
  // than the rest of the monitor. The counters only grow; Cut and ChooseStride take differences.
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kMaxBuckets = 16;  // of the latency histogram
  struct alignas(128) Shard {  // 128: the adjacent-line prefetcher pairs 64-byte lines
    std::atomic<std::uint64_t> tickets{0};  // ShouldObserve calls
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> latency_ns{0};
    std::array<std::atomic<std::uint64_t>, kMaxBuckets> latency{};
  };
  struct Totals {  // the shards summed
    std::uint64_t requests = 0, errors = 0, latency_ns = 0;
    std::array<std::uint64_t, kMaxBuckets> latency{};
  };
  static Shard& Mine(std::array<Shard, kShards>& shards);
  Totals Sum() const;

  std::array<Shard, kShards> shards_;
  Totals at_cut_;     // under mu_: the totals when the interval began
  Totals at_choice_;  // under mu_: the totals when the stride was last chosen
  // Read by every request: on a cache line of its own, which only a change of stride writes.
  alignas(128) std::atomic<std::uint64_t> stride_{1};
  alignas(128) std::uint64_t stride_cap_ = kMaxStride;  // from the last interval's requests (min_requests)
  // Since the stride was last chosen, under mu_.
  std::chrono::steady_clock::time_point chosen_at_;
  std::uint64_t observed_since_choice_ = 0;
  std::chrono::nanoseconds observing_{0};  // spent in ObserveInputs and ObserveOutputs
};

}  // namespace airlock::monitor
