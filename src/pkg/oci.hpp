#pragma once
// OCI image-spec types as Airlock packages use them (DESIGN §3): descriptors, platforms, image
// manifests and indexes, and the media types and annotations of a model package.
//
// JSON is written with nlohmann's sorted keys and no whitespace, so equal values give equal bytes
// and digests. Parsing is strict about what Airlock relies on and tolerant of extra fields.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"

namespace airlock::pkg {

namespace media {
inline constexpr std::string_view kImageIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kImageManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kEmpty = "application/vnd.oci.empty.v1+json";
inline constexpr std::string_view kModelArtifact = "application/vnd.cncf.model.manifest.v1+json";
inline constexpr std::string_view kModelConfig = "application/vnd.cncf.model.config.v1+json";
inline constexpr std::string_view kModelWeight = "application/vnd.cncf.model.weight.v1.raw";
inline constexpr std::string_view kModelDoc = "application/vnd.cncf.model.doc.v1.raw";
inline constexpr std::string_view kPipeline = "application/vnd.airlock.pipeline.v1+json";
inline constexpr std::string_view kBaseline = "application/vnd.airlock.baseline.v1+json";
inline constexpr std::string_view kSamples = "application/vnd.airlock.samples.v1.tar";
inline constexpr std::string_view kRelease = "application/vnd.airlock.release.v1+json";
}  // namespace media

namespace annotation {
inline constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";
inline constexpr std::string_view kTitle = "org.opencontainers.image.title";
inline constexpr std::string_view kVersion = "org.opencontainers.image.version";
inline constexpr std::string_view kCreated = "org.opencontainers.image.created";
inline constexpr std::string_view kFilepath = "org.cncf.model.filepath";
inline constexpr std::string_view kModel = "ai.airlock.model";
inline constexpr std::string_view kPrecision = "ai.airlock.precision";
inline constexpr std::string_view kMinRuntime = "ai.airlock.min-runtime";
// Lineage of a model version, on the package index (pkg/lineage.hpp).
inline constexpr std::string_view kLineageTrainingRun = "ai.airlock.lineage.training-run";
inline constexpr std::string_view kLineageDatasetDigest = "ai.airlock.lineage.dataset-digest";
inline constexpr std::string_view kLineageSourceRevision = "ai.airlock.lineage.source-revision";
// A compact JSON object, keys sorted: {"name": number, …}.
inline constexpr std::string_view kLineageMetrics = "ai.airlock.lineage.metrics";
}  // namespace annotation

// Whether Airlock knows what to do with a layer of this media type.
bool IsKnownLayerType(std::string_view media_type);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;

  // "linux/amd64", "linux/arm64/v8".
  [[nodiscard]] static Result<Platform> Parse(std::string_view text);
  std::string ToString() const;
  nlohmann::json ToJson() const;
  bool operator==(const Platform&) const = default;
};

using Annotations = std::map<std::string, std::string, std::less<>>;
// The value of an annotation, or "" when it is absent.
std::string AnnotationOf(const Annotations& annotations, std::string_view key);

struct Descriptor {
  std::string media_type;
  Digest digest = Digest::FromHex(std::string(64, '0'));
  std::uint64_t size = 0;
  std::string artifact_type;  // empty when absent
  Annotations annotations;
  std::optional<Platform> platform;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<Descriptor> FromJson(const nlohmann::json& j);
  std::string Annotation(std::string_view key) const;
};

struct Manifest {
  std::string artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  Annotations annotations;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<Manifest> FromJson(const nlohmann::json& j);
};

struct Index {
  std::string artifact_type;
  std::vector<Descriptor> manifests;
  Annotations annotations;

  std::string Annotation(std::string_view key) const;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<Index> FromJson(const nlohmann::json& j);
};

// Compact JSON with sorted keys: the bytes of a blob.
std::string ToBytes(const nlohmann::json& j);
// A descriptor for bytes about to be stored as a blob.
Descriptor DescribeBytes(std::string_view media_type, std::string_view bytes);

}  // namespace airlock::pkg
