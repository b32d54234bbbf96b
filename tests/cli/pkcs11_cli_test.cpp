// The airlock binary with keys in a PKCS#11 token (SoftHSM): keygen into the token, a root and a
// release signed there, verified like any other.

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "core/keys.hpp"
#include "pkg/fixture.hpp"
#include "support/softhsm.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kVerification = 3;
constexpr const char* kWrongPin = "wrong-7351";

class Pkcs11CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AIRLOCK_SKIP_WITHOUT_SOFTHSM();
    hsm_ = std::make_unique<SoftHsm>();
    ASSERT_TRUE(hsm_->ready());
    // As an operator would: the PIN in the environment, never on the command line.
    ::setenv("AIRLOCK_PKCS11_PIN", SoftHsm::kPin, 1);
  }
  void TearDown() override { ::unsetenv("AIRLOCK_PKCS11_PIN"); }

  CommandResult Airlock(std::vector<std::string> args) { return RunAirlock(args, tmp_.path()); }

  // airlock keygen NAME --pkcs11 URI: the key id and the URI it prints.
  std::pair<std::string, std::string> Keygen(const std::string& name, const std::string& label) {
    auto r = Airlock({"keygen", name, "--pkcs11", hsm_->Uri(label)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find('\n'));
    std::string uri = r.out.substr(id.size() + 1);
    uri = uri.substr(0, uri.find('\n'));
    return {id, uri};
  }

  std::unique_ptr<SoftHsm> hsm_;
  TempDir tmp_;
};

TEST_F(Pkcs11CliTest, KeygenInTheTokenWritesOnlyThePublicKey) {
  auto [id, uri] = Keygen("keys/root", "root");
  EXPECT_EQ(id.size(), 64u);
  EXPECT_EQ(uri.rfind("pkcs11:token=airlock-test;object=root;id=%", 0), 0u) << uri;
  EXPECT_TRUE(fs::exists(tmp_ / "keys/root.pub"));
  EXPECT_FALSE(fs::exists(tmp_ / "keys/root.key"));
  // The .pub holds the token key: its id is the one keygen printed.
  auto pub = PublicKey::Load(tmp_ / "keys/root.pub");
  ASSERT_TRUE(pub) << pub.error().ToString();
  EXPECT_EQ(pub->id(), id);

  // Never twice under one name: neither the file nor the label.
  auto same_file = Airlock({"keygen", "keys/root", "--pkcs11", hsm_->Uri("root2")});
  EXPECT_EQ(same_file.exit_code, 1);
  EXPECT_NE(same_file.err.find("keys/root.pub already exists"), std::string::npos) << same_file.err;
  auto same_label = Airlock({"keygen", "keys/root2", "--pkcs11", hsm_->Uri("root")});
  EXPECT_EQ(same_label.exit_code, 1);
  EXPECT_NE(same_label.err.find("already holds a key labelled \"root\""), std::string::npos)
      << same_label.err;
  EXPECT_FALSE(fs::exists(tmp_ / "keys/root2.pub"));
}

TEST_F(Pkcs11CliTest, RootInitSignAndVerifyWithTokenKeys) {
  auto [root_id, root_uri] = Keygen("keys/root", "root");
  auto [alice_id, alice_uri] = Keygen("keys/alice", "alice");
  // The root key signs in the token; the publisher is named by its URI as well as a .pub would.
  auto root = Airlock({"root", "init", "--root-key", root_uri, "--publisher", alice_uri});
  ASSERT_EQ(root.exit_code, 0) << root.err;
  std::string root_json = ReadAll(tmp_ / "root.json");
  EXPECT_NE(root_json.find(root_id), std::string::npos);
  EXPECT_NE(root_json.find(alice_id), std::string::npos);

  WriteAffineProject(tmp_ / "src");
  auto pack = Airlock({"pack", "-f", "src/airlock.yaml", "-o", "affine.tar"});
  ASSERT_EQ(pack.exit_code, 0) << pack.err;
  auto sign = Airlock({"sign", "affine.tar", "-k", alice_uri, "--counter", "1"});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  auto verify = Airlock({"verify", "affine.tar", "--root", "root.json"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.out.find("verified affine 1.0.0"), std::string::npos) << verify.out;
}

TEST_F(Pkcs11CliTest, FailuresSayWhatToDoAndNeverShowThePin) {
  auto [alice_id, alice_uri] = Keygen("keys/alice", "alice");
  ASSERT_EQ(Airlock({"keygen", "keys/root"}).exit_code, 0);
  ASSERT_EQ(
      Airlock({"root", "init", "--root-key", "keys/root.key", "--publisher", "keys/alice.pub"})
          .exit_code,
      0);
  WriteAffineProject(tmp_ / "src");
  ASSERT_EQ(Airlock({"pack", "-f", "src/airlock.yaml", "-o", "affine.tar"}).exit_code, 0);
  std::string before = ReadAll(tmp_ / "affine.tar");

  // A wrong PIN, from the environment and in the URI.
  ::setenv("AIRLOCK_PKCS11_PIN", kWrongPin, 1);
  auto wrong = Airlock({"sign", "affine.tar", "-k", alice_uri, "--counter", "1"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("wrong PIN for token \"airlock-test\""), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find(kWrongPin), std::string::npos) << wrong.err;
  auto in_uri = Airlock(
      {"sign", "affine.tar", "-k", alice_uri + "&pin-value=" + kWrongPin, "--counter", "1"});
  EXPECT_EQ(in_uri.exit_code, 1);
  EXPECT_EQ(in_uri.err.find(kWrongPin), std::string::npos) << in_uri.err;
  ::setenv("AIRLOCK_PKCS11_PIN", SoftHsm::kPin, 1);

  // A key that is not there, a module that is not there, a URI that is not one.
  auto missing = Airlock({"sign", "affine.tar", "-k", hsm_->Uri("bob"), "--counter", "1"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no private key labelled \"bob\""), std::string::npos) << missing.err;
  auto no_module =
      Airlock({"sign", "affine.tar", "-k", "pkcs11:object=alice?module-path=/nonexistent/p11.so"});
  EXPECT_EQ(no_module.exit_code, 1);
  EXPECT_NE(no_module.err.find("not found"), std::string::npos) << no_module.err;
  auto bad = Airlock({"sign", "affine.tar", "-k", "pkcs11:object=alice;color=blue"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("unsupported path attribute color"), std::string::npos) << bad.err;

  // Nothing was signed by the failures; the next good signature works and verifies.
  EXPECT_EQ(ReadAll(tmp_ / "affine.tar"), before);
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "root.json"}).exit_code, kVerification);
  auto sign = Airlock({"sign", "affine.tar", "-k", alice_uri, "--counter", "1"});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "root.json"}).exit_code, 0);
}

}  // namespace
}  // namespace airlock::testing
