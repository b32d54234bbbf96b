#include <gtest/gtest.h>

#include <string>

#include "core/encoding.hpp"
#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;

class ThresholdTest : public TrustFixture {
 protected:
  json body_ = MakeRelease().ToJson();
};

TEST_F(ThresholdTest, TwoOfThreeIsEnough) {
  Root root = MakeRoot(2, 2);
  for (auto pair : {std::pair{0, 1}, std::pair{0, 2}, std::pair{1, 2}}) {
    SignedDocument doc =
        Reparse(SignedBy(body_, {&publisher_keys[pair.first], &publisher_keys[pair.second]}));
    auto st = CheckThreshold(doc, root, kRolePublisher);
    EXPECT_TRUE(st) << st.error().ToString();
  }
  SignedDocument all =
      Reparse(SignedBy(body_, {&publisher_keys[0], &publisher_keys[1], &publisher_keys[2]}));
  EXPECT_TRUE(CheckThreshold(all, root, kRolePublisher));
}

TEST_F(ThresholdTest, OneOfTwoNeededIsRefusedWithCounts) {
  Root root = MakeRoot(2, 2);
  SignedDocument doc = Reparse(SignedBy(body_, {&publisher_keys[1]}));
  auto st = CheckThreshold(doc, root, kRolePublisher);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kVerification);
  EXPECT_NE(st.error().message().find("release document has 1 valid publisher signature(s), "
                                      "needs 2"),
            std::string::npos)
      << st.error().message();

  auto none = CheckThreshold(SignedDocument::Wrap(body_), root, kRolePublisher);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("0 valid"), std::string::npos);
}

TEST_F(ThresholdTest, SameKeySigningTwiceCountsOnce) {
  Root root = MakeRoot(2, 2);
  SignedDocument once = SignedBy(body_, {&publisher_keys[0]});
  json j = AsJson(once);
  ASSERT_EQ(j["signatures"].size(), 1u);
  j["signatures"].push_back(j["signatures"][0]);  // the very same valid signature again
  auto doubled = FromJson(j);
  ASSERT_TRUE(doubled);
  ASSERT_EQ(doubled->signatures().size(), 2u);

  auto st = CheckThreshold(*doubled, root, kRolePublisher);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kVerification);
  EXPECT_NE(st.error().message().find("1 valid publisher signature(s), needs 2"), std::string::npos)
      << st.error().message();
  EXPECT_NE(st.error().message().find("more than once"), std::string::npos) << st.error().message();

  // Any number of copies is still one key.
  json j3 = AsJson(once);
  for (int i = 0; i < 3; ++i) {
    j3["signatures"].push_back(j3["signatures"][0]);
  }
  EXPECT_FALSE(CheckThreshold(FromJson(j3).value(), root, kRolePublisher));

  // A second distinct key makes it good.
  ASSERT_TRUE(doubled->Sign(publisher_keys[2]));
  EXPECT_TRUE(CheckThreshold(*doubled, root, kRolePublisher));
}

TEST_F(ThresholdTest, SignaturesByKeysOutsideTheRoleAreIgnored) {
  Root root = MakeRoot(2, 2);
  PrivateKey stranger = PrivateKey::Generate().value();
  // One publisher, plus a root key (in the root, wrong role) and a stranger (not in the root).
  SignedDocument doc = Reparse(SignedBy(body_, {&publisher_keys[0], &root_keys[0], &stranger}));
  auto st = CheckThreshold(doc, root, kRolePublisher);
  ASSERT_FALSE(st);
  const std::string& msg = st.error().message();
  EXPECT_NE(msg.find("1 valid publisher signature(s), needs 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key " + root_keys[0].id().substr(0, 12) + "… is not a publisher key"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("key " + stranger.id().substr(0, 12) + "… is not a publisher key"),
            std::string::npos)
      << msg;

  // Ignored, not fatal: with a second publisher the same document passes.
  SignedDocument more = doc;
  ASSERT_TRUE(more.Sign(publisher_keys[1]));
  EXPECT_TRUE(CheckThreshold(more, root, kRolePublisher));
}

TEST_F(ThresholdTest, InvalidSignaturesAreIgnored) {
  Root root = MakeRoot(2, 2);
  SignedDocument good = SignedBy(body_, {&publisher_keys[0]});
  json j = AsJson(good);
  // Key 1's id with a signature that does not verify (key 0's signature copied over).
  j["signatures"].push_back(
      {{"keyid", publisher_keys[1].id()}, {"sig", j["signatures"][0]["sig"]}});
  // Key 2's id with garbage of the wrong length.
  j["signatures"].push_back({{"keyid", publisher_keys[2].id()}, {"sig", Base64Encode("short")}});
  auto doc = FromJson(j);
  ASSERT_TRUE(doc);
  auto st = CheckThreshold(*doc, root, kRolePublisher);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("1 valid publisher signature(s)"), std::string::npos);
  EXPECT_NE(st.error().message().find(publisher_keys[1].id().substr(0, 12) + "… does not verify"),
            std::string::npos)
      << st.error().message();

  // With a threshold of 1 the one valid signature is enough; the bad ones do not spoil it.
  Root lenient = MakeRoot(2, 1);
  EXPECT_TRUE(CheckThreshold(*doc, lenient, kRolePublisher));
}

TEST_F(ThresholdTest, SignatureOverADifferentBodyDoesNotCount) {
  Root root = MakeRoot(2, 1);
  json other = body_;
  other["version"] = "9.9.9";
  SignedDocument signed_other = SignedBy(other, {&publisher_keys[0]});
  json j = AsJson(SignedDocument::Wrap(body_));
  j["signatures"] = AsJson(signed_other)["signatures"];
  auto spliced = FromJson(j);
  ASSERT_TRUE(spliced);
  EXPECT_FALSE(CheckThreshold(*spliced, root, kRolePublisher));
}

TEST_F(ThresholdTest, UnknownRoleIsRefused) {
  Root root = MakeRoot(2, 2);
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0], &publisher_keys[1]});
  auto st = CheckThreshold(doc, root, kRoleReleaseManager);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kVerification);
  EXPECT_NE(st.error().message().find("release-manager"), std::string::npos);
}

TEST_F(ThresholdTest, SignaturesSurviveReformatting) {
  // Signatures cover the canonical body, so whitespace and key order in transit do not matter.
  Root root = MakeRoot(2, 2);
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0], &publisher_keys[1]});
  auto pretty = SignedDocument::Parse(AsJson(doc).dump(2));
  ASSERT_TRUE(pretty);
  EXPECT_TRUE(CheckThreshold(*pretty, root, kRolePublisher));
}

}  // namespace
}  // namespace airlock::trust

namespace airlock::trust {
namespace {

TEST(CanonicalFormTest, ABodyWithoutOneIsAVerificationFailure) {
  auto key = PrivateKey::Generate().value();
  Root root;
  root.expires = TestNow() + std::chrono::hours(24);
  root.keys.emplace(key.id(), key.public_key());
  root.roles["root"] = {{key.id()}, 1};
  root.roles["publisher"] = {{key.id()}, 1};
  // A float cannot be canonicalised, so nothing Airlock made can carry one.
  std::string text = R"({"signed": {"_type": "release", "note": 1.5}, "signatures": [{"keyid": ")" +
                     key.id() + R"(", "sig": ")" + Base64Encode(std::string(64, '\0')) + R"("}]})";
  auto doc = SignedDocument::Parse(text).value();
  auto r = CheckThreshold(doc, root, kRolePublisher);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().message().find("cannot have been signed"), std::string::npos);
}

}  // namespace
}  // namespace airlock::trust
