#pragma once
// SqlDatabase: the little that a store written once for both of the hub's databases needs —
// a transaction, statements with positional parameters, rows of text — so that the access-control
// and registry stores (auth, registry) have one implementation instead of one per database.
//
// The OCI metadata stores (SqliteMetadataStore, PostgresMetadataStore) implement it over the
// connection(s) they already hold; MetadataStore::sql() hands it out. Portable SQL is the caller's
// job: `?` placeholders (rewritten to $1, $2… for PostgreSQL), TEXT and BIGINT columns, times as
// integer Unix seconds passed in by the caller, `ON CONFLICT … DO …` upserts, `lower(x) LIKE
// lower(?)` for case-insensitive search. A migration's SQL may say {{serial}} for an
// auto-numbered BIGINT primary key.
//
// Thread-safe: Transact may be called from any thread; a session is used only inside its body.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace airlock::store {

enum class SqlDialect { kSqlite, kPostgres };

// A parameter: NULL, an integer, or text.
using SqlParam = std::variant<std::nullptr_t, std::int64_t, std::string>;
inline SqlParam SqlOptional(const std::optional<std::int64_t>& v) {
  return v ? SqlParam(*v) : SqlParam(nullptr);
}

// A statement's result: every value as text (NULL as nullopt), and the rows it changed.
struct SqlRows {
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::int64_t affected = 0;

  std::size_t size() const { return rows.size(); }
  bool empty() const { return rows.empty(); }
  bool IsNull(std::size_t row, std::size_t col) const { return !rows.at(row).at(col); }
  // "" for NULL.
  std::string Text(std::size_t row, std::size_t col) const {
    return rows.at(row).at(col).value_or(std::string());
  }
  // 0 for NULL or text that is not an integer.
  std::int64_t Int(std::size_t row, std::size_t col) const;
  std::optional<std::int64_t> MaybeInt(std::size_t row, std::size_t col) const {
    return IsNull(row, col) ? std::nullopt : std::optional<std::int64_t>(Int(row, col));
  }
};

class SqlSession {
 public:
  virtual ~SqlSession() = default;
  // Runs one statement with `?` placeholders. A unique or primary-key violation is
  // kAlreadyExists; any other failure kIo. A failed statement spoils the transaction (on
  // PostgreSQL): return its error from the body.
  [[nodiscard]] virtual Result<SqlRows> Query(std::string_view sql,
                                              const std::vector<SqlParam>& params = {}) = 0;
  virtual SqlDialect dialect() const = 0;
};

class SqlDatabase {
 public:
  virtual ~SqlDatabase() = default;
  // Runs body in one transaction: committed when body succeeds, rolled back when it fails. On
  // PostgreSQL the transaction is SERIALIZABLE and re-run (a few times) when it loses a race with
  // another one, so body must have no effects outside the database.
  [[nodiscard]] virtual Status Transact(const std::function<Status(SqlSession&)>& body) = 0;
  virtual SqlDialect dialect() const = 0;
};

// Transact with a result.
template <typename T, typename F>
Result<T> SqlTransact(SqlDatabase& db, F&& body) {
  std::optional<T> out;
  AIRLOCK_RETURN_IF_ERROR(db.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(T value, body(s));
    out = std::move(value);
    return {};
  }));
  return std::move(*out);
}

// The rows of one query, each made a T by map(rows, index), in one transaction.
template <typename T, typename Map>
Result<std::vector<T>> SqlQueryAll(SqlDatabase& db, const std::string& sql,
                                   const std::vector<SqlParam>& params, Map map) {
  return SqlTransact<std::vector<T>>(db, [&](SqlSession& s) -> Result<std::vector<T>> {
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows rows, s.Query(sql, params));
    std::vector<T> out;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      out.push_back(map(rows, i));
    }
    return out;
  });
}

// The first row of one query made a T by map, or kNotFound with the message missing.
template <typename T, typename Map>
Result<T> SqlQueryOne(SqlDatabase& db, const std::string& sql, const std::vector<SqlParam>& params,
                      Map map, const std::string& missing) {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<T> all, SqlQueryAll<T>(db, sql, params, map));
  if (all.empty()) {
    return Fail(ErrorCode::kNotFound, missing);
  }
  return std::move(all.front());
}

struct SqlMigration {
  int version;
  const char* description;
  const char* sql;  // one or more statements separated by ";\n"
};

// Applies the migrations of component (e.g. "auth", "registry") that db lacks, in order, each
// recorded in the table component_migrations (component, version, description, applied_at).
// kUnsupported when the database has a version of the component newer than this build knows.
// Hubs migrating one PostgreSQL database at once take turns.
[[nodiscard]] Status MigrateComponent(SqlDatabase& db, std::string_view component,
                                      std::span<const SqlMigration> migrations,
                                      std::int64_t now);

// "?" → "$1", "$2", … (for PostgreSQL). Placeholders are never inside the SQL's literals here.
std::string NumberPlaceholders(std::string_view sql);

}  // namespace airlock::store
