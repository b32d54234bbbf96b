// Documents signed by a key in a PKCS#11 token (SoftHSM) are verified like any other: the token's
// signatures are ordinary Ed25519 signatures under the key id of its public key.

#include <gtest/gtest.h>

#include <memory>

#include "core/pkcs11.hpp"
#include "support/softhsm.hpp"
#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using testing::SoftHsm;

class Pkcs11SigningTest : public TrustFixture {
 protected:
  void SetUp() override {
    AIRLOCK_SKIP_WITHOUT_SOFTHSM();
    hsm_ = std::make_unique<SoftHsm>();
    ASSERT_TRUE(hsm_->ready());
    std::string uri;
    auto key = pkcs11::GenerateKey(
        hsm_->Uri("publisher"), pkcs11::Environment{.module = std::nullopt, .pin = SoftHsm::kPin},
        &uri);
    ASSERT_TRUE(key) << key.error().ToString();
    // The token key takes the place of a root key and of a publisher key.
    root_keys[0] = *key;
    publisher_keys[0] = *key;
  }

  std::unique_ptr<SoftHsm> hsm_;
};

TEST_F(Pkcs11SigningTest, ARootSignedInTheTokenVerifies) {
  SignedDocument doc = SignedBy(MakeRoot(2, 2).ToJson(), {&root_keys[0], &root_keys[1]});
  auto root = VerifyRoot(Reparse(doc), TestNow());
  ASSERT_TRUE(root) << root.error().ToString();
  // Without the token's signature the threshold is not met.
  SignedDocument short_doc = SignedBy(MakeRoot(2, 2).ToJson(), {&root_keys[1]});
  EXPECT_FALSE(VerifyRoot(Reparse(short_doc), TestNow()));
}

TEST_F(Pkcs11SigningTest, AReleaseSignedInTheTokenCountsTowardsTheThreshold) {
  Root root = MakeRoot(2, 2);
  SignedDocument release =
      SignedBy(MakeRelease().ToJson(), {&publisher_keys[0], &publisher_keys[1]});
  auto verified = VerifyRelease(Reparse(release), root, TestNow(), 0);
  ASSERT_TRUE(verified) << verified.error().ToString();
  // Tampering with the body breaks the token's signature like a file key's.
  auto j = AsJson(release);
  j["signed"]["release_counter"] = 6;
  auto tampered = FromJson(j);
  ASSERT_TRUE(tampered);
  EXPECT_FALSE(VerifyRelease(*tampered, root, TestNow(), 0));
}

}  // namespace
}  // namespace airlock::trust
