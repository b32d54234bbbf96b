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
  return SqlTransact<std::vector<TokenRecord>>(
      db_, [&](SqlSession& s) -> Result<std::vector<TokenRecord>> {
        std::vector<SqlParam> params;
        if (!arg.empty()) {
          params.emplace_back(std::string(arg));
        }
        AIRLOCK_ASSIGN_OR_RETURN(SqlRows rows,
                                 s.Query(std::string(kTokenColumns) + where, params));
        std::vector<TokenRecord> out;
        for (std::size_t i = 0; i < rows.size(); ++i) {
          TokenRecord t;
          t.name = rows.Text(i, 0);
          t.role = rows.Text(i, 1);
          t.hash = rows.Text(i, 2);
          t.created_by = rows.Text(i, 3);
          t.created_at = rows.Int(i, 4);
          t.expires_at = rows.MaybeInt(i, 5);
          t.revoked_at = rows.MaybeInt(i, 6);
          out.push_back(std::move(t));
        }
        return out;
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
  return SqlTransact<std::vector<AuditEntry>>(
      db_, [&](SqlSession& s) -> Result<std::vector<AuditEntry>> {
        AIRLOCK_ASSIGN_OR_RETURN(
            SqlRows rows,
            s.Query("SELECT id, at, token_name, role, action, target, result, reason, remote "
                    "FROM audit_log WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?",
                    {before, before, static_cast<std::int64_t>(limit)}));
        std::vector<AuditEntry> out;
        for (std::size_t i = 0; i < rows.size(); ++i) {
          AuditEntry e;
          e.id = rows.Int(i, 0);
          e.at = rows.Int(i, 1);
          e.token_name = rows.Text(i, 2);
          e.role = rows.Text(i, 3);
          e.action = rows.Text(i, 4);
          e.target = rows.Text(i, 5);
          e.result = rows.Text(i, 6);
          e.reason = rows.Text(i, 7);
          e.remote = rows.Text(i, 8);
          out.push_back(std::move(e));
        }
        return out;
      });
}

}  // namespace airlock::store
