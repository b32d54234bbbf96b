#pragma once
// Shadow mode (docs/rollout.md §4, DESIGN §6): a candidate version runs beside the version that
// serves, on the same inputs; its outputs are compared with the served version's and counted,
// and never reach a caller. A rollout can require a minimum agreement before its next wave.
//
// The served version's request path offers each (inputs, outputs) pair to its tap after the
// answer is computed; a worker thread of the tap runs the candidate and compares. The queue is
// bounded: when the candidate cannot keep up, comparisons are skipped (counted), never the
// requests delayed.
//
// Agreement, output by output: equal within a tolerance (rtol 1e-2, atol 1e-3; exact for
// integers and strings), or, for a floating-point output whose last dimension holds more than one
// value (scores per class), the same highest-scoring index in every row: a candidate that predicts
// the same class with other scores agrees. Every output must agree for the request to count as
// agreed.
//
// Thread-safe.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/tensor.hpp"

namespace airlock::agent {

struct ServedVersion;

// Whether the candidate's outputs agree with the served version's (see above).
bool OutputsAgree(const std::vector<runtime::Tensor>& served,
                  const std::vector<runtime::Tensor>& candidate);

class ShadowTap {
 public:
  static constexpr std::size_t kMaxQueued = 64;

  explicit ShadowTap(std::shared_ptr<ServedVersion> candidate);
  ~ShadowTap();  // finishes the comparison in progress, drops the queued ones
  ShadowTap(const ShadowTap&) = delete;
  ShadowTap& operator=(const ShadowTap&) = delete;

  // Queues one comparison; never blocks on the candidate.
  void Offer(std::vector<runtime::Tensor> inputs, std::vector<runtime::Tensor> outputs);

  const ServedVersion& candidate() const { return *candidate_; }
  std::uint64_t compared() const { return compared_.load(); }
  std::uint64_t agreed() const { return agreed_.load(); }
  std::uint64_t skipped() const { return skipped_.load(); }  // queue full, or the candidate failed
  // Blocks until nothing is queued or running (for tests).
  void Drain();

 private:
  struct Work {
    std::vector<runtime::Tensor> inputs;
    std::vector<runtime::Tensor> outputs;
  };
  void Loop();

  const std::shared_ptr<ServedVersion> candidate_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  std::atomic<std::uint64_t> compared_{0}, agreed_{0}, skipped_{0};
  std::thread worker_;
};

}  // namespace airlock::agent
