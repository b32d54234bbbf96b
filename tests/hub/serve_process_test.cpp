// `airlock-hub serve` as a real process: it prints where it serves, stops cleanly on SIGTERM,
// refuses a second hub on the same data directory (with SQLite), and after a kill -9 in the
// middle of uploads it restarts with nothing half visible and the partial uploads gone. Hubs on
// one PostgreSQL database share one data directory: any of them serves any blob and continues
// any upload, and a killed one's sessions go with `airlock-hub gc`, not with the others'.
// `airlock-hub gc` removes unlinked blob files beside a serving hub and keeps every linked one.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "hub/hub_fixture.hpp"
#include "support/mosquitto.hpp"
#include "support/promtool.hpp"

namespace airlock::hub {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;
using std::chrono::steady_clock;

std::string HubBinary() {
  return (airlock::testing::AirlockBinary().parent_path() / "airlock-hub").string();
}

// A child process with its stdout and stderr in pipes; killed when the object dies, or when the
// test process dies.
class HubProcess {
 public:
  explicit HubProcess(std::vector<std::string> args) {
    args.insert(args.begin(), HubBinary());
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // A test process that dies without running destructors (a crash) takes its hubs along.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) {
        _exit(127);
      }
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
  // Sends the rest of the body and returns the response's status code (-1 if none came).
  int Finish(const std::string& rest) {
    EXPECT_EQ(send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL), static_cast<ssize_t>(rest.size()));
    std::string head;
    char c;
    while (head.find("\r\n") == std::string::npos && recv(fd_, &c, 1, 0) == 1) {
      head += c;
    }
    auto space = head.find(' ');
    return space == std::string::npos ? -1 : std::atoi(head.c_str() + space + 1);
  }

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

// What an operator does for Prometheus: a metrics token made offline, then a scrape of the
// running hub with it (the scrape_config's `authorization: credentials_file:`).
TEST(HubProcess, AMetricsTokenMadeOfflineScrapesTheRunningHub) {
  TempDir dir;
  auto made =
      airlock::testing::RunCommand({HubBinary(), "token", "create", "--name", "prometheus",
                                    "--role", "metrics", "--data", (dir / "data").string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string token = made.out.substr(0, made.out.find('\n'));
  ASSERT_TRUE(token.starts_with("alk_")) << made.out;
  auto refused =
      airlock::testing::RunCommand({HubBinary(), "token", "create", "--name", "x", "--role",
                                    "metric", "--data", (dir / "data").string()});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("metrics (GET /metrics only"), std::string::npos) << refused.err;

  HubProcess hub(
      {"serve", "--data", (dir / "data").string(), "--port", "0", "--log-level", "warn"});
  int port = hub.WaitForPort();
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  EXPECT_EQ(c.Get("/v2/", {{"Authorization", "Bearer " + token}})->status, 403);
  auto scraped = c.Get("/metrics", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200) << scraped->body;
  // The two refusals above, and no orchestrator (no --mqtt): no broker or fleet families.
  EXPECT_NE(scraped->body.find("\nairlock_http_errors_total 2\n"), std::string::npos)
      << scraped->body;
  EXPECT_NE(scraped->body.find("airlock_hub_deployments{state=\"pending\"} 0\n"),
            std::string::npos);
  EXPECT_EQ(scraped->body.find("airlock_mqtt_connected"), std::string::npos);
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(scraped->body));
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

airlock::testing::CommandResult HubCommand(std::vector<std::string> args) {
  args.insert(args.begin(), HubBinary());
  return airlock::testing::RunCommand(args, {}, 60);
}

fs::path BlobFile(const fs::path& data, const std::string& bytes) {
  std::string hex = Sha256Of(bytes).hex();
  return data / "blobs/sha256" / hex.substr(0, 2) / hex;
}

// Pushes bytes as a blob of repo through a hub; expects 201.
void Push(httplib::Client& c, const std::string& repo, const std::string& bytes) {
  auto r = c.Post("/v2/" + repo + "/blobs/uploads/?digest=" + Sha256Of(bytes).ToString(), bytes,
                  "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
}

TEST(HubProcess, GcRemovesUnlinkedBlobsWhileTheHubServesAndKeepsLinkedOnes) {
  TempDir dir;
  fs::path data = dir / "data";
  HubProcess hub(
      {"serve", "--no-auth", "--data", data.string(), "--port", "0", "--log-level", "warn"});
  int port = hub.WaitForPort();
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  std::string config = R"({"architecture":"amd64"})", shared = "weights shared with b",
              own = "weights only a has";
  Push(c, "models/a", config);
  Push(c, "models/a", shared);
  Push(c, "models/a", own);
  Push(c, "models/b", shared);
  std::string manifest = ImageManifest(config, {shared, own});
  ASSERT_EQ(c.Put("/v2/models/a/manifests/1.0", manifest, kManifestType)->status, 201);

  // Delete the manifest and one blob link; the hub removes a file with its last link itself.
  ASSERT_EQ(c.Delete("/v2/models/a/manifests/" + Sha256Of(manifest).ToString())->status, 202);
  ASSERT_EQ(c.Delete("/v2/models/a/blobs/" + Sha256Of(own).ToString())->status, 202);
  ASSERT_EQ(c.Delete("/v2/models/a/blobs/" + Sha256Of(shared).ToString())->status, 202);
  EXPECT_FALSE(fs::exists(BlobFile(data, own)));
  EXPECT_TRUE(fs::exists(BlobFile(data, shared)));  // models/b still links it
  // What a hub killed between publishing a blob and linking it leaves: a verified file under its
  // digest that no repository links.
  std::string orphan(100000, 'o');
  airlock::testing::WriteAll(BlobFile(data, orphan), orphan);

  auto dry = HubCommand({"gc", "--data", data.string(), "--dry-run", "--grace", "0s"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("would remove " + Sha256Of(orphan).ToString() + " (100000 bytes)"),
            std::string::npos)
      << dry.out;
  EXPECT_NE(dry.out.find("would remove 1 blob(s), 100000 bytes; kept 2 linked"), std::string::npos)
      << dry.out;
  EXPECT_TRUE(fs::exists(BlobFile(data, orphan)));

  // The default grace period keeps every file that changed a moment ago, without asking.
  auto young = HubCommand({"gc", "--data", data.string()});
  ASSERT_EQ(young.exit_code, 0) << young.err;
  EXPECT_NE(young.out.find("removed 0 blob(s), 0 bytes; kept 0 linked, 3 changed within 1h"),
            std::string::npos)
      << young.out;
  EXPECT_TRUE(fs::exists(BlobFile(data, orphan)));

  auto gc = HubCommand({"gc", "--data", data.string(), "--grace", "0s"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("removed " + Sha256Of(orphan).ToString() + " (100000 bytes)"),
            std::string::npos)
      << gc.out;
  EXPECT_NE(gc.out.find("removed 1 blob(s), 100000 bytes; kept 2 linked"), std::string::npos)
      << gc.out;
  EXPECT_FALSE(fs::exists(BlobFile(data, orphan)));
  // The linked blobs stayed, and the hub, which served throughout, still serves them.
  EXPECT_EQ(c.Get("/v2/models/a/blobs/" + Sha256Of(config).ToString())->body, config);
  EXPECT_EQ(c.Get("/v2/models/b/blobs/" + Sha256Of(shared).ToString())->body, shared);
  // And it takes the collected blob again.
  Push(c, "models/a", orphan);
  EXPECT_EQ(c.Get("/v2/models/a/blobs/" + Sha256Of(orphan).ToString())->body, orphan);

  auto bad = HubCommand({"gc", "--data", data.string(), "--grace", "soon"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("bad duration \"soon\""), std::string::npos) << bad.err;
  EXPECT_EQ(hub.Stop(SIGTERM), 0);
}

TEST(HubProcess, GcRemovesWhatAnotherHubsDeleteLeftOnASharedDatabase) {
  std::string db;
  try {
    db = airlock::testing::SharedPostgres().CreateDatabase();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  TempDir dir;
  HubProcess a({"serve", "--data", (dir / "a").string(), "--db", db, "--port", "0", "--no-auth"});
  HubProcess b({"serve", "--data", (dir / "b").string(), "--db", db, "--port", "0", "--no-auth"});
  int port_a = a.WaitForPort(), port_b = b.WaitForPort();
  ASSERT_GT(port_a, 0) << a.Stderr();
  ASSERT_GT(port_b, 0) << b.Stderr();
  httplib::Client ca("127.0.0.1", port_a), cb("127.0.0.1", port_b);
  std::string gone = "deleted through a", kept = "still linked";
  // Both hubs received the same blobs (a load balancer spread the pushes): two copies each.
  for (auto* c : {&ca, &cb}) {
    Push(*c, "m", gone);
    Push(*c, "m", kept);
  }
  ASSERT_EQ(ca.Delete("/v2/m/blobs/" + Sha256Of(gone).ToString())->status, 202);
  EXPECT_FALSE(fs::exists(BlobFile(dir / "a", gone)));
  EXPECT_TRUE(fs::exists(BlobFile(dir / "b", gone)));  // b's copy: linked nowhere any more

  auto gc = HubCommand({"gc", "--data", (dir / "b").string(), "--db", db, "--grace", "0s"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(
      gc.out.find("removed 1 blob(s), " + std::to_string(gone.size()) + " bytes; kept 1 linked"),
      std::string::npos)
      << gc.out;
  EXPECT_FALSE(fs::exists(BlobFile(dir / "b", gone)));
  EXPECT_EQ(cb.Get("/v2/m/blobs/" + Sha256Of(kept).ToString())->body, kept);
  EXPECT_EQ(a.Stop(SIGTERM), 0);
  EXPECT_EQ(b.Stop(SIGTERM), 0);
}

// Bytes that differ all along, so a shifted or misplaced range shows.
std::string Patterned(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : out) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

std::string NewDatabase() {
  try {
    return airlock::testing::SharedPostgres().CreateDatabase();
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return "";
  }
}

std::vector<std::string> SessionsUnder(const fs::path& data) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(data / "uploads")) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The session id at the end of an upload's Location.
std::string SessionId(const std::string& location) {
  return location.substr(location.rfind('/') + 1);
}

TEST(HubProcess, TwoHubsOnOneDataDirectoryAndDatabaseServeAndUploadThroughEither) {
  std::string db = NewDatabase();
  ASSERT_FALSE(db.empty());
  TempDir dir;
  fs::path data = dir / "data";
  HubProcess a({"serve", "--data", data.string(), "--db", db, "--port", "0", "--no-auth",
                "--log-level", "warn"});
  int port_a = a.WaitForPort();
  ASSERT_GT(port_a, 0) << a.Stderr();
  HubProcess b({"serve", "--data", data.string(), "--db", db, "--port", "0", "--no-auth",
                "--log-level", "warn"});
  int port_b = b.WaitForPort();
  ASSERT_GT(port_b, 0) << b.Stderr();
  httplib::Client ca("127.0.0.1", port_a), cb("127.0.0.1", port_b);

  // Pushed to a, pulled from b: the same bytes, whole and by range.
  std::string config = R"({"architecture":"amd64"})", weights = Patterned(300000, 1);
  Push(ca, "models/m", config);
  Push(ca, "models/m", weights);
  std::string manifest = ImageManifest(config, {weights});
  ASSERT_EQ(ca.Put("/v2/models/m/manifests/1.0", manifest, kManifestType)->status, 201);
  auto got_manifest = cb.Get("/v2/models/m/manifests/1.0");
  ASSERT_TRUE(got_manifest);
  EXPECT_EQ(got_manifest->body, manifest);
  std::string blob_path = "/v2/models/m/blobs/" + Sha256Of(weights).ToString();
  auto whole = cb.Get(blob_path);
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->status, 200);
  EXPECT_TRUE(whole->body == weights);
  auto ranged = cb.Get(blob_path, {{"Range", "bytes=123456-223455"}});
  ASSERT_TRUE(ranged);
  EXPECT_EQ(ranged->status, 206);
  EXPECT_EQ(ranged->get_header_value("Content-Range"), "bytes 123456-223455/300000");
  EXPECT_TRUE(ranged->body == weights.substr(123456, 100000));

  // A chunked upload started on a, continued on b, finished on a (which did not see every byte,
  // so it hashes the file rather than trusting what it hashed itself).
  std::string chunked = Patterned(3 << 20, 2);
  auto start = ca.Post("/v2/models/m/blobs/uploads/", "", "application/octet-stream");
  ASSERT_EQ(start->status, 202);
  std::string location = start->get_header_value("Location");
  const std::size_t mib = 1 << 20;
  auto first = ca.Patch(location, {{"Content-Range", "0-1048575"}}, chunked.substr(0, mib),
                        "application/octet-stream");
  ASSERT_EQ(first->status, 202) << first->body;
  auto second = cb.Patch(location, {{"Content-Range", "1048576-2097151"}}, chunked.substr(mib, mib),
                         "application/octet-stream");
  ASSERT_EQ(second->status, 202) << second->body;
  EXPECT_EQ(second->get_header_value("Range"), "0-2097151");
  // A chunk that starts where b already wrote is refused by a, which sees b's bytes. (Small: the
  // hub answers before reading the body and closes, and a large one would still be in flight.)
  auto repeated = ca.Patch(location, {{"Content-Range", "1048576-1048579"}}, chunked.substr(mib, 4),
                           "application/octet-stream");
  EXPECT_EQ(repeated->status, 416);
  EXPECT_EQ(repeated->get_header_value("Range"), "0-2097151");
  auto finished = ca.Put(location + "?digest=" + Sha256Of(chunked).ToString(),
                         chunked.substr(2 * mib), "application/octet-stream");
  ASSERT_EQ(finished->status, 201) << finished->body;
  std::string chunked_path = "/v2/models/m/blobs/" + Sha256Of(chunked).ToString();
  EXPECT_TRUE(cb.Get(chunked_path)->body == chunked);
  EXPECT_TRUE(SessionsUnder(data).empty());

  // Deleted through b: gone through a, and its file with it.
  ASSERT_EQ(cb.Delete(chunked_path)->status, 202);
  EXPECT_EQ(ca.Head(chunked_path)->status, 404);
  EXPECT_FALSE(fs::exists(BlobFile(data, chunked)));
  EXPECT_TRUE(ca.Get(blob_path)->body == weights);  // the other blob is still served by both

  // A hub with SQLite metadata may not join them, and gc must use their database.
  HubProcess lone({"serve", "--no-auth", "--data", data.string(), "--port", "0"});
  EXPECT_EQ(lone.Wait(), 1);
  std::string refused = lone.Stderr();
  EXPECT_NE(refused.find("another process"), std::string::npos) << refused;
  EXPECT_NE(refused.find("same PostgreSQL database"), std::string::npos) << refused;
  auto wrong_gc = HubCommand({"gc", "--data", data.string(), "--grace", "0s"});
  EXPECT_EQ(wrong_gc.exit_code, 1);
  EXPECT_NE(wrong_gc.err.find("run gc with their database"), std::string::npos) << wrong_gc.err;
  EXPECT_TRUE(fs::exists(BlobFile(data, weights)));
  EXPECT_TRUE(cb.Get(blob_path)->body == weights);  // both still serve

  EXPECT_EQ(a.Stop(SIGTERM), 0);
  EXPECT_EQ(b.Stop(SIGTERM), 0);
}

TEST(HubProcess, AHubKilledMidUploadLeavesTheOthersSessionsAndGcRemovesItsOwn) {
  std::string db = NewDatabase();
  ASSERT_FALSE(db.empty());
  TempDir dir;
  fs::path data = dir / "data";
  std::vector<std::string> serve = {"serve",  "--data", data.string(), "--db",        db,
                                    "--port", "0",      "--no-auth",   "--log-level", "warn"};
  auto a = std::make_unique<HubProcess>(serve);
  int port_a = a->WaitForPort();
  ASSERT_GT(port_a, 0);
  HubProcess b(serve);
  int port_b = b.WaitForPort();
  ASSERT_GT(port_b, 0);
  httplib::Client ca("127.0.0.1", port_a), cb("127.0.0.1", port_b);
  std::string blob = Patterned(2 << 20, 3);
  std::string digest = Sha256Of(blob).ToString();

  // On b, an upload whose PATCH is still arriving (b holds its session) ...
  auto on_b = cb.Post("/v2/models/b/blobs/uploads/", "", "application/octet-stream");
  ASSERT_EQ(on_b->status, 202);
  std::string b_location = on_b->get_header_value("Location");
  HalfRequest b_patch(port_b,
                      "PATCH " + b_location +
                          " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                          "Content-Length: " +
                          std::to_string(blob.size()) + "\r\n\r\n",
                      blob.substr(0, 1 << 20));
  // ... and on a, an idle chunked session and a monolithic push cut off mid-body.
  auto on_a = ca.Post("/v2/models/a/blobs/uploads/", "", "application/octet-stream");
  ASSERT_EQ(on_a->status, 202);
  std::string a_location = on_a->get_header_value("Location");
  ASSERT_EQ(ca.Patch(a_location, blob.substr(0, 1000), "application/octet-stream")->status, 202);
  HalfRequest a_push(port_a,
                     "POST /v2/models/a/blobs/uploads/?digest=" + digest +
                         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: " +
                         std::to_string(blob.size()) + "\r\n\r\n",
                     blob.substr(0, 1 << 20));
  ASSERT_TRUE(airlock::testing::WaitUntil([&] {
    std::size_t full = 0;
    for (const auto& id : SessionsUnder(data)) {
      std::error_code ec;
      full += fs::file_size(data / "uploads" / id / "data", ec) == (1u << 20) ? 1 : 0;
    }
    return full == 2;
  })) << "the cut-off requests never reached the disk";
  ASSERT_EQ(SessionsUnder(data).size(), 3u);
  EXPECT_EQ(a->Stop(SIGKILL), 128 + SIGKILL);
  a.reset();

  // Nothing of a's is removed by b, and a's chunked session can still be continued through b.
  EXPECT_EQ(SessionsUnder(data).size(), 3u);
  auto a_status = cb.Get(a_location);
  ASSERT_TRUE(a_status);
  EXPECT_EQ(a_status->status, 204);
  EXPECT_EQ(a_status->get_header_value("Range"), "0-999");

  // gc keeps sessions that received bytes within --upload-idle (24h by default) ...
  auto kept = HubCommand({"gc", "--data", data.string(), "--db", db});
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_EQ(kept.out.find("upload session"), std::string::npos) << kept.out;
  EXPECT_EQ(SessionsUnder(data).size(), 3u);
  // ... and with 0s removes every session not in use: a's two, not b's, whose PATCH is arriving.
  auto gc = HubCommand({"gc", "--data", data.string(), "--db", db, "--upload-idle", "0s"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("removed 2 upload session(s) idle for more than 0s (" +
                        std::to_string(1000 + (1 << 20)) + " bytes)"),
            std::string::npos)
      << gc.out;
  EXPECT_EQ(SessionsUnder(data), std::vector<std::string>{SessionId(b_location)});
  EXPECT_EQ(cb.Get(a_location)->status, 404);
  EXPECT_EQ(cb.Head("/v2/models/a/blobs/" + digest)->status, 404);

  // b's upload completes as if nothing happened.
  EXPECT_EQ(b_patch.Finish(blob.substr(1 << 20)), 202);
  auto done = cb.Put(b_location + "?digest=" + digest, "", "application/octet-stream");
  ASSERT_EQ(done->status, 201) << done->body;
  EXPECT_TRUE(cb.Get("/v2/models/b/blobs/" + digest)->body == blob);

  // A session b leaves when it stops goes when a hub next starts alone on the directory.
  auto left = cb.Post("/v2/models/b/blobs/uploads/", "", "application/octet-stream");
  ASSERT_EQ(left->status, 202);
  EXPECT_EQ(b.Stop(SIGKILL), 128 + SIGKILL);
  EXPECT_EQ(SessionsUnder(data).size(), 1u);
  HubProcess alone(serve);
  ASSERT_GT(alone.WaitForPort(), 0);
  EXPECT_TRUE(SessionsUnder(data).empty());
  EXPECT_EQ(alone.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace airlock::hub
