#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <string>

#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;
using std::chrono::seconds;

void ExpectSameRelease(const Release& a, const Release& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.release_counter, b.release_counter);
  EXPECT_EQ(a.index_digest, b.index_digest);
  EXPECT_EQ(a.index_size, b.index_size);
  EXPECT_EQ(a.index_media_type, b.index_media_type);
  EXPECT_EQ(a.platforms, b.platforms);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.expires, b.expires);
}

class ReleaseTest : public TrustFixture {
 protected:
  Root root_ = MakeRoot(2, 2);

  SignedDocument SignedRelease(const Release& r) const {
    return Reparse(SignedBy(r.ToJson(), {&publisher_keys[0], &publisher_keys[2]}));
  }
};

TEST_F(ReleaseTest, ToJsonFromJsonRoundTrip) {
  Release r = MakeRelease(42);
  json body = r.ToJson();
  EXPECT_EQ(body["_type"], "release");
  EXPECT_EQ(body["spec_version"], kSpecVersion);
  EXPECT_EQ(body["release_counter"], 42);
  EXPECT_EQ(body["index"]["digest"], r.index_digest.ToString());
  EXPECT_EQ(body["index"]["size"], 1234);
  EXPECT_EQ(body["index"]["mediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_EQ(body["platforms"], json({"linux/amd64", "linux/arm64/v8"}));
  EXPECT_EQ(body["created"], "2026-11-22T09:00:00Z");

  auto back = Release::FromJson(body);
  ASSERT_TRUE(back) << back.error().ToString();
  ExpectSameRelease(*back, r);
  EXPECT_EQ(back->ToJson(), body);
}

TEST_F(ReleaseTest, LargeCountersAndSizesRoundTrip) {
  Release r = MakeRelease(std::uint64_t{1} << 40);
  r.index_size = std::uint64_t{5} << 33;  // over 4 GiB
  auto back = Release::FromJson(r.ToJson());
  ASSERT_TRUE(back);
  ExpectSameRelease(*back, r);
}

TEST_F(ReleaseTest, FromJsonRefusesMalformedBodies) {
  const std::vector<std::function<void(json&)>> edits = {
      [](json& b) { b.erase("model"); },
      [](json& b) { b["model"] = 7; },
      [](json& b) { b.erase("version"); },
      [](json& b) { b["release_counter"] = -1; },
      [](json& b) { b["release_counter"] = "5"; },
      [](json& b) { b.erase("created"); },
      [](json& b) { b["expires"] = "soon"; },
      [](json& b) { b.erase("index"); },
      [](json& b) { b["index"] = "sha256:abc"; },
      [](json& b) { b["index"].erase("mediaType"); },
      [](json& b) { b["index"]["digest"] = "sha512:" + std::string(128, 'a'); },
      [](json& b) {
        std::string d = b["index"]["digest"];
        for (std::size_t k = 7; k < d.size(); ++k) {  // the hex after "sha256:"
          d[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(d[k])));
        }
        b["index"]["digest"] = d;
      },
      [](json& b) { b["index"]["size"] = -5; },
      [](json& b) { b["index"].erase("size"); },
      [](json& b) { b["platforms"] = "linux/amd64"; },
      [](json& b) {
        b["platforms"] = json({"linux/amd64", 3});
      },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    json body = MakeRelease().ToJson();
    edits[i](body);
    auto r = Release::FromJson(body);
    EXPECT_FALSE(r) << "edit " << i << " was accepted: " << body.dump();
  }
  json wrong_type = MakeRelease().ToJson();
  wrong_type["_type"] = "root";
  auto r = Release::FromJson(wrong_type);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
}

TEST_F(ReleaseTest, VerifyReleaseAcceptsAGoodRelease) {
  Release r = MakeRelease(5);
  auto verified = VerifyRelease(SignedRelease(r), root_, TestNow(), 4);
  ASSERT_TRUE(verified) << verified.error().ToString();
  ExpectSameRelease(*verified, r);
}

TEST_F(ReleaseTest, VerifyReleaseRefusesExpired) {
  Release r = MakeRelease(5);
  SignedDocument doc = SignedRelease(r);
  EXPECT_TRUE(VerifyRelease(doc, root_, r.expires - seconds(1), 0));
  for (TimePoint now : {r.expires, r.expires + seconds(3600)}) {
    auto v = VerifyRelease(doc, root_, now, 0);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code(), ErrorCode::kVerification);
    EXPECT_NE(v.error().message().find("expired"), std::string::npos) << v.error().message();
  }
}

TEST_F(ReleaseTest, CounterBelowTrustedIsRefusedEqualIsAccepted) {
  std::uint64_t trusted = 5;
  SignedDocument older = SignedRelease(MakeRelease(4));
  auto rollback = VerifyRelease(older, root_, TestNow(), trusted);
  ASSERT_FALSE(rollback);
  EXPECT_EQ(rollback.error().code(), ErrorCode::kVerification);
  EXPECT_NE(rollback.error().message().find("below the trusted counter 5"), std::string::npos)
      << rollback.error().message();

  // Re-verifying the release already trusted (same counter) is fine, and so is a newer one.
  EXPECT_TRUE(VerifyRelease(SignedRelease(MakeRelease(5)), root_, TestNow(), trusted));
  auto newer = VerifyRelease(SignedRelease(MakeRelease(6)), root_, TestNow(), trusted);
  ASSERT_TRUE(newer);
  EXPECT_EQ(newer->release_counter, 6u);
}

TEST_F(ReleaseTest, VerifyReleaseRefusesUnderThreshold) {
  Release r = MakeRelease(5);
  SignedDocument one = Reparse(SignedBy(r.ToJson(), {&publisher_keys[1]}));
  auto v = VerifyRelease(one, root_, TestNow(), 0);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::kVerification);
  EXPECT_NE(v.error().message().find("1 valid publisher signature(s), needs 2"), std::string::npos)
      << v.error().message();

  // Root keys cannot stand in for publishers.
  SignedDocument by_root = Reparse(SignedBy(r.ToJson(), {&root_keys[0], &root_keys[1]}));
  EXPECT_FALSE(VerifyRelease(by_root, root_, TestNow(), 0));

  EXPECT_TRUE(VerifyRelease(SignedRelease(r), root_, TestNow(), 0));
}

TEST_F(ReleaseTest, FieldsTamperedAfterSigningAreRefused) {
  SignedDocument doc = SignedRelease(MakeRelease(5));
  const std::vector<std::function<void(json&)>> tampers = {
      [](json& s) { s["index"]["digest"] = Sha256Of("evil index").ToString(); },
      [](json& s) { s["index"]["size"] = 999999; },
      [](json& s) { s["release_counter"] = 6; },
      [](json& s) { s["expires"] = "2099-01-01T00:00:00Z"; },
      [](json& s) { s["platforms"].push_back("linux/riscv64"); },
      [](json& s) { s["model"] = "other-model"; },
      [](json& s) { s["version"] = "1.4.1"; },
  };
  for (std::size_t i = 0; i < tampers.size(); ++i) {
    json j = AsJson(doc);
    tampers[i](j["signed"]);
    auto tampered = FromJson(j);
    ASSERT_TRUE(tampered);
    auto v = VerifyRelease(*tampered, root_, TestNow(), 0);
    ASSERT_FALSE(v) << "tamper " << i << " was accepted";
    EXPECT_EQ(v.error().code(), ErrorCode::kVerification);
    EXPECT_NE(v.error().message().find("0 valid publisher signature(s)"), std::string::npos)
        << v.error().message();
  }
  // The untouched document still verifies.
  EXPECT_TRUE(VerifyRelease(doc, root_, TestNow(), 0));
}

TEST_F(ReleaseTest, ARootDocumentIsNotARelease) {
  SignedDocument root_doc = SignedBy(root_.ToJson(), {&publisher_keys[0], &publisher_keys[1]});
  auto v = VerifyRelease(root_doc, root_, TestNow(), 0);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::kVerification);
  EXPECT_NE(v.error().message().find("not a release"), std::string::npos);
}

TEST_F(ReleaseTest, ReleaseVerifiesAgainstARootThatTravelledAsADocument) {
  // The whole chain as a device sees it: pinned root document, then a release.
  SignedDocument root_doc = Reparse(SignedBy(root_.ToJson(), {&root_keys[0], &root_keys[1]}));
  auto root = VerifyRoot(root_doc, TestNow());
  ASSERT_TRUE(root) << root.error().ToString();
  auto v = VerifyRelease(SignedRelease(MakeRelease(1)), *root, TestNow(), 0);
  EXPECT_TRUE(v) << v.error().ToString();
}

}  // namespace
}  // namespace airlock::trust
