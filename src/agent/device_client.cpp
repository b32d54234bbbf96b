#include "agent/device_client.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <array>

#include "agent/model_store.hpp"
#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/record_json.hpp"
#include "net/package_transfer.hpp"
#include "net/registry_client.hpp"
#include "pkg/release.hpp"
#include "trust/canonical_json.hpp"
#include "trust/directive.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ms = std::chrono::milliseconds;

constexpr std::size_t kMaxDirectiveBytes = 8u << 20;
const net::PublishOptions kRetained{.qos = 1, .retained = true, .content_type = "application/json"};

TimePoint Now() { return std::chrono::system_clock::now(); }

std::string ChannelKey(const std::string& model, const std::string& channel) {
  return model + "/" + channel;
}

// The activation machine's health limits from the directive's.
HealthLimits LimitsOf(const std::optional<trust::HealthLimits>& h) {
  HealthLimits limits;
  if (h) {
    limits.window = h->window;
    limits.max_error_rate = h->max_error_rate;
    limits.max_p99_ms = h->max_p99_ms;
  }
  return limits;
}

// A directive's version, read without trusting it (for the refusal report).
std::uint64_t ClaimedVersion(const trust::SignedDocument& doc) {
  const json& body = doc.body();
  auto it = body.find("version");
  return it != body.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

Result<delivery::DirectiveMessage> ParseDirectiveMessage(std::string_view payload) {
  if (payload.size() > kMaxDirectiveBytes) {
    return Fail(ErrorCode::kCorrupt, "a directive of " + std::to_string(payload.size()) +
                                         " bytes is over the limit");
  }
  AIRLOCK_ASSIGN_OR_RETURN(json j, delivery::ParsePayload(payload));
  return delivery::DirectiveMessage::FromJson(j);
}

std::uint64_t FreeBytes(const fs::path& dir) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    return UINT64_MAX;  // unknown: let the download find out
  }
  return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

}  // namespace

// What the served version had done when it was committed: the health window judges what it did
// since.
struct DeviceClient::HealthBaseline {
  std::shared_ptr<ServedVersion> served;
  std::uint64_t success = 0;
  std::uint64_t fail = 0;
  std::array<std::uint64_t, LatencyHistogram::kBoundsUs.size() + 1> buckets{};

  static std::unique_ptr<HealthBaseline> Of(std::shared_ptr<ServedVersion> s) {
    auto b = std::make_unique<HealthBaseline>();
    b->success = s->stats.success.count.load();
    b->fail = s->stats.fail.count.load();
    for (std::size_t i = 0; i < b->buckets.size(); ++i) {
      b->buckets[i] = s->stats.latency.buckets[i].load();
    }
    b->served = std::move(s);
    return b;
  }

  // Requests, errors and the 99th percentile (the upper bound of its latency bucket) since then.
  HealthSample Since() const {
    const InferenceStats& st = served->stats;
    HealthSample sample;
    std::uint64_t ok = st.success.count.load() - success;
    sample.errors = st.fail.count.load() - fail;
    sample.requests = ok + sample.errors;
    std::array<std::uint64_t, LatencyHistogram::kBoundsUs.size() + 1> delta{};
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < delta.size(); ++i) {
      delta[i] = st.latency.buckets[i].load() - buckets[i];
      total += delta[i];
    }
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < delta.size() && total > 0; ++i) {
      seen += delta[i];
      if (seen * 100 >= total * 99) {
        // Above the last bound: twice it, as a figure that fails any sane limit.
        sample.p99_ms = i < LatencyHistogram::kBoundsUs.size()
                            ? static_cast<double>(LatencyHistogram::kBoundsUs[i]) / 1000.0
                            : 2.0 * static_cast<double>(LatencyHistogram::kBoundsUs.back()) / 1000;
        break;
      }
    }
    return sample;
  }
};

json TrustedState::ToJson() const {
  json j = {{"directive_version", directive_version},
            {"channels", channels},
            {"refused_version", refused_version}};
  if (refused) {
    j["refused"] = {{"code", refused->code}, {"message", refused->message}};
  }
  return j;
}

Result<TrustedState> TrustedState::FromJson(const json& j) {
  try {
    TrustedState t;
    t.directive_version = j.at("directive_version").get<std::uint64_t>();
    t.channels = j.at("channels").get<std::map<std::string, std::uint64_t>>();
    t.refused_version = j.at("refused_version").get<std::uint64_t>();
    if (j.contains("refused")) {
      t.refused = delivery::ReportError{j["refused"].at("code").get<std::string>(),
                                        j["refused"].at("message").get<std::string>()};
    }
    return t;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kCorrupt, std::string("malformed trusted state: ") + e.what());
  }
}

Status DeviceClient::PrepareRepository(const fs::path& store, ModelRepository& repo) {
  AIRLOCK_ASSIGN_OR_RETURN(auto journals, LoadJournals(store / "state" / "journal"));
  for (const auto& [model, a] : journals) {
    repo.SetPin(model, a.active_version);
  }
  return {};
}

DeviceClient::DeviceClient(DeviceClientOptions options, DeviceIdentity identity,
                           ModelRepository& repo)
    : options_(std::move(options)),
      identity_(std::move(identity)),
      repo_(repo),
      state_dir_(options_.store / "state") {}

Result<std::unique_ptr<DeviceClient>> DeviceClient::Start(DeviceClientOptions options,
                                                          DeviceIdentity identity,
                                                          ModelRepository& repo) {
  std::unique_ptr<DeviceClient> c(new DeviceClient(std::move(options), std::move(identity), repo));
  AIRLOCK_ASSIGN_OR_RETURN(c->topics_, delivery::DeviceTopics::Create(c->identity_.mqtt_prefix));
  AIRLOCK_ASSIGN_OR_RETURN(c->root_, LoadDeviceRoot(c->options_.store, Now()));
  AIRLOCK_ASSIGN_OR_RETURN(c->directive_key_, PublicKey::FromPem(c->identity_.directive_key_pem));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(c->state_dir_));

  // What this device trusted and was doing when it last stopped.
  if (auto text = ReadFile(c->state_dir_ / "device.json", 1 << 20)) {
    AIRLOCK_ASSIGN_OR_RETURN(json j, trust::ParseJson(*text, 1 << 20, "state/device.json"));
    AIRLOCK_ASSIGN_OR_RETURN(c->trusted_, TrustedState::FromJson(j));
  } else if (text.error().code() != ErrorCode::kNotFound) {
    return Fail(text.error());
  }
  AIRLOCK_ASSIGN_OR_RETURN(c->activations_, LoadJournals(c->state_dir_ / "journal"));
  c->seq_ = static_cast<std::uint64_t>(
      std::chrono::duration_cast<Ms>(Now().time_since_epoch()).count());

  net::MqttOptions mqtt;
  mqtt.broker_url = c->identity_.mqtt_broker;
  mqtt.client_id = c->identity_.device_id;
  mqtt.username = c->identity_.mqtt_username;
  mqtt.password = c->identity_.mqtt_password;
  if (mqtt.broker_url.starts_with("mqtts://") || mqtt.broker_url.starts_with("ssl://")) {
    // The factory broker's certificate is from the gateway's device CA, as is the device's own,
    // which names it to the broker (docs/security.md, "The brokers").
    IdentityTls id = IdentityTlsFiles(c->options_.store);
    mqtt.tls = net::MqttTls{
        .ca_file = id.ca, .cert_file = id.cert, .key_file = id.key, .verify_hostname = true};
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string online,
                           c->topics_->Topic(delivery::DeviceTopicKind::kOnline,
                                             c->identity_.device_id));
  mqtt.will = net::MqttWill{online, std::string(delivery::kOfflinePayload), 1, true};
  AIRLOCK_ASSIGN_OR_RETURN(c->mqtt_, net::MqttClient::Create(mqtt));
  DeviceClient* self = c.get();
  // Before the connection handler, which wakes it.
  if (repo.config().telemetry.enabled) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string telemetry_topic,
                             c->topics_->Topic(delivery::DeviceTopicKind::kTelemetry,
                                               c->identity_.device_id));
    AIRLOCK_ASSIGN_OR_RETURN(std::string ack_topic,
                             c->topics_->Topic(delivery::DeviceTopicKind::kTelemetryAck,
                                               c->identity_.device_id));
    const TelemetryConfig& tc = repo.config().telemetry;
    AIRLOCK_ASSIGN_OR_RETURN(
        c->telemetry_,
        TelemetryReporter::Start(
            TelemetryOptions{.outbox = c->state_dir_ / "telemetry.db",
                             .device = c->identity_.device_id,
                             .interval = tc.interval,
                             .ack_timeout = c->options_.telemetry_ack_timeout,
                             .outbox_max = tc.outbox_max,
                             .batch_records = 100,
                             .batch_bytes = 256ULL << 10},
            repo, [self, telemetry_topic](const std::string& batch) {
              return self->mqtt_->Publish(telemetry_topic, batch,
                                          net::PublishOptions{.qos = 1,
                                                              .retained = false,
                                                              .content_type = "application/json"});
            }));
    AIRLOCK_RETURN_IF_ERROR(c->mqtt_->Subscribe(ack_topic, 1, [self](const net::MqttMessage& m) {
      self->telemetry_->OnAck(m.payload);
    }));
  }
  c->mqtt_->SetConnectionHandler([self, online](bool connected) {
    if (!connected) {
      return;
    }
    auto said = self->mqtt_->Publish(online, delivery::kOnlinePayload, kRetained);
    if (!said) {
      spdlog::warn("cannot say this device is online: {}", said.error().ToString());
    }
    if (self->telemetry_) {
      self->telemetry_->Wake();
    }
    std::lock_guard lock(self->mu_);
    self->report_due_ = true;
    self->cv_.notify_all();
  });
  AIRLOCK_ASSIGN_OR_RETURN(std::string directive_topic,
                           c->topics_->Topic(delivery::DeviceTopicKind::kDirective,
                                             c->identity_.device_id));
  AIRLOCK_RETURN_IF_ERROR(
      c->mqtt_->Subscribe(directive_topic, 1, [self](const net::MqttMessage& m) {
        std::lock_guard lock(self->mu_);
        self->pending_ = m.payload;  // only the newest matters: directives are whole states
        self->cv_.notify_all();
      }));
  c->worker_ = std::thread([self] { self->WorkerLoop(); });
  spdlog::info("device {}: managed by the gateway at {} (broker {})", c->identity_.device_id,
               c->identity_.gateway, c->identity_.mqtt_broker);
  return c;
}

DeviceClient::~DeviceClient() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable()) {
    worker_.join();
  }
  repo_.SetCapture(nullptr);
  capture_.reset();    // uploads what it had queued, into the outbox
  telemetry_.reset();  // its last intervals go to the outbox, not the broker
  if (mqtt_ && mqtt_->IsConnected()) {
    // A clean disconnect does not fire the last will: say it ourselves.
    if (auto topic = topics_->Topic(delivery::DeviceTopicKind::kOnline, identity_.device_id)) {
      (void)mqtt_->Publish(*topic, delivery::kOfflinePayload, kRetained);
    }
  }
  mqtt_.reset();
}

void DeviceClient::WorkerLoop() {
  // Resume. The directive applied last first (it was verified before it was saved): its packages
  // and documents serve the journaled activations, which resume next. Then the directive is
  // applied again, in case the agent stopped between trusting it and starting its targets (the
  // machines ignore what they have).
  std::optional<delivery::DirectiveMessage> saved;
  if (auto text = ReadFile(state_dir_ / "directive.json", kMaxDirectiveBytes)) {
    auto message = ParseDirectiveMessage(*text);
    if (message) {
      saved = *message;
      directive_ = std::move(*message);
    } else {
      spdlog::error("state/directive.json: {}", message.error().ToString());
    }
  }
  for (const auto& [model, a] : std::map(activations_)) {
    Drive(model, Restarted{});
  }
  if (saved) {
    HandleDirective(*saved, /*replay=*/true);
  }
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, options_.health_interval,
                 [this] { return stopping_ || pending_ || report_due_; });
    if (stopping_) {
      break;
    }
    std::optional<std::string> payload = std::exchange(pending_, std::nullopt);
    lock.unlock();
    if (payload) {
      if (payload->empty()) {
        spdlog::warn("the gateway withdrew this device's directive (revoked?); serving on as is");
      } else {
        auto message = ParseDirectiveMessage(*payload);
        if (message) {
          HandleDirective(*message, /*replay=*/false);
        } else {
          Refuse(0, message.error());
        }
      }
    }
    SampleHealth();
    lock.lock();
    bool report = std::exchange(report_due_, false);
    lock.unlock();
    if (report) {
      Report();
    }
    lock.lock();
  }
}

void DeviceClient::Refuse(std::uint64_t version, const Error& error) {
  spdlog::error("refused directive {}: {}", version, error.ToString());
  if (version == 0) {
    return;  // it names no version (not even readable): nothing to report it under
  }
  trusted_.refused_version = version;
  trusted_.refused = delivery::ReportError{ErrorCodeName(error.code()),
                                           error.ToString().substr(0, delivery::kMaxTextLength)};
  if (auto saved = SaveTrusted(); !saved) {
    spdlog::error("{}", saved.error().ToString());
  }
  std::lock_guard lock(mu_);
  report_due_ = true;
}

const trust::SignedDocument* DeviceClient::ReleaseDocument(const std::string& release) const {
  if (!directive_) {
    return nullptr;
  }
  for (const auto& doc : directive_->releases) {
    auto id = trust::ReleaseId(doc);
    if (id && id->ToString() == release) {
      return &doc;
    }
  }
  return nullptr;
}

bool DeviceClient::ApplyRootRotations(const std::vector<trust::SignedDocument>& roots,
                                      TimePoint now) {
  const std::int64_t before = root_.root.version;
  auto update =
      trust::AcceptRootRotations(root_, RootRotationsDir(options_.store), roots, now);
  if (!update) {
    last_root_error_ = std::move(update.error()).WithContext("the directive's root rotation");
    return false;
  }
  if (update->accepted.empty()) {
    return true;
  }
  spdlog::info("trusting root version {} (was {})", root_.root.version, before);
  if (update->channel_keys_rotated && !trusted_.channels.empty()) {
    // Fast-forward recovery (trust/documents.hpp, RootUpdate): a removed channel key may have
    // signed versions far ahead; the floors it set are forgotten, and the next channel
    // documents, signed by the keys trusted now, set them again.
    spdlog::warn("the root removed a key that signs channels: forgetting {} channel version(s)",
                 trusted_.channels.size());
    trusted_.channels.clear();
    if (Status saved = SaveTrusted(); !saved) {
      spdlog::error("{}", saved.error().ToString());
    }
  }
  return true;
}

void DeviceClient::HandleDirective(const delivery::DirectiveMessage& message, bool replay) {
  const TimePoint now = Now();
  if (!replay && trusted_.directive_version != 0 &&
      ClaimedVersion(message.directive) == trusted_.directive_version) {
    // The retained copy of what was applied, read again after a reconnect: nothing to do, even
    // once it has expired (expiry stops a directive from being applied, not from having been).
    return;
  }
  auto directive = trust::VerifyDirective(message.directive, *directive_key_,
                                          identity_.device_id, trusted_.directive_version, now);
  if (!directive) {
    if (!replay) {
      // Reported under its version only when the gateway signed it for this device: a version
      // nobody authenticated is anyone's to choose, and a refusal of one far ahead would stand
      // over every genuine directive below it (the gateway would read each as refused).
      auto signed_for_us = trust::VerifyDirective(message.directive, *directive_key_,
                                                  identity_.device_id, 0, TimePoint::min());
      Refuse(signed_for_us ? signed_for_us->version : 0, directive.error());
    }
    return;
  }
  // Root rotations first: the entries are checked against the newest root. A rotation stands on
  // the root keys' signatures alone, so it is kept even if an entry below is then refused.
  if (!message.roots.empty() && !ApplyRootRotations(message.roots, now)) {
    if (!replay) {
      Refuse(directive->version, last_root_error_);
    }
    return;
  }

  // Every entry must check out before any is acted on.
  std::map<std::string, std::uint64_t> channels = trusted_.channels;
  std::vector<std::pair<const trust::DirectiveModel*, trust::CheckedRelease>> checked;
  for (const auto& entry : directive->models) {
    const trust::SignedDocument* channel_doc = nullptr;
    for (const auto& doc : message.channels) {
      // Picked by what the body claims; CheckDirectiveModel verifies it.
      auto claimed = trust::Channel::FromJson(doc.body());
      if (claimed && claimed->model == entry.model && claimed->name == entry.channel) {
        channel_doc = &doc;
      }
    }
    const trust::SignedDocument* release_doc = nullptr;
    for (const auto& doc : message.releases) {
      auto id = trust::ReleaseId(doc);
      if (id && *id == entry.release) {
        release_doc = &doc;
      }
    }
    if (channel_doc == nullptr || release_doc == nullptr) {
      Refuse(directive->version,
             Error(ErrorCode::kVerification,
                   "model " + entry.model + ": the directive message carries no " +
                       (channel_doc == nullptr ? "channel document " + entry.channel
                                               : "release document " + entry.release.ToString())));
      return;
    }
    const std::string key = ChannelKey(entry.model, entry.channel);
    auto ok = trust::CheckDirectiveModel(entry, *channel_doc, *release_doc, root_.root, now,
                                         channels.count(key) ? channels[key] : 0,
                                         options_.platform);
    if (!ok) {
      Refuse(directive->version, ok.error());
      return;
    }
    if (message.PackageOf(entry.release.ToString()) == nullptr) {
      Refuse(directive->version,
             Error(ErrorCode::kInvalidArgument,
                   "model " + entry.model + ": the directive message names no package for " +
                       entry.release.ToString()));
      return;
    }
    channels[key] = std::max(channels[key], ok->channel.version);
    checked.emplace_back(&entry, std::move(*ok));
  }

  // Trust it: the message first (its packages and documents serve the targets), then the state.
  if (!replay) {
    auto saved = WriteFileAtomic(state_dir_ / "directive.json", message.ToJson().dump());
    if (saved) {
      trusted_.directive_version = directive->version;
      trusted_.channels = std::move(channels);
      if (trusted_.refused_version <= directive->version) {
        trusted_.refused_version = 0;
        trusted_.refused.reset();
      }
      saved = SaveTrusted();
    }
    if (!saved) {
      spdlog::error("cannot keep directive {}: {}; it is not applied", directive->version,
                    saved.error().ToString());
      return;
    }
    spdlog::info("directive {} accepted: {} model(s)", directive->version,
                 directive->models.size());
  }
  directive_ = message;
  ApplyCapture(directive->capture);

  const std::vector<InstalledModel> on_disk = Installed();
  // Named pieces, not structured bindings, where a lambda captures them: clang 14 (the fuzz
  // preset's compiler) cannot capture a structured binding.
  for (const auto& item : checked) {
    const trust::DirectiveModel* entry = item.first;
    const trust::CheckedRelease& release = item.second;
    if (entry->mode == trust::DirectiveMode::kShadow) {
      continue;
    }
    bool installed = std::any_of(on_disk.begin(), on_disk.end(), [&](const InstalledModel& m) {
      return m.name == entry->model && m.version == release.release.version &&
             m.index_digest == release.release.index_digest.ToString();
    });
    Drive(entry->model, NewTarget{.directive_version = directive->version,
                                  .version = release.release.version,
                                  .release = entry->release.ToString(),
                                  .health = LimitsOf(entry->health),
                                  .installed = installed});
  }
  // Shadows: started for the entries that name one, stopped for the models that no longer do.
  for (const auto& [entry, release] : checked) {
    if (entry->mode == trust::DirectiveMode::kShadow) {
      StartShadow(entry->model, release.release.version, entry->release.ToString());
    }
  }
  for (const auto& item : std::map(shadows_)) {
    const std::string& model = item.first;
    bool named = std::any_of(directive->models.begin(), directive->models.end(), [&](const auto& e) {
      return e.model == model && e.mode == trust::DirectiveMode::kShadow;
    });
    if (!named) {
      StopShadow(model);
    }
  }
  // A model the directive no longer names stops serving (it stays installed).
  for (auto& item : activations_) {
    const std::string& model = item.first;
    Activation& a = item.second;
    bool named = std::any_of(directive->models.begin(), directive->models.end(),
                             [&](const auto& e) { return e.model == model; });
    if (named || (a.active_version.empty() && a.phase == Phase::kIdle) ||
        a.directive_version >= directive->version) {
      continue;
    }
    if (auto s = Serve(model, ""); !s) {
      spdlog::error("{}", s.error().ToString());
    }
    Activation cleared = NewActivation(model, "", "", now);
    cleared.directive_version = directive->version;
    if (auto s = SaveJournal(state_dir_ / "journal", cleared); !s) {
      spdlog::error("{}", s.error().ToString());
      continue;
    }
    baselines_.erase(model);
    a = std::move(cleared);
    spdlog::info("{}: no longer in the directive; it serves no version", model);
  }
  std::lock_guard lock(mu_);
  report_due_ = true;
}

void DeviceClient::Drive(const std::string& model, Event first) {
  std::deque<Event> events{std::move(first)};
  while (!events.empty()) {
    Event event = std::move(events.front());
    events.pop_front();
    auto it = activations_.find(model);
    Activation current =
        it != activations_.end() ? it->second : NewActivation(model, "", "", Now());
    Step step = Apply(current, event, Now());
    if (!step.applied) {
      spdlog::debug("{}: {} ignored: {}", model, EventName(event), step.note);
      continue;
    }
    if (auto saved = SaveJournal(state_dir_ / "journal", step.activation); !saved) {
      // Acting on a step that is not on disk could leave a state no restart can explain.
      spdlog::error("{}: {}; the activation waits", model, saved.error().ToString());
      return;
    }
    activations_[model] = step.activation;
    spdlog::info("{}: {} → {} ({})", model, EventName(event), PhaseName(step.activation.phase),
                 step.note);
    for (const Action& action : step.actions) {
      for (Event& next : Perform(model, action)) {
        events.push_back(std::move(next));
      }
    }
  }
}

std::vector<Event> DeviceClient::Perform(const std::string& model, const Action& action) {
  switch (action.kind) {
    case ActionKind::kDownload:
      return {Download(model, action)};
    case ActionKind::kVerify:
      return {Verify(model, action)};
    case ActionKind::kStage:
      return {Stage(model, action)};
    case ActionKind::kLoad: {
      // Preload loads, warms up and runs the samples in one go; the phases follow one another.
      auto loaded = repo_.Preload(model, action.version);
      if (!loaded) {
        bool samples = loaded.error().code() == ErrorCode::kMismatch;
        if (!samples) {
          return {PhaseFailed{Phase::kLoading, action.release, "load-error",
                              loaded.error().ToString()}};
        }
        return {PhaseDone{Phase::kLoading, action.release},
                PhaseDone{Phase::kWarmingUp, action.release},
                PhaseFailed{Phase::kValidating, action.release, "samples-mismatch",
                            loaded.error().ToString()}};
      }
      return {PhaseDone{Phase::kLoading, action.release},
              PhaseDone{Phase::kWarmingUp, action.release},
              PhaseDone{Phase::kValidating, action.release}};
    }
    case ActionKind::kCommit:
    case ActionKind::kServe:
      if (auto s = Serve(model, action.version); !s) {
        spdlog::error("{}: cannot serve {}: {}", model, action.version, s.error().ToString());
      }
      return {};
    case ActionKind::kRollBack:
      if (auto s = Serve(model, action.version); !s) {
        // What served keeps serving, and the model stays failed: it is not rolled back.
        spdlog::error("{}: cannot roll back to {}: {}", model, action.version,
                      s.error().ToString());
        return {};
      }
      return {RolledBack{action.version}};
    case ActionKind::kReport: {
      std::lock_guard lock(mu_);
      report_due_ = true;
      return {};
    }
  }
  return {};
}

Status DeviceClient::Serve(const std::string& model, const std::string& version) {
  baselines_.erase(model);
  if (version.empty()) {
    repo_.SetPin(model, "");
    auto unloaded = repo_.Unload(model);
    if (!unloaded && unloaded.error().code() != ErrorCode::kNotFound) {
      return unloaded;
    }
    return {};
  }
  AIRLOCK_RETURN_IF_ERROR(repo_.Pin(model, version));
  AIRLOCK_ASSIGN_OR_RETURN(auto served, repo_.Find(model));
  if (auto shadow = shadows_.find(model); shadow != shadows_.end()) {
    served->shadow.store(shadow->second.tap);  // the shadow follows the version that serves
  }
  baselines_[model] = HealthBaseline::Of(std::move(served));
  return {};
}

void DeviceClient::StartShadow(const std::string& model, const std::string& version,
                               const std::string& release) {
  if (auto it = shadows_.find(model); it != shadows_.end() && it->second.release == release) {
    return;
  }
  StopShadow(model);
  // Fetched and installed as a target is, but in one go: a shadow has no journal, and a restart
  // starts it again from the retained directive.
  const std::vector<InstalledModel> on_disk = Installed();
  bool installed = std::any_of(on_disk.begin(), on_disk.end(), [&](const InstalledModel& m) {
    return m.name == model && m.version == version;
  });
  Action action{ActionKind::kDownload, version, release};
  for (auto step : {&DeviceClient::Download, &DeviceClient::Verify, &DeviceClient::Stage}) {
    if (installed) {
      break;
    }
    Event done = (this->*step)(model, action);
    if (const auto* failed = std::get_if<PhaseFailed>(&done)) {
      spdlog::error("{}: shadow {} not started: {} {}", model, version, failed->code,
                    failed->message);
      return;
    }
  }
  auto candidate = repo_.LoadDetached(model, version);
  if (!candidate) {
    spdlog::error("{}: shadow {} not started: {}", model, version, candidate.error().ToString());
    return;
  }
  auto tap = std::make_shared<ShadowTap>(std::move(*candidate));
  if (auto served = repo_.Find(model)) {
    (*served)->shadow.store(tap);
  }
  shadows_[model] = Shadow{version, release, std::move(tap)};
  spdlog::info("{}: {} runs in shadow", model, version);
}

void DeviceClient::StopShadow(const std::string& model) {
  auto it = shadows_.find(model);
  if (it == shadows_.end()) {
    return;
  }
  if (auto served = repo_.Find(model); served && (*served)->shadow.load() == it->second.tap) {
    (*served)->shadow.store(nullptr);
  }
  spdlog::info("{}: shadow {} stopped ({} of {} agreed)", model, it->second.version,
               it->second.tap->agreed(), it->second.tap->compared());
  shadows_.erase(it);
}

void DeviceClient::ApplyCapture(const std::optional<trust::CapturePolicy>& policy) {
  if ((capture_ ? std::optional(capture_->policy()) : std::nullopt) == policy) {
    return;
  }
  repo_.SetCapture(nullptr);
  capture_.reset();  // writes what it had queued
  if (!policy || policy->rate <= 0) {
    spdlog::info("capture: off");
    return;
  }
  CaptureRing::Uploader upload;
  if (telemetry_) {
    TelemetryReporter* reporter = telemetry_.get();
    upload = [reporter](const std::string& payload, std::int64_t at_ms) {
      reporter->AppendCapture(payload, at_ms);
    };
  }
  auto ring = CaptureRing::Open(options_.store / "captures", identity_.device_id, *policy,
                                std::move(upload), repo_.config().telemetry.capture_max_per_second);
  if (!ring) {
    spdlog::error("capture: {}", ring.error().ToString());
    return;
  }
  capture_ = std::move(*ring);
  repo_.SetCapture(capture_);
  spdlog::info("capture: {} of requests, at most {}/s ({}{}), at most {} bytes on disk, {}",
               policy->rate, capture_->max_per_second(),
               policy->inputs ? "inputs" : "", policy->outputs ? (policy->inputs ? " and outputs" : "outputs") : "",
               policy->max_bytes, policy->upload && telemetry_ ? "uploaded" : "kept on the device");
}

fs::path DeviceClient::FetchedDir() const { return state_dir_ / "downloads" / "fetched"; }

fs::path DeviceClient::DownloadDir(const std::string& release) const {
  std::string hex = release.substr(release.find(':') + 1);
  return state_dir_ / "downloads" / hex;
}

Event DeviceClient::Download(const std::string& model, const Action& action) {
  auto failed = [&](std::string code, std::string message) -> Event {
    return PhaseFailed{Phase::kDownloading, action.release, std::move(code), std::move(message)};
  };
  const trust::SignedDocument* doc = ReleaseDocument(action.release);
  const delivery::DirectivePackage* package =
      directive_ ? directive_->PackageOf(action.release) : nullptr;
  if (doc == nullptr || package == nullptr) {
    return failed("no-package", "the directive names no package for " + action.release);
  }
  auto release = trust::Release::FromJson(doc->body());
  if (!release) {
    return failed("verification", release.error().ToString());
  }
  fs::path dir = DownloadDir(action.release);
  if (auto made = MakeDirectories(dir.parent_path()); !made) {
    return failed("no-space", made.error().ToString());
  }
  std::uint64_t free_bytes = FreeBytes(dir.parent_path());
  if (free_bytes < package->size + options_.reserve_bytes) {
    return failed("no-space", model + " " + action.version + " needs " +
                                  std::to_string(package->size) + " bytes and " +
                                  std::to_string(options_.reserve_bytes) +
                                  " in reserve; the store's disk has " +
                                  std::to_string(free_bytes) + " free");
  }
  const std::string& url = identity_.gateway;
  net::RegistryOptions registry;
  registry.plain_http = url.starts_with("http://");
  registry.registry = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  while (!registry.registry.empty() && registry.registry.back() == '/') {
    registry.registry.pop_back();
  }
  registry.server_name = "gateway";
  registry.min_download_rate = options_.download_min_rate;
  registry.download_grace = options_.download_grace;
  if (url.starts_with("https://")) {
    // The gateway's certificate is from its device CA; ours names us to it (docs/security.md).
    IdentityTls id = IdentityTlsFiles(options_.store);
    registry.https = true;
    registry.ca_file = id.ca;
    registry.client_cert = id.cert;
    registry.client_key = id.key;
  }
  auto client = net::RegistryClient::Create(registry);
  if (!client) {
    return failed("download", client.error().ToString());
  }
  net::PullOptions pull;
  pull.replace = true;
  pull.index_size = release->index_size;  // never more than the release signs
  // Blobs an installed version shares (the weights of a release that changed only its pipeline,
  // the samples), and those a pull killed earlier had fetched (linked into fetched/ as they
  // arrive), are copied in, checked, rather than fetched again.
  const std::vector<InstalledModel> on_disk = Installed();
  const fs::path kept = FetchedDir();
  pull.local_blob = [&on_disk, &kept](const Digest& d) -> std::optional<fs::path> {
    std::vector<fs::path> places = {kept / d.hex()};
    for (const InstalledModel& m : on_disk) {
      places.push_back(m.path / "blobs" / "sha256" / d.hex());
    }
    for (const fs::path& blob : places) {
      std::error_code ec;
      if (fs::is_regular_file(blob, ec)) {
        return blob;
      }
    }
    return std::nullopt;
  };
  pull.fetched = [&kept](const Digest& d, const fs::path& blob) {
    std::error_code ec;
    fs::create_directories(kept, ec);
    fs::create_hard_link(blob, kept / d.hex(), ec);  // best effort: a resume fetches it again
  };
  std::uint64_t last_logged = 0;
  pull.progress = [&](const std::string& label, std::uint64_t done, std::uint64_t total) {
    if (done == total || done - last_logged >= (16u << 20)) {
      last_logged = done;
      spdlog::info("{} {}: {} {}/{} bytes", model, action.version, label, done, total);
    }
  };
  auto pulled = net::PullPackage(**client, package->repository,
                                 release->index_digest.ToString(), dir, pull);
  if (!pulled) {
    return failed("download", pulled.error().ToString());
  }
  spdlog::info("{} {}: downloaded {} bytes in {} blobs from {}, {} bytes in {} blobs reused",
               model, action.version, pulled->bytes, pulled->blobs, url, pulled->reused_bytes,
               pulled->reused);
  return PhaseDone{Phase::kDownloading, action.release};
}

Event DeviceClient::Verify(const std::string& model, const Action& action) {
  (void)model;
  const trust::SignedDocument* doc = ReleaseDocument(action.release);
  fs::path dir = DownloadDir(action.release);
  if (doc == nullptr) {
    return PhaseFailed{Phase::kVerifying, action.release, "verification",
                       "the directive no longer carries release " + action.release};
  }
  fs::path release_file = dir.string() + ".release.json";
  auto text = doc->Serialize();
  auto written = text ? WriteFileAtomic(release_file, *text) : Status(Fail(text.error()));
  if (!written) {
    return PhaseFailed{Phase::kVerifying, action.release, "no-space", written.error().ToString()};
  }
  pkg::VerifyOptions options;
  options.now = Now();
  options.platform = options_.platform;
  options.release_file = release_file;
  auto verified = pkg::VerifyPackage(dir, root_.document, options);
  if (!verified) {
    std::error_code ec;
    fs::remove_all(dir, ec);  // bytes that do not verify are fetched again, not trusted again
    return PhaseFailed{Phase::kVerifying, action.release,
                       verified.error().code() == ErrorCode::kCorrupt ? "digest-mismatch"
                                                                      : "verification",
                       verified.error().ToString()};
  }
  return PhaseDone{Phase::kVerifying, action.release};
}

Event DeviceClient::Stage(const std::string& model, const Action& action) {
  (void)model;
  const trust::SignedDocument* doc = ReleaseDocument(action.release);
  fs::path dir = DownloadDir(action.release);
  auto store = ModelStore::Open(options_.store);
  if (!store || doc == nullptr) {
    return PhaseFailed{Phase::kStaged, action.release, "install",
                       store ? "the directive no longer carries release " + action.release
                             : store.error().ToString()};
  }
  InstallOptions install;
  install.approved_release = *doc;
  auto installed = store->Install(dir, root_.document, Now(), options_.platform, install);
  if (!installed) {
    return PhaseFailed{Phase::kStaged, action.release,
                       installed.error().code() == ErrorCode::kIo ? "no-space" : "install",
                       installed.error().ToString()};
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::remove(dir.string() + ".release.json", ec);
  fs::remove_all(FetchedDir(), ec);  // installed: the store has every blob now
  return PhaseDone{Phase::kStaged, action.release};
}

void DeviceClient::SampleHealth() {
  const TimePoint now = Now();
  if (std::chrono::steady_clock::now() - last_report_ >= options_.shadow_report_interval) {
    for (const auto& [model, shadow] : shadows_) {
      if (shadow.tap->compared() != shadow.reported) {
        std::lock_guard lock(mu_);
        report_due_ = true;
      }
    }
  }
  for (const auto& [model, a] : std::map(activations_)) {
    if (a.phase != Phase::kActive || !a.health_until) {
      continue;
    }
    auto b = baselines_.find(model);
    if (b != baselines_.end() && b->second->served->version == a.active_version) {
      Drive(model, b->second->Since());
    }
    if (now >= *a.health_until) {
      Drive(model, Tick{});
    }
  }
}

Status DeviceClient::SaveTrusted() {
  return WriteFileAtomic(state_dir_ / "device.json", trusted_.ToJson().dump(2) + "\n", 0600);
}

delivery::Envelope DeviceClient::NewEnvelope() const {
  auto id = RandomHex(8);
  return delivery::Envelope{
      .message_id = id ? *id : std::to_string(seq_),
      .sent_at = std::chrono::time_point_cast<std::chrono::seconds>(Now())};
}

std::vector<InstalledModel> DeviceClient::Installed() const {
  auto store = ModelStore::Open(options_.store);
  auto list = store ? store->List() : Result<std::vector<InstalledModel>>(Fail(store.error()));
  if (!list) {
    spdlog::warn("cannot list the model store: {}", list.error().ToString());
    return {};
  }
  return std::move(*list);
}

void DeviceClient::Report() {
  last_report_ = std::chrono::steady_clock::now();
  delivery::DeviceState state;
  state.envelope = NewEnvelope();
  state.device = identity_.device_id;
  auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<Ms>(Now().time_since_epoch()).count());
  seq_ = std::max(seq_ + 1, now_ms);
  state.seq = seq_;
  state.platform = options_.platform;
  state.directive_version = trusted_.directive_version;
  state.refused_version = trusted_.refused_version;
  state.refused = trusted_.refused;
  const std::vector<InstalledModel> installed = Installed();
  for (const auto& [model, a] : activations_) {
    if (state.models.size() >= delivery::kMaxDeviceModels) {
      break;
    }
    delivery::ModelReport r;
    r.model = model;
    r.phase = PhaseName(a.phase);
    r.active_version = a.active_version;
    r.active_release = a.active_release;
    if (a.target && a.phase != Phase::kActive) {
      r.target_version = a.target->version;
      r.target_release = a.target->release;
    }
    for (const auto& m : installed) {
      if (m.name == model && r.installed.size() < delivery::kMaxInstalledVersions) {
        r.installed.push_back(m.version);
      }
    }
    if (auto shadow = shadows_.find(model); shadow != shadows_.end()) {
      const ShadowTap& tap = *shadow->second.tap;
      std::uint64_t compared = tap.compared();
      shadow->second.reported = compared;
      r.shadow = delivery::ShadowReport{shadow->second.version, shadow->second.release, compared,
                                        std::min(tap.agreed(), compared)};
    }
    if (a.last_error) {
      r.error = delivery::ReportError{a.last_error->code, a.last_error->message.substr(
                                                              0, delivery::kMaxTextLength)};
    }
    state.models.push_back(std::move(r));
  }
  auto topic = topics_->Topic(delivery::DeviceTopicKind::kState, identity_.device_id);
  if (!topic) {
    return;
  }
  auto sent = mqtt_->Publish(*topic, state.ToJson().dump(), kRetained);
  if (!sent) {
    spdlog::debug("state report not sent ({}); again on reconnect", sent.error().ToString());
    std::lock_guard lock(mu_);
    report_due_ = mqtt_->IsConnected();  // else the connection handler asks again
  }
}

}  // namespace airlock::agent
