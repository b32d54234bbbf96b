#pragma once
// The OCI distribution spec's (v1.1) rules that the hub applies to untrusted input, as pure
// functions: repository names, tags, the request paths under /v2/, Content-Range and Range
// headers, and what a pushed manifest must look like. No I/O; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/digest.hpp"
#include "core/http_range.hpp"
#include "core/result.hpp"
#include "store/metadata_store.hpp"

namespace airlock::hub {

// The manifest size the spec asks registries to accept; larger ones are refused (413).
inline constexpr std::uint64_t kMaxManifestSize = 4ULL << 20;
inline constexpr std::size_t kMaxRepositoryName = 255;

namespace media {
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
}  // namespace media

// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 bytes.
bool IsRepositoryName(std::string_view name);
// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
bool IsTag(std::string_view tag);

// What a path under /v2/ addresses. name is the repository (it may contain slashes).
struct V2Route {
  enum class Kind {
    kManifest,   // /v2/<name>/manifests/<reference>
    kBlob,       // /v2/<name>/blobs/<digest>
    kUploads,    // /v2/<name>/blobs/uploads/ (reference empty) or …/uploads/<id>
    kTags,       // /v2/<name>/tags/list
    kReferrers,  // /v2/<name>/referrers/<digest>
  };
  Kind kind;
  std::string name;
  std::string reference;
};
// nullopt for a path of none of these shapes. The name is not validated.
std::optional<V2Route> ParseV2Route(std::string_view path);

// A chunk's Content-Range, "<start>-<end>" (inclusive; a "bytes " prefix is tolerated).
struct ChunkRange {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};
[[nodiscard]] Result<ChunkRange> ParseContentRange(std::string_view text);

// The Range header of a blob GET (core/http_range.hpp; the gateway serves blobs too).
using airlock::ByteRange;
using airlock::ParseRange;

// A pushed manifest, read for what the registry needs: its media type (from the document, else
// from the request's Content-Type), artifact type, subject, annotations and what it references.
struct PushedManifest {
  std::string media_type;
  std::string artifact_type;
  std::optional<Digest> subject;
  std::string annotations_json;
  store::ManifestReferences references;
};
// kInvalidArgument for JSON that is not a manifest (with the reason), kUnsupported for an unknown
// media type or a digest algorithm other than sha256.
[[nodiscard]] Result<PushedManifest> ReadPushedManifest(std::string_view bytes,
                                                        std::string_view content_type);

}  // namespace airlock::hub
