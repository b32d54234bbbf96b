#pragma once
// The signed documents of DESIGN §4: the envelope, `root` and `release`.
//
// Every document is {"signed": {...body...}, "signatures": [{"keyid": hex, "sig": base64}]}, and
// each signature is Ed25519 over the canonical JSON of the body (trust/canonical_json.hpp).
// The body's "_type" says which document it is. Values are plain data; thread-compatible.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock::trust {

// Documents larger than this are refused before parsing (the "endless data" attack).
inline constexpr std::size_t kMaxDocumentSize = 1 << 20;
inline constexpr int kSpecVersion = 1;

inline constexpr std::string_view kRoleRoot = "root";
inline constexpr std::string_view kRolePublisher = "publisher";
inline constexpr std::string_view kRoleReleaseManager = "release-manager";
inline constexpr std::string_view kRoleGateway = "gateway";

struct Signature {
  std::string keyid;
  std::string sig;  // raw 64 bytes
};

class SignedDocument {
 public:
  // Parses and checks the envelope's shape; kCorrupt on anything malformed or oversized.
  [[nodiscard]] static Result<SignedDocument> Parse(std::string_view text);
  // An unsigned document around body (which must hold "_type").
  static SignedDocument Wrap(nlohmann::json body);

  const nlohmann::json& body() const { return body_; }
  const std::vector<Signature>& signatures() const { return signatures_; }
  std::string type() const;

  // Signs the body with key, replacing an earlier signature by the same key.
  [[nodiscard]] Status Sign(const PrivateKey& key);
  // The canonical bytes of the body: what signatures cover.
  [[nodiscard]] Result<std::string> SignedBytes() const;
  // The whole document, canonical, with a trailing newline.
  [[nodiscard]] Result<std::string> Serialize() const;

 private:
  nlohmann::json body_;
  std::vector<Signature> signatures_;
};

struct RoleSpec {
  std::vector<std::string> keyids;
  int threshold = 1;
};

// The trust anchor: which keys may sign for which role, and how many must.
struct Root {
  std::int64_t version = 1;
  TimePoint expires;
  std::map<std::string, PublicKey> keys;  // by key id
  std::map<std::string, RoleSpec, std::less<>> roles;

  nlohmann::json ToJson() const;  // the body, with "_type": "root"
  [[nodiscard]] static Result<Root> FromJson(const nlohmann::json& body);
};

// Checks that at least the role's threshold of distinct role keys signed doc. A key listed twice
// in the signatures counts once; signatures by unknown keys or that do not verify count zero.
// kVerification with the counts on failure.
[[nodiscard]] Status CheckThreshold(const SignedDocument& doc, const Root& root,
                                    std::string_view role);

// Parses a root document and checks it is signed by its own root-role threshold and not expired
// at now. (Rotation from an older root is a later issue: DESIGN §4.)
[[nodiscard]] Result<Root> VerifyRoot(const SignedDocument& doc, TimePoint now);

// One model version, immutable: what a publisher vouches for.
struct Release {
  std::string model;
  std::string version;
  std::uint64_t release_counter = 0;  // grows with every release of the model
  Digest index_digest = Digest::FromHex(std::string(64, '0'));
  std::uint64_t index_size = 0;
  std::string index_media_type;
  std::vector<std::string> platforms;  // "os/arch[/variant]"
  TimePoint created;
  TimePoint expires;

  nlohmann::json ToJson() const;  // the body, with "_type": "release"
  [[nodiscard]] static Result<Release> FromJson(const nlohmann::json& body);
};

// Verifies a release document against a verified root: publisher threshold, expiry at now, and a
// counter no lower than the one the caller already trusts for this model.
[[nodiscard]] Result<Release> VerifyRelease(const SignedDocument& doc, const Root& root,
                                            TimePoint now, std::uint64_t trusted_counter);

}  // namespace airlock::trust
