#include "store/postgres_metadata_store.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <utility>

namespace airlock::store {
namespace {

// The schema, one migration per entry, applied in order and never edited once released: a change
// is a new entry. The same tables as SQLite's, with COLLATE "C" on text so that tags sort and
// compare by bytes whatever the database's locale.
using Migration = SqlMigration;  // store/sql.hpp
const Migration kMigrations[] = {
    {1, "OCI repositories, blob links, manifests, tags",
     R"sql(
CREATE TABLE repositories (
  id         BIGSERIAL PRIMARY KEY,
  name       TEXT COLLATE "C" NOT NULL UNIQUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE repository_blobs (
  repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest        TEXT COLLATE "C" NOT NULL,
  size          BIGINT NOT NULL,
  linked_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);
CREATE TABLE manifests (
  repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
  digest        TEXT COLLATE "C" NOT NULL,
  media_type    TEXT NOT NULL,
  artifact_type TEXT COLLATE "C" NOT NULL,
  subject       TEXT COLLATE "C",
  size          BIGINT NOT NULL,
  annotations   TEXT NOT NULL,
  bytes         BYTEA NOT NULL,
  pushed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject);
CREATE TABLE tags (
  repository_id BIGINT NOT NULL,
  name          TEXT COLLATE "C" NOT NULL,
  digest        TEXT COLLATE "C" NOT NULL,
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (repository_id, name),
  FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest)
    ON DELETE CASCADE
);
)sql"},
};

// The advisory lock key held while migrating ("airlock" in ASCII).
constexpr char kMigrationLock[] = "SELECT pg_advisory_xact_lock(27419012907361131)";
constexpr int kAttempts = 10;  // for a transaction that keeps losing serialization races

// A statement parameter, sent as text (binary for bytea).
struct Param {
  std::string value;
  bool null = false;
  bool binary = false;
};
Param Text(std::string_view s) { return {std::string(s)}; }
Param Int(std::int64_t v) { return {std::to_string(v)}; }
Param Bytes(std::string_view b) { return {std::string(b), false, true}; }
Param Null() { return {std::string(), true}; }

// One result, cleared on destruction.
class Rows {
 public:
  explicit Rows(PGresult* r) : r_(r) {}
  Rows(Rows&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  Rows& operator=(Rows&&) = delete;
  ~Rows() { PQclear(r_); }
  int size() const { return PQntuples(r_); }
  bool IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  std::string Str(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col),
                       static_cast<std::size_t>(PQgetlength(r_, row, col)));
  }
  std::int64_t Int64(int row, int col) const {
    std::int64_t v = 0;
    const char* p = PQgetvalue(r_, row, col);
    std::from_chars(p, p + PQgetlength(r_, row, col), v);
    return v;
  }
  bool Bool(int row, int col) const { return PQgetvalue(r_, row, col)[0] == 't'; }
  PGresult* raw() const { return r_; }
  // A bytea column in the text (hex) format.
  std::string Bytea(int row, int col) const {
    std::size_t n = 0;
    unsigned char* raw =
        PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
    if (raw == nullptr) {
      return std::string();
    }
    std::string out(reinterpret_cast<const char*>(raw), n);
    PQfreemem(raw);
    return out;
  }
  // Rows changed by an INSERT, UPDATE or DELETE.
  std::int64_t Affected() const {
    std::int64_t v = 0;
    const char* p = PQcmdTuples(r_);
    std::from_chars(p, p + std::char_traits<char>::length(p), v);
    return v;
  }

 private:
  PGresult* r_;
};

// The password in conninfo, "" when there is none (to scrub it from messages).
std::string PasswordOf(std::string_view conninfo) {
  std::string password;
  PQconninfoOption* options = PQconninfoParse(std::string(conninfo).c_str(), nullptr);
  if (options == nullptr) {
    return password;
  }
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr) {
      password = o->val;
    }
  }
  PQconninfoFree(options);
  return password;
}

std::string Scrub(std::string message, const std::string& password) {
  if (!password.empty()) {
    for (std::size_t at = message.find(password); at != std::string::npos;
         at = message.find(password, at)) {
      message.replace(at, password.size(), "***");
    }
  }
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return message;
}

bool IsRetryable(const std::string& sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";  // serialization failure, deadlock
}

}  // namespace

std::string RedactedPostgresUri(std::string_view conninfo) {
  PQconninfoOption* options = PQconninfoParse(std::string(conninfo).c_str(), nullptr);
  if (options == nullptr) {
    return "(an unparsable PostgreSQL connection string)";
  }
  std::string user, host, port, db;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    std::string_view k = o->keyword;
    std::string v = o->val != nullptr ? o->val : "";
    if (k == "user") {
      user = v;
    } else if (k == "host" || (k == "hostaddr" && host.empty())) {
      host = v;
    } else if (k == "port") {
      port = v;
    } else if (k == "dbname") {
      db = v;
    }
  }
  PQconninfoFree(options);
  return "postgres://" + (user.empty() ? "" : user + "@") + host +
         (port.empty() ? "" : ":" + port) + "/" + db;
}

// One libpq connection: statements with parameters, and the SQLSTATE of the last failure.
class PostgresMetadataStore::Connection {
 public:
  Connection(PGconn* conn, const std::string& password) : conn_(conn), password_(password) {}
  ~Connection() { PQfinish(conn_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }
  const std::string& sqlstate() const { return sqlstate_; }
  // Whether nothing was sent since ResetWork (a failure then is safe to retry elsewhere).
  bool fresh() const { return fresh_; }
  void ResetWork() {
    fresh_ = true;
    sqlstate_.clear();
  }

  Result<Rows> Run(const char* sql, const std::vector<Param>& params = {}) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const Param& p : params) {
      values.push_back(p.null ? nullptr : p.value.data());
      lengths.push_back(static_cast<int>(p.value.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    bool first = fresh_;
    fresh_ = false;
    Rows rows(PQexecParams(conn_, sql, static_cast<int>(params.size()), nullptr, values.data(),
                           lengths.data(), formats.data(), 0));
    return Check(std::move(rows), first);
  }
  // Several statements without parameters (the migrations).
  Status RunScript(const char* sql) {
    fresh_ = false;
    AIRLOCK_ASSIGN_OR_RETURN(Rows rows, Check(Rows(PQexec(conn_, sql)), false));
    (void)rows;
    return {};
  }

 private:
  Result<Rows> Check(Rows rows, bool first) {
    PGresult* r = rows.raw();
    ExecStatusType status = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      return rows;
    }
    const char* state = r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
    sqlstate_ = state != nullptr ? state : "";
    if (first && broken()) {
      fresh_ = true;  // nothing reached the server: the caller may retry on a new connection
    }
    return Fail(ErrorCode::kIo, "metadata database: " + Scrub(PQerrorMessage(conn_), password_));
  }

  PGconn* conn_;
  const std::string& password_;
  std::string sqlstate_;
  bool fresh_ = true;
};

// A borrowed connection, given back (or dropped when broken) on destruction.
class PostgresMetadataStore::Lease {
 public:
  Lease(PostgresMetadataStore* store, std::unique_ptr<Connection> c)
      : store_(store), c_(std::move(c)) {}
  Lease(Lease&& o) noexcept : store_(o.store_), c_(std::move(o.c_)) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (c_) {
      store_->Return(std::move(c_));
    }
  }
  Connection& operator*() { return *c_; }
  Connection* operator->() { return c_.get(); }

 private:
  PostgresMetadataStore* store_;
  std::unique_ptr<Connection> c_;
};

namespace {

Error NoBlob(std::string_view repository, const Digest& digest) {
  return Error(ErrorCode::kNotFound,
               "blob " + digest.ToString() + " is not in repository " + std::string(repository));
}
Error NoManifest(std::string_view repository, const Digest& digest) {
  return Error(ErrorCode::kNotFound, "manifest " + digest.ToString() + " is not in repository " +
                                         std::string(repository));
}
Error NoTag(std::string_view repository, std::string_view tag) {
  return Error(ErrorCode::kNotFound,
               "no tag " + std::string(tag) + " in repository " + std::string(repository));
}

using Connection = PostgresMetadataStore::Connection;

Result<std::optional<std::int64_t>> RepositoryId(Connection& c, std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(Rows rows,
                           c.Run("SELECT id FROM repositories WHERE name = $1", {Text(name)}));
  if (rows.size() == 0) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>(rows.Int64(0, 0));
}

Result<std::int64_t> ExistingRepository(Connection& c, std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto id, RepositoryId(c, name));
  if (!id) {
    return Fail(ErrorCode::kNotFound, "no repository " + std::string(name));
  }
  return *id;
}

Result<std::int64_t> EnsureRepository(Connection& c, std::string_view name) {
  AIRLOCK_ASSIGN_OR_RETURN(
      Rows rows, c.Run("INSERT INTO repositories (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                       {Text(name)}));
  (void)rows;
  return ExistingRepository(c, name);
}

}  // namespace

int PostgresMetadataStore::LatestSchemaVersion() {
  return kMigrations[std::size(kMigrations) - 1].version;
}

PostgresMetadataStore::PostgresMetadataStore(std::string conninfo, int max_connections)
    : conninfo_(std::move(conninfo)),
      password_(PasswordOf(conninfo_)),
      redacted_(RedactedPostgresUri(conninfo_)),
      max_connections_(std::max(1, max_connections)) {}

PostgresMetadataStore::~PostgresMetadataStore() = default;

Result<std::unique_ptr<PostgresMetadataStore>> PostgresMetadataStore::Open(
    std::string_view conninfo, int max_connections) {
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string(conninfo).c_str(), &parse_error);
  if (options == nullptr) {
    std::string why = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    return Fail(ErrorCode::kInvalidArgument,
                "not a PostgreSQL connection string (postgres://user:password@host:port/db): " +
                    Scrub(why, PasswordOf(conninfo)));
  }
  PQconninfoFree(options);
  std::unique_ptr<PostgresMetadataStore> store(
      new PostgresMetadataStore(std::string(conninfo), max_connections));
  Status migrated = store->Migrate();
  if (!migrated) {
    return Fail(std::move(migrated.error()).WithContext("while opening " + store->redacted_));
  }
  return store;
}

Result<PostgresMetadataStore::Lease> PostgresMetadataStore::Borrow() {
  {
    std::unique_lock lock(mu_);
    returned_.wait(lock, [&] { return !idle_.empty() || open_ < max_connections_; });
    if (!idle_.empty()) {
      std::unique_ptr<Connection> c = std::move(idle_.back());
      idle_.pop_back();
      c->ResetWork();
      return Lease(this, std::move(c));
    }
    ++open_;  // reserved; given back below when the connection fails
  }
  // Parameters before dbname are defaults that the connection string may override.
  const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"10", "airlock-hub", conninfo_.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, 1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string why = conn != nullptr ? Scrub(PQerrorMessage(conn), password_) : "out of memory";
    PQfinish(conn);
    {
      std::lock_guard lock(mu_);
      --open_;
    }
    returned_.notify_one();
    return Fail(ErrorCode::kUnavailable,
                "cannot connect to the metadata database " + redacted_ + ": " + why);
  }
  // Notices ("relation already exists, skipping") are not errors; keep them off stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return Lease(this, std::make_unique<Connection>(conn, password_));
}

void PostgresMetadataStore::Return(std::unique_ptr<Connection> connection) {
  {
    std::lock_guard lock(mu_);
    if (connection->broken()) {
      --open_;
    } else {
      idle_.push_back(std::move(connection));
    }
  }
  connection.reset();  // a broken one closes outside the lock
  returned_.notify_one();
}

template <typename T, typename F>
Result<T> PostgresMetadataStore::Read(F&& body) {
  for (int attempt = 0;; ++attempt) {
    AIRLOCK_ASSIGN_OR_RETURN(Lease c, Borrow());
    Result<T> result = body(*c);
    if (result || !c->fresh() || attempt > 0) {
      return result;
    }
    // The pooled connection was dead before it sent anything (a server restart): try a new one.
  }
}

template <typename T, typename F>
Result<T> PostgresMetadataStore::Transact(F&& body) {
  thread_local std::minstd_rand jitter(std::random_device{}());
  bool reconnected = false;
  for (int attempt = 1;; ++attempt) {
    AIRLOCK_ASSIGN_OR_RETURN(Lease c, Borrow());
    auto begun = c->Run("BEGIN ISOLATION LEVEL SERIALIZABLE");
    if (!begun) {
      if (c->fresh() && !reconnected) {
        reconnected = true;  // a dead pooled connection: once more on a new one
        --attempt;
        continue;
      }
      return Fail(std::move(begun.error()));
    }
    Result<T> result = body(*c);
    if (result) {
      auto committed = c->Run("COMMIT");
      if (committed) {
        return result;
      }
      result = Fail(std::move(committed.error()));
    }
    std::string sqlstate = c->sqlstate();
    if (!c->broken()) {
      (void)c->Run("ROLLBACK");
    }
    if (!IsRetryable(sqlstate) || attempt >= kAttempts) {
      return result;
    }
    // Lost a race with another transaction (another hub): back off a little, then again.
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 5 * attempt)(jitter)));
  }
}

Status PostgresMetadataStore::Migrate() {
  AIRLOCK_ASSIGN_OR_RETURN(Lease c, Borrow());
  AIRLOCK_RETURN_IF_ERROR(c->RunScript("BEGIN"));
  Status done = [&]() -> Status {
    // Hubs started together on an empty database take turns here.
    AIRLOCK_RETURN_IF_ERROR(c->RunScript(kMigrationLock));
    AIRLOCK_RETURN_IF_ERROR(
        c->RunScript("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"));
    AIRLOCK_ASSIGN_OR_RETURN(Rows rows,
                             c->Run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    std::int64_t current = rows.Int64(0, 0);
    if (current > LatestSchemaVersion()) {
      return Fail(ErrorCode::kUnsupported,
                  "the metadata database has schema version " + std::to_string(current) +
                      ", written by a newer airlock-hub; this one knows up to " +
                      std::to_string(LatestSchemaVersion()));
    }
    for (const Migration& m : kMigrations) {
      if (m.version <= current) {
        continue;
      }
      AIRLOCK_RETURN_IF_ERROR(c->RunScript(m.sql));
      AIRLOCK_ASSIGN_OR_RETURN(
          Rows recorded,
          c->Run("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                 {Int(m.version), Text(m.description)}));
      (void)recorded;
    }
    return c->RunScript("COMMIT");
  }();
  if (!done && !c->broken()) {
    (void)c->RunScript("ROLLBACK");
  }
  return done;
}

Result<int> PostgresMetadataStore::SchemaVersion() {
  return Read<int>([&](Connection& c) -> Result<int> {
    AIRLOCK_ASSIGN_OR_RETURN(Rows rows,
                             c.Run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    return static_cast<int>(rows.Int64(0, 0));
  });
}

namespace {

// Statements of one transaction on a borrowed connection.
class PostgresSession final : public SqlSession {
 public:
  explicit PostgresSession(Connection& c) : c_(c) {}
  Result<SqlRows> Query(std::string_view sql, const std::vector<SqlParam>& params) override {
    std::vector<Param> values;
    for (const SqlParam& p : params) {
      if (const auto* n = std::get_if<std::int64_t>(&p)) {
        values.push_back(Int(*n));
      } else if (const auto* t = std::get_if<std::string>(&p)) {
        values.push_back(Text(*t));
      } else {
        values.push_back(Null());
      }
    }
    auto rows = c_.Run(NumberPlaceholders(sql).c_str(), values);
    if (!rows) {
      if (c_.sqlstate() == "23505") {  // unique_violation
        return Fail(ErrorCode::kAlreadyExists, rows.error().message());
      }
      return Fail(std::move(rows.error()));
    }
    SqlRows out;
    int columns = PQnfields(rows->raw());
    for (int r = 0; r < rows->size(); ++r) {
      auto& row = out.rows.emplace_back();
      for (int c = 0; c < columns; ++c) {
        row.push_back(rows->IsNull(r, c) ? std::nullopt
                                         : std::optional<std::string>(rows->Str(r, c)));
      }
    }
    out.affected = rows->Affected();
    return out;
  }
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }

 private:
  Connection& c_;
};

}  // namespace

Status PostgresMetadataStore::Transact(const std::function<Status(SqlSession&)>& body) {
  return Transact<void>([&](Connection& c) -> Status {
    PostgresSession session(c);
    return body(session);
  });
}

Result<bool> PostgresMetadataStore::RepositoryExists(std::string_view repository) {
  return Read<bool>([&](Connection& c) -> Result<bool> {
    AIRLOCK_ASSIGN_OR_RETURN(auto id, RepositoryId(c, repository));
    return id.has_value();
  });
}

Status PostgresMetadataStore::LinkBlob(std::string_view repository, const Digest& digest,
                                       std::uint64_t size) {
  return Transact<void>([&](Connection& c) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, EnsureRepository(c, repository));
    AIRLOCK_ASSIGN_OR_RETURN(Rows rows, c.Run("INSERT INTO repository_blobs (repository_id, "
                                              "digest, size) VALUES ($1, $2, $3) "
                                              "ON CONFLICT DO NOTHING",
                                              {Int(repo), Text(digest.ToString()),
                                               Int(static_cast<std::int64_t>(size))}));
    (void)rows;
    return {};
  });
}

Result<std::uint64_t> PostgresMetadataStore::LinkedBlob(std::string_view repository,
                                                        const Digest& digest) {
  return Read<std::uint64_t>([&](Connection& c) -> Result<std::uint64_t> {
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows rows, c.Run("SELECT b.size FROM repository_blobs b JOIN repositories r ON r.id = "
                         "b.repository_id WHERE r.name = $1 AND b.digest = $2",
                         {Text(repository), Text(digest.ToString())}));
    if (rows.size() == 0) {
      return Fail(NoBlob(repository, digest));
    }
    return static_cast<std::uint64_t>(rows.Int64(0, 0));
  });
}

Result<bool> PostgresMetadataStore::UnlinkBlob(std::string_view repository, const Digest& digest) {
  return Transact<bool>([&](Connection& c) -> Result<bool> {
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows del, c.Run("DELETE FROM repository_blobs WHERE digest = $1 AND repository_id = "
                        "(SELECT id FROM repositories WHERE name = $2)",
                        {Text(digest.ToString()), Text(repository)}));
    if (del.Affected() == 0) {
      return Fail(NoBlob(repository, digest));
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows left, c.Run("SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)",
                         {Text(digest.ToString())}));
    return left.Bool(0, 0);
  });
}

Result<bool> PostgresMetadataStore::IsBlobLinked(const Digest& digest) {
  return Read<bool>([&](Connection& c) -> Result<bool> {
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows rows, c.Run("SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)",
                         {Text(digest.ToString())}));
    return rows.Bool(0, 0);
  });
}

Status PostgresMetadataStore::PutManifest(std::string_view repository,
                                          const ManifestRecord& manifest,
                                          const ManifestReferences& references,
                                          std::optional<std::string_view> tag) {
  return Transact<void>([&](Connection& c) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, EnsureRepository(c, repository));
    for (const auto& blob : references.blobs) {
      AIRLOCK_ASSIGN_OR_RETURN(
          Rows rows,
          c.Run("SELECT size FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
                {Int(repo), Text(blob.digest.ToString())}));
      if (rows.size() == 0) {
        return Fail(NoBlob(repository, blob.digest));
      }
      if (static_cast<std::uint64_t>(rows.Int64(0, 0)) != blob.size) {
        return Fail(ErrorCode::kInvalidArgument,
                    "blob " + blob.digest.ToString() + " has " + std::to_string(rows.Int64(0, 0)) +
                        " bytes, but the manifest says " + std::to_string(blob.size));
      }
    }
    for (const auto& child : references.manifests) {
      AIRLOCK_ASSIGN_OR_RETURN(
          Rows rows, c.Run("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2",
                           {Int(repo), Text(child.ToString())}));
      if (rows.size() == 0) {
        return Fail(NoManifest(repository, child));
      }
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows put,
        c.Run("INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, "
              "size, annotations, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
              "ON CONFLICT DO NOTHING",
              {Int(repo), Text(manifest.digest.ToString()), Text(manifest.media_type),
               Text(manifest.artifact_type),
               manifest.subject ? Text(manifest.subject->ToString()) : Null(),
               Int(static_cast<std::int64_t>(manifest.size)), Text(manifest.annotations_json),
               Bytes(manifest.bytes)}));
    (void)put;
    if (tag) {
      AIRLOCK_ASSIGN_OR_RETURN(
          Rows t, c.Run("INSERT INTO tags (repository_id, name, digest) VALUES ($1, $2, $3) "
                        "ON CONFLICT (repository_id, name) DO UPDATE SET digest = "
                        "excluded.digest, updated_at = now()",
                        {Int(repo), Text(*tag), Text(manifest.digest.ToString())}));
      (void)t;
    }
    return {};
  });
}

Result<ManifestRecord> PostgresMetadataStore::GetManifest(std::string_view repository,
                                                          const Digest& digest) {
  return Read<ManifestRecord>([&](Connection& c) -> Result<ManifestRecord> {
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows rows,
        c.Run("SELECT m.media_type, m.artifact_type, m.subject, m.size, m.annotations, m.bytes "
              "FROM manifests m JOIN repositories r ON r.id = m.repository_id "
              "WHERE r.name = $1 AND m.digest = $2",
              {Text(repository), Text(digest.ToString())}));
    if (rows.size() == 0) {
      return Fail(NoManifest(repository, digest));
    }
    ManifestRecord m;
    m.digest = digest;
    m.media_type = rows.Str(0, 0);
    m.artifact_type = rows.Str(0, 1);
    if (!rows.IsNull(0, 2)) {
      AIRLOCK_ASSIGN_OR_RETURN(Digest subject, Digest::Parse(rows.Str(0, 2)));
      m.subject = subject;
    }
    m.size = static_cast<std::uint64_t>(rows.Int64(0, 3));
    m.annotations_json = rows.Str(0, 4);
    m.bytes = rows.Bytea(0, 5);
    return m;
  });
}

Result<Digest> PostgresMetadataStore::ResolveTag(std::string_view repository,
                                                 std::string_view tag) {
  return Read<Digest>([&](Connection& c) -> Result<Digest> {
    AIRLOCK_ASSIGN_OR_RETURN(Rows rows,
                             c.Run("SELECT t.digest FROM tags t JOIN repositories r ON r.id = "
                                   "t.repository_id WHERE r.name = $1 AND t.name = $2",
                                   {Text(repository), Text(tag)}));
    if (rows.size() == 0) {
      return Fail(NoTag(repository, tag));
    }
    return Digest::Parse(rows.Str(0, 0));
  });
}

Result<std::vector<std::string>> PostgresMetadataStore::ListTags(std::string_view repository,
                                                                 std::string_view last,
                                                                 std::size_t limit) {
  using Tags = std::vector<std::string>;
  // Two statements that must agree (the repository exists, its tags): one snapshot.
  return Transact<Tags>([&](Connection& c) -> Result<Tags> {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, ExistingRepository(c, repository));
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows rows,
        c.Run("SELECT name FROM tags WHERE repository_id = $1 AND name > $2 "
              "ORDER BY name LIMIT $3",
              {Int(repo), Text(last),
               Int(static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)))}));
    Tags tags;
    for (int i = 0; i < rows.size(); ++i) {
      tags.push_back(rows.Str(i, 0));
    }
    return tags;
  });
}

Status PostgresMetadataStore::DeleteManifest(std::string_view repository, const Digest& digest) {
  return Transact<void>([&](Connection& c) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t repo, ExistingRepository(c, repository));
    AIRLOCK_ASSIGN_OR_RETURN(Rows tags,
                             c.Run("DELETE FROM tags WHERE repository_id = $1 AND digest = $2",
                                   {Int(repo), Text(digest.ToString())}));
    (void)tags;
    AIRLOCK_ASSIGN_OR_RETURN(Rows del,
                             c.Run("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
                                   {Int(repo), Text(digest.ToString())}));
    if (del.Affected() == 0) {
      return Fail(NoManifest(repository, digest));
    }
    return {};
  });
}

Status PostgresMetadataStore::DeleteTag(std::string_view repository, std::string_view tag) {
  return Transact<void>([&](Connection& c) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(Rows del, c.Run("DELETE FROM tags WHERE name = $1 AND repository_id = "
                                             "(SELECT id FROM repositories WHERE name = $2)",
                                             {Text(tag), Text(repository)}));
    if (del.Affected() == 0) {
      return Fail(NoTag(repository, tag));
    }
    return {};
  });
}

Result<std::vector<ManifestRecord>> PostgresMetadataStore::Referrers(
    std::string_view repository, const Digest& subject, std::string_view artifact_type) {
  using Records = std::vector<ManifestRecord>;
  return Read<Records>([&](Connection& c) -> Result<Records> {
    AIRLOCK_ASSIGN_OR_RETURN(
        Rows rows,
        c.Run("SELECT m.digest, m.media_type, m.artifact_type, m.size, m.annotations "
              "FROM manifests m JOIN repositories r ON r.id = m.repository_id "
              "WHERE r.name = $1 AND m.subject = $2 AND ($3 = '' OR m.artifact_type = $3) "
              "ORDER BY m.digest",
              {Text(repository), Text(subject.ToString()), Text(artifact_type)}));
    Records out;
    for (int i = 0; i < rows.size(); ++i) {
      ManifestRecord m;
      AIRLOCK_ASSIGN_OR_RETURN(m.digest, Digest::Parse(rows.Str(i, 0)));
      m.media_type = rows.Str(i, 1);
      m.artifact_type = rows.Str(i, 2);
      m.subject = subject;
      m.size = static_cast<std::uint64_t>(rows.Int64(i, 3));
      m.annotations_json = rows.Str(i, 4);
      out.push_back(std::move(m));
    }
    return out;
  });
}

}  // namespace airlock::store
