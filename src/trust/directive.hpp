#pragma once
// The directive (DESIGN §4, docs/rollout.md §3): one device's desired models, signed by its
// gateway's own Ed25519 key, and the checks an agent makes before acting on one.
//
// The gateway builds a Directive, signs it with SignDirective and publishes it retained on
// dev/{dev}/directive. The agent pins the gateway's directive key at enrollment; on every message
// it calls VerifyDirective (signature, device, version, expiry), and then, per entry, fetches the
// named channel and release documents from the gateway and calls CheckDirectiveModel. Nothing
// here reads a clock or does I/O: callers pass "now" and the trusted versions, and persist what
// they trust afterwards. Every refusal leaves the caller's trusted state as it was: these
// functions only read it.
//
// The body on the wire (canonical JSON, like every signed document):
//   {"_type": "directive", "spec_version": 1, "device": "dev-<16 hex>", "version": N,
//    "issued": RFC 3339, "expires": RFC 3339,
//    "models": [{"model": "...", "mode": "active" | "shadow", "release": "sha256:<64 hex>",
//                "channel": {"name": "...", "version": N},
//                "health": {"window": "5m", "max_error_rate": "0.05", "max_p99_ms": 250}}],
//    "capture": {"rate": "0.01", "max_bytes": N, "inputs": true, "outputs": true,
//                "upload": false}}
// "health" is optional and allowed on active entries only. Canonical JSON has no floating-point
// numbers, so max_error_rate travels as a decimal string and max_p99_ms as whole milliseconds.
//
// Plain values and free functions; thread-compatible.

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::trust {

// A directive names at most this many entries; a longer one is refused as malformed.
inline constexpr std::size_t kMaxDirectiveModels = 64;

enum class DirectiveMode {
  kActive,  // serve this release: the model's answers come from it
  kShadow,  // run this release beside the active one on the same inputs and only compare
};
const char* DirectiveModeName(DirectiveMode mode);  // "active", "shadow"
std::optional<DirectiveMode> ParseDirectiveMode(std::string_view name);

// When an activated release counts as healthy. The defaults are the gateway's when the
// deployment gives none.
struct HealthLimits {
  // How long after activation the agent watches; 1 s to 30 days, whole seconds ("5m" on the wire).
  std::chrono::seconds window{std::chrono::minutes(5)};
  // The largest tolerated fraction of failed requests, in [0, 1], to a millionth ("0.05").
  double max_error_rate = 0.05;
  // The largest tolerated 99th-percentile latency: whole milliseconds, 1 to 3,600,000.
  double max_p99_ms = 250;
  bool operator==(const HealthLimits&) const = default;
};

// One desired model. A model has at most one active and one shadow entry, and a shadow entry
// only beside an active one.
struct DirectiveModel {
  std::string model;  // ValidModelName
  DirectiveMode mode = DirectiveMode::kActive;
  Digest release = Digest::FromHex(std::string(64, '0'));  // the ReleaseId
  std::string channel;                                     // ValidChannelName
  // The channel version the gateway saw listing release; the agent accepts this one or newer.
  std::uint64_t channel_version = 1;
  std::optional<HealthLimits> health;  // active entries only; none: the agent's own judgement
  bool operator==(const DirectiveModel&) const = default;
};

// The site's capture policy for the device (docs/monitoring.md, "Captures"): what share of
// requests the agent keeps, in a ring of at most max_bytes on its disk, and whether copies leave
// the device (to the gateway and on to the hub). Off when the directive has none.
struct CapturePolicy {
  double rate = 0;  // in [0, 1], to a millionth ("0.01" on the wire)
  std::uint64_t max_bytes = 256ULL << 20;  // the ring, 1 MiB to 1 TiB
  bool inputs = true;
  bool outputs = true;
  bool upload = false;
  bool operator==(const CapturePolicy&) const = default;
};

struct Directive {
  std::string device;         // ValidDeviceId
  std::uint64_t version = 1;  // ≥ 1; grows with every directive the gateway signs for the device
  TimePoint issued;
  TimePoint expires;  // after issued
  // At most kMaxDirectiveModels. Empty: the device should run no managed model.
  std::vector<DirectiveModel> models;
  std::optional<CapturePolicy> capture;  // "capture" on the wire; none: capture nothing
  bool operator==(const Directive&) const = default;

  // The body, with "_type": "directive". Times are whole seconds, so FromJson(ToJson()) gives back
  // an equal Directive whenever the values are valid (SignDirective checks this).
  nlohmann::json ToJson() const;
  // Strict: kCorrupt naming the field ("models[1].channel.version must be at least 1") for a
  // missing or wrongly typed field, a bad device id, model or channel name, version 0, expires
  // not after issued, health limits out of range or on a shadow entry, a second active or shadow
  // entry for a model, a shadow entry without an active one, more than kMaxDirectiveModels
  // entries. kVerification when _type is not "directive"; kUnsupported for another
  // spec_version. Unknown fields are ignored, as in the other documents.
  [[nodiscard]] static Result<Directive> FromJson(const nlohmann::json& body);
};

// The directive signed by key (the gateway's directive key). Refuses with kInvalidArgument a
// directive that FromJson would refuse or that does not survive its own wire form (a
// max_error_rate finer than a millionth, a fractional max_p99_ms), so a gateway never publishes
// what its agents must reject.
[[nodiscard]] Result<SignedDocument> SignDirective(const Directive& directive,
                                                   const PrivateKey& key);

// What an agent checks before it acts on a received directive, in this order; each refusal is
// kVerification with a message for a person:
//   - the document is a directive (its _type);
//   - it carries a valid signature by pinned_key; other signatures are ignored (during a key
//     rotation both keys sign). Unsigned, signed only by other keys (named by key id), or a
//     signature by pinned_key that does not verify (the body changed after signing) is refused;
//   - the body is well formed (FromJson's errors pass through: kCorrupt, kUnsupported);
//   - it is for device_id;
//   - its version is not below trusted_version (a rollback). Equal is accepted: the retained
//     message is read again after every reconnect, and the caller, seeing the version it already
//     applied, does nothing;
//   - it has not expired at now (expires <= now is expired). issued is not compared with now:
//     a device's clock may lag its gateway's.
[[nodiscard]] Result<Directive> VerifyDirective(const SignedDocument& doc,
                                                const PublicKey& pinned_key,
                                                std::string_view device_id,
                                                std::uint64_t trusted_version, TimePoint now);

// An entry's channel and release, both verified: what the agent installs from, and the channel
// version it then trusts for (model, channel).
struct CheckedRelease {
  Channel channel;
  Release release;
};

// What an agent checks, per directive entry, once it has fetched the entry's channel and release
// documents from its gateway; each refusal is kVerification (or the parse error of a malformed
// document) with a message naming the model and channel and what is wrong:
//   - channel_doc verifies against root (VerifyChannel: signing threshold, expiry at now) with a
//     version not below trusted_channel_version, the one the agent trusts for this model and
//     channel name (equal is accepted: the gateway serves the same document again);
//   - it is the channel entry.channel of entry.model;
//   - its version is entry.channel_version or newer. Newer is accepted: the gateway's registry
//     holds only the latest channel document, and a promotion made after the directive was signed
//     must not strand it; the newer document must still list the release (a withdrawn release
//     stops being installable at once);
//   - it lists entry.release, at any position: releases[0] is the current release, the others
//     are the rollback targets the channel's signers allow (mix-and-match is refused);
//   - release_doc is that release (ReleaseId(release_doc) == entry.release), and the channel's
//     entry for it has the release's version and counter;
//   - release_doc verifies against root (VerifyRelease: publisher threshold, expiry at now);
//   - the release is of entry.model and has platform among its platforms (exact match).
//
// Rollback protection comes from the channel, not from the release counter. DESIGN §4 refuses a
// release counter older than the trusted one; but a rollback the channel's signers approve (an
// older release still listed, or a channel version whose releases[0] points back) is how a fleet
// rolls back, and how a rollout that crossed its failure threshold returns devices to their
// previous release. So the release is verified with no counter floor, and what prevents a
// downgrade is that the channel is signed by its role's threshold, never older than the trusted
// version, unexpired, and must list the release. What remains open: a gateway whose directive
// key is stolen could name another channel of the model whose version this device has never
// trusted and serve an old, still unexpired document of it; the channel's expiry bounds that.
// (The agent's ModelStore keeps a per-model counter for manual installs; directive-driven
// installs must not apply it.)
[[nodiscard]] Result<CheckedRelease> CheckDirectiveModel(const DirectiveModel& entry,
                                                         const SignedDocument& channel_doc,
                                                         const SignedDocument& release_doc,
                                                         const Root& root, TimePoint now,
                                                         std::uint64_t trusted_channel_version,
                                                         std::string_view platform);

}  // namespace airlock::trust
