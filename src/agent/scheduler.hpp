#pragma once
// How requests for one loaded model version reach its backend, and what that costs.
//
// Scheduler admits a request, waits for a free execution slot (or, with dynamic batching, for a
// batch to fill), runs the backend and records Triton-style statistics. Admission is bounded:
// beyond `instances` running and `max_queue` waiting, a request fails at once with kUnavailable
// (HTTP 503), and a request that cannot finish by its deadline fails with kTimeout. Thread-safe;
// Execute blocks the calling thread. Destroying a scheduler fails what is still queued with
// kUnavailable and waits for running executions.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/config.hpp"
#include "core/result.hpp"
#include "runtime/backend.hpp"

namespace airlock::agent {

using SteadyTime = std::chrono::steady_clock::time_point;

// A count and a total duration, as Triton's statistics keep them.
struct DurationStat {
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> ns{0};
  void Add(std::chrono::nanoseconds d) {
    count.fetch_add(1, std::memory_order_relaxed);
    ns.fetch_add(static_cast<std::uint64_t>(d.count()), std::memory_order_relaxed);
  }
};

// Request latency in fixed buckets (upper bounds in microseconds), for Prometheus histograms.
struct LatencyHistogram {
  static constexpr std::array<std::uint64_t, 14> kBoundsUs = {
      100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};
  std::array<std::atomic<std::uint64_t>, kBoundsUs.size() + 1> buckets{};  // last: above all
  std::atomic<std::uint64_t> sum_us{0};
  void Add(std::chrono::nanoseconds d);
};

struct InferenceStats {
  DurationStat success;         // whole request, arrival to response
  DurationStat fail;
  DurationStat queue;           // arrival to the start of execution
  DurationStat compute_input;   // assembling a batch
  DurationStat compute_infer;   // the backend
  DurationStat compute_output;  // splitting a batch
  std::atomic<std::uint64_t> inference_count{0};  // rows (batch elements) inferred
  std::atomic<std::uint64_t> execution_count{0};  // backend runs
  std::atomic<std::uint64_t> last_inference_ms{0};  // Unix epoch ms
  std::atomic<std::uint64_t> rejected{0};  // queue full
  std::atomic<std::uint64_t> timed_out{0};
  std::atomic<std::uint64_t> pipeline_success{0};  // raw inputs turned into results
  std::atomic<std::uint64_t> pipeline_failure{0};
  LatencyHistogram latency;

  // Executions per batch size (rows), for Triton's batch_stats.
  std::map<std::int64_t, std::uint64_t> BatchCounts() const;
  void AddBatch(std::int64_t rows);

 private:
  mutable std::mutex batch_mutex_;
  std::map<std::int64_t, std::uint64_t> batches_;
};

class Scheduler {
 public:
  // backend must be thread-safe (ONNX Runtime's is). stats must outlive the scheduler.
  Scheduler(std::shared_ptr<runtime::InferenceBackend> backend, const ModelConfig& config,
            InferenceStats& stats);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs one request that arrived at `arrival`; its deadline is arrival + the model's timeout.
  // Errors: the backend's (kInvalidArgument for inputs that do not fit, kModel), kUnavailable
  // when the queue is full, kTimeout past the deadline. Success and failure are both counted.
  [[nodiscard]] Result<std::vector<runtime::Tensor>> Execute(std::vector<runtime::Tensor> inputs,
                                                             SteadyTime arrival);

  // Requests queued and executing right now.
  std::size_t QueueDepth() const;
  bool batching() const { return batching_.has_value(); }

 private:
  struct Job;
  Result<std::vector<runtime::Tensor>> RunDirect(std::vector<runtime::Tensor>& inputs,
                                                 SteadyTime arrival, SteadyTime deadline);
  Result<std::vector<runtime::Tensor>> RunBatched(std::vector<runtime::Tensor>& inputs,
                                                  SteadyTime arrival, SteadyTime deadline);
  void BatchWorker();
  void RunBatch(std::vector<std::shared_ptr<Job>>& jobs);

  std::shared_ptr<runtime::InferenceBackend> backend_;
  InferenceStats& stats_;
  const int instances_;
  const std::size_t max_queue_;
  const std::chrono::milliseconds timeout_;
  const std::optional<DynamicBatching> batching_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int running_ = 0;
  std::size_t waiting_ = 0;
  bool stopping_ = false;
  std::deque<std::shared_ptr<Job>> queue_;  // batching only
  std::vector<std::thread> workers_;        // batching only
};

// Whether a model can take requests concatenated along their first dimension: every input and
// output has a first dimension of any size.
bool IsBatchable(const runtime::ModelSignature& sig);

}  // namespace airlock::agent
