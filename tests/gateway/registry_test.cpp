// DeviceRegistry in process on 127.0.0.1: what a device's OCI client sees of the cache, and the
// writes it refuses.

#include "gateway/registry.hpp"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "gateway/gateway_fixture.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;

std::string ErrorCodeOf(const httplib::Result& r) {
  json body = json::parse(r->body, nullptr, false);
  if (body.is_discarded() || !body.contains("errors") || body["errors"].empty()) {
    return "<no OCI error body: " + r->body + ">";
  }
  return body["errors"][0].value("code", "");
}

class DeviceRegistryTest : public CacheFixture {
 protected:
  void SetUp() override {
    CacheFixture::SetUp();
    pkg_ = MakePackage("models/affine", "1.0.0", {"config", "0123456789"});
    Deliver(pkg_);
    StartRegistry({});
  }
  void StartRegistry(ReadAuthorizer authorize) {
    registry_.reset();
    RegistryOptions options;
    options.port = 0;
    options.threads = 2;
    auto r = DeviceRegistry::Start(*cache_, options, std::move(authorize));
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(*r);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", registry_->port());
  }
  void TearDown() override { registry_.reset(); }

  httplib::Client& c() { return *client_; }

  TestPackage pkg_;
  std::unique_ptr<DeviceRegistry> registry_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(DeviceRegistryTest, TheVersionCheckAnswers) {
  auto r = c().Get("/v2/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Docker-Distribution-API-Version"), "registry/2.0");
  EXPECT_EQ(c().Head("/v2/")->status, 200);
}

TEST_F(DeviceRegistryTest, ManifestsByTagAndByDigest) {
  std::string index_digest = Sha256Of(pkg_.index).ToString();
  auto tagged = c().Get("/v2/models/affine/manifests/1.0.0");
  ASSERT_TRUE(tagged);
  ASSERT_EQ(tagged->status, 200);
  EXPECT_EQ(tagged->body, pkg_.index);
  EXPECT_EQ(tagged->get_header_value("Content-Type"), kIndexType);
  EXPECT_EQ(tagged->get_header_value("Docker-Content-Digest"), index_digest);

  std::string manifest_digest = Sha256Of(pkg_.manifest).ToString();
  auto by_digest = c().Get("/v2/models/affine/manifests/" + manifest_digest);
  ASSERT_EQ(by_digest->status, 200);
  EXPECT_EQ(by_digest->body, pkg_.manifest);
  EXPECT_EQ(by_digest->get_header_value("Content-Type"), kManifestType);
  EXPECT_EQ(by_digest->get_header_value("Docker-Content-Digest"), manifest_digest);

  auto head = c().Head("/v2/models/affine/manifests/1.0.0");
  ASSERT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_EQ(head->get_header_value("Content-Length"), std::to_string(pkg_.index.size()));
  EXPECT_EQ(head->get_header_value("Docker-Content-Digest"), index_digest);

  auto unknown = c().Get("/v2/models/affine/manifests/2.0.0");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(ErrorCodeOf(unknown), "MANIFEST_UNKNOWN");
  auto other_repo = c().Get("/v2/models/other/manifests/" + index_digest);
  EXPECT_EQ(other_repo->status, 404);
}

TEST_F(DeviceRegistryTest, BlobsWholeAndByRange) {
  std::string digest = Sha256Of("0123456789").ToString();
  std::string path = "/v2/models/affine/blobs/" + digest;
  auto whole = c().Get(path);
  ASSERT_EQ(whole->status, 200);
  EXPECT_EQ(whole->body, "0123456789");
  EXPECT_EQ(whole->get_header_value("Docker-Content-Digest"), digest);
  EXPECT_EQ(whole->get_header_value("Accept-Ranges"), "bytes");

  auto part = c().Get(path, {{"Range", "bytes=2-5"}});
  ASSERT_EQ(part->status, 206);
  EXPECT_EQ(part->body, "2345");
  EXPECT_EQ(part->get_header_value("Content-Range"), "bytes 2-5/10");
  auto rest = c().Get(path, {{"Range", "bytes=7-"}});
  ASSERT_EQ(rest->status, 206);
  EXPECT_EQ(rest->body, "789");
  auto clamped = c().Get(path, {{"Range", "bytes=8-100"}});
  ASSERT_EQ(clamped->status, 206);
  EXPECT_EQ(clamped->body, "89");

  for (const char* bad : {"bytes=10-", "bytes=5-2", "bytes=0-1,3-4", "items=0-1"}) {
    auto refused = c().Get(path, {{"Range", bad}});
    ASSERT_TRUE(refused) << bad;
    EXPECT_EQ(refused->status, 416) << bad;
    EXPECT_EQ(refused->get_header_value("Content-Range"), "bytes */10") << bad;
  }

  auto head = c().Head(path);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Content-Length"), "10");

  auto unknown = c().Get("/v2/models/affine/blobs/" + Sha256Of("nope").ToString());
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(ErrorCodeOf(unknown), "BLOB_UNKNOWN");
  auto malformed = c().Get("/v2/models/affine/blobs/sha256:xyz");
  EXPECT_EQ(malformed->status, 400);
  EXPECT_EQ(ErrorCodeOf(malformed), "DIGEST_INVALID");
}

TEST_F(DeviceRegistryTest, TagsListAndPages) {
  Deliver(MakePackage("models/affine", "1.1.0", {"config", "other weights"}));
  auto all = c().Get("/v2/models/affine/tags/list");
  ASSERT_EQ(all->status, 200);
  EXPECT_EQ(json::parse(all->body),
            (json{{"name", "models/affine"}, {"tags", {"1.0.0", "1.1.0"}}}));
  auto page = c().Get("/v2/models/affine/tags/list?n=1&last=1.0.0");
  ASSERT_EQ(page->status, 200);
  EXPECT_EQ(json::parse(page->body)["tags"], json::array({"1.1.0"}));
  auto none = c().Get("/v2/models/none/tags/list");
  EXPECT_EQ(none->status, 404);
  EXPECT_EQ(ErrorCodeOf(none), "NAME_UNKNOWN");
}

TEST_F(DeviceRegistryTest, ReferrersFindTheRelease) {
  std::string index_digest = Sha256Of(pkg_.index).ToString();
  auto all = c().Get("/v2/models/affine/referrers/" + index_digest);
  ASSERT_EQ(all->status, 200);
  EXPECT_EQ(all->get_header_value("Content-Type"), kIndexType);
  json found = json::parse(all->body);
  EXPECT_EQ(found["mediaType"], kIndexType);
  ASSERT_EQ(found["manifests"].size(), 1u);
  EXPECT_EQ(found["manifests"][0]["digest"], Sha256Of(pkg_.release_manifest).ToString());
  EXPECT_EQ(found["manifests"][0]["artifactType"], kReleaseType);
  EXPECT_EQ(found["manifests"][0]["size"], pkg_.release_manifest.size());
  EXPECT_EQ(found["manifests"][0]["annotations"]["ai.airlock.model"], "models/affine");

  auto filtered = c().Get("/v2/models/affine/referrers/" + index_digest +
                          "?artifactType=application/vnd.airlock.release.v1%2Bjson");
  ASSERT_EQ(filtered->status, 200);
  EXPECT_EQ(filtered->get_header_value("OCI-Filters-Applied"), "artifactType");
  EXPECT_EQ(json::parse(filtered->body)["manifests"].size(), 1u);
  auto other = c().Get("/v2/models/affine/referrers/" + index_digest + "?artifactType=x%2Fy");
  EXPECT_TRUE(json::parse(other->body)["manifests"].empty());

  // The release manifest itself is served, and its document through the blob route.
  auto release =
      c().Get("/v2/models/affine/manifests/" + Sha256Of(pkg_.release_manifest).ToString());
  ASSERT_EQ(release->status, 200);
  auto document = c().Get("/v2/models/affine/blobs/" + Sha256Of(pkg_.spec.release).ToString());
  ASSERT_EQ(document->status, 200);
  EXPECT_EQ(document->body, pkg_.spec.release);
}

TEST_F(DeviceRegistryTest, WritesAreRefusedWith405AndChangeNothing) {
  std::string index_digest = Sha256Of(pkg_.index).ToString();
  std::vector<httplib::Result> answers;
  answers.push_back(c().Put("/v2/models/affine/manifests/2.0.0", pkg_.index, kIndexType));
  answers.push_back(c().Post("/v2/models/affine/blobs/uploads/", "", "application/octet-stream"));
  answers.push_back(
      c().Patch("/v2/models/affine/blobs/uploads/x", "abc", "application/octet-stream"));
  answers.push_back(c().Delete("/v2/models/affine/manifests/" + index_digest));
  answers.push_back(c().Delete("/v2/models/affine/blobs/" + Sha256Of("config").ToString()));
  for (const auto& r : answers) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(ErrorCodeOf(r), "UNSUPPORTED");
    EXPECT_EQ(r->get_header_value("Allow"), "GET, HEAD");
  }
  EXPECT_EQ(c().Get("/v2/models/affine/manifests/1.0.0")->status, 200);
  EXPECT_EQ(c().Get("/v2/models/affine/manifests/2.0.0")->status, 404);
  EXPECT_EQ(c().Get("/v2/models/affine/blobs/" + Sha256Of("config").ToString())->body, "config");
}

TEST_F(DeviceRegistryTest, IncompletePackagesAreInvisible) {
  TestPackage half = MakePackage("models/half", "1", {"config-h", "weights-h"});
  ASSERT_TRUE(cache_->DeclarePackage(half.spec));
  ASSERT_TRUE(Put("config-h"));
  EXPECT_EQ(c().Get("/v2/models/half/manifests/1")->status, 404);
  EXPECT_EQ(c().Get("/v2/models/half/blobs/" + Sha256Of("config-h").ToString())->status, 404);
  EXPECT_EQ(c().Get("/v2/models/half/tags/list")->status, 404);
}

TEST_F(DeviceRegistryTest, MalformedNamesAndUnknownRoutesAre404) {
  for (const char* path : {"/v2/Models/affine/tags/list", "/v2/../x/tags/list",
                           "/v2/models//affine/manifests/1.0.0", "/v2/models/affine/other"}) {
    auto r = c().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
  }
}

TEST_F(DeviceRegistryTest, TheAuthorizationHookDecidesEveryRead) {
  std::vector<std::string> seen;
  std::mutex mu;
  StartRegistry([&](const ReadRequest& r) -> Status {
    std::lock_guard lock(mu);
    seen.push_back(std::string(r.repository));
    if (r.authorization.empty()) {
      return Fail(ErrorCode::kVerification, "a device certificate or token is required");
    }
    if (r.authorization != "Bearer device-1") {
      return Fail(ErrorCode::kInvalidArgument,
                  "device-2 may not read " + std::string(r.repository));
    }
    return {};
  });
  auto anonymous = c().Get("/v2/models/affine/manifests/1.0.0");
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(ErrorCodeOf(anonymous), "UNAUTHORIZED");
  auto other = c().Get("/v2/models/affine/manifests/1.0.0", {{"Authorization", "Bearer device-2"}});
  EXPECT_EQ(other->status, 403);
  EXPECT_EQ(ErrorCodeOf(other), "DENIED");
  auto allowed =
      c().Get("/v2/models/affine/manifests/1.0.0", {{"Authorization", "Bearer device-1"}});
  EXPECT_EQ(allowed->status, 200);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, std::vector<std::string>(3, "models/affine"));
}

TEST_F(DeviceRegistryTest, ReadsMakeABlobRecentlyUsed) {
  registry_.reset();  // before the cache it reads goes
  Reopen(1000);
  StartRegistry({});
  TestPackage a = MakePackage("models/a", "1", {"config-a", std::string(300, 'a')});
  TestPackage b = MakePackage("models/b", "1", {"config-b", std::string(300, 'b')});
  Deliver(a);
  clock_.Advance(std::chrono::seconds(10));
  Deliver(b);
  clock_.Advance(std::chrono::seconds(10));
  // A device pulls models/a through the registry: its blobs become the most recently used.
  for (const std::string& blob : a.blobs) {
    ASSERT_EQ(c().Get("/v2/models/a/blobs/" + Sha256Of(blob).ToString())->status, 200);
  }
  ASSERT_TRUE(Put(std::string(300, 'c')));
  EXPECT_EQ(c().Get("/v2/models/a/manifests/1")->status, 200);
  EXPECT_EQ(c().Get("/v2/models/b/manifests/1")->status, 404);
}

}  // namespace
}  // namespace airlock::gateway
