#include "agent/scheduler.hpp"

#include <future>

namespace airlock::agent {
namespace {

using std::chrono::steady_clock;
using runtime::Tensor;

std::uint64_t NowEpochMs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// The rows of a request: the first dimension of its inputs, which must agree.
Result<std::int64_t> RowsOf(const std::vector<Tensor>& inputs) {
  std::int64_t rows = -1;
  for (const auto& t : inputs) {
    if (t.shape.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "input \"" + t.name + "\" is a scalar; batching needs a first dimension");
    }
    if (rows >= 0 && t.shape[0] != rows) {
      return Fail(ErrorCode::kInvalidArgument,
                  "inputs disagree on the batch size (" + std::to_string(rows) + " and " +
                      std::to_string(t.shape[0]) + ")");
    }
    rows = t.shape[0];
  }
  return rows < 0 ? 0 : rows;
}

// Two requests can share a batch when their inputs match in name, dtype and all but the first
// dimension.
bool Compatible(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].dtype != b[i].dtype ||
        a[i].shape.size() != b[i].shape.size() ||
        !std::equal(a[i].shape.begin() + 1, a[i].shape.end(), b[i].shape.begin() + 1)) {
      return false;
    }
  }
  return true;
}

}  // namespace

void LatencyHistogram::Add(std::chrono::nanoseconds d) {
  auto us = static_cast<std::uint64_t>(d.count() / 1000);
  std::size_t i = 0;
  while (i < kBoundsUs.size() && us > kBoundsUs[i]) {
    ++i;
  }
  buckets[i].fetch_add(1, std::memory_order_relaxed);
  sum_us.fetch_add(us, std::memory_order_relaxed);
}

std::map<std::int64_t, std::uint64_t> InferenceStats::BatchCounts() const {
  std::lock_guard lock(batch_mutex_);
  return batches_;
}

void InferenceStats::AddBatch(std::int64_t rows) {
  std::lock_guard lock(batch_mutex_);
  ++batches_[rows];
}

bool IsBatchable(const runtime::ModelSignature& sig) {
  auto dynamic_first = [](const runtime::TensorSpec& s) {
    return !s.shape.empty() && s.shape[0] == -1;
  };
  return !sig.inputs.empty() && std::all_of(sig.inputs.begin(), sig.inputs.end(), dynamic_first) &&
         std::all_of(sig.outputs.begin(), sig.outputs.end(), dynamic_first);
}

struct Scheduler::Job {
  std::vector<Tensor> inputs;
  std::int64_t rows = 0;
  SteadyTime arrival;
  SteadyTime deadline;
  std::promise<Result<std::vector<Tensor>>> result;
  std::atomic<bool> abandoned{false};  // the caller stopped waiting (deadline)
};

Scheduler::Scheduler(std::shared_ptr<runtime::InferenceBackend> backend,
                     const ModelConfig& config, InferenceStats& stats)
    : backend_(std::move(backend)),
      stats_(stats),
      instances_(config.instances),
      max_queue_(config.max_queue),
      timeout_(config.timeout),
      batching_(config.batching && IsBatchable(backend_->signature()) ? config.batching
                                                                      : std::nullopt) {
  if (batching_) {
    for (int i = 0; i < instances_; ++i) {
      workers_.emplace_back([this] { BatchWorker(); });
    }
  }
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& job : queue_) {
      job->result.set_value(Fail(ErrorCode::kUnavailable, "the model version is being unloaded"));
    }
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& w : workers_) {
    w.join();
  }
  // Direct executions hold the caller's reference to this scheduler's owner; nothing to wait for.
}

std::size_t Scheduler::QueueDepth() const {
  std::lock_guard lock(mutex_);
  return waiting_ + queue_.size() + static_cast<std::size_t>(running_);
}

Result<std::vector<Tensor>> Scheduler::Execute(std::vector<Tensor> inputs, SteadyTime arrival) {
  SteadyTime deadline = arrival + timeout_;
  auto result = batching_ ? RunBatched(inputs, arrival, deadline)
                          : RunDirect(inputs, arrival, deadline);
  auto elapsed = steady_clock::now() - arrival;
  if (result) {
    stats_.success.Add(elapsed);
    stats_.latency.Add(elapsed);
    stats_.last_inference_ms.store(NowEpochMs(), std::memory_order_relaxed);
  } else {
    stats_.fail.Add(elapsed);
    if (result.error().code() == ErrorCode::kUnavailable) {
      stats_.rejected.fetch_add(1, std::memory_order_relaxed);
    } else if (result.error().code() == ErrorCode::kTimeout) {
      stats_.timed_out.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return result;
}

Result<std::vector<Tensor>> Scheduler::RunDirect(std::vector<Tensor>& inputs, SteadyTime arrival,
                                                 SteadyTime deadline) {
  {
    std::unique_lock lock(mutex_);
    if (running_ >= instances_) {
      if (waiting_ >= max_queue_) {
        return Fail(ErrorCode::kUnavailable,
                    "the model's queue is full (" + std::to_string(max_queue_) +
                        " waiting); try again later");
      }
      ++waiting_;
      bool got = cv_.wait_until(lock, deadline, [&] { return running_ < instances_ || stopping_; });
      --waiting_;
      if (!got) {
        return Fail(ErrorCode::kTimeout, "timed out after " + std::to_string(timeout_.count()) +
                                             " ms waiting in the model's queue");
      }
    }
    ++running_;
  }
  auto start = steady_clock::now();
  stats_.queue.Add(start - arrival);
  auto outputs = backend_->Run(inputs);
  auto end = steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    --running_;
  }
  cv_.notify_one();
  if (outputs) {
    stats_.compute_infer.Add(end - start);
    stats_.compute_input.Add(std::chrono::nanoseconds(0));
    stats_.compute_output.Add(std::chrono::nanoseconds(0));
    stats_.execution_count.fetch_add(1, std::memory_order_relaxed);
    std::int64_t rows = 1;
    if (!inputs.empty() && !inputs[0].shape.empty()) {
      rows = inputs[0].shape[0];
    }
    stats_.inference_count.fetch_add(static_cast<std::uint64_t>(rows), std::memory_order_relaxed);
    stats_.AddBatch(rows);
  }
  return outputs;
}

Result<std::vector<Tensor>> Scheduler::RunBatched(std::vector<Tensor>& inputs, SteadyTime arrival,
                                                  SteadyTime deadline) {
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t rows, RowsOf(inputs));
  if (rows > batching_->max_batch_size) {
    return Fail(ErrorCode::kInvalidArgument,
                "the request's batch of " + std::to_string(rows) +
                    " exceeds the model's max_batch_size " +
                    std::to_string(batching_->max_batch_size));
  }
  auto job = std::make_shared<Job>();
  job->rows = rows;
  job->arrival = arrival;
  job->deadline = deadline;
  job->inputs = std::move(inputs);
  auto future = job->result.get_future();
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= max_queue_ + static_cast<std::size_t>(batching_->max_batch_size)) {
      return Fail(ErrorCode::kUnavailable, "the model's queue is full (" +
                                               std::to_string(queue_.size()) +
                                               " waiting); try again later");
    }
    queue_.push_back(job);
  }
  cv_.notify_all();
  if (future.wait_until(deadline) != std::future_status::ready) {
    job->abandoned.store(true);
    return Fail(ErrorCode::kTimeout, "timed out after " + std::to_string(timeout_.count()) +
                                         " ms waiting for the model");
  }
  return future.get();
}

void Scheduler::BatchWorker() {
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    // Wait for the batch to fill, at most max_queue_delay after its first request arrived.
    SteadyTime fill_by = queue_.front()->arrival + batching_->max_queue_delay;
    auto queued_rows = [&] {
      std::int64_t n = 0;
      for (const auto& j : queue_) {
        if (Compatible(j->inputs, queue_.front()->inputs)) {
          n += j->rows;
        }
      }
      return n;
    };
    cv_.wait_until(lock, fill_by, [&] {
      return stopping_ || queue_.empty() || queued_rows() >= batching_->max_batch_size;
    });
    if (stopping_) {
      return;
    }
    if (queue_.empty()) {
      continue;  // another worker took them
    }
    // Drop what nobody waits for any more, then take the head and what fits beside it.
    auto now = steady_clock::now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->abandoned.load() || (*it)->deadline <= now) {
        (*it)->result.set_value(Fail(ErrorCode::kTimeout, "timed out in the model's queue"));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (queue_.empty()) {
      continue;
    }
    std::shared_ptr<Job> head = queue_.front();
    std::vector<std::shared_ptr<Job>> batch;
    std::int64_t rows = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (*it != head && !Compatible((*it)->inputs, head->inputs)) {
        ++it;
        continue;
      }
      if (rows + (*it)->rows > batching_->max_batch_size) {
        break;
      }
      rows += (*it)->rows;
      batch.push_back(*it);
      it = queue_.erase(it);
    }
    if (batch.empty()) {
      continue;
    }
    ++running_;
    lock.unlock();
    RunBatch(batch);
    lock.lock();
    --running_;
  }
}

void Scheduler::RunBatch(std::vector<std::shared_ptr<Job>>& jobs) {
  auto start = steady_clock::now();
  for (const auto& j : jobs) {
    stats_.queue.Add(start - j->arrival);
  }
  // Concatenate the inputs along the first dimension.
  std::vector<Tensor> inputs;
  std::int64_t rows = 0;
  if (jobs.size() == 1) {
    inputs = std::move(jobs[0]->inputs);
    rows = jobs[0]->rows;
  } else {
    inputs = jobs[0]->inputs;
    for (auto& t : inputs) {
      t.shape[0] = 0;
      t.data.clear();
      t.strings.clear();
    }
    for (const auto& j : jobs) {
      rows += j->rows;
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        inputs[i].shape[0] += j->inputs[i].shape[0];
        inputs[i].data += j->inputs[i].data;
        inputs[i].strings.insert(inputs[i].strings.end(), j->inputs[i].strings.begin(),
                                 j->inputs[i].strings.end());
      }
    }
  }
  auto assembled = steady_clock::now();
  auto outputs = backend_->Run(inputs);
  auto ran = steady_clock::now();
  stats_.compute_input.Add(assembled - start);
  stats_.compute_infer.Add(ran - assembled);
  if (!outputs) {
    for (auto& j : jobs) {
      j->result.set_value(Fail(outputs.error()));
    }
    return;
  }
  stats_.execution_count.fetch_add(1, std::memory_order_relaxed);
  stats_.inference_count.fetch_add(static_cast<std::uint64_t>(rows), std::memory_order_relaxed);
  stats_.AddBatch(rows);
  if (jobs.size() == 1) {
    jobs[0]->result.set_value(std::move(outputs));
    stats_.compute_output.Add(steady_clock::now() - ran);
    return;
  }
  // Split every output by each job's rows.
  std::vector<std::vector<Tensor>> split(jobs.size());
  for (const auto& out : *outputs) {
    if (out.shape.empty() || out.shape[0] != rows) {
      for (auto& j : jobs) {
        j->result.set_value(Fail(ErrorCode::kModel, "output \"" + out.name +
                                                        "\" does not keep the batch dimension"));
      }
      return;
    }
    std::int64_t per_row = rows == 0 ? 0 : out.ElementCount() / rows;
    std::size_t esize = runtime::ElementSize(out.dtype);
    std::int64_t row = 0;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      Tensor part;
      part.name = out.name;
      part.dtype = out.dtype;
      part.shape = out.shape;
      part.shape[0] = jobs[k]->rows;
      auto first = static_cast<std::size_t>(row * per_row);
      auto count = static_cast<std::size_t>(jobs[k]->rows * per_row);
      if (out.dtype == runtime::DataType::kBytes) {
        part.strings.assign(out.strings.begin() + static_cast<std::ptrdiff_t>(first),
                            out.strings.begin() + static_cast<std::ptrdiff_t>(first + count));
      } else {
        part.data = out.data.substr(first * esize, count * esize);
      }
      split[k].push_back(std::move(part));
      row += jobs[k]->rows;
    }
  }
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    jobs[k]->result.set_value(std::move(split[k]));
  }
  stats_.compute_output.Add(steady_clock::now() - ran);
}

}  // namespace airlock::agent
