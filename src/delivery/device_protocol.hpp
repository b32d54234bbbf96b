#pragma once
// The messages between a gateway and its devices on the factory broker (DESIGN §5.1,
// docs/rollout.md §5):
//
//   gateway → agent   dev/{dev}/directive   DirectiveMessage (retained)
//   agent → gateway   dev/{dev}/state       DeviceState (retained)
//   agent → gateway   dev/{dev}/online      `true` on connect, `false` as the MQTT last will
//                                           (retained)
//
// The directive message carries, beside the signed directive, the signed channel and release
// documents its entries name, so that a device needs nothing else to check it. None of it is
// trusted for having arrived: the agent verifies every document against its pinned root and the
// gateway's pinned directive key (trust/directive.hpp).
//
// Parsing is as strict as for the delivery messages (protocol.hpp): kCorrupt naming the field,
// unknown extra fields ignored, ToJson ∘ FromJson is the identity. Plain values.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/names.hpp"
#include "core/result.hpp"
#include "delivery/protocol.hpp"
#include "trust/documents.hpp"

namespace airlock::delivery {

inline constexpr std::size_t kMaxDeviceModels = 64;      // models in one report or directive
inline constexpr std::size_t kMaxDirectiveDocuments = 128;  // channels, and releases, in one message
inline constexpr std::size_t kMaxInstalledVersions = 64;

using airlock::ValidDeviceId;  // core/names.hpp: "dev-" and 16 lowercase hex digits

enum class DeviceTopicKind {
  kDirective,  // dev/{dev}/directive
  kState,      // dev/{dev}/state
  kOnline,     // dev/{dev}/online
  kTelemetry,     // dev/{dev}/telemetry: batches of monitoring records (monitor/batch.hpp)
  kTelemetryAck,  // dev/{dev}/telemetry-ack: the ids the gateway stored
};
// "directive", "state", "online", "telemetry", "telemetry-ack"
const char* DeviceTopicKindName(DeviceTopicKind kind);

struct DeviceTopicAddress {
  DeviceTopicKind kind = DeviceTopicKind::kState;
  std::string device;
  bool operator==(const DeviceTopicAddress&) const = default;
};

// Topic names under a prefix (the same rules as Topics).
class DeviceTopics {
 public:
  [[nodiscard]] static Result<DeviceTopics> Create(std::string_view prefix = Topics::kDefaultPrefix);
  const std::string& prefix() const { return prefix_; }
  // kInvalidArgument for an invalid device id.
  [[nodiscard]] Result<std::string> Topic(DeviceTopicKind kind, std::string_view device) const;
  // kInvalidArgument, saying why, for anything but PREFIX/dev/{valid id}/{kind}.
  [[nodiscard]] Result<DeviceTopicAddress> Parse(std::string_view topic) const;
  // The gateway's: every device's state and online topics.
  std::vector<std::string> GatewaySubscriptions() const;
  // The gateway's telemetry collector's: every device's telemetry topic.
  std::string TelemetrySubscription() const;

 private:
  explicit DeviceTopics(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string prefix_;
};

// Where the device pulls a release's package from the gateway's registry (its /v2/): the
// repository, by the index digest the signed release names. size: the package's bytes in the
// gateway's cache, for the device's free-disk check before the download (an estimate: the device
// fetches only its platform's variant).
struct DirectivePackage {
  std::string release;     // "sha256:<64 hex>", the release id
  std::string repository;  // 1-255 of [a-z0-9._/-]
  std::uint64_t size = 0;
  bool operator==(const DirectivePackage&) const = default;
};

// gateway → agent: the device's desired state and the documents it rests on.
struct DirectiveMessage {
  Envelope envelope;
  trust::SignedDocument directive;
  std::vector<trust::SignedDocument> channels;  // ≤ kMaxDirectiveDocuments, each a channel
  std::vector<trust::SignedDocument> releases;  // ≤ kMaxDirectiveDocuments, each a release
  std::vector<DirectivePackage> packages;       // ≤ kMaxDirectiveDocuments, a release at most once
  // The root rotations the gateway accepted after the root it was installed with, oldest first
  // (trust/root_store.hpp); the agent walks those above its own root before anything else.
  // ≤ kMaxDirectiveDocuments; "roots" on the wire, left out when empty.
  std::vector<trust::SignedDocument> roots;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DirectiveMessage> FromJson(const nlohmann::json& j);
  // The package of release, or nullptr.
  const DirectivePackage* PackageOf(std::string_view release) const;
};

struct ReportError {
  std::string code;     // 1-64 of [a-z0-9-]
  std::string message;  // ≤ kMaxTextLength, no control characters
  bool operator==(const ReportError&) const = default;
};

// A candidate running in shadow beside the active version, and how often they agreed.
struct ShadowReport {
  std::string version;
  std::string release;  // "sha256:…" (the release id)
  std::uint64_t compared = 0;
  std::uint64_t agreed = 0;  // ≤ compared
  bool operator==(const ShadowReport&) const = default;
};

// One model on a device.
struct ModelReport {
  std::string model;
  std::string phase;  // the activation phase (agent/activation.hpp): 1-32 of [a-z-]
  std::string active_version;  // "" when no version serves
  std::string active_release;  // "sha256:…" or ""
  std::string target_version;  // what it is moving to, or "" when idle
  std::string target_release;
  std::vector<std::string> installed;  // versions on disk, ≤ kMaxInstalledVersions
  std::optional<ShadowReport> shadow;
  std::optional<ReportError> error;  // why the last activation failed
  bool operator==(const ModelReport&) const = default;
};

// agent → gateway: everything the gateway needs to know about the device, as one retained
// message (the latest replaces the earlier ones).
struct DeviceState {
  Envelope envelope;
  std::string device;
  // Grows with every report of this device (the agent uses the time in milliseconds, or the
  // previous value + 1 when the clock did not move on): the gateway drops a report whose seq is
  // not above the last it took (a replay, or a late retained copy).
  std::uint64_t seq = 0;
  std::string platform;  // ValidPlatform
  std::uint64_t directive_version = 0;  // of the last directive applied; 0 when none
  // The latest directive the agent refused (its version and why), if any after the applied one.
  std::uint64_t refused_version = 0;
  std::optional<ReportError> refused;
  std::vector<ModelReport> models;  // ≤ kMaxDeviceModels, no model twice

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<DeviceState> FromJson(const nlohmann::json& j);
};

// The payloads of dev/{dev}/online.
inline constexpr std::string_view kOnlinePayload = "true";
inline constexpr std::string_view kOfflinePayload = "false";
// kCorrupt for anything but the two payloads above.
[[nodiscard]] Result<bool> ParseOnline(std::string_view payload);

}  // namespace airlock::delivery
