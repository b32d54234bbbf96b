#include "store/sql.hpp"

#include <charconv>

namespace airlock::store {

std::int64_t SqlRows::Int(std::size_t row, std::size_t col) const {
  const auto& v = rows.at(row).at(col);
  std::int64_t out = 0;
  if (v) {
    std::from_chars(v->data(), v->data() + v->size(), out);
  }
  return out;
}

std::string NumberPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += '$' + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// The migration's statements, with {{serial}} spelled for the dialect.
std::vector<std::string> Statements(std::string_view sql, SqlDialect dialect) {
  std::string text(sql);
  const std::string serial = dialect == SqlDialect::kPostgres
                                 ? "BIGSERIAL PRIMARY KEY"
                                 : "INTEGER PRIMARY KEY AUTOINCREMENT";
  for (std::size_t at = text.find("{{serial}}"); at != std::string::npos;
       at = text.find("{{serial}}", at)) {
    text.replace(at, 10, serial);
  }
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(";\n", start);
    std::string one = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (one.find_first_not_of(" \n\t") != std::string::npos) {
      out.push_back(std::move(one));
    }
    if (end == std::string::npos) {
      break;
    }
    start = end + 2;
  }
  return out;
}

Status MigrateOnce(SqlDatabase& db, std::string_view component,
                   std::span<const SqlMigration> migrations, std::int64_t now) {
  return db.Transact([&](SqlSession& s) -> Status {
    if (s.dialect() == SqlDialect::kPostgres) {
      // Hubs started together on one database take turns ("airlock" + 1 in ASCII).
      AIRLOCK_RETURN_IF_ERROR(s.Query("SELECT pg_advisory_xact_lock(27419012907361132)"));
    }
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("CREATE TABLE IF NOT EXISTS component_migrations ("
                "component TEXT NOT NULL, version BIGINT NOT NULL, description TEXT NOT NULL, "
                "applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))"));
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows rows, s.Query("SELECT COALESCE(MAX(version), 0) FROM component_migrations "
                              "WHERE component = ?",
                              {std::string(component)}));
    std::int64_t current = rows.Int(0, 0);
    std::int64_t latest = migrations.empty() ? 0 : migrations.back().version;
    if (current > latest) {
      return Fail(ErrorCode::kUnsupported,
                  "the metadata database has " + std::string(component) + " schema version " +
                      std::to_string(current) + ", written by a newer airlock-hub; this one "
                      "knows up to " + std::to_string(latest));
    }
    for (const SqlMigration& m : migrations) {
      if (m.version <= current) {
        continue;
      }
      for (const std::string& statement : Statements(m.sql, s.dialect())) {
        AIRLOCK_RETURN_IF_ERROR(s.Query(statement));
      }
      AIRLOCK_RETURN_IF_ERROR(s.Query(
          "INSERT INTO component_migrations (component, version, description, applied_at) "
          "VALUES (?, ?, ?, ?)",
          {std::string(component), std::int64_t{m.version}, std::string(m.description), now}));
    }
    return {};
  });
}

}  // namespace

Status MigrateComponent(SqlDatabase& db, std::string_view component,
                        std::span<const SqlMigration> migrations, std::int64_t now) {
  // A second hub migrating the same PostgreSQL database at the same moment may have read the
  // migrations table before the first one committed; its CREATE TABLE then fails. Again: it now
  // sees the first one's work. (SQLite's BEGIN IMMEDIATE serialises the two instead.)
  Status done = MigrateOnce(db, component, migrations, now);
  for (int attempt = 1; !done && db.dialect() == SqlDialect::kPostgres && attempt < 3; ++attempt) {
    done = MigrateOnce(db, component, migrations, now);
  }
  return done;
}

}  // namespace airlock::store
