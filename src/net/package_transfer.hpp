#pragma once
// Pushing a model package (DESIGN §3) to an OCI registry and pulling one back, over
// RegistryClient.
//
// Push sends every blob the registry lacks, the per-platform manifests, the package index under a
// tag, and the release documents the layout stores as referrers of that index (DESIGN §4): each
// one's manifest with its `subject`, and, where the registry has no referrers API, an entry in
// the referrers tag `sha256-<index hex>` (replacing older releases of the same index).
//
// Pull fetches the index by tag or digest, its manifests, every blob (resumable, each checked
// against its digest and size) and the newest release referrer, into a staging directory beside
// the output; the documents are checked as `airlock inspect` checks them, then the layout is
// published atomically as a directory or a tar. A failed pull leaves nothing behind. The
// layout's index.json is written exactly as `airlock pack` and `airlock sign` write it, so a
// package that holds one model package and its release comes back byte for byte.
//
// Both block; neither is thread-safe (they drive one RegistryClient).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "net/registry_client.hpp"
#include "pkg/oci.hpp"

namespace airlock::net {

using SayFn = std::function<void(const std::string&)>;
// Byte progress of one blob, labelled with its file path in the package.
using LabelledProgress =
    std::function<void(const std::string& label, std::uint64_t done, std::uint64_t total)>;

struct PushOptions {
  std::string ref;         // which package of the layout (its version tag); empty: the only one
  std::string tag;         // the registry tag; empty: the package's version
  std::string mount_from;  // a repository of the same registry to mount blobs from
  SayFn say;
  LabelledProgress progress;
};

struct PushResult {
  std::string name;
  std::string version;
  std::string tag;
  pkg::Descriptor index;
  std::size_t blobs_uploaded = 0;
  std::size_t blobs_existing = 0;
  std::size_t blobs_mounted = 0;
  std::uint64_t bytes_uploaded = 0;
  std::size_t manifests = 0;               // platform manifests and the index
  std::optional<Digest> release_manifest;  // the release referrer pushed, if the package had one
  bool referrers_tag_used = false;         // the registry has no referrers API
};

// Pushes the package at path (directory or tar) to repo. kNotFound / kCorrupt for a bad package;
// the registry's refusals as RegistryClient reports them.
[[nodiscard]] Result<PushResult> PushPackage(RegistryClient& client, const std::string& repo,
                                             const std::filesystem::path& path,
                                             const PushOptions& options);

struct PullOptions {
  bool replace = false;  // replace an existing package at the output
  // The index's size, when the caller knows it (a signed release gives it): no more of the
  // index is read. Else up to pkg::kMaxJsonBlob.
  std::optional<std::uint64_t> index_size;
  SayFn say;
  LabelledProgress progress;
  // Where a blob may already be on this machine (an installed package's copy), asked before each
  // download: the file is copied in only when its size and SHA-256 are the blob's; otherwise, or
  // when it names no file, the blob is fetched as usual.
  std::function<std::optional<std::filesystem::path>(const Digest&)> local_blob;
  // Called with each blob fetched and checked, at its place in the staging directory (which is
  // removed when the pull ends): a caller that wants to keep what a killed pull had fetched links
  // it elsewhere and offers it back through local_blob.
  std::function<void(const Digest&, const std::filesystem::path&)> fetched;
};

struct PullResult {
  std::string name;
  std::string version;
  pkg::Descriptor index;
  std::size_t blobs = 0;     // fetched from the registry
  std::uint64_t bytes = 0;   // their bytes
  std::size_t reused = 0;    // copied from local_blob instead
  std::uint64_t reused_bytes = 0;
  std::optional<Digest> release_manifest;
  std::size_t releases_found = 0;  // release referrers the registry lists for the index
};

// Pulls repo:reference (a tag or "sha256:…") into output: a tar when it ends in ".tar", else a
// layout directory. kNotFound for an unknown repository, tag or digest; kUnsupported when the
// reference is not a model package; kCorrupt when the registry sends bytes that do not match
// their digest or size.
[[nodiscard]] Result<PullResult> PullPackage(RegistryClient& client, const std::string& repo,
                                             const std::string& reference,
                                             const std::filesystem::path& output,
                                             const PullOptions& options);

}  // namespace airlock::net
