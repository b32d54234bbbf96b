// The registry REST API (/api/v1/models…, deployments, gateways) on SQLite and on PostgreSQL, with
// packages and release referrers pushed over OCI as `airlock push` pushes them: versions with
// lineage, releases verified against the hub's root, channels promoted by a 2-of-3 threshold of
// release managers one signature at a time, deployments with their history, gateway registration
// with a one-time token and inventory reports — and the refusals: bad signatures, unknown
// releases, older channel versions, re-pushed released versions, used tokens.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/fs.hpp"
#include "hub/registry_api.hpp"
#include "hub_fixture.hpp"
#include "trust/documents.hpp"
#include "trust/root_store.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

std::vector<PrivateKey> Keys(int n) {
  std::vector<PrivateKey> keys;
  for (int i = 0; i < n; ++i) {
    keys.push_back(PrivateKey::Generate().value());
  }
  return keys;
}

// Sends request on a new connection to 127.0.0.1:port and returns the response (headers and a
// Content-Length body).
std::string Exchange(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buf[4096];
    auto complete = [&] {
      std::size_t end = out.find("\r\n\r\n");
      std::size_t length = out.find("Content-Length: ");
      return end != std::string::npos && length != std::string::npos &&
             out.size() >= end + 4 + std::stoul(out.substr(length + 16));
    };
    for (ssize_t n; !complete() && (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) {
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

class RegistryApiTest : public HubFixture {
 protected:
  std::vector<PrivateKey> root_keys_ = Keys(1), publishers_ = Keys(1), managers_ = Keys(3);

  void SetUp() override {
    trust::Root root;
    root.version = 1;
    root.expires = Now() + std::chrono::hours(24 * 365);
    auto role = [&](std::string_view name, const std::vector<PrivateKey>& keys, int threshold) {
      trust::RoleSpec spec;
      for (const auto& k : keys) {
        root.keys.emplace(k.id(), k.public_key());
        spec.keyids.push_back(k.id());
      }
      spec.threshold = threshold;
      root.roles.emplace(std::string(name), spec);
    };
    role(trust::kRoleRoot, root_keys_, 1);
    role(trust::kRolePublisher, publishers_, 1);
    role(trust::kRoleReleaseManager, managers_, 2);
    auto doc = trust::SignedDocument::Wrap(root.ToJson());
    ASSERT_TRUE(doc.Sign(root_keys_[0]));
    root_path_ = dir_ / "root.json";
    ASSERT_TRUE(WriteFileAtomic(root_path_, doc.Serialize().value()));
    HubFixture::SetUp();
  }

  TimePoint Now() const { return clock_.Now(); }

  // Pushes a package index for version (one linux/amd64 variant) as `airlock push` would;
  // returns the index's digest and size.
  std::pair<Digest, std::size_t> PushPackage(const std::string& version,
                                             const std::string& weights = "weights") {
    std::string config =
        json{{"descriptor", {{"name", "demo"}, {"version", version},
                             {"description", "Finds scratches"}}},
             {"config", {{"format", "onnx"}}}}
            .dump();
    std::string manifest = PushImage("models/demo", "sha256-variant-" + version, config,
                                     {weights + version},
                                     {{"artifactType", "application/vnd.cncf.model.manifest.v1+json"}});
    // PushImage tagged the variant; the index is what names the version.
    json index = {{"schemaVersion", 2},
                  {"mediaType", kIndexType},
                  {"artifactType", "application/vnd.cncf.model.manifest.v1+json"},
                  {"manifests", json::array({Describe(kManifestType, manifest)})},
                  {"annotations",
                   {{"ai.airlock.model", "demo"},
                    {"org.opencontainers.image.version", version},
                    {"ai.airlock.lineage.training-run", "run-" + version},
                    {"ai.airlock.lineage.dataset-digest", "sha256:" + std::string(64, 'd')},
                    {"ai.airlock.lineage.metrics", R"({"accuracy":0.98})"}}}};
    index["manifests"][0]["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
    std::string bytes = index.dump();
    auto r = PutManifest("models/demo", version, bytes, kIndexType);
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no response");
    return {Sha256Of(bytes), bytes.size()};
  }

  trust::SignedDocument Release(const std::string& version, std::uint64_t counter,
                                std::pair<Digest, std::size_t> index) {
    trust::Release r;
    r.model = "demo";
    r.version = version;
    r.release_counter = counter;
    r.index_digest = index.first;
    r.index_size = index.second;
    r.index_media_type = kIndexType;
    r.platforms = {"linux/amd64"};
    r.created = Now();
    r.expires = Now() + std::chrono::hours(24 * 90);
    auto doc = trust::SignedDocument::Wrap(r.ToJson());
    EXPECT_TRUE(doc.Sign(publishers_[0]));
    return doc;
  }
  httplib::Result PostRelease(const trust::SignedDocument& doc) {
    return c().Post("/api/v1/models/demo/releases", doc.Serialize().value(), "application/json");
  }

  // The next production channel document listing versions (first = current), unsigned.
  trust::SignedDocument ChannelDoc(std::uint64_t version,
                                   const std::vector<std::string>& versions) {
    auto releases = json::parse(c().Get("/api/v1/models/demo/releases")->body)["releases"];
    trust::Channel ch;
    ch.model = "demo";
    ch.name = "production";
    ch.version = version;
    ch.expires = Now() + std::chrono::hours(24 * 30);
    for (const auto& v : versions) {
      for (const auto& r : releases) {
        if (r["version"] == v) {
          ch.releases.push_back({v, r["release_counter"].get<std::uint64_t>(),
                                 *Digest::Parse(r["id"].get<std::string>())});
        }
      }
    }
    return trust::SignedDocument::Wrap(ch.ToJson());
  }
  httplib::Result PutChannel(const trust::SignedDocument& doc) {
    return c().Put("/api/v1/models/demo/channels/production", doc.Serialize().value(),
                   "application/json");
  }
  static std::string Detail(const httplib::Result& r) {
    auto j = json::parse(r->body, nullptr, false);
    return j.is_object() && j.contains("errors") ? j["errors"][0].value("detail", "") : "";
  }

  // Versions 1.0.0 (counter 1) and 1.1.0 (counter 2), pushed and released.
  void TwoReleasedVersions() {
    auto a = PushPackage("1.0.0");
    auto b = PushPackage("1.1.0");
    ASSERT_EQ(PostRelease(Release("1.0.0", 1, a))->status, 201);
    ASSERT_EQ(PostRelease(Release("1.1.0", 2, b))->status, 201);
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryApiTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(RegistryApiTest, PushedPackagesBecomeVersionsWithLineage) {
  auto pushed = PushPackage("1.0.0");
  PushPackage("1.1.0");
  auto models = c().Get("/api/v1/models");
  ASSERT_EQ(models->status, 200) << models->body;
  auto m = json::parse(models->body)["models"];
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["name"], "demo");
  EXPECT_EQ(m[0]["versions"], 2);
  EXPECT_EQ(m[0]["latest"], "1.1.0");
  EXPECT_EQ(m[0]["description"], "Finds scratches");

  auto v = json::parse(c().Get("/api/v1/models/demo/versions/1.0.0")->body);
  EXPECT_EQ(v["index_digest"], pushed.first.ToString());
  EXPECT_EQ(v["repository"], "models/demo");
  EXPECT_EQ(v["platforms"], json({"linux/amd64"}));
  EXPECT_EQ(v["lineage"]["training_run"], "run-1.0.0");
  EXPECT_EQ(v["lineage"]["metrics"]["accuracy"], 0.98);
  EXPECT_EQ(v["release"], nullptr);
  EXPECT_EQ(v["pushed_by"], "anonymous");

  EXPECT_EQ(json::parse(c().Get("/api/v1/models?q=SCRATCH")->body)["models"].size(), 1u);
  EXPECT_EQ(json::parse(c().Get("/api/v1/models?q=run-1.1")->body)["models"].size(), 1u);
  EXPECT_EQ(json::parse(c().Get("/api/v1/models?q=nothing")->body)["models"].size(), 0u);
  EXPECT_EQ(c().Get("/api/v1/models/nothing/versions")->status, 404);
  EXPECT_EQ(c().Get("/api/v1/models/demo/versions/9.9")->status, 404);
}

TEST_P(RegistryApiTest, ReleasesMustVerifyAndMatchThePushedIndex) {
  auto a = PushPackage("1.0.0");
  // Signed by a key the root does not know.
  trust::SignedDocument stranger = trust::SignedDocument::Wrap(Release("1.0.0", 1, a).body());
  ASSERT_TRUE(stranger.Sign(managers_[0]));
  auto r = PostRelease(stranger);
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_NE(Detail(r).find("publisher"), std::string::npos);
  // For an index that is not the pushed one.
  r = PostRelease(Release("1.0.0", 1, {Sha256Of("other"), 10}));
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_NE(Detail(r).find("on the hub has index"), std::string::npos);
  // Not even JSON.
  EXPECT_EQ(c().Post("/api/v1/models/demo/releases", "{", "application/json")->status, 400);
  // Good; then again (200, same release), then a counter that does not grow.
  ASSERT_EQ(PostRelease(Release("1.0.0", 5, a))->status, 201);
  EXPECT_EQ(PostRelease(Release("1.0.0", 5, a))->status, 200);
  auto b = PushPackage("1.1.0");
  r = PostRelease(Release("1.1.0", 5, b));
  EXPECT_EQ(r->status, 409);
  EXPECT_NE(Detail(r).find("--counter 6"), std::string::npos);
  // A released version is immutable over OCI too.
  json index = json::parse(c().Get("/v2/models/demo/manifests/1.0.0",
                                   {{"Accept", kIndexType}})->body);
  index["annotations"]["note"] = "changed";
  auto repush = PutManifest("models/demo", "1.0.0", index.dump(), kIndexType);
  EXPECT_EQ(repush->status, 409) << repush->body;
  auto v = json::parse(c().Get("/api/v1/models/demo/versions/1.0.0")->body);
  EXPECT_EQ(v["release"]["release_counter"], 5);
  EXPECT_EQ(v["index_digest"], a.first.ToString());
}

// docs/trust.md, "Rotating the root": the hub serves the chain gateways walk, and a rotation
// accepted with `airlock-hub root update` (trust::RootCommand) is what it verifies by after a
// restart: the replaced publisher's releases are refused, the new one's taken.
TEST_P(RegistryApiTest, TheRootChainIsServedAndARotationCountsAfterARestart) {
  auto roots = c().Get("/api/v1/roots");
  ASSERT_EQ(roots->status, 200) << roots->body;
  json body = json::parse(roots->body);
  EXPECT_EQ(body["version"], 1);
  ASSERT_EQ(body["roots"].size(), 1u);
  EXPECT_EQ(body["roots"][0]["signed"]["version"], 1);

  std::vector<PrivateKey> next_publishers = Keys(1);
  trust::Root next = trust::Root::FromJson(body["roots"][0]["signed"]).value();
  next.version = 2;
  next.keys.erase(publishers_[0].id());
  next.keys.emplace(next_publishers[0].id(), next_publishers[0].public_key());
  next.roles[std::string(trust::kRolePublisher)] = {{next_publishers[0].id()}, 1};
  auto doc = trust::SignedDocument::Wrap(next.ToJson());
  ASSERT_TRUE(doc.Sign(root_keys_[0]));
  ASSERT_TRUE(WriteFileAtomic(dir_ / "root.2.json", doc.Serialize().value()));
  auto said = trust::RootCommand(root_path_, HubRootsDir(config_.data),
                                 {(dir_ / "root.2.json").string()}, Now(), "restart");
  ASSERT_TRUE(said) << said.error().ToString();
  EXPECT_NE(said->find("trusted root version 2 (was 1)"), std::string::npos) << *said;

  StopHub();
  StartHub();
  body = json::parse(c().Get("/api/v1/roots")->body);
  EXPECT_EQ(body["version"], 2);
  ASSERT_EQ(body["roots"].size(), 1u);
  EXPECT_EQ(body["roots"][0]["signed"]["version"], 2);

  auto a = PushPackage("1.0.0");
  auto r = PostRelease(Release("1.0.0", 1, a));  // signed by the replaced publisher
  EXPECT_EQ(r->status, 422) << r->body;
  auto release = trust::SignedDocument::Wrap(Release("1.0.0", 1, a).body());
  ASSERT_TRUE(release.Sign(next_publishers[0]));
  EXPECT_EQ(PostRelease(release)->status, 201);
}

TEST_P(RegistryApiTest, AReleaseReferrerPushedOverOciIsRecordedOnlyIfItVerifies) {
  auto a = PushPackage("1.0.0");
  auto referrer = [&](const trust::SignedDocument& doc) {
    std::string text = doc.Serialize().value();
    PushBlob("models/demo", text);
    PushBlob("models/demo", "{}");
    json m = {{"schemaVersion", 2},
              {"mediaType", kManifestType},
              {"artifactType", "application/vnd.airlock.release.v1+json"},
              {"config", Describe("application/vnd.oci.empty.v1+json", "{}")},
              {"layers", json::array({Describe("application/vnd.airlock.release.v1+json", text)})},
              {"subject", {{"mediaType", kIndexType}, {"digest", a.first.ToString()},
                           {"size", a.second}}}};
    return PutManifest("models/demo", Sha256Of(m.dump()).ToString(), m.dump());
  };
  trust::SignedDocument forged = trust::SignedDocument::Wrap(Release("1.0.0", 1, a).body());
  ASSERT_TRUE(forged.Sign(managers_[1]));
  auto refused = referrer(forged);
  EXPECT_EQ(refused->status, 400) << refused->body;
  EXPECT_NE(Detail(refused).find("does not verify"), std::string::npos);
  EXPECT_EQ(json::parse(c().Get("/api/v1/models/demo/releases")->body)["releases"].size(), 0u);
  auto ok = referrer(Release("1.0.0", 1, a));
  EXPECT_EQ(ok->status, 201) << ok->body;
  auto releases = json::parse(c().Get("/api/v1/models/demo/releases")->body)["releases"];
  ASSERT_EQ(releases.size(), 1u);
  EXPECT_EQ(releases[0]["version"], "1.0.0");
  EXPECT_EQ(c().Get("/api/v1/models/demo/releases/1.0.0")->body,
            Release("1.0.0", 1, a).Serialize().value());
}

TEST_P(RegistryApiTest, PromotionNeedsTwoReleaseManagersOneAfterTheOther) {
  TwoReleasedVersions();
  trust::SignedDocument first = ChannelDoc(1, {"1.0.0"});
  ASSERT_TRUE(first.Sign(managers_[0]));
  auto r = PutChannel(first);
  ASSERT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(json::parse(r->body)["state"], "pending");
  EXPECT_EQ(json::parse(r->body)["signatures"], 1);
  auto state = json::parse(c().Get("/api/v1/models/demo/channels/production")->body);
  EXPECT_EQ(state["current"], nullptr);
  EXPECT_EQ(state["pending"]["release"], "1.0.0");
  EXPECT_EQ(state["threshold"], 2);
  EXPECT_EQ(state["signing_role"], "release-manager");

  // The second approver signs the same body alone: the hub merges the two signatures.
  trust::SignedDocument second = ChannelDoc(1, {"1.0.0"});
  ASSERT_TRUE(second.Sign(managers_[2]));
  r = PutChannel(second);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["state"], "current");
  EXPECT_EQ(json::parse(r->body)["signatures"], 2);
  state = json::parse(c().Get("/api/v1/models/demo/channels/production")->body);
  EXPECT_EQ(state["current"]["version"], 1);
  EXPECT_EQ(state["pending"], nullptr);
  auto doc = trust::SignedDocument::Parse(state["current"]["document"].dump());
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->signatures().size(), 2u);

  // Forward to 1.1.0 with both signatures at once, then a fleet-wide rollback to 1.0.0.
  trust::SignedDocument v2 = ChannelDoc(2, {"1.1.0", "1.0.0"});
  ASSERT_TRUE(v2.Sign(managers_[0]));
  ASSERT_TRUE(v2.Sign(managers_[1]));
  ASSERT_EQ(PutChannel(v2)->status, 200);
  EXPECT_EQ(json::parse(c().Get("/api/v1/models")->body)["models"][0]["channels"]["production"],
            "1.1.0");
  trust::SignedDocument back = ChannelDoc(3, {"1.0.0", "1.1.0"});
  ASSERT_TRUE(back.Sign(managers_[1]));
  ASSERT_TRUE(back.Sign(managers_[2]));
  ASSERT_EQ(PutChannel(back)->status, 200);
  auto v = json::parse(c().Get("/api/v1/models/demo/versions/1.0.0")->body);
  EXPECT_EQ(v["channels"], json({"production"}));
  state = json::parse(c().Get("/api/v1/models/demo/channels/production")->body);
  ASSERT_EQ(state["history"].size(), 3u);
  EXPECT_EQ(state["history"][1]["current_release"], "1.1.0");

  // Replaying an older version is refused, and so is version 3 again.
  r = PutChannel(v2);
  EXPECT_EQ(r->status, 409);
  EXPECT_NE(Detail(r).find("at version 3"), std::string::npos);
}

TEST_P(RegistryApiTest, ChannelDocumentsThatDoNotVerifyAreRefused) {
  TwoReleasedVersions();
  // A publisher key is not a release-manager key.
  trust::SignedDocument wrong_role = ChannelDoc(1, {"1.0.0"});
  ASSERT_TRUE(wrong_role.Sign(publishers_[0]));
  auto r = PutChannel(wrong_role);
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_NE(Detail(r).find("is not a release-manager key"), std::string::npos);
  // A tampered body: the signature no longer verifies.
  trust::SignedDocument signed_doc = ChannelDoc(1, {"1.0.0"});
  ASSERT_TRUE(signed_doc.Sign(managers_[0]));
  json tampered = json::parse(signed_doc.Serialize().value());
  tampered["signed"]["releases"][0]["version"] = "1.1.0";
  r = c().Put("/api/v1/models/demo/channels/production", tampered.dump(), "application/json");
  EXPECT_EQ(r->status, 422) << r->body;
  // A release the hub does not have.
  trust::Channel ch = *trust::Channel::FromJson(ChannelDoc(1, {"1.0.0"}).body());
  ch.releases[0].release = Sha256Of("no such release");
  trust::SignedDocument unknown = trust::SignedDocument::Wrap(ch.ToJson());
  ASSERT_TRUE(unknown.Sign(managers_[0]));
  r = PutChannel(unknown);
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(Detail(r).find("upload the release first"), std::string::npos);
  // Another channel's document on this channel's URL; and an expired one.
  ch = *trust::Channel::FromJson(ChannelDoc(1, {"1.0.0"}).body());
  ch.name = "staging";
  trust::SignedDocument staging = trust::SignedDocument::Wrap(ch.ToJson());
  ASSERT_TRUE(staging.Sign(managers_[0]));
  EXPECT_EQ(PutChannel(staging)->status, 422);
  ch.name = "production";
  ch.expires = Now() - std::chrono::seconds(1);
  trust::SignedDocument expired = trust::SignedDocument::Wrap(ch.ToJson());
  ASSERT_TRUE(expired.Sign(managers_[0]));
  r = PutChannel(expired);
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(Detail(r).find("expired"), std::string::npos);
  EXPECT_EQ(json::parse(c().Get("/api/v1/models/demo/channels/production")->body)["pending"],
            nullptr);
}

TEST_P(RegistryApiTest, GatewaysRegisterOnceAndDeploymentsKeepTheirHistory) {
  TwoReleasedVersions();
  auto token = c().Post("/api/v1/gateways/tokens", R"({"expires_in":"1h"})", "application/json");
  ASSERT_EQ(token->status, 201) << token->body;
  std::string reg = json::parse(token->body)["token"];
  json request = {{"token", reg}, {"name", "plant-a"}, {"labels", {{"site", "aachen"}}}};
  auto registered = c().Post("/api/v1/gateways/register", request.dump(), "application/json");
  ASSERT_EQ(registered->status, 201) << registered->body;
  std::string credential = json::parse(registered->body)["credential"];
  EXPECT_TRUE(credential.starts_with("alk_"));
  json dots = {{"token", reg}, {"name", ".."}};
  EXPECT_EQ(c().Post("/api/v1/gateways/register", dots.dump(), "application/json")->status, 400);
  auto again = c().Post("/api/v1/gateways/register", request.dump(), "application/json");
  EXPECT_EQ(again->status, 401);
  EXPECT_NE(Detail(again).find("used already"), std::string::npos);

  // The gateway's credential reports its own inventory.
  httplib::Headers as_gateway = {{"Authorization", "Bearer " + credential}};
  json inventory = {{"devices", json::array({{{"id", "dev-1"}, {"labels", {{"line", "3"}}}}})}};
  auto put = c().Put("/api/v1/gateways/plant-a/inventory", as_gateway, inventory.dump(),
                     "application/json");
  EXPECT_EQ(put->status, 204) << put->body;
  auto inv = json::parse(c().Get("/api/v1/gateways/plant-a/inventory")->body);
  EXPECT_EQ(inv["devices"][0]["id"], "dev-1");
  auto gateways = json::parse(c().Get("/api/v1/gateways")->body)["gateways"];
  ASSERT_EQ(gateways.size(), 1u);
  EXPECT_EQ(gateways[0]["devices"], 1);
  EXPECT_NE(gateways[0]["last_seen"], nullptr);

  // A deployment needs a current channel document and registered gateways.
  json deploy = {{"model", "demo"}, {"channel", "production"}, {"gateways", {"plant-a"}},
                 {"selector", {{"line", "3"}}}, {"strategy", {{"waves", {"1", "50%", "100%"}}}}};
  auto r = c().Post("/api/v1/deployments", deploy.dump(), "application/json");
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(Detail(r).find("airlock promote"), std::string::npos);
  trust::SignedDocument ch = ChannelDoc(1, {"1.1.0"});
  ASSERT_TRUE(ch.Sign(managers_[0]));
  ASSERT_TRUE(ch.Sign(managers_[1]));
  ASSERT_EQ(PutChannel(ch)->status, 200);
  json unknown = deploy;
  unknown["gateways"] = {"plant-a", "plant-z"};
  r = c().Post("/api/v1/deployments", unknown.dump(), "application/json");
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(Detail(r).find("plant-z"), std::string::npos);
  json bad_wave = deploy;
  bad_wave["strategy"]["waves"] = {"0"};
  EXPECT_EQ(c().Post("/api/v1/deployments", bad_wave.dump(), "application/json")->status, 400);
  json bad_shadow = deploy;
  bad_shadow["strategy"]["shadow"] = {{"min_agreement", 1.5}, {"min_compared", 100}};
  r = c().Post("/api/v1/deployments", bad_shadow.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(Detail(r).find("strategy.shadow"), std::string::npos);

  r = c().Post("/api/v1/deployments", deploy.dump(), "application/json");
  ASSERT_EQ(r->status, 201) << r->body;
  json d = json::parse(r->body);
  std::string id = d["id"];
  EXPECT_EQ(d["state"], "pending");
  EXPECT_EQ(d["release"]["version"], "1.1.0");
  EXPECT_EQ(d["channel_version"], 1);
  // Absent strategy keys are stored with their defaults.
  EXPECT_EQ(d["strategy"], json::parse(R"({"waves": ["1", "50%", "100%"], "max_in_flight": 10,
      "health_window": "5m", "failure_threshold": "10%"})"));
  EXPECT_EQ(json::parse(c().Get("/api/v1/deployments?model=demo")->body)["deployments"].size(),
            1u);
  EXPECT_EQ(json::parse(c().Get("/api/v1/deployments?state=cancelled")->body)["deployments"].size(),
            0u);

  r = c().Post("/api/v1/deployments/" + id + "/cancel", R"({"reason":"wrong line"})",
               "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  r = c().Post("/api/v1/deployments/" + id + "/cancel", "", "application/json");
  EXPECT_EQ(r->status, 409);
  auto shown = json::parse(c().Get("/api/v1/deployments/" + id)->body);
  EXPECT_EQ(shown["state"], "cancelled");
  ASSERT_EQ(shown["history"].size(), 2u);
  EXPECT_EQ(shown["history"][0]["action"], "created");
  EXPECT_EQ(shown["history"][1]["detail"], "wrong line");
  EXPECT_EQ(c().Get("/api/v1/deployments/dep-nope")->status, 404);
}

TEST_P(RegistryApiTest, HugeOrUnsizedBodiesAreRefusedBeforeTheyAreRead) {
  // 9 GiB announced: refused from the headers, before a byte of the body is read.
  std::string answer = Exchange(port(),
                                "POST /api/v1/models/demo/releases HTTP/1.1\r\nHost: x\r\n"
                                "Content-Type: application/json\r\nContent-Length: 9663676416\r\n\r\n{");
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 413")) << answer;
  EXPECT_NE(answer.find("limited to 8388608 bytes"), std::string::npos);
  // A chunked body has no length to check: refused too (a raw request, so that the hub's answer
  // and close never race a client still sending).
  std::string chunked = Exchange(port(),
                                 "POST /api/v1/deployments HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                                 "\r\n2\r\n{}\r\n0\r\n\r\n");
  EXPECT_TRUE(chunked.starts_with("HTTP/1.1 411")) << chunked;
  EXPECT_EQ(c().Get("/api/v1/models")->status, 200);
}

TEST(HubRoot, AHubWithARootThatDoesNotVerifyDoesNotStart) {
  airlock::testing::TempDir dir;
  HubConfig config = DefaultHubConfig();
  config.data = dir / "data";
  config.http.port = 0;
  config.root = dir / "root.json";
  auto missing = Hub::Open(config);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().ToString().find("root.json"), std::string::npos);

  // Signed by a key that is not the root role's.
  PrivateKey key = PrivateKey::Generate().value(), other = PrivateKey::Generate().value();
  trust::Root root;
  root.expires = SystemClock().Now() + std::chrono::hours(1);
  root.keys.emplace(key.id(), key.public_key());
  root.roles.emplace(std::string(trust::kRoleRoot), trust::RoleSpec{{key.id()}, 1});
  auto doc = trust::SignedDocument::Wrap(root.ToJson());
  ASSERT_TRUE(doc.Sign(other));
  ASSERT_TRUE(WriteFileAtomic(config.root, doc.Serialize().value()));
  auto unsigned_root = Hub::Open(config);
  ASSERT_FALSE(unsigned_root);
  EXPECT_NE(unsigned_root.error().ToString().find("0 valid root signature"), std::string::npos)
      << unsigned_root.error().ToString();
}

}  // namespace
}  // namespace airlock::hub
