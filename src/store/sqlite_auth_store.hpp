#pragma once
// SqliteAuthStore: AuthStore in the hub's SQLite metadata database (DATA/metadata.db).
//
// It has its own connection to the file that SqliteMetadataStore owns the schema of: open the
// metadata store first (its migration 2 creates the tables); Open refuses a database without
// them. SQLite serialises the two connections' writes (WAL mode, busy timeout), so the offline
// `airlock-hub token create` may run while a hub serves the same data directory.
//
// Thread-safe: one connection under a mutex.

#include <filesystem>
#include <memory>
#include <mutex>

#include "store/auth_store.hpp"

struct sqlite3;

namespace airlock::store {

class SqliteAuthStore final : public AuthStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<SqliteAuthStore>> Open(
      const std::filesystem::path& path);
  ~SqliteAuthStore() override;
  SqliteAuthStore(const SqliteAuthStore&) = delete;
  SqliteAuthStore& operator=(const SqliteAuthStore&) = delete;

  Status CreateToken(const TokenRecord& token) override;
  Result<TokenRecord> TokenByHash(std::string_view hash) override;
  Result<TokenRecord> TokenByName(std::string_view name) override;
  Result<std::vector<TokenRecord>> ListTokens() override;
  Status RevokeToken(std::string_view name, std::int64_t at) override;
  Result<std::int64_t> AppendAudit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit(std::int64_t before, std::size_t limit) override;

 private:
  explicit SqliteAuthStore(sqlite3* db) : db_(db) {}
  Result<std::vector<TokenRecord>> Tokens(const char* where, std::string_view arg);

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace airlock::store
