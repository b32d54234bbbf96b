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

// Forks argv as uid/gid with output appended to log; the child dies with this process.
// Returns the child's pid.
pid_t Spawn(const std::vector<std::string>& argv, const fs::path& log, uid_t uid, gid_t gid) {
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("cannot open " + log.string());
  }
  bool drop = ::geteuid() != uid;
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. The death signal is set after the
    // change of user, which would clear it.
    if (drop && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
      ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
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
  pid_t initdb = Spawn(
      {bin_ + "/initdb", "-D", (dir_ / "data").string(), "-U", kUser, "--pwfile=" + pwfile.string(),
       "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
       "--locale-provider=icu", "--icu-locale=en-US", "--no-sync"},
      dir_ / "initdb.log", uid_, gid_);
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
  pid_ =
      Spawn({bin_ + "/postgres", "-D", (dir_ / "data").string(), "-k", dir_.path().string(), "-h",
             "127.0.0.1", "-p", std::to_string(port_), "-c", "fsync=off", "-c",
             "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"},
            dir_ / "postgres.log", uid_, gid_);
  std::string probe = Uri("postgres") + "?connect_timeout=2";
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // exited: port taken, bad configuration
      return false;
    }
    if (PQping(probe.c_str()) == PQPING_OK) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  Stop();
  return false;
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
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGINT);  // fast shutdown: disconnects clients, no checkpoint wait for them
  auto deadline = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
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
