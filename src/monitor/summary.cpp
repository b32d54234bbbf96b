#include "monitor/summary.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "core/time.hpp"

namespace airlock::monitor {
namespace {

using nlohmann::json;

void AddPredictions(std::optional<PredictionSpec>& sum, const PredictionSpec& p) {
  if (!sum) {
    sum = p;
    return;
  }
  if (sum->classes != p.classes || sum->labels != p.labels ||
      sum->histogram.counts.size() != p.histogram.counts.size()) {
    return;  // another shape (should not happen within a version)
  }
  for (std::size_t i = 0; i < p.histogram.counts.size(); ++i) {
    sum->histogram.counts[i] += p.histogram.counts[i];
  }
}

// Natural order: runs of digits compare as numbers ("1.9.0" before "1.10.0").
struct NaturalLess {
  bool operator()(const std::string& a, const std::string& b) const {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
      if (std::isdigit(static_cast<unsigned char>(a[i])) &&
          std::isdigit(static_cast<unsigned char>(b[j]))) {
        std::size_t i2 = i, j2 = j;
        while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
        while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
        std::string_view x = std::string_view(a).substr(i, i2 - i);
        std::string_view y = std::string_view(b).substr(j, j2 - j);
        while (x.size() > 1 && x.front() == '0') x.remove_prefix(1);
        while (y.size() > 1 && y.front() == '0') y.remove_prefix(1);
        if (x.size() != y.size()) return x.size() < y.size();
        if (x != y) return x < y;
        i = i2;
        j = j2;
      } else {
        if (a[i] != b[j]) return a[i] < b[j];
        ++i;
        ++j;
      }
    }
    return a.size() - i < b.size() - j;
  }
};

std::optional<double> Optional(const std::optional<double>& us) {
  return us ? std::optional<double>(*us / 1000.0) : std::nullopt;
}

}  // namespace

double VersionSummary::Throughput() const {
  double seconds = static_cast<double>(end_ms - start_ms) / 1000.0;
  return seconds > 0 ? static_cast<double>(requests) / seconds : 0.0;
}

json VersionSummary::ToJson() const {
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  json drift_json = json::array();
  for (const auto& f : drift) {
    drift_json.push_back({{"feature", f.feature},
                          {"devices", f.devices},
                          {"psi_mean", f.psi_mean},
                          {"psi_max", f.psi_max},
                          {"level", DriftLevelName(f.level)},
                          {"worst_level", DriftLevelName(f.worst_level)}});
  }
  json j = {
      {"version", version},
      {"requests", requests},
      {"errors", errors},
      {"observed", observed},
      {"error_rate", requests ? static_cast<double>(errors) / static_cast<double>(requests) : 0.0},
      {"throughput_rps", Throughput()},
      {"start_ms", start_ms},
      {"end_ms", end_ms},
      {"devices", devices},
      {"intervals", intervals},
      {"latency_ms", {{"p50", opt(p50_ms)}, {"p95", opt(p95_ms)}, {"p99", opt(p99_ms)}}},
      {"drift", std::move(drift_json)}};
  if (predictions) {
    json p = {{"kind", predictions->classes ? "class" : "score"},
              {"counts", predictions->histogram.counts}};
    if (predictions->classes) {
      p["labels"] = predictions->labels;
    } else {
      p["edges"] = predictions->histogram.edges;
    }
    j["predictions"] = std::move(p);
  }
  return j;
}

std::vector<VersionSummary> Summarize(const std::string& model,
                                      const std::vector<IntervalReport>& reports) {
  struct Acc {
    VersionSummary s;
    std::set<std::string> devices;
    std::vector<std::uint64_t> bounds, latency;
    std::map<std::string, const IntervalReport*> latest;  // per device
    std::map<std::string, DriftLevel> worst;              // per feature
  };
  std::map<std::string, Acc, NaturalLess> by_version;
  for (const auto& r : reports) {
    if (r.model != model) {
      continue;
    }
    Acc& a = by_version[r.version];
    VersionSummary& s = a.s;
    if (s.intervals == 0) {
      s.version = r.version;
      s.start_ms = r.start_ms;
      s.end_ms = r.end_ms;
      a.bounds = r.counts.latency_bounds_us;
      a.latency.assign(r.counts.latency_counts.size(), 0);
    }
    ++s.intervals;
    s.requests += r.counts.requests;
    s.errors += r.counts.errors;
    s.observed += r.observed;
    s.start_ms = std::min(s.start_ms, r.start_ms);
    s.end_ms = std::max(s.end_ms, r.end_ms);
    a.devices.insert(r.device);
    if (r.counts.latency_bounds_us == a.bounds &&
        r.counts.latency_counts.size() == a.latency.size()) {
      for (std::size_t i = 0; i < a.latency.size(); ++i) {
        a.latency[i] += r.counts.latency_counts[i];
      }
    }
    if (r.predictions) {
      AddPredictions(s.predictions, *r.predictions);
    }
    for (const auto& d : r.drift) {
      a.worst[d.feature] = Worse(a.worst[d.feature], d.level);
    }
    // The latest interval of each device that judged anything.
    bool judged = std::any_of(r.drift.begin(), r.drift.end(), [](const auto& d) { return d.psi; });
    const IntervalReport*& latest = a.latest[r.device];
    if (judged && (latest == nullptr || r.end_ms > latest->end_ms)) {
      latest = &r;
    }
  }
  std::vector<VersionSummary> out;
  for (auto& [version, a] : by_version) {
    VersionSummary& s = a.s;
    s.devices = a.devices.size();
    s.p50_ms = Optional(LatencyPercentileUs(a.bounds, a.latency, 0.50));
    s.p95_ms = Optional(LatencyPercentileUs(a.bounds, a.latency, 0.95));
    s.p99_ms = Optional(LatencyPercentileUs(a.bounds, a.latency, 0.99));
    std::map<std::string, FeatureSummary> features;
    for (const auto& [device, latest] : a.latest) {
      if (latest == nullptr) {
        continue;
      }
      for (const auto& d : latest->drift) {
        if (!d.psi) {
          continue;
        }
        FeatureSummary& f = features[d.feature];
        f.feature = d.feature;
        f.psi_mean += *d.psi;
        f.psi_max = std::max(f.psi_max, *d.psi);
        f.level = Worse(f.level, d.level);
        ++f.devices;
      }
    }
    for (const auto& [name, worst] : a.worst) {
      FeatureSummary& f = features[name];
      f.feature = name;
      f.worst_level = worst;
      if (f.devices > 0) {
        f.psi_mean /= static_cast<double>(f.devices);
      }
    }
    for (auto& [name, f] : features) {
      s.drift.push_back(std::move(f));
    }
    out.push_back(std::move(s));
  }
  return out;
}

json Series(const std::string& model, const std::vector<IntervalReport>& reports,
            std::int64_t since_ms, std::int64_t step_ms) {
  std::map<std::int64_t, std::vector<IntervalReport>> steps;
  for (const auto& r : reports) {
    steps[std::max<std::int64_t>(0, r.end_ms - since_ms) / step_ms].push_back(r);
  }
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  json points = json::array();
  for (const auto& [step, in] : steps) {
    for (const auto& v : Summarize(model, in)) {
      double psi_max = 0;
      DriftLevel level = DriftLevel::kOk;
      for (const auto& f : v.drift) {
        psi_max = std::max(psi_max, f.psi_max);
        level = Worse(level, f.worst_level);
      }
      points.push_back(
          {{"t_ms", since_ms + step * step_ms},
           {"version", v.version},
           {"requests", v.requests},
           {"errors", v.errors},
           {"throughput_rps",
            static_cast<double>(v.requests) * 1000.0 / static_cast<double>(step_ms)},
           {"latency_ms", {{"p50", opt(v.p50_ms)}, {"p95", opt(v.p95_ms)}, {"p99", opt(v.p99_ms)}}},
           {"psi_max", v.drift.empty() ? json(nullptr) : json(psi_max)},
           {"drift_level", DriftLevelName(level)}});
    }
  }
  return {{"step_ms", step_ms}, {"points", std::move(points)}};
}

Result<std::int64_t> ParseStep(std::string_view text, std::int64_t window_ms) {
  auto step = ParseDuration(text);
  if (!step || step->count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "step: a duration such as 30s, 1m or 1h is needed");
  }
  if (window_ms / step->count() >= kMaxSeriesSteps) {
    return Fail(ErrorCode::kInvalidArgument, "step: the window holds at most " +
                                                 std::to_string(kMaxSeriesSteps) +
                                                 " steps; take a longer step or a shorter since");
  }
  return step->count();
}

}  // namespace airlock::monitor
