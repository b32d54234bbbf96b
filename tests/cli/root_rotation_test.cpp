// `airlock root rotate` and `airlock root sign` as a user runs them (docs/trust.md, "Rotating the
// root"): a publisher replaced, then the root keys themselves, signed by the old and new holders.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "core/keys.hpp"
#include "pkg/fixture.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class RootRotationCli : public ::testing::Test {
 protected:
  CommandResult Airlock(std::vector<std::string> args) { return RunAirlock(args, tmp_.path()); }

  std::string KeyId(const std::string& pub) {
    return PublicKey::Load(tmp_ / pub).value().id();
  }
  json Signed(const std::string& file) {
    return json::parse(ReadFile(tmp_ / file).value())["signed"];
  }

  void SetUp() override {
    for (const char* k : {"root-a", "root-b", "alice", "carol"}) {
      ASSERT_EQ(Airlock({"keygen", std::string("keys/") + k}).exit_code, 0);
    }
    auto init = Airlock({"root", "init", "--root-key", "keys/root-a.key", "--publisher",
                         "keys/alice.pub", "-o", "root.json"});
    ASSERT_EQ(init.exit_code, 0) << init.err;
  }

  TempDir tmp_;
};

TEST_F(RootRotationCli, APublisherIsReplacedAndTheRootKeysHandedOver) {
  // alice's key is replaced by carol's: the root key alone signs, as version 1 asks.
  auto two = Airlock({"root", "rotate", "--from", "root.json", "--publisher", "keys/carol.pub",
                      "-k", "keys/root-a.key", "-o", "root.2.json"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("root version 2"), std::string::npos) << two.err;
  EXPECT_NE(two.err.find("the rotation is complete"), std::string::npos) << two.err;
  json body = Signed("root.2.json");
  EXPECT_EQ(body["version"], 2);
  EXPECT_EQ(body["roles"]["publisher"]["keyids"], json::array({KeyId("keys/carol.pub")}));
  EXPECT_FALSE(body["keys"].contains(KeyId("keys/alice.pub")));

  // The root keys go to root-b: signed by root-a alone it is not valid yet...
  auto three = Airlock({"root", "rotate", "--from", "root.2.json", "--root-key", "keys/root-b.pub",
                        "-k", "keys/root-a.key", "-o", "root.3.json"});
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_NE(three.err.find("not yet a valid rotation"), std::string::npos) << three.err;
  EXPECT_NE(three.err.find("by its own keys"), std::string::npos) << three.err;
  // ...until root-b's holder signs it too.
  auto sign = Airlock({"root", "sign", "root.3.json", "--from", "root.2.json", "-k",
                       "keys/root-b.key"});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  EXPECT_NE(sign.err.find("2 signature(s)"), std::string::npos) << sign.err;
  EXPECT_NE(sign.err.find("the rotation is complete"), std::string::npos) << sign.err;
  body = Signed("root.3.json");
  EXPECT_EQ(body["roles"]["root"]["keyids"], json::array({KeyId("keys/root-b.pub")}));
  EXPECT_FALSE(body["keys"].contains(KeyId("keys/root-a.pub")));

  // The new root verifies what carol signs, and not what alice signs.
  WriteAffineProject(tmp_ / "src");
  ASSERT_EQ(Airlock({"pack", "-f", "src/airlock.yaml", "-o", "affine.tar"}).exit_code, 0);
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/alice.key", "--counter", "1"}).exit_code,
            0);
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "root.3.json"}).exit_code, 3);
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/carol.key", "--counter", "2"}).exit_code,
            0);
  auto verify = Airlock({"verify", "affine.tar", "--root", "root.3.json"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
}

TEST_F(RootRotationCli, BadRequestsAreRefusedAndWriteNothing) {
  auto r = Airlock({"root", "rotate", "--from", "root.json", "--threshold", "2", "-k",
                    "keys/root-a.key", "-o", "root.2.json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("publisher threshold must be between 1 and 1"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp_ / "root.2.json"));

  r = Airlock({"root", "rotate", "--from", "missing.json", "-k", "keys/root-a.key", "-o",
               "root.2.json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing.json"), std::string::npos) << r.err;

  r = Airlock({"root", "rotate", "--from", "root.json", "-k", "keys/root-a.key", "-o",
               "root.json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("exists"), std::string::npos) << r.err;

  // Signing something that is not a root.
  ASSERT_TRUE(WriteFileAtomic(tmp_ / "channel.json",
                              R"({"signed":{"_type":"channel"},"signatures":[]})"));
  r = Airlock({"root", "sign", "channel.json", "-k", "keys/root-a.key"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not a root"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace airlock::testing
