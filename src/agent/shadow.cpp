#include "agent/shadow.hpp"

#include <algorithm>

#include "agent/model_repository.hpp"

namespace airlock::agent {
namespace {

bool IsFloat(runtime::DataType t) {
  return t == runtime::DataType::kFp32 || t == runtime::DataType::kFp64 ||
         t == runtime::DataType::kFp16 || t == runtime::DataType::kBf16;
}

// The same highest-scoring index along the last dimension, row by row.
bool SameArgmax(const runtime::Tensor& a, const runtime::Tensor& b) {
  if (a.shape != b.shape || a.shape.empty() || a.shape.back() < 2) {
    return false;
  }
  const std::int64_t width = a.shape.back();
  const std::int64_t rows = a.ElementCount() / width;
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t best_a = 0;
    std::int64_t best_b = 0;
    for (std::int64_t i = 1; i < width; ++i) {
      if (a.ValueAsDouble(r * width + i) > a.ValueAsDouble(r * width + best_a)) {
        best_a = i;
      }
      if (b.ValueAsDouble(r * width + i) > b.ValueAsDouble(r * width + best_b)) {
        best_b = i;
      }
    }
    if (best_a != best_b) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool OutputsAgree(const std::vector<runtime::Tensor>& served,
                  const std::vector<runtime::Tensor>& candidate) {
  static const runtime::Tolerance kTolerance{.rtol = 1e-2, .atol = 1e-3};
  for (const auto& s : served) {
    auto c = std::find_if(candidate.begin(), candidate.end(),
                          [&](const runtime::Tensor& t) { return t.name == s.name; });
    if (c == candidate.end()) {
      return false;
    }
    bool agree = static_cast<bool>(runtime::CompareTensors(s, *c, kTolerance)) ||
                 (IsFloat(s.dtype) && s.dtype == c->dtype && SameArgmax(s, *c));
    if (!agree) {
      return false;
    }
  }
  return true;
}

ShadowTap::ShadowTap(std::shared_ptr<ServedVersion> candidate)
    : candidate_(std::move(candidate)), worker_([this] { Loop(); }) {}

ShadowTap::~ShadowTap() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  worker_.join();
}

void ShadowTap::Offer(std::vector<runtime::Tensor> inputs, std::vector<runtime::Tensor> outputs) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= kMaxQueued) {
    skipped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_back({std::move(inputs), std::move(outputs)});
  cv_.notify_all();
}

void ShadowTap::Drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void ShadowTap::Loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    Work work = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    // Straight to the backend: the candidate's own scheduler statistics stay those of requests.
    auto outputs = candidate_->backend->Run(work.inputs);
    if (outputs) {
      compared_.fetch_add(1, std::memory_order_relaxed);
      if (OutputsAgree(work.outputs, *outputs)) {
        agreed_.fetch_add(1, std::memory_order_relaxed);
      }
    } else {
      skipped_.fetch_add(1, std::memory_order_relaxed);
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace airlock::agent
