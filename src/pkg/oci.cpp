#include "pkg/oci.hpp"

#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace {

using nlohmann::json;

Error Malformed(std::string_view what) {
  return Error(ErrorCode::kCorrupt, "malformed OCI document: " + std::string(what));
}

json AnnotationsToJson(const Annotations& a) {
  json out = json::object();
  for (const auto& [k, v] : a) {
    out[k] = v;
  }
  return out;
}

Result<Annotations> AnnotationsFromJson(const json& j) {
  Annotations out;
  if (!j.contains("annotations")) {
    return out;
  }
  if (!j["annotations"].is_object()) {
    return Fail(Malformed("annotations must be an object"));
  }
  for (const auto& [k, v] : j["annotations"].items()) {
    if (!v.is_string()) {
      return Fail(Malformed("annotation " + k + " must be a string"));
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

Status CheckSchemaVersion(const json& j) {
  if (!j.is_object() || trust::IntOr(j, "schemaVersion") != 2) {
    return Fail(Malformed("schemaVersion must be 2"));
  }
  return {};
}

}  // namespace

bool IsKnownLayerType(std::string_view m) {
  return m == media::kModelWeight || m == media::kModelDoc || m == media::kPipeline ||
         m == media::kBaseline || m == media::kSamples || m == media::kRelease ||
         m == media::kEmpty;
}

Result<Platform> Platform::Parse(std::string_view text) {
  Platform p;
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t slash = text.find('/', start);
    parts.emplace_back(
        text.substr(start, slash == std::string_view::npos ? text.npos : slash - start));
    if (slash == std::string_view::npos) {
      break;
    }
    start = slash + 1;
  }
  bool ok = parts.size() == 2 || parts.size() == 3;
  for (const auto& part : parts) {
    ok = ok && !part.empty() &&
         part.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
  }
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument, "bad platform \"" + std::string(text) +
                                                 "\" (want os/arch[/variant], e.g. linux/arm64)");
  }
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) {
    p.variant = parts[2];
  }
  return p;
}

std::string Platform::ToString() const {
  return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

json Platform::ToJson() const {
  json j = {{"os", os}, {"architecture", architecture}};
  if (!variant.empty()) {
    j["variant"] = variant;
  }
  return j;
}

std::string AnnotationOf(const Annotations& annotations, std::string_view key) {
  auto it = annotations.find(key);
  return it == annotations.end() ? std::string() : it->second;
}

std::string Descriptor::Annotation(std::string_view key) const {
  return AnnotationOf(annotations, key);
}

json Descriptor::ToJson() const {
  json j = {{"mediaType", media_type}, {"digest", digest.ToString()}, {"size", size}};
  if (!artifact_type.empty()) {
    j["artifactType"] = artifact_type;
  }
  if (!annotations.empty()) {
    j["annotations"] = AnnotationsToJson(annotations);
  }
  if (platform) {
    j["platform"] = platform->ToJson();
  }
  return j;
}

Result<Descriptor> Descriptor::FromJson(const json& j) {
  if (!j.is_object() || !j.contains("mediaType") || !j["mediaType"].is_string() ||
      !j.contains("digest") || !j["digest"].is_string() || !j.contains("size") ||
      !j["size"].is_number_unsigned()) {
    return Fail(Malformed("a descriptor needs mediaType, digest and a non-negative size"));
  }
  Descriptor d;
  d.media_type = j["mediaType"];
  AIRLOCK_ASSIGN_OR_RETURN(d.digest, Digest::Parse(j["digest"].get<std::string>()));
  d.size = j["size"].get<std::uint64_t>();
  if (j.contains("artifactType")) {
    if (!j["artifactType"].is_string()) {
      return Fail(Malformed("artifactType must be a string"));
    }
    d.artifact_type = j["artifactType"];
  }
  AIRLOCK_ASSIGN_OR_RETURN(d.annotations, AnnotationsFromJson(j));
  if (j.contains("platform")) {
    const json& p = j["platform"];
    if (!p.is_object() || !p.contains("os") || !p["os"].is_string() ||
        !p.contains("architecture") || !p["architecture"].is_string()) {
      return Fail(Malformed("platform needs os and architecture"));
    }
    d.platform = Platform{p["os"], p["architecture"], trust::StringOr(p, "variant")};
  }
  return d;
}

json Manifest::ToJson() const {
  json j = {{"schemaVersion", 2},
            {"mediaType", media::kImageManifest},
            {"config", config.ToJson()},
            {"layers", json::array()}};
  if (!artifact_type.empty()) {
    j["artifactType"] = artifact_type;
  }
  for (const auto& l : layers) {
    j["layers"].push_back(l.ToJson());
  }
  if (subject) {
    j["subject"] = subject->ToJson();
  }
  if (!annotations.empty()) {
    j["annotations"] = AnnotationsToJson(annotations);
  }
  return j;
}

Result<Manifest> Manifest::FromJson(const json& j) {
  AIRLOCK_RETURN_IF_ERROR(CheckSchemaVersion(j));
  if (trust::StringOr(j, "mediaType", std::string(media::kImageManifest)) != media::kImageManifest) {
    return Fail(Malformed("not an image manifest"));
  }
  if (!j.contains("config") || !j.contains("layers") || !j["layers"].is_array()) {
    return Fail(Malformed("a manifest needs config and layers"));
  }
  Manifest m;
  m.artifact_type = trust::StringOr(j, "artifactType");
  AIRLOCK_ASSIGN_OR_RETURN(m.config, Descriptor::FromJson(j["config"]));
  for (const auto& l : j["layers"]) {
    AIRLOCK_ASSIGN_OR_RETURN(Descriptor d, Descriptor::FromJson(l));
    m.layers.push_back(std::move(d));
  }
  if (j.contains("subject")) {
    AIRLOCK_ASSIGN_OR_RETURN(Descriptor s, Descriptor::FromJson(j["subject"]));
    m.subject = std::move(s);
  }
  AIRLOCK_ASSIGN_OR_RETURN(m.annotations, AnnotationsFromJson(j));
  return m;
}

std::string Index::Annotation(std::string_view key) const { return AnnotationOf(annotations, key); }

json Index::ToJson() const {
  json j = {{"schemaVersion", 2}, {"mediaType", media::kImageIndex}, {"manifests", json::array()}};
  if (!artifact_type.empty()) {
    j["artifactType"] = artifact_type;
  }
  for (const auto& m : manifests) {
    j["manifests"].push_back(m.ToJson());
  }
  if (!annotations.empty()) {
    j["annotations"] = AnnotationsToJson(annotations);
  }
  return j;
}

Result<Index> Index::FromJson(const json& j) {
  AIRLOCK_RETURN_IF_ERROR(CheckSchemaVersion(j));
  if (trust::StringOr(j, "mediaType", std::string(media::kImageIndex)) != media::kImageIndex) {
    return Fail(Malformed("not an image index"));
  }
  if (!j.contains("manifests") || !j["manifests"].is_array()) {
    return Fail(Malformed("an index needs manifests"));
  }
  Index idx;
  idx.artifact_type = trust::StringOr(j, "artifactType");
  for (const auto& m : j["manifests"]) {
    AIRLOCK_ASSIGN_OR_RETURN(Descriptor d, Descriptor::FromJson(m));
    idx.manifests.push_back(std::move(d));
  }
  AIRLOCK_ASSIGN_OR_RETURN(idx.annotations, AnnotationsFromJson(j));
  return idx;
}

std::string ToBytes(const json& j) { return j.dump(); }

Descriptor DescribeBytes(std::string_view media_type, std::string_view bytes) {
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = Sha256Of(bytes);
  d.size = bytes.size();
  return d;
}

}  // namespace airlock::pkg
