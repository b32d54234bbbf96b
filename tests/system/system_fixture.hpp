#pragma once
// What the system tests share: keys, the root and two signed packages made once per suite, a
// Mosquitto broker, `airlock-hub serve --mqtt` and `airlock-gateway serve` as processes, and the
// `airlock` and `airlock-gateway` commands run as their users would.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "net/mqtt.hpp"
#include "support/daemon.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

inline constexpr auto kLong = 90s;

inline fs::path Bin(const std::string& name) { return AirlockBinary().parent_path() / name; }

// Keys, the root and the signed package, made once for the suite.
struct World {
  TempDir dir;
  fs::path root() const { return dir / "root.json"; }
  fs::path key(const std::string& name) const { return dir / "keys" / (name + ".key"); }
  fs::path package() const { return dir / "vib-1.0.0.tar"; }
  // 16 MiB of random weights: big enough to be caught mid-download at a few MiB/s.
  fs::path big() const { return dir / "big-1.tar"; }
};
inline constexpr std::uint64_t kBigModel = 16ULL << 20;
inline World* g_world = nullptr;

// A daemon whose log says "serving on http://127.0.0.1:PORT"; its port, once it does.
inline int StartServing(pid_t& pid, const std::vector<std::string>& argv, const fs::path& log) {
  pid = SpawnDaemon(argv, log);
  int port = WaitForServingPort(pid, log, 60s);
  EXPECT_GT(port, 0) << ReadAll(log);
  return port;
}

class DeliverySystem : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_world = new World();
    const World& w = *g_world;
    for (const char* k : {"root", "publisher", "manager"}) {
      CommandResult made = RunAirlock({"keygen", (w.dir / "keys" / k).string()});
      ASSERT_EQ(made.exit_code, 0) << made.err;
    }
    CommandResult root = RunAirlock(
        {"root", "init", "--root-key", w.key("root").string(), "--publisher",
         (w.dir / "keys" / "publisher.pub").string(), "--release-manager",
         (w.dir / "keys" / "manager.pub").string(), "-o", w.root().string()});
    ASSERT_EQ(root.exit_code, 0) << root.err;
    fs::path yaml = SourceDir() / "examples" / "vibration-anomaly" / "airlock.yaml";
    CommandResult packed = RunAirlock({"pack", "-f", yaml.string(), "-o", w.package().string()});
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
    CommandResult signed_ = RunAirlock(
        {"sign", "-k", w.key("publisher").string(), "--counter", "1", w.package().string()});
    ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
    std::string weights(kBigModel, '\0');
    std::uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (char& c : weights) {  // not compressible, not all alike
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    WriteAll(w.dir / "weights.bin", weights);
    CommandResult big = RunAirlock({"pack", "--no-validate", "--model",
                                    (w.dir / "weights.bin").string(), "--name", "big", "--version",
                                    "1", "-o", w.big().string()});
    ASSERT_EQ(big.exit_code, 0) << big.err;
    CommandResult big_signed = RunAirlock(
        {"sign", "-k", w.key("publisher").string(), "--counter", "1", w.big().string()});
    ASSERT_EQ(big_signed.exit_code, 0) << big_signed.err;
  }
  static void TearDownTestSuite() {
    delete g_world;
    g_world = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(g_world, nullptr);
    broker_ = std::make_unique<MosquittoBroker>();
    for (const char* role : {"viewer", "publisher", "release-manager", "admin"}) {
      CommandResult made =
          RunCommand({Bin("airlock-hub").string(), "token", "create", "--name",
                      std::string(role) + "-1", "--role", role, "--data", (dir_ / "hub").string()});
      ASSERT_EQ(made.exit_code, 0) << made.err;
      tokens_[role] = made.out.substr(0, made.out.find('\n'));
    }
    // Short timeouts, so that what a restart loses is offered and granted again within seconds.
    WriteAll(dir_ / "hub.yaml",
             "delivery:\n"
             "  offer_timeout: 3s\n"
             "  grant_timeout: 3s\n"
             "  start_timeout: 5s\n"
             "  progress_timeout: 10s\n"
             "  backoff_initial: 1s\n"
             "  backoff_max: 2s\n"
             "  max_retries: 100\n");
    if (hub_https_) {
      // A CA for the hub's HTTPS and the gateways' certificates, as `make run` makes one.
      CommandResult ca = RunAirlock({"ca", "init", (dir_ / "ca").string(), "--name", "test CA"});
      ASSERT_EQ(ca.exit_code, 0) << ca.err;
      CommandResult cert = RunAirlock({"ca", "issue", "--ca", (dir_ / "ca").string(), "--name",
                                       "hub", "--host", "127.0.0.1", "-o",
                                       (dir_ / "hub-https").string()});
      ASSERT_EQ(cert.exit_code, 0) << cert.err;
      std::string yaml = ReadAll(dir_ / "hub.yaml");
      WriteAll(dir_ / "hub.yaml", yaml + "http:\n  tls_cert: " + (dir_ / "hub-https.pem").string() +
                                      "\n  tls_key: " + (dir_ / "hub-https.key").string() +
                                      "\n  client_ca: " + hub_ca().string() + "\n");
    }
    StartHub();
    ASSERT_EQ(As("publisher", {"-q", "push", g_world->package().string(),
                               "127.0.0.1:" + std::to_string(hub_port_) +
                                   "/models/vibration-anomaly"})
                  .exit_code,
              0);
    CommandResult promoted =
        As("release-manager", {"promote", "vibration-anomaly", "1.0.0", "--channel", "production",
                               "-k", g_world->key("manager").string()});
    ASSERT_EQ(promoted.exit_code, 0) << promoted.err;
  }
  void TearDown() override {
    for (auto& [name, pid] : gateways_) {
      StopDaemon(pid);
    }
    StopDaemon(hub_);
  }

  void StartHub() {
    // The same port after a restart: the gateways know the hub by its URL.
    std::vector<std::string> argv = {Bin("airlock-hub").string(), "serve", "--config",
                                     (dir_ / "hub.yaml").string(), "--data",
                                     (dir_ / "hub").string(), "--root",
                                     g_world->root().string(), "--mqtt", broker_->url(),
                                     "--port", std::to_string(hub_port_), "--log-level", "info"};
    hub_port_ = StartServing(hub_, argv, dir_ / ("hub-" + std::to_string(++hub_starts_) + ".log"));
    ASSERT_GT(hub_port_, 0);
  }
  std::string hub_url() const {
    return (hub_https_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(hub_port_);
  }
  fs::path hub_ca() const { return dir_ / "ca" / "ca.pem"; }
  // With hub_https_: a client certificate for gateway name from the hub's CA, which
  // GatewayConfig(name) then gives the gateway as hub.cert_file and hub.key_file.
  void IssueHubCertificate(const std::string& name) {
    CommandResult issued = RunAirlock({"ca", "issue", "--ca", (dir_ / "ca").string(), "--name",
                                       name, "-o", (dir_ / (name + "-hub")).string()});
    ASSERT_EQ(issued.exit_code, 0) << issued.err;
  }

  // The airlock binary with a token of role and the hub in AIRLOCK_HUB.
  CommandResult As(const std::string& role, std::vector<std::string> args) const {
    std::vector<std::string> argv = {"env", "AIRLOCK_CONFIG_DIR=" + (dir_ / "config").string(),
                                     "AIRLOCK_HUB=" + hub_url(),
                                     "AIRLOCK_REGISTRY_TOKEN=" + tokens_.at(role),
                                     AirlockBinary().string()};
    if (hub_https_) {
      argv.insert(argv.end() - 1, "AIRLOCK_CA_FILE=" + hub_ca().string());
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, dir_.path(), 120);
  }

  // Writes gateway name's configuration; broker_url "" means the test's broker, hub "" the hub.
  fs::path GatewayConfig(const std::string& name, const std::string& broker_url = "",
                         const std::string& extra = "", const std::string& hub = "") {
    fs::path config = dir_ / (name + ".yaml");
    CommandResult token = As("admin", {"gateways", "token", "--json"});
    EXPECT_EQ(token.exit_code, 0) << token.err;
    std::string tls;
    if (hub_https_) {
      tls = "  ca_file: " + hub_ca().string() + "\n";
      if (fs::exists(dir_ / (name + "-hub.pem"))) {
        tls += "  cert_file: " + (dir_ / (name + "-hub.pem")).string() + "\n" +
               "  key_file: " + (dir_ / (name + "-hub.key")).string() + "\n";
      }
    }
    WriteAll(config, "name: " + name +
                         "\n"
                         "hub:\n"
                         "  url: " + (hub.empty() ? hub_url() : hub) + "\n" +
                         "  register_token: " + json::parse(token.out)["token"].get<std::string>() +
                         "\n" + tls +
                         "root: " + g_world->root().string() + "\n" +
                         "data: " + (dir_ / name).string() + "\n" +
                         "mqtt:\n"
                         "  broker: " + (broker_url.empty() ? broker_->url() : broker_url) + "\n" +
                         "http:\n"
                         "  port: 0\n"
                         "cache:\n"
                         "  reserve_bytes: 0\n" + extra);
    return config;
  }
  void StartGateway(const std::string& name, const fs::path& config) {
    int port = StartServing(
        gateways_[name], {Bin("airlock-gateway").string(), "serve", "--config", config.string()},
        dir_ / (name + "-" + std::to_string(++gateway_starts_) + ".log"));
    ASSERT_GT(port, 0);
    gateway_ports_[name] = port;
  }
  void StopGateway(const std::string& name) { StopDaemon(gateways_[name]); }
  std::string GatewayLogs() const {
    std::string out;
    for (const auto& e : fs::directory_iterator(dir_.path())) {
      if (e.path().extension() == ".log") {
        out += "---- " + e.path().filename().string() + "\n" + ReadAll(e.path());
      }
    }
    return out;
  }

  // The operator's command against gateway name (a token made for it first).
  CommandResult Operator(const std::string& name, std::vector<std::string> args) {
    if (!operator_tokens_.contains(name)) {
      CommandResult made =
          RunCommand({Bin("airlock-gateway").string(), "token", "create", "--name", "operator",
                      "--config", (dir_ / (name + ".yaml")).string()});
      EXPECT_EQ(made.exit_code, 0) << made.err;
      operator_tokens_[name] = made.out.substr(0, made.out.find('\n'));
    }
    std::vector<std::string> argv = {"env", "AIRLOCK_GATEWAY_TOKEN=" + operator_tokens_[name],
                                     Bin("airlock-gateway").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--gateway");
    argv.push_back(GatewayUrl(name));
    if (!gateway_ca_.empty()) {
      argv.insert(argv.end(), {"--ca", gateway_ca_.string()});
    }
    return RunCommand(argv, dir_.path(), 120);
  }
  // Gateway name's API and registry as its devices and operators reach it.
  std::string GatewayUrl(const std::string& name) {
    return (gateway_ca_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") +
           std::to_string(gateway_ports_[name]);
  }

  std::string Deploy(const std::string& gateway, const std::string& model = "vibration-anomaly") {
    CommandResult deployed = As("release-manager", {"deploy", model, "--channel", "production",
                                                    "--gateway", gateway, "--json"});
    EXPECT_EQ(deployed.exit_code, 0) << deployed.err;
    return json::parse(deployed.out, nullptr, false).value("id", "");
  }
  json Status(const std::string& deployment) {
    CommandResult status = As("viewer", {"status", deployment, "--json"});
    EXPECT_EQ(status.exit_code, 0) << status.err;
    return json::parse(status.out, nullptr, false);
  }
  bool WaitForState(const std::string& deployment, const std::string& state) {
    return WaitUntil([&] { return Status(deployment).value("state", "") == state; }, kLong,
                     500ms);
  }
  json Delivery(const std::string& deployment) {
    json d = Status(deployment);
    return d.contains("deliveries") && !d["deliveries"].empty() ? d["deliveries"][0] : json();
  }

  // The big package pushed and promoted; a gateway `name` that reaches the hub through a relay
  // which counts the bytes, can cut connections, and passes at most rate bytes a second.
  void PrepareBig(const std::string& name, std::uint64_t rate = 4 << 20) {
    CommandResult pushed = As("publisher", {"-q", "push", g_world->big().string(),
                                            "127.0.0.1:" + std::to_string(hub_port_) +
                                                "/models/big"});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
    CommandResult promoted = As("release-manager", {"promote", "big", "1", "--channel",
                                                    "production", "-k",
                                                    g_world->key("manager").string()});
    ASSERT_EQ(promoted.exit_code, 0) << promoted.err;
    relay_ = std::make_unique<TcpProxy>(hub_port_);
    relay_->set_rate(rate);
    GatewayConfig(name, "", "", "http://127.0.0.1:" + std::to_string(relay_->port()));
  }
  // Bytes of partial downloads in gateway name's cache.
  std::uint64_t PartialBytes(const std::string& name) {
    std::uint64_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_ / name / "cache" / "uploads", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec) && it->path().filename() == "data") {
        n += it->file_size(ec);
      }
    }
    return n;
  }

  // A device's pull from gateway name's registry, then verified against the root.
  void ExpectDevicesCanPull(const std::string& name) {
    fs::path pulled = dir_ / (name + "-pulled.tar");
    CommandResult pull =
        As("viewer", {"-q", "pull",
                      "127.0.0.1:" + std::to_string(gateway_ports_[name]) +
                          "/models/vibration-anomaly:1.0.0",
                      "-o", pulled.string()});
    ASSERT_EQ(pull.exit_code, 0) << pull.err;
    CommandResult verified = As("viewer", {"verify", pulled.string(), "--root",
                                           g_world->root().string()});
    EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  }

  TempDir dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  // Set: the gateways serve HTTPS with certificates from this CA (tests of issue 8).
  fs::path gateway_ca_;
  // Set before SetUp: the hub serves HTTPS from a CA in dir_/ca and asks gateways for
  // certificates from it (http.client_ca); the commands and the gateways trust it.
  bool hub_https_ = false;
  pid_t hub_ = -1;
  int hub_port_ = 0;
  int hub_starts_ = 0, gateway_starts_ = 0;
  std::map<std::string, std::string> tokens_, operator_tokens_;
  std::map<std::string, pid_t> gateways_;
  std::map<std::string, int> gateway_ports_;
  std::unique_ptr<TcpProxy> relay_;
};

}  // namespace airlock::testing
