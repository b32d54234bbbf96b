// Access control over real HTTP: every role against every action, bad, expired and revoked
// tokens, the Docker token flow, pre-signed blob URLs, the token and audit REST routes, and that
// the database keeps only the token's hash.

#include <filesystem>

#include "core/encoding.hpp"
#include "hub/hub_fixture.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class AuthTest : public HubFixture {
 protected:
  void SetUp() override {
    auth_enabled_ = true;
    HubFixture::SetUp();
    for (Role r : {Role::kViewer, Role::kPublisher, Role::kReleaseManager, Role::kAdmin}) {
      tokens_[r] = Mint(RoleName(r), r);
    }
  }
  std::string Mint(const std::string& name, Role role,
                   std::optional<std::chrono::seconds> ttl = std::nullopt) {
    auto m = hub_->access().CreateToken(name, role, "test", ttl);
    EXPECT_TRUE(m) << m.error().ToString();
    return m ? m->token : "";
  }
  static httplib::Headers Bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }
  // A blob and a tagged manifest in models/demo, pushed as admin.
  std::string Seed() {
    auto h = Bearer(tokens_[Role::kAdmin]);
    for (const std::string& b : {std::string("{}"), std::string("weights")}) {
      auto r = c().Post("/v2/models/demo/blobs/uploads/?digest=" + Sha256Of(b).ToString(), h, b,
                        "application/octet-stream");
      EXPECT_EQ(r->status, 201);
    }
    std::string m = ImageManifest("{}", {"weights"});
    EXPECT_EQ(c().Put("/v2/models/demo/manifests/1.0.0", h, m, kManifestType)->status, 201);
    return m;
  }
  json Audit() {
    auto r = c().Get("/api/v1/audit?limit=1000", Bearer(tokens_[Role::kAdmin]));
    EXPECT_EQ(r->status, 200);
    return json::parse(r->body)["entries"];
  }
  std::map<Role, std::string> tokens_;
};

std::string ReasonOf(const httplib::Result& r) {
  auto j = json::parse(r->body, nullptr, false);
  return j.is_object() && j.contains("errors") ? j["errors"][0].value("detail", "") : "";
}

// Tokens live in the data directory on either backend; the hub's checks must hold on both.
INSTANTIATE_TEST_SUITE_P(Backends, AuthTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(AuthTest, EachRoleMayDoExactlyWhatTheTableSays) {
  std::string m = Seed();
  std::string weights = Sha256Of("weights").ToString();
  struct Case {
    const char* what;
    Role least;
    int ok_status;
    std::function<httplib::Result(const httplib::Headers&, int)> run;
  };
  std::vector<Case> cases = {
      {"pull manifest", Role::kViewer, 200,
       [&](const httplib::Headers& h, int) {
         return c().Get("/v2/models/demo/manifests/1.0.0", h);
       }},
      {"pull blob", Role::kViewer, 200,
       [&](const httplib::Headers& h, int) {
         return c().Get("/v2/models/demo/blobs/" + weights, h);
       }},
      {"list tags", Role::kViewer, 200,
       [&](const httplib::Headers& h, int) { return c().Get("/v2/models/demo/tags/list", h); }},
      {"push blob", Role::kPublisher, 201,
       [&](const httplib::Headers& h, int i) {
         std::string b = "blob " + std::to_string(i);
         return c().Post("/v2/models/demo/blobs/uploads/?digest=" + Sha256Of(b).ToString(), h, b,
                         "application/octet-stream");
       }},
      {"put manifest", Role::kPublisher, 201,
       [&](const httplib::Headers& h, int i) {
         return c().Put("/v2/models/demo/manifests/t" + std::to_string(i), h, m, kManifestType);
       }},
      {"presign", Role::kPublisher, 200,
       [&](const httplib::Headers& h, int) {
         return c().Post(
             "/api/v1/presign", h,
             json{{"repository", "models/demo"}, {"digest", weights}, {"ttl", 60}}.dump(),
             "application/json");
       }},
      {"delete tag", Role::kReleaseManager, 202,
       [&](const httplib::Headers& h, int i) {
         // A tag of its own per attempt, made by the admin.
         std::string tag = "d" + std::to_string(i);
         EXPECT_EQ(c().Put("/v2/models/demo/manifests/" + tag, Bearer(tokens_[Role::kAdmin]), m,
                           kManifestType)
                       ->status,
                   201);
         return c().Delete("/v2/models/demo/manifests/" + tag, h);
       }},
      {"list tokens", Role::kAdmin, 200,
       [&](const httplib::Headers& h, int) { return c().Get("/api/v1/tokens", h); }},
      {"read audit", Role::kAdmin, 200,
       [&](const httplib::Headers& h, int) { return c().Get("/api/v1/audit", h); }},
      {"read metrics", Role::kViewer, 200,
       [&](const httplib::Headers& h, int) { return c().Get("/metrics", h); }},
  };
  int i = 0;
  for (const auto& k : cases) {
    for (Role r : {Role::kViewer, Role::kPublisher, Role::kReleaseManager, Role::kAdmin}) {
      auto res = k.run(Bearer(tokens_[r]), ++i);
      ASSERT_TRUE(res);
      SCOPED_TRACE(std::string(k.what) + " as " + RoleName(r));
      if (r >= k.least) {
        EXPECT_EQ(res->status, k.ok_status) << res->body;
      } else {
        EXPECT_EQ(res->status, 403) << res->body;
        EXPECT_EQ(ErrorCodeOf(res), "DENIED");
        EXPECT_NE(ReasonOf(res).find(std::string("needs ") + RoleName(k.least)), std::string::npos)
            << ReasonOf(res);
      }
    }
    // Anonymous: 401 with the challenge.
    auto res = k.run({}, ++i);
    EXPECT_EQ(res->status, 401) << k.what;
    EXPECT_EQ(ErrorCodeOf(res), "UNAUTHORIZED");
    EXPECT_NE(res->get_header_value("WWW-Authenticate").find("Bearer realm=\"http://127.0.0.1:"),
              std::string::npos);
  }
  // Refusals leave the registry as it was: the viewer's tag never appeared.
  auto tags = c().Get("/v2/models/demo/tags/list", Bearer(tokens_[Role::kViewer]));
  // 1.0.0, the t* of the three roles that may push, and the d* that viewer, publisher and
  // anonymous could not delete.
  EXPECT_EQ(json::parse(tags->body)["tags"].size(), 1 + 3 + 3);
}

// The metrics role is for a Prometheus server: it reads /metrics and nothing else, so the token
// in Prometheus's configuration pulls no model and reads no registry.
TEST_P(AuthTest, AMetricsTokenReadsTheMetricsAndNothingElse) {
  Seed();
  auto made = c().Post("/api/v1/tokens", Bearer(tokens_[Role::kAdmin]),
                       R"({"name":"prometheus","role":"metrics"})", "application/json");
  ASSERT_EQ(made->status, 201) << made->body;
  EXPECT_EQ(json::parse(made->body)["role"], "metrics");
  auto prometheus = Bearer(json::parse(made->body)["token"].get<std::string>());

  auto scraped = c().Get("/metrics", prometheus);
  ASSERT_EQ(scraped->status, 200) << scraped->body;
  EXPECT_EQ(scraped->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(scraped->body.find("\nairlock_hub_gateways 0\n"), std::string::npos) << scraped->body;

  for (const char* path : {"/v2/models/demo/manifests/1.0.0", "/v2/models/demo/tags/list",
                           "/api/v1/models", "/api/v1/deployments", "/api/v1/gateways"}) {
    auto r = c().Get(path, prometheus);
    EXPECT_EQ(r->status, 403) << path << " " << r->body;
    EXPECT_NE(ReasonOf(r).find("the token prometheus has role metrics"), std::string::npos)
        << ReasonOf(r);
  }
  // Basic credentials work too (Prometheus's basic_auth), as on every route.
  EXPECT_EQ(
      c().Get("/metrics",
              {{"Authorization",
                "Basic " + Base64Encode("prometheus:" +
                                        json::parse(made->body)["token"].get<std::string>())}})
          ->status,
      200);

  // Without credentials, 401 with the challenge; a revoked token, 401 too.
  auto anonymous = c().Get("/metrics");
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_NE(anonymous->get_header_value("WWW-Authenticate").find("Bearer realm="),
            std::string::npos);
  ASSERT_EQ(c().Delete("/api/v1/tokens/prometheus", Bearer(tokens_[Role::kAdmin]))->status, 204);
  EXPECT_EQ(c().Get("/metrics", prometheus)->status, 401);

  // The refusals with credentials are in the audit log, as every other refusal.
  bool audited = false;
  for (const auto& e : Audit()) {
    audited = audited || (e["token"] == "prometheus" && e["result"] == "403");
  }
  EXPECT_TRUE(audited) << Audit().dump();
}

// The preview changes nothing: a viewer may ask for it. Pausing and resuming are a release
// manager's, like cancel, and audited.
TEST_P(AuthTest, AViewerPreviewsADeploymentButOnlyAReleaseManagerPausesOrResumesOne) {
  json body = {{"model", "demo"}, {"channel", "production"}, {"gateways", {"plant-a"}}};
  auto preview = c().Post("/api/v1/deployments/preview", Bearer(tokens_[Role::kViewer]),
                          body.dump(), "application/json");
  // No channel document here: the hub's answer about the request, not a refusal of the caller.
  EXPECT_NE(preview->status, 401) << preview->body;
  EXPECT_NE(preview->status, 403) << preview->body;
  EXPECT_EQ(c().Post("/api/v1/deployments/preview", body.dump(), "application/json")->status, 401);
  for (const char* verb : {"pause", "resume"}) {
    std::string path = "/api/v1/deployments/dep-00000000000000ff/" + std::string(verb);
    for (Role denied : {Role::kViewer, Role::kPublisher}) {
      EXPECT_EQ(c().Post(path, Bearer(tokens_[denied]), "", "application/json")->status, 403)
          << verb;
    }
    auto allowed = c().Post(path, Bearer(tokens_[Role::kReleaseManager]), "", "application/json");
    EXPECT_EQ(allowed->status, 404) << verb << " " << allowed->body;  // allowed; no such deployment
  }
  bool audited = false;
  for (const auto& e : Audit()) {
    audited = audited || e.value("action", "") == "deployment.pause";
  }
  EXPECT_TRUE(audited) << Audit().dump();
}

TEST_P(AuthTest, ChallengeNamesTheTokenRealmAndScope) {
  auto r = c().Post("/v2/models/demo/blobs/uploads/", "", "application/octet-stream");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"),
            "Bearer realm=\"http://127.0.0.1:" + std::to_string(port()) +
                "/v2/token\",service=\"airlock-hub\",scope=\"repository:models/demo:pull,push\"");
}

TEST_P(AuthTest, BadExpiredAndRevokedTokensAre401WithAReason) {
  Seed();
  std::string path = "/v2/models/demo/manifests/1.0.0";
  auto bad = c().Get(path, Bearer("alk_" + std::string(64, '0')));
  EXPECT_EQ(bad->status, 401);
  EXPECT_NE(ReasonOf(bad).find("not known"), std::string::npos);
  EXPECT_EQ(c().Get(path, Bearer("nonsense"))->status, 401);
  EXPECT_EQ(c().Get(path, {{"Authorization", "Digest x"}})->status, 401);

  std::string short_lived = Mint("short", Role::kViewer, 60s);
  EXPECT_EQ(c().Get(path, Bearer(short_lived))->status, 200);
  clock_.Advance(61s);
  auto expired = c().Get(path, Bearer(short_lived));
  EXPECT_EQ(expired->status, 401);
  EXPECT_NE(ReasonOf(expired).find("expired"), std::string::npos);

  std::string doomed = Mint("doomed", Role::kPublisher);
  EXPECT_EQ(c().Get(path, Bearer(doomed))->status, 200);
  auto revoked = c().Delete("/api/v1/tokens/doomed", Bearer(tokens_[Role::kAdmin]));
  EXPECT_EQ(revoked->status, 204);
  auto refused = c().Get(path, Bearer(doomed));
  EXPECT_EQ(refused->status, 401);
  EXPECT_NE(ReasonOf(refused).find("revoked"), std::string::npos);
  // The others still work.
  EXPECT_EQ(c().Get(path, Bearer(tokens_[Role::kViewer]))->status, 200);
}

TEST_P(AuthTest, TheDatabaseHoldsTheHashNotTheToken) {
  std::string token = Mint("secret-holder", Role::kAdmin);
  // Every value of the tokens table, and for SQLite the database files themselves.
  std::string files;
  auto rows = store::SqlTransact<store::SqlRows>(hub_->metadata().sql(), [](store::SqlSession& s) {
    return s.Query("SELECT * FROM tokens");
  });
  ASSERT_TRUE(rows) << rows.error().ToString();
  for (const auto& row : rows->rows) {
    for (const auto& v : row) {
      files += v.value_or("") + "\n";
    }
  }
  for (const auto& f : std::filesystem::directory_iterator(dir_ / "data")) {
    if (f.path().filename().string().starts_with("metadata.db")) {
      files += airlock::testing::ReadAll(f.path());
    }
  }
  EXPECT_EQ(files.find(token), std::string::npos);
  EXPECT_EQ(files.find(token.substr(4)), std::string::npos);
  EXPECT_NE(files.find(HashToken(token)), std::string::npos);
  auto mode = std::filesystem::status(dir_ / "data" / "hub.secret").permissions();
  EXPECT_EQ(mode & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_P(AuthTest, TokenFlowTradesBasicCredentialsForASessionToken) {
  Seed();
  httplib::Client basic("127.0.0.1", port());
  basic.set_basic_auth("whoever", tokens_[Role::kPublisher]);
  auto t = basic.Get("/v2/token?service=airlock-hub&scope=repository:models/demo:pull,push");
  ASSERT_EQ(t->status, 200) << t->body;
  auto j = json::parse(t->body);
  std::string session = j["token"];
  EXPECT_EQ(j["access_token"], session);
  EXPECT_EQ(j["expires_in"], 300);
  // Basic works directly on /v2/ too (skopeo --creds without the token flow).
  EXPECT_EQ(basic.Get("/v2/models/demo/manifests/1.0.0")->status, 200);
  std::string b = "by session";
  auto pushed = c().Post("/v2/models/demo/blobs/uploads/?digest=" + Sha256Of(b).ToString(),
                         Bearer(session), b, "application/octet-stream");
  EXPECT_EQ(pushed->status, 201);
  // A tampered session token, and one after its expiry.
  std::string tampered = session;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  EXPECT_EQ(c().Get("/v2/", Bearer(tampered))->status, 401);
  clock_.Advance(301s);
  auto late = c().Get("/v2/", Bearer(session));
  EXPECT_EQ(late->status, 401);
  EXPECT_NE(ReasonOf(late).find("expired"), std::string::npos);
  // Without or with wrong credentials: 401 with a Basic challenge.
  auto none = c().Get("/v2/token");
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Basic realm=\"airlock-hub\"");
  httplib::Client wrong("127.0.0.1", port());
  wrong.set_basic_auth("x", "alk_nope");
  EXPECT_EQ(wrong.Get("/v2/token")->status, 401);
}

TEST_P(AuthTest, PresignedUrlsWorkUntilTheyExpireAndNotWhenAltered) {
  Seed();
  std::string weights = Sha256Of("weights").ToString();
  auto r = c().Post("/api/v1/presign", Bearer(tokens_[Role::kPublisher]),
                    json{{"repository", "models/demo"}, {"digest", weights}, {"ttl", 120}}.dump(),
                    "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  std::string url = json::parse(r->body)["url"];
  std::string prefix = "http://127.0.0.1:" + std::to_string(port());
  ASSERT_TRUE(url.starts_with(prefix)) << url;
  std::string path = url.substr(prefix.size());
  auto got = c().Get(path);  // no credentials
  ASSERT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "weights");

  auto refused = [&](const std::string& p, const std::string& why) {
    auto res = c().Get(p);
    EXPECT_EQ(res->status, 403) << p;
    EXPECT_NE(ReasonOf(res).find(why), std::string::npos) << ReasonOf(res);
  };
  std::string other = Sha256Of("{}").ToString();
  std::string altered_path = path;
  altered_path.replace(altered_path.find(weights), weights.size(), other);
  refused(altered_path, "does not match");
  std::string later = path;
  auto e = later.find("expires=") + 8;
  later[e] = later[e] == '9' ? '8' : '9';
  refused(later, "does not match");
  std::string bad_sig = path;
  bad_sig.back() = bad_sig.back() == '0' ? '1' : '0';
  refused(bad_sig, "does not match");
  EXPECT_EQ(c().Head(path)->status, 403);  // signed for GET only
  // A blob the repository does not have cannot be presigned.
  auto absent =
      c().Post("/api/v1/presign", Bearer(tokens_[Role::kPublisher]),
               json{{"repository", "models/demo"}, {"digest", Sha256Of("x").ToString()}}.dump(),
               "application/json");
  EXPECT_EQ(absent->status, 404);
  clock_.Advance(121s);
  refused(path, "expired");
}

TEST_P(AuthTest, TokensRestRoutesAndTheAuditLog) {
  auto admin = Bearer(tokens_[Role::kAdmin]);
  auto made = c().Post("/api/v1/tokens", admin,
                       json{{"name", "ci"}, {"role", "publisher"}, {"expires_in", "90d"}}.dump(),
                       "application/json");
  ASSERT_EQ(made->status, 201) << made->body;
  std::string ci = json::parse(made->body)["token"];
  EXPECT_TRUE(ci.starts_with("alk_"));
  EXPECT_EQ(c().Post("/api/v1/tokens", admin, json{{"name", "ci"}, {"role", "viewer"}}.dump(),
                     "application/json")
                ->status,
            409);
  EXPECT_EQ(c().Post("/api/v1/tokens", admin, json{{"name", "x"}, {"role", "root"}}.dump(),
                     "application/json")
                ->status,
            400);
  auto list = json::parse(c().Get("/api/v1/tokens", admin)->body)["tokens"];
  EXPECT_EQ(list.size(), 5);
  EXPECT_EQ(list.dump().find("alk_"), std::string::npos);  // never the tokens

  std::string b = "audited";
  EXPECT_EQ(c().Post("/v2/models/a/blobs/uploads/?digest=" + Sha256Of(b).ToString(), Bearer(ci), b,
                     "application/octet-stream")
                ->status,
            201);
  EXPECT_EQ(c().Delete("/v2/models/a/blobs/" + Sha256Of(b).ToString(), Bearer(ci))->status, 403);
  EXPECT_EQ(c().Get("/v2/", Bearer("alk_wrong"))->status, 401);
  EXPECT_EQ(c().Delete("/api/v1/tokens/ci", admin)->status, 204);

  json entries = Audit();
  auto has = [&](const std::string& action, const std::string& token, const std::string& result) {
    for (const auto& e : entries) {
      if (e["action"] == action && e["token"] == token && e["result"] == result) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has("token.create", "admin", "201"));
  EXPECT_TRUE(has("token.create", "admin", "409"));
  EXPECT_TRUE(has("blob.push", "ci", "201"));
  EXPECT_TRUE(has("refused delete", "ci", "403"));
  EXPECT_TRUE(has("refused pull", "", "401"));
  EXPECT_TRUE(has("token.revoke", "admin", "204"));
  // Paging: newest first, and the next page continues where this one ended.
  auto page = c().Get("/api/v1/audit?limit=2", admin);
  auto p = json::parse(page->body);
  ASSERT_EQ(p["entries"].size(), 2);
  auto next = json::parse(c().Get(p["next"].get<std::string>(), admin)->body);
  EXPECT_LT(next["entries"][0]["id"].get<int>(), p["entries"][1]["id"].get<int>());
}

class AnonymousPullTest : public AuthTest {
 protected:
  void SetUp() override {
    anonymous_pull_ = true;
    AuthTest::SetUp();
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, AnonymousPullTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(AnonymousPullTest, AnonymousMayPullButNotPush) {
  Seed();
  EXPECT_EQ(c().Get("/v2/models/demo/manifests/1.0.0")->status, 200);
  EXPECT_EQ(c().Put("/v2/models/demo/manifests/x", ImageManifest("{}", {"weights"}), kManifestType)
                ->status,
            401);
}

}  // namespace
}  // namespace airlock::hub
