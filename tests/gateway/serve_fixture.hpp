#pragma once
// What the tests of `airlock-gateway serve` as a process share: a root with a publisher key that
// signs releases and channels, and a small fake hub (an httplib server that registers gateways and
// serves manifests and blobs, and can stall, corrupt or count what it sends).

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "gateway/gateway_fixture.hpp"
#include "support/daemon.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"
#include "trust/documents.hpp"

namespace airlock::gateway {

using nlohmann::json;

inline TimePoint Now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

// A root with one root key and one publisher key.
struct Trust {
  PrivateKey root_key = PrivateKey::Generate().value();
  PrivateKey publisher = PrivateKey::Generate().value();
  std::string root_text;
  Trust() {
    trust::Root root;
    root.version = 1;
    root.expires = Now() + std::chrono::hours(24 * 365);
    root.keys.emplace(root_key.id(), root_key.public_key());
    root.keys.emplace(publisher.id(), publisher.public_key());
    root.roles.emplace(std::string(trust::kRoleRoot), trust::RoleSpec{{root_key.id()}, 1});
    root.roles.emplace(std::string(trust::kRolePublisher), trust::RoleSpec{{publisher.id()}, 1});
    trust::SignedDocument doc = trust::SignedDocument::Wrap(root.ToJson());
    EXPECT_TRUE(doc.Sign(root_key));
    root_text = doc.Serialize().value();
  }
  trust::SignedDocument Release(const std::string& model, const std::string& version,
                                const TestPackage& p, std::vector<std::string> platforms,
                                std::uint64_t counter = 1) const {
    trust::Release r;
    r.model = model;
    r.version = version;
    r.release_counter = counter;
    r.index_digest = Sha256Of(p.index);
    r.index_size = p.index.size();
    r.index_media_type = kIndexType;
    r.platforms = std::move(platforms);
    r.created = Now() - std::chrono::hours(1);
    r.expires = Now() + std::chrono::hours(24 * 30);
    trust::SignedDocument doc = trust::SignedDocument::Wrap(r.ToJson());
    EXPECT_TRUE(doc.Sign(publisher));
    return doc;
  }
  // The channel `name` of model at version, listing releases (the first is the current one),
  // signed by the publisher (the root has no release-manager role).
  trust::SignedDocument Channel(const std::string& model, const std::string& name,
                                std::uint64_t version,
                                const std::vector<trust::SignedDocument>& releases) const {
    trust::Channel c;
    c.model = model;
    c.name = name;
    c.version = version;
    c.expires = Now() + std::chrono::hours(24 * 30);
    for (const trust::SignedDocument& doc : releases) {
      auto r = trust::Release::FromJson(doc.body());
      EXPECT_TRUE(r);
      c.releases.push_back({.version = r->version,
                            .release_counter = r->release_counter,
                            .release = trust::ReleaseId(doc).value()});
    }
    trust::SignedDocument doc = trust::SignedDocument::Wrap(c.ToJson());
    EXPECT_TRUE(doc.Sign(publisher));
    return doc;
  }
};

// The hub, as far as a gateway sees it.
class FakeHub {
 public:
  FakeHub() {
    server_.Post("/api/v1/gateways/register", [this](const httplib::Request& req,
                                                     httplib::Response& res) {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || body.value("token", "") != "alkreg_good") {
        res.status = 401;
        res.set_content(
            R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":"the registration token was used already"}]})",
            "application/json");
        return;
      }
      registrations_++;
      res.status = 201;
      res.set_content(R"({"credential":"alk_fakecredential","name":"gw1","role":"gateway"})",
                      "application/json");
    });
    server_.Get(R"(/v2/(.+)/(manifests|blobs|referrers)/(sha256:[0-9a-f]{64}))",
                [this](const httplib::Request& req, httplib::Response& res) { Serve(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeHub() {
    ReleaseStall();
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void Add(const TestPackage& p) {
    std::lock_guard lock(mu_);
    repository_ = p.spec.ref.repository;
    for (const std::string& m : p.spec.manifests) {
      manifests_[Sha256Of(m).ToString()] = m;
    }
    for (const std::string& b : p.blobs) {
      blobs_[Sha256Of(b).ToString()] = b;
    }
    json r = Descriptor(kManifestType, p.release_manifest);
    r["artifactType"] = kReleaseType;
    referrers_[Sha256Of(p.index).ToString()] = r;
  }
  // Serves other bytes (same length) for digest.
  void Corrupt(const Digest& d, bool on) {
    std::lock_guard lock(mu_);
    if (on) {
      corrupt_.insert(d.ToString());
    } else {
      corrupt_.erase(d.ToString());
    }
  }
  // The first GET of digest sends `bytes` bytes and then waits until ReleaseStall.
  void StallAfter(const Digest& d, std::size_t bytes) {
    std::lock_guard lock(mu_);
    stall_digest_ = d.ToString();
    stall_after_ = bytes;
    stalled_ = false;
  }
  void ReleaseStall() {
    std::lock_guard lock(mu_);
    stall_digest_.clear();
    cv_.notify_all();
  }
  std::uint64_t served(const Digest& d) {
    std::lock_guard lock(mu_);
    return served_[d.ToString()];
  }
  std::vector<std::string> ranges(const Digest& d) {
    std::lock_guard lock(mu_);
    return ranges_[d.ToString()];
  }
  int blob_gets() {
    std::lock_guard lock(mu_);
    return blob_gets_;
  }
  int registrations() const { return registrations_; }

 private:
  void Serve(const httplib::Request& req, httplib::Response& res) {
    const_cast<httplib::Request&>(req).ranges.clear();
    std::string kind = req.matches[2], digest = req.matches[3];
    std::unique_lock lock(mu_);
    if (kind == "manifests" || kind == "referrers") {
      if (req.get_header_value("Authorization") != "Bearer alk_fakecredential") {
        res.status = 401;
        return;
      }
      if (kind == "referrers") {
        json list = {{"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", json::array()}};
        if (referrers_.contains(digest)) {
          list["manifests"].push_back(referrers_[digest]);
        }
        res.set_content(list.dump(), kIndexType);
        return;
      }
      if (!manifests_.contains(digest)) {
        res.status = 404;
        return;
      }
      res.set_content(manifests_[digest], "application/octet-stream");
      return;
    }
    if (!blobs_.contains(digest)) {
      res.status = 404;
      return;
    }
    if (!req.has_param("sig") &&
        req.get_header_value("Authorization") != "Bearer alk_fakecredential") {
      res.status = 403;
      return;
    }
    if (req.get_param_value("expires") == "0") {  // as the hub refuses a pre-signed URL too old
      res.status = 401;
      res.set_content(
          R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":"the pre-signed URL expired"}]})",
          "application/json");
      return;
    }
    ++blob_gets_;
    std::string bytes = blobs_[digest];
    if (corrupt_.contains(digest)) {
      for (char& c : bytes) {
        c = static_cast<char>(c ^ 0x5a);
      }
    }
    std::size_t offset = 0;
    if (req.has_header("Range")) {
      std::string range = req.get_header_value("Range");
      ranges_[digest].push_back(range);
      offset = std::stoull(range.substr(6));
      if (offset >= bytes.size()) {
        res.status = 416;
        return;
      }
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(offset) + "-" +
                                          std::to_string(bytes.size() - 1) + "/" +
                                          std::to_string(bytes.size()));
    }
    std::string body = bytes.substr(offset);
    bool stall = digest == stall_digest_ && !stalled_;
    if (stall) {
      stalled_ = true;
    }
    std::size_t stall_at = stall ? std::min(stall_after_, body.size()) : body.size();
    res.set_content_provider(
        body.size(), "application/octet-stream",
        [this, body, stall_at, digest](std::size_t off, std::size_t, httplib::DataSink& sink) {
          std::size_t end = off < stall_at ? stall_at : body.size();
          if (off >= stall_at) {
            std::unique_lock l(mu_);
            cv_.wait_for(l, std::chrono::seconds(60), [&] { return stall_digest_ != digest; });
            if (stall_at < body.size() && off == stall_at) {
              return false;  // the connection "breaks" after the stall
            }
          }
          std::size_t n = std::min<std::size_t>(end - off, 64 * 1024);
          if (!sink.write(body.data() + off, n)) {
            return false;
          }
          std::lock_guard l(mu_);
          served_[digest] += n;
          return true;
        });
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> registrations_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string repository_;
  std::map<std::string, std::string> manifests_, blobs_;
  std::map<std::string, json> referrers_;
  std::set<std::string> corrupt_;
  std::map<std::string, std::uint64_t> served_;
  std::map<std::string, std::vector<std::string>> ranges_;
  std::string stall_digest_;
  std::size_t stall_after_ = 0;
  bool stalled_ = false;
  int blob_gets_ = 0;
};

// `airlock-gateway serve` as a process in a temporary directory, with a Mosquitto and the fake hub
// (the gateway registers as gw1 with the token alkreg_good), and the operator's CLI and API.
class GatewayProcessTest : public ::testing::Test {
 protected:
  static constexpr auto kProcessWait = std::chrono::seconds(60);

  void TearDown() override { StopGateway(); }

  // A configuration with this policy block (indented key lines).
  std::string Config(const std::string& policy, const std::string& root = "root.json") {
    return "name: gw1\nhub:\n  url: " + hub_.url() + "\nroot: " + (dir_ / root).string() +
           "\ndata: " + (dir_ / "data").string() + "\nmqtt:\n  broker: " + broker_.url() +
           "\nhttp:\n  port: 0\ncache:\n  reserve_bytes: 0\npolicy:\n" + policy +
           "log_level: debug\n";
  }

  // Starts the gateway and waits until it serves (a failed assertion, with the log, otherwise).
  void StartGateway(const std::string& config, const std::string& token = "alkreg_good") {
    airlock::testing::WriteAll(dir_ / "gateway.yaml", config);
    std::vector<std::string> argv = {AIRLOCK_GATEWAY_BINARY, "serve", "--config",
                                     (dir_ / "gateway.yaml").string()};
    if (!token.empty()) {
      argv.push_back("--register-token");
      argv.push_back(token);
    }
    log_ = dir_ / ("gateway-" + std::to_string(++starts_) + ".log");
    pid_ = airlock::testing::SpawnDaemon(argv, log_);
    port_ = airlock::testing::WaitForServingPort(pid_, log_, kProcessWait);
    ASSERT_GT(port_, 0) << airlock::testing::ReadAll(log_);
  }
  void StopGateway(int sig = SIGTERM) { airlock::testing::StopDaemon(pid_, sig); }

  httplib::Client Api() { return httplib::Client("127.0.0.1", port_); }
  // A new operator token named olga.
  std::string OperatorToken() {
    airlock::testing::CommandResult made =
        airlock::testing::RunCommand({AIRLOCK_GATEWAY_BINARY, "token", "create", "--name", "olga",
                                      "--config", (dir_ / "gateway.yaml").string()});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    return made.out.substr(0, made.out.find('\n'));
  }
  // airlock-gateway ARGS --gateway (this one), with the operator token.
  airlock::testing::CommandResult Cli(const std::string& token, std::vector<std::string> args) {
    std::vector<std::string> argv = {"env", "AIRLOCK_GATEWAY_TOKEN=" + token,
                                     AIRLOCK_GATEWAY_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--gateway");
    argv.push_back("http://127.0.0.1:" + std::to_string(port_));
    return airlock::testing::RunCommand(argv, {}, 60);
  }

  airlock::testing::TempDir dir_;
  airlock::testing::MosquittoBroker broker_;
  FakeHub hub_;
  Trust trust_;
  pid_t pid_ = -1;
  int port_ = 0;
  int starts_ = 0;
  std::filesystem::path log_;
};

}  // namespace airlock::gateway
