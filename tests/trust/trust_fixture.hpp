#pragma once
// Keys, roots and releases for the trust tests: a root with three root keys (2-of-3) and three
// publisher keys (threshold chosen per test), at a fixed "now".

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::trust {

// 2026-11-22T10:00:00Z: the tests' "now".
inline TimePoint TestNow() {
  return TimePoint(
      std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds(1795341600)));
}

inline std::vector<PrivateKey> GenerateKeys(int n) {
  std::vector<PrivateKey> keys;
  for (int i = 0; i < n; ++i) {
    keys.push_back(PrivateKey::Generate().value());
  }
  return keys;
}

struct TrustFixture : public ::testing::Test {
  std::vector<PrivateKey> root_keys = GenerateKeys(3);
  std::vector<PrivateKey> publisher_keys = GenerateKeys(3);

  // A root trusting root_keys (threshold root_threshold) and publisher_keys (pub_threshold).
  Root MakeRoot(int root_threshold = 2, int pub_threshold = 2) const {
    Root root;
    root.version = 3;
    root.expires = TestNow() + std::chrono::hours(24 * 365);
    RoleSpec root_role;
    for (const auto& k : root_keys) {
      root.keys.emplace(k.id(), k.public_key());
      root_role.keyids.push_back(k.id());
    }
    root_role.threshold = root_threshold;
    RoleSpec publisher_role;
    for (const auto& k : publisher_keys) {
      root.keys.emplace(k.id(), k.public_key());
      publisher_role.keyids.push_back(k.id());
    }
    publisher_role.threshold = pub_threshold;
    root.roles.emplace(std::string(kRoleRoot), root_role);
    root.roles.emplace(std::string(kRolePublisher), publisher_role);
    return root;
  }

  static Release MakeRelease(std::uint64_t counter = 5) {
    Release r;
    r.model = "defect-detector";
    r.version = "1.4.0";
    r.release_counter = counter;
    r.index_digest = Sha256Of("index for 1.4.0");
    r.index_size = 1234;
    r.index_media_type = "application/vnd.oci.image.index.v1+json";
    r.platforms = {"linux/amd64", "linux/arm64/v8"};
    r.created = TestNow() - std::chrono::hours(1);
    r.expires = TestNow() + std::chrono::hours(24 * 90);
    return r;
  }

  // body wrapped and signed by each of signers, in order.
  static SignedDocument SignedBy(const nlohmann::json& body,
                                 const std::vector<const PrivateKey*>& signers) {
    SignedDocument doc = SignedDocument::Wrap(body);
    for (const PrivateKey* k : signers) {
      EXPECT_TRUE(doc.Sign(*k));
    }
    return doc;
  }

  // The document as it travels: serialized text, parsed again.
  static SignedDocument Reparse(const SignedDocument& doc) {
    auto text = doc.Serialize();
    EXPECT_TRUE(text) << text.error().ToString();
    auto parsed = SignedDocument::Parse(*text);
    EXPECT_TRUE(parsed) << parsed.error().ToString();
    return *parsed;
  }

  // The serialized document as JSON, for tampering; and back.
  static nlohmann::json AsJson(const SignedDocument& doc) {
    return nlohmann::json::parse(doc.Serialize().value());
  }
  static Result<SignedDocument> FromJson(const nlohmann::json& j) {
    return SignedDocument::Parse(j.dump());
  }
};

}  // namespace airlock::trust
