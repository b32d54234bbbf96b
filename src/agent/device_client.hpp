#pragma once
// DeviceClient: an enrolled agent's side of the factory (docs/rollout.md §4-5,
// docs/device-states.md). It connects to the broker its identity names, announces itself on
// dev/{dev}/online (`true`; the broker publishes `false`, the last will, if the agent dies), takes
// the gateway's signed directives from dev/{dev}/directive and drives one activation machine
// (agent/activation.hpp) per model with them, reporting on dev/{dev}/state after every step.
//
// A directive is acted on only when all of it checks out (trust/directive.hpp): the signature
// by the directive key pinned at enrollment, the device, the version (never lower), the expiry,
// and per entry the channel (signed under the trusted root, never older than trusted, listing the
// release), the release (signed, of the model, for this platform). Any refusal refuses the whole
// directive: it is reported (refused_version, refused) and the trusted state stays as it was. (A
// message too malformed to name a version, or not signed by the gateway for this device, is only
// logged: it names no version the device can trust.)
// The trusted root is the one pinned at enrollment walked through the rotations accepted since;
// a directive message's root rotations are walked first (ApplyRootRotations).
//
// The actions of the machine are performed here, in order, on one worker thread:
//   download  the package from the gateway's registry (/v2/REPOSITORY by the release's index
//             digest) into STORE/state/downloads/, after checking the free disk; blobs an
//             installed version has, or that a killed pull had fetched, are copied, not fetched;
//   verify    the download against the directive's release document and the pinned root;
//   stage     install it into the model store (no counter floor: the channel decides);
//   load      ModelRepository::Preload: loaded, warmed up and the samples validated, not serving;
//   commit    ModelRepository::Pin: it serves, the others are unloaded (they stay installed);
//   serve / roll back  Pin the version again (or unload the model for "").
// A shadow entry's release is fetched, verified and installed the same way, loaded apart
// (ModelRepository::LoadDetached) and tapped onto the version that serves (agent/shadow.hpp); the
// state reports how often it agreed. A shadow that cannot start is logged and not reported.
// While a health window runs, the served version's requests, errors and p99 latency since the
// commit are sampled every second and fed to the machine, which rolls back on its own.
//
// Monitoring: a TelemetryReporter (agent/telemetry.hpp) publishes on dev/{dev}/telemetry and
// takes the gateway's acknowledgements from dev/{dev}/telemetry-ack.
//
// What the agent keeps, under STORE/state/ (each file written atomically):
//   telemetry.db    the telemetry outbox (SQLite)
//   device.json     the trusted directive version and channel versions, the last refusal
//   directive.json  the last directive message applied (for the packages and documents after a
//                   restart)
//   journal/M.json  the activation record of model M
// under STORE/captures/ the capture ring, when the directive's capture policy asks for one, and
// under STORE/identity/roots/ the root rotations accepted after enrolling.
//
// Thread-safe: Start and the destructor from one thread; the worker owns everything else.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/activation.hpp"
#include "agent/enrollment.hpp"
#include "agent/model_repository.hpp"
#include "agent/telemetry.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/device_protocol.hpp"
#include "net/mqtt.hpp"
#include "trust/documents.hpp"

namespace airlock::agent {

struct DeviceClientOptions {
  std::filesystem::path store;  // the agent's store: identity/, models/, state/
  std::string platform;
  // Free disk a download must leave on the store's file system.
  std::uint64_t reserve_bytes = 64ULL << 20;
  // How often a running health window is sampled.
  std::chrono::milliseconds health_interval{1000};
  // At most how often a shadow's new comparisons are reported.
  std::chrono::milliseconds shadow_report_interval{5000};
  // How long a telemetry batch waits for the gateway's acknowledgement before it is sent again.
  std::chrono::milliseconds telemetry_ack_timeout{10000};
  // Every download from the gateway must end within download_grace plus its size at
  // download_min_rate bytes a second (net::RegistryOptions::min_download_rate): a registry, or
  // someone between, that trickles bytes cannot hold the agent, and the directives behind the
  // download, for longer.
  std::uint64_t download_min_rate = 16u << 10;
  std::chrono::milliseconds download_grace{std::chrono::minutes(2)};
};

// What the agent trusts from its gateway, persisted in STORE/state/device.json.
struct TrustedState {
  std::uint64_t directive_version = 0;
  std::map<std::string, std::uint64_t> channels;  // "MODEL/CHANNEL" → version
  std::uint64_t refused_version = 0;
  std::optional<delivery::ReportError> refused;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<TrustedState> FromJson(const nlohmann::json& j);
};

class DeviceClient {
 public:
  // Before the repository loads at start: pins every journaled model to the version its journal
  // says serves, so that a restarted agent serves what it committed (not merely the newest
  // installed version), and keeps a model whose first activation never committed from loading.
  [[nodiscard]] static Status PrepareRepository(const std::filesystem::path& store,
                                                ModelRepository& repo);

  // Verifies the pinned root, resumes every journaled activation and connects in the background.
  // kVerification when the pinned root does not verify; kCorrupt for a damaged state file.
  [[nodiscard]] static Result<std::unique_ptr<DeviceClient>> Start(DeviceClientOptions options,
                                                                   DeviceIdentity identity,
                                                                   ModelRepository& repo);
  // Says `false` on dev/{dev}/online, disconnects and stops the worker.
  ~DeviceClient();
  DeviceClient(const DeviceClient&) = delete;
  DeviceClient& operator=(const DeviceClient&) = delete;

  const std::string& device_id() const { return identity_.device_id; }
  bool connected() const { return mqtt_ && mqtt_->IsConnected(); }
  // The monitoring reports (agent/telemetry.hpp); null when the agent's telemetry is off.
  TelemetryReporter* telemetry() const { return telemetry_.get(); }

 private:
  struct HealthBaseline;

  DeviceClient(DeviceClientOptions options, DeviceIdentity identity, ModelRepository& repo);
  void WorkerLoop();

  // One directive message: checked, then applied (see above). replay: the saved message, read
  // again at start, whose version the trusted state may already hold.
  void HandleDirective(const delivery::DirectiveMessage& message, bool replay);
  void Refuse(std::uint64_t version, const Error& error);
  // Walks the roots a directive message carries (trust::AcceptRootRotations, kept under the
  // identity) and forgets the channel versions when the channel keys were rotated. false, with
  // last_root_error_ set and nothing changed, when they do not verify.
  bool ApplyRootRotations(const std::vector<trust::SignedDocument>& roots, TimePoint now);

  // Applies event to model's machine, persists each step and performs its actions, feeding the
  // events they produce back in, until none is left.
  void Drive(const std::string& model, Event event);
  // The events an action's work produced (PhaseDone, PhaseFailed, RolledBack), in order.
  std::vector<Event> Perform(const std::string& model, const Action& action);
  Event Download(const std::string& model, const Action& action);
  Event Verify(const std::string& model, const Action& action);
  Event Stage(const std::string& model, const Action& action);
  Status Serve(const std::string& model, const std::string& version);
  void StartShadow(const std::string& model, const std::string& version,
                   const std::string& release);
  void StopShadow(const std::string& model);
  // Captures as the directive's policy says (none: stop capturing).
  void ApplyCapture(const std::optional<trust::CapturePolicy>& policy);
  void SampleHealth();

  std::vector<InstalledModel> Installed() const;
  const trust::SignedDocument* ReleaseDocument(const std::string& release) const;
  std::filesystem::path DownloadDir(const std::string& release) const;
  // Blobs fetched by pulls that did not finish (a killed agent), kept for the next attempt.
  std::filesystem::path FetchedDir() const;
  Status SaveTrusted();
  void Report();
  delivery::Envelope NewEnvelope() const;

  const DeviceClientOptions options_;
  const DeviceIdentity identity_;
  ModelRepository& repo_;
  const std::filesystem::path state_dir_;
  std::optional<delivery::DeviceTopics> topics_;
  trust::TrustedRoot root_;  // pinned at enrollment, and the rotations accepted since
  Error last_root_error_{ErrorCode::kVerification, ""};
  std::optional<PublicKey> directive_key_;

  // Touched only by the worker (and by Start before it runs).
  TrustedState trusted_;
  std::optional<delivery::DirectiveMessage> directive_;  // the last one applied
  std::map<std::string, Activation> activations_;
  std::map<std::string, std::unique_ptr<HealthBaseline>> baselines_;  // per committed model
  struct Shadow {
    std::string version;
    std::string release;
    std::shared_ptr<ShadowTap> tap;
    std::uint64_t reported = 0;  // compared, as last reported
  };
  std::map<std::string, Shadow> shadows_;  // per model with a shadow entry
  std::shared_ptr<CaptureRing> capture_;   // the site's capture policy in force, if any
  std::uint64_t seq_ = 0;
  std::chrono::steady_clock::time_point last_report_{};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool report_due_ = true;
  std::optional<std::string> pending_;  // the newest directive payload not handled yet

  std::unique_ptr<net::MqttClient> mqtt_;
  std::unique_ptr<TelemetryReporter> telemetry_;  // publishes with mqtt_: declared after it
  std::thread worker_;
};

}  // namespace airlock::agent
