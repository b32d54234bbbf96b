#include "agent/model_repository.hpp"

#include <malloc.h>

#include <algorithm>

#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "pkg/package.hpp"
#include "pkg/samples.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

// Installed versions of one model, highest release counter first.
Result<std::vector<InstalledModel>> InstalledVersions(const fs::path& store_dir,
                                                      const std::string& name) {
  AIRLOCK_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(store_dir));
  AIRLOCK_ASSIGN_OR_RETURN(auto all, store.List());
  std::vector<InstalledModel> mine;
  for (auto& m : all) {
    if (m.name == name) {
      mine.push_back(std::move(m));
    }
  }
  std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) {
    return a.release_counter > b.release_counter;
  });
  return mine;
}

// The monitor of a version being loaded: the package's baseline when it has one (a baseline that
// does not parse is logged and left out: monitoring never stops a model from serving), else what
// the pipeline says of the outputs (an argmax step's labels).
std::shared_ptr<monitor::VersionMonitor> NewMonitor(const ServedVersion& served,
                                                    pkg::LayoutReader& reader,
                                                    const pkg::Variant& variant,
                                                    const TelemetryConfig& config) {
  monitor::MonitorOptions options;
  options.sample_per_request = config.sample_per_request;
  options.budget = config.monitor_budget;
  std::vector<monitor::BaselineFeature> features;
  std::optional<monitor::PredictionSpec> predictions;
  if (auto layers = variant.Layers(pkg::media::kBaseline); !layers.empty()) {
    auto baseline = [&]() -> Result<monitor::Baseline> {
      AIRLOCK_ASSIGN_OR_RETURN(std::string text, reader.ReadBlob(*layers.front()));
      AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json doc,
                               trust::ParseJson(text, pkg::kMaxJsonBlob, "baseline.json"));
      return monitor::Baseline::FromJson(doc);
    }();
    if (baseline) {
      features = std::move(baseline->features);
      predictions = std::move(baseline->predictions);
      options.thresholds = baseline->thresholds;
    } else {
      spdlog::warn("{} {}: no drift monitoring: {}", served.name, served.version,
                   baseline.error().ToString());
    }
  }
  if (!predictions && served.pipeline.is_object()) {
    for (const auto& step : served.pipeline.value("postprocess", nlohmann::json::array())) {
      if (step.is_object() && step.value("op", "") == "argmax" && step.contains("tensor") &&
          step["tensor"].is_string()) {
        std::vector<std::string> labels;
        const nlohmann::json& l = step.contains("labels") ? step["labels"]
                                                          : served.pipeline.value("labels", nlohmann::json());
        if (l.is_array() && std::all_of(l.begin(), l.end(), [](const auto& x) { return x.is_string(); })) {
          labels = l.get<std::vector<std::string>>();
        }
        if (!labels.empty()) {
          predictions = monitor::PredictionSpec{
              .tensor = step["tensor"].get<std::string>(),
              .classes = true,
              .labels = labels,
              .histogram = monitor::Histogram{{}, std::vector<std::uint64_t>(labels.size(), 0)},
              .has_baseline = false};
        }
        break;
      }
    }
  }
  return std::make_shared<monitor::VersionMonitor>(
      served.name, served.version, std::move(features), std::move(predictions),
      UnixMillis(std::chrono::system_clock::now()), options);
}

}  // namespace

const char* ModelStateName(ModelState s) {
  switch (s) {
    case ModelState::kLoading:
      return "LOADING";
    case ModelState::kReady:
      return "READY";
    case ModelState::kUnloading:
      return "UNLOADING";
    case ModelState::kUnavailable:
      return "UNAVAILABLE";
  }
  return "UNAVAILABLE";
}

void ReleaseFreeMemory() { malloc_trim(0); }

Result<std::vector<runtime::Tensor>> Execute(ServedVersion& model,
                                             std::vector<runtime::Tensor> inputs,
                                             SteadyTime arrival, const pipeline::Input* raw) {
  std::shared_ptr<ShadowTap> shadow = model.shadow.load();
  std::shared_ptr<CaptureRing> capture = model.capture ? model.capture->ring.load() : nullptr;
  if (capture && !capture->Sample()) {
    capture = nullptr;
  }
  std::vector<runtime::Tensor> kept_inputs;  // for the shadow and the capture
  if (shadow || capture) {
    kept_inputs = inputs;
  }
  const bool observe = model.monitor && model.monitor->ShouldObserve();
  if (observe) {
    model.monitor->ObserveInputs(inputs);
  }
  auto outputs = model.scheduler->Execute(std::move(inputs), arrival);
  if (model.monitor) {
    if (observe && outputs) {
      model.monitor->ObserveOutputs(*outputs);
    }
    model.monitor->Finish(outputs.has_value(), steady_clock::now() - arrival);
  }
  if (capture && outputs) {
    std::optional<RawInput> raw_input;
    if (raw != nullptr) {
      raw_input = RawInput{raw->bytes, raw->content_type};
    }
    capture->Offer(model.name, model.version, std::move(raw_input),
                   shadow ? kept_inputs : std::move(kept_inputs), *outputs);
  }
  if (shadow && outputs) {
    shadow->Offer(std::move(kept_inputs), *outputs);
  }
  return outputs;
}

Result<nlohmann::json> Predict(ServedVersion& model, const pipeline::Input& in) {
  auto arrival = steady_clock::now();
  if (!model.steps) {
    return Fail(ErrorCode::kUnsupported, model.name + " " + model.version +
                                             " has no pipeline: send tensors to "
                                             "/v2/models/" + model.name + "/infer instead");
  }
  auto result = [&]() -> Result<nlohmann::json> {
    auto preprocessed = model.steps->Preprocess(in);
    if (!preprocessed && model.monitor) {
      model.monitor->Finish(false, steady_clock::now() - arrival);  // an input it cannot read
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto inputs, std::move(preprocessed));
    AIRLOCK_ASSIGN_OR_RETURN(auto outputs, Execute(model, inputs, arrival, &in));
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json out, model.steps->Postprocess(inputs, outputs));
    out["model"] = model.name;
    out["version"] = model.version;
    if (!in.name.empty()) {
      out["name"] = in.name;
    }
    return out;
  }();
  (result ? model.stats.pipeline_success : model.stats.pipeline_failure)
      .fetch_add(1, std::memory_order_relaxed);
  return result;
}

ModelRepository::ModelRepository(fs::path store_dir, runtime::OnnxRuntime& ort,
                                 AgentConfig config, std::string platform,
                                 BackendDecorator decorate)
    : store_dir_(std::move(store_dir)),
      ort_(ort),
      config_(std::move(config)),
      platform_(std::move(platform)),
      decorate_(std::move(decorate)) {}

ModelRepository::~ModelRepository() = default;

std::mutex& ModelRepository::LoadMutex(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& m = load_mutexes_[name];
  if (!m) {
    m = std::make_unique<std::mutex>();
  }
  return *m;
}

void ModelRepository::SetState(const std::string& name, const std::string& version,
                               ModelState state, std::string reason,
                               std::shared_ptr<ServedVersion> served) {
  std::lock_guard lock(mutex_);
  Slot& slot = models_[name].versions[version];
  slot.state = state;
  slot.reason = std::move(reason);
  if (served) {
    slot.release_counter = served->release_counter;
  }
  slot.served = std::move(served);
}

Result<std::shared_ptr<ServedVersion>> ModelRepository::LoadVersion(const InstalledModel& m,
                                                                   const ModelConfig& config) {
  auto started = steady_clock::now();
  auto served = std::make_shared<ServedVersion>();
  served->name = m.name;
  served->version = m.version;
  served->release_counter = m.release_counter;
  served->index_digest = m.index_digest;
  served->config = config;

  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(m.path));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Package package, pkg::LoadPackage(*reader, m.version));
  AIRLOCK_ASSIGN_OR_RETURN(const pkg::Variant* variant, package.Select(platform_));

  // The store verified every blob at install; the model files are checked again because they
  // are what runs, and a disk can rot or be tampered with between install and load.
  auto weights = variant->Layers(pkg::media::kModelWeight);
  if (weights.empty()) {
    return Fail(ErrorCode::kCorrupt, "the package has no model weight layer");
  }
  for (const auto* w : weights) {
    AIRLOCK_RETURN_IF_ERROR(reader->VerifyBlob(*w));
  }
  std::unique_ptr<runtime::InferenceBackend> backend;
  if (weights.size() == 1) {
    // One file: load the verified blob in place.
    AIRLOCK_ASSIGN_OR_RETURN(
        backend, ort_.Load(m.path / pkg::BlobPath(weights.front()->digest), config.session));
  } else {
    // External data files must sit beside the model under their names.
    AIRLOCK_ASSIGN_OR_RETURN(
        TempDirectory files,
        TempDirectory::Create(store_dir_ / (TemporaryPrefix(store_dir_ / "load", "files") +
                                            "XXXXXX")));
    AIRLOCK_ASSIGN_OR_RETURN(fs::path entry,
                             pkg::MaterializeModel(*reader, *variant, files.path()));
    AIRLOCK_ASSIGN_OR_RETURN(backend, ort_.Load(entry, config.session));
  }
  served->backend = decorate_ ? decorate_(std::move(backend)) : std::move(backend);
  served->signature = served->backend->signature();

  served->pipeline = nlohmann::json::object();
  auto pipelines = variant->Layers(pkg::media::kPipeline);
  if (!pipelines.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, reader->ReadBlob(*pipelines.front()));
    AIRLOCK_ASSIGN_OR_RETURN(served->pipeline,
                             trust::ParseJson(text, pkg::kMaxJsonBlob, "pipeline.json"));
    auto steps = pipeline::Pipeline::Parse(served->pipeline, served->signature);
    if (!steps) {
      return Fail(std::move(steps.error()).WithContext("the package's pipeline.json"));
    }
    served->steps = std::move(*steps);
  }

  // Warm up: the first runs allocate and specialise; the samples also prove the model computes
  // what its publisher recorded, on this machine.
  auto samples = variant->Layers(pkg::media::kSamples);
  if (config.warmup && !samples.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader->ReadBlob(*samples.front(), 1ULL << 30));
    AIRLOCK_ASSIGN_OR_RETURN(pkg::Samples parsed, pkg::ParseSamplesLayer(bytes));
    for (auto& set : parsed.sets) {
      AIRLOCK_RETURN_IF_ERROR(pkg::BindToSignature(set, served->signature));
    }
    auto outcome = pkg::RunSamples(*served->backend, parsed);
    if (!outcome) {
      return Fail(std::move(outcome.error()).WithContext("warm-up with the package's samples"));
    }
    served->warmup_samples = parsed.sets.size();
  }
  if (config_.telemetry.enabled) {
    served->monitor = NewMonitor(*served, *reader, *variant, config_.telemetry);
  }
  served->capture = capture_;
  served->scheduler = std::make_unique<Scheduler>(served->backend, config, served->stats);
  served->loaded_at = std::chrono::system_clock::now();
  served->load_duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started);
  return served;
}

Status ModelRepository::LoadInto(const std::string& name, const InstalledModel& m,
                                 const ModelConfig& config) {
  {
    std::lock_guard lock(mutex_);
    Slot& slot = models_[name].versions[m.version];
    slot.release_counter = m.release_counter;
    if (slot.state == ModelState::kReady) {
      return {};
    }
    slot.state = ModelState::kLoading;
    slot.reason.clear();
  }
  ++loads_;
  auto served = LoadVersion(m, config);
  if (!served) {
    ++load_failures_;
    Error e = std::move(served.error()).WithContext("loading " + name + " " + m.version);
    spdlog::warn("{}", e.ToString());
    SetState(name, m.version, ModelState::kUnavailable, e.ToString());
    return Fail(std::move(e));
  }
  spdlog::info("{} {} is ready (loaded in {} ms, {} warm-up samples)", name, m.version,
               (*served)->load_duration.count(), (*served)->warmup_samples);
  SetState(name, m.version, ModelState::kReady, "", std::move(*served));
  return {};
}

Status ModelRepository::Load(const std::string& name) {
  std::lock_guard load_lock(LoadMutex(name));
  AIRLOCK_ASSIGN_OR_RETURN(auto installed, InstalledVersions(store_dir_, name));
  if (installed.empty()) {
    return Fail(ErrorCode::kNotFound, "model \"" + name +
                                          "\" is not installed (install it with airlock-agent "
                                          "install PACKAGE --root ROOT)");
  }
  const ModelConfig& config = config_.For(name);
  std::optional<std::string> pinned;
  {
    std::lock_guard lock(mutex_);
    Model& model = models_[name];
    model.wanted = true;
    pinned = model.pinned;
    for (const auto& m : installed) {
      Slot& slot = model.versions[m.version];
      slot.release_counter = m.release_counter;
      if (slot.state == ModelState::kUnavailable && slot.reason.empty()) {
        slot.reason = "not loaded";
      }
    }
  }

  // The versions to serve, in order of preference.
  std::vector<const InstalledModel*> candidates;
  std::size_t want = installed.size();
  VersionPolicy policy = config.versions;
  if (pinned) {
    policy.kind = VersionPolicy::Kind::kSpecific;
    policy.versions = {*pinned};
  }
  switch (policy.kind) {
    case VersionPolicy::Kind::kLatest:
      want = config.versions.latest;
      for (const auto& m : installed) {
        candidates.push_back(&m);
      }
      break;
    case VersionPolicy::Kind::kAll:
      for (const auto& m : installed) {
        candidates.push_back(&m);
      }
      break;
    case VersionPolicy::Kind::kSpecific:
      want = policy.versions.size();
      for (const auto& v : policy.versions) {
        auto it = std::find_if(installed.begin(), installed.end(),
                               [&](const auto& m) { return m.version == v; });
        if (it == installed.end()) {
          SetState(name, v, ModelState::kUnavailable, "not installed");
        } else {
          candidates.push_back(&*it);
        }
      }
      break;
  }

  std::vector<std::string> chosen;
  std::optional<Error> first_error;
  for (const InstalledModel* m : candidates) {
    if (chosen.size() >= want) {
      break;
    }
    auto loaded = LoadInto(name, *m, config);
    if (!loaded) {
      if (!first_error) {
        first_error = loaded.error();
      }
      continue;
    }
    chosen.push_back(m->version);
  }

  // Only now, with the new versions ready, retire the ones the policy no longer wants (none when
  // nothing it wants loaded: what served keeps serving).
  bool retired = false;
  if (!chosen.empty()) {
    std::lock_guard lock(mutex_);
    for (auto& [version, slot] : models_[name].versions) {
      if (slot.state == ModelState::kReady &&
          std::find(chosen.begin(), chosen.end(), version) == chosen.end()) {
        slot.state = ModelState::kUnavailable;
        slot.reason = "unloaded: not wanted by the version policy";
        slot.served.reset();
        retired = true;
      }
    }
  }
  if (retired) {
    ReleaseFreeMemory();
  }
  if (chosen.empty()) {
    return Fail(first_error ? *first_error
                            : Error(ErrorCode::kNotFound, "no version of \"" + name +
                                                              "\" matches its version policy"));
  }
  return {};
}

void ModelRepository::SetPin(const std::string& name, const std::string& version) {
  std::lock_guard lock(mutex_);
  models_[name].pinned = version;
}

Status ModelRepository::Preload(const std::string& name, const std::string& version) {
  std::lock_guard load_lock(LoadMutex(name));
  AIRLOCK_ASSIGN_OR_RETURN(auto installed, InstalledVersions(store_dir_, name));
  auto it = std::find_if(installed.begin(), installed.end(),
                         [&](const InstalledModel& m) { return m.version == version; });
  if (it == installed.end()) {
    return Fail(ErrorCode::kNotFound, name + " " + version + " is not installed");
  }
  return LoadInto(name, *it, config_.For(name));
}

Result<std::shared_ptr<ServedVersion>> ModelRepository::LoadDetached(const std::string& name,
                                                                     const std::string& version) {
  AIRLOCK_ASSIGN_OR_RETURN(auto installed, InstalledVersions(store_dir_, name));
  auto it = std::find_if(installed.begin(), installed.end(),
                         [&](const InstalledModel& m) { return m.version == version; });
  if (it == installed.end()) {
    return Fail(ErrorCode::kNotFound, name + " " + version + " is not installed");
  }
  auto served = LoadVersion(*it, config_.For(name));
  if (!served) {
    return Fail(std::move(served.error()).WithContext("loading " + name + " " + version));
  }
  return served;
}

Status ModelRepository::Pin(const std::string& name, const std::string& version) {
  std::optional<std::string> before;
  {
    std::lock_guard lock(mutex_);
    before = models_[name].pinned;
    models_[name].pinned = version;
  }
  Status loaded = Load(name);
  if (!loaded) {
    std::lock_guard lock(mutex_);
    models_[name].pinned = before;
  }
  return loaded;
}

Status ModelRepository::Unload(const std::string& name) {
  std::lock_guard load_lock(LoadMutex(name));
  {
    std::lock_guard lock(mutex_);
    auto it = models_.find(name);
    if (it == models_.end()) {
      return Fail(ErrorCode::kNotFound, "model \"" + name + "\" is not loaded");
    }
    it->second.wanted = false;
    for (auto& [version, slot] : it->second.versions) {
      if (slot.state == ModelState::kReady) {
        slot.state = ModelState::kUnavailable;
        slot.reason = "unloaded";
      }
      slot.served.reset();
    }
  }
  ReleaseFreeMemory();
  return {};
}

std::vector<Error> ModelRepository::LoadAtStart() {
  std::vector<std::string> names = config_.load;
  if (config_.model_control == AgentConfig::ModelControl::kAll) {
    auto store = ModelStore::Open(store_dir_);
    if (!store) {
      return {store.error()};
    }
    auto all = store->List();
    if (!all) {
      return {all.error()};
    }
    for (const auto& m : *all) {
      if (std::find(names.begin(), names.end(), m.name) == names.end()) {
        names.push_back(m.name);
      }
    }
  }
  std::vector<Error> errors;
  for (const auto& name : names) {
    {
      std::lock_guard lock(mutex_);
      auto it = models_.find(name);
      if (it != models_.end() && it->second.pinned && it->second.pinned->empty()) {
        continue;  // pinned to nothing: a managed model whose first activation never committed
      }
    }
    auto s = Load(name);
    if (!s) {
      errors.push_back(s.error());
    }
  }
  return errors;
}

Result<std::shared_ptr<ServedVersion>> ModelRepository::Find(const std::string& name,
                                                             const std::string& version) const {
  std::lock_guard lock(mutex_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return Fail(ErrorCode::kNotFound, "unknown model \"" + name + "\"");
  }
  if (!version.empty()) {
    auto v = it->second.versions.find(version);
    if (v == it->second.versions.end()) {
      return Fail(ErrorCode::kNotFound,
                  "unknown version \"" + version + "\" of model \"" + name + "\"");
    }
    if (v->second.state != ModelState::kReady) {
      return Fail(ErrorCode::kUnavailable, name + " " + version + " is not ready (" +
                                               ModelStateName(v->second.state) +
                                               (v->second.reason.empty() ? "" : ": ") +
                                               v->second.reason + ")");
    }
    return v->second.served;
  }
  if (const auto& pinned = it->second.pinned) {
    auto v = it->second.versions.find(*pinned);
    if (v != it->second.versions.end() && v->second.state == ModelState::kReady) {
      return v->second.served;
    }
  }
  std::shared_ptr<ServedVersion> best;
  for (const auto& [v, slot] : it->second.versions) {
    if (slot.state == ModelState::kReady &&
        (!best || slot.served->release_counter > best->release_counter)) {
      best = slot.served;
    }
  }
  if (!best) {
    return Fail(ErrorCode::kUnavailable, "model \"" + name + "\" has no ready version");
  }
  return best;
}

std::vector<VersionStatus> ModelRepository::Index() const {
  // What is installed, whether or not it was ever loaded.
  std::vector<InstalledModel> installed;
  if (auto store = ModelStore::Open(store_dir_)) {
    if (auto all = store->List()) {
      installed = std::move(*all);
    }
  }
  std::lock_guard lock(mutex_);
  std::map<std::pair<std::string, std::string>, VersionStatus> out;
  for (const auto& m : installed) {
    out[{m.name, m.version}] = {m.name, m.version, m.release_counter, ModelState::kUnavailable,
                                "not loaded"};
  }
  for (const auto& [name, model] : models_) {
    for (const auto& [version, slot] : model.versions) {
      auto& s = out[{name, version}];
      s.name = name;
      s.version = version;
      if (slot.release_counter != 0) {
        s.release_counter = slot.release_counter;
      }
      s.state = slot.state;
      s.reason = slot.reason;
    }
  }
  std::vector<VersionStatus> list;
  for (auto& [key, s] : out) {
    list.push_back(std::move(s));
  }
  std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
    return a.name != b.name ? a.name < b.name : a.release_counter < b.release_counter;
  });
  return list;
}

std::vector<VersionStatus> ModelRepository::VersionsOf(const std::string& name) const {
  auto all = Index();
  std::vector<VersionStatus> mine;
  for (auto& s : all) {
    if (s.name == name) {
      mine.push_back(std::move(s));
    }
  }
  return mine;
}

std::vector<std::shared_ptr<ServedVersion>> ModelRepository::Ready() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<ServedVersion>> out;
  for (const auto& [name, model] : models_) {
    for (const auto& [version, slot] : model.versions) {
      if (slot.state == ModelState::kReady) {
        out.push_back(slot.served);
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a->name != b->name ? a->name < b->name : a->release_counter < b->release_counter;
  });
  return out;
}

bool ModelRepository::AllReady() const {
  std::lock_guard lock(mutex_);
  for (const auto& [name, model] : models_) {
    if (!model.wanted) {
      continue;
    }
    bool any = std::any_of(model.versions.begin(), model.versions.end(),
                           [](const auto& kv) { return kv.second.state == ModelState::kReady; });
    if (!any) {
      return false;
    }
  }
  return true;
}

}  // namespace airlock::agent
