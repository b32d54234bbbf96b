#pragma once
// SqliteMetadataStore: MetadataStore in one SQLite database file (the hub's embedded default).
//
// The database runs in WAL mode with synchronous=FULL (a committed push survives a power cut),
// foreign keys on, and a busy timeout. Its schema is created and upgraded by numbered migrations
// written in this library's code; each applied one is recorded in the table schema_migrations
// (version, description, applied_at), so a database opened by an older hub is upgraded in place
// and one written by a newer hub is refused (kUnsupported) rather than misread.
//
// Thread-safe: one connection, used under a mutex (SQLite allows one writer at a time anyway;
// the hub's metadata transactions are short).

#include <filesystem>
#include <memory>
#include <mutex>

#include "store/metadata_store.hpp"

struct sqlite3;

namespace airlock::store {

class SqliteMetadataStore final : public MetadataStore, private SqlDatabase {
 public:
  // Opens (creating if needed) the database at path and applies the migrations it lacks.
  [[nodiscard]] static Result<std::unique_ptr<SqliteMetadataStore>> Open(
      const std::filesystem::path& path);
  ~SqliteMetadataStore() override;
  SqliteMetadataStore(const SqliteMetadataStore&) = delete;
  SqliteMetadataStore& operator=(const SqliteMetadataStore&) = delete;

  // The highest migration applied (the schema version).
  [[nodiscard]] Result<int> SchemaVersion();
  // The highest migration this build knows.
  static int LatestSchemaVersion();

  SqlDatabase& sql() override { return *this; }
  Result<bool> RepositoryExists(std::string_view repository) override;
  Status LinkBlob(std::string_view repository, const Digest& digest, std::uint64_t size) override;
  Result<std::uint64_t> LinkedBlob(std::string_view repository, const Digest& digest) override;
  Result<bool> UnlinkBlob(std::string_view repository, const Digest& digest) override;
  Result<bool> IsBlobLinked(const Digest& digest) override;
  Status PutManifest(std::string_view repository, const ManifestRecord& manifest,
                     const ManifestReferences& references,
                     std::optional<std::string_view> tag) override;
  Result<ManifestRecord> GetManifest(std::string_view repository, const Digest& digest) override;
  Result<Digest> ResolveTag(std::string_view repository, std::string_view tag) override;
  Result<std::vector<std::string>> ListTags(std::string_view repository, std::string_view last,
                                            std::size_t limit) override;
  Status DeleteManifest(std::string_view repository, const Digest& digest) override;
  Status DeleteTag(std::string_view repository, std::string_view tag) override;
  Result<std::vector<ManifestRecord>> Referrers(std::string_view repository, const Digest& subject,
                                                std::string_view artifact_type) override;

 private:
  explicit SqliteMetadataStore(sqlite3* db) : db_(db) {}
  Status Migrate();
  Status Transact(const std::function<Status(SqlSession&)>& body) override;
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace airlock::store
