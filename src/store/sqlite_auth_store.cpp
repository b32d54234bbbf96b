#include "store/sqlite_auth_store.hpp"

#include <sqlite3.h>

#include <optional>

#include "store/sqlite_statement.hpp"

namespace airlock::store {
namespace {

using sqlite::DbError;
using sqlite::Statement;

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
  Statement check(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('tokens', 'audit_log')");
  AIRLOCK_ASSIGN_OR_RETURN(bool row, check.Step());
  if (!row || check.Int(0) != 2) {
    return Fail(ErrorCode::kCorrupt, "the metadata database " + path.string() +
                                         " has no tokens or audit_log table (schema version 2 "
                                         "is applied when the metadata store opens it)");
  }
  return store;
}

SqliteAuthStore::~SqliteAuthStore() { sqlite3_close(db_); }

Status SqliteAuthStore::CreateToken(const TokenRecord& t) {
  std::lock_guard lock(mu_);
  Statement q(
      db_,
      "INSERT INTO tokens (name, role, hash, created_by, created_at, expires_at, revoked_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)");
  q.Bind(1, t.name).Bind(2, t.role).Bind(3, t.hash).Bind(4, t.created_by);
  q.Bind(5, t.created_at).Bind(6, t.expires_at).Bind(7, t.revoked_at);
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
  Statement q(db_, (std::string(kTokenColumns) + where).c_str());
  if (!arg.empty()) {
    q.Bind(1, arg);
  }
  std::vector<TokenRecord> out;
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) {
      return out;
    }
    TokenRecord t;
    t.name = q.Text(0);
    t.role = q.Text(1);
    t.hash = q.Text(2);
    t.created_by = q.Text(3);
    t.created_at = q.Int(4);
    t.expires_at = q.MaybeInt(5);
    t.revoked_at = q.MaybeInt(6);
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
  Statement q(db_, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?");
  q.Bind(1, at).Bind(2, name);
  AIRLOCK_RETURN_IF_ERROR(q.Step());
  if (sqlite3_changes(db_) == 0) {
    return Fail(ErrorCode::kNotFound, "no token named " + std::string(name));
  }
  return {};
}

Result<std::int64_t> SqliteAuthStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard lock(mu_);
  Statement q(
      db_,
      "INSERT INTO audit_log (at, token_name, role, action, target, result, reason, remote) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  q.Bind(1, e.at).Bind(2, e.token_name).Bind(3, e.role).Bind(4, e.action);
  q.Bind(5, e.target).Bind(6, e.result).Bind(7, e.reason).Bind(8, e.remote);
  AIRLOCK_RETURN_IF_ERROR(q.Step());
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_));
}

Result<std::vector<AuditEntry>> SqliteAuthStore::ListAudit(std::int64_t before, std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement q(
      db_,
      "SELECT id, at, token_name, role, action, target, result, reason, remote FROM audit_log "
      "WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?");
  q.Bind(1, before).Bind(2, before).Bind(3, static_cast<std::int64_t>(limit));
  std::vector<AuditEntry> out;
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) {
      return out;
    }
    AuditEntry e;
    e.id = q.Int(0);
    e.at = q.Int(1);
    e.token_name = q.Text(2);
    e.role = q.Text(3);
    e.action = q.Text(4);
    e.target = q.Text(5);
    e.result = q.Text(6);
    e.reason = q.Text(7);
    e.remote = q.Text(8);
    out.push_back(std::move(e));
  }
}

}  // namespace airlock::store
