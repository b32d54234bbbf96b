#include "support/postgres.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/daemon.hpp"
#include "support/mosquitto.hpp"

namespace airlock::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// The newest /usr/lib/postgresql/<version>/bin holding both initdb and postgres, "" when none.
std::string FindServerBinaries() {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    fs::path bin = entry.path() / "bin";
    if (fs::exists(bin / "initdb") && fs::exists(bin / "postgres")) {
      found.push_back(bin);
    }
  }
  if (found.empty()) {
    return "";
  }
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoi(a.parent_path().filename().string()) <
           std::stoi(b.parent_path().filename().string());
  });
  return found.back().string();
}

}  // namespace

PostgresServer::PostgresServer() {
  bin_ = FindServerBinaries();
  if (bin_.empty()) {
    throw std::runtime_error(
        "the PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb and postgres) "
        "are missing: run scripts/bootstrap, which installs Debian's postgresql package");
  }
  uid_ = ::geteuid();
  gid_ = ::getegid();
  if (uid_ == 0) {
    // PostgreSQL will not run as root.
    const passwd* nobody = ::getpwnam("nobody");
    const group* nogroup = ::getgrnam("nogroup");
    if (nobody == nullptr || nogroup == nullptr) {
      throw std::runtime_error("running as root and there is no user nobody / group nogroup");
    }
    uid_ = nobody->pw_uid;
    gid_ = nogroup->gr_gid;
    if (::chown(dir_.path().c_str(), uid_, gid_) != 0) {
      throw std::runtime_error("cannot hand " + dir_.path().string() + " to nobody");
    }
  }
  fs::path pwfile = dir_ / "pwfile";
  WriteAll(pwfile, std::string(kPassword) + "\n");
  if (::chown(pwfile.c_str(), uid_, gid_) != 0) {
    throw std::runtime_error("cannot hand " + pwfile.string() + " to the server's user");
  }
  // The default collation is ICU's en-US, where "a" sorts before "A": the store must not depend on
  // the database's locale for its byte-ordered tags.
  pid_t initdb = SpawnDaemon(
      {bin_ + "/initdb", "-D", (dir_ / "data").string(), "-U", kUser, "--pwfile=" + pwfile.string(),
       "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
       "--locale-provider=icu", "--icu-locale=en-US", "--no-sync"},
      dir_ / "initdb.log", DaemonUser{uid_, gid_});
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (::waitpid(initdb, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(initdb, SIGKILL);
      ::waitpid(initdb, &status, 0);
      throw std::runtime_error("initdb did not finish in 120 s: " + Log());
    }
    std::this_thread::sleep_for(20ms);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("initdb failed: " + Log());
  }
  // A port picked by FreePort can be taken before postgres binds it: try another.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (TryStart()) {
      return;
    }
  }
  throw std::runtime_error("postgres did not start: " + Log());
}

PostgresServer::~PostgresServer() { Stop(); }

std::string PostgresServer::Uri(const std::string& database) const {
  return std::string("postgres://") + kUser + ":" + kPassword +
         "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresServer::Log() const {
  return ReadAll(dir_ / "initdb.log") + ReadAll(dir_ / "postgres.log");
}

bool PostgresServer::TryStart() {
  pid_ = SpawnDaemon(
      {bin_ + "/postgres", "-D", (dir_ / "data").string(), "-k", dir_.path().string(), "-h",
       "127.0.0.1", "-p", std::to_string(port_), "-c", "fsync=off", "-c", "synchronous_commit=off",
       "-c", "full_page_writes=off", "-c", "max_connections=200"},
      dir_ / "postgres.log", DaemonUser{uid_, gid_});
  std::string probe = Uri("postgres") + "?connect_timeout=2";
  return WaitUntilServing(
      pid_, [&probe] { return PQping(probe.c_str()) == PQPING_OK; }, 30s);
}

void PostgresServer::Restart() {
  Stop();
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (TryStart()) {
      return;
    }
    std::this_thread::sleep_for(200ms);
  }
  throw std::runtime_error("postgres did not restart on port " + std::to_string(port_) + ": " +
                           Log());
}

void PostgresServer::Stop() {
  // SIGINT is a fast shutdown: clients are disconnected, no checkpoint waits for them.
  StopDaemon(pid_, SIGINT, 10s);
}

void PostgresServer::Execute(const std::string& database, const std::string& sql) const {
  PGconn* conn = PQconnectdb(Uri(database).c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot connect to the test PostgreSQL: " + why);
  }
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType status = PQresultStatus(r);
  std::string why = PQerrorMessage(conn);
  PQclear(r);
  PQfinish(conn);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error("test PostgreSQL: " + sql + ": " + why);
  }
}

std::string PostgresServer::CreateDatabase() {
  std::string name = "test_" + std::to_string(++databases_);
  Execute("postgres", "CREATE DATABASE " + name);
  return Uri(name);
}

PostgresServer& SharedPostgres() {
  // Destroyed at exit, which stops the server; a crash kills it through PR_SET_PDEATHSIG.
  static PostgresServer server;
  return server;
}

std::string BackendName(const ::testing::TestParamInfo<MetadataBackend>& info) {
  return info.param == MetadataBackend::kSqlite ? "Sqlite" : "Postgres";
}

}  // namespace airlock::testing
