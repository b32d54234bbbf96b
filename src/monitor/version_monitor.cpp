#include "monitor/version_monitor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace airlock::monitor {

using std::chrono::steady_clock;

namespace {

std::uint64_t Elements(const std::vector<std::int64_t>& shape, std::size_t from, std::size_t to) {
  std::uint64_t n = 1;
  for (std::size_t i = from; i < to && i < shape.size(); ++i) {
    n *= static_cast<std::uint64_t>(std::max<std::int64_t>(shape[i], 0));
  }
  return n;
}

const runtime::Tensor* Named(const std::vector<runtime::Tensor>& ts, const std::string& name) {
  for (const auto& t : ts) {
    if (t.name == name) {
      return &t;
    }
  }
  return nullptr;
}

bool Readable(const runtime::Tensor& t) {
  return t.dtype != runtime::DataType::kBytes && t.CheckConsistent().has_value();
}

// Uniform in (0, 1): neither end, as Algorithm L takes logarithms of it.
double OpenUnit(std::minstd_rand& rng) {
  constexpr double kRange = static_cast<double>(std::minstd_rand::max() - std::minstd_rand::min());
  return (static_cast<double>(rng() - std::minstd_rand::min()) + 0.5) / (kRange + 1);
}

// Which elements of a tensor one request's sample of a feature reads: the e-th element of the
// feature, for e = offset + s * stride (s < k), sits at flat index
// (e / inner) * dim * inner + index * inner + e % inner (for a feature over the whole tensor:
// inner = dim = 1, index = 0, so at e).
struct SampleLayout {
  std::uint64_t k = 0;
  std::uint64_t offset = 0;
  std::uint64_t stride = 1;
  std::uint64_t inner = 1;
  std::uint64_t dim = 1;
  std::uint64_t index = 0;
};

// Calls at(flat) for each sampled element in order. The row (e / inner) and column (e % inner)
// are carried from one sample to the next, so that no value costs a division.
template <typename At>
void ForEachSampled(const SampleLayout& l, At&& at) {
  const std::uint64_t step_rows = l.stride / l.inner;
  const std::uint64_t step_cols = l.stride % l.inner;
  std::uint64_t row = l.offset / l.inner;
  std::uint64_t col = l.offset % l.inner;
  for (std::uint64_t s = 0; s < l.k; ++s) {
    at(row * l.dim * l.inner + l.index * l.inner + col);
    row += step_rows;
    col += step_cols;
    if (col >= l.inner) {
      col -= l.inner;
      ++row;
    }
  }
}

template <typename T>
void ReadSampledAs(const runtime::Tensor& t, const SampleLayout& l, std::vector<double>& out) {
  const char* data = t.data.data();
  ForEachSampled(l, [&](std::uint64_t flat) {
    T x;
    std::memcpy(&x, data + flat * sizeof(T), sizeof(T));
    auto v = static_cast<double>(x);
    if (!std::isnan(v)) {
      out.push_back(v);
    }
  });
}

// Appends the sampled values that are numbers to out, read as Tensor::ValueAsDouble reads them;
// the common types without a call and a switch per value.
void ReadSampled(const runtime::Tensor& t, const SampleLayout& l, std::vector<double>& out) {
  switch (t.dtype) {
    case runtime::DataType::kFp32:
      ReadSampledAs<float>(t, l, out);
      return;
    case runtime::DataType::kFp64:
      ReadSampledAs<double>(t, l, out);
      return;
    case runtime::DataType::kUint8:
      ReadSampledAs<std::uint8_t>(t, l, out);
      return;
    default:
      ForEachSampled(l, [&](std::uint64_t flat) {
        double v = t.ValueAsDouble(static_cast<std::int64_t>(flat));
        if (!std::isnan(v)) {
          out.push_back(v);
        }
      });
  }
}

}  // namespace

void VersionMonitor::Reservoir::Offer(const double* v, std::size_t n, std::size_t cap,
                                      std::minstd_rand& rng) {
  std::size_t j = 0;
  for (; j < n && values_.size() < cap; ++j) {  // filling up
    values_.push_back(v[j]);
    if (values_.size() == cap) {
      w_ = std::exp(std::log(OpenUnit(rng)) / static_cast<double>(cap));
      DrawNext(seen_ + j, rng);
    }
  }
  const std::uint64_t first = seen_ + j;  // the number of v[j]
  seen_ += n;
  if (cap == 0 || values_.size() < cap) {
    return;  // nothing to keep, or every value was kept
  }
  // Full: of v[j..n), only the value numbered next_ (and the next ones drawn) is kept.
  while (next_ < seen_) {
    values_[std::uniform_int_distribution<std::size_t>(0, cap - 1)(rng)] = v[j + (next_ - first)];
    w_ *= std::exp(std::log(OpenUnit(rng)) / static_cast<double>(cap));
    DrawNext(next_, rng);
  }
}

void VersionMonitor::Reservoir::DrawNext(std::uint64_t after, std::minstd_rand& rng) {
  // The values skipped before the next one kept: geometric, with W the chance of keeping one.
  double skip = std::floor(std::log(OpenUnit(rng)) / std::log1p(-w_));
  constexpr double kNever = 1e18;  // W so small that nothing more is kept (or it rounded to 0)
  next_ = after + 1 + static_cast<std::uint64_t>(skip < kNever ? skip : kNever);
}

std::vector<double> VersionMonitor::Reservoir::Take() {
  std::vector<double> out = std::move(values_);
  values_.clear();
  seen_ = 0;
  next_ = 0;
  w_ = 0;
  return out;
}

VersionMonitor::VersionMonitor(std::string model, std::string version,
                               std::vector<BaselineFeature> features,
                               std::optional<PredictionSpec> predictions, std::int64_t start_ms,
                               MonitorOptions options)
    : model_(std::move(model)),
      version_(std::move(version)),
      options_(options),
      start_ms_(start_ms) {
  static_assert(sizeof(Shard) % 128 == 0);
  if (kLatencyBoundsUs.size() + 1 > kMaxBuckets) {
    std::abort();  // a programming error: the buckets need more room
  }
  chosen_at_ = steady_clock::now();
  for (auto& f : features) {
    FeatureState s;
    s.current.edges = f.histogram.edges;
    s.current.counts.assign(f.histogram.counts.size(), 0);
    s.baseline = std::move(f);
    features_.push_back(std::move(s));
  }
  if (predictions) {
    baseline_predictions_ = predictions;
    predictions->histogram.counts.assign(predictions->histogram.counts.size(), 0);
    predictions_ = std::move(predictions);
  }
}

void VersionMonitor::Sample(const FeatureState& f, const runtime::Tensor& t, std::uint64_t request,
                            std::vector<double>& out) const {
  const auto& shape = t.shape;
  SampleLayout l;
  std::uint64_t count = static_cast<std::uint64_t>(t.ElementCount());  // elements of the feature
  if (f.baseline.axis) {
    std::size_t axis = *f.baseline.axis;
    if (axis >= shape.size() || f.baseline.index < 0 || f.baseline.index >= shape[axis]) {
      return;  // the tensor does not have this feature's coordinate
    }
    l.dim = static_cast<std::uint64_t>(shape[axis]);
    l.inner = Elements(shape, axis + 1, shape.size());
    l.index = static_cast<std::uint64_t>(f.baseline.index);
    count = Elements(shape, 0, axis) * l.inner;
  }
  if (count == 0) {
    return;
  }
  l.k = std::min<std::uint64_t>(count, options_.sample_per_request);
  l.stride = count / l.k;
  l.offset = l.stride > 1 ? (request * 7919) % l.stride : 0;
  ReadSampled(t, l, out);
}

void VersionMonitor::ObserveInputs(const std::vector<runtime::Tensor>& inputs) {
  const auto start = steady_clock::now();
  std::uint64_t request = 0;  // moves the sample's offset from one request to the next
  {
    std::lock_guard lock(mu_);
    request = observed_++;
    ++observed_since_choice_;
  }
  // The values are read and counted into bins without the lock (the features' baselines do not
  // change); under it, the request's counts are added and the values offered to the reservoirs,
  // which draw only for the values they keep. So concurrent requests wait for each other for a
  // few additions, not for every value.
  std::vector<double> values;                          // the features' values, one after another
  std::vector<std::size_t> ends(features_.size(), 0);  // values of feature i end at ends[i]
  std::vector<std::uint64_t> counts;                   // the features' bins, one after another
  values.reserve(features_.size() * std::min<std::size_t>(options_.sample_per_request, 4096));
  for (std::size_t i = 0; i < features_.size(); ++i) {
    const FeatureState& f = features_[i];
    std::size_t begin = values.size();
    if (const runtime::Tensor* t = Named(inputs, f.baseline.tensor); t && Readable(*t)) {
      Sample(f, *t, request, values);
    }
    ends[i] = values.size();
    const Histogram& h = f.baseline.histogram;  // the current one's bins
    std::size_t first = counts.size();
    counts.resize(first + h.counts.size(), 0);
    for (std::size_t j = begin; j < ends[i] && !h.counts.empty(); ++j) {
      ++counts[first + h.Bin(values[j])];
    }
  }
  std::lock_guard lock(mu_);
  std::size_t begin = 0;
  std::size_t first = 0;
  for (std::size_t i = 0; i < features_.size(); ++i) {
    FeatureState& f = features_[i];
    for (std::size_t b = 0; b < f.current.counts.size(); ++b) {
      f.current.counts[b] += counts[first + b];
    }
    first += f.current.counts.size();
    f.reservoir.Offer(values.data() + begin, ends[i] - begin, options_.ks_points, rng_);
    begin = ends[i];
  }
  observing_ += steady_clock::now() - start;
}

void VersionMonitor::ObserveOutputs(const std::vector<runtime::Tensor>& outputs) {
  const auto start = steady_clock::now();
  std::lock_guard lock(mu_);
  CountPredictions(outputs);
  observing_ += steady_clock::now() - start;
}

void VersionMonitor::CountPredictions(const std::vector<runtime::Tensor>& outputs) {
  if (!predictions_) {
    return;
  }
  const runtime::Tensor* t = Named(outputs, predictions_->tensor);
  if (t == nullptr || !Readable(*t)) {
    return;
  }
  auto n = static_cast<std::uint64_t>(t->ElementCount());
  if (predictions_->classes) {
    std::uint64_t labels = predictions_->labels.size();
    if (t->shape.empty() || t->shape.back() != static_cast<std::int64_t>(labels) || labels == 0) {
      return;
    }
    for (std::uint64_t row = 0; row + labels <= n; row += labels) {
      std::uint64_t best = 0;
      double best_v = t->ValueAsDouble(static_cast<std::int64_t>(row));
      for (std::uint64_t c = 1; c < labels; ++c) {
        double v = t->ValueAsDouble(static_cast<std::int64_t>(row + c));
        if (v > best_v) {
          best_v = v;
          best = c;
        }
      }
      ++predictions_->histogram.counts[best];
    }
    return;
  }
  std::uint64_t k = std::min<std::uint64_t>(n, options_.sample_per_request);
  for (std::uint64_t i = 0; i < k; ++i) {
    double v = t->ValueAsDouble(static_cast<std::int64_t>(i * (n / k)));
    if (!std::isnan(v)) {
      predictions_->histogram.Add(v);
      score_reservoir_.Offer(&v, 1, options_.ks_points, rng_);
    }
  }
}

VersionMonitor::Shard& VersionMonitor::Mine(std::array<Shard, kShards>& shards) {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shards[index];
}

bool VersionMonitor::ShouldObserve() {
  std::uint64_t ticket = Mine(shards_).tickets.fetch_add(1, std::memory_order_relaxed);
  return ticket % stride_.load(std::memory_order_relaxed) == 0;
}

void VersionMonitor::Finish(bool ok, std::chrono::nanoseconds latency) {
  auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency.count()));
  auto bucket = std::lower_bound(kLatencyBoundsUs.begin(), kLatencyBoundsUs.end(), ns / 1000);
  Shard& s = Mine(shards_);
  s.latency[static_cast<std::size_t>(bucket - kLatencyBoundsUs.begin())].fetch_add(
      1, std::memory_order_relaxed);
  s.latency_ns.fetch_add(ns, std::memory_order_relaxed);
  if (!ok) {
    s.errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (s.requests.fetch_add(1, std::memory_order_relaxed) % kWindow == kWindow - 1) {
    std::lock_guard lock(mu_);
    ChooseStride(steady_clock::now());
  }
}

VersionMonitor::Totals VersionMonitor::Sum() const {
  Totals t;
  for (const Shard& s : shards_) {
    t.requests += s.requests.load(std::memory_order_relaxed);
    t.errors += s.errors.load(std::memory_order_relaxed);
    t.latency_ns += s.latency_ns.load(std::memory_order_relaxed);
    for (std::size_t b = 0; b < kMaxBuckets; ++b) {
      t.latency[b] += s.latency[b].load(std::memory_order_relaxed);
    }
  }
  return t;
}

void VersionMonitor::ChooseStride(steady_clock::time_point now) {
  const Totals totals = Sum();
  const auto requests = static_cast<double>(totals.requests - at_choice_.requests);
  const auto latency = static_cast<double>(totals.latency_ns - at_choice_.latency_ns);
  std::uint64_t stride = stride_.load(std::memory_order_relaxed);
  if (observed_since_choice_ > 0 && requests > 0) {
    static const double kThreads = std::max(1u, std::thread::hardware_concurrency());
    double per_observed = static_cast<double>(observing_.count()) /
                          static_cast<double>(observed_since_choice_);
    double serving =
        std::min(latency, static_cast<double>((now - chosen_at_).count()) * kThreads);
    double affordable = options_.budget * serving / std::max(per_observed, 1.0);  // observations
    stride = affordable >= requests
                 ? 1
                 : static_cast<std::uint64_t>(std::ceil(requests / std::max(affordable, 1.0)));
  }
  stride = std::clamp<std::uint64_t>(stride, 1, stride_cap_);
  if (stride != stride_.load(std::memory_order_relaxed)) {
    stride_.store(stride, std::memory_order_relaxed);
  }
  at_choice_ = totals;
  chosen_at_ = now;
  observed_since_choice_ = 0;
  observing_ = {};
}

IntervalReport VersionMonitor::Cut(std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  IntervalReport r;
  r.model = model_;
  r.version = version_;
  r.start_ms = start_ms_;
  r.end_ms = now_ms;
  const Totals totals = Sum();
  r.counts.requests = totals.requests - at_cut_.requests;
  r.counts.errors = totals.errors - at_cut_.errors;
  r.counts.latency_sum_us = (totals.latency_ns - at_cut_.latency_ns) / 1000;
  r.counts.latency_bounds_us = kLatencyBoundsUs;
  for (std::size_t b = 0; b <= kLatencyBoundsUs.size(); ++b) {
    r.counts.latency_counts.push_back(totals.latency[b] - at_cut_.latency[b]);
  }
  at_cut_ = totals;
  r.observed = observed_;
  bool enough = observed_ >= options_.min_requests;
  auto judge = [&](const std::string& name, const Histogram& baseline, const Histogram& current,
                   std::vector<double> reservoir, bool histogram_ks) {
    FeatureDrift d;
    d.feature = name;
    d.values = current.Total();
    if (enough && d.values > 0) {
      auto psi = PopulationStabilityIndex(baseline.counts, current.counts);
      if (psi) {
        d.psi = *psi;
        if (histogram_ks) {
          if (auto ks = KolmogorovSmirnov(baseline, std::move(reservoir)); ks) {
            d.ks = *ks;
          }
        }
        d.level = Judge(*d.psi, d.ks, options_.thresholds);
      }
    }
    DriftLevel& last = last_level_[name];
    if (d.psi && d.level == DriftLevel::kAlert && last != DriftLevel::kAlert) {
      r.new_alerts.push_back(name);
    }
    if (d.psi) {
      last = d.level;
    }
    r.level = Worse(r.level, d.level);
    r.drift.push_back(std::move(d));
  };
  for (auto& f : features_) {
    judge(f.baseline.name, f.baseline.histogram, f.current, f.reservoir.Take(), true);
    std::fill(f.current.counts.begin(), f.current.counts.end(), 0);
  }
  if (predictions_) {
    r.predictions = predictions_;
    std::vector<double> scores = score_reservoir_.Take();
    if (baseline_predictions_ && baseline_predictions_->has_baseline) {
      judge("predictions", baseline_predictions_->histogram, predictions_->histogram,
            std::move(scores), !predictions_->classes);
    }
    std::fill(predictions_->histogram.counts.begin(), predictions_->histogram.counts.end(), 0);
  }
  // At the rate of this interval, the next must observe enough requests to judge drift.
  stride_cap_ = std::clamp<std::uint64_t>(r.counts.requests / (4 * std::max<std::uint64_t>(
                                                                   options_.min_requests, 1)),
                                          1, kMaxStride);
  ChooseStride(steady_clock::now());
  observed_ = 0;
  start_ms_ = now_ms;
  return r;
}

}  // namespace airlock::monitor
