// `airlock-gateway serve` as a process, against a real Mosquitto and a small fake hub (an
// httplib server in the test that registers gateways and serves manifests and blobs, and can
// stall, corrupt or count what it sends). The test is the hub's orchestrator: it publishes
// offers, grants and cancels with net::MqttClient and reads the gateway's answers.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "core/pki.hpp"
#include "delivery/protocol.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/serve_fixture.hpp"
#include "net/mqtt.hpp"
#include "support/daemon.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"
#include "trust/documents.hpp"

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;
using airlock::testing::AgentBinary;
using airlock::testing::CommandResult;
using airlock::testing::ReadAll;
using airlock::testing::RunCommand;
using airlock::testing::WaitUntil;
using airlock::testing::WriteAll;
using nlohmann::json;
constexpr auto kLong = std::chrono::seconds(60);

std::string Hex(std::size_t n, char c) { return std::string(n, c); }

class GatewayServe : public GatewayProcessTest {
 protected:
  void SetUp() override {
    std::string big(2 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
      big[i] = static_cast<char>((i * 2654435761u) >> 13);
    }
    package_ = MakePackage("models/vib", "1.0.0", {R"({"format":"onnx"})", big, "small layer"});
    big_ = Sha256Of(big);
    hub_.Add(package_);
    WriteAll(dir_ / "root.json", trust_.root_text);
    net::MqttOptions options;
    options.broker_url = broker_.url();
    options.client_id = "test-orchestrator";
    auto observer = net::MqttClient::Create(options);
    ASSERT_TRUE(observer);
    observer_ = std::move(*observer);
    ASSERT_TRUE(observer_->WaitConnected(kLong));
    ASSERT_TRUE(observer_->Subscribe("airlock/v1/gw/gw1/delivery/+/+", 1,
                                     [this](const net::MqttMessage& m) {
                                       std::lock_guard lock(mu_);
                                       received_.push_back(m);
                                     }));
  }
  delivery::DeliveryOffer Offer(const std::string& id, const std::string& model = "vib",
                                const std::string& version = "1.0.0",
                                std::vector<std::string> platforms = {"linux/amd64"},
                                std::uint64_t size = 0) {
    std::uint64_t total = size;
    if (total == 0) {
      for (const std::string& b : package_.blobs) {
        total += b.size();
      }
    }
    std::vector<delivery::PlatformSize> sizes;
    for (const auto& p : platforms) {
      sizes.push_back({p, total});
    }
    return delivery::DeliveryOffer{
        .envelope = Envelope(),
        .delivery_id = id,
        .deployment_id = "dep-0123456789abcdef",
        .model = model,
        .version = version,
        .release = trust_.Release(model, version, package_, platforms),
        .total_size = total,
        .platform_sizes = sizes,
        .expires = Now() + std::chrono::hours(1),
        .channel = std::nullopt,
        .rollout = nullptr};
  }
  // expired: URLs the fake hub refuses as expired, and an url_expires in the past.
  delivery::DeliveryGrant Grant(const std::string& id, std::uint32_t attempt,
                                bool expired = false) {
    delivery::DeliveryGrant g{.envelope = Envelope(),
                              .delivery_id = id,
                              .attempt = attempt,
                              .url_expires = Now() + (expired ? -std::chrono::hours(1)
                                                              : std::chrono::hours(1)),
                              .blobs = {}};
    // Config and layers, as the orchestrator pre-signs them (the referrer's blobs are fetched
    // with the gateway's credential).
    for (std::size_t i = 0; i + 2 < package_.blobs.size(); ++i) {
      Digest d = Sha256Of(package_.blobs[i]);
      g.blobs.push_back({.digest = d,
                         .size = package_.blobs[i].size(),
                         .media_type = "application/octet-stream",
                         .url = "/v2/models/vib/blobs/" + d.ToString() +
                                "?expires=" + (expired ? "0" : "1") + "&sig=ab"});
    }
    return g;
  }
  delivery::Envelope Envelope() {
    return {.message_id = "m" + std::to_string(++messages_), .sent_at = Now()};
  }
  void Publish(delivery::TopicKind kind, const std::string& id, const json& body) {
    auto topics = delivery::Topics::Create().value();
    std::string topic = topics.Topic(kind, "gw1", kind == delivery::TopicKind::kOffer ? "" : id).value();
    ASSERT_TRUE(observer_->Publish(topic, body.dump()));
  }
  // Publishes the offer again every few seconds (the gateway may still be subscribing) until an
  // answer about it arrives.
  bool OfferUntilAnswered(const delivery::DeliveryOffer& offer) {
    for (int i = 0; i < 20; ++i) {
      Publish(delivery::TopicKind::kOffer, offer.delivery_id, offer.ToJson());
      if (WaitUntil([&] { return !Answers(offer.delivery_id).empty(); },
                    std::chrono::seconds(3))) {
        return true;
      }
    }
    return false;
  }
  // The (kind, payload) of each message the gateway sent about id.
  std::vector<std::pair<std::string, json>> Answers(const std::string& id) {
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::string, json>> out;
    for (const auto& m : received_) {
      std::string kind = m.topic.substr(m.topic.rfind('/') + 1);
      if (m.topic.find("/" + id + "/") != std::string::npos &&
          (kind == "ready" || kind == "reject" || kind == "status")) {
        out.emplace_back(kind, json::parse(m.payload));
      }
    }
    return out;
  }
  bool HasStatus(const std::string& id, const std::string& state, json* out = nullptr) {
    for (const auto& [kind, j] : Answers(id)) {
      if (kind == "status" && j["state"] == state) {
        if (out) {
          *out = j;
        }
        return true;
      }
    }
    return false;
  }
  std::vector<std::string> Files(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
      if (e.is_regular_file()) {
        out.push_back(fs::relative(e.path(), dir).string());
      }
    }
    return out;
  }
  std::uint64_t UploadBytes() {
    std::uint64_t n = 0;
    std::error_code ec;
    // The gateway removes uploads while this looks: a file that vanished counts nothing.
    for (auto it = fs::recursive_directory_iterator(dir_ / "data/cache/uploads", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code gone;
      if (it->is_regular_file(gone)) {
        std::uint64_t size = it->file_size(gone);
        n += gone ? 0 : size;
      }
    }
    return n;
  }

  TestPackage package_;
  Digest big_ = Sha256Of("");
  std::unique_ptr<net::MqttClient> observer_;
  std::mutex mu_;
  std::vector<net::MqttMessage> received_;
  int messages_ = 0;
};

const std::string kAuto = "  offers: auto\n  rollout_approval: required\n";
const std::string kId1 = "dlv-" + Hex(32, 'a');
const std::string kId2 = "dlv-" + Hex(32, 'b');
const std::string kId3 = "dlv-" + Hex(32, 'c');

TEST_F(GatewayServe, DeliversAPackageAndServesItToDevicesOnce) {
  StartGateway(Config(kAuto));
  EXPECT_EQ(hub_.registrations(), 1);
  EXPECT_EQ(fs::status(dir_ / "data/hub-credential").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto offer = Offer(kId1);
  ASSERT_TRUE(OfferUntilAnswered(offer)) << ReadAll(log_);
  auto answers = Answers(kId1);
  ASSERT_EQ(answers[0].first, "ready") << answers[0].second;
  EXPECT_EQ(answers[0].second["platforms"], json::array({"linux/amd64"}));
  EXPECT_GT(answers[0].second["free_bytes"].get<std::uint64_t>(), 0u);

  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  json available;
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "available", &available); }, kLong))
      << ReadAll(log_);
  EXPECT_EQ(available["attempt"], 1);
  EXPECT_EQ(available["bytes_done"], available["bytes_total"]);
  EXPECT_TRUE(HasStatus(kId1, "downloading"));
  int gets = hub_.blob_gets();

  // Served to devices on /v2/, with the release referrer.
  auto api = Api();
  auto index = api.Get("/v2/models/vib/manifests/1.0.0");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_EQ(index->body, package_.index);
  auto blob = api.Get("/v2/models/vib/blobs/" + big_.ToString());
  ASSERT_TRUE(blob);
  EXPECT_EQ(Sha256Of(blob->body), big_);
  auto refs = api.Get("/v2/models/vib/referrers/" + Sha256Of(package_.index).ToString());
  ASSERT_TRUE(refs);
  EXPECT_NE(refs->body.find(kReleaseType), std::string::npos) << refs->body;

  // A repeated grant downloads nothing again; a repeated offer is answered available.
  std::size_t before = Answers(kId1).size();
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  Publish(delivery::TopicKind::kOffer, kId1, Offer(kId1).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return Answers(kId1).size() > before; }, kLong));
  EXPECT_EQ(Answers(kId1).back().first, "status");
  EXPECT_EQ(Answers(kId1).back().second["state"], "available");
  EXPECT_EQ(hub_.blob_gets(), gets);

  // Another delivery of the same package: available at once, attempt 0, nothing fetched.
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId2)));
  json again;
  ASSERT_TRUE(HasStatus(kId2, "available", &again));
  EXPECT_EQ(again["attempt"], 0);
  EXPECT_EQ(hub_.blob_gets(), gets);

  // Restarted, it does not register again.
  StopGateway();
  StartGateway(Config(kAuto), "");
  EXPECT_EQ(hub_.registrations(), 1);
}

TEST_F(GatewayServe, RefusedRegistrationTokenIsAClearError) {
  WriteAll(dir_ / "gateway.yaml", Config(kAuto));
  CommandResult r = RunCommand({AIRLOCK_GATEWAY_BINARY, "serve", "--config",
                                (dir_ / "gateway.yaml").string(), "--register-token",
                                "alkreg_used"},
                               {}, 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the hub refused the registration: the registration token was used "
                       "already"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "data/hub-credential"));
  CommandResult none = RunCommand(
      {AIRLOCK_GATEWAY_BINARY, "serve", "--config", (dir_ / "gateway.yaml").string()}, {}, 60);
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.err.find("not registered with the hub yet"), std::string::npos) << none.err;
}

TEST_F(GatewayServe, ARootThatDoesNotSignTheReleaseIsRejectedWithVerification) {
  Trust other;
  WriteAll(dir_ / "other-root.json", other.root_text);
  StartGateway(Config(kAuto, "other-root.json"));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1))) << ReadAll(log_);
  auto answers = Answers(kId1);
  ASSERT_EQ(answers[0].first, "reject");
  EXPECT_EQ(answers[0].second["reason"], "verification");
  EXPECT_EQ(hub_.blob_gets(), 0);
}

TEST_F(GatewayServe, SitePolicyRejectsWithItsReasons) {
  StartGateway(Config("  allowed_models: [vib, vib2]\n  platforms: [linux/amd64]\n"
                      "  max_package_bytes: 1000000\n"));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1, "other")));
  EXPECT_EQ(Answers(kId1)[0].second["reason"], "model-not-allowed");
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId2, "vib2", "1.0.0", {"linux/arm64"})));
  EXPECT_EQ(Answers(kId2)[0].second["reason"], "unsupported-platform");
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId3)));  // 2 MiB > 1 MB
  EXPECT_EQ(Answers(kId3)[0].second["reason"], "too-large");
  EXPECT_NE(Answers(kId3)[0].second["message"].get<std::string>().find("at most"),
            std::string::npos);
}

TEST_F(GatewayServe, HeldOffersWaitForTheOperator) {
  StartGateway(Config("  offers: operator\n  rollout_approval: required\n"));
  std::string token = OperatorToken();
  ASSERT_TRUE(token.starts_with("alkop_")) << token;
  auto api = Api();
  // Without a token (or with a wrong one) the API refuses.
  auto anonymous = api.Get("/api/v1/approvals");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto wrong = api.Get("/api/v1/approvals", {{"Authorization", "Bearer alkop_nope"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_NE(Cli("alkop_nope", {"approvals", "ls"}).exit_code, 0);
  // The registry stays read-only.
  auto put = api.Put("/v2/models/vib/manifests/x", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);

  httplib::Headers auth = {{"Authorization", "Bearer " + token}};
  auto held = [&](const std::string& id) {
    auto r = api.Get("/api/v1/approvals/" + id, auth);
    return r && r->status == 200 && json::parse(r->body)["state"] == "held-offer";
  };
  for (const auto& id : {kId1, kId2}) {
    for (int i = 0; i < 20 && !held(id); ++i) {
      Publish(delivery::TopicKind::kOffer, id, Offer(id).ToJson());
      WaitUntil([&] { return held(id); }, std::chrono::seconds(3));
    }
    ASSERT_TRUE(held(id)) << ReadAll(log_);
  }
  // Held: the hub hears so (a status "held", nothing granted yet), and nothing else.
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "held"); }, kLong));
  for (const auto& [kind, j] : Answers(kId1)) {
    EXPECT_EQ(kind, "status");
    EXPECT_EQ(j["state"], "held");
    EXPECT_EQ(j["attempt"], 0);
  }
  auto answered = [&](const std::string& id, const std::string& kind) -> std::optional<json> {
    for (const auto& [k, j] : Answers(id)) {
      if (k == kind) {
        return j;
      }
    }
    return std::nullopt;
  };
  CommandResult ls = Cli(token, {"approvals", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(kId1), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("held-offer"), std::string::npos) << ls.out;
  CommandResult show = Cli(token, {"approvals", "show", kId1});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find(trust_.publisher.id()), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("[\"publisher\"]"), std::string::npos) << show.out;

  // Approved → ready; rejected → reject "operator".
  CommandResult approved = Cli(token, {"approvals", "approve", kId1, "--comment", "line 3 ok"});
  ASSERT_EQ(approved.exit_code, 0) << approved.err;
  ASSERT_TRUE(WaitUntil([&] { return answered(kId1, "ready").has_value(); }, kLong));
  auto rejected = api.Post("/api/v1/approvals/" + kId2 + "/reject", auth,
                           R"({"comment":"not during the audit"})", "application/json");
  ASSERT_TRUE(rejected);
  EXPECT_EQ(rejected->status, 200) << rejected->body;
  ASSERT_TRUE(WaitUntil([&] { return answered(kId2, "reject").has_value(); }, kLong));
  EXPECT_EQ((*answered(kId2, "reject"))["reason"], "operator");
  EXPECT_FALSE(answered(kId2, "ready"));
  // Deciding twice is refused.
  EXPECT_NE(Cli(token, {"approvals", "approve", kId2}).exit_code, 0);

  // The approved one downloads and then waits for the rollout approval.
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "available"); }, kLong)) << ReadAll(log_);
  auto after = api.Get("/api/v1/approvals/" + kId1, auth);
  ASSERT_TRUE(after);
  EXPECT_EQ(json::parse(after->body)["state"], "awaiting-approval") << after->body;
  ASSERT_EQ(Cli(token, {"approvals", "approve", kId1}).exit_code, 0);
  after = api.Get("/api/v1/approvals/" + kId1, auth);
  EXPECT_EQ(json::parse(after->body)["state"], "approved") << after->body;
  EXPECT_EQ(json::parse(after->body)["decided_by"], "olga");
}

TEST_F(GatewayServe, ADeviceEnrollsWithAOneTimeTokenAndGetsAnIdentity) {
  StartGateway(Config(kAuto));
  std::string op = OperatorToken();
  CommandResult made = Cli(op, {"devices", "token", "--label", "line=3", "--expires", "1h"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string token = made.out.substr(0, made.out.find('\n'));
  ASSERT_TRUE(token.starts_with("alken_")) << made.out;
  EXPECT_NE(made.err.find("/api/v1/devices/enroll"), std::string::npos) << made.err;

  auto key = pki::MakeKey();
  ASSERT_TRUE(key);
  auto csr = pki::MakeCsr(*key, "camera-7");
  ASSERT_TRUE(csr);
  auto api = Api();
  json request = {{"token", token}, {"csr", *csr}, {"labels", {{"line", "9"}, {"cam", "top"}}}};
  auto enrolled = api.Post("/api/v1/devices/enroll", request.dump(), "application/json");
  ASSERT_TRUE(enrolled);
  ASSERT_EQ(enrolled->status, 201) << enrolled->body;
  json identity = json::parse(enrolled->body);
  std::string id = identity["device_id"];
  EXPECT_TRUE(std::regex_match(id, std::regex("dev-[0-9a-f]{16}"))) << id;
  // The operator's label wins over the device's.
  EXPECT_EQ(identity["labels"], (json{{"cam", "top"}, {"line", "3"}}));
  EXPECT_EQ(identity["mqtt"]["username"], id);
  EXPECT_EQ(identity["mqtt"]["password"].get<std::string>().size(), 32u);
  EXPECT_EQ(identity["root"]["signed"]["_type"], "root") << identity["root"].dump();
  EXPECT_TRUE(identity["directive_key"].get<std::string>().starts_with("-----BEGIN PUBLIC KEY"));
  // The certificate chains to the gateway's CA and names the device.
  WriteAll(dir_ / "device.pem", identity["certificate"].get<std::string>());
  WriteAll(dir_ / "ca.pem", identity["ca"].get<std::string>());
  CommandResult verified = RunCommand({"openssl", "verify", "-purpose", "sslclient", "-CAfile",
                                       (dir_ / "ca.pem").string(), (dir_ / "device.pem").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(fs::status(dir_ / "data/devices/ca.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // One use only; a request without a valid CSR is refused.
  auto again = api.Post("/api/v1/devices/enroll", request.dump(), "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 403);
  EXPECT_NE(again->body.find("used already"), std::string::npos) << again->body;
  CommandResult second = Cli(op, {"devices", "token", "--json"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  json bad = {{"token", json::parse(second.out)["token"]}, {"csr", "not a CSR"}};
  auto refused = api.Post("/api/v1/devices/enroll", bad.dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("not a PEM CSR"), std::string::npos) << refused->body;

  // The operator lists and revokes it; without an operator token nothing is shown.
  CommandResult ls = Cli(op, {"devices", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(id), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("cam=top,line=3"), std::string::npos) << ls.out;
  EXPECT_EQ(api.Get("/api/v1/devices")->status, 401);
  CommandResult revoked = Cli(op, {"devices", "revoke", id});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_NE(revoked.out.find("revoked"), std::string::npos) << revoked.out;
  EXPECT_NE(Cli(op, {"devices", "revoke", "dev-ffffffffffffffff"}).exit_code, 0);
}

TEST_F(GatewayServe, AnAgentEnrollsKeepsItsIdentityAndIsRelabelled) {
  StartGateway(Config(kAuto));
  std::string op = OperatorToken();
  std::string url = "http://127.0.0.1:" + std::to_string(port_);
  auto token = [&] {
    CommandResult made = Cli(op, {"devices", "token", "--label", "site=plant-7"});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    return made.out.substr(0, made.out.find('\n'));
  };
  fs::path state = dir_ / "agent";
  auto enroll = [&](const std::string& t, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {AgentBinary().string(), "--store", state.string(), "enroll",
                                     "--gateway", url, "--token", t, "--label", "line=3"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, {}, 60);
  };
  std::string first = token();
  CommandResult enrolled = enroll(first);
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.out << enrolled.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(enrolled.out, m, std::regex("enrolled as (dev-[0-9a-f]{16})")))
      << enrolled.out;
  std::string id = m[1];
  EXPECT_NE(enrolled.out.find("line=3,site=plant-7"), std::string::npos) << enrolled.out;
  fs::path identity = state / "identity";
  for (const char* f : {"key.pem", "device.json"}) {
    EXPECT_EQ(fs::status(identity / f).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write)
        << f;
  }
  json device = json::parse(ReadAll(identity / "device.json"));
  EXPECT_EQ(device["device_id"], id);
  EXPECT_EQ(device["gateway"], url);
  EXPECT_EQ(device["mqtt"]["username"], id);
  EXPECT_EQ(json::parse(ReadAll(identity / "root.json"))["signed"]["_type"], "root");
  // The key it kept is the one its certificate certifies.
  CommandResult cert_key = RunCommand(
      {"openssl", "x509", "-in", (identity / "cert.pem").string(), "-noout", "-pubkey"});
  CommandResult own_key =
      RunCommand({"openssl", "pkey", "-in", (identity / "key.pem").string(), "-pubout"});
  EXPECT_EQ(cert_key.out, own_key.out);
  CommandResult chain = RunCommand({"openssl", "verify", "-CAfile", (identity / "ca.pem").string(),
                                    (identity / "cert.pem").string()});
  EXPECT_EQ(chain.exit_code, 0) << chain.out << chain.err;

  // A second enrollment over it is refused and changes nothing; a used token is refused with the
  // gateway's reason; --force with a new token replaces the identity.
  CommandResult again = enroll(token());
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already enrolled as " + id), std::string::npos) << again.err;
  EXPECT_EQ(json::parse(ReadAll(identity / "device.json"))["device_id"], id);
  CommandResult used = enroll(first, {"--force"});
  EXPECT_NE(used.exit_code, 0);
  EXPECT_NE(used.err.find("used already"), std::string::npos) << used.err;
  EXPECT_EQ(json::parse(ReadAll(identity / "device.json"))["device_id"], id);
  WriteAll(dir_ / "other-root.json", Trust().root_text);
  CommandResult wrong_root =
      enroll(token(), {"--force", "--root", (dir_ / "other-root.json").string()});
  EXPECT_NE(wrong_root.exit_code, 0);
  EXPECT_NE(wrong_root.err.find("pins another root"), std::string::npos) << wrong_root.err;
  EXPECT_EQ(json::parse(ReadAll(identity / "device.json"))["device_id"], id);
  CommandResult replaced = enroll(token(), {"--force"});
  ASSERT_EQ(replaced.exit_code, 0) << replaced.err;
  EXPECT_EQ(replaced.out.find(id), std::string::npos) << replaced.out;
  EXPECT_FALSE(fs::exists(state / "identity.new"));

  // The operator relabels it: KEY=VALUE sets, KEY- removes.
  CommandResult relabelled = Cli(op, {"devices", "label", id, "line=4", "site-", "cam=top"});
  ASSERT_EQ(relabelled.exit_code, 0) << relabelled.err << ReadAll(log_);
  EXPECT_NE(relabelled.out.find("cam=top,line=4"), std::string::npos) << relabelled.out;
  EXPECT_NE(Cli(op, {"devices", "label", id, "bad label=x"}).exit_code, 0);
  EXPECT_NE(Cli(op, {"devices", "label", "dev-ffffffffffffffff", "a=b"}).exit_code, 0);
  CommandResult nothing = RunCommand({AgentBinary().string(), "--store", (dir_ / "none").string(),
                                      "enroll", "--gateway", "http://127.0.0.1:1", "--token", "x"},
                                     {}, 60);
  EXPECT_NE(nothing.exit_code, 0);
  EXPECT_NE(nothing.err.find("cannot reach the gateway"), std::string::npos) << nothing.err;
}

TEST_F(GatewayServe, ABlobWithWrongBytesIsRefusedAndNeverCached) {
  StartGateway(Config(kAuto));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1)));
  hub_.Corrupt(big_, true);
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  json failed;
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "failed", &failed); }, kLong))
      << ReadAll(log_);
  EXPECT_EQ(failed["error"]["code"], "digest-mismatch") << failed;
  for (const std::string& f : Files(dir_ / "data/cache/blobs")) {
    EXPECT_EQ(f.find(big_.hex()), std::string::npos) << f;
  }
  EXPECT_EQ(UploadBytes(), 0u);
  // The next grant, with good bytes, succeeds.
  hub_.Corrupt(big_, false);
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 2).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "available"); }, kLong)) << ReadAll(log_);
}

TEST_F(GatewayServe, AGatewayKilledMidDownloadResumesWithRange) {
  StartGateway(Config(kAuto));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1)));
  const std::uint64_t size = 2 << 20;
  hub_.StallAfter(big_, size / 2);
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return UploadBytes() >= size / 2; }, kLong)) << ReadAll(log_);
  StopGateway(SIGKILL);
  hub_.ReleaseStall();
  fs::path first_log = log_;
  StartGateway(Config(kAuto), "");
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "available"); }, kLong))
      << ReadAll(first_log) << "\n---- restarted ----\n" << ReadAll(log_);
  auto ranges = hub_.ranges(big_);
  ASSERT_FALSE(ranges.empty());
  EXPECT_EQ(ranges.back(), "bytes=" + std::to_string(size / 2) + "-");
  // Only what had not arrived was sent again.
  EXPECT_EQ(hub_.served(big_), size);
}

TEST_F(GatewayServe, CancelStopsTheDownloadAndRemovesItsPartialData) {
  StartGateway(Config(kAuto));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1)));
  hub_.StallAfter(big_, (2 << 20) / 2);
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return UploadBytes() > 0; }, kLong)) << ReadAll(log_);
  Publish(delivery::TopicKind::kCancel, kId1,
          delivery::DeliveryCancel{.envelope = Envelope(), .delivery_id = kId1, .reason = "x"}
              .ToJson());
  ASSERT_TRUE(WaitUntil([&] { return UploadBytes() == 0; }, kLong)) << ReadAll(log_);
  hub_.ReleaseStall();
  // A status the download sent just before the cancel may still be on its way: the answer to
  // another offer, sent after it by the same client, arrives after it (MQTT keeps one client's
  // order).
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId3)));
  std::size_t answers = Answers(kId1).size();
  // A later grant is ignored: nothing more is sent, nothing downloaded.
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 2).ToJson());
  std::string token = OperatorToken();
  auto api = Api();
  auto r = api.Get("/api/v1/approvals/" + kId1, {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["delivery"], "cancelled") << r->body;
  // The grant after the cancel went through the same queue; once a new offer is answered, it
  // has been handled.
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId2)));
  EXPECT_EQ(Answers(kId1).size(), answers);
  EXPECT_EQ(UploadBytes(), 0u);
}

TEST_F(GatewayServe, AnExpiredUrlIsReportedAsSoAndTheNextGrantFinishes) {
  StartGateway(Config(kAuto));
  ASSERT_TRUE(OfferUntilAnswered(Offer(kId1)));
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 1, /*expired=*/true).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "failed"); }, kLong)) << ReadAll(log_);
  json failed;
  for (const auto& [kind, body] : Answers(kId1)) {
    if (kind == "status" && body.value("state", "") == "failed") {
      failed = body;
    }
  }
  EXPECT_EQ(failed["error"]["code"], "url-expired") << failed.dump();
  EXPECT_EQ(failed["attempt"], 1);
  Publish(delivery::TopicKind::kGrant, kId1, Grant(kId1, 2).ToJson());
  ASSERT_TRUE(WaitUntil([&] { return HasStatus(kId1, "available"); }, kLong)) << ReadAll(log_);
}

}  // namespace
}  // namespace airlock::gateway
