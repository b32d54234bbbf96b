#pragma once
// SqliteDatabase: a SqlDatabase (store/sql.hpp) over one plain SQLite file, for components whose
// whole schema is their own — the gateway's cache index, later the agent's outbox and journal —
// and who therefore need none of the hub's metadata tables that SqliteMetadataStore brings.
//
// The file runs in WAL mode with synchronous=FULL (a committed transaction survives a power cut),
// foreign keys on, and a 10 s busy timeout. Schemas are applied with MigrateComponent.
//
// Thread-safe: one connection, used under a mutex; Transact may be called from any thread.

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>

#include "store/sql.hpp"

struct sqlite3;

namespace airlock::store {

class SqliteDatabase final : public SqlDatabase {
 public:
  // Opens (creating if needed) the database at path. kIo, naming the path, when it cannot.
  [[nodiscard]] static Result<std::unique_ptr<SqliteDatabase>> Open(
      const std::filesystem::path& path);
  ~SqliteDatabase() override;
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  // BEGIN IMMEDIATE … COMMIT around body (ROLLBACK when it fails).
  [[nodiscard]] Status Transact(const std::function<Status(SqlSession&)>& body) override;
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

  // Copies what the write-ahead log holds into the database file (a passive checkpoint: it never
  // waits for readers), so that the next transaction may start the log again from its beginning
  // and reuse the log file's space. Useful after a full disk; kIo when it could not copy it all
  // (that loses nothing: the log keeps what was not copied). Must not be called from a body.
  [[nodiscard]] Status Checkpoint();

 private:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}

  std::mutex mu_;
  sqlite3* db_;
};

// The error is a SqliteDatabase's (or another SQLite store's) write that met a full disk:
// SQLITE_FULL, or ENOSPC behind an I/O error. Such a transaction was rolled back; nothing the
// database held before is lost.
bool IsDiskFull(const Error& error);

}  // namespace airlock::store
