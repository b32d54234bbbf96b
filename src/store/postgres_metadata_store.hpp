#pragma once
// PostgresMetadataStore: MetadataStore in a PostgreSQL database, so that several hub processes can
// share one (issue 4). Same semantics as SqliteMetadataStore, checked by the same test suite.
//
// Connections: a small pool (opened on demand, at most max_connections) over libpq, each method
// borrows one for the length of its call. Writes run as SERIALIZABLE transactions and are retried
// (a few times, with a short random pause) when PostgreSQL reports a serialization failure or a
// deadlock, which is how two hubs racing on the same rows resolve; reads are single statements.
// A connection found broken (the server restarted) is replaced when the failure happened before
// any work was sent; otherwise the call fails with kIo and the connection is discarded.
//
// Schema: created and upgraded by numbered migrations written in this library's code, recorded in
// schema_migrations (version, description, applied_at). Opening takes an advisory lock for the
// migration, so hubs started together on an empty database do not race; a database written by a
// newer hub is refused (kUnsupported). Text columns compare with COLLATE "C" (byte order, as
// SQLite's BINARY) whatever the database's locale.
//
// Errors: kUnavailable when the server cannot be reached or refuses the login, kIo for a failed
// statement, and the interface's kNotFound / kInvalidArgument. Messages name the server as
// postgres://user@host:port/db and never contain the password.
//
// Thread-safe: any method may be called from any thread; calls block on the pool and the database.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/metadata_store.hpp"

struct pg_conn;

namespace airlock::store {

// The connection string as it may be printed: postgres://user@host:port/db, without the password.
// Anything libpq cannot parse gives "(an unparsable PostgreSQL connection string)".
std::string RedactedPostgresUri(std::string_view conninfo);

class PostgresMetadataStore final : public MetadataStore, private SqlDatabase {
 public:
  // Connects to conninfo (a libpq URI, postgres://user:password@host:port/db?param=…, or a
  // key=value string), checks the server answers, and applies the migrations the database lacks.
  [[nodiscard]] static Result<std::unique_ptr<PostgresMetadataStore>> Open(
      std::string_view conninfo, int max_connections = 8);
  ~PostgresMetadataStore() override;
  PostgresMetadataStore(const PostgresMetadataStore&) = delete;
  PostgresMetadataStore& operator=(const PostgresMetadataStore&) = delete;

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

  class Connection;  // one libpq connection and the statement helpers (implementation detail)

 private:
  class Lease;
  PostgresMetadataStore(std::string conninfo, int max_connections);
  Result<Lease> Borrow();
  void Return(std::unique_ptr<Connection> connection);
  Status Migrate();
  Status Transact(const std::function<Status(SqlSession&)>& body) override;
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }
  // Runs body(connection) in one SERIALIZABLE transaction, retrying serialization failures.
  template <typename T, typename F>
  Result<T> Transact(F&& body);
  // Runs body(connection) outside a transaction (one statement), again on a fresh connection if
  // the pooled one turned out broken.
  template <typename T, typename F>
  Result<T> Read(F&& body);

  const std::string conninfo_;
  const std::string password_;  // scrubbed from every message
  const std::string redacted_;
  const int max_connections_;
  std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
  int open_ = 0;                                   // idle and borrowed; guarded by mu_
};

}  // namespace airlock::store
