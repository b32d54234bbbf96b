// `airlock-hub serve` as a real process: it prints where it serves, stops cleanly on SIGTERM,
// refuses a second hub on the same data directory, and after a kill -9 in the middle of uploads
// it restarts with nothing half visible and the partial uploads gone.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "hub/hub_fixture.hpp"
#include "support/mosquitto.hpp"

namespace airlock::hub {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;
using std::chrono::steady_clock;

std::string HubBinary() {
  return (airlock::testing::AirlockBinary().parent_path() / "airlock-hub").string();
}

// A child process with its stdout and stderr in pipes; killed when the object dies.
class HubProcess {
 public:
  explicit HubProcess(std::vector<std::string> args) {
    args.insert(args.begin(), HubBinary());
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]);
      close(err[0]);
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~HubProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
    close(err_);
  }
  // The port from "airlock-hub: serving on http://127.0.0.1:PORT", or -1.
  int WaitForPort() {
    std::string line = ReadLine(out_);
    auto at = line.find("serving on http://127.0.0.1:");
    return at == std::string::npos ? -1 : std::stoi(line.substr(line.rfind(':') + 1));
  }
  std::string Stderr() { return ReadLine(err_); }
  // Sends sig and waits (bounded) for the exit; returns the exit code, 128+signal, or -1.
  int Stop(int sig) {
    kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    auto deadline = steady_clock::now() + std::chrono::seconds(20);
    while (steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  static std::string ReadLine(int fd) {
    std::string line;
    auto deadline = steady_clock::now() + std::chrono::seconds(30);
    while (steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        continue;
      }
      char c;
      if (read(fd, &c, 1) != 1 || c == '\n') {
        break;
      }
      line += c;
    }
    return line;
  }
  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
};

// A TCP connection that sends a request's head and part of its body, then stays open.
class HalfRequest {
 public:
  HalfRequest(int port, const std::string& head, const std::string& partial_body) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string all = head + partial_body;
    EXPECT_EQ(send(fd_, all.data(), all.size(), MSG_NOSIGNAL), static_cast<ssize_t>(all.size()));
  }
  ~HalfRequest() { close(fd_); }

 private:
  int fd_ = -1;
};

std::vector<std::string> FilesUnder(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      out.push_back(fs::relative(e.path(), dir).string());
    }
  }
  return out;
}

TEST(HubProcess, ServesAndStopsCleanlyOnSigtermAndRefusesASecondHubOnItsData) {
  TempDir dir;
  HubProcess hub(
      {"serve", "--data", (dir / "data").string(), "--port", "0", "--log-level", "warn"});
  int port = hub.WaitForPort();
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  // Tokens are required by default: the base endpoint challenges with the token realm.
  auto r = c.Get("/v2/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(r->get_header_value("WWW-Authenticate").find("/v2/token"), std::string::npos);

  HubProcess second({"serve", "--no-auth", "--data", (dir / "data").string(), "--port", "0"});
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_NE(second.Stderr().find("another process"), std::string::npos);

  EXPECT_EQ(hub.Stop(SIGTERM), 0);
}

TEST(HubProcess, AConfigurationWithAnUnknownKeyIsRefused) {
  TempDir dir;
  airlock::testing::WriteAll(dir / "hub.yaml", "http:\n  prot: 7400\n");
  HubProcess hub({"serve", "--config", (dir / "hub.yaml").string()});
  EXPECT_EQ(hub.Wait(), 2);
  EXPECT_NE(hub.Stderr().find("http.prot: unknown key"), std::string::npos);
}

TEST(HubProcess, TwoHubsOnOnePostgresDatabaseSeeEachOthersManifests) {
  std::string db;
  try {
    db = airlock::testing::SharedPostgres().CreateDatabase();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  TempDir dir;
  // One selects the database with --db, the other with the configuration's db key.
  airlock::testing::WriteAll(dir / "hub.yaml", "db: " + db + "\n");
  HubProcess a({"serve", "--data", (dir / "a").string(), "--db", db, "--port", "0", "--no-auth"});
  HubProcess b({"serve", "--data", (dir / "b").string(), "--config", (dir / "hub.yaml").string(),
                "--port", "0", "--no-auth"});
  int port_a = a.WaitForPort(), port_b = b.WaitForPort();
  ASSERT_GT(port_a, 0) << a.Stderr();
  ASSERT_GT(port_b, 0) << b.Stderr();
  httplib::Client ca("127.0.0.1", port_a), cb("127.0.0.1", port_b);
  std::string config = "{}";
  auto pushed = ca.Post("/v2/m/blobs/uploads/?digest=" + Sha256Of(config).ToString(), config,
                        "application/octet-stream");
  ASSERT_TRUE(pushed);
  ASSERT_EQ(pushed->status, 201);
  std::string manifest = ImageManifest(config, {});
  auto put = ca.Put("/v2/m/manifests/1.0", manifest, kManifestType);
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 201) << put->body;
  auto got = cb.Get("/v2/m/manifests/1.0");  // through the other hub
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, manifest);
  EXPECT_EQ(a.Stop(SIGTERM), 0);
  EXPECT_EQ(b.Stop(SIGTERM), 0);
}

TEST(HubProcess, AnUnreachableOrRefusingDatabaseStopsTheHubWithoutPrintingThePassword) {
  TempDir dir;
  std::string wrong = airlock::testing::SharedPostgres().Uri("postgres");
  wrong.replace(wrong.find(airlock::testing::PostgresServer::kPassword),
                std::string(airlock::testing::PostgresServer::kPassword).size(), "not-it-42");
  HubProcess refused({"serve", "--data", (dir / "data").string(), "--db", wrong, "--port", "0"});
  EXPECT_NE(refused.Wait(), 0);
  std::string err = refused.Stderr();
  EXPECT_NE(err.find("password authentication failed"), std::string::npos) << err;
  EXPECT_EQ(err.find("not-it-42"), std::string::npos) << err;

  std::string nowhere =
      "postgres://hub:pw-77@127.0.0.1:" + std::to_string(airlock::testing::FreePort()) + "/hub";
  HubProcess unreachable(
      {"serve", "--data", (dir / "data").string(), "--db", nowhere, "--port", "0"});
  EXPECT_NE(unreachable.Wait(), 0);
  err = unreachable.Stderr();
  EXPECT_NE(err.find("cannot connect to the metadata database postgres://hub@127.0.0.1:"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("pw-77"), std::string::npos) << err;
}

TEST(HubProcess, KilledMidUploadRestartsWithNothingHalfVisible) {
  TempDir dir;
  fs::path data = dir / "data";
  std::string blob(4 << 20, 'b');
  for (std::size_t i = 0; i < blob.size(); i += 4096) {
    blob[i] = static_cast<char>(i / 4096);
  }
  std::string digest = Sha256Of(blob).ToString();
  std::string session;
  {
    HubProcess hub(
        {"serve", "--no-auth", "--data", data.string(), "--port", "0", "--log-level", "warn"});
    int port = hub.WaitForPort();
    ASSERT_GT(port, 0);
    httplib::Client c("127.0.0.1", port);
    // A chunked upload with its first chunk in.
    auto start = c.Post("/v2/models/a/blobs/uploads/", "", "application/octet-stream");
    ASSERT_EQ(start->status, 202);
    session = start->get_header_value("Location");
    ASSERT_EQ(c.Patch(session, blob.substr(0, 1 << 20), "application/octet-stream")->status, 202);
    // A monolithic push cut off in the middle of its body.
    HalfRequest half(port,
                     "POST /v2/models/a/blobs/uploads/?digest=" + digest +
                         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: " +
                         std::to_string(blob.size()) + "\r\n\r\n",
                     blob.substr(0, 2 << 20));
    ASSERT_TRUE(airlock::testing::WaitUntil([&] {
      std::size_t partial = 0;
      for (const auto& f : FilesUnder(data / "uploads")) {
        partial += f.ends_with("/data") ? 1 : 0;
      }
      return partial == 2;
    })) << "the cut-off upload never reached the disk";
    EXPECT_EQ(hub.Stop(SIGKILL), 128 + SIGKILL);
  }
  EXPECT_FALSE(FilesUnder(data / "uploads").empty());  // what the dead hub left

  HubProcess hub(
      {"serve", "--no-auth", "--data", data.string(), "--port", "0", "--log-level", "warn"});
  int port = hub.WaitForPort();
  ASSERT_GT(port, 0);
  EXPECT_EQ(FilesUnder(data / "uploads"), std::vector<std::string>{});
  EXPECT_EQ(FilesUnder(data / "blobs"), std::vector<std::string>{});
  httplib::Client c("127.0.0.1", port);
  auto status = c.Get(session);
  EXPECT_EQ(status->status, 404);
  EXPECT_EQ(ErrorCodeOf(status), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(c.Head("/v2/models/a/blobs/" + digest)->status, 404);
  // The next push of the same blob works.
  auto pushed =
      c.Post("/v2/models/a/blobs/uploads/?digest=" + digest, blob, "application/octet-stream");
  ASSERT_EQ(pushed->status, 201) << pushed->body;
  EXPECT_TRUE(c.Get("/v2/models/a/blobs/" + digest)->body == blob);
  EXPECT_EQ(hub.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace airlock::hub
