#include "store/sqlite_auth_store.hpp"

#include <sqlite3.h>

#include <optional>

namespace airlock::store {
namespace {

Error DbError(sqlite3* db, std::string_view what) {
  return Error(ErrorCode::kIo,
               "metadata database: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

// A prepared statement with positional text/integer parameters, finalised on destruction.
class Query {
 public:
  Query(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      stmt_ = nullptr;
      error_ = DbError(db, "cannot prepare a statement");
    }
  }
  ~Query() { sqlite3_finalize(stmt_); }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Text(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Query& Int(int i, std::optional<std::int64_t> v) {
    if (v) {
      sqlite3_bind_int64(stmt_, i, *v);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
    return *this;
  }
  // true: a row; false: done. A constraint violation is kAlreadyExists.
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
  std::string TextAt(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
  }
  std::int64_t IntAt(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::optional<std::int64_t> MaybeIntAt(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) {
      return std::nullopt;
    }
    return IntAt(col);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::optional<Error> error_;
};

constexpr char kTokenColumns[] =
    "SELECT name, role, hash, created_by, created_at, expires_at, revoked_at FROM tokens ";

}  // namespace

Result<std::unique_ptr<SqliteAuthStore>> SqliteAuthStore::Open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Fail(ErrorCode::kIo,
                "cannot open the metadata database " + path.string() + ": " + message);
  }
  std::unique_ptr<SqliteAuthStore> store(new SqliteAuthStore(db));
  sqlite3_busy_timeout(db, 10000);
  char* message = nullptr;
  if (sqlite3_exec(db, "PRAGMA synchronous = FULL", nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message != nullptr ? message : "";
    sqlite3_free(message);
    return Fail(ErrorCode::kIo, "metadata database " + path.string() + ": " + text);
  }
  Query check(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('tokens', 'audit_log')");
  AIRLOCK_ASSIGN_OR_RETURN(bool row, check.Step());
  if (!row || check.IntAt(0) != 2) {
    return Fail(ErrorCode::kCorrupt, "the metadata database " + path.string() +
                                         " has no tokens or audit_log table (schema version 2 "
                                         "is applied when the metadata store opens it)");
  }
  return store;
}

SqliteAuthStore::~SqliteAuthStore() { sqlite3_close(db_); }

Status SqliteAuthStore::CreateToken(const TokenRecord& t) {
  std::lock_guard lock(mu_);
  Query q(db_,
          "INSERT INTO tokens (name, role, hash, created_by, created_at, expires_at, revoked_at) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)");
  q.Text(1, t.name).Text(2, t.role).Text(3, t.hash).Text(4, t.created_by);
  q.Int(5, t.created_at).Int(6, t.expires_at).Int(7, t.revoked_at);
  auto done = q.Step();
  if (!done) {
    if (done.error().code() == ErrorCode::kAlreadyExists) {
      return Fail(ErrorCode::kAlreadyExists, "a token named " + t.name + " exists already");
    }
    return Fail(done.error());
  }
  return {};
}

Result<std::vector<TokenRecord>> SqliteAuthStore::Tokens(const char* where, std::string_view arg) {
  std::lock_guard lock(mu_);
  Query q(db_, (std::string(kTokenColumns) + where).c_str());
  if (!arg.empty()) {
    q.Text(1, arg);
  }
  std::vector<TokenRecord> out;
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) {
      return out;
    }
    TokenRecord t;
    t.name = q.TextAt(0);
    t.role = q.TextAt(1);
    t.hash = q.TextAt(2);
    t.created_by = q.TextAt(3);
    t.created_at = q.IntAt(4);
    t.expires_at = q.MaybeIntAt(5);
    t.revoked_at = q.MaybeIntAt(6);
    out.push_back(std::move(t));
  }
}

Result<TokenRecord> SqliteAuthStore::TokenByHash(std::string_view hash) {
  AIRLOCK_ASSIGN_OR_RETURN(auto found, Tokens("WHERE hash = ?", hash));
  if (found.empty() || hash.empty()) {
    return Fail(ErrorCode::kNotFound, "no such token");
  }
  return std::move(found.front());
}

Result<TokenRecord> SqliteAuthStore::TokenByName(std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto found, Tokens("WHERE name = ?", name));
  if (found.empty() || name.empty()) {
    return Fail(ErrorCode::kNotFound, "no token named " + std::string(name));
  }
  return std::move(found.front());
}

Result<std::vector<TokenRecord>> SqliteAuthStore::ListTokens() {
  return Tokens("ORDER BY name", "");
}

Status SqliteAuthStore::RevokeToken(std::string_view name, std::int64_t at) {
  std::lock_guard lock(mu_);
  Query q(db_, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?");
  q.Int(1, at).Text(2, name);
  AIRLOCK_RETURN_IF_ERROR(q.Step());
  if (sqlite3_changes(db_) == 0) {
    return Fail(ErrorCode::kNotFound, "no token named " + std::string(name));
  }
  return {};
}

Result<std::int64_t> SqliteAuthStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard lock(mu_);
  Query q(db_,
          "INSERT INTO audit_log (at, token_name, role, action, target, result, reason, remote) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  q.Int(1, e.at).Text(2, e.token_name).Text(3, e.role).Text(4, e.action);
  q.Text(5, e.target).Text(6, e.result).Text(7, e.reason).Text(8, e.remote);
  AIRLOCK_RETURN_IF_ERROR(q.Step());
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_));
}

Result<std::vector<AuditEntry>> SqliteAuthStore::ListAudit(std::int64_t before, std::size_t limit) {
  std::lock_guard lock(mu_);
  Query q(db_,
          "SELECT id, at, token_name, role, action, target, result, reason, remote FROM audit_log "
          "WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?");
  q.Int(1, before).Int(2, before).Int(3, static_cast<std::int64_t>(limit));
  std::vector<AuditEntry> out;
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) {
      return out;
    }
    AuditEntry e;
    e.id = q.IntAt(0);
    e.at = q.IntAt(1);
    e.token_name = q.TextAt(2);
    e.role = q.TextAt(3);
    e.action = q.TextAt(4);
    e.target = q.TextAt(5);
    e.result = q.TextAt(6);
    e.reason = q.TextAt(7);
    e.remote = q.TextAt(8);
    out.push_back(std::move(e));
  }
}

}  // namespace airlock::store
