#include "store/sql_auth_store.hpp"

#include <iterator>

namespace airlock::store {
namespace {

// Times are Unix seconds, so that expiry compares as integers in both databases. CREATE … IF NOT
// EXISTS: SQLite databases made before this component existed have the tables already (from
// their migration 2).
const SqlMigration kAuthMigrations[] = {
    {1, "hub tokens and audit log",
     R"sql(
CREATE TABLE IF NOT EXISTS tokens (
  name        TEXT PRIMARY KEY,
  role        TEXT NOT NULL,
  hash        TEXT NOT NULL UNIQUE,
  created_by  TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT,
  revoked_at  BIGINT
);
CREATE TABLE IF NOT EXISTS audit_log (
  id          {{serial}},
  at          BIGINT NOT NULL,
  token_name  TEXT NOT NULL,
  role        TEXT NOT NULL,
  action      TEXT NOT NULL,
  target      TEXT NOT NULL,
  result      TEXT NOT NULL,
  reason      TEXT NOT NULL,
  remote      TEXT NOT NULL
)
)sql"},
};

constexpr char kTokenColumns[] =
    "SELECT name, role, hash, created_by, created_at, expires_at, revoked_at FROM tokens ";

}  // namespace

Result<std::unique_ptr<SqlAuthStore>> SqlAuthStore::Open(SqlDatabase& db, std::int64_t now) {
  AIRLOCK_RETURN_IF_ERROR(MigrateComponent(db, "auth", kAuthMigrations, now));
  return std::unique_ptr<SqlAuthStore>(new SqlAuthStore(db));
}

Status SqlAuthStore::CreateToken(const TokenRecord& t) {
  Status done = db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("INSERT INTO tokens (name, role, hash, created_by, created_at, expires_at, "
                "revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                {t.name, t.role, t.hash, t.created_by, t.created_at, SqlOptional(t.expires_at),
                 SqlOptional(t.revoked_at)}));
    return {};
  });
  if (!done && done.error().code() == ErrorCode::kAlreadyExists) {
    return Fail(ErrorCode::kAlreadyExists, "a token named " + t.name + " exists already");
  }
  return done;
}

Result<std::vector<TokenRecord>> SqlAuthStore::Tokens(const char* where, std::string_view arg) {
  std::vector<SqlParam> params;
  if (!arg.empty()) {
    params.emplace_back(std::string(arg));
  }
  return SqlQueryAll<TokenRecord>(
      db_, std::string(kTokenColumns) + where, params, [](const SqlRows& rows, std::size_t i) {
        return TokenRecord{.name = rows.Text(i, 0),
                           .role = rows.Text(i, 1),
                           .hash = rows.Text(i, 2),
                           .created_by = rows.Text(i, 3),
                           .created_at = rows.Int(i, 4),
                           .expires_at = rows.MaybeInt(i, 5),
                           .revoked_at = rows.MaybeInt(i, 6)};
      });
}

Result<TokenRecord> SqlAuthStore::TokenByHash(std::string_view hash) {
  if (hash.empty()) {
    return Fail(ErrorCode::kNotFound, "no such token");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto found, Tokens("WHERE hash = ?", hash));
  if (found.empty()) {
    return Fail(ErrorCode::kNotFound, "no such token");
  }
  return std::move(found.front());
}

Result<TokenRecord> SqlAuthStore::TokenByName(std::string_view name) {
  if (name.empty()) {
    return Fail(ErrorCode::kNotFound, "no token with an empty name");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto found, Tokens("WHERE name = ?", name));
  if (found.empty()) {
    return Fail(ErrorCode::kNotFound, "no token named " + std::string(name));
  }
  return std::move(found.front());
}

Result<std::vector<TokenRecord>> SqlAuthStore::ListTokens() { return Tokens("ORDER BY name", ""); }

Status SqlAuthStore::RevokeToken(std::string_view name, std::int64_t at) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r, s.Query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?",
                           {at, std::string(name)}));
    if (r.affected == 0) {
      return Fail(ErrorCode::kNotFound, "no token named " + std::string(name));
    }
    return {};
  });
}

Result<std::int64_t> SqlAuthStore::AppendAudit(const AuditEntry& e) {
  return SqlTransact<std::int64_t>(db_, [&](SqlSession& s) -> Result<std::int64_t> {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r,
        s.Query("INSERT INTO audit_log (at, token_name, role, action, target, result, reason, "
                "remote) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                {e.at, e.token_name, e.role, e.action, e.target, e.result, e.reason, e.remote}));
    return r.Int(0, 0);
  });
}

Result<std::vector<AuditEntry>> SqlAuthStore::ListAudit(std::int64_t before, std::size_t limit) {
  return SqlQueryAll<AuditEntry>(
      db_,
      "SELECT id, at, token_name, role, action, target, result, reason, remote FROM audit_log "
      "WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?",
      {before, before, static_cast<std::int64_t>(limit)}, [](const SqlRows& rows, std::size_t i) {
        return AuditEntry{.id = rows.Int(i, 0),
                          .at = rows.Int(i, 1),
                          .token_name = rows.Text(i, 2),
                          .role = rows.Text(i, 3),
                          .action = rows.Text(i, 4),
                          .target = rows.Text(i, 5),
                          .result = rows.Text(i, 6),
                          .reason = rows.Text(i, 7),
                          .remote = rows.Text(i, 8)};
      });
}

}  // namespace airlock::store
