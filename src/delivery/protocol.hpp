#pragma once
// The delivery protocol between the hub and a gateway over MQTT (DESIGN §5.1, docs/delivery.md):
// the topic names, and the payload of each message as a plain struct with ToJson / FromJson.
//
//   hub → gateway   gw/{gw}/delivery/offer        DeliveryOffer
//   gateway → hub   gw/{gw}/delivery/{id}/ready   DeliveryReady
//   gateway → hub   gw/{gw}/delivery/{id}/reject  DeliveryReject
//   hub → gateway   gw/{gw}/delivery/{id}/grant   DeliveryGrant
//   gateway → hub   gw/{gw}/delivery/{id}/status  DeliveryStatus
//   hub → gateway   gw/{gw}/delivery/{id}/cancel  DeliveryCancel
//   gateway → hub   gw/{gw}/fleet                 FleetReport (retained)
//   hub → gateway   gw/{gw}/rollout/command       RolloutCommand
//
// Every payload is a JSON object with "type" (which message it is), "message_id" (unique per
// message; receivers drop repeats, since QoS 1 delivers at least once) and "sent_at" (RFC 3339,
// whole seconds). Every message about one delivery also carries "delivery_id", which a receiver
// must check against the topic's (ParseTopic) so that a payload cannot act on another delivery.
//
// FromJson is strict, because every payload comes from the network: a payload over
// kMaxMessageSize, malformed JSON, a missing or mistyped field, an identifier of the wrong form, a
// count or string over its bound — each is refused with kCorrupt and a message naming the field.
// Unknown extra fields are ignored (a newer peer may add some). ToJson of a value that FromJson
// accepted gives it back unchanged (times are whole seconds). Plain values; thread-compatible.

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/names.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::delivery {

// ---- bounds ----
// A payload larger than this is refused before it is parsed. The largest message is an offer,
// whose release document is itself capped at trust::kMaxDocumentSize (1 MiB); a grant holds at
// most kMaxBlobs URLs of at most kMaxUrlLength bytes (≈ 600 KiB).
inline constexpr std::size_t kMaxMessageSize = 2 << 20;
inline constexpr std::size_t kMaxBlobs = 512;       // blobs in one grant
inline constexpr std::size_t kMaxPlatforms = 32;    // platforms a gateway asks for / an offer sizes
inline constexpr std::size_t kMaxUrlLength = 1024;  // one pre-signed URL (path and query)
inline constexpr std::size_t kMaxTextLength = 1024;      // human text: reasons, error messages
inline constexpr std::size_t kMaxMediaTypeLength = 255;  // RFC 6838's bound

// ---- identifiers ----
// A gateway's name as the hub registered it: 1-48 of [A-Za-z0-9._-], and not "." or ".." (the
// name also names directories and URL path segments).
bool ValidGatewayName(std::string_view name);
// "dlv-" and 8-64 lowercase hex digits (the hub makes 16 random bytes: "dlv-" + 32 hex).
bool ValidDeliveryId(std::string_view id);
// "dep-" and 8-64 lowercase hex digits, as the hub's registry makes them.
bool ValidDeploymentId(std::string_view id);
// 1-64 of [A-Za-z0-9._-]; senders use random hex (e.g. 16 random bytes) so ids never repeat.
bool ValidMessageId(std::string_view id);
// A model name as `airlock pack` accepts it (core/names.hpp; kept under this name for callers).
using ::airlock::ValidModelName;
// A version as `airlock pack` accepts it: an OCI tag, [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
bool ValidVersion(std::string_view version);
// "os/architecture[/variant]", each part 1-32 of [a-z0-9._-] ("linux/arm64/v8").
bool ValidPlatform(std::string_view platform);

// ---- topics ----

enum class TopicKind {
  kOffer,   // gw/{gw}/delivery/offer (no delivery id in the topic; it is in the payload)
  kReady,   // gw/{gw}/delivery/{id}/ready
  kReject,  // gw/{gw}/delivery/{id}/reject
  kGrant,   // gw/{gw}/delivery/{id}/grant
  kStatus,  // gw/{gw}/delivery/{id}/status
  kCancel,  // gw/{gw}/delivery/{id}/cancel
  kFleet,   // gw/{gw}/fleet (no delivery id)
  kRolloutCommand,  // gw/{gw}/rollout/command (no delivery id; the deployment is in the payload)
};
// "offer", "ready", …, "fleet", "command": the topic's last level.
const char* TopicKindName(TopicKind kind);

// What a received topic names.
struct TopicAddress {
  TopicKind kind = TopicKind::kOffer;
  std::string gateway;
  std::string delivery_id;  // empty for kOffer and kFleet
  bool operator==(const TopicAddress&) const = default;
};

// Topic names under a prefix. The prefix is 1-8 non-empty levels of [A-Za-z0-9._-] ("airlock/v1",
// "site-a/airlock/v1"); a broker shared by several installations gives each its own prefix.
class Topics {
 public:
  static constexpr std::string_view kDefaultPrefix = "airlock/v1";

  // kInvalidArgument when prefix is not of the form above.
  [[nodiscard]] static Result<Topics> Create(std::string_view prefix = kDefaultPrefix);

  const std::string& prefix() const { return prefix_; }

  // The topic of kind for gateway (and delivery_id, for the per-delivery kinds). kInvalidArgument
  // when gateway or delivery_id is not valid, or when delivery_id is given for kOffer / kFleet or
  // missing for the others: a topic is never built from an unchecked name.
  [[nodiscard]] Result<std::string> Topic(TopicKind kind, std::string_view gateway,
                                          std::string_view delivery_id = {}) const;

  // Parses a topic a client received back into what it names. kInvalidArgument, saying why, for
  // anything else: another prefix, wildcards ('+', '#'), empty levels, leading or trailing '/',
  // an invalid gateway name or delivery id ("..", "%2e", …), an unknown kind, extra levels.
  [[nodiscard]] Result<TopicAddress> Parse(std::string_view topic) const;

  // The subscriptions of the hub: every gateway's ready, reject, status and fleet topics (with '+'
  // for the gateway and delivery levels).
  std::vector<std::string> HubSubscriptions() const;
  // The subscriptions of one gateway's delivery service: its offer, and its deliveries' grant
  // and cancel topics. kInvalidArgument for an invalid gateway name. (Its rollout commands are
  // Topic(kRolloutCommand, gateway), which the gateway's fleet service subscribes to.)
  [[nodiscard]] Result<std::vector<std::string>> GatewaySubscriptions(
      std::string_view gateway) const;

 private:
  explicit Topics(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string prefix_;
};

// ---- payloads ----

// What every message carries.
struct Envelope {
  std::string message_id;
  TimePoint sent_at;  // whole seconds
  bool operator==(const Envelope&) const = default;
};

// The bytes one platform of the package needs (its manifest, config and layers, plus the index).
struct PlatformSize {
  std::string platform;
  std::uint64_t size = 0;
  bool operator==(const PlatformSize&) const = default;
};

// hub → gateway: "here is a package for you; will you take it?"
struct DeliveryOffer {
  Envelope envelope;
  std::string delivery_id;
  std::string deployment_id;
  std::string model;
  std::string version;
  // The signed release document, carried as a JSON object (the envelope {"signed", "signatures"})
  // rather than a string, so that it reads plainly on the wire. Its signatures cover the canonical
  // bytes of its body, which do not depend on how the JSON was formatted. FromJson checks the
  // envelope's shape and that its body names the same model and version as the offer; verifying
  // it against the pinned root is the gateway's job.
  trust::SignedDocument release;
  // Bytes of the whole package, all platforms: an upper bound for the gateway's disk check.
  std::uint64_t total_size = 0;
  // Bytes per platform (at most kMaxPlatforms, no platform twice, each ≤ total_size), so that a
  // gateway that wants only some platforms can check for what it will actually fetch.
  std::vector<PlatformSize> platform_sizes;
  // After this the gateway must not answer; the hub re-offers (with a new message id) if it still
  // wants to.
  TimePoint expires;
  // The signed channel document the deployment resolved (its devices check that each release they
  // run is listed in a valid channel document), when the hub still has it. Checked for shape and
  // model here; verified by the gateway and by each device.
  std::optional<trust::SignedDocument> channel;
  // How the gateway rolls the package out to its devices, as the deployment says:
  // {"selector": {label: value}, "strategy": {...}} (docs/rollout-strategies.md). Checked here
  // only for shape (an object with an object "selector" of strings and an object "strategy", at
  // most 16 KiB); the gateway's rollout engine checks the values. null when absent (an older hub).
  nlohmann::json rollout;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryOffer> FromJson(const nlohmann::json& j);
};

// gateway → hub: "I will take it; grant me these platforms."
struct DeliveryReady {
  Envelope envelope;
  std::string delivery_id;
  std::uint64_t free_bytes = 0;        // free space in the gateway's cache, after its own reserve
  std::vector<std::string> platforms;  // 1..kMaxPlatforms, each ValidPlatform, none twice

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryReady> FromJson(const nlohmann::json& j);
};

// Why a gateway refuses an offer.
enum class RejectReason {
  kInsufficientSpace,    // "insufficient-space": not enough free disk
  kTooLarge,             // "too-large": over the site's maximum package size
  kModelNotAllowed,      // "model-not-allowed": the site policy does not allow this model
  kUnsupportedPlatform,  // "unsupported-platform": no platform the site needs
  kVerification,         // "verification": the release does not verify against the pinned root
  kOperator,             // "operator": an operator declined it
  kExpired,              // "expired": the offer or the release expired before it was answered
};
const char* RejectReasonName(RejectReason reason);
std::optional<RejectReason> ParseRejectReason(std::string_view name);

// gateway → hub: "no", with a code for the hub to act on and text for a person.
struct DeliveryReject {
  Envelope envelope;
  std::string delivery_id;
  RejectReason reason = RejectReason::kOperator;
  std::string message;  // ≤ kMaxTextLength; may be empty

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryReject> FromJson(const nlohmann::json& j);
};

// One blob the gateway may fetch.
struct GrantedBlob {
  Digest digest = Digest::FromHex(std::string(64, '0'));
  std::uint64_t size = 0;  // the gateway never reads more than this
  std::string media_type;  // 1..kMaxMediaTypeLength of printable ASCII, no spaces
  // A pre-signed path and query, RELATIVE to the hub's base URL, which the gateway already knows
  // (it registered there): "/v2/REPO/blobs/sha256:…?expires=E&sig=S", as hub::Access::PresignBlob
  // makes it. Absolute URLs are refused, so a message on the broker can never send the gateway to
  // another host. Starts with one '/', at most kMaxUrlLength printable ASCII without spaces, and
  // no "/../" or "/./" segments.
  std::string url;
  bool operator==(const GrantedBlob&) const = default;
};

// hub → gateway: "fetch these, until url_expires".
struct DeliveryGrant {
  Envelope envelope;
  std::string delivery_id;
  // 1 for the first grant, +1 for every re-grant (URLs about to expire, or a retry after a
  // failure). The gateway echoes it in its status messages, and uses the grant with the highest
  // attempt it has seen (an older one arriving late is ignored).
  std::uint32_t attempt = 1;
  TimePoint url_expires;
  std::vector<GrantedBlob> blobs;  // 1..kMaxBlobs, no digest twice

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryGrant> FromJson(const nlohmann::json& j);
};

// What the gateway says it is doing.
enum class GatewayState {
  kHeld,         // "held": the offer passed every check and waits for the site's operator (an
                 // answer to an offer: attempt 0, no bytes yet); ready or reject follows
  kDownloading,  // "downloading": fetching and verifying; bytes_done counts verified-so-far bytes
  kAvailable,    // "available": everything fetched, verified and in the cache (final)
  kFailed,       // "failed": stopped, with error (final for this attempt)
};
const char* GatewayStateName(GatewayState state);

// Why a gateway's attempt failed. The hub decides from the code whether to try again.
enum class FailureCode {
  kUrlExpired,         // "url-expired": the hub refused a URL as expired → re-grant at once
  kNetwork,            // "network": the hub was unreachable or the transfer broke → retry
  kDigestMismatch,     // "digest-mismatch": a blob's bytes did not match → retry
  kSizeMismatch,       // "size-mismatch": a blob was longer or shorter than granted → retry
  kIo,                 // "io": the gateway's disk failed → retry
  kInsufficientSpace,  // "insufficient-space": the disk filled up → final
  kVerification,       // "verification": the release or index failed verification → final
};
const char* FailureCodeName(FailureCode code);
std::optional<FailureCode> ParseFailureCode(std::string_view name);
// Whether the hub should try again after this failure (everything but kInsufficientSpace and
// kVerification, which another attempt would not change).
bool IsRetryable(FailureCode code);

struct DeliveryFailure {
  FailureCode code = FailureCode::kNetwork;
  std::string message;  // ≤ kMaxTextLength
  bool operator==(const DeliveryFailure&) const = default;
};

// gateway → hub: progress and result of the grant with number attempt.
struct DeliveryStatus {
  Envelope envelope;
  std::string delivery_id;
  GatewayState state = GatewayState::kDownloading;
  // The grant the gateway is working from; 0 exactly in a "held" answer to an offer, and in an
  // "available" one when the gateway already held the package (an earlier delivery or an
  // air-gapped import).
  std::uint32_t attempt = 0;
  std::uint64_t bytes_done = 0;          // ≤ bytes_total
  std::uint64_t bytes_total = 0;         // of the blobs the gateway fetches for this delivery
  std::optional<DeliveryFailure> error;  // present exactly when state is kFailed

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryStatus> FromJson(const nlohmann::json& j);
};

// hub → gateway: "stop; remove what you fetched for this delivery".
struct DeliveryCancel {
  Envelope envelope;
  std::string delivery_id;
  std::string reason;  // ≤ kMaxTextLength

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeliveryCancel> FromJson(const nlohmann::json& j);
};

// gateway → hub, retained on gw/{gw}/fleet: the gateway's device rollouts, newest first, each as
// the gateway's rollout engine summarizes it (docs/rollout.md §6: deployment, model, target,
// state, wave, device counts by status, and per device its status). The hub shows them in
// `airlock status`; it acts on none of it, so beyond the shape below the summaries are kept as
// they came.
inline constexpr std::size_t kMaxFleetRollouts = 64;
struct FleetReport {
  Envelope envelope;
  std::string gateway;  // ValidGatewayName; the topic's
  // ≤ kMaxFleetRollouts objects, each with a valid "deployment" id, a deployment at most once.
  std::vector<nlohmann::json> rollouts;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<FleetReport> FromJson(const nlohmann::json& j);
};

// hub → gateway on gw/{gw}/rollout/command: pause, resume or cancel the gateway's rollout of a
// deployment (POST /api/v1/deployments/ID/pause|resume|cancel at the hub). Not retained; QoS 1 on
// the gateway's persistent session. The gateway keeps the latest command per deployment, so that
// a rollout it has not started yet (the package still downloading, or awaiting approval) starts
// paused, or not at all; it drops a command older (sent_at) than the one it keeps, and a repeat of
// it (the same message_id). "gateway" must be the topic's, and the receiver's own name.
enum class RolloutCommandKind {
  kPause,   // "pause": start no new device or wave; devices already directed carry on
  kResume,  // "resume": carry on from where it paused
  kCancel,  // "cancel": stop for good; devices are left as they are
};
const char* RolloutCommandKindName(RolloutCommandKind kind);
std::optional<RolloutCommandKind> ParseRolloutCommandKind(std::string_view name);

struct RolloutCommand {
  Envelope envelope;
  std::string gateway;        // ValidGatewayName
  std::string deployment_id;  // ValidDeploymentId
  RolloutCommandKind command = RolloutCommandKind::kPause;
  std::string reason;  // ≤ kMaxTextLength, no control characters: who, and why (may be empty)

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<RolloutCommand> FromJson(const nlohmann::json& j);
};

// The values a summary's "state" and the device counts' keys take: what the hub counts by in its
// /metrics. The gateway names them (RolloutStateName, DeviceStatusName in gateway/rollout.cpp,
// which checks at compile time that its names are these).
inline constexpr std::array<std::string_view, 5> kFleetRolloutStates = {
    "running", "paused", "complete", "aborted", "cancelled"};
inline constexpr std::array<std::string_view, 9> kFleetDeviceStatuses = {
    "pending", "shadowing", "directed",     "activating",  "health-window",
    "done",    "failed",    "rolling-back", "rolled-back",
};

// ---- the air-gapped bundle ----
// `airlock bundle export` writes one tar that is an OCI image layout of the package (its index,
// manifests, blobs and signed release, as `airlock pull` writes it) plus two files at the top:
// kBundleManifestFile, below, and kBundleChannelFile, the signed channel document the deployment
// resolved when it still is the channel's current one (optional). `airlock-gateway import` checks
// the release against the site's root, the index against the release, every blob against its
// digest, exactly as for a network delivery. The manifest itself is not signed: it only says
// which deployment and which package of the layout the bundle is for, and nothing in it is
// trusted beyond that (docs/delivery.md, "Air-gapped sites").
inline constexpr char kBundleManifestFile[] = "airlock-bundle.json";
inline constexpr char kBundleChannelFile[] = "channel.json";
inline constexpr std::uint64_t kBundleVersion = 1;

struct BundleManifest {
  std::string deployment_id;
  std::string model;
  std::string version;
  std::string channel;  // a channel name; may be empty
  std::uint64_t channel_version = 0;
  std::string repository;  // where the hub keeps the package ("models/vibration-anomaly")
  Digest index_digest = Digest::FromHex(std::string(64, '0'));  // the package's index
  std::uint64_t index_size = 0;
  TimePoint exported_at;
  std::string exported_from;  // the hub's URL, for people (≤ kMaxTextLength)

  nlohmann::json ToJson() const;
  // Strict, as the messages are: kCorrupt naming the field; kUnsupported for a bundle_version
  // other than kBundleVersion.
  [[nodiscard]] static Result<BundleManifest> FromJson(const nlohmann::json& j);
};

// Parses a received payload (at most kMaxMessageSize bytes, no duplicate keys, bounded nesting)
// into JSON for the FromJson above. kCorrupt otherwise.
[[nodiscard]] Result<nlohmann::json> ParsePayload(std::string_view bytes);

}  // namespace airlock::delivery
