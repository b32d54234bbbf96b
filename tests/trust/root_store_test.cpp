#include "trust/root_store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/fs.hpp"
#include "support/test_support.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

namespace fs = std::filesystem;

// A verifier's files: the pinned root (version 3) and the directory of its rotations.
class RootStoreTest : public TrustFixture {
 protected:
  void SetUp() override {
    pinned_root = MakeRoot();
    auto text = SignedBy(pinned_root.ToJson(), {&root_keys[0], &root_keys[1]}).Serialize();
    ASSERT_TRUE(text);
    ASSERT_TRUE(WriteFileAtomic(pinned, *text));
  }

  // The next root after before, with publisher key 2 dropped, signed by root keys 0 and 1.
  SignedDocument Next(const Root& before) const {
    Root next = before;
    next.version = before.version + 1;
    next.expires = TestNow() + std::chrono::hours(24 * 400);
    auto& publishers = next.roles.at(std::string(kRolePublisher));
    std::erase(publishers.keyids, publisher_keys[2].id());
    next.keys.erase(publisher_keys[2].id());
    return Reparse(SignedBy(next.ToJson(), {&root_keys[0], &root_keys[1]}));
  }

  testing::TempDir tmp;
  fs::path pinned = tmp / "root.json";
  fs::path dir = tmp / "roots";
  Root pinned_root;
};

TEST_F(RootStoreTest, WithoutRotationsThePinnedRootIsTrusted) {
  auto trusted = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_TRUE(trusted) << trusted.error().ToString();
  EXPECT_EQ(trusted->root.version, 3);
  EXPECT_TRUE(trusted->rotations.empty());
  EXPECT_EQ(trusted->document.body(), pinned_root.ToJson());
}

TEST_F(RootStoreTest, AnAcceptedRotationIsPersistedAndTrustedAfterARestart) {
  auto trusted = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_TRUE(trusted);
  auto update = AcceptRootRotations(*trusted, dir, {Next(pinned_root)}, TestNow());
  ASSERT_TRUE(update) << update.error().ToString();
  EXPECT_TRUE(update->channel_keys_rotated);
  EXPECT_EQ(trusted->root.version, 4);
  EXPECT_TRUE(fs::exists(dir / "4.root.json"));

  auto again = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->root.version, 4);
  ASSERT_EQ(again->rotations.size(), 1u);
  EXPECT_FALSE(again->root.keys.contains(publisher_keys[2].id()));
}

TEST_F(RootStoreTest, ARefusedRotationWritesNothingAndChangesNothing) {
  auto trusted = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_TRUE(trusted);
  Root next = pinned_root;
  next.version = 4;
  // Signed by one root key: under the threshold of 2.
  auto doc = Reparse(SignedBy(next.ToJson(), {&root_keys[0]}));
  EXPECT_FALSE(AcceptRootRotations(*trusted, dir, {doc}, TestNow()));
  EXPECT_EQ(trusted->root.version, 3);
  EXPECT_TRUE(trusted->rotations.empty());
  EXPECT_FALSE(fs::exists(dir / "4.root.json"));
  // The next good one still goes through.
  ASSERT_TRUE(AcceptRootRotations(*trusted, dir, {Next(pinned_root)}, TestNow()));
  EXPECT_EQ(trusted->root.version, 4);
}

TEST_F(RootStoreTest, ADamagedRotationFileIsAnErrorNotAnOlderRoot) {
  ASSERT_TRUE(MakeDirectories(dir));
  ASSERT_TRUE(WriteFileAtomic(dir / "4.root.json", "{\"signed\": "));
  auto trusted = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_FALSE(trusted);
  EXPECT_NE(trusted.error().ToString().find("4.root.json"), std::string::npos)
      << trusted.error().ToString();
}

TEST_F(RootStoreTest, AnExpiredPinnedRootIsReplacedByAValidRotation) {
  // The pinned root expired meanwhile; the rotation accepted before it did is what counts.
  auto trusted = LoadTrustedRoot(pinned, dir, TestNow());
  ASSERT_TRUE(trusted);
  ASSERT_TRUE(AcceptRootRotations(*trusted, dir, {Next(pinned_root)}, TestNow()));
  TimePoint later = pinned_root.expires + std::chrono::hours(1);
  auto again = LoadTrustedRoot(pinned, dir, later);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->root.version, 4);
  // Without the rotation, the expired root is refused.
  fs::remove_all(dir);
  EXPECT_FALSE(LoadTrustedRoot(pinned, dir, later));
}

}  // namespace
}  // namespace airlock::trust
