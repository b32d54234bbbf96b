// The spec's syntax rules as the hub applies them, and the configuration file.

#include "hub/oci_rules.hpp"

#include <gtest/gtest.h>

#include "hub/config.hpp"

namespace airlock::hub {
namespace {

TEST(OciRules, RepositoryNames) {
  for (const char* ok :
       {"a", "models/visual-inspection", "a.b/c_d/e__f/g--h", "0/1/2", "library/ubuntu"}) {
    EXPECT_TRUE(IsRepositoryName(ok)) << ok;
  }
  for (const char* bad :
       {"", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/.b", "a b", "a/../b", "ä"}) {
    EXPECT_FALSE(IsRepositoryName(bad)) << bad;
  }
  EXPECT_TRUE(IsRepositoryName(std::string(255, 'a')));
  EXPECT_FALSE(IsRepositoryName(std::string(256, 'a')));
}

TEST(OciRules, Tags) {
  for (const char* ok : {"latest", "1.0.0", "_x", "A-b.c_d"}) {
    EXPECT_TRUE(IsTag(ok)) << ok;
  }
  for (const char* bad : {"", ".x", "-x", "a/b", "a:b", "a b"}) {
    EXPECT_FALSE(IsTag(bad)) << bad;
  }
  EXPECT_TRUE(IsTag(std::string(128, 'a')));
  EXPECT_FALSE(IsTag(std::string(129, 'a')));
}

TEST(OciRules, RoutesWithSlashesInNames) {
  using K = V2Route::Kind;
  struct Case {
    const char* path;
    K kind;
    const char* name;
    const char* ref;
  } cases[] = {
      {"/v2/models/a/manifests/1.0", K::kManifest, "models/a", "1.0"},
      {"/v2/a/blobs/sha256:00", K::kBlob, "a", "sha256:00"},
      {"/v2/a/b/blobs/uploads/", K::kUploads, "a/b", ""},
      {"/v2/a/blobs/uploads/1234", K::kUploads, "a", "1234"},
      {"/v2/x/tags/list", K::kTags, "x", ""},
      {"/v2/x/y/referrers/sha256:ab", K::kReferrers, "x/y", "sha256:ab"},
      // A repository may itself be called "manifests" or "blobs".
      {"/v2/blobs/manifests/manifests/v1", K::kManifest, "blobs/manifests", "v1"},
  };
  for (const auto& k : cases) {
    auto r = ParseV2Route(k.path);
    ASSERT_TRUE(r) << k.path;
    EXPECT_EQ(r->kind, k.kind) << k.path;
    EXPECT_EQ(r->name, k.name) << k.path;
    EXPECT_EQ(r->reference, k.ref) << k.path;
  }
  for (const char* none : {"/v2/", "/v2/a", "/v2/a/tags", "/v2/manifests/x", "/v1/a/manifests/x"}) {
    EXPECT_FALSE(ParseV2Route(none)) << none;
  }
}

TEST(OciRules, ContentRangeAndRange) {
  EXPECT_EQ(ParseContentRange("0-99")->end, 99u);
  EXPECT_EQ(ParseContentRange("bytes 5-9")->start, 5u);
  for (const char* bad : {"", "5", "9-5", "a-b", "-5", "5-"}) {
    EXPECT_FALSE(ParseContentRange(bad)) << bad;
  }
  EXPECT_EQ(ParseRange("bytes=0-", 10)->length, 10u);
  EXPECT_EQ(ParseRange("bytes=-20", 10)->offset, 0u);
  EXPECT_EQ(ParseRange("bytes=3-3", 10)->length, 1u);
  for (const char* bad : {"bytes=10-", "bytes=5-4", "bytes=-0", "items=0-1", "bytes=0-1,2-3"}) {
    EXPECT_FALSE(ParseRange(bad, 10)) << bad;
  }
  EXPECT_FALSE(ParseRange("bytes=0-", 0));
}

// Edges fuzz_range explores: the largest sizes and numbers, which must neither wrap nor pass.
TEST(OciRules, RangesAtTheLimitsOfSixtyFourBits) {
  constexpr std::uint64_t kMax = UINT64_MAX;
  auto last_two = ParseRange("bytes=18446744073709551613-18446744073709551615", kMax);
  ASSERT_TRUE(last_two);
  EXPECT_EQ(last_two->offset, kMax - 2);
  EXPECT_EQ(last_two->length, 2u);  // the end is clamped to size - 1
  auto suffix = ParseRange("bytes=-18446744073709551615", 10);
  ASSERT_TRUE(suffix);
  EXPECT_EQ(suffix->offset, 0u);
  EXPECT_EQ(suffix->length, 10u);
  for (const char* bad : {"bytes=18446744073709551616-", "bytes=0-18446744073709551616",
                          "bytes=-18446744073709551616", "bytes=+1-2", "bytes= 1-2"}) {
    EXPECT_FALSE(ParseRange(bad, kMax)) << bad;
  }
  EXPECT_FALSE(ParseContentRange("0-18446744073709551616"));
  EXPECT_EQ(ParseContentRange("18446744073709551615-18446744073709551615")->start, kMax);
}

TEST(OciRules, PushedManifestsAreReadStrictly) {
  auto m = ReadPushedManifest(
      R"({"schemaVersion":2,"config":{"mediaType":"c/t","digest":"sha256:)" + std::string(64, 'a') +
          R"(","size":2},"layers":[{"mediaType":"l","digest":"sha256:)" + std::string(64, 'b') +
          R"(","size":3,"urls":["http://x"]}]})",
      "application/vnd.oci.image.manifest.v1+json; charset=utf-8");
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->media_type, media::kOciManifest);  // from the Content-Type
  EXPECT_EQ(m->artifact_type, "c/t");             // the config's type stands in
  EXPECT_EQ(m->references.blobs.size(), 1u);      // the foreign layer is not required
  auto sha512 = ReadPushedManifest(
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"x","digest":"sha512:ab","size":1}]})",
      "");
  ASSERT_FALSE(sha512);
  EXPECT_EQ(sha512.error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(ReadPushedManifest(R"({"schemaVersion":2})", "").error().code(),
            ErrorCode::kUnsupported);  // no media type at all
}

TEST(HubConfig, KeysAreCheckedAndDefaultsApply) {
  auto c = ParseHubConfig(
      "data: /srv/hub\nroot: /etc/airlock/root.json\nhttp: {port: 0, address: 0.0.0.0}\n",
      "hub.yaml");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->data, "/srv/hub");
  EXPECT_EQ(c->root, "/etc/airlock/root.json");
  EXPECT_EQ(c->http.port, 0);
  EXPECT_EQ(c->http.address, "0.0.0.0");
  EXPECT_EQ(c->http.threads, 32);
  auto bad = ParseHubConfig("http: {prot: 1}\n", "hub.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().ToString(), "hub.yaml: http.prot: unknown key");
  EXPECT_FALSE(ParseHubConfig("http: {port: 70000}\n", "hub.yaml"));
  EXPECT_FALSE(ParseHubConfig("oci: {max_blob_size: -1}\n", "hub.yaml"));
  auto empty = ParseHubConfig("", "hub.yaml");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->data, DefaultDataDirectory());
  EXPECT_EQ(empty->http.port, 7400);
  EXPECT_EQ(empty->mqtt.broker, "");
  EXPECT_EQ(empty->delivery.offer_timeout, std::chrono::minutes(15));
}

TEST(HubConfig, MqttAndDeliveryPolicy) {
  auto c = ParseHubConfig(
      "mqtt: {broker: 'tcp://127.0.0.1:1883', prefix: site-a/airlock/v1, username: hub, "
      "password: pw}\n"
      "delivery: {offer_timeout: 90s, url_ttl: 10m, url_refresh_margin: 1m, max_retries: 3, "
      "jitter_ratio: 0.25}\n",
      "hub.yaml");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->mqtt.broker, "tcp://127.0.0.1:1883");
  EXPECT_EQ(c->mqtt.prefix, "site-a/airlock/v1");
  EXPECT_EQ(c->mqtt.username, "hub");
  EXPECT_EQ(c->delivery.offer_timeout, std::chrono::seconds(90));
  EXPECT_EQ(c->delivery.url_ttl, std::chrono::minutes(10));
  EXPECT_EQ(c->delivery.max_retries, 3u);
  EXPECT_EQ(c->delivery.jitter_ratio, 0.25);
  EXPECT_EQ(c->delivery.grant_timeout, std::chrono::seconds(60));  // the default
  EXPECT_TRUE(DefaultMqttClientId().starts_with("airlock-hub-"));
  auto typo = ParseHubConfig("delivery: {offer_timout: 1m}\n", "hub.yaml");
  ASSERT_FALSE(typo);
  EXPECT_EQ(typo.error().ToString(), "hub.yaml: delivery.offer_timout: unknown key");
  // A margin not below the URL lifetime, a URL lifetime above what pre-signing allows, a
  // duration that is not one.
  EXPECT_FALSE(ParseHubConfig("delivery: {url_ttl: 5m, url_refresh_margin: 5m}\n", "hub.yaml"));
  EXPECT_FALSE(ParseHubConfig("auth: {max_presign_ttl: 60}\ndelivery: {url_ttl: 2m, "
                              "url_refresh_margin: 1m}\n",
                              "hub.yaml"));
  EXPECT_FALSE(ParseHubConfig("delivery: {offer_timeout: soon}\n", "hub.yaml"));
  EXPECT_FALSE(ParseHubConfig("mqtt: {brokr: x}\n", "hub.yaml"));
}

}  // namespace
}  // namespace airlock::hub
