#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "core/encoding.hpp"
#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;
using std::chrono::seconds;

class RootTest : public TrustFixture {
 protected:
  // Root::FromJson on a root body after edit() changed it.
  template <typename Edit>
  Result<Root> FromEditedJson(Edit edit) {
    json body = MakeRoot().ToJson();
    edit(body);
    return Root::FromJson(body);
  }

  const std::string& RootId(int i) const { return root_keys[i].id(); }
  const std::string& PubId(int i) const { return publisher_keys[i].id(); }
};

TEST_F(RootTest, ToJsonFromJsonRoundTrip) {
  Root root = MakeRoot(2, 3);
  json body = root.ToJson();
  EXPECT_EQ(body["_type"], "root");
  EXPECT_EQ(body["spec_version"], kSpecVersion);
  EXPECT_EQ(body["expires"], FormatRfc3339(root.expires));
  EXPECT_EQ(body["keys"][RootId(0)]["keytype"], "ed25519");
  EXPECT_EQ(body["keys"][RootId(0)]["public"], HexEncode(root_keys[0].public_key().raw()));

  auto back = Root::FromJson(body);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->version, root.version);
  EXPECT_EQ(back->expires, root.expires);
  ASSERT_EQ(back->keys.size(), 6u);
  for (const auto& [id, key] : root.keys) {
    ASSERT_TRUE(back->keys.contains(id));
    EXPECT_EQ(back->keys.at(id).raw(), key.raw());
  }
  ASSERT_EQ(back->roles.size(), 2u);
  EXPECT_EQ(back->roles.at("root").threshold, 2);
  EXPECT_EQ(back->roles.at("publisher").threshold, 3);
  EXPECT_EQ(back->roles.at("publisher").keyids, root.roles.at("publisher").keyids);
  EXPECT_EQ(back->ToJson(), body);
}

TEST_F(RootTest, KeyIdMustBeTheSha256OfTheKey) {
  // Key 1's public key listed under key 0's id: one key must not pose as another.
  auto r = FromEditedJson([&](json& b) {
    b["keys"][RootId(0)]["public"] = HexEncode(root_keys[1].public_key().raw());
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().message().find("SHA-256"), std::string::npos) << r.error().message();

  // A made-up id for a real key.
  auto made_up =
      FromEditedJson([&](json& b) { b["keys"][std::string(64, 'a')] = b["keys"][RootId(0)]; });
  ASSERT_FALSE(made_up);
  EXPECT_EQ(made_up.error().code(), ErrorCode::kVerification);
}

TEST_F(RootTest, RoleNamingAnUnknownKeyIsRefused) {
  auto r = FromEditedJson(
      [&](json& b) { b["roles"]["publisher"]["keyids"].push_back(std::string(64, 'f')); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.error().message().find("publisher"), std::string::npos) << r.error().message();

  auto not_string = FromEditedJson([&](json& b) { b["roles"]["root"]["keyids"].push_back(5); });
  ASSERT_FALSE(not_string);
}

TEST_F(RootTest, ThresholdOutsideOneToKeyCountIsRefused) {
  for (json threshold : {json(4), json(0), json(-1), json(4294967297LL),
                         json(std::numeric_limits<std::uint64_t>::max())}) {
    auto r = FromEditedJson([&](json& b) { b["roles"]["publisher"]["threshold"] = threshold; });
    ASSERT_FALSE(r) << "threshold " << threshold;
    EXPECT_EQ(r.error().code(), ErrorCode::kVerification) << threshold;
    EXPECT_NE(r.error().message().find("threshold " + threshold.dump()), std::string::npos)
        << r.error().message();
  }
  auto as_string = FromEditedJson([&](json& b) { b["roles"]["publisher"]["threshold"] = "2"; });
  ASSERT_FALSE(as_string);
  EXPECT_EQ(as_string.error().code(), ErrorCode::kCorrupt);
}

TEST_F(RootTest, AKeyListedTwiceInARoleCountsOnceForTheThreshold) {
  // Threshold 2 with "two" keys that are the same key is really 1 key: refused.
  auto r = FromEditedJson([&](json& b) {
    b["roles"]["publisher"] = {{"keyids", {PubId(0), PubId(0)}}, {"threshold", 2}};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().message().find("1 distinct"), std::string::npos) << r.error().message();

  auto ok = FromEditedJson([&](json& b) {
    b["roles"]["publisher"] = {{"keyids", {PubId(0), PubId(0)}}, {"threshold", 1}};
  });
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->roles.at("publisher").keyids, std::vector<std::string>{PubId(0)});
}

TEST_F(RootTest, MissingRootRoleIsRefused) {
  auto r = FromEditedJson([&](json& b) { b["roles"].erase("root"); });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("\"root\" role"), std::string::npos) << r.error().message();
}

TEST_F(RootTest, WrongTypeIsRefused) {
  auto r = FromEditedJson([&](json& b) { b["_type"] = "release"; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().message().find("not a root"), std::string::npos);

  auto missing = FromEditedJson([&](json& b) { b.erase("_type"); });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kVerification);
}

TEST_F(RootTest, WrongSpecVersionIsUnsupported) {
  for (json v : {json(2), json(0), json("1"), json(nullptr)}) {
    auto r = FromEditedJson([&](json& b) { b["spec_version"] = v; });
    ASSERT_FALSE(r) << v;
    EXPECT_EQ(r.error().code(), ErrorCode::kUnsupported) << v;
  }
  auto missing = FromEditedJson([&](json& b) { b.erase("spec_version"); });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kUnsupported);
}

TEST_F(RootTest, MalformedFieldsAreRefused) {
  const std::vector<std::function<void(json&)>> edits = {
      [](json& b) { b.erase("version"); },
      [](json& b) { b["version"] = -1; },
      [](json& b) { b["version"] = "3"; },
      [](json& b) { b.erase("expires"); },
      [](json& b) { b["expires"] = "next year"; },
      [](json& b) { b["keys"] = json::array(); },
      [](json& b) { b.erase("roles"); },
      [&](json& b) { b["keys"][RootId(0)]["keytype"] = "rsa"; },
      [&](json& b) { b["keys"][RootId(0)]["public"] = "not hex"; },
      [&](json& b) { b["keys"][RootId(0)]["public"] = "abcd"; },  // 2 bytes, not 32
      [&](json& b) { b["keys"][RootId(0)].erase("public"); },
      [](json& b) { b["roles"]["publisher"].erase("keyids"); },
      [](json& b) { b["roles"]["publisher"]["keyids"] = "all"; },
      [](json& b) { b["roles"]["publisher"].erase("threshold"); },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    auto r = FromEditedJson(edits[i]);
    EXPECT_FALSE(r) << "edit " << i << " was accepted";
  }
}

TEST_F(RootTest, VerifyRootAcceptsThresholdSignedUnexpiredRoot) {
  Root root = MakeRoot(2, 2);
  SignedDocument doc = Reparse(SignedBy(root.ToJson(), {&root_keys[0], &root_keys[2]}));
  auto verified = VerifyRoot(doc, TestNow());
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_EQ(verified->version, root.version);
  EXPECT_EQ(verified->roles.at("publisher").keyids.size(), 3u);
}

TEST_F(RootTest, VerifyRootRefusesUnderThreshold) {
  Root root = MakeRoot(2, 2);
  SignedDocument one = Reparse(SignedBy(root.ToJson(), {&root_keys[1]}));
  auto r = VerifyRoot(one, TestNow());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().message().find("1 valid root signature(s), needs 2"), std::string::npos)
      << r.error().message();

  SignedDocument unsigned_doc = SignedDocument::Wrap(root.ToJson());
  EXPECT_FALSE(VerifyRoot(unsigned_doc, TestNow()));

  // Publisher keys are in the root but cannot sign for the root role.
  SignedDocument by_publishers =
      Reparse(SignedBy(root.ToJson(), {&publisher_keys[0], &publisher_keys[1]}));
  auto wrong_role = VerifyRoot(by_publishers, TestNow());
  ASSERT_FALSE(wrong_role);
  EXPECT_NE(wrong_role.error().message().find("not a root key"), std::string::npos)
      << wrong_role.error().message();

  // The properly signed root still verifies.
  EXPECT_TRUE(VerifyRoot(SignedBy(root.ToJson(), {&root_keys[0], &root_keys[1]}), TestNow()));
}

TEST_F(RootTest, VerifyRootRefusesExpiredRoot) {
  Root root = MakeRoot();
  SignedDocument doc = Reparse(SignedBy(root.ToJson(), {&root_keys[0], &root_keys[1]}));
  EXPECT_TRUE(VerifyRoot(doc, root.expires - seconds(1)));
  for (TimePoint now : {root.expires, root.expires + seconds(1), root.expires + seconds(86400)}) {
    auto r = VerifyRoot(doc, now);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
    EXPECT_NE(r.error().message().find("expired"), std::string::npos) << r.error().message();
  }
}

TEST_F(RootTest, VerifyRootRefusesBodyTamperedAfterSigning) {
  Root root = MakeRoot(2, 2);
  SignedDocument doc = SignedBy(root.ToJson(), {&root_keys[0], &root_keys[1]});
  const std::vector<std::function<void(json&)>> tampers = {
      [](json& s) { s["version"] = 99; },
      [](json& s) { s["expires"] = "2099-01-01T00:00:00Z"; },
      [](json& s) { s["roles"]["publisher"]["threshold"] = 1; },
      [&](json& s) {
        s["roles"]["publisher"]["keyids"].erase(0);
        s["roles"]["publisher"]["threshold"] = 1;
      },
      [](json& s) { s["extra"] = "field"; },
  };
  for (std::size_t i = 0; i < tampers.size(); ++i) {
    json j = AsJson(doc);
    tampers[i](j["signed"]);
    auto tampered = FromJson(j);
    ASSERT_TRUE(tampered) << tampered.error().ToString();
    auto r = VerifyRoot(*tampered, TestNow());
    ASSERT_FALSE(r) << "tamper " << i << " was accepted";
    EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  }
  EXPECT_TRUE(VerifyRoot(Reparse(doc), TestNow()));
}

TEST_F(RootTest, VerifyRootRefusesADifferentDocumentType) {
  SignedDocument doc = SignedBy(MakeRelease().ToJson(), {&root_keys[0], &root_keys[1]});
  auto r = VerifyRoot(doc, TestNow());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
}

// ---- rotation (UpdateRoot) ----

class RootRotationTest : public RootTest {
 protected:
  // The trusted root: version 3, root keys 0-2 (threshold 2), publisher keys 0-2 (threshold 2).
  Root trusted = MakeRoot();
  std::vector<PrivateKey> new_root_keys = GenerateKeys(2);

  // The next root: version trusted + 1, root keys replaced by new_root_keys (threshold 2).
  Root Next(const Root& before) const {
    Root next = before;
    next.version = before.version + 1;
    for (const auto& k : root_keys) {
      next.keys.erase(k.id());
    }
    RoleSpec role{{}, 2};
    for (const auto& k : new_root_keys) {
      next.keys.emplace(k.id(), k.public_key());
      role.keyids.push_back(k.id());
    }
    next.roles[std::string(kRoleRoot)] = role;
    return next;
  }
  // Signed by old root keys 0 and 1 and both new ones: what a rotation needs.
  SignedDocument SignedByOldAndNew(const Root& r) const {
    return Reparse(SignedBy(r.ToJson(), {&root_keys[0], &root_keys[1], &new_root_keys[0],
                                         &new_root_keys[1]}));
  }
};

TEST_F(RootRotationTest, ANewRootSignedByOldAndNewKeysIsTrusted) {
  Root next = Next(trusted);
  auto update = UpdateRoot(trusted, {SignedByOldAndNew(next)}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_EQ(update->root.version, 4);
  EXPECT_EQ(update->root.roles.at("root").keyids, next.roles.at("root").keyids);
  ASSERT_EQ(update->accepted.size(), 1u);
  EXPECT_EQ(update->accepted[0].body(), next.ToJson());
  // The root keys changed, the publishers did not: channel versions stay trusted.
  EXPECT_EQ(update->rotated_roles, (std::set<std::string, std::less<>>{"root"}));
  EXPECT_FALSE(update->channel_keys_rotated);
}

TEST_F(RootRotationTest, OnlyTheNewKeysAreNotEnough) {
  Root next = Next(trusted);
  auto doc = Reparse(SignedBy(next.ToJson(), {&new_root_keys[0], &new_root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_FALSE(update);
  EXPECT_EQ(update.error().code(), ErrorCode::kVerification);
  EXPECT_NE(update.error().ToString().find("by the keys of the root it replaces"),
            std::string::npos)
      << update.error().ToString();
}

TEST_F(RootRotationTest, OneOldKeyIsUnderTheOldThreshold) {
  Root next = Next(trusted);
  auto doc = Reparse(
      SignedBy(next.ToJson(), {&root_keys[0], &new_root_keys[0], &new_root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_FALSE(update);
  EXPECT_NE(update.error().ToString().find("by the keys of the root it replaces"),
            std::string::npos);
}

TEST_F(RootRotationTest, OnlyTheOldKeysAreNotEnough) {
  // Whoever holds the old keys alone cannot hand the root to keys nobody vouched for.
  Root next = Next(trusted);
  auto doc = Reparse(SignedBy(next.ToJson(), {&root_keys[0], &root_keys[1], &new_root_keys[0]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_FALSE(update);
  EXPECT_NE(update.error().ToString().find("by its own keys"), std::string::npos)
      << update.error().ToString();
}

TEST_F(RootRotationTest, ABodyChangedAfterSigningIsRefused) {
  Root next = Next(trusted);
  SignedDocument doc = SignedByOldAndNew(next);
  json body = doc.body();
  body["expires"] = FormatRfc3339(TestNow() + std::chrono::hours(24 * 3650));
  auto text = doc.Serialize();
  ASSERT_TRUE(text);
  json whole = json::parse(*text);
  whole["signed"] = body;
  auto tampered = SignedDocument::Parse(whole.dump());
  ASSERT_TRUE(tampered);
  EXPECT_FALSE(UpdateRoot(trusted, {*tampered}, TestNow()));
}

TEST_F(RootRotationTest, AVersionCannotBeSkipped) {
  Root next = Next(trusted);
  next.version = trusted.version + 2;
  auto update = UpdateRoot(trusted, {SignedByOldAndNew(next)}, TestNow());
  ASSERT_FALSE(update);
  EXPECT_NE(update.error().message().find("version 4 is missing"), std::string::npos)
      << update.error().ToString();
}

TEST_F(RootRotationTest, AChainIsWalkedInVersionOrderAndMayPassExpiredRoots) {
  // Version 4 expired meanwhile (a device that was off); version 5 is current.
  Root v4 = Next(trusted);
  v4.expires = TestNow() - std::chrono::hours(1);
  SignedDocument doc4 = SignedByOldAndNew(v4);
  Root v5 = v4;
  v5.version = 5;
  v5.expires = TestNow() + std::chrono::hours(24);
  SignedDocument doc5 = Reparse(SignedBy(v5.ToJson(), {&new_root_keys[0], &new_root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc5, doc4}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_EQ(update->root.version, 5);
  ASSERT_EQ(update->accepted.size(), 2u);
  EXPECT_EQ(update->accepted[0].body()["version"], 4);
  EXPECT_EQ(update->accepted[1].body()["version"], 5);
}

TEST_F(RootRotationTest, TheNewestRootMustNotHaveExpired) {
  Root next = Next(trusted);
  next.expires = TestNow();
  auto update = UpdateRoot(trusted, {SignedByOldAndNew(next)}, TestNow());
  ASSERT_FALSE(update);
  EXPECT_NE(update.error().message().find("expired"), std::string::npos);
}

TEST_F(RootRotationTest, RootsAlreadyTrustedAreSkipped) {
  SignedDocument same = Reparse(SignedBy(trusted.ToJson(), {&root_keys[0], &root_keys[1]}));
  Root older = trusted;
  older.version = 2;
  SignedDocument old_doc = Reparse(SignedBy(older.ToJson(), {&root_keys[0], &root_keys[1]}));
  auto update = UpdateRoot(trusted, {same, old_doc}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_EQ(update->root.version, trusted.version);
  EXPECT_TRUE(update->accepted.empty());
  EXPECT_TRUE(update->rotated_roles.empty());
}

TEST_F(RootRotationTest, APublisherKeyRemovedForgetsTheChannelVersions) {
  // Publisher key 2 was stolen: the next root drops it. The publishers sign channels here (no
  // release-manager role), so the devices forget the channel versions they trust (fast-forward
  // recovery: the thief may have signed a channel with a huge version).
  Root next = trusted;
  next.version = 4;
  auto& publishers = next.roles.at(std::string(kRolePublisher));
  publishers.keyids.pop_back();
  next.keys.erase(publisher_keys[2].id());
  auto doc = Reparse(SignedBy(next.ToJson(), {&root_keys[0], &root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_EQ(update->rotated_roles, (std::set<std::string, std::less<>>{"publisher"}));
  EXPECT_TRUE(update->channel_keys_rotated);
}

TEST_F(RootRotationTest, AKeyAddedOrAThresholdRaisedForgetsNothing) {
  Root next = trusted;
  next.version = 4;
  auto extra = PrivateKey::Generate();
  ASSERT_TRUE(extra);
  next.keys.emplace(extra->id(), extra->public_key());
  auto& publishers = next.roles.at(std::string(kRolePublisher));
  publishers.keyids.push_back(extra->id());
  publishers.threshold = 3;
  auto doc = Reparse(SignedBy(next.ToJson(), {&root_keys[0], &root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_TRUE(update->rotated_roles.empty());
  EXPECT_FALSE(update->channel_keys_rotated);
}

TEST_F(RootRotationTest, AReleaseManagerRoleTakingOverChannelsForgetsTheirVersions) {
  Root next = trusted;
  next.version = 4;
  auto manager = PrivateKey::Generate();
  ASSERT_TRUE(manager);
  next.keys.emplace(manager->id(), manager->public_key());
  next.roles.emplace(std::string(kRoleReleaseManager), RoleSpec{{manager->id()}, 1});
  auto doc = Reparse(SignedBy(next.ToJson(), {&root_keys[0], &root_keys[1]}));
  auto update = UpdateRoot(trusted, {doc}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_TRUE(update->channel_keys_rotated);
}

}  // namespace
}  // namespace airlock::trust
