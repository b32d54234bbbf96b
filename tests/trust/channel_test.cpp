#include <gtest/gtest.h>

#include <string>

#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;

class ChannelTest : public TrustFixture {
 protected:
  std::vector<PrivateKey> manager_keys = GenerateKeys(3);

  // The fixture's root plus a release-manager role (2 of 3).
  Root RootWithManagers() const {
    Root root = MakeRoot(2, 1);
    RoleSpec managers;
    for (const auto& k : manager_keys) {
      root.keys.emplace(k.id(), k.public_key());
      managers.keyids.push_back(k.id());
    }
    managers.threshold = 2;
    root.roles.emplace(std::string(kRoleReleaseManager), managers);
    return root;
  }

  static Channel MakeChannel(std::uint64_t version) {
    Channel c;
    c.model = "defect-detector";
    c.name = "production";
    c.version = version;
    c.expires = TestNow() + std::chrono::hours(24 * 30);
    c.releases.push_back({"1.4.0", 5, Sha256Of("release 1.4.0")});
    c.releases.push_back({"1.3.2", 4, Sha256Of("release 1.3.2")});
    return c;
  }
};

TEST_F(ChannelTest, RoundTripsThroughJson) {
  Channel c = MakeChannel(7);
  json body = c.ToJson();
  EXPECT_EQ(body["_type"], "channel");
  EXPECT_EQ(body["channel"], "production");
  EXPECT_EQ(body["releases"][0]["version"], "1.4.0");
  auto back = Channel::FromJson(body);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->model, c.model);
  EXPECT_EQ(back->version, 7u);
  EXPECT_EQ(back->expires, c.expires);
  ASSERT_EQ(back->releases.size(), 2u);
  EXPECT_EQ(back->releases[1].release, c.releases[1].release);
  EXPECT_EQ(back->releases[1].release_counter, 4u);
}

TEST_F(ChannelTest, RefusesMalformedBodies) {
  json no_releases = MakeChannel(1).ToJson();
  no_releases["releases"] = json::array();
  EXPECT_FALSE(Channel::FromJson(no_releases));
  json twice = MakeChannel(1).ToJson();
  twice["releases"][1]["release"] = twice["releases"][0]["release"];
  auto r = Channel::FromJson(twice);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("twice"), std::string::npos);
  json bad_name = MakeChannel(1).ToJson();
  bad_name["channel"] = "../prod";
  EXPECT_FALSE(Channel::FromJson(bad_name));
  json bad_digest = MakeChannel(1).ToJson();
  bad_digest["releases"][0]["release"] = "sha256:abc";
  EXPECT_FALSE(Channel::FromJson(bad_digest));
  json release = MakeRelease().ToJson();
  EXPECT_EQ(Channel::FromJson(release).error().code(), ErrorCode::kVerification);
}

TEST_F(ChannelTest, ChannelNames) {
  EXPECT_TRUE(ValidChannelName("production"));
  EXPECT_TRUE(ValidChannelName("line-3-canary"));
  EXPECT_FALSE(ValidChannelName(""));
  EXPECT_FALSE(ValidChannelName("-x"));
  EXPECT_FALSE(ValidChannelName("Production"));
  EXPECT_FALSE(ValidChannelName("a/b"));
  EXPECT_FALSE(ValidChannelName(std::string(64, 'a')));
}

TEST_F(ChannelTest, NeedsTheReleaseManagerThreshold) {
  Root root = RootWithManagers();
  EXPECT_EQ(ChannelSigningRole(root), kRoleReleaseManager);
  json body = MakeChannel(3).ToJson();

  SignedDocument one = Reparse(SignedBy(body, {&manager_keys[0]}));
  auto tally = TallySignatures(one, root, kRoleReleaseManager);
  ASSERT_TRUE(tally);
  EXPECT_EQ(tally->valid, 1);
  EXPECT_EQ(tally->threshold, 2);
  EXPECT_FALSE(VerifyChannel(one, root, TestNow(), 2));

  // The same key twice is one signature; a publisher key is not a release-manager key.
  SignedDocument twice = Reparse(SignedBy(body, {&manager_keys[0], &manager_keys[0]}));
  EXPECT_FALSE(VerifyChannel(twice, root, TestNow(), 2));
  SignedDocument publisher = Reparse(SignedBy(body, {&manager_keys[0], &publisher_keys[0]}));
  auto refused = VerifyChannel(publisher, root, TestNow(), 2);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("is not a release-manager key"), std::string::npos);

  // A second approver signs the same document, one after the other.
  SignedDocument approved = one;
  ASSERT_TRUE(approved.Sign(manager_keys[2]));
  approved = Reparse(approved);
  auto ok = VerifyChannel(approved, root, TestNow(), 2);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->releases[0].version, "1.4.0");
}

TEST_F(ChannelTest, PublishersSignWhenTheRootHasNoReleaseManagers) {
  Root root = MakeRoot(2, 1);
  EXPECT_EQ(ChannelSigningRole(root), kRolePublisher);
  SignedDocument doc = Reparse(SignedBy(MakeChannel(1).ToJson(), {&publisher_keys[1]}));
  EXPECT_TRUE(VerifyChannel(doc, root, TestNow(), 0));
}

TEST_F(ChannelTest, RefusesRollbackReplayAndExpiry) {
  Root root = RootWithManagers();
  SignedDocument v3 =
      Reparse(SignedBy(MakeChannel(3).ToJson(), {&manager_keys[0], &manager_keys[1]}));
  EXPECT_TRUE(VerifyChannel(v3, root, TestNow(), 2));
  auto replay = VerifyChannel(v3, root, TestNow(), 3);
  ASSERT_FALSE(replay);
  EXPECT_NE(replay.error().message().find("not above the trusted version 3"), std::string::npos);
  EXPECT_TRUE(VerifyChannel(v3, root, TestNow(), 3, /*allow_equal=*/true));
  EXPECT_FALSE(VerifyChannel(v3, root, TestNow(), 4, /*allow_equal=*/true));
  auto late = VerifyChannel(v3, root, TestNow() + std::chrono::hours(24 * 31), 0);
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message().find("expired"), std::string::npos);
}

TEST_F(ChannelTest, ReleaseIdIgnoresSignatures) {
  json body = MakeRelease().ToJson();
  SignedDocument one = SignedBy(body, {&publisher_keys[0]});
  SignedDocument two = SignedBy(body, {&publisher_keys[0], &publisher_keys[1]});
  auto a = ReleaseId(one), b = ReleaseId(two);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  body["version"] = "1.4.1";
  EXPECT_NE(*ReleaseId(SignedBy(body, {&publisher_keys[0]})), *a);
}

}  // namespace
}  // namespace airlock::trust
