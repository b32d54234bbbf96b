#pragma once
// The models this agent serves: which installed versions are loaded, in what state, and the
// loaded versions themselves.
//
// Load(name) applies the model's version policy to what the store holds: it loads and warms up
// every version the policy wants that is not loaded yet (each reads its package, checks the model
// blobs' digests again, loads the model into ONNX Runtime, runs the package's samples and
// compares their outputs), and only then unloads the versions the policy no longer wants. Callers
// that hold a ServedVersion keep it alive until their request finishes, so swapping versions
// under traffic fails no request. A version that fails to load is marked unavailable with the
// reason and the versions that were serving keep serving (with `latest: N`, the next older
// version that loads takes its place).
//
// Thread-safe. Load and Unload block while models load; requests are never blocked by a load.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/capture.hpp"
#include "agent/config.hpp"
#include "agent/model_store.hpp"
#include "agent/scheduler.hpp"
#include "agent/shadow.hpp"
#include "monitor/version_monitor.hpp"
#include "pipeline/pipeline.hpp"
#include "core/result.hpp"
#include "runtime/onnx_runtime.hpp"

namespace airlock::agent {

// Where a version is in its life, as the repository API reports it (Triton's names).
enum class ModelState {
  kLoading,      // being read, loaded into the runtime and warmed up; not serving yet
  kReady,        // serving
  kUnloading,    // no new requests; finishing the ones it has
  kUnavailable,  // not serving: never loaded, unloaded, or failed (see the reason)
};
const char* ModelStateName(ModelState s);  // "LOADING", "READY", "UNLOADING", "UNAVAILABLE"

// Where a repository's versions find the capture ring the site's policy asks for (null: none).
struct CaptureSlot {
  std::atomic<std::shared_ptr<CaptureRing>> ring;
};

// One loaded, ready version. Immutable once published except its statistics.
struct ServedVersion {
  std::string name;
  std::string version;
  std::uint64_t release_counter = 0;
  std::string index_digest;
  runtime::ModelSignature signature;
  nlohmann::json pipeline;  // the package's pipeline.json, {} when it has none
  std::optional<pipeline::Pipeline> steps;  // parsed from it, when it has one
  ModelConfig config;
  std::chrono::system_clock::time_point loaded_at;
  std::chrono::milliseconds load_duration{0};
  std::size_t warmup_samples = 0;
  InferenceStats stats;
  std::shared_ptr<runtime::InferenceBackend> backend;
  // A candidate in shadow mode beside this version (agent/shadow.hpp): every request's inputs and
  // outputs are offered to it. Set and cleared by the device client.
  std::atomic<std::shared_ptr<ShadowTap>> shadow;
  // What this version sees and says, per interval (monitor/telemetry.hpp); null when the agent's
  // telemetry is off. Shared with the telemetry reporter, which cuts its intervals.
  std::shared_ptr<monitor::VersionMonitor> monitor;
  std::shared_ptr<CaptureSlot> capture;  // the repository's
  std::unique_ptr<Scheduler> scheduler;  // declared last: destroyed first
};

// Runs one request through the version's scheduler (Scheduler::Execute), offering its inputs
// and outputs to the version's monitor, shadow and capture ring on the way. raw: the request as
// it arrived, when it came through a pipeline (kept by a capture).
[[nodiscard]] Result<std::vector<runtime::Tensor>> Execute(ServedVersion& model,
                                                           std::vector<runtime::Tensor> inputs,
                                                           SteadyTime arrival,
                                                           const pipeline::Input* raw = nullptr);

struct VersionStatus {
  std::string name;
  std::string version;
  std::uint64_t release_counter = 0;
  ModelState state = ModelState::kUnavailable;
  std::string reason;  // why it is unavailable, or "" when ready
};

// Wraps each backend as it loads (tests use it to hold executions at a gate).
using BackendDecorator = std::function<std::unique_ptr<runtime::InferenceBackend>(
    std::unique_ptr<runtime::InferenceBackend>)>;

class ModelRepository {
 public:
  // store_dir is an agent store (ModelStore); ort must outlive the repository.
  ModelRepository(std::filesystem::path store_dir, runtime::OnnxRuntime& ort, AgentConfig config,
                  std::string platform, BackendDecorator decorate = {});
  ~ModelRepository();

  // Applies the model's version policy (see above). Fails with kNotFound when nothing of the
  // model is installed, and with the first load error when no version the policy wants is ready.
  [[nodiscard]] Status Load(const std::string& name);
  // Stops serving every version of the model; memory returns once in-flight requests finish.
  [[nodiscard]] Status Unload(const std::string& name);

  // For a device that a gateway manages (agent/activation.hpp), a pin overrides the version
  // policy: the model serves exactly the pinned version, and Find without a version returns it
  // even while another version is loaded beside it.
  //
  // SetPin only records the pin (for Load, e.g. at start); a pin to "" makes LoadAtStart skip
  // the model. Preload loads and warms up one
  // installed version (its samples must reproduce their outputs) without serving it by default
  // and without retiring anything. Pin makes version the one that serves: it loads it if needed,
  // then retires every other version; when the load fails, the pin and what served before stay
  // as they were.
  void SetPin(const std::string& name, const std::string& version);
  [[nodiscard]] Status Preload(const std::string& name, const std::string& version);
  [[nodiscard]] Status Pin(const std::string& name, const std::string& version);
  // Loads and warms up an installed version (its samples checked) for shadow mode: it is not
  // entered among the model's versions and serves no request. kNotFound when not installed.
  [[nodiscard]] Result<std::shared_ptr<ServedVersion>> LoadDetached(const std::string& name,
                                                                    const std::string& version);
  // Loads what the configuration says to load at start (every installed model, or the `load`
  // list). Returns the failures, one per model; the others serve regardless.
  std::vector<Error> LoadAtStart();

  // The ready version to serve a request: `version` when given, else the ready version with the
  // highest release counter. kNotFound for an unknown model or version, kUnavailable when it is
  // known but not ready.
  [[nodiscard]] Result<std::shared_ptr<ServedVersion>> Find(const std::string& name,
                                                            const std::string& version = {}) const;

  // Every installed or loaded version with its state, sorted by name then release counter.
  std::vector<VersionStatus> Index() const;
  // The ready versions, sorted by name then release counter.
  std::vector<std::shared_ptr<ServedVersion>> Ready() const;
  // True when every model the agent was asked to load has a ready version.
  bool AllReady() const;
  // The installed versions of one model (any state), for metadata.
  std::vector<VersionStatus> VersionsOf(const std::string& name) const;

  // Captures of every version from now on go to ring (null: none).
  void SetCapture(std::shared_ptr<CaptureRing> ring) { capture_->ring.store(std::move(ring)); }
  std::shared_ptr<CaptureRing> capture() const { return capture_->ring.load(); }

  const AgentConfig& config() const { return config_; }
  std::uint64_t loads() const { return loads_.load(); }
  std::uint64_t load_failures() const { return load_failures_.load(); }

 private:
  struct Slot {
    ModelState state = ModelState::kUnavailable;
    std::string reason;
    std::uint64_t release_counter = 0;
    std::shared_ptr<ServedVersion> served;  // set when ready
  };
  struct Model {
    std::map<std::string, Slot> versions;
    bool wanted = false;  // asked to load (at start or by the API) and not unloaded since
    std::optional<std::string> pinned;  // SetPin / Pin
  };

  Result<std::shared_ptr<ServedVersion>> LoadVersion(const InstalledModel& m,
                                                     const ModelConfig& config);
  // Loads one installed version into its slot unless it is ready already; the caller holds the
  // model's load mutex.
  Status LoadInto(const std::string& name, const InstalledModel& m, const ModelConfig& config);
  std::mutex& LoadMutex(const std::string& name);
  void SetState(const std::string& name, const std::string& version, ModelState state,
                std::string reason, std::shared_ptr<ServedVersion> served = nullptr);

  const std::filesystem::path store_dir_;
  runtime::OnnxRuntime& ort_;
  const AgentConfig config_;
  const std::string platform_;
  const BackendDecorator decorate_;
  const std::shared_ptr<CaptureSlot> capture_ = std::make_shared<CaptureSlot>();

  mutable std::mutex mutex_;  // guards models_ and load_mutexes_
  std::map<std::string, Model> models_;
  std::map<std::string, std::unique_ptr<std::mutex>> load_mutexes_;
  std::atomic<std::uint64_t> loads_{0};
  std::atomic<std::uint64_t> load_failures_{0};
};

// Runs a raw input (an image, a signal) through the version's pipeline: pre-processing, the model
// (through its scheduler, so queue limits and statistics apply), post-processing. The result
// JSON (docs/pipelines.md) gains "model", "version" and, when in.name is set, "name".
// kUnsupported when the package has no pipeline; otherwise the pipeline's and the scheduler's
// errors.
[[nodiscard]] Result<nlohmann::json> Predict(ServedVersion& model, const pipeline::Input& in);

// Returns freed heap memory to the operating system (after an unload).
void ReleaseFreeMemory();

}  // namespace airlock::agent
