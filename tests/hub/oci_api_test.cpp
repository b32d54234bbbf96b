// The OCI distribution API over real HTTP: every endpoint, and the spec's error for every kind of
// bad request. A refusal leaves the repository as it was, and the next good request works.

#include <set>

#include "hub/hub_fixture.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

class OciApiTest : public HubFixture {};
INSTANTIATE_TEST_SUITE_P(Backends, OciApiTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(OciApiTest, BaseEndpointAnswersWithTheApiVersion) {
  auto r = c().Get("/v2/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Docker-Distribution-API-Version"), "registry/2.0");
}

TEST_P(OciApiTest, PullByTagAndDigestWithHeadAndContentType) {
  std::string m = PushImage("models/visual-inspection", "1.0.0", "{}", {"weights"});
  std::string digest = Sha256Of(m).ToString();
  for (const std::string& ref : {std::string("1.0.0"), digest}) {
    auto r = c().Get("/v2/models/visual-inspection/manifests/" + ref);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, m);
    EXPECT_EQ(r->get_header_value("Content-Type"), kManifestType);
    EXPECT_EQ(r->get_header_value("Docker-Content-Digest"), digest);
    auto h = c().Head("/v2/models/visual-inspection/manifests/" + ref);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    EXPECT_EQ(h->body, "");
    EXPECT_EQ(h->get_header_value("Content-Length"), std::to_string(m.size()));
    EXPECT_EQ(h->get_header_value("Docker-Content-Digest"), digest);
  }
  auto blob = c().Get("/v2/models/visual-inspection/blobs/" + Sha256Of("weights").ToString());
  ASSERT_TRUE(blob);
  EXPECT_EQ(blob->status, 200);
  EXPECT_EQ(blob->body, "weights");
  EXPECT_EQ(blob->get_header_value("Docker-Content-Digest"), Sha256Of("weights").ToString());
  auto head = c().Head("/v2/models/visual-inspection/blobs/" + Sha256Of("weights").ToString());
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("Content-Length"), "7");
}

TEST_P(OciApiTest, UnknownRepositoryManifestAndBlob) {
  std::string absent = Sha256Of("absent").ToString();
  auto r = c().Get("/v2/nope/manifests/latest");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCodeOf(r), "NAME_UNKNOWN");
  EXPECT_EQ(ErrorCodeOf(c().Get("/v2/nope/tags/list")), "NAME_UNKNOWN");
  PushImage("r", "v1", "{}", {});
  r = c().Get("/v2/r/manifests/v2");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCodeOf(r), "MANIFEST_UNKNOWN");
  r = c().Get("/v2/r/manifests/" + absent);
  EXPECT_EQ(ErrorCodeOf(r), "MANIFEST_UNKNOWN");
  r = c().Get("/v2/r/blobs/" + absent);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCodeOf(r), "BLOB_UNKNOWN");
  auto h = c().Head("/v2/r/blobs/" + absent);
  EXPECT_EQ(h->status, 404);
  r = c().Get("/v2/r/blobs/sha256:nothex");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "DIGEST_INVALID");
  r = c().Get("/v2/Upper/manifests/latest");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "NAME_INVALID");
  // The error body is exactly the spec's shape.
  json body = json::parse(c().Get("/v2/r/manifests/v2")->body);
  ASSERT_EQ(body["errors"].size(), 1u);
  EXPECT_TRUE(body["errors"][0]["message"].is_string());
  EXPECT_TRUE(body["errors"][0]["detail"].is_string());
}

TEST_P(OciApiTest, BlobRangesGive206And416) {
  PushBlob("r", "0123456789");
  std::string path = "/v2/r/blobs/" + Sha256Of("0123456789").ToString();
  struct Case {
    const char* range;
    int status;
    std::string body;
    std::string content_range;
  } cases[] = {
      {"bytes=2-5", 206, "2345", "bytes 2-5/10"}, {"bytes=7-", 206, "789", "bytes 7-9/10"},
      {"bytes=-3", 206, "789", "bytes 7-9/10"},   {"bytes=8-100", 206, "89", "bytes 8-9/10"},
      {"bytes=10-", 416, "", "bytes */10"},       {"bytes=20-30", 416, "", "bytes */10"},
      {"bytes=0-1,4-5", 416, "", "bytes */10"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.range);
    auto r = c().Get(path, {{"Range", k.range}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, k.status);
    EXPECT_EQ(r->body, k.body);
    EXPECT_EQ(r->get_header_value("Content-Range"), k.content_range);
  }
  // Errors and manifests are never cut to a range.
  auto unknown = c().Get("/v2/r/blobs/" + Sha256Of("x").ToString(), {{"Range", "bytes=0-5"}});
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(ErrorCodeOf(unknown), "BLOB_UNKNOWN");
  auto whole = c().Get(path);  // the connection still works
  EXPECT_EQ(whole->body, "0123456789");
}

TEST_P(OciApiTest, ChunkedUploadWithContentRangeStatusAndFinish) {
  auto start = c().Post("/v2/models/a/blobs/uploads/", "", "application/octet-stream");
  ASSERT_TRUE(start);
  ASSERT_EQ(start->status, 202);
  std::string location = start->get_header_value("Location");
  EXPECT_TRUE(location.starts_with("/v2/models/a/blobs/uploads/")) << location;
  EXPECT_EQ(start->get_header_value("Range"), "0-0");
  EXPECT_FALSE(start->get_header_value("Docker-Upload-UUID").empty());

  auto p1 = c().Patch(location, {{"Content-Range", "0-4"}}, "hello", "application/octet-stream");
  ASSERT_EQ(p1->status, 202) << p1->body;
  EXPECT_EQ(p1->get_header_value("Range"), "0-4");
  // A chunk that does not start where the upload ends: 416 with the current range.
  auto bad = c().Patch(location, {{"Content-Range", "3-7"}}, "XXXXX", "application/octet-stream");
  EXPECT_EQ(bad->status, 416);
  EXPECT_EQ(ErrorCodeOf(bad), "BLOB_UPLOAD_INVALID");
  EXPECT_EQ(bad->get_header_value("Range"), "0-4");
  // A Content-Range that does not match the body's length.
  bad = c().Patch(location, {{"Content-Range", "5-20"}}, "abc", "application/octet-stream");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(ErrorCodeOf(bad), "BLOB_UPLOAD_INVALID");
  bad = c().Patch(location, {{"Content-Range", "five-six"}}, "ab", "application/octet-stream");
  EXPECT_EQ(bad->status, 400);

  auto status = c().Get(location);
  EXPECT_EQ(status->status, 204);
  EXPECT_EQ(status->get_header_value("Range"), "0-4");
  // A PATCH without Content-Range appends (what Docker clients and skopeo send).
  auto p2 = c().Patch(location, " world", "application/octet-stream");
  ASSERT_EQ(p2->status, 202);
  EXPECT_EQ(p2->get_header_value("Range"), "0-10");
  // The last chunk rides on the PUT.
  std::string digest = Sha256Of("hello world!").ToString();
  auto done = c().Put(location + "?digest=" + digest, "!", "application/octet-stream");
  ASSERT_EQ(done->status, 201) << done->body;
  EXPECT_EQ(done->get_header_value("Location"), "/v2/models/a/blobs/" + digest);
  EXPECT_EQ(done->get_header_value("Docker-Content-Digest"), digest);
  EXPECT_EQ(c().Get("/v2/models/a/blobs/" + digest)->body, "hello world!");
  EXPECT_EQ(ErrorCodeOf(c().Get(location)), "BLOB_UPLOAD_UNKNOWN");  // finished
}

TEST_P(OciApiTest, ADigestMismatchPublishesNothing) {
  std::string wrong = Sha256Of("something else").ToString();
  auto r = c().Post("/v2/r/blobs/uploads/?digest=" + wrong, "payload", "application/octet-stream");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "DIGEST_INVALID");
  EXPECT_EQ(c().Head("/v2/r/blobs/" + wrong)->status, 404);
  EXPECT_EQ(c().Head("/v2/r/blobs/" + Sha256Of("payload").ToString())->status, 404);

  auto start = c().Post("/v2/r/blobs/uploads/", "", "application/octet-stream");
  std::string location = start->get_header_value("Location");
  ASSERT_EQ(c().Patch(location, "payload", "application/octet-stream")->status, 202);
  r = c().Put(location + "?digest=" + wrong, "", "application/octet-stream");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "DIGEST_INVALID");
  EXPECT_EQ(ErrorCodeOf(c().Get(location)), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(c().Head("/v2/r/blobs/" + wrong)->status, 404);
  // The next good push works.
  PushBlob("r", "payload");
  EXPECT_EQ(c().Get("/v2/r/blobs/" + Sha256Of("payload").ToString())->body, "payload");
}

TEST_P(OciApiTest, UploadsBelongToTheirRepositoryAndCanBeCancelled) {
  auto start = c().Post("/v2/r/blobs/uploads/", "", "application/octet-stream");
  std::string location = start->get_header_value("Location");
  std::string id = start->get_header_value("Docker-Upload-UUID");
  auto other = c().Patch("/v2/s/blobs/uploads/" + id, "x", "application/octet-stream");
  EXPECT_EQ(other->status, 404);
  EXPECT_EQ(ErrorCodeOf(other), "BLOB_UPLOAD_UNKNOWN");
  auto bogus = c().Get("/v2/r/blobs/uploads/../../etc");
  EXPECT_EQ(bogus->status, 404);
  EXPECT_EQ(c().Delete(location)->status, 204);
  EXPECT_EQ(c().Delete(location)->status, 404);
  EXPECT_EQ(ErrorCodeOf(c().Patch(location, "x", "application/octet-stream")),
            "BLOB_UPLOAD_UNKNOWN");
}

TEST_P(OciApiTest, CrossRepositoryMount) {
  PushBlob("models/a", "shared layer");
  std::string digest = Sha256Of("shared layer").ToString();
  EXPECT_EQ(c().Head("/v2/models/b/blobs/" + digest)->status, 404);  // not visible there yet
  auto r = c().Post("/v2/models/b/blobs/uploads/?mount=" + digest + "&from=models/a", "",
                    "application/octet-stream");
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->get_header_value("Location"), "/v2/models/b/blobs/" + digest);
  EXPECT_EQ(c().Get("/v2/models/b/blobs/" + digest)->body, "shared layer");
  // Not in `from`: an upload session instead.
  std::string absent = Sha256Of("absent").ToString();
  r = c().Post("/v2/models/c/blobs/uploads/?mount=" + absent + "&from=models/a", "",
               "application/octet-stream");
  EXPECT_EQ(r->status, 202);
  EXPECT_TRUE(r->get_header_value("Location").starts_with("/v2/models/c/blobs/uploads/"));
  // A blob in some repository but not in `from` is not mounted either.
  r = c().Post("/v2/models/c/blobs/uploads/?mount=" + digest + "&from=models/zzz", "",
               "application/octet-stream");
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(c().Head("/v2/models/c/blobs/" + digest)->status, 404);
}

TEST_P(OciApiTest, AManifestReferencingAMissingBlobIsRefused) {
  PushBlob("r", "{}");
  std::string m = ImageManifest("{}", {"never pushed"});
  auto r = PutManifest("r", "v1", m);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "MANIFEST_BLOB_UNKNOWN");
  EXPECT_NE(r->body.find(Sha256Of("never pushed").ToString()), std::string::npos);
  EXPECT_EQ(c().Get("/v2/r/manifests/v1")->status, 404);
  // Pushed to another repository only: still missing here.
  PushBlob("elsewhere", "never pushed");
  EXPECT_EQ(ErrorCodeOf(PutManifest("r", "v1", m)), "MANIFEST_BLOB_UNKNOWN");
  // An index whose manifest is not there.
  json index = {
      {"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", {Describe(kManifestType, m)}}};
  EXPECT_EQ(ErrorCodeOf(PutManifest("r", "idx", index.dump(), kIndexType)),
            "MANIFEST_BLOB_UNKNOWN");
  // Then it all works.
  PushBlob("r", "never pushed");
  ASSERT_EQ(PutManifest("r", "v1", m)->status, 201);
  ASSERT_EQ(PutManifest("r", "idx", index.dump(), kIndexType)->status, 201);
  EXPECT_EQ(c().Get("/v2/r/manifests/idx")->get_header_value("Content-Type"), kIndexType);
}

TEST_P(OciApiTest, BadManifestsAreRefusedWithTheirReason) {
  PushBlob("r", "{}");
  std::string good = ImageManifest("{}", {});
  struct Case {
    std::string name, body, type, code;
    int status;
  } cases[] = {
      {"not json", "{not json", kManifestType, "MANIFEST_INVALID", 400},
      {"schema 1", R"({"schemaVersion":1})", kManifestType, "MANIFEST_INVALID", 400},
      {"unknown media type", json{{"schemaVersion", 2}, {"mediaType", "application/x-foo"}}.dump(),
       "application/x-foo", "MANIFEST_INVALID", 400},
      {"type mismatch", good, kIndexType, "MANIFEST_INVALID", 400},
      {"no layers",
       json{{"schemaVersion", 2}, {"mediaType", kManifestType}, {"config", Describe("a/b", "{}")}}
           .dump(),
       kManifestType, "MANIFEST_INVALID", 400},
      {"bad digest",
       R"({"schemaVersion":2,"mediaType":")" + std::string(kManifestType) +
           R"(","config":{"mediaType":"a","digest":"sha256:xyz","size":2},"layers":[]})",
       kManifestType, "MANIFEST_INVALID", 400},
      {"oversized", std::string(kMaxManifestSize + 1, ' '), kManifestType, "MANIFEST_INVALID", 413},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.name);
    auto r = PutManifest("r", "v1", k.body, k.type);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, k.status) << r->body;
    EXPECT_EQ(ErrorCodeOf(r), k.code) << r->body;
  }
  auto huge = PutManifest("r", "v1", std::string(3 * kMaxManifestSize, ' '));
  if (huge) {  // refused before it is read; the hub may close the connection instead
    EXPECT_EQ(huge->status, 413);
  }
  // A digest reference that is not the manifest's digest.
  auto r = PutManifest("r", Sha256Of("other").ToString(), good);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "DIGEST_INVALID");
  r = PutManifest("r", "bad:tag!", good);
  EXPECT_EQ(r->status, 400);
  // Nothing was stored; the good one still goes in, by digest as well as by tag.
  EXPECT_EQ(ErrorCodeOf(c().Get("/v2/r/tags/list")), "");
  EXPECT_EQ(json::parse(c().Get("/v2/r/tags/list")->body)["tags"], json::array());
  EXPECT_EQ(PutManifest("r", Sha256Of(good).ToString(), good)->status, 201);
  EXPECT_EQ(PutManifest("r", "v1", good)->status, 201);
}

TEST_P(OciApiTest, DockerSchema2ManifestsAreAccepted) {
  PushBlob("r", "{}");
  PushBlob("r", "layer");
  json m = {{"schemaVersion", 2},
            {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
            {"config", Describe("application/vnd.docker.container.image.v1+json", "{}")},
            {"layers", {Describe("application/vnd.docker.image.rootfs.diff.tar.gzip", "layer")}}};
  auto r =
      PutManifest("r", "docker", m.dump(), "application/vnd.docker.distribution.manifest.v2+json");
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(c().Get("/v2/r/manifests/docker")->get_header_value("Content-Type"),
            "application/vnd.docker.distribution.manifest.v2+json");
}

TEST_P(OciApiTest, TagsListWithPagination) {
  std::string m = PushImage("r", "b", "{}", {});
  for (const char* tag : {"a", "c", "1.0", "latest"}) {
    ASSERT_EQ(PutManifest("r", tag, m)->status, 201);
  }
  auto all = c().Get("/v2/r/tags/list");
  EXPECT_EQ(json::parse(all->body),
            (json{{"name", "r"}, {"tags", {"1.0", "a", "b", "c", "latest"}}}));
  auto page = c().Get("/v2/r/tags/list?n=2");
  EXPECT_EQ(json::parse(page->body)["tags"], (json{"1.0", "a"}));
  EXPECT_EQ(page->get_header_value("Link"), "</v2/r/tags/list?n=2&last=a>; rel=\"next\"");
  page = c().Get("/v2/r/tags/list?n=2&last=a");
  EXPECT_EQ(json::parse(page->body)["tags"], (json{"b", "c"}));
  page = c().Get("/v2/r/tags/list?n=2&last=c");
  EXPECT_EQ(json::parse(page->body)["tags"], (json{"latest"}));
  EXPECT_EQ(page->get_header_value("Link"), "");
  EXPECT_EQ(json::parse(c().Get("/v2/r/tags/list?n=0")->body)["tags"], json::array());
  EXPECT_EQ(c().Get("/v2/r/tags/list?n=-1")->status, 400);
}

TEST_P(OciApiTest, ReferrersWithArtifactTypeFilter) {
  std::string subject = PushImage("r", "v1", "{}", {"weights"});
  std::string subject_digest = Sha256Of(subject).ToString();
  json subject_descriptor = Describe(kManifestType, subject);
  PushBlob("r", "release");
  json release = {{"schemaVersion", 2},
                  {"mediaType", kManifestType},
                  {"artifactType", "application/vnd.airlock.release.v1+json"},
                  {"config", Describe("application/vnd.oci.empty.v1+json", "{}")},
                  {"layers", {Describe("application/vnd.airlock.release.v1+json", "release")}},
                  {"subject", subject_descriptor},
                  {"annotations", {{"ai.airlock.counter", "1"}}}};
  auto put = PutManifest("r", Sha256Of(release.dump()).ToString(), release.dump());
  ASSERT_EQ(put->status, 201) << put->body;
  EXPECT_EQ(put->get_header_value("OCI-Subject"), subject_digest);
  // An image manifest without artifactType is listed under its config's media type.
  std::string sbom = ImageManifest("{}", {}, {{"subject", subject_descriptor}});
  ASSERT_EQ(PutManifest("r", Sha256Of(sbom).ToString(), sbom)->status, 201);

  auto all = c().Get("/v2/r/referrers/" + subject_digest);
  ASSERT_EQ(all->status, 200);
  EXPECT_EQ(all->get_header_value("Content-Type"), kIndexType);
  EXPECT_EQ(all->get_header_value("OCI-Filters-Applied"), "");
  json index = json::parse(all->body);
  EXPECT_EQ(index["schemaVersion"], 2);
  EXPECT_EQ(index["mediaType"], kIndexType);
  ASSERT_EQ(index["manifests"].size(), 2u);
  std::set<std::string> types;
  for (const auto& d : index["manifests"]) {
    types.insert(d["artifactType"].get<std::string>());
  }
  EXPECT_EQ(types, (std::set<std::string>{"application/vnd.airlock.release.v1+json",
                                          "application/vnd.cncf.model.config.v1+json"}));

  auto filtered = c().Get("/v2/r/referrers/" + subject_digest +
                          "?artifactType=application/vnd.airlock.release.v1%2Bjson");
  EXPECT_EQ(filtered->get_header_value("OCI-Filters-Applied"), "artifactType");
  json only = json::parse(filtered->body)["manifests"];
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only[0]["digest"], Sha256Of(release.dump()).ToString());
  EXPECT_EQ(only[0]["size"], release.dump().size());
  EXPECT_EQ(only[0]["annotations"]["ai.airlock.counter"], "1");
  // No referrers is an empty index, never a 404; a malformed digest is a 400.
  auto none = c().Get("/v2/r/referrers/" + Sha256Of("x").ToString());
  EXPECT_EQ(none->status, 200);
  EXPECT_EQ(json::parse(none->body)["manifests"], json::array());
  EXPECT_EQ(c().Get("/v2/r/referrers/latest")->status, 400);
}

TEST_P(OciApiTest, DeleteManifestsTagsAndBlobs) {
  std::string m = PushImage("r", "v1", "{}", {"weights"});
  PushImage("s", "v1", "{}", {"weights"});
  std::string digest = Sha256Of(m).ToString();
  ASSERT_EQ(PutManifest("r", "v2", m)->status, 201);
  // Deleting a tag keeps the manifest.
  EXPECT_EQ(c().Delete("/v2/r/manifests/v2")->status, 202);
  EXPECT_EQ(c().Get("/v2/r/manifests/v2")->status, 404);
  EXPECT_EQ(c().Get("/v2/r/manifests/" + digest)->status, 200);
  // Deleting the manifest removes its remaining tags.
  EXPECT_EQ(c().Delete("/v2/r/manifests/" + digest)->status, 202);
  EXPECT_EQ(c().Get("/v2/r/manifests/v1")->status, 404);
  EXPECT_EQ(ErrorCodeOf(c().Delete("/v2/r/manifests/" + digest)), "MANIFEST_UNKNOWN");
  // A blob deleted from r stays in s, which still links it.
  std::string weights = Sha256Of("weights").ToString();
  EXPECT_EQ(c().Delete("/v2/r/blobs/" + weights)->status, 202);
  EXPECT_EQ(c().Get("/v2/r/blobs/" + weights)->status, 404);
  EXPECT_EQ(c().Get("/v2/s/blobs/" + weights)->body, "weights");
  EXPECT_EQ(ErrorCodeOf(c().Delete("/v2/r/blobs/" + weights)), "BLOB_UNKNOWN");
  // Deleted from its last repository, its bytes go.
  EXPECT_EQ(c().Delete("/v2/s/blobs/" + weights)->status, 202);
  EXPECT_FALSE(hub_->blobs().Size(*Digest::Parse(weights)));
}

TEST_P(OciApiTest, ConcurrentPushesOfTheSameBlob) {
  std::string data(8 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 7 + i / 4096);
  }
  std::string digest = Sha256Of(data).ToString();
  std::vector<std::thread> threads;
  std::vector<int> statuses(6, 0);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client client("127.0.0.1", port());
      std::string repo = i % 2 == 0 ? "models/same" : "models/other";
      if (i < 3) {
        auto r = client.Post("/v2/" + repo + "/blobs/uploads/?digest=" + digest, data,
                             "application/octet-stream");
        statuses[i] = r ? r->status : -1;
      } else {
        auto s = client.Post("/v2/" + repo + "/blobs/uploads/", "", "application/octet-stream");
        if (!s) {
          return;
        }
        std::string location = s->get_header_value("Location");
        auto p = client.Patch(location, data.substr(0, 3 << 20), "application/octet-stream");
        auto r = client.Put(location + "?digest=" + digest, data.substr(3 << 20),
                            "application/octet-stream");
        statuses[i] = p && r ? r->status : -1;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(statuses, std::vector<int>(6, 201));
  for (const char* repo : {"models/same", "models/other"}) {
    auto r = c().Get(std::string("/v2/") + repo + "/blobs/" + digest);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->body == data) << repo;
  }
}

TEST_P(OciApiTest, ABlobOverTheLimitIsRefused) {
  std::string big((64 << 20) + 1, 'x');
  auto r = c().Post("/v2/r/blobs/uploads/?digest=" + Sha256Of(big).ToString(), big,
                    "application/octet-stream");
  if (r) {
    EXPECT_EQ(r->status, 413);
  }
  EXPECT_EQ(c().Head("/v2/r/blobs/" + Sha256Of(big).ToString())->status, 404);
}

}  // namespace
}  // namespace airlock::hub
