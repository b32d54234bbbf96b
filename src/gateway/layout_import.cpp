#include "gateway/layout_import.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "pkg/tar.hpp"

namespace airlock::gateway {
namespace fs = std::filesystem;

namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxManifest = 4ULL << 20;
constexpr char kReleaseType[] = "application/vnd.airlock.release.v1+json";
constexpr std::size_t kPiece = 1 << 20;

std::string BlobPath(const Digest& d) { return "blobs/sha256/" + d.hex(); }

// A manifest's bytes from the layout, checked against its digest.
Result<std::string> ReadManifestBlob(const LayoutFiles& layout, const Digest& d) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, layout.Read(BlobPath(d), kMaxManifest));
  if (Sha256Of(bytes) != d) {
    return Fail(ErrorCode::kCorrupt, (layout.path() / BlobPath(d)).string() +
                                         " does not hash to " + d.ToString());
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
Result<std::uint64_t> CopyBlob(GatewayCache& cache, const LayoutFiles& layout, const Digest& d,
                               std::uint64_t size) {
  auto download = cache.BeginBlob(d, size);
  if (!download) {
    if (download.error().code() == ErrorCode::kAlreadyExists) {
      return std::uint64_t{0};
    }
    return Fail(std::move(download.error()));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t offset, download->offset());
  auto span = layout.Locate(BlobPath(d));
  if (!span) {
    return Fail(span.error().code() == ErrorCode::kNotFound
                    ? Error(ErrorCode::kNotFound, "the layout lacks blob " + d.ToString())
                    : std::move(span.error()));
  }
  std::uint64_t copied = 0;
  std::string buffer(kPiece, '\0');
  while (offset < span->size) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, span->size - offset));
    ssize_t n = ::pread(span->fd->get(), buffer.data(), want,
                        static_cast<off_t>(span->offset + offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError("cannot read", layout.path() / BlobPath(d)));
    }
    if (n == 0) {
      break;  // a file shorter than its descriptor: Commit says so
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

Result<std::unique_ptr<LayoutFiles>> LayoutFiles::Open(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return Fail(ErrorCode::kNotFound, path.string() + " does not exist");
  }
  std::unique_ptr<LayoutFiles> out(new LayoutFiles(path));
  if (fs::is_directory(status)) {
    return out;
  }
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(path));
  std::uint64_t size = fs::file_size(path, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot read the size of " + path.string() + ": " + ec.message());
  }
  auto entries = pkg::IndexTar(fd.get(), size);
  if (!entries) {
    return Fail(std::move(entries.error()).WithContext("reading " + path.string()));
  }
  for (const auto& [name, range] : *entries) {
    out->entries_[name] = {range.offset, range.size};
  }
  out->archive_ = std::make_shared<UniqueFd>(std::move(fd));
  return out;
}

Result<LayoutFiles::Span> LayoutFiles::Locate(std::string_view rel) const {
  if (archive_) {
    auto it = entries_.find(std::string(rel));
    if (it == entries_.end()) {
      return Fail(ErrorCode::kNotFound, path_.string() + " holds no " + std::string(rel));
    }
    return Span{archive_, it->second.first, it->second.second};
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string checked, pkg::CheckRelativePath(rel));
  fs::path file = path_ / checked;
  int raw = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (raw < 0) {
    return Fail(errno == ENOENT ? Error(ErrorCode::kNotFound, file.string() + " does not exist")
                                : ErrnoError("cannot open", file));
  }
  auto fd = std::make_shared<UniqueFd>(raw);
  struct stat st {};
  if (::fstat(raw, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kCorrupt, file.string() + " is not a regular file");
  }
  return Span{std::move(fd), 0, static_cast<std::uint64_t>(st.st_size)};
}

Result<std::string> LayoutFiles::Read(std::string_view rel, std::uint64_t max) const {
  AIRLOCK_ASSIGN_OR_RETURN(Span span, Locate(rel));
  if (span.size > max) {
    return Fail(ErrorCode::kCorrupt, (path_ / std::string(rel)).string() + " is larger than " +
                                         std::to_string(max) + " bytes");
  }
  std::string out(static_cast<std::size_t>(span.size), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(span.fd->get(), out.data() + done, out.size() - done,
                        static_cast<off_t>(span.offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n < 0 ? Fail(ErrnoError("cannot read", path_ / std::string(rel)))
                   : Fail(ErrorCode::kCorrupt, (path_ / std::string(rel)).string() +
                                                   " ends before its recorded size");
    }
    done += static_cast<std::size_t>(n);
  }
  return out;
}

Result<PackageSpec> ReadLayoutPackage(const LayoutFiles& layout, const LayoutSelector& which,
                                      const PackageRef& as) {
  std::string where = (layout.path() / "index.json").string();
  AIRLOCK_ASSIGN_OR_RETURN(std::string top_bytes, layout.Read("index.json", kMaxManifest));
  AIRLOCK_ASSIGN_OR_RETURN(json top, ParseObject(top_bytes, where));
  if (!top.contains("manifests") || !top["manifests"].is_array()) {
    return Fail(ErrorCode::kInvalidArgument, where + " has no manifests list");
  }
  std::optional<Digest> selected;
  std::vector<Digest> others;
  for (const json& entry : top["manifests"]) {
    AIRLOCK_ASSIGN_OR_RETURN(Digest d, DigestOf(entry, "an entry of index.json"));
    std::string name;
    if (entry.contains("annotations") && entry["annotations"].is_object()) {
      name = entry["annotations"].value("org.opencontainers.image.ref.name", "");
    }
    bool match = which.digest ? d == *which.digest : name == which.tag;
    if (match && !selected) {
      selected = d;
    } else {
      others.push_back(d);
    }
  }
  if (!selected) {
    return Fail(ErrorCode::kNotFound,
                "no manifest of " + layout.path().string() + " is " +
                    (which.digest ? which.digest->ToString() : "tagged " + which.tag));
  }

  PackageSpec spec{as, *selected, {}, ""};
  AIRLOCK_ASSIGN_OR_RETURN(std::string index_bytes, ReadManifestBlob(layout, *selected));
  AIRLOCK_ASSIGN_OR_RETURN(json index, ParseObject(index_bytes, "manifest " + selected->ToString()));
  spec.manifests.push_back(std::move(index_bytes));
  if (index.contains("manifests") && index["manifests"].is_array()) {
    for (const json& entry : index["manifests"]) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest d, DigestOf(entry, "an entry of " + selected->ToString()));
      AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadManifestBlob(layout, d));
      spec.manifests.push_back(std::move(bytes));
    }
  }
  // The referrers of the selected manifest: the signed release among them.
  for (const Digest& d : others) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadManifestBlob(layout, d));
    AIRLOCK_ASSIGN_OR_RETURN(json m, ParseObject(bytes, "manifest " + d.ToString()));
    if (!m.contains("subject")) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(Digest subject,
                             DigestOf(m["subject"], "the subject of " + d.ToString()));
    if (subject != *selected) {
      continue;
    }
    if (m.value("artifactType", "") == kReleaseType && m.contains("layers") &&
        m["layers"].is_array() && !m["layers"].empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest doc, DigestOf(m["layers"][0], "the release's layer"));
      AIRLOCK_ASSIGN_OR_RETURN(spec.release, ReadManifestBlob(layout, doc));
    }
    spec.manifests.push_back(std::move(bytes));
  }
  return spec;
}

Result<std::uint64_t> LoadLayoutPackage(GatewayCache& cache, const LayoutFiles& layout,
                                        const PackageSpec& spec) {
  AIRLOCK_RETURN_IF_ERROR(cache.DeclarePackage(spec));
  AIRLOCK_ASSIGN_OR_RETURN(auto missing, cache.MissingBlobs(spec.ref));
  std::uint64_t copied = 0;
  for (const auto& [digest, size] : missing) {
    auto n = CopyBlob(cache, layout, digest, size);
    if (!n) {
      return Fail(std::move(n.error()).WithContext("while importing " + digest.ToString() +
                                                   " from " + layout.path().string()));
    }
    copied += *n;
  }
  AIRLOCK_RETURN_IF_ERROR(cache.CompletePackage(spec.ref));
  return copied;
}

Result<std::uint64_t> ImportLayout(GatewayCache& cache, const fs::path& path,
                                   std::string_view layout_tag, const PackageRef& as) {
  AIRLOCK_ASSIGN_OR_RETURN(auto layout, LayoutFiles::Open(path));
  AIRLOCK_ASSIGN_OR_RETURN(PackageSpec spec,
                           ReadLayoutPackage(*layout, {std::string(layout_tag), std::nullopt}, as));
  return LoadLayoutPackage(cache, *layout, spec);
}

}  // namespace airlock::gateway
