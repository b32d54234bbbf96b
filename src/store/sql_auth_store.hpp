#pragma once
// SqlAuthStore: AuthStore over the hub's metadata database, SQLite or PostgreSQL alike
// (store/sql.hpp), so that hubs sharing one PostgreSQL database share their tokens and audit log.
//
// Open applies the "auth" component's migrations (tables tokens and audit_log). Thread-safe as
// the SqlDatabase is; every method is one transaction.

#include <memory>

#include "store/auth_store.hpp"
#include "store/sql.hpp"

namespace airlock::store {

class SqlAuthStore final : public AuthStore {
 public:
  // db must outlive the store. now: Unix seconds, recorded with the migrations.
  [[nodiscard]] static Result<std::unique_ptr<SqlAuthStore>> Open(SqlDatabase& db,
                                                                  std::int64_t now);

  Status CreateToken(const TokenRecord& token) override;
  Result<TokenRecord> TokenByHash(std::string_view hash) override;
  Result<TokenRecord> TokenByName(std::string_view name) override;
  Result<std::vector<TokenRecord>> ListTokens() override;
  Status RevokeToken(std::string_view name, std::int64_t at) override;
  Result<std::int64_t> AppendAudit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit(std::int64_t before, std::size_t limit) override;

 private:
  explicit SqlAuthStore(SqlDatabase& db) : db_(db) {}
  Result<std::vector<TokenRecord>> Tokens(const char* where, std::string_view arg);

  SqlDatabase& db_;
};

}  // namespace airlock::store
