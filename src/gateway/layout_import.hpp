#pragma once
// ImportLayout: loads one package from an OCI image-layout directory (what `airlock pack` writes)
// into a GatewayCache, through the same path a network download takes (BeginBlob, Append from
// the bytes on disk, Commit with digest and size checks, CompletePackage).
//
// It checks digests and sizes but NOT signatures: it is for tests, for the documentation's
// examples and for seeding a cache by hand. The air-gapped import (`airlock-gateway import`,
// issue 5) must verify the release against the site's pinned root first, like a delivery.
//
// Thread-safe as far as the cache is; blocks on the disk.

#include <filesystem>
#include <string_view>

#include "core/result.hpp"
#include "gateway/cache.hpp"

namespace airlock::gateway {

// Imports the manifest that layout's index.json tags layout_tag
// (org.opencontainers.image.ref.name), the manifests it lists, and every manifest of the layout
// whose subject it is (the signed release's, whose document becomes the package's release), as
// the package `as`. Blobs already cached are not copied again. kNotFound when the tag is not in
// the layout or a manifest or blob it needs is missing; kCorrupt when a file does not match its
// digest. Returns the bytes copied into the cache.
[[nodiscard]] Result<std::uint64_t> ImportLayout(GatewayCache& cache,
                                                 const std::filesystem::path& layout,
                                                 std::string_view layout_tag, const PackageRef& as);

}  // namespace airlock::gateway
