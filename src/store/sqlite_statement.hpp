#pragma once
// What the SQLite stores (SqliteMetadataStore, SqliteDatabase) use: a prepared statement with
// positional parameters, finalised on destruction, and the error for a failed call. Internal to
// src/store; not thread-safe (the stores serialise their connection).

#include <sqlite3.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace airlock::store::sqlite {

// What SQLite says for SQLITE_FULL; IsDiskFull (sqlite_database.hpp) looks for it.
inline constexpr std::string_view kDiskFullMessage = "database or disk is full";

// The last failure on db was a full disk: SQLITE_FULL, or an I/O error with ENOSPC behind it
// (SQLite reports most ENOSPC writes as SQLITE_FULL, but not every path does).
inline bool LastFailureWasDiskFull(sqlite3* db) {
  int rc = sqlite3_extended_errcode(db) & 0xff;
  return rc == SQLITE_FULL || (rc == SQLITE_IOERR && sqlite3_system_errno(db) == ENOSPC);
}

// sqlite3_errmsg, with kDiskFullMessage added where a full disk hides behind an I/O error.
inline std::string ErrorText(sqlite3* db, std::string text) {
  if (LastFailureWasDiskFull(db) && text.find(kDiskFullMessage) == std::string::npos) {
    text += " (" + std::string(kDiskFullMessage) + ")";
  }
  return text;
}

inline Error DbError(sqlite3* db, std::string_view what) {
  return Error(ErrorCode::kIo, "metadata database: " + std::string(what) + ": " +
                                   ErrorText(db, sqlite3_errmsg(db)));
}

// One prepared statement, finalised on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      error_ = DbError(db, "cannot prepare a statement");
      stmt_ = nullptr;
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, std::int64_t value) {
    sqlite3_bind_int64(stmt_, i, value);
    return *this;
  }
  Statement& BindBlob(int i, std::string_view bytes) {
    sqlite3_bind_blob64(stmt_, i, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Statement& Bind(int i, std::optional<std::int64_t> value) {
    return value ? Bind(i, *value) : BindNull(i);
  }

  // true: a row is available; false: done. A constraint violation is kAlreadyExists.
  Result<bool> Step() {
    if (stmt_ == nullptr) {
      return Fail(*error_);
    }
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      return Fail(ErrorCode::kAlreadyExists, sqlite3_errmsg(db_));
    }
    return Fail(DbError(db_, "statement failed"));
  }
  Status Run() {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return {};
  }

  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(static_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  int Columns() const { return stmt_ == nullptr ? 0 : sqlite3_column_count(stmt_); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<std::int64_t> MaybeInt(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<std::int64_t>(Int(col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::optional<Error> error_;
};

inline Status Exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = ErrorText(db, message != nullptr ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return Fail(ErrorCode::kIo, "metadata database: " + text);
  }
  return {};
}

// BEGIN IMMEDIATE … COMMIT around body; ROLLBACK when body fails.
template <typename T, typename F>
Result<T> InTransaction(sqlite3* db, F&& body) {
  AIRLOCK_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  Result<T> result = body();
  if (!result) {
    (void)Exec(db, "ROLLBACK");
    return result;
  }
  Status committed = Exec(db, "COMMIT");
  if (!committed) {
    (void)Exec(db, "ROLLBACK");
    return Fail(std::move(committed).error());
  }
  return result;
}

// The statements of one SqlDatabase transaction on a connection.
class Session final : public SqlSession {
 public:
  explicit Session(sqlite3* db) : db_(db) {}
  Result<SqlRows> Query(std::string_view sql, const std::vector<SqlParam>& params) override {
    Statement q(db_, std::string(sql).c_str());
    for (std::size_t i = 0; i < params.size(); ++i) {
      int at = static_cast<int>(i) + 1;
      if (const auto* n = std::get_if<std::int64_t>(&params[i])) {
        q.Bind(at, *n);
      } else if (const auto* t = std::get_if<std::string>(&params[i])) {
        q.Bind(at, std::string_view(*t));
      } else {
        q.BindNull(at);
      }
    }
    SqlRows out;
    for (;;) {
      AIRLOCK_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) {
        break;
      }
      auto& r = out.rows.emplace_back();
      for (int c = 0; c < q.Columns(); ++c) {
        r.push_back(q.IsNull(c) ? std::nullopt : std::optional<std::string>(q.Text(c)));
      }
    }
    out.affected = sqlite3_changes64(db_);
    return out;
  }
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }

 private:
  sqlite3* db_;
};

}  // namespace airlock::store::sqlite
