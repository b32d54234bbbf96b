#pragma once
// The lineage of a model version: which training run made it, from which data and which source
// revision, and how it measured. A model registry needs it to tell versions apart and to trace a
// device's model back to its training.
//
// It is written by `airlock pack` as annotations on the package's image index
// (annotation::kLineage*), so it travels with the package through any OCI registry and is
// covered by a release's signature (which covers the index by digest). Metrics are numbers; their
// annotation is compact JSON with sorted keys, so equal lineages give equal bytes. Plain values,
// thread-compatible.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/result.hpp"
#include "pkg/oci.hpp"

namespace airlock::pkg {

struct Lineage {
  std::string training_run;     // empty when not given
  std::string dataset_digest;   // "sha256:<64 hex>", or empty when not given
  std::string source_revision;  // empty when not given
  // name → number (integer or floating point, always finite); a JSON object, hence sorted.
  nlohmann::json metrics = nlohmann::json::object();

  // Reads the `lineage:` mapping of airlock.yaml (already parsed into JSON). Refuses unknown keys,
  // a dataset digest that is not "sha256:<64 lowercase hex>", and metrics that are not finite
  // numbers; messages start with origin (the file) and name the key.
  [[nodiscard]] static Result<Lineage> FromSpec(const nlohmann::json& section,
                                                std::string_view origin);
  // The rules FromSpec applies, for a lineage built in code: a digest-shaped dataset_digest (when
  // set) and finite numbers as metrics. kInvalidArgument naming the field.
  [[nodiscard]] Status Check() const;
  // The index annotations: only the fields that are set (metrics when there is at least one).
  Annotations ToAnnotations() const;
  // The lineage recorded on an index, or nullopt when it carries none. A metrics annotation that
  // is not a JSON object of numbers is kCorrupt.
  [[nodiscard]] static Result<std::optional<Lineage>> FromAnnotations(
      const Annotations& annotations);
  // {"training_run": …, "dataset_digest": …, "source_revision": …, "metrics": {…}}, with only the
  // fields that are set.
  nlohmann::json ToJson() const;
};

// Checks a dataset digest as given by a user; `where` names its origin for the message.
[[nodiscard]] Status CheckDatasetDigest(std::string_view value, std::string_view where);
// Parses "NAME=VALUE" (the --metric flag): NAME non-empty, VALUE a finite decimal number.
// Integers stay integers, so "epochs=20" is recorded as 20, not 20.0.
[[nodiscard]] Result<std::pair<std::string, nlohmann::json>> ParseMetric(std::string_view text);

}  // namespace airlock::pkg
