#pragma once
// A throwaway PostgreSQL server for tests, and the backend parameter that runs a suite on SQLite
// and on PostgreSQL.
//
// PostgresServer runs Debian's server binaries (/usr/lib/postgresql/<version>/bin, installed by
// scripts/bootstrap): `initdb` into a temporary directory (superuser "airlock" with a password,
// scram-sha-256 over TCP, ICU en-US collation by default), then `postgres` listening on 127.0.0.1
// on a free port with its socket in that directory and durability off (fsync, synchronous_commit: a
// test cluster). PostgreSQL refuses to run as root, so when the tests run as root both run as the
// user nobody (the directory is handed to it). The constructor returns once the server accepts
// logins and throws std::runtime_error when the binaries are missing (saying to run
// scripts/bootstrap) or the server does not start. The server is stopped by the destructor and
// killed (PR_SET_PDEATHSIG) when the test process dies. Not thread-safe.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "support/test_support.hpp"

namespace airlock::testing {

class PostgresServer {
 public:
  static constexpr char kUser[] = "airlock";
  static constexpr char kPassword[] = "airlock-test-secret";

  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // postgres://airlock:PASSWORD@127.0.0.1:PORT/database
  std::string Uri(const std::string& database) const;
  // Creates an empty database with a fresh name and returns its URI.
  std::string CreateDatabase();
  // Runs SQL (no parameters) in database as the superuser; throws std::runtime_error on failure.
  void Execute(const std::string& database, const std::string& sql) const;
  // Stops the server (fast shutdown, SIGKILL after a deadline).
  void Stop();
  // Stops and starts it again on the same port (clients' connections break).
  void Restart();
  // What the server and initdb logged, for failure messages.
  std::string Log() const;

 private:
  bool TryStart();
  TempDir dir_;
  std::string bin_;
  uid_t uid_ = 0;  // who runs the server: nobody when the tests run as root, else ourselves
  gid_t gid_ = 0;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

// One server for the whole test binary, started on first use (initdb takes a second or two);
// each test takes a database of its own with CreateDatabase().
PostgresServer& SharedPostgres();

// The metadata backends a suite runs on.
enum class MetadataBackend { kSqlite, kPostgres };
std::string BackendName(const ::testing::TestParamInfo<MetadataBackend>& info);
inline auto AllMetadataBackends() {
  return ::testing::Values(MetadataBackend::kSqlite, MetadataBackend::kPostgres);
}

}  // namespace airlock::testing
