#include "store/sqlite_metadata_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "store/sqlite_statement.hpp"

namespace airlock::store {
namespace {

using sqlite::DbError;
using sqlite::Exec;
using sqlite::InTransaction;
using sqlite::Statement;

constexpr char kNow[] = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

// The schema, one migration per entry, applied in order and never edited once released: a change
// is a new entry. Text compares in byte order (SQLite's BINARY collation; PostgreSQL will need
// COLLATE "C" for the same tag order).
using Migration = SqlMigration;  // store/sql.hpp
const Migration kMigrations[] = {
    {1, "OCI repositories, blob links, manifests, tags",
     R"sql(
CREATE TABLE repositories (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE repository_blobs (
  repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest        TEXT NOT NULL,
  size          INTEGER NOT NULL,
  linked_at     TEXT NOT NULL,
  PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);
CREATE TABLE manifests (
  repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest        TEXT NOT NULL,
  media_type    TEXT NOT NULL,
  artifact_type TEXT NOT NULL,
  subject       TEXT,
  size          INTEGER NOT NULL,
  annotations   TEXT NOT NULL,
  bytes         BLOB NOT NULL,
  pushed_at     TEXT NOT NULL,
  PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject);
CREATE TABLE tags (
  repository_id INTEGER NOT NULL,
  name          TEXT NOT NULL,
  digest        TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  PRIMARY KEY (repository_id, name),
  FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest)
    ON DELETE CASCADE
);
)sql"},
    // Version 2 created the tables tokens and audit_log; they are the "auth" component's now
    // (SqlAuthStore, store/sql_auth_store.cpp), which creates them in either database. The entry
    // stays, empty, so that databases at version 2 open as before.
    {2, "hub tokens and audit log (since created by the auth component)", ""},
};

// The id of a repository, or nullopt.
Result<std::optional<std::int64_t>> RepositoryId(sqlite3* db, std::string_view name) {
  Statement s(db, "SELECT id FROM repositories WHERE name = ?");
  s.Bind(1, name);
  AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>(s.Int(0));
}

Result<std::int64_t> ExistingRepository(sqlite3* db, std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto id, RepositoryId(db, name));
  if (!id) {
    return Fail(ErrorCode::kNotFound, "no repository " + std::string(name));
  }
  return *id;
}

Result<std::int64_t> EnsureRepository(sqlite3* db, std::string_view name) {
  Statement s(db, (std::string("INSERT INTO repositories (name, created_at) VALUES (?, ") + kNow +
                   ") ON CONFLICT (name) DO NOTHING")
                      .c_str());
  s.Bind(1, name);
  AIRLOCK_RETURN_IF_ERROR(s.Run());
  return ExistingRepository(db, name);
}

}  // namespace

int SqliteMetadataStore::LatestSchemaVersion() {
  return kMigrations[std::size(kMigrations) - 1].version;
}

Result<std::unique_ptr<SqliteMetadataStore>> SqliteMetadataStore::Open(
    const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Fail(ErrorCode::kIo,
                "cannot open the metadata database " + path.string() + ": " + message);
  }
  std::unique_ptr<SqliteMetadataStore> store(new SqliteMetadataStore(db));
  sqlite3_busy_timeout(db, 10000);
  Status ready = Exec(db,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                      "PRAGMA foreign_keys = ON;");
  if (ready) {
    ready = store->Migrate();
  }
  if (!ready) {
    return Fail(std::move(ready.error()).WithContext("while opening " + path.string()));
  }
  return store;
}

SqliteMetadataStore::~SqliteMetadataStore() { sqlite3_close(db_); }

Status SqliteMetadataStore::Migrate() {
  std::lock_guard lock(mu_);
  AIRLOCK_RETURN_IF_ERROR(Exec(db_,
                               "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                               "applied_at TEXT NOT NULL)"));
  return InTransaction<void>(db_, [&]() -> Status {
    Statement s(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    AIRLOCK_RETURN_IF_ERROR(s.Run());
    std::int64_t current = s.Int(0);
    if (current > LatestSchemaVersion()) {
      return Fail(ErrorCode::kUnsupported,
                  "the metadata database has schema version " + std::to_string(current) +
                      ", written by a newer airlock-hub; this one knows up to " +
                      std::to_string(LatestSchemaVersion()));
    }
    for (const Migration& m : kMigrations) {
      if (m.version <= current) {
        continue;
      }
      AIRLOCK_RETURN_IF_ERROR(Exec(db_, m.sql));
      Statement record(
          db_, (std::string("INSERT INTO schema_migrations VALUES (?, ?, ") + kNow + ")").c_str());
      record.Bind(1, std::int64_t{m.version}).Bind(2, m.description);
      AIRLOCK_RETURN_IF_ERROR(record.Run());
    }
    return {};
  });
}

Result<int> SqliteMetadataStore::SchemaVersion() {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  AIRLOCK_RETURN_IF_ERROR(s.Run());
  return static_cast<int>(s.Int(0));
}

Status SqliteMetadataStore::Transact(const std::function<Status(SqlSession&)>& body) {
  std::lock_guard lock(mu_);
  return InTransaction<void>(db_, [&]() -> Status {
    sqlite::Session session(db_);
    return body(session);
  });
}

Result<bool> SqliteMetadataStore::RepositoryExists(std::string_view repository) {
  std::lock_guard lock(mu_);
  AIRLOCK_ASSIGN_OR_RETURN(auto id, RepositoryId(db_, repository));
  return id.has_value();
}

Status SqliteMetadataStore::LinkBlob(std::string_view repository, const Digest& digest,
                                     std::uint64_t size) {
  std::lock_guard lock(mu_);
  return InTransaction<void>(db_, [&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, EnsureRepository(db_, repository));
    Statement s(db_, (std::string("INSERT INTO repository_blobs VALUES (?, ?, ?, ") + kNow +
                      ") ON CONFLICT DO NOTHING")
                         .c_str());
    s.Bind(1, repo).Bind(2, digest.ToString()).Bind(3, static_cast<std::int64_t>(size));
    return s.Run();
  });
}

Result<std::uint64_t> SqliteMetadataStore::LinkedBlob(std::string_view repository,
                                                      const Digest& digest) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "SELECT b.size FROM repository_blobs b JOIN repositories r ON r.id = "
              "b.repository_id WHERE r.name = ? AND b.digest = ?");
  s.Bind(1, repository).Bind(2, digest.ToString());
  AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Fail(ErrorCode::kNotFound,
                "blob " + digest.ToString() + " is not in repository " + std::string(repository));
  }
  return static_cast<std::uint64_t>(s.Int(0));
}

Result<bool> SqliteMetadataStore::UnlinkBlob(std::string_view repository, const Digest& digest) {
  std::lock_guard lock(mu_);
  return InTransaction<bool>(db_, [&]() -> Result<bool> {
    Statement del(db_,
                  "DELETE FROM repository_blobs WHERE digest = ? AND repository_id = "
                  "(SELECT id FROM repositories WHERE name = ?)");
    del.Bind(1, digest.ToString()).Bind(2, repository);
    AIRLOCK_RETURN_IF_ERROR(del.Run());
    if (sqlite3_changes(db_) == 0) {
      return Fail(ErrorCode::kNotFound,
                  "blob " + digest.ToString() + " is not in repository " + std::string(repository));
    }
    Statement left(db_, "SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = ?)");
    left.Bind(1, digest.ToString());
    AIRLOCK_RETURN_IF_ERROR(left.Run());
    return left.Int(0) != 0;
  });
}

Result<bool> SqliteMetadataStore::IsBlobLinked(const Digest& digest) {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = ?)");
  s.Bind(1, digest.ToString());
  AIRLOCK_RETURN_IF_ERROR(s.Run());
  return s.Int(0) != 0;
}

Status SqliteMetadataStore::PutManifest(std::string_view repository, const ManifestRecord& manifest,
                                        const ManifestReferences& references,
                                        std::optional<std::string_view> tag) {
  std::lock_guard lock(mu_);
  return InTransaction<void>(db_, [&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, EnsureRepository(db_, repository));
    for (const auto& blob : references.blobs) {
      Statement s(db_, "SELECT size FROM repository_blobs WHERE repository_id = ? AND digest = ?");
      s.Bind(1, repo).Bind(2, blob.digest.ToString());
      AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return Fail(ErrorCode::kNotFound, "blob " + blob.digest.ToString() +
                                              " is not in repository " + std::string(repository));
      }
      if (static_cast<std::uint64_t>(s.Int(0)) != blob.size) {
        return Fail(ErrorCode::kInvalidArgument,
                    "blob " + blob.digest.ToString() + " has " + std::to_string(s.Int(0)) +
                        " bytes, but the manifest says " + std::to_string(blob.size));
      }
    }
    for (const auto& child : references.manifests) {
      Statement s(db_, "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?");
      s.Bind(1, repo).Bind(2, child.ToString());
      AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return Fail(ErrorCode::kNotFound, "manifest " + child.ToString() +
                                              " is not in repository " + std::string(repository));
      }
    }
    Statement put(db_, (std::string("INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ") +
                        kNow + ") ON CONFLICT DO NOTHING")
                           .c_str());
    put.Bind(1, repo)
        .Bind(2, manifest.digest.ToString())
        .Bind(3, manifest.media_type)
        .Bind(4, manifest.artifact_type)
        .Bind(6, static_cast<std::int64_t>(manifest.size))
        .Bind(7, manifest.annotations_json)
        .BindBlob(8, manifest.bytes);
    if (manifest.subject) {
      put.Bind(5, manifest.subject->ToString());
    } else {
      put.BindNull(5);
    }
    AIRLOCK_RETURN_IF_ERROR(put.Run());
    if (tag) {
      Statement t(db_, (std::string("INSERT INTO tags VALUES (?, ?, ?, ") + kNow +
                        ") ON CONFLICT (repository_id, name) DO UPDATE SET digest = "
                        "excluded.digest, updated_at = excluded.updated_at")
                           .c_str());
      t.Bind(1, repo).Bind(2, *tag).Bind(3, manifest.digest.ToString());
      AIRLOCK_RETURN_IF_ERROR(t.Run());
    }
    return {};
  });
}

Result<ManifestRecord> SqliteMetadataStore::GetManifest(std::string_view repository,
                                                        const Digest& digest) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "SELECT m.media_type, m.artifact_type, m.subject, m.size, m.annotations, m.bytes "
              "FROM manifests m JOIN repositories r ON r.id = m.repository_id "
              "WHERE r.name = ? AND m.digest = ?");
  s.Bind(1, repository).Bind(2, digest.ToString());
  AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Fail(ErrorCode::kNotFound, "manifest " + digest.ToString() + " is not in repository " +
                                          std::string(repository));
  }
  ManifestRecord m;
  m.digest = digest;
  m.media_type = s.Text(0);
  m.artifact_type = s.Text(1);
  if (!s.IsNull(2)) {
    AIRLOCK_ASSIGN_OR_RETURN(Digest subject, Digest::Parse(s.Text(2)));
    m.subject = subject;
  }
  m.size = static_cast<std::uint64_t>(s.Int(3));
  m.annotations_json = s.Text(4);
  m.bytes = s.Blob(5);
  return m;
}

Result<Digest> SqliteMetadataStore::ResolveTag(std::string_view repository, std::string_view tag) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id "
              "WHERE r.name = ? AND t.name = ?");
  s.Bind(1, repository).Bind(2, tag);
  AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Fail(ErrorCode::kNotFound,
                "no tag " + std::string(tag) + " in repository " + std::string(repository));
  }
  return Digest::Parse(s.Text(0));
}

Result<std::vector<std::string>> SqliteMetadataStore::ListTags(std::string_view repository,
                                                               std::string_view last,
                                                               std::size_t limit) {
  std::lock_guard lock(mu_);
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, ExistingRepository(db_, repository));
  Statement s(db_,
              "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name "
              "LIMIT ?");
  s.Bind(1, repo).Bind(2, last).Bind(
      3, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
  std::vector<std::string> tags;
  while (true) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    tags.push_back(s.Text(0));
  }
  return tags;
}

Status SqliteMetadataStore::DeleteManifest(std::string_view repository, const Digest& digest) {
  std::lock_guard lock(mu_);
  return InTransaction<void>(db_, [&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, ExistingRepository(db_, repository));
    Statement tags(db_, "DELETE FROM tags WHERE repository_id = ? AND digest = ?");
    tags.Bind(1, repo).Bind(2, digest.ToString());
    AIRLOCK_RETURN_IF_ERROR(tags.Run());
    Statement del(db_, "DELETE FROM manifests WHERE repository_id = ? AND digest = ?");
    del.Bind(1, repo).Bind(2, digest.ToString());
    AIRLOCK_RETURN_IF_ERROR(del.Run());
    if (sqlite3_changes(db_) == 0) {
      return Fail(ErrorCode::kNotFound, "manifest " + digest.ToString() + " is not in repository " +
                                            std::string(repository));
    }
    return {};
  });
}

Status SqliteMetadataStore::DeleteTag(std::string_view repository, std::string_view tag) {
  std::lock_guard lock(mu_);
  Statement del(db_,
                "DELETE FROM tags WHERE name = ? AND repository_id = "
                "(SELECT id FROM repositories WHERE name = ?)");
  del.Bind(1, tag).Bind(2, repository);
  AIRLOCK_RETURN_IF_ERROR(del.Run());
  if (sqlite3_changes(db_) == 0) {
    return Fail(ErrorCode::kNotFound,
                "no tag " + std::string(tag) + " in repository " + std::string(repository));
  }
  return {};
}

Result<std::vector<ManifestRecord>> SqliteMetadataStore::Referrers(std::string_view repository,
                                                                   const Digest& subject,
                                                                   std::string_view artifact_type) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations "
              "FROM manifests m JOIN repositories r ON r.id = m.repository_id "
              "WHERE r.name = ? AND m.subject = ? AND (? = '' OR m.artifact_type = ?) "
              "ORDER BY m.digest");
  s.Bind(1, repository).Bind(2, subject.ToString()).Bind(3, artifact_type).Bind(4, artifact_type);
  std::vector<ManifestRecord> out;
  while (true) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    ManifestRecord m;
    AIRLOCK_ASSIGN_OR_RETURN(m.digest, Digest::Parse(s.Text(0)));
    m.media_type = s.Text(1);
    m.artifact_type = s.Text(2);
    m.subject = subject;
    m.size = static_cast<std::uint64_t>(s.Int(3));
    m.annotations_json = s.Text(4);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace airlock::store
