#include "hub/oci_rules.hpp"

#include <charconv>
#include <nlohmann/json.hpp>

namespace airlock::hub {
namespace {

using nlohmann::json;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: alphanumeric runs joined by ".", "_", "__" or any number of "-".
bool IsNameComponent(std::string_view c) {
  std::size_t i = 0;
  while (true) {
    std::size_t run = i;
    while (i < c.size() && IsLowerAlnum(c[i])) {
      ++i;
    }
    if (i == run) {
      return false;  // empty, or a separator where a run must be
    }
    if (i == c.size()) {
      return true;
    }
    char sep = c[i];
    std::size_t seps = 0;
    while (i < c.size() && c[i] == sep) {
      ++i;
      ++seps;
    }
    bool ok = (sep == '.' && seps == 1) || (sep == '_' && seps <= 2) || sep == '-';
    if (!ok) {
      return false;
    }
  }
}

bool StripSuffix(std::string_view& s, std::string_view suffix) {
  if (s.size() > suffix.size() && s.ends_with(suffix)) {
    s.remove_suffix(suffix.size());
    return true;
  }
  return false;
}

Result<store::ManifestReferences::Blob> ReadDescriptor(const json& j, std::string_view where) {
  std::string at(where);
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, at + " is not a descriptor object");
  }
  auto type = j.find("mediaType");
  if (type == j.end() || !type->is_string()) {
    return Fail(ErrorCode::kInvalidArgument, at + ".mediaType must be a string");
  }
  auto digest = j.find("digest");
  if (digest == j.end() || !digest->is_string()) {
    return Fail(ErrorCode::kInvalidArgument, at + ".digest must be a string");
  }
  std::string text = digest->get<std::string>();
  auto parsed = Digest::Parse(text);
  if (!parsed) {
    // A well-formed digest of another algorithm (sha512:…) is valid OCI the hub cannot store.
    bool other_algorithm = text.find(':') != std::string::npos && !text.starts_with("sha256:");
    return Fail(other_algorithm ? ErrorCode::kUnsupported : ErrorCode::kInvalidArgument,
                at + ".digest: " + parsed.error().message());
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned()) {
    return Fail(ErrorCode::kInvalidArgument, at + ".size must be a non-negative integer");
  }
  return store::ManifestReferences::Blob{*parsed, size->get<std::uint64_t>()};
}

// Layers with urls live elsewhere (Docker's foreign layers) and need not be in the registry.
bool IsForeign(const json& descriptor) {
  auto urls = descriptor.find("urls");
  return urls != descriptor.end() && urls->is_array() && !urls->empty();
}

}  // namespace

bool IsRepositoryName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRepositoryName) {
    return false;
  }
  while (true) {
    std::size_t slash = name.find('/');
    if (!IsNameComponent(name.substr(0, slash))) {
      return false;
    }
    if (slash == std::string_view::npos) {
      return true;
    }
    name.remove_prefix(slash + 1);
  }
}

bool IsTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  for (std::size_t i = 0; i < tag.size(); ++i) {
    char c = tag[i];
    bool word =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!word && (i == 0 || (c != '.' && c != '-'))) {
      return false;
    }
  }
  return true;
}

std::optional<V2Route> ParseV2Route(std::string_view path) {
  constexpr std::string_view kPrefix = "/v2/";
  if (!path.starts_with(kPrefix)) {
    return std::nullopt;
  }
  path.remove_prefix(kPrefix.size());
  std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view head = path.substr(0, slash);
  std::string tail(path.substr(slash + 1));
  if (StripSuffix(head, "/blobs/uploads")) {
    return V2Route{V2Route::Kind::kUploads, std::string(head), tail};
  }
  if (StripSuffix(head, "/blobs")) {
    return V2Route{V2Route::Kind::kBlob, std::string(head), tail};
  }
  if (StripSuffix(head, "/manifests")) {
    return V2Route{V2Route::Kind::kManifest, std::string(head), tail};
  }
  if (StripSuffix(head, "/referrers")) {
    return V2Route{V2Route::Kind::kReferrers, std::string(head), tail};
  }
  if (tail == "list" && StripSuffix(head, "/tags")) {
    return V2Route{V2Route::Kind::kTags, std::string(head), ""};
  }
  return std::nullopt;
}

Result<ChunkRange> ParseContentRange(std::string_view text) {
  std::string_view s = text;
  if (s.starts_with("bytes ") || s.starts_with("bytes=")) {
    s.remove_prefix(6);
  }
  std::size_t dash = s.find('-');
  auto start = dash == std::string_view::npos ? std::nullopt : ParseDecimal(s.substr(0, dash));
  auto end = dash == std::string_view::npos ? std::nullopt : ParseDecimal(s.substr(dash + 1));
  if (!start || !end || *end < *start) {
    return Fail(ErrorCode::kInvalidArgument, "malformed Content-Range \"" +
                                                 std::string(text.substr(0, 100)) +
                                                 "\" (want <start>-<end>, inclusive)");
  }
  return ChunkRange{*start, *end};
}

Result<PushedManifest> ReadPushedManifest(std::string_view bytes, std::string_view content_type) {
  json doc = json::parse(bytes, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the manifest is not a JSON object");
  }
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || !version->is_number_integer() || version->get<std::int64_t>() != 2) {
    return Fail(ErrorCode::kInvalidArgument, "schemaVersion must be 2");
  }
  PushedManifest out;
  std::string header_type(content_type.substr(0, content_type.find(';')));
  while (!header_type.empty() && header_type.back() == ' ') {
    header_type.pop_back();
  }
  auto type = doc.find("mediaType");
  if (type != doc.end()) {
    if (!type->is_string()) {
      return Fail(ErrorCode::kInvalidArgument, "mediaType must be a string");
    }
    out.media_type = type->get<std::string>();
    if (!header_type.empty() && header_type != out.media_type) {
      return Fail(ErrorCode::kInvalidArgument, "the Content-Type " + header_type +
                                                   " differs from the manifest's mediaType " +
                                                   out.media_type);
    }
  } else {
    out.media_type = header_type;
  }
  bool is_manifest =
      out.media_type == media::kOciManifest || out.media_type == media::kDockerManifest;
  bool is_index = out.media_type == media::kOciIndex || out.media_type == media::kDockerList;
  if (!is_manifest && !is_index) {
    return Fail(ErrorCode::kUnsupported,
                out.media_type.empty()
                    ? std::string("the manifest has no media type (set mediaType or Content-Type)")
                    : "unsupported manifest media type " + out.media_type.substr(0, 200) +
                          " (the hub takes OCI image manifests and indexes, and Docker "
                          "schema 2 manifests and manifest lists)");
  }

  if (auto at = doc.find("artifactType"); at != doc.end()) {
    if (!at->is_string()) {
      return Fail(ErrorCode::kInvalidArgument, "artifactType must be a string");
    }
    out.artifact_type = at->get<std::string>();
  }
  if (auto ann = doc.find("annotations"); ann != doc.end()) {
    if (!ann->is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "annotations must be an object");
    }
    for (const auto& [key, value] : ann->items()) {
      if (!value.is_string()) {
        return Fail(ErrorCode::kInvalidArgument, "annotation " + key + " must be a string");
      }
    }
    out.annotations_json = ann->dump();
  }
  if (auto subject = doc.find("subject"); subject != doc.end()) {
    AIRLOCK_ASSIGN_OR_RETURN(auto s, ReadDescriptor(*subject, "subject"));
    out.subject = s.digest;
  }

  if (is_manifest) {
    auto config = doc.find("config");
    if (config == doc.end()) {
      return Fail(ErrorCode::kInvalidArgument, "an image manifest needs a config descriptor");
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto c, ReadDescriptor(*config, "config"));
    out.references.blobs.push_back(c);
    if (out.artifact_type.empty()) {
      out.artifact_type = config->at("mediaType").get<std::string>();
    }
    auto layers = doc.find("layers");
    if (layers == doc.end() || !layers->is_array()) {
      return Fail(ErrorCode::kInvalidArgument, "an image manifest needs a layers array");
    }
    for (std::size_t i = 0; i < layers->size(); ++i) {
      AIRLOCK_ASSIGN_OR_RETURN(auto l,
                               ReadDescriptor((*layers)[i], "layers[" + std::to_string(i) + "]"));
      if (!IsForeign((*layers)[i])) {
        out.references.blobs.push_back(l);
      }
    }
  } else {
    auto manifests = doc.find("manifests");
    if (manifests == doc.end() || !manifests->is_array()) {
      return Fail(ErrorCode::kInvalidArgument, "an index needs a manifests array");
    }
    for (std::size_t i = 0; i < manifests->size(); ++i) {
      AIRLOCK_ASSIGN_OR_RETURN(
          auto m, ReadDescriptor((*manifests)[i], "manifests[" + std::to_string(i) + "]"));
      out.references.manifests.push_back(m.digest);
    }
  }
  return out;
}

}  // namespace airlock::hub
