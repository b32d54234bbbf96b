#pragma once
// Loading one package from an OCI image layout (what `airlock pack` and `airlock pull` write, as a
// directory or a tar, and what `airlock bundle export` writes) into a GatewayCache, through the
// same path a network download takes (BeginBlob, Append from the bytes on disk, Commit with digest
// and size checks, CompletePackage).
//
// In two steps, so that a caller can verify in between: ReadLayoutPackage reads the package's
// manifests and signed release (each manifest checked against its digest) without touching the
// cache; LoadLayoutPackage declares it and copies its blobs. Neither checks signatures:
// `airlock-gateway import` verifies the release against the site's root between the two, while
// ImportLayout (both at once) is for tests, the documentation's examples and seeding a cache by
// hand.
//
// Thread-safe as far as the cache is; blocks on the disk.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/fs.hpp"
#include "core/result.hpp"
#include "gateway/cache.hpp"

namespace airlock::gateway {

// The files of a layout: a directory, or a tar holding one (read in place, never extracted; the
// tar reader refuses links, absolute paths and "..").
class LayoutFiles {
 public:
  // kNotFound when path does not exist; kCorrupt for a tar that does not read.
  [[nodiscard]] static Result<std::unique_ptr<LayoutFiles>> Open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  // A file of at most max bytes; kNotFound when the layout lacks it.
  [[nodiscard]] Result<std::string> Read(std::string_view rel, std::uint64_t max) const;

  // Where a file's bytes are: an open descriptor (owned here or shared), an offset and a size.
  struct Span {
    std::shared_ptr<UniqueFd> fd;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
  };
  [[nodiscard]] Result<Span> Locate(std::string_view rel) const;

 private:
  explicit LayoutFiles(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
  // Set for a tar: the archive and its entries.
  std::shared_ptr<UniqueFd> archive_;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> entries_;
};

// Which manifest of the layout's index.json is the package: by tag
// (org.opencontainers.image.ref.name) or by digest.
struct LayoutSelector {
  std::string tag;
  std::optional<Digest> digest;
};

// Reads the selected manifest, the manifests it lists, and every manifest of the layout whose
// subject it is (the signed release's, whose document becomes spec.release), as the package
// `as`. kNotFound when the selected manifest is not in index.json, or a manifest it needs is
// missing; kCorrupt when a file does not match its digest.
[[nodiscard]] Result<PackageSpec> ReadLayoutPackage(const LayoutFiles& layout,
                                                    const LayoutSelector& which,
                                                    const PackageRef& as);

// Declares spec in the cache and copies every blob it lacks from the layout, then completes it.
// Blobs already cached are not copied again. kNotFound for a blob the layout lacks; kCorrupt
// when one does not match its digest (nothing of it is cached). Returns the bytes copied.
[[nodiscard]] Result<std::uint64_t> LoadLayoutPackage(GatewayCache& cache,
                                                      const LayoutFiles& layout,
                                                      const PackageSpec& spec);

// Both of the above, for the manifest layout_tag names, without any signature check.
[[nodiscard]] Result<std::uint64_t> ImportLayout(GatewayCache& cache,
                                                 const std::filesystem::path& layout,
                                                 std::string_view layout_tag, const PackageRef& as);

}  // namespace airlock::gateway
