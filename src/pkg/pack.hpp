#pragma once
// `airlock pack`: from a model and its description to a tested, reproducible OCI model package.
//
// Pack checks the model (ONNX checker, then ONNX Runtime loads it), runs every sample and compares
// the outputs with the expected ones, records the model's signature in the pipeline layer, and
// writes the package as a layout directory or a tar. The same inputs give byte-identical blobs and
// digests: JSON is written with sorted keys, tars with fixed metadata, and nothing depends on the
// clock unless `created` is set.

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "pkg/lineage.hpp"
#include "pkg/oci.hpp"
#include "pkg/samples.hpp"
#include "runtime/onnx_runtime.hpp"

namespace airlock::pkg {

struct ModelFile {
  std::filesystem::path source;  // where it is now
  std::string filepath;          // its path inside the package (org.cncf.model.filepath)
};

struct PlatformSpec {
  Platform platform;
  std::vector<ModelFile> files;  // the first is the model ONNX Runtime loads
  std::string precision = "fp32";
};

struct PackSpec {
  std::string name;
  std::string version;
  std::string description;
  std::string revision;
  std::string created;  // RFC 3339, or empty to leave it out
  std::string min_runtime = "onnxruntime/1.17";
  std::vector<std::string> authors;
  std::vector<std::string> licenses;
  Annotations annotations;
  std::vector<PlatformSpec> platforms;
  nlohmann::json pipeline = nlohmann::json::object();
  std::optional<std::filesystem::path> baseline;
  std::optional<std::filesystem::path> card;
  Samples samples;
  // Written as index annotations when set; its source_revision defaults to `revision`.
  std::optional<Lineage> lineage;
};

// Lineage given on the command line (`airlock pack --training-run …`), laid over the file's: a
// set field replaces the file's, and each metric ("NAME=VALUE") adds to the file's metrics or
// replaces the one of that name.
struct LineageOverrides {
  std::optional<std::string> training_run;
  std::optional<std::string> dataset_digest;
  std::optional<std::string> source_revision;
  std::vector<std::string> metrics;

  bool empty() const {
    return !training_run && !dataset_digest && !source_revision && metrics.empty();
  }
};
// Refuses a malformed digest or metric, naming the flag; spec is unchanged then.
[[nodiscard]] Status ApplyLineageOverrides(const LineageOverrides& overrides, PackSpec& spec);
// The lineage Pack writes: spec.lineage with source_revision defaulted to spec.revision.
std::optional<Lineage> EffectiveLineage(const PackSpec& spec);

// Reads an airlock.yaml (see `airlock init`); relative paths are taken from the file's directory.
// Sample tensors are loaded here, so a missing or unreadable sample file is reported by name.
[[nodiscard]] Result<PackSpec> LoadPackSpec(const std::filesystem::path& yaml_path);
// The same from an already-parsed document, with paths relative to base_dir.
[[nodiscard]] Result<PackSpec> PackSpecFromJson(const nlohmann::json& doc,
                                                const std::filesystem::path& base_dir,
                                                const std::string& origin);

// Checks the spec's own fields: name, version, platforms, files exist, no duplicate platforms,
// the lineage's dataset digest and metrics.
[[nodiscard]] Status ValidateSpec(const PackSpec& spec);
// Checks a baseline document's shape (schema airlock.baseline.v1); with a signature, also that
// every tensor it names exists.
[[nodiscard]] Status ValidateBaseline(const nlohmann::json& baseline,
                                      const runtime::ModelSignature* signature);

struct PackOptions {
  std::filesystem::path output;                 // a directory, or a file ending in .tar
  bool force = false;                           // replace an existing output
  bool validate = true;                         // checker, ONNX Runtime load, samples
  std::function<void(const std::string&)> say;  // what is happening, for people; may be empty
  // Byte progress of long steps (hashing a model file), labelled; may be empty.
  std::function<void(const std::string& label, std::uint64_t done, std::uint64_t total)> progress;
};

struct PackResult {
  Descriptor index;  // the package's top index (what releases sign)
  std::string ref;
  std::optional<runtime::ModelSignature> signature;
  std::vector<SampleOutcome> samples;
  std::uint64_t total_bytes = 0;  // of all distinct blobs
};

// ort may be null only when options.validate is false.
[[nodiscard]] Result<PackResult> Pack(const PackSpec& spec, const PackOptions& options,
                                      runtime::OnnxRuntime* ort);

}  // namespace airlock::pkg
