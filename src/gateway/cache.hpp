#pragma once
// GatewayCache: the gateway's content-addressed cache of model packages (DESIGN §7), filled by
// resumable downloads from the hub and read by the gateway's OCI registry for its devices.
//
// Layout under the cache directory (docs/gateway.md, "The cache and the registry for devices"):
//   blobs/sha256/ab/abcdef…   one file per verified blob (store::BlobStore)
//   uploads/<uuid>/data       the bytes of a download so far (kept across restarts)
//   cache.db                  SQLite (WAL): blobs with size and last access, open downloads,
//                             packages (repository + tag → index digest, release document),
//                             their manifests' bytes and the blobs they need, and pins
//
// A package goes through two steps: DeclarePackage records its manifests and the blobs they
// need (it is not served yet); once every blob is committed, CompletePackage checks that each is
// present and makes it servable. Nothing half-written is ever served: a blob file appears only
// complete and verified, and a package only complete.
//
// Limits: the committed blobs' bytes never exceed max_bytes. Committing a blob that would pass
// it first evicts the least recently used unpinned blobs, together with the packages that need
// them; if the pinned bytes leave no room, the commit is refused (kUnavailable) and its download
// is kept for a later retry. A package is pinned by any number of owners (a deployment or a
// delivery id); its blobs are never evicted while one pin remains. Declare and pin a package
// *before* downloading its blobs, so that eviction cannot take its first blobs while the last
// ones arrive.
//
// Reads (the registry's) record each blob's access time in memory and write them to the index
// at most once per access_flush_interval (and on eviction and destruction), so a busy registry
// does not write to SQLite on every GET.
//
// Thread-safe: every method may be called from any thread. Only one process may use a directory
// (the blob store's lock). Every method blocks on the disk.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "store/blob_store.hpp"
#include "store/sqlite_database.hpp"

namespace airlock::gateway {

struct CacheOptions {
  // The most bytes of committed blobs the cache holds.
  std::uint64_t max_bytes = 0;
  // How often access times read by the registry are written to the index.
  std::chrono::seconds access_flush_interval{60};
};

// Repository names the registry can serve: lowercase components of [a-z0-9._-] joined by "/"
// (no empty, "." or ".." component), at most 255 bytes. Tags: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
bool IsRepositoryName(std::string_view name);
bool IsTag(std::string_view tag);

// A package in the cache: a tag of a repository.
struct PackageRef {
  std::string repository;
  std::string tag;
  std::string ToString() const { return repository + ":" + tag; }
  auto operator<=>(const PackageRef&) const = default;
};

// What DeclarePackage needs: the bytes of every manifest of the package (the tagged one, usually
// an image index; the manifests it lists; and referrers such as the signed release's manifest),
// and the signed release document itself (may be empty).
struct PackageSpec {
  PackageRef ref;
  Digest index;
  std::vector<std::string> manifests;
  std::string release;
};

// One cached package as ListPackages sees it.
struct CachedPackage {
  PackageRef ref;
  Digest index;
  std::uint64_t bytes = 0;          // the sizes of the blobs it needs (manifests not counted)
  std::uint64_t missing_bytes = 0;  // of which not committed yet
  bool complete = false;            // servable
  std::vector<std::string> pinned_by;
};

// A manifest as the registry serves it.
struct CachedManifest {
  Digest digest;
  std::string media_type;
  std::string bytes;
};

// An entry of the OCI referrers list.
struct Referrer {
  Digest digest;
  std::string media_type;
  std::string artifact_type;
  std::uint64_t size = 0;
  std::string annotations_json;  // "" when the manifest has none
};

// Bytes by state, for the status page and for answering a delivery offer.
struct CacheUsage {
  std::uint64_t max_bytes = 0;
  std::uint64_t committed_bytes = 0;
  std::uint64_t pinned_bytes = 0;    // committed blobs needed by a pinned package
  std::uint64_t download_bytes = 0;  // bytes of open downloads on disk
  std::uint64_t blobs = 0;           // committed blobs
  std::uint64_t downloads = 0;       // open downloads
};

class GatewayCache;

// A download held open for appending the bytes as they arrive (BlobDownload::Writer): one write
// and one hash update per piece. While it lives, other appends to the same download and its
// Commit are refused (kUnavailable); destroy it first.
class DownloadWriter {
 public:
  // Appends bytes at offset(). Bytes beyond the declared size are refused (kCorrupt) and the
  // whole download is discarded: a server that sends more than it should is not trusted for the
  // rest. After any error the writer is closed and refuses further bytes.
  [[nodiscard]] Status Write(std::string_view bytes);
  // The bytes on disk so far.
  std::uint64_t offset() const { return offset_; }

 private:
  friend class GatewayCache;
  DownloadWriter(GatewayCache* cache, Digest digest, std::uint64_t size,
                 std::unique_ptr<store::BlobStore::Appender> appender)
      : cache_(cache),
        digest_(digest),
        size_(size),
        offset_(appender->size()),
        appender_(std::move(appender)) {}
  GatewayCache* cache_;
  Digest digest_;
  std::uint64_t size_;
  std::uint64_t offset_;
  std::unique_ptr<store::BlobStore::Appender> appender_;
};

// One blob being downloaded into the cache. A cheap handle: it names the download by digest, so
// copies (and a new handle from BeginBlob after a restart) address the same bytes on disk. It
// must not outlive the cache that made it.
class BlobDownload {
 public:
  const Digest& digest() const { return digest_; }
  std::uint64_t size() const { return size_; }
  // The bytes on disk so far: where the next Append must start (where a resumed HTTP download
  // asks for Range: bytes=offset-).
  [[nodiscard]] Result<std::uint64_t> offset() const;
  // Opens the download for appending from offset, which must equal offset() (kMismatch
  // otherwise).
  [[nodiscard]] Result<DownloadWriter> Writer(std::uint64_t offset);
  // One Write through a Writer: appends bytes that start at offset and returns the new offset.
  [[nodiscard]] Result<std::uint64_t> Append(std::uint64_t offset, std::string_view bytes);
  // Verifies the exact size and SHA-256 and publishes the blob (atomically), evicting unpinned
  // blobs if the limit requires it. kCorrupt (download discarded) when the bytes are wrong;
  // kUnavailable (download kept) when pinned blobs leave no room.
  [[nodiscard]] Status Commit();
  // Removes the download and its bytes.
  [[nodiscard]] Status Abort();

 private:
  friend class GatewayCache;
  BlobDownload(GatewayCache* cache, Digest digest, std::uint64_t size)
      : cache_(cache), digest_(digest), size_(size) {}
  GatewayCache* cache_;
  Digest digest_;
  std::uint64_t size_;
};

class GatewayCache {
 public:
  // Opens (creating) the cache in dir: takes its lock (kUnavailable if another process holds
  // it), applies the index's migrations, and reconciles the index with the disk (downloads whose
  // bytes are gone are forgotten; verified blob files the index lacks — a crash between publish
  // and record — are adopted; blobs the index lists but the disk lacks are forgotten and their
  // packages made incomplete again).
  [[nodiscard]] static Result<std::unique_ptr<GatewayCache>> Open(const std::filesystem::path& dir,
                                                                  CacheOptions options,
                                                                  const Clock& clock);
  ~GatewayCache();
  GatewayCache(const GatewayCache&) = delete;
  GatewayCache& operator=(const GatewayCache&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // ---- blobs ----
  bool HasBlob(const Digest& digest);
  // Starts, or resumes, the download of a blob of size bytes. A download of the same digest
  // left by an earlier call or process is resumed when its declared size is the same (offset()
  // tells where), and restarted from zero otherwise. kAlreadyExists when the blob is committed;
  // kUnavailable when size alone is above max_bytes.
  [[nodiscard]] Result<BlobDownload> BeginBlob(const Digest& digest, std::uint64_t size);

  // ---- packages ----
  // Records a package's manifests (each verified against its digest, read for what it needs)
  // and the blobs they need. Replaces an earlier declaration of the same ref (which stops being
  // served until completed again). kInvalidArgument when a manifest is malformed, the tagged
  // digest is not among them, one blob is given two sizes, or the repository or tag is not a
  // valid name.
  [[nodiscard]] Status DeclarePackage(const PackageSpec& spec);
  // Makes a declared package servable once every blob it needs is committed; kUnavailable naming
  // the missing blobs otherwise (the package stays declared). kNotFound for an undeclared ref.
  [[nodiscard]] Status CompletePackage(const PackageRef& ref);
  [[nodiscard]] Result<std::vector<CachedPackage>> ListPackages();
  // The signed release document recorded with a package ("" when none was given).
  [[nodiscard]] Result<std::string> Release(const PackageRef& ref);
  // The blobs a declared package still needs: (digest, size) of each one not committed.
  [[nodiscard]] Result<std::vector<std::pair<Digest, std::uint64_t>>> MissingBlobs(
      const PackageRef& ref);

  // ---- pins ----
  // owner (a deployment or delivery id) needs the package: its blobs are not evicted. Idempotent.
  // kNotFound for an undeclared ref.
  [[nodiscard]] Status Pin(std::string_view owner, const PackageRef& ref);
  // Drops every pin of owner. Returns how many there were.
  [[nodiscard]] Result<std::size_t> Unpin(std::string_view owner);

  // ---- room ----
  [[nodiscard]] Result<CacheUsage> Usage();
  // Whether bytes more can be downloaded: OK when the limit (after evicting every unpinned blob)
  // and the free disk space both leave room; kUnavailable saying which one does not otherwise.
  [[nodiscard]] Status CheckRoomFor(std::uint64_t bytes);

  // ---- reads (the registry) ----
  // Only complete packages are visible, and only in their own repository.
  [[nodiscard]] Result<CachedManifest> GetManifest(std::string_view repository,
                                                   std::string_view reference);
  // Opens a blob for reading and records the access. kNotFound when no complete package of
  // repository needs it.
  [[nodiscard]] Result<store::BlobFile> OpenBlob(std::string_view repository, const Digest& digest);
  [[nodiscard]] Result<std::vector<std::string>> Tags(std::string_view repository);
  [[nodiscard]] Result<std::vector<Referrer>> Referrers(std::string_view repository,
                                                        const Digest& subject,
                                                        std::string_view artifact_type);
  // Writes the access times recorded in memory to the index now.
  [[nodiscard]] Status FlushAccessTimes();

 private:
  friend class BlobDownload;
  friend class DownloadWriter;
  GatewayCache(std::filesystem::path dir, CacheOptions options, const Clock& clock,
               std::unique_ptr<store::BlobStore> blobs, std::unique_ptr<store::SqliteDatabase> db);
  Status Reconcile();
  Result<std::string> DownloadId(const Digest& digest, std::uint64_t size);
  Result<std::uint64_t> DownloadOffset(const Digest& digest, std::uint64_t size);
  Result<DownloadWriter> Writer(const Digest& digest, std::uint64_t size, std::uint64_t offset);
  Status Commit(const Digest& digest, std::uint64_t size);
  Status Abort(const Digest& digest);
  Status MakeRoom(std::uint64_t bytes, const Digest& for_blob);
  std::int64_t NowSeconds() const;

  std::filesystem::path dir_;
  CacheOptions options_;
  const Clock& clock_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<store::SqliteDatabase> db_;

  std::mutex mu_;  // serialises commits, evictions, pins and completions
  // Taken after mu_ when both are needed, never before: reads take only this one, so a commit
  // hashing a large blob does not hold up the registry.
  std::mutex access_mu_;
  std::map<Digest, std::int64_t> accessed_;  // digest → Unix seconds, not yet written
  std::int64_t last_flush_ = 0;
};

// The bytes free for an unprivileged writer on the filesystem holding path (statvfs f_bavail).
[[nodiscard]] Result<std::uint64_t> FreeDiskBytes(const std::filesystem::path& path);

}  // namespace airlock::gateway
