#pragma once
// The signed documents of DESIGN §4: the envelope, `root`, `release` and `channel`.
//
// Every document is {"signed": {...body...}, "signatures": [{"keyid": hex, "sig": base64}]}, and
// each signature is Ed25519 over the canonical JSON of the body (trust/canonical_json.hpp).
// The body's "_type" says which document it is. Values are plain data; thread-compatible.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
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
  // Adds the signatures of other (the same body, signed by others: an approval) by keys that
  // have not signed this one. kInvalidArgument when the bodies differ.
  [[nodiscard]] Status MergeSignatures(const SignedDocument& other);
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

// How many distinct keys of role signed doc validly, against the role's threshold. A key listed
// twice counts once; signatures by keys outside the role, or that do not verify, count zero and
// are described in notes.
struct SignatureTally {
  int valid = 0;
  int threshold = 1;
  std::vector<std::string> notes;
  bool met() const { return valid >= threshold; }
};
// kVerification when the root defines no such role or the body has no canonical form.
[[nodiscard]] Result<SignatureTally> TallySignatures(const SignedDocument& doc, const Root& root,
                                                     std::string_view role);

// Checks that at least the role's threshold of distinct role keys signed doc (TallySignatures).
// kVerification with the counts on failure.
[[nodiscard]] Status CheckThreshold(const SignedDocument& doc, const Root& root,
                                    std::string_view role);

// Parses a root document and checks it is signed by its own root-role threshold and not expired
// at now. For a root that replaces a trusted one, UpdateRoot below.
[[nodiscard]] Result<Root> VerifyRoot(const SignedDocument& doc, TimePoint now);

// A verified root rotation (UpdateRoot).
struct RootUpdate {
  Root root;                           // the newest root: trusted from now on
  std::vector<SignedDocument> accepted;  // the documents that took it there, oldest first
  // Roles that lost a key on the way (a key the owners no longer trust, maybe a stolen one).
  // Version floors of documents such a role signs are forgotten (TUF's fast-forward recovery):
  // a stolen key may have signed a document with a huge version, which must not block the
  // owners' next one forever. Adding a key or changing a threshold forgets nothing.
  std::set<std::string, std::less<>> rotated_roles;

  // Whether the role that signs channel documents (ChannelSigningRole) lost a key, or changed:
  // the devices then forget the channel versions they trust.
  bool channel_keys_rotated = false;
};

// The most roots UpdateRoot walks in one call.
inline constexpr std::size_t kMaxRootChain = 64;

// Moves trust from trusted to the newest of chain (DESIGN §4, as TUF's root rotation): each
// document's version is exactly one above the root before it, and it is signed by a threshold
// of the previous root's root keys and by a threshold of its own. Only the newest must be
// unexpired at now: a device that was off for a year walks through roots that expired meanwhile.
// Documents at or below trusted.version are skipped (already applied); chain is in any order.
// kVerification, naming the version and why, when a document is not a valid next root (a gap, a
// missing signature, a body changed after signing); kInvalidArgument for more than
// kMaxRootChain documents. Nothing newer than trusted: a RootUpdate with trusted and no
// documents.
[[nodiscard]] Result<RootUpdate> UpdateRoot(const Root& trusted,
                                            const std::vector<SignedDocument>& chain,
                                            TimePoint now);

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

// A release's identity in channel documents and directives: the SHA-256 of the canonical bytes
// of its signed body, so that co-signing a release (which adds signatures) does not change it.
[[nodiscard]] Result<Digest> ReleaseId(const SignedDocument& release);

// One release a channel approves.
struct ChannelEntry {
  std::string version;
  std::uint64_t release_counter = 0;
  Digest release = Digest::FromHex(std::string(64, '0'));  // ReleaseId
};

// Per model and channel name: which releases are approved now. releases[0] is the current one;
// the others are the allowed rollback targets. version only grows; a fleet-wide rollback is a new
// version whose releases[0] is an older release.
struct Channel {
  std::string model;
  std::string name;  // "production", "staging": 1-63 of [a-z0-9-], starting with a letter/digit
  std::uint64_t version = 0;
  TimePoint expires;
  std::vector<ChannelEntry> releases;  // at least one; no release twice

  nlohmann::json ToJson() const;  // the body, with "_type": "channel"
  [[nodiscard]] static Result<Channel> FromJson(const nlohmann::json& body);
};

// Whether name is a valid channel name (see Channel::name).
bool ValidChannelName(std::string_view name);

// The role whose keys sign channel documents under root: "release-manager" when the root defines
// it, else "publisher" (DESIGN §4: a small team may let its publishers promote).
std::string_view ChannelSigningRole(const Root& root);

// Verifies a channel document against a verified root: the signing role's threshold, expiry at
// now, and a version above trusted_version (0: nothing trusted yet), unless allow_equal and it
// is equal (a device re-reading the document it already holds).
[[nodiscard]] Result<Channel> VerifyChannel(const SignedDocument& doc, const Root& root,
                                            TimePoint now, std::uint64_t trusted_version,
                                            bool allow_equal = false);

}  // namespace airlock::trust
