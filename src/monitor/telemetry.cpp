#include "monitor/telemetry.hpp"

#include <algorithm>
#include <cmath>

#include "monitor/json_numbers.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::monitor {
namespace {

using nlohmann::json;

tl::unexpected<Error> Bad(const std::string& what) {
  return Fail(ErrorCode::kInvalidArgument, "baseline: " + what);
}

Result<Histogram> ReadHistogram(const json& j, const std::string& where) {
  Histogram h;
  try {
    h.edges = j.at("edges").get<std::vector<double>>();
    h.counts = json_numbers::Unsigneds(j.at("counts"));
  } catch (const json::exception&) {
    return Bad(where + " needs numeric \"edges\" and non-negative integer \"counts\"");
  }
  if (auto ok = h.Check(); !ok) {
    return Bad(where + ": " + ok.error().message());
  }
  return h;
}

json HistogramJson(const PredictionSpec& p) {
  json j = {{"tensor", p.tensor}, {"kind", p.classes ? "class" : "score"},
            {"counts", p.histogram.counts}};
  if (p.classes) {
    j["labels"] = p.labels;
  } else {
    j["edges"] = p.histogram.edges;
  }
  return j;
}

}  // namespace

Result<Baseline> Baseline::FromJson(const json& doc) {
  if (trust::StringOr(doc, "schema") != "airlock.baseline.v1") {
    return Bad("want a JSON object with \"schema\": \"airlock.baseline.v1\"");
  }
  Baseline b;
  const json features = doc.value("features", json::array());
  if (!features.is_array()) {
    return Bad("\"features\" must be a list");
  }
  for (const auto& f : features) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("tensor") ||
        !f["tensor"].is_string()) {
      return Bad("each feature needs \"name\" and \"tensor\"");
    }
    BaselineFeature bf;
    bf.name = f["name"].get<std::string>();
    bf.tensor = f["tensor"].get<std::string>();
    if (f.contains("axis") && !f["axis"].is_null()) {
      if (!f["axis"].is_number_unsigned() || !f.contains("index") ||
          !f["index"].is_number_integer()) {
        return Bad("feature " + bf.name + ": \"axis\" and \"index\" must be non-negative integers");
      }
      bf.axis = f["axis"].get<std::size_t>();
      bf.index = json_numbers::Integer(f["index"]);
    }
    AIRLOCK_ASSIGN_OR_RETURN(bf.histogram, ReadHistogram(f, "feature " + bf.name));
    b.features.push_back(std::move(bf));
  }
  if (doc.contains("predictions")) {
    const json& p = doc["predictions"];
    if (!p.is_object() || !p.contains("tensor") || !p["tensor"].is_string()) {
      return Bad("predictions need a \"tensor\"");
    }
    PredictionSpec spec;
    spec.tensor = p["tensor"].get<std::string>();
    spec.has_baseline = true;
    std::string kind = trust::StringOr(p, "kind");
    if (kind == "class") {
      try {
        spec.labels = p.at("labels").get<std::vector<std::string>>();
        spec.histogram.counts = json_numbers::Unsigneds(p.at("counts"));
      } catch (const json::exception&) {
        return Bad("class predictions need \"labels\" (strings) and \"counts\" (integers)");
      }
      if (spec.labels.empty() || spec.labels.size() != spec.histogram.counts.size()) {
        return Bad("class predictions need as many \"counts\" as \"labels\"");
      }
    } else if (kind == "score") {
      spec.classes = false;
      AIRLOCK_ASSIGN_OR_RETURN(spec.histogram, ReadHistogram(p, "predictions"));
    } else {
      return Bad("predictions \"kind\" must be \"class\" or \"score\"");
    }
    b.predictions = std::move(spec);
  }
  if (doc.contains("thresholds")) {
    const json& t = doc["thresholds"];
    if (!t.is_object()) {
      return Bad("\"thresholds\" must be an object");
    }
    for (auto [key, field] : {std::pair{"psi_watch", &DriftThresholds::psi_watch},
                              std::pair{"psi_alert", &DriftThresholds::psi_alert},
                              std::pair{"ks_p_value", &DriftThresholds::ks_p_value}}) {
      if (t.contains(key)) {
        if (!t[key].is_number() || t[key].get<double>() <= 0) {
          return Bad(std::string("thresholds.") + key + " must be a positive number");
        }
        b.thresholds.*field = t[key].get<double>();
      }
    }
    if (b.thresholds.psi_alert < b.thresholds.psi_watch) {
      return Bad("thresholds.psi_alert must not be below thresholds.psi_watch");
    }
  }
  return b;
}

json IntervalReport::ToJson() const {
  json drift_json = json::array();
  for (const auto& d : drift) {
    json j = {{"feature", d.feature}, {"values", d.values}, {"level", DriftLevelName(d.level)}};
    if (d.psi) {
      j["psi"] = *d.psi;
    }
    if (d.ks) {
      j["ks"] = d.ks->statistic;
      j["ks_p"] = d.ks->p_value;
    }
    drift_json.push_back(std::move(j));
  }
  json j = {{"schema", kTelemetrySchema},
            {"device", device},
            {"model", model},
            {"version", version},
            {"start_ms", start_ms},
            {"end_ms", end_ms},
            {"requests", counts.requests},
            {"errors", counts.errors},
            {"latency",
             {{"bounds_us", counts.latency_bounds_us},
              {"counts", counts.latency_counts},
              {"sum_us", counts.latency_sum_us}}},
            {"observed", observed},
            {"drift", std::move(drift_json)},
            {"level", DriftLevelName(level)}};
  if (predictions) {
    j["predictions"] = HistogramJson(*predictions);
  }
  if (!new_alerts.empty()) {
    j["new_alerts"] = new_alerts;
  }
  return j;
}

Result<AlertReport> AlertReport::FromJson(const json& j, std::int64_t created_ms) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the payload is not a JSON object");
  }
  try {
    AlertReport a{.device = j.at("device").get<std::string>(),
                  .model = j.at("model").get<std::string>(),
                  .version = j.at("version").get<std::string>(),
                  .feature = j.at("feature").get<std::string>(),
                  .psi = std::nullopt,
                  .end_ms = j.value("end_ms", created_ms)};
    if (j.contains("psi") && j["psi"].is_number()) {
      a.psi = j["psi"].get<double>();
    }
    return a;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("alert payload: ") + e.what());
  }
}

Result<IntervalReport> IntervalReport::FromJson(const json& j) {
  auto bad = [](const std::string& m) {
    return Fail(ErrorCode::kInvalidArgument, "telemetry record: " + m);
  };
  if (trust::StringOr(j, "schema") != kTelemetrySchema) {
    return bad(std::string("want \"schema\": \"") + std::string(kTelemetrySchema) + "\"");
  }
  IntervalReport r;
  try {
    r.device = j.at("device").get<std::string>();
    r.model = j.at("model").get<std::string>();
    r.version = j.at("version").get<std::string>();
    r.start_ms = json_numbers::Integer(j.at("start_ms"));
    r.end_ms = json_numbers::Integer(j.at("end_ms"));
    r.counts.requests = json_numbers::Unsigned(j.at("requests"));
    r.counts.errors = json_numbers::Unsigned(j.at("errors"));
    const json& lat = j.at("latency");
    r.counts.latency_bounds_us = json_numbers::Unsigneds(lat.at("bounds_us"));
    r.counts.latency_counts = json_numbers::Unsigneds(lat.at("counts"));
    r.counts.latency_sum_us = json_numbers::Unsigned(lat.at("sum_us"));
    r.observed = json_numbers::UnsignedOr(j, "observed", 0);
    for (const auto& d : j.at("drift")) {
      FeatureDrift f;
      f.feature = d.at("feature").get<std::string>();
      f.values = json_numbers::UnsignedOr(d, "values", 0);
      if (d.contains("psi")) {
        f.psi = d["psi"].get<double>();
      }
      if (d.contains("ks")) {
        f.ks = KsResult{d["ks"].get<double>(), d.value("ks_p", 1.0)};
      }
      std::string level = d.value("level", "ok");
      f.level = level == "alert" ? DriftLevel::kAlert
                : level == "watch" ? DriftLevel::kWatch
                                   : DriftLevel::kOk;
      r.level = Worse(r.level, f.level);
      r.drift.push_back(std::move(f));
    }
    if (j.contains("predictions")) {
      const json& p = j["predictions"];
      PredictionSpec s;
      s.tensor = p.at("tensor").get<std::string>();
      s.classes = p.at("kind").get<std::string>() == "class";
      s.histogram.counts = json_numbers::Unsigneds(p.at("counts"));
      if (s.classes) {
        s.labels = p.at("labels").get<std::vector<std::string>>();
      } else {
        s.histogram.edges = p.at("edges").get<std::vector<double>>();
      }
      r.predictions = std::move(s);
    }
    if (j.contains("new_alerts")) {
      r.new_alerts = j["new_alerts"].get<std::vector<std::string>>();
    }
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  if (r.counts.latency_counts.size() != r.counts.latency_bounds_us.size() + 1) {
    return bad("latency needs one more count than bounds");
  }
  return r;
}

std::optional<double> LatencyPercentileUs(const std::vector<std::uint64_t>& bounds_us,
                                          const std::vector<std::uint64_t>& counts, double q) {
  std::uint64_t total = 0;
  for (auto c : counts) {
    total += c;
  }
  if (total == 0 || counts.size() != bounds_us.size() + 1) {
    return std::nullopt;
  }
  double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  double below = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    double c = static_cast<double>(counts[i]);
    if (c > 0 && below + c >= rank) {
      double lo = i == 0 ? 0.0 : static_cast<double>(bounds_us[i - 1]);
      if (i == bounds_us.size()) {
        return lo;
      }
      double hi = static_cast<double>(bounds_us[i]);
      return lo + (hi - lo) * (rank - below) / c;
    }
    below += c;
  }
  return static_cast<double>(bounds_us.back());
}

}  // namespace airlock::monitor
