#include "pkg/lineage.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>

#include "core/digest.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxMetricsAnnotation = 64 * 1024;

bool IsFiniteNumber(const json& v) {
  return v.is_number_integer() || v.is_number_unsigned() ||
         (v.is_number_float() && std::isfinite(v.get<double>()));
}

// A text field of the section: a string, or an integer written without quotes (a run number).
Result<std::string> TextField(const json& section, const char* key, std::string_view origin) {
  if (!section.contains(key) || section[key].is_null()) {
    return std::string();
  }
  const json& v = section[key];
  if (v.is_string()) {
    return v.get<std::string>();
  }
  if (v.is_number_integer() || v.is_number_unsigned()) {
    return v.dump();
  }
  return Fail(ErrorCode::kInvalidArgument, std::string(origin) + ": lineage." + key +
                                               " must be a string (put it in quotes), not " +
                                               v.dump());
}

}  // namespace

Status CheckDatasetDigest(std::string_view value, std::string_view where) {
  if (Digest::Parse(value)) {
    return {};
  }
  return Fail(ErrorCode::kInvalidArgument,
              std::string(where) + ": \"" + std::string(value) +
                  "\" is not a dataset digest; want sha256:<64 lowercase hex> (the output of "
                  "sha256sum, prefixed with sha256:)");
}

Result<Lineage> Lineage::FromSpec(const json& section, std::string_view origin) {
  const std::string at(origin);
  if (!section.is_object()) {
    return Fail(ErrorCode::kInvalidArgument,
                at + ": \"lineage\" must be a mapping with training_run, dataset_digest, "
                     "source_revision and metrics");
  }
  for (const auto& [key, value] : section.items()) {
    if (key != "training_run" && key != "dataset_digest" && key != "source_revision" &&
        key != "metrics") {
      return Fail(ErrorCode::kInvalidArgument,
                  at + ": unknown key lineage." + key +
                      " (known: training_run, dataset_digest, source_revision, metrics)");
    }
  }
  Lineage out;
  AIRLOCK_ASSIGN_OR_RETURN(out.training_run, TextField(section, "training_run", origin));
  AIRLOCK_ASSIGN_OR_RETURN(out.source_revision, TextField(section, "source_revision", origin));
  AIRLOCK_ASSIGN_OR_RETURN(out.dataset_digest, TextField(section, "dataset_digest", origin));
  if (!out.dataset_digest.empty()) {
    AIRLOCK_RETURN_IF_ERROR(
        CheckDatasetDigest(out.dataset_digest, at + ": lineage.dataset_digest"));
  }
  if (section.contains("metrics") && !section["metrics"].is_null()) {
    const json& m = section["metrics"];
    if (!m.is_object()) {
      return Fail(ErrorCode::kInvalidArgument,
                  at + ": lineage.metrics must be a mapping of names to numbers");
    }
    for (const auto& [name, value] : m.items()) {
      if (!IsFiniteNumber(value)) {
        return Fail(ErrorCode::kInvalidArgument,
                    at + ": lineage.metrics." + name + " must be a finite number, not " +
                        (value.is_string() ? "the string \"" + value.get<std::string>() + "\""
                                           : value.dump()));
      }
      out.metrics[name] = value;
    }
  }
  return out;
}

Status Lineage::Check() const {
  if (!dataset_digest.empty()) {
    AIRLOCK_RETURN_IF_ERROR(CheckDatasetDigest(dataset_digest, "lineage.dataset_digest"));
  }
  if (!metrics.is_object()) {
    return Fail(ErrorCode::kInvalidArgument,
                "lineage.metrics must be a mapping of names to numbers");
  }
  for (const auto& [name, value] : metrics.items()) {
    if (!IsFiniteNumber(value)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "lineage.metrics." + name + " must be a finite number, not " + value.dump());
    }
  }
  return {};
}

Annotations Lineage::ToAnnotations() const {
  Annotations out;
  if (!training_run.empty()) {
    out[std::string(annotation::kLineageTrainingRun)] = training_run;
  }
  if (!dataset_digest.empty()) {
    out[std::string(annotation::kLineageDatasetDigest)] = dataset_digest;
  }
  if (!source_revision.empty()) {
    out[std::string(annotation::kLineageSourceRevision)] = source_revision;
  }
  if (!metrics.empty()) {
    out[std::string(annotation::kLineageMetrics)] = ToBytes(metrics);
  }
  return out;
}

Result<std::optional<Lineage>> Lineage::FromAnnotations(const Annotations& annotations) {
  Lineage out;
  out.training_run = AnnotationOf(annotations, annotation::kLineageTrainingRun);
  out.dataset_digest = AnnotationOf(annotations, annotation::kLineageDatasetDigest);
  out.source_revision = AnnotationOf(annotations, annotation::kLineageSourceRevision);
  std::string metrics = AnnotationOf(annotations, annotation::kLineageMetrics);
  if (!metrics.empty()) {
    auto parsed =
        trust::ParseJson(metrics, kMaxMetricsAnnotation, std::string(annotation::kLineageMetrics));
    if (!parsed) {
      return Fail(ErrorCode::kCorrupt, parsed.error().message());
    }
    if (!parsed->is_object()) {
      return Fail(ErrorCode::kCorrupt,
                  std::string(annotation::kLineageMetrics) + " is not a JSON object");
    }
    for (const auto& [name, value] : parsed->items()) {
      if (!IsFiniteNumber(value)) {
        return Fail(ErrorCode::kCorrupt, std::string(annotation::kLineageMetrics) + ": metric " +
                                             name + " is not a number");
      }
    }
    out.metrics = std::move(*parsed);
  }
  if (out.training_run.empty() && out.dataset_digest.empty() && out.source_revision.empty() &&
      out.metrics.empty()) {
    return std::optional<Lineage>();
  }
  return std::optional<Lineage>(std::move(out));
}

json Lineage::ToJson() const {
  json out = json::object();
  if (!training_run.empty()) out["training_run"] = training_run;
  if (!dataset_digest.empty()) out["dataset_digest"] = dataset_digest;
  if (!source_revision.empty()) out["source_revision"] = source_revision;
  if (!metrics.empty()) out["metrics"] = metrics;
  return out;
}

Result<std::pair<std::string, json>> ParseMetric(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "--metric " + std::string(text) + ": " + why +
                                                 " (want NAME=NUMBER, e.g. "
                                                 "accuracy=0.97)");
  };
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return bad("no NAME=");
  }
  std::string name(text.substr(0, eq));
  std::string_view value = text.substr(eq + 1);
  const char* first = value.data();
  const char* last = value.data() + value.size();
  if (value.empty()) {
    return bad("no value");
  }
  std::int64_t integer = 0;
  if (auto [end, ec] = std::from_chars(first, last, integer); ec == std::errc() && end == last) {
    return std::pair{name, json(integer)};
  }
  double number = 0;
  auto [end, ec] = std::from_chars(first, last, number);
  if (ec != std::errc() || end != last || !std::isfinite(number)) {
    return bad("\"" + std::string(value) + "\" is not a finite number");
  }
  return std::pair{name, json(number)};
}

}  // namespace airlock::pkg
