// HubClient against a small HTTP server standing in for airlock-hub's /api/v1/: what it sends
// (method, path, bearer token, JSON body), how it reads answers, and that refusals carry the
// hub's reason and status but never the token. The real hub is in tests/hub/registry_cli_test.cpp.

#include "net/hub_client.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <thread>

#include "support/mosquitto.hpp"  // WaitUntil

namespace airlock::net {
namespace {

using nlohmann::json;

constexpr char kToken[] = "alk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class FakeHub {
 public:
  FakeHub() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    if (!airlock::testing::WaitUntil([this] { return server_.is_running(); })) {
      ADD_FAILURE() << "the fake hub did not start";
    }
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }
  httplib::Server& server() { return server_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  struct Seen {
    std::string method, path, authorization, body, content_type;
  };
  void Record(const httplib::Request& r) {
    std::lock_guard lk(mu_);
    seen_.push_back({r.method, r.path + (r.params.empty() ? "" : "?" + Query(r)),
                     r.get_header_value("Authorization"), r.body,
                     r.get_header_value("Content-Type")});
  }
  std::vector<Seen> seen() {
    std::lock_guard lk(mu_);
    return seen_;
  }

 private:
  static std::string Query(const httplib::Request& r) {
    std::string q;
    for (const auto& [k, v] : r.params) {
      q += (q.empty() ? "" : "&") + k + "=" + v;
    }
    return q;
  }
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

std::unique_ptr<HubClient> Connect(const std::string& url, const std::string& token = kToken) {
  auto c = HubClient::Create({.url = url, .token = token, .ca_file = ""});
  EXPECT_TRUE(c) << c.error().ToString();
  return c ? std::move(*c) : nullptr;
}

TEST(ParseHubUrl, TakesSchemeHostAndPort) {
  auto a = ParseHubUrl("http://127.0.0.1:7400/");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->base_url, "http://127.0.0.1:7400");
  EXPECT_EQ(a->registry, "127.0.0.1:7400");
  EXPECT_EQ(ParseHubUrl("localhost:7400")->base_url, "http://localhost:7400");
  EXPECT_EQ(ParseHubUrl("hub.example.com")->base_url, "https://hub.example.com");
  EXPECT_EQ(ParseHubUrl("http://hub.example.com:7400")->base_url, "http://hub.example.com:7400");
  // A hub on this machine with a certificate (airlock ca): https when the URL says so.
  EXPECT_EQ(ParseHubUrl("https://127.0.0.1:7400")->base_url, "https://127.0.0.1:7400");
  for (const char* bad :
       {"", "ftp://h", "http://h/api", "http://user@h"}) {
    auto r = ParseHubUrl(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message().find("http://127.0.0.1:7400"), std::string::npos);
    }
  }
}

TEST(HubClient, SendsTheTokenAndReadsTheModels) {
  FakeHub hub;
  hub.server().Get("/api/v1/models", [&](const httplib::Request& r, httplib::Response& w) {
    hub.Record(r);
    w.set_content(R"({"models":[{"name":"vib","versions":1}]})", "application/json");
  });
  auto c = Connect(hub.url());
  auto models = c->ListModels("bearing pump");
  ASSERT_TRUE(models) << models.error().ToString();
  EXPECT_EQ((*models)["models"][0]["name"], "vib");
  auto seen = hub.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, "/api/v1/models?q=bearing pump");  // decoded by the server
  EXPECT_EQ(seen[0].authorization, std::string("Bearer ") + kToken);
}

TEST(HubClient, ARefusalCarriesTheHubsReasonAndStatusButNotTheToken) {
  FakeHub hub;
  hub.server().Post("/api/v1/deployments", [&](const httplib::Request& r, httplib::Response& w) {
    hub.Record(r);
    w.status = 403;
    w.set_content(
        R"({"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"the token line3 has role viewer; deploy needs release-manager or higher"}]})",
        "application/json");
  });
  auto c = Connect(hub.url());
  auto d = c->CreateDeployment({{"model", "vib"}, {"channel", "production"}});
  ASSERT_FALSE(d);
  std::string msg = d.error().ToString();
  EXPECT_NE(msg.find("HTTP 403"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the token line3 has role viewer; deploy needs release-manager"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("ask the hub's administrator"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(kToken), std::string::npos);
  ASSERT_EQ(hub.seen().size(), 1u);
  EXPECT_EQ(json::parse(hub.seen()[0].body)["model"], "vib");
  EXPECT_EQ(hub.seen()[0].content_type, "application/json");
}

TEST(HubClient, StatusesMapToErrorCodes) {
  FakeHub hub;
  int status = 0;
  hub.server().Get(R"(/api/v1/deployments/(.*))", [&](const httplib::Request&,
                                                      httplib::Response& w) {
    w.status = status;
    w.set_content(R"({"errors":[{"code":"X","message":"the message only"}]})", "application/json");
  });
  auto c = Connect(hub.url());
  for (auto [s, code] : std::vector<std::pair<int, ErrorCode>>{{400, ErrorCode::kInvalidArgument},
                                                               {401, ErrorCode::kInvalidArgument},
                                                               {404, ErrorCode::kNotFound},
                                                               {409, ErrorCode::kAlreadyExists},
                                                               {422, ErrorCode::kVerification},
                                                               {500, ErrorCode::kUnavailable}}) {
    status = s;
    auto d = c->GetDeployment("d-1");
    ASSERT_FALSE(d) << s;
    EXPECT_EQ(d.error().code(), code) << s;
    EXPECT_NE(d.error().ToString().find("HTTP " + std::to_string(s) + ", X: the message only"),
              std::string::npos)
        << d.error().ToString();
  }
  status = 401;
  EXPECT_NE(c->GetDeployment("d-1").error().ToString().find("airlock login"), std::string::npos);
}

TEST(HubClient, ReadsChannelStatesAndPutsSignedDocuments) {
  FakeHub hub;
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key);
  trust::Channel channel;
  channel.model = "vib";
  channel.name = "production";
  channel.version = 2;
  channel.expires = TimePoint(std::chrono::seconds(1900000000));
  channel.releases = {{.version = "1.0.0", .release_counter = 1, .release = Sha256Of("r")}};
  trust::SignedDocument doc = trust::SignedDocument::Wrap(channel.ToJson());
  ASSERT_TRUE(doc.Sign(*key));
  std::string text = doc.Serialize().value();
  hub.server().Get("/api/v1/models/vib/channels/production",
                   [&](const httplib::Request&, httplib::Response& w) {
                     json answer = {{"model", "vib"},
                                    {"channel", "production"},
                                    {"signing_role", "release-manager"},
                                    {"threshold", 2},
                                    {"current", nullptr},
                                    {"pending",
                                     {{"document", json::parse(text)},
                                      {"version", 2},
                                      {"signatures", 1},
                                      {"proposed_by", "alice"},
                                      {"proposed_at", "2026-11-30T12:00:00Z"}}},
                                    {"history", json::array()}};
                     w.set_content(answer.dump(), "application/json");
                   });
  hub.server().Put("/api/v1/models/vib/channels/production", [&](const httplib::Request& r,
                                                                 httplib::Response& w) {
    hub.Record(r);
    w.status = 202;
    w.set_content(R"({"state":"pending","version":2,"signatures":1,"threshold":2})",
                  "application/json");
  });
  auto c = Connect(hub.url());
  auto state = c->GetChannel("vib", "production");
  ASSERT_TRUE(state) << state.error().ToString();
  EXPECT_FALSE(state->current);
  ASSERT_TRUE(state->pending);
  EXPECT_EQ(state->threshold, 2);
  EXPECT_EQ(state->pending->version, 2u);
  EXPECT_EQ(state->pending->by, "alice");
  EXPECT_EQ(state->pending->channel.releases[0].version, "1.0.0");
  EXPECT_EQ(state->pending->document.signatures()[0].keyid, key->id());

  auto put = c->PutChannel("vib", "production", state->pending->document);
  ASSERT_TRUE(put) << put.error().ToString();
  EXPECT_FALSE(put->current);
  EXPECT_EQ(put->signatures, 1);
  EXPECT_EQ(put->threshold, 2);
  ASSERT_EQ(hub.seen().size(), 1u);
  EXPECT_EQ(hub.seen()[0].body, text);  // the canonical document, signatures and all
}

TEST(HubClient, AnUnreachableHubSaysSo) {
  FakeHub hub;
  std::string url = hub.url();
  hub.server().stop();
  auto c = Connect(url);
  auto models = c->ListModels();
  ASSERT_FALSE(models);
  EXPECT_EQ(models.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(models.error().ToString().find("cannot reach the hub at " + url), std::string::npos)
      << models.error().ToString();
}

TEST(HubClient, AnAnswerThatIsNotJsonIsReportedAsSuch) {
  FakeHub hub;
  hub.server().Get("/api/v1/gateways", [](const httplib::Request&, httplib::Response& w) {
    w.set_content("<html>a proxy</html>", "text/html");
  });
  auto c = Connect(hub.url());
  auto g = c->ListGateways();
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().ToString().find("not JSON (is " + hub.url() + " an airlock-hub?)"),
            std::string::npos);
}

}  // namespace
}  // namespace airlock::net
