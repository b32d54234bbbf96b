#include "gateway/cache.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace airlock::gateway {
namespace fs = std::filesystem;
using store::SqlParam;
using store::SqlRows;
using store::SqlSession;

namespace {

using nlohmann::json;

// The index's schema, one migration per entry, never edited once released: a change is a new
// entry. Times are Unix seconds. Manifests are small (the hub refuses ones above 4 MiB) and are
// kept in the index with their package.
const store::SqlMigration kMigrations[] = {
    {1, "blobs, downloads, packages, their manifests and blobs, pins", R"sql(
CREATE TABLE cache_blobs (
  digest       TEXT PRIMARY KEY,
  size         BIGINT NOT NULL,
  last_access  BIGINT NOT NULL
);
CREATE TABLE cache_downloads (
  digest      TEXT PRIMARY KEY,
  size        BIGINT NOT NULL,
  upload_id   TEXT NOT NULL,
  started_at  BIGINT NOT NULL
);
CREATE TABLE cache_packages (
  repository        TEXT NOT NULL,
  tag               TEXT NOT NULL,
  index_digest      TEXT NOT NULL,
  release_document  TEXT NOT NULL,
  complete          BIGINT NOT NULL,
  declared_at       BIGINT NOT NULL,
  PRIMARY KEY (repository, tag)
);
CREATE TABLE cache_package_manifests (
  repository     TEXT NOT NULL,
  tag            TEXT NOT NULL,
  digest         TEXT NOT NULL,
  media_type     TEXT NOT NULL,
  artifact_type  TEXT NOT NULL,
  subject        TEXT,
  annotations    TEXT NOT NULL,
  size           BIGINT NOT NULL,
  body           TEXT NOT NULL,
  PRIMARY KEY (repository, tag, digest),
  FOREIGN KEY (repository, tag) REFERENCES cache_packages (repository, tag) ON DELETE CASCADE
);
CREATE INDEX cache_package_manifests_subject ON cache_package_manifests (repository, subject);
CREATE TABLE cache_package_blobs (
  repository  TEXT NOT NULL,
  tag         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  size        BIGINT NOT NULL,
  PRIMARY KEY (repository, tag, digest),
  FOREIGN KEY (repository, tag) REFERENCES cache_packages (repository, tag) ON DELETE CASCADE
);
CREATE INDEX cache_package_blobs_digest ON cache_package_blobs (digest);
CREATE TABLE cache_pins (
  owner       TEXT NOT NULL,
  repository  TEXT NOT NULL,
  tag         TEXT NOT NULL,
  pinned_at   BIGINT NOT NULL,
  PRIMARY KEY (owner, repository, tag),
  FOREIGN KEY (repository, tag) REFERENCES cache_packages (repository, tag) ON DELETE CASCADE
))sql"},
};

// The digests of blobs that some pinned package needs.
constexpr char kPinnedDigests[] =
    "SELECT DISTINCT b.digest FROM cache_package_blobs b JOIN cache_pins p "
    "ON p.repository = b.repository AND p.tag = b.tag";

constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";

std::int64_t I64(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t U64(std::int64_t v) { return v < 0 ? 0 : static_cast<std::uint64_t>(v); }

std::string Bytes(std::uint64_t n) { return std::to_string(n) + " bytes"; }

// One manifest of a package, read for what the cache needs.
struct ReadManifest {
  Digest digest;
  std::string bytes;
  std::string media_type;
  std::string artifact_type;
  std::optional<Digest> subject;
  std::string annotations;                              // JSON, "" when none
  std::vector<Digest> children;                         // an index's manifests
  std::vector<std::pair<Digest, std::uint64_t>> blobs;  // an image manifest's config and layers
};

Result<std::pair<Digest, std::uint64_t>> ReadDescriptor(const json& d, const std::string& where) {
  if (!d.is_object() || !d.contains("digest") || !d["digest"].is_string() || !d.contains("size") ||
      !d["size"].is_number_unsigned()) {
    return Fail(ErrorCode::kInvalidArgument,
                where + " is not a descriptor with a digest and a non-negative size");
  }
  auto digest = Digest::Parse(d["digest"].get<std::string>());
  if (!digest) {
    return Fail(std::move(digest.error()).WithContext("in " + where));
  }
  return std::make_pair(*digest, d["size"].get<std::uint64_t>());
}

Result<ReadManifest> Read(std::string bytes) {
  ReadManifest m{Sha256Of(bytes), std::move(bytes), "", "", std::nullopt, "", {}, {}};
  std::string at = "manifest " + m.digest.ToString();
  json doc = json::parse(m.bytes, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, at + " is not a JSON object");
  }
  if (doc.contains("mediaType") && doc["mediaType"].is_string()) {
    m.media_type = doc["mediaType"].get<std::string>();
  } else if (doc.contains("manifests")) {
    m.media_type = kOciIndex;
  } else {
    m.media_type = kOciManifest;
  }
  if (doc.contains("artifactType") && doc["artifactType"].is_string()) {
    m.artifact_type = doc["artifactType"].get<std::string>();
  }
  if (doc.contains("subject")) {
    AIRLOCK_ASSIGN_OR_RETURN(auto subject, ReadDescriptor(doc["subject"], at + " subject"));
    m.subject = subject.first;
  }
  if (doc.contains("annotations") && doc["annotations"].is_object()) {
    m.annotations = doc["annotations"].dump();
  }
  if (m.media_type == kOciIndex) {
    if (!doc.contains("manifests") || !doc["manifests"].is_array()) {
      return Fail(ErrorCode::kInvalidArgument, at + " is an index without a manifests list");
    }
    for (const json& entry : doc["manifests"]) {
      AIRLOCK_ASSIGN_OR_RETURN(auto child, ReadDescriptor(entry, at + " manifests entry"));
      m.children.push_back(child.first);
    }
  } else if (m.media_type == kOciManifest) {
    if (!doc.contains("config") || !doc.contains("layers") || !doc["layers"].is_array()) {
      return Fail(ErrorCode::kInvalidArgument,
                  at + " is an image manifest without config and layers");
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto config, ReadDescriptor(doc["config"], at + " config"));
    m.blobs.push_back(config);
    if (m.artifact_type.empty() && doc["config"].contains("mediaType") &&
        doc["config"]["mediaType"].is_string()) {
      // The referrers API's rule: an image manifest without artifactType is typed by its config.
      m.artifact_type = doc["config"]["mediaType"].get<std::string>();
    }
    for (const json& layer : doc["layers"]) {
      AIRLOCK_ASSIGN_OR_RETURN(auto blob, ReadDescriptor(layer, at + " layer"));
      m.blobs.push_back(blob);
    }
  } else {
    return Fail(ErrorCode::kUnsupported,
                at + " has media type " + m.media_type + ", which the cache does not serve");
  }
  return m;
}

Status Ok(const Result<SqlRows>& r) {
  if (!r) {
    return Fail(r.error());
  }
  return {};
}

}  // namespace

bool IsRepositoryName(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return false;
  }
  std::size_t start = 0;
  for (;;) {
    std::size_t end = name.find('/', start);
    std::string_view part =
        name.substr(start, end == std::string_view::npos ? name.npos : end - start);
    if (part.empty() || part == "." || part == "..") {
      return false;
    }
    for (char c : part) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok) {
        return false;
      }
    }
    if (end == std::string_view::npos) {
      return true;
    }
    start = end + 1;
  }
}

bool IsTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  for (std::size_t i = 0; i < tag.size(); ++i) {
    char c = tag[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (i > 0 && (c == '.' || c == '-'));
    if (!ok) {
      return false;
    }
  }
  return true;
}

// ---- BlobDownload ----

Result<std::uint64_t> BlobDownload::offset() const {
  return cache_->DownloadOffset(digest_, size_);
}
Result<DownloadWriter> BlobDownload::Writer(std::uint64_t offset) {
  return cache_->Writer(digest_, size_, offset);
}
Result<std::uint64_t> BlobDownload::Append(std::uint64_t offset, std::string_view bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(DownloadWriter writer, Writer(offset));
  AIRLOCK_RETURN_IF_ERROR(writer.Write(bytes));
  return writer.offset();
}

Status DownloadWriter::Write(std::string_view bytes) {
  if (!appender_) {
    return Fail(ErrorCode::kInternal,
                "the download of " + digest_.ToString() + " was closed by an earlier error");
  }
  Status written = appender_->Write(bytes);
  if (written) {
    offset_ = appender_->size();
    return {};
  }
  appender_.reset();
  if (written.error().code() != ErrorCode::kInvalidArgument) {
    return written;
  }
  // More bytes than declared: the source is not to be trusted for the rest either.
  Status aborted = cache_->Abort(digest_);
  Error e(ErrorCode::kCorrupt, "the download of " + digest_.ToString() + " would pass its " +
                                   "declared size of " + Bytes(size_) + " (" +
                                   Bytes(offset_ + bytes.size()) + " offered); it is discarded");
  if (!aborted) {
    e.WithContext("and discarding it failed: " + aborted.error().message());
  }
  return Fail(std::move(e));
}
Status BlobDownload::Commit() { return cache_->Commit(digest_, size_); }
Status BlobDownload::Abort() { return cache_->Abort(digest_); }

// ---- GatewayCache ----

GatewayCache::GatewayCache(fs::path dir, CacheOptions options, const Clock& clock,
                           std::unique_ptr<store::BlobStore> blobs,
                           std::unique_ptr<store::SqliteDatabase> db)
    : dir_(std::move(dir)),
      options_(options),
      clock_(clock),
      blobs_(std::move(blobs)),
      db_(std::move(db)) {
  last_flush_ = NowSeconds();
}

GatewayCache::~GatewayCache() {
  (void)FlushAccessTimes();  // access times are a hint: losing them costs only eviction order
}

std::int64_t GatewayCache::NowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
}

Result<std::unique_ptr<GatewayCache>> GatewayCache::Open(const fs::path& dir, CacheOptions options,
                                                         const Clock& clock) {
  if (options.max_bytes == 0) {
    return Fail(ErrorCode::kInvalidArgument, "the cache needs a size limit (max_bytes) above 0");
  }
  auto blobs = store::BlobStore::Open(dir, {.uploads = store::UploadsOnOpen::kKeep});
  if (!blobs) {
    if (blobs.error().code() == ErrorCode::kUnavailable) {
      return Fail(ErrorCode::kUnavailable, "the cache in " + dir.string() +
                                               " is in use by another process (an "
                                               "airlock-gateway serving it?)");
    }
    return Fail(std::move(blobs.error()));
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto db, store::SqliteDatabase::Open(dir / "cache.db"));
  std::unique_ptr<GatewayCache> cache(
      new GatewayCache(dir, options, clock, std::move(*blobs), std::move(db)));
  auto now = cache->NowSeconds();
  AIRLOCK_RETURN_IF_ERROR(store::MigrateComponent(*cache->db_, "gateway_cache", kMigrations, now));
  Status reconciled = cache->Reconcile();
  if (!reconciled) {
    return Fail(
        std::move(reconciled.error()).WithContext("while opening the cache in " + dir.string()));
  }
  return cache;
}

Status GatewayCache::Reconcile() {
  // Downloads whose bytes are gone are forgotten; sessions the index never recorded (a crash
  // between starting one and recording it) are removed.
  using IdRow = std::pair<std::string, std::string>;
  AIRLOCK_ASSIGN_OR_RETURN(
      auto downloads,
      store::SqlQueryAll<IdRow>(*db_, "SELECT digest, upload_id FROM cache_downloads", {},
                                [](const SqlRows& r, std::size_t i) {
                                  return std::make_pair(r.Text(i, 0), r.Text(i, 1));
                                }));
  std::set<std::string> known_uploads;
  for (const auto& [digest, id] : downloads) {
    if (blobs_->UploadSize(id)) {
      known_uploads.insert(id);
      continue;
    }
    Status done = db_->Transact([&](SqlSession& s) -> Status {
      return Ok(s.Query("DELETE FROM cache_downloads WHERE digest = ?", {SqlParam(digest)}));
    });
    if (!done) {
      return done;
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "uploads", ec)) {
    std::string id = entry.path().filename().string();
    if (!known_uploads.contains(id)) {
      fs::remove_all(entry.path(), ec);
    }
  }

  // Blob files and index rows must agree.
  AIRLOCK_ASSIGN_OR_RETURN(auto collector, store::BlobCollector::Open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto files, collector->List());
  AIRLOCK_ASSIGN_OR_RETURN(auto rows,
                           store::SqlQueryAll<std::string>(
                               *db_, "SELECT digest FROM cache_blobs", {},
                               [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); }));
  std::set<std::string> on_disk;
  for (const auto& f : files) {
    on_disk.insert(f.digest.ToString());
  }
  std::set<std::string> indexed(rows.begin(), rows.end());
  std::int64_t now = NowSeconds();
  return db_->Transact([&](SqlSession& s) -> Status {
    for (const auto& f : files) {
      if (!indexed.contains(f.digest.ToString())) {
        // Published (verified against its name) but not recorded: adopt it.
        AIRLOCK_RETURN_IF_ERROR(Ok(s.Query("INSERT INTO cache_blobs VALUES (?, ?, ?)",
                                           {f.digest.ToString(), I64(f.size), now})));
      }
    }
    for (const auto& digest : indexed) {
      if (!on_disk.contains(digest)) {
        AIRLOCK_RETURN_IF_ERROR(Ok(s.Query("DELETE FROM cache_blobs WHERE digest = ?", {digest})));
        AIRLOCK_RETURN_IF_ERROR(
            Ok(s.Query("UPDATE cache_packages SET complete = 0 WHERE (repository, tag) IN "
                       "(SELECT repository, tag FROM cache_package_blobs WHERE digest = ?)",
                       {digest})));
      }
    }
    return {};
  });
}

bool GatewayCache::HasBlob(const Digest& digest) {
  auto rows =
      store::SqlQueryAll<int>(*db_, "SELECT 1 FROM cache_blobs WHERE digest = ?",
                              {digest.ToString()}, [](const SqlRows&, std::size_t) { return 1; });
  return rows && !rows->empty();
}

Result<std::string> GatewayCache::DownloadId(const Digest& digest, std::uint64_t size) {
  AIRLOCK_ASSIGN_OR_RETURN(
      auto id, store::SqlQueryOne<std::string>(
                   *db_, "SELECT upload_id FROM cache_downloads WHERE digest = ? AND size = ?",
                   {digest.ToString(), I64(size)},
                   [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); },
                   "no download of " + digest.ToString() + " (" + Bytes(size) +
                       ") is open: it was committed, aborted or discarded"));
  return id;
}

Result<BlobDownload> GatewayCache::BeginBlob(const Digest& digest, std::uint64_t size) {
  std::lock_guard lock(mu_);
  if (HasBlob(digest)) {
    return Fail(ErrorCode::kAlreadyExists, "blob " + digest.ToString() + " is already cached");
  }
  if (size > options_.max_bytes) {
    return Fail(ErrorCode::kUnavailable, "blob " + digest.ToString() + " has " + Bytes(size) +
                                             ", more than the cache's limit of " +
                                             Bytes(options_.max_bytes));
  }
  using DownloadRow = std::pair<std::string, std::uint64_t>;
  AIRLOCK_ASSIGN_OR_RETURN(auto existing,
                           store::SqlQueryAll<DownloadRow>(
                               *db_, "SELECT upload_id, size FROM cache_downloads WHERE digest = ?",
                               {digest.ToString()}, [](const SqlRows& r, std::size_t i) {
                                 return std::make_pair(r.Text(i, 0), U64(r.Int(i, 1)));
                               }));
  if (!existing.empty()) {
    const auto& [id, declared] = existing.front();
    if (declared == size && blobs_->UploadSize(id)) {
      return BlobDownload(this, digest, size);  // resume
    }
    // Another size was declared before: those bytes are of no use.
    (void)blobs_->CancelUpload(id);
    Status done = db_->Transact([&](SqlSession& s) -> Status {
      return Ok(s.Query("DELETE FROM cache_downloads WHERE digest = ?", {digest.ToString()}));
    });
    if (!done) {
      return Fail(std::move(done).error());
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, blobs_->StartUpload(digest.ToString()));
  Status recorded = db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query("INSERT INTO cache_downloads VALUES (?, ?, ?, ?)",
                      {digest.ToString(), I64(size), id, NowSeconds()}));
  });
  if (!recorded) {
    (void)blobs_->CancelUpload(id);
    return Fail(std::move(recorded.error()));
  }
  return BlobDownload(this, digest, size);
}

Result<std::uint64_t> GatewayCache::DownloadOffset(const Digest& digest, std::uint64_t size) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, DownloadId(digest, size));
  return blobs_->UploadSize(id);
}

Result<DownloadWriter> GatewayCache::Writer(const Digest& digest, std::uint64_t size,
                                            std::uint64_t offset) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, DownloadId(digest, size));
  AIRLOCK_ASSIGN_OR_RETURN(auto appender, blobs_->OpenAppender(id, offset, size));
  return DownloadWriter(this, digest, size, std::move(appender));
}

Status GatewayCache::Abort(const Digest& digest) {
  AIRLOCK_ASSIGN_OR_RETURN(
      auto ids,
      store::SqlQueryAll<std::string>(
          *db_, "SELECT upload_id FROM cache_downloads WHERE digest = ?", {digest.ToString()},
          [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); }));
  if (ids.empty()) {
    return Fail(ErrorCode::kNotFound, "no download of " + digest.ToString() + " is open");
  }
  Status cancelled = blobs_->CancelUpload(ids.front());
  if (!cancelled && cancelled.error().code() != ErrorCode::kNotFound) {
    return cancelled;
  }
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query("DELETE FROM cache_downloads WHERE digest = ?", {digest.ToString()}));
  });
}

Status GatewayCache::Commit(const Digest& digest, std::uint64_t size) {
  std::lock_guard lock(mu_);
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, DownloadId(digest, size));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t have, blobs_->UploadSize(id));
  if (have != size) {
    return Fail(ErrorCode::kInvalidArgument, "the download of " + digest.ToString() + " has " +
                                                 std::to_string(have) + " of " + Bytes(size) +
                                                 "; append the rest before committing");
  }
  AIRLOCK_RETURN_IF_ERROR(MakeRoom(size, digest));
  auto finished = blobs_->FinishUpload(id, digest, size);
  if (!finished) {
    if (finished.error().code() == ErrorCode::kCorrupt) {
      // The bytes were wrong: BlobStore removed the session; forget it too. (Other errors, a
      // busy session say, keep the download.)
      (void)db_->Transact([&](SqlSession& s) -> Status {
        return Ok(s.Query("DELETE FROM cache_downloads WHERE digest = ?", {digest.ToString()}));
      });
    }
    return Fail(std::move(finished.error()).WithContext("while committing " + digest.ToString()));
  }
  // A crash here leaves a published blob without a row: Reconcile adopts it.
  return db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(
        Ok(s.Query("INSERT INTO cache_blobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                   {digest.ToString(), I64(size), NowSeconds()})));
    return Ok(s.Query("DELETE FROM cache_downloads WHERE digest = ?", {digest.ToString()}));
  });
}

Status GatewayCache::MakeRoom(std::uint64_t bytes, const Digest& for_blob) {
  AIRLOCK_RETURN_IF_ERROR(FlushAccessTimes());
  struct Candidate {
    std::string digest;
    std::uint64_t size;
  };
  std::uint64_t committed = 0, pinned = 0;
  std::vector<Candidate> candidates;
  Status done = db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(auto total, s.Query("SELECT COALESCE(SUM(size), 0) FROM cache_blobs"));
    committed = U64(total.Int(0, 0));
    AIRLOCK_ASSIGN_OR_RETURN(
        auto held, s.Query(std::string("SELECT COALESCE(SUM(size), 0) FROM cache_blobs WHERE "
                                       "digest IN (") +
                           kPinnedDigests + ")"));
    pinned = U64(held.Int(0, 0));
    AIRLOCK_ASSIGN_OR_RETURN(
        auto rows,
        s.Query(std::string("SELECT digest, size FROM cache_blobs WHERE digest NOT IN (") +
                kPinnedDigests + ") ORDER BY last_access, digest"));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      candidates.push_back({rows.Text(i, 0), U64(rows.Int(i, 1))});
    }
    return {};
  });
  if (!done) {
    return done;
  }
  if (committed + bytes <= options_.max_bytes) {
    return {};
  }
  if (pinned + bytes > options_.max_bytes) {
    return Fail(ErrorCode::kUnavailable,
                "no room in the cache for " + for_blob.ToString() + " (" + Bytes(bytes) +
                    "): the limit is " + Bytes(options_.max_bytes) + " and " + Bytes(pinned) +
                    " of it are pinned by deployments; unpin a package or raise the limit");
  }
  // Least recently used first, until the new blob fits.
  for (const Candidate& c : candidates) {
    if (committed + bytes <= options_.max_bytes) {
      break;
    }
    // The index first: a crash before the file goes leaves an unlisted file, which Reconcile
    // adopts as an unused blob; the other order could leave a listed blob without bytes.
    Status forgotten = db_->Transact([&](SqlSession& s) -> Status {
      AIRLOCK_RETURN_IF_ERROR(
          Ok(s.Query("DELETE FROM cache_packages WHERE (repository, tag) IN "
                     "(SELECT repository, tag FROM cache_package_blobs WHERE digest = ?)",
                     {c.digest})));
      return Ok(s.Query("DELETE FROM cache_blobs WHERE digest = ?", {c.digest}));
    });
    if (!forgotten) {
      return forgotten;
    }
    AIRLOCK_ASSIGN_OR_RETURN(Digest d, Digest::Parse(c.digest));
    Status removed = blobs_->Remove(d);
    if (!removed && removed.error().code() != ErrorCode::kNotFound) {
      return removed;
    }
    {
      std::lock_guard access_lock(access_mu_);
      accessed_.erase(d);
    }
    committed -= c.size;
  }
  return {};
}

Status GatewayCache::DeclarePackage(const PackageSpec& spec) {
  if (!IsRepositoryName(spec.ref.repository) || !IsTag(spec.ref.tag)) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + spec.ref.ToString().substr(0, 300) +
                    "\" is not a repository:tag the registry can serve (lowercase a-z 0-9 . _ - "
                    "components joined by /; a tag of A-Z a-z 0-9 _ . -, at most 128)");
  }
  std::map<Digest, ReadManifest> manifests;
  for (const std::string& bytes : spec.manifests) {
    AIRLOCK_ASSIGN_OR_RETURN(ReadManifest m, Read(bytes));
    manifests.emplace(m.digest, std::move(m));
  }
  std::string at = "package " + spec.ref.ToString();
  if (!manifests.contains(spec.index)) {
    return Fail(ErrorCode::kInvalidArgument, at + ": its tagged manifest " + spec.index.ToString() +
                                                 " is not among its " +
                                                 std::to_string(manifests.size()) + " manifests");
  }
  // An index may name variants the spec leaves out (other platforms than the site's devices):
  // those are simply not served. Every blob of a given manifest is needed.
  std::map<Digest, std::uint64_t> blobs;
  for (const auto& [digest, m] : manifests) {
    for (const auto& [blob, size] : m.blobs) {
      auto [it, inserted] = blobs.emplace(blob, size);
      if (!inserted && it->second != size) {
        return Fail(ErrorCode::kInvalidArgument,
                    at + ": blob " + blob.ToString() + " is given two sizes, " +
                        std::to_string(it->second) + " and " + std::to_string(size));
      }
    }
  }
  std::int64_t now = NowSeconds();
  const std::string& repo = spec.ref.repository;
  const std::string& tag = spec.ref.tag;
  return db_->Transact([&](SqlSession& s) -> Status {
    // Pins survive a new declaration of the same ref; its manifests and blobs are replaced.
    AIRLOCK_RETURN_IF_ERROR(Ok(s.Query(
        "INSERT INTO cache_packages VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (repository, tag) DO "
        "UPDATE SET index_digest = excluded.index_digest, release_document = "
        "excluded.release_document, complete = 0, declared_at = excluded.declared_at",
        {repo, tag, spec.index.ToString(), spec.release, now})));
    AIRLOCK_RETURN_IF_ERROR(Ok(s.Query(
        "DELETE FROM cache_package_manifests WHERE repository = ? AND tag = ?", {repo, tag})));
    AIRLOCK_RETURN_IF_ERROR(Ok(
        s.Query("DELETE FROM cache_package_blobs WHERE repository = ? AND tag = ?", {repo, tag})));
    for (const auto& [digest, m] : manifests) {
      AIRLOCK_RETURN_IF_ERROR(
          Ok(s.Query("INSERT INTO cache_package_manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     {repo, tag, digest.ToString(), m.media_type, m.artifact_type,
                      m.subject ? SqlParam(m.subject->ToString()) : SqlParam(nullptr),
                      m.annotations, I64(m.bytes.size()), m.bytes})));
    }
    for (const auto& [digest, size] : blobs) {
      AIRLOCK_RETURN_IF_ERROR(Ok(s.Query("INSERT INTO cache_package_blobs VALUES (?, ?, ?, ?)",
                                         {repo, tag, digest.ToString(), I64(size)})));
    }
    return {};
  });
}

namespace {

// The blobs (digest, size) the package needs that the cache does not hold, by digest; kNotFound
// when the package is not in the cache.
Result<SqlRows> MissingBlobRows(SqlSession& s, const PackageRef& ref) {
  AIRLOCK_ASSIGN_OR_RETURN(
      auto exists, s.Query("SELECT 1 FROM cache_packages WHERE repository = ? AND tag = ?",
                           {ref.repository, ref.tag}));
  if (exists.empty()) {
    return Fail(ErrorCode::kNotFound, "package " + ref.ToString() + " is not in the cache");
  }
  return s.Query(
      "SELECT b.digest, b.size FROM cache_package_blobs b LEFT JOIN cache_blobs c ON c.digest = "
      "b.digest WHERE b.repository = ? AND b.tag = ? AND c.digest IS NULL ORDER BY b.digest",
      {ref.repository, ref.tag});
}

}  // namespace

Result<std::vector<std::pair<Digest, std::uint64_t>>> GatewayCache::MissingBlobs(
    const PackageRef& ref) {
  using Missing = std::vector<std::pair<Digest, std::uint64_t>>;
  return store::SqlTransact<Missing>(*db_, [&](SqlSession& s) -> Result<Missing> {
    AIRLOCK_ASSIGN_OR_RETURN(auto rows, MissingBlobRows(s, ref));
    Missing out;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest d, Digest::Parse(rows.Text(i, 0)));
      out.emplace_back(d, U64(rows.Int(i, 1)));
    }
    return out;
  });
}

Status GatewayCache::CompletePackage(const PackageRef& ref) {
  // Under the lock, so that no eviction runs between the check and the mark.
  std::lock_guard lock(mu_);
  return db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(auto missing, MissingBlobRows(s, ref));
    if (!missing.empty()) {
      std::string names;
      for (std::size_t i = 0; i < missing.size() && i < 3; ++i) {
        names += (i ? ", " : "") + missing.Text(i, 0);
      }
      if (missing.size() > 3) {
        names += ", …";
      }
      return Fail(ErrorCode::kUnavailable, "package " + ref.ToString() + " lacks " +
                                               std::to_string(missing.size()) +
                                               " blob(s): " + names);
    }
    return Ok(s.Query("UPDATE cache_packages SET complete = 1 WHERE repository = ? AND tag = ?",
                      {ref.repository, ref.tag}));
  });
}

Result<std::vector<CachedPackage>> GatewayCache::ListPackages() {
  using List = std::vector<CachedPackage>;
  return store::SqlTransact<List>(*db_, [&](SqlSession& s) -> Result<List> {
    AIRLOCK_ASSIGN_OR_RETURN(
        auto rows, s.Query("SELECT p.repository, p.tag, p.index_digest, p.complete, "
                           "(SELECT COALESCE(SUM(b.size), 0) FROM cache_package_blobs b WHERE "
                           " b.repository = p.repository AND b.tag = p.tag), "
                           "(SELECT COALESCE(SUM(b.size), 0) FROM cache_package_blobs b LEFT JOIN "
                           " cache_blobs c ON c.digest = b.digest WHERE b.repository = "
                           " p.repository AND b.tag = p.tag AND c.digest IS NULL) "
                           "FROM cache_packages p ORDER BY p.repository, p.tag"));
    List out;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest index, Digest::Parse(rows.Text(i, 2)));
      CachedPackage p{{rows.Text(i, 0), rows.Text(i, 1)},
                      index,
                      U64(rows.Int(i, 4)),
                      U64(rows.Int(i, 5)),
                      rows.Int(i, 3) != 0,
                      {}};
      AIRLOCK_ASSIGN_OR_RETURN(
          auto pins, s.Query("SELECT owner FROM cache_pins WHERE repository = ? AND tag = ? "
                             "ORDER BY owner",
                             {p.ref.repository, p.ref.tag}));
      for (std::size_t j = 0; j < pins.size(); ++j) {
        p.pinned_by.push_back(pins.Text(j, 0));
      }
      out.push_back(std::move(p));
    }
    return out;
  });
}

Result<std::string> GatewayCache::Release(const PackageRef& ref) {
  return store::SqlQueryOne<std::string>(
      *db_, "SELECT release_document FROM cache_packages WHERE repository = ? AND tag = ?",
      {ref.repository, ref.tag}, [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); },
      "package " + ref.ToString() + " is not in the cache");
}

Status GatewayCache::Pin(std::string_view owner, const PackageRef& ref) {
  if (owner.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "a pin needs an owner (a deployment or delivery id)");
  }
  std::lock_guard lock(mu_);  // not while an eviction chooses its victims
  return db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        auto exists, s.Query("SELECT 1 FROM cache_packages WHERE repository = ? AND tag = ?",
                             {ref.repository, ref.tag}));
    if (exists.empty()) {
      return Fail(ErrorCode::kNotFound, "cannot pin package " + ref.ToString() +
                                            ": it is not in the cache (declare it first)");
    }
    return Ok(s.Query("INSERT INTO cache_pins VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      {std::string(owner), ref.repository, ref.tag, NowSeconds()}));
  });
}

Result<std::size_t> GatewayCache::Unpin(std::string_view owner) {
  return store::SqlTransact<std::size_t>(*db_, [&](SqlSession& s) -> Result<std::size_t> {
    AIRLOCK_ASSIGN_OR_RETURN(
        auto r, s.Query("DELETE FROM cache_pins WHERE owner = ?", {std::string(owner)}));
    return static_cast<std::size_t>(r.affected);
  });
}

Result<CacheUsage> GatewayCache::Usage() {
  CacheUsage u;
  u.max_bytes = options_.max_bytes;
  std::vector<std::string> uploads;
  Status done = db_->Transact([&](SqlSession& s) -> Status {
    uploads.clear();  // a retried transaction starts over
    AIRLOCK_ASSIGN_OR_RETURN(auto total,
                             s.Query("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM cache_blobs"));
    u.committed_bytes = U64(total.Int(0, 0));
    u.blobs = U64(total.Int(0, 1));
    AIRLOCK_ASSIGN_OR_RETURN(
        auto held, s.Query(std::string("SELECT COALESCE(SUM(size), 0) FROM cache_blobs WHERE "
                                       "digest IN (") +
                           kPinnedDigests + ")"));
    u.pinned_bytes = U64(held.Int(0, 0));
    AIRLOCK_ASSIGN_OR_RETURN(auto ids, s.Query("SELECT upload_id FROM cache_downloads"));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      uploads.push_back(ids.Text(i, 0));
    }
    return {};
  });
  if (!done) {
    return Fail(std::move(done).error());
  }
  u.downloads = uploads.size();
  for (const auto& id : uploads) {
    if (auto n = blobs_->UploadSize(id)) {
      u.download_bytes += *n;
    }
  }
  return u;
}

Status GatewayCache::CheckRoomFor(std::uint64_t bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(CacheUsage u, Usage());
  if (u.pinned_bytes + bytes > u.max_bytes) {
    return Fail(ErrorCode::kUnavailable,
                "the cache's limit is " + Bytes(u.max_bytes) + " and " + Bytes(u.pinned_bytes) +
                    " of it are pinned: " + Bytes(bytes) + " more do not fit");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t free, FreeDiskBytes(dir_));
  // Evicting every unpinned blob would free its bytes on the disk too.
  std::uint64_t reclaimable = u.committed_bytes - u.pinned_bytes;
  if (free + reclaimable < bytes) {
    return Fail(ErrorCode::kUnavailable, "the disk holding " + dir_.string() + " has " +
                                             Bytes(free) + " free (and " + Bytes(reclaimable) +
                                             " could be evicted): " + Bytes(bytes) + " do not fit");
  }
  return {};
}

Result<CachedManifest> GatewayCache::GetManifest(std::string_view repository,
                                                 std::string_view reference) {
  std::string repo(repository);
  std::string digest;
  if (auto d = Digest::Parse(reference)) {
    digest = d->ToString();
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(
        digest, store::SqlQueryOne<std::string>(
                    *db_,
                    "SELECT index_digest FROM cache_packages WHERE repository = ? AND tag = ? "
                    "AND complete = 1",
                    {repo, std::string(reference)},
                    [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); },
                    "no tag " + std::string(reference) + " in " + repo));
  }
  return store::SqlQueryOne<CachedManifest>(
      *db_,
      "SELECT m.digest, m.media_type, m.body FROM cache_package_manifests m JOIN cache_packages p "
      "ON p.repository = m.repository AND p.tag = m.tag WHERE p.complete = 1 AND "
      "m.repository = ? AND m.digest = ? LIMIT 1",
      {repo, digest},
      [](const SqlRows& r, std::size_t i) {
        return CachedManifest{*Digest::Parse(r.Text(i, 0)), r.Text(i, 1), r.Text(i, 2)};
      },
      "no manifest " + digest + " in " + repo);
}

Result<store::BlobFile> GatewayCache::OpenBlob(std::string_view repository, const Digest& digest) {
  AIRLOCK_ASSIGN_OR_RETURN(
      auto visible,
      store::SqlQueryAll<int>(
          *db_,
          "SELECT 1 FROM cache_package_blobs b JOIN cache_packages p ON p.repository = "
          "b.repository AND p.tag = b.tag WHERE p.complete = 1 AND b.repository = ? AND "
          "b.digest = ? LIMIT 1",
          {std::string(repository), digest.ToString()},
          [](const SqlRows&, std::size_t) { return 1; }));
  if (visible.empty()) {
    return Fail(ErrorCode::kNotFound,
                "no blob " + digest.ToString() + " in " + std::string(repository));
  }
  AIRLOCK_ASSIGN_OR_RETURN(store::BlobFile file, blobs_->OpenBlob(digest));
  bool due = false;
  {
    std::lock_guard lock(access_mu_);
    std::int64_t now = NowSeconds();
    accessed_[digest] = now;
    due = now - last_flush_ >= options_.access_flush_interval.count();
  }
  if (due) {
    // Failing to record an access time must not fail the read: it only orders eviction.
    (void)FlushAccessTimes();
  }
  return file;
}

Status GatewayCache::FlushAccessTimes() {
  std::map<Digest, std::int64_t> batch;
  {
    std::lock_guard lock(access_mu_);
    last_flush_ = NowSeconds();
    batch.swap(accessed_);
  }
  if (batch.empty()) {
    return {};
  }
  Status written = db_->Transact([&](SqlSession& s) -> Status {
    for (const auto& [digest, when] : batch) {
      AIRLOCK_RETURN_IF_ERROR(
          Ok(s.Query("UPDATE cache_blobs SET last_access = MAX(last_access, ?) WHERE digest = ?",
                     {when, digest.ToString()})));
    }
    return {};
  });
  if (!written) {
    // Keep them for the next flush (newer accesses recorded meanwhile win).
    std::lock_guard lock(access_mu_);
    for (const auto& [digest, when] : batch) {
      accessed_.emplace(digest, when);
    }
  }
  return written;
}

Result<std::vector<std::string>> GatewayCache::Tags(std::string_view repository) {
  return store::SqlQueryAll<std::string>(
      *db_, "SELECT tag FROM cache_packages WHERE repository = ? AND complete = 1 ORDER BY tag",
      {std::string(repository)}, [](const SqlRows& r, std::size_t i) { return r.Text(i, 0); });
}

Result<std::vector<Referrer>> GatewayCache::Referrers(std::string_view repository,
                                                      const Digest& subject,
                                                      std::string_view artifact_type) {
  std::string sql =
      "SELECT DISTINCT m.digest, m.media_type, m.artifact_type, m.size, m.annotations FROM "
      "cache_package_manifests m JOIN cache_packages p ON p.repository = m.repository AND "
      "p.tag = m.tag WHERE p.complete = 1 AND m.repository = ? AND m.subject = ?";
  std::vector<SqlParam> params{std::string(repository), subject.ToString()};
  if (!artifact_type.empty()) {
    sql += " AND m.artifact_type = ?";
    params.emplace_back(std::string(artifact_type));
  }
  sql += " ORDER BY m.digest";
  return store::SqlQueryAll<Referrer>(*db_, sql, params, [](const SqlRows& r, std::size_t i) {
    return Referrer{*Digest::Parse(r.Text(i, 0)), r.Text(i, 1), r.Text(i, 2), U64(r.Int(i, 3)),
                    r.Text(i, 4)};
  });
}

Result<std::uint64_t> FreeDiskBytes(const fs::path& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) {
    return Fail(ErrnoError("cannot read the free space of", path));
  }
  return static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
}

}  // namespace airlock::gateway
