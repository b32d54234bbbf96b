#include "gateway/layout_import.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/fs.hpp"

namespace airlock::gateway {
namespace fs = std::filesystem;

namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxManifest = 4ULL << 20;
constexpr char kReleaseType[] = "application/vnd.airlock.release.v1+json";
constexpr std::size_t kPiece = 1 << 20;

fs::path BlobFile(const fs::path& layout, const Digest& d) {
  return layout / "blobs" / "sha256" / d.hex();
}

// A manifest's bytes from the layout, checked against its digest.
Result<std::string> ReadManifestBlob(const fs::path& layout, const Digest& d) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadFile(BlobFile(layout, d), kMaxManifest));
  if (Sha256Of(bytes) != d) {
    return Fail(ErrorCode::kCorrupt,
                BlobFile(layout, d).string() + " does not hash to " + d.ToString());
  }
  return bytes;
}

Result<json> ParseObject(const std::string& bytes, const std::string& what) {
  json doc = json::parse(bytes, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, what + " is not a JSON object");
  }
  return doc;
}

Result<Digest> DigestOf(const json& descriptor, const std::string& what) {
  if (!descriptor.is_object() || !descriptor.contains("digest") ||
      !descriptor["digest"].is_string()) {
    return Fail(ErrorCode::kInvalidArgument, what + " has no digest");
  }
  return Digest::Parse(descriptor["digest"].get<std::string>());
}

// Streams the layout's copy of a blob into the cache from where the cache's download stands.
Result<std::uint64_t> CopyBlob(GatewayCache& cache, const fs::path& layout, const Digest& d,
                               std::uint64_t size) {
  auto download = cache.BeginBlob(d, size);
  if (!download) {
    if (download.error().code() == ErrorCode::kAlreadyExists) {
      return std::uint64_t{0};
    }
    return Fail(std::move(download.error()));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t offset, download->offset());
  fs::path path = BlobFile(layout, d);
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    return Fail(errno == ENOENT
                    ? Error(ErrorCode::kNotFound, "the layout lacks blob " + d.ToString())
                    : ErrnoError("cannot open", path));
  }
  UniqueFd fd(raw);
  std::uint64_t copied = 0;
  std::string buffer(kPiece, '\0');
  for (;;) {
    ssize_t n = ::pread(fd.get(), buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError("cannot read", path));
    }
    if (n == 0) {
      break;
    }
    // A file longer than its descriptor says is refused by Append (and the download discarded).
    AIRLOCK_ASSIGN_OR_RETURN(
        offset,
        download->Append(offset, std::string_view(buffer.data(), static_cast<std::size_t>(n))));
    copied += static_cast<std::uint64_t>(n);
  }
  AIRLOCK_RETURN_IF_ERROR(download->Commit());
  return copied;
}

}  // namespace

Result<std::uint64_t> ImportLayout(GatewayCache& cache, const fs::path& layout,
                                   std::string_view layout_tag, const PackageRef& as) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string top_bytes, ReadFile(layout / "index.json", kMaxManifest));
  AIRLOCK_ASSIGN_OR_RETURN(json top, ParseObject(top_bytes, (layout / "index.json").string()));
  if (!top.contains("manifests") || !top["manifests"].is_array()) {
    return Fail(ErrorCode::kInvalidArgument,
                (layout / "index.json").string() + " has no manifests list");
  }
  std::optional<Digest> tagged;
  std::vector<Digest> others;
  for (const json& entry : top["manifests"]) {
    AIRLOCK_ASSIGN_OR_RETURN(Digest d, DigestOf(entry, "an entry of index.json"));
    std::string name;
    if (entry.contains("annotations") && entry["annotations"].is_object()) {
      name = entry["annotations"].value("org.opencontainers.image.ref.name", "");
    }
    if (name == layout_tag && !tagged) {
      tagged = d;
    } else {
      others.push_back(d);
    }
  }
  if (!tagged) {
    return Fail(ErrorCode::kNotFound,
                "no manifest of " + layout.string() + " is tagged " + std::string(layout_tag));
  }

  PackageSpec spec{as, *tagged, {}, ""};
  AIRLOCK_ASSIGN_OR_RETURN(std::string index_bytes, ReadManifestBlob(layout, *tagged));
  AIRLOCK_ASSIGN_OR_RETURN(json index, ParseObject(index_bytes, "manifest " + tagged->ToString()));
  spec.manifests.push_back(std::move(index_bytes));
  if (index.contains("manifests") && index["manifests"].is_array()) {
    for (const json& entry : index["manifests"]) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest d, DigestOf(entry, "an entry of " + tagged->ToString()));
      AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadManifestBlob(layout, d));
      spec.manifests.push_back(std::move(bytes));
    }
  }
  // The referrers of the tagged manifest: the signed release among them.
  for (const Digest& d : others) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadManifestBlob(layout, d));
    AIRLOCK_ASSIGN_OR_RETURN(json m, ParseObject(bytes, "manifest " + d.ToString()));
    if (!m.contains("subject")) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(Digest subject,
                             DigestOf(m["subject"], "the subject of " + d.ToString()));
    if (subject != *tagged) {
      continue;
    }
    if (m.value("artifactType", "") == kReleaseType && m.contains("layers") &&
        m["layers"].is_array() && !m["layers"].empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest doc, DigestOf(m["layers"][0], "the release's layer"));
      AIRLOCK_ASSIGN_OR_RETURN(spec.release, ReadManifestBlob(layout, doc));
    }
    spec.manifests.push_back(std::move(bytes));
  }

  AIRLOCK_RETURN_IF_ERROR(cache.DeclarePackage(spec));
  AIRLOCK_ASSIGN_OR_RETURN(auto missing, cache.MissingBlobs(as));
  std::uint64_t copied = 0;
  for (const auto& [digest, size] : missing) {
    auto n = CopyBlob(cache, layout, digest, size);
    if (!n) {
      return Fail(std::move(n.error()).WithContext("while importing " + digest.ToString() +
                                                   " from " + layout.string()));
    }
    copied += *n;
  }
  AIRLOCK_RETURN_IF_ERROR(cache.CompletePackage(as));
  return copied;
}

}  // namespace airlock::gateway
