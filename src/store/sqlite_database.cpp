#include "store/sqlite_database.hpp"

#include <sqlite3.h>

#include "store/sqlite_statement.hpp"

namespace airlock::store {

Result<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Fail(ErrorCode::kIo, "cannot open the database " + path.string() + ": " + message);
  }
  std::unique_ptr<SqliteDatabase> out(new SqliteDatabase(db));
  sqlite3_busy_timeout(db, 10000);
  Status ready = sqlite::Exec(db,
                              "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                              "PRAGMA foreign_keys = ON;");
  if (!ready) {
    return Fail(std::move(ready.error()).WithContext("while opening " + path.string()));
  }
  return out;
}

SqliteDatabase::~SqliteDatabase() { sqlite3_close(db_); }

Status SqliteDatabase::Transact(const std::function<Status(SqlSession&)>& body) {
  std::lock_guard lock(mu_);
  return sqlite::InTransaction<void>(db_, [&]() -> Status {
    sqlite::Session session(db_);
    return body(session);
  });
}

Status SqliteDatabase::Checkpoint() {
  std::lock_guard lock(mu_);
  int log_frames = 0;
  int copied_frames = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                     &copied_frames);
  if (rc != SQLITE_OK) {
    return Fail(sqlite::DbError(db_, "cannot checkpoint the write-ahead log"));
  }
  if (copied_frames < log_frames) {
    return Fail(ErrorCode::kIo, "metadata database: the checkpoint copied " +
                                    std::to_string(copied_frames) + " of the write-ahead log's " +
                                    std::to_string(log_frames) + " frames");
  }
  return {};
}

bool IsDiskFull(const Error& error) {
  return error.code() == ErrorCode::kIo &&
         error.message().find(sqlite::kDiskFullMessage) != std::string::npos;
}

}  // namespace airlock::store
