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

 private:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace airlock::store
