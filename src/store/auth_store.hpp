#pragma once
// AuthStore: the hub's access tokens (only their hashes) and its audit log.
//
// Kept apart from MetadataStore so that the OCI metadata and the access-control data can evolve
// independently; both live in the same database. The implementation is SqlAuthStore, written
// once over SqlDatabase for SQLite and PostgreSQL alike.
//
// Implementations are thread-safe and block on the database. Errors: kNotFound for an unknown
// token, kAlreadyExists for a token name in use, kIo for the database.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace airlock::store {

struct TokenRecord {
  std::string name;  // unique, chosen by its creator ("ci-publisher")
  std::string role;  // "viewer", "publisher", "release-manager", "admin"
  std::string hash;  // lowercase hex SHA-256 of the token; the token itself is never stored
  std::string created_by;
  std::int64_t created_at = 0;             // Unix seconds
  std::optional<std::int64_t> expires_at;  // Unix seconds; nullopt: never
  std::optional<std::int64_t> revoked_at;  // Unix seconds; nullopt: not revoked
};

struct AuditEntry {
  std::int64_t id = 0;     // assigned by AppendAudit; grows with time
  std::int64_t at = 0;     // Unix seconds
  std::string token_name;  // "" for an anonymous or unidentified caller
  std::string role;        // "" when unknown
  std::string action;      // "manifest.put", "token.create", "auth.refused", …
  std::string target;      // "models/demo:1.0.0", a token name, a path
  std::string result;      // the HTTP status ("201", "403") or "ok" offline
  std::string reason;      // why it failed; "" on success
  std::string remote;      // the client's address; "local" offline
};

class AuthStore {
 public:
  virtual ~AuthStore() = default;

  // kAlreadyExists when the name is taken (revoked tokens keep their name).
  [[nodiscard]] virtual Status CreateToken(const TokenRecord& token) = 0;
  // kNotFound when no token has this hash.
  [[nodiscard]] virtual Result<TokenRecord> TokenByHash(std::string_view hash) = 0;
  // kNotFound when no token has this name.
  [[nodiscard]] virtual Result<TokenRecord> TokenByName(std::string_view name) = 0;
  // Every token, by name.
  [[nodiscard]] virtual Result<std::vector<TokenRecord>> ListTokens() = 0;
  // Marks the token revoked at `at`; kNotFound for an unknown name. Revoking twice keeps the
  // first time.
  [[nodiscard]] virtual Status RevokeToken(std::string_view name, std::int64_t at) = 0;

  // Appends an entry (its id is assigned) and returns the id.
  [[nodiscard]] virtual Result<std::int64_t> AppendAudit(const AuditEntry& entry) = 0;
  // Entries newest first, those with id < before only (0: from the newest), at most limit.
  [[nodiscard]] virtual Result<std::vector<AuditEntry>> ListAudit(std::int64_t before,
                                                                  std::size_t limit) = 0;
};

}  // namespace airlock::store
