// `airlock-agent serve` as a real process: its configuration file, its port, a watched folder whose
// pictures come out as verdicts on a real Mosquitto, and a clean stop on SIGTERM.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent_fixture.hpp"
#include "support/mosquitto.hpp"
#include "support/promtool.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using airlock::testing::AgentBinary;

// A child process whose stdout we read line by line.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int out[2];
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, 0);
      std::vector<char*> args;
      for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
  }
  // The next line of stdout, or "" after timeout or end of output.
  std::string ReadLine(int timeout_ms = 30000) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        continue;
      }
      char c;
      if (read(out_, &c, 1) != 1) {
        break;
      }
      if (c == '\n') {
        return line;
      }
      line += c;
    }
    return line;
  }
  // Sends sig and waits (bounded) for the exit status; -1 when it did not exit in time.
  int Stop(int sig = SIGTERM, int timeout_ms = 20000) {
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
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
  pid_t pid_ = -1;
  int out_ = -1;
};

class ServeProcessTest : public AgentFixture {};

TEST_F(ServeProcessTest, WatchedFolderToMqttWithARealBroker) {
  Install(airlock::testing::SourceDir() / "examples/visual-inspection", "1.0.0", 1);
  airlock::testing::MosquittoBroker broker;
  fs::path inbox = tmp_ / "inbox";
  fs::create_directories(inbox);
  airlock::testing::WriteAll(tmp_ / "agent.yaml",
                             R"(
store: )" + store_dir().string() +
                                 R"(
http: {port: 0}
mqtt: {broker: )" + broker.url() +
                                 R"(, client_id: test-agent-)" + std::to_string(getpid()) + R"(}
models:
  visual-inspection:
    sources: [{type: folder, path: )" +
                                 inbox.string() +
                                 R"(, pattern: "*.png", settle: 100ms, rescan: 200ms}]
    sinks:
      - {type: mqtt, topic: dev/d1/results/visual-inspection, qos: 1, retain: true}
      - {type: jsonl, path: )" + (tmp_ / "results.jsonl").string() +
                                 R"(}
)");
  Child agent(
      {AgentBinary().string(), "serve", "--config", (tmp_ / "agent.yaml").string(), "--log-level", "warn"});
  std::string line = agent.ReadLine();
  ASSERT_NE(line.find("serving on http://127.0.0.1:"), std::string::npos) << line;
  int port = std::stoi(line.substr(line.rfind(':') + 1));
  httplib::Client c("127.0.0.1", port);
  // Results published while the broker is not connected yet would be counted as failed
  // deliveries, not queued (the durable outbox is the monitoring issue's).
  ASSERT_TRUE(airlock::testing::WaitUntil([&] {
    auto m = c.Get("/metrics");
    return m && m->body.find("\nairlock_mqtt_connected 1\n") != std::string::npos;
  }));

  // A scratched tag (sample 1) arrives in the folder: written elsewhere, then renamed in.
  fs::copy_file(airlock::testing::SourceDir() / "examples/visual-inspection/samples/1/image.png",
                tmp_ / "part-17.png");
  fs::rename(tmp_ / "part-17.png", inbox / "part-17.png");

  auto sub = airlock::testing::RunCommand(
      {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-V", "mqttv5",
       "-t", "dev/d1/results/#", "-C", "1", "-W", "20"},
      {}, 40);
  ASSERT_EQ(sub.exit_code, 0)
      << sub.err << "\n"
      << c.Get("/metrics")->body.substr(c.Get("/metrics")->body.find("airlock_route"))
      << broker.Log() << airlock::testing::ReadAll(tmp_ / "results.jsonl");
  auto result = json::parse(sub.out);
  EXPECT_EQ(result["verdict"], "scratched") << sub.out;
  EXPECT_EQ(result["model"], "visual-inspection");
  EXPECT_EQ(result["input"], "part-17.png");
  EXPECT_TRUE(
      airlock::testing::WaitUntil([&] { return fs::exists(inbox / "processed/part-17.png"); }));
  EXPECT_NE(airlock::testing::ReadAll(tmp_ / "results.jsonl").find("\"scratched\""),
            std::string::npos);

  // A corrupt picture goes to failed/ with the reason; the agent keeps serving.
  airlock::testing::WriteAll(tmp_ / "bad.png", "\x89PNG\r\n\x1a\n truncated");
  fs::rename(tmp_ / "bad.png", inbox / "bad.png");
  EXPECT_TRUE(airlock::testing::WaitUntil([&] { return fs::exists(inbox / "failed/bad.png"); }));
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(
      metrics->body.find("airlock_route_inputs_processed_total{model=\"visual-inspection\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics->body.find("airlock_route_inputs_failed_total{model=\"visual-inspection\"} 1"),
            std::string::npos);
  // The whole scrape of the real process, its routes and MQTT families included, is valid
  // Prometheus text with no lint problem beyond Triton's names.
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(metrics->body, TritonLintProblems()));
  EXPECT_EQ(c.Get("/v2/health/ready")->status, 200);
  EXPECT_EQ(agent.Stop(), 0);
}

TEST_F(ServeProcessTest, BadConfigurationIsAUsageErrorNamingTheKey) {
  airlock::testing::WriteAll(tmp_ / "agent.yaml", "http: {prot: 8000}\n");
  auto r = airlock::testing::RunCommand(
      {AgentBinary().string(), "serve", "--config", (tmp_ / "agent.yaml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("http.prot: unknown key"), std::string::npos) << r.err;
}

TEST_F(ServeProcessTest, APortInUseIsReported) {
  // A listening socket (two merely bound SO_REUSEADDR sockets may share a port).
  int taken = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(taken, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  auto r = airlock::testing::RunCommand(
      {AgentBinary().string(), "--store", store_dir().string(), "serve", "--port", std::to_string(port)});
  close(taken);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace airlock::agent
