#include "hub/orchestrator.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;
using delivery::ActionKind;
using delivery::DeliveryState;

constexpr std::size_t kMaxQueued = 100000;          // work items waiting for the worker
constexpr std::size_t kSeenMessages = 4096;         // message ids remembered for repeats
constexpr char kOctetStream[] = "application/octet-stream";
constexpr std::chrono::seconds kMaxSleep{1};

Result<std::string> ReadManifest(store::MetadataStore& meta, std::string_view repository,
                                 const Digest& digest) {
  AIRLOCK_ASSIGN_OR_RETURN(store::ManifestRecord m, meta.GetManifest(repository, digest));
  return std::move(m.bytes);
}

// A descriptor {mediaType, digest, size} as a PackageBlob.
Result<PackageBlob> BlobOf(const json& descriptor, const std::string& where) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kCorrupt, where + ": " + why);
  };
  if (!descriptor.is_object() || !descriptor.contains("digest") ||
      !descriptor["digest"].is_string() || !descriptor.contains("size") ||
      !descriptor["size"].is_number_unsigned()) {
    return bad("a descriptor needs a digest and a size");
  }
  auto digest = Digest::Parse(descriptor["digest"].get<std::string>());
  if (!digest) {
    return bad("unsupported digest " + descriptor["digest"].get<std::string>().substr(0, 80));
  }
  std::string type = descriptor.value("mediaType", std::string(kOctetStream));
  bool printable = !type.empty() && type.size() <= delivery::kMaxMediaTypeLength &&
                   std::all_of(type.begin(), type.end(), [](char c) { return c > ' ' && c < 127; });
  return PackageBlob{.digest = *digest,
                     .size = descriptor["size"].get<std::uint64_t>(),
                     .media_type = printable ? type : std::string(kOctetStream)};
}

std::string PlatformOf(const json& descriptor) {
  if (!descriptor.contains("platform") || !descriptor["platform"].is_object()) {
    return "";
  }
  const json& p = descriptor["platform"];
  std::string out = p.value("os", "") + "/" + p.value("architecture", "");
  if (!p.value("variant", "").empty()) {
    out += "/" + p.value("variant", "");
  }
  return delivery::ValidPlatform(out) ? out : "";
}

std::string Seconds(TimePoint t) { return FormatRfc3339(t); }

}  // namespace

// ---- the package ----

std::uint64_t PackagePlan::PlatformSize(const std::string& platform) const {
  auto blobs = BlobsFor({platform});
  std::uint64_t total = 0;
  if (blobs) {
    for (const auto& b : *blobs) {
      total += b.size;
    }
  }
  return total;
}

Result<std::vector<PackageBlob>> PackagePlan::BlobsFor(
    const std::vector<std::string>& wanted) const {
  std::vector<PackageBlob> out = {index};
  std::set<Digest> seen = {index.digest};
  for (const auto& platform : wanted) {
    auto it = platforms.find(platform);
    if (it == platforms.end()) {
      return Fail(ErrorCode::kNotFound, "the package has no platform " + platform);
    }
    for (const auto& b : it->second) {
      if (seen.insert(b.digest).second) {
        out.push_back(b);
      }
    }
  }
  return out;
}

Result<PackagePlan> PlanPackage(store::MetadataStore& meta, std::string_view repository,
                                const Digest& index_digest, std::string_view index_media_type) {
  PackagePlan plan;
  plan.repository = std::string(repository);
  AIRLOCK_ASSIGN_OR_RETURN(std::string index_bytes, ReadManifest(meta, repository, index_digest));
  plan.index = {.digest = index_digest,
                .size = index_bytes.size(),
                .media_type = index_media_type.empty() ? std::string(kOctetStream)
                                                       : std::string(index_media_type)};
  json index = json::parse(index_bytes, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return Fail(ErrorCode::kCorrupt, "index " + index_digest.ToString() + " has no manifests");
  }
  std::set<Digest> counted = {index_digest};
  plan.total_size = plan.index.size;
  for (const auto& m : index["manifests"]) {
    std::string platform = PlatformOf(m);
    if (platform.empty() || plan.platforms.contains(platform)) {
      continue;  // not a platform variant (an attestation, …), or a second one for a platform
    }
    std::string where = "index " + index_digest.ToString() + ", " + platform;
    AIRLOCK_ASSIGN_OR_RETURN(PackageBlob manifest_blob, BlobOf(m, where));
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadManifest(meta, repository, manifest_blob.digest));
    json manifest = json::parse(bytes, nullptr, false);
    if (!manifest.is_object() || !manifest.contains("config")) {
      return Fail(ErrorCode::kCorrupt, where + ": the manifest has no config");
    }
    std::vector<PackageBlob> list = {manifest_blob};
    AIRLOCK_ASSIGN_OR_RETURN(PackageBlob config, BlobOf(manifest["config"], where + " config"));
    list.push_back(config);
    if (manifest.contains("layers") && manifest["layers"].is_array()) {
      for (const auto& l : manifest["layers"]) {
        AIRLOCK_ASSIGN_OR_RETURN(PackageBlob layer, BlobOf(l, where + " layer"));
        list.push_back(layer);
      }
    }
    for (const auto& b : list) {
      if (counted.insert(b.digest).second) {
        plan.total_size += b.size;
      }
    }
    plan.platforms.emplace(platform, std::move(list));
  }
  if (plan.platforms.empty()) {
    return Fail(ErrorCode::kCorrupt, "index " + index_digest.ToString() + " names no platform");
  }
  return plan;
}

std::optional<delivery::RolloutCommand> RolloutCommandOf(const store::DeploymentRecord& d,
                                                         std::string_view gateway) {
  if (!delivery::ValidGatewayName(gateway) || !delivery::ValidDeploymentId(d.id)) {
    return std::nullopt;
  }
  using delivery::RolloutCommandKind;
  RolloutCommandKind kind = RolloutCommandKind::kCancel;
  std::int64_t at = 0;
  std::string reason;
  // The latest event of the command's kind gives its time and reason.
  auto latest = [&](std::string_view action) -> const store::DeploymentEvent* {
    for (auto it = d.history.rbegin(); it != d.history.rend(); ++it) {
      if (it->action == action) {
        return &*it;
      }
    }
    return nullptr;
  };
  if (d.state == "cancelled") {
    const store::DeploymentEvent* e = latest("cancelled");
    at = e != nullptr ? e->at : d.updated_at;
    reason = "deployment " + d.id + " cancelled" +
             (e != nullptr ? " by " + e->actor + (e->detail.empty() ? "" : ": " + e->detail) : "");
  } else if (d.paused_changed_at != 0) {
    kind = d.paused ? RolloutCommandKind::kPause : RolloutCommandKind::kResume;
    const store::DeploymentEvent* e = latest(d.paused ? "paused" : "resumed");
    at = d.paused_changed_at;
    reason = std::string(d.paused ? "paused" : "resumed") +
             (e != nullptr ? " by " + e->actor + (e->detail.empty() ? "" : ": " + e->detail) : "");
  } else {
    return std::nullopt;
  }
  // Control characters cannot travel (delivery::kMaxTextLength of displayable text).
  reason.erase(std::remove_if(reason.begin(), reason.end(),
                              [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }),
               reason.end());
  if (reason.size() > delivery::kMaxTextLength) {
    reason.resize(delivery::kMaxTextLength);
    while (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0xC0) == 0x80) {
      reason.pop_back();  // no half a UTF-8 character at the cut
    }
    if (!reason.empty() && static_cast<unsigned char>(reason.back()) >= 0xC0) {
      reason.pop_back();
    }
  }
  std::string name = delivery::RolloutCommandKindName(kind);
  std::string id = name + "-" + std::to_string(at) + "-" + d.id.substr(4, 32);
  return delivery::RolloutCommand{
      .envelope = {.message_id = id, .sent_at = TimePoint(std::chrono::seconds(at))},
      .gateway = std::string(gateway),
      .deployment_id = d.id,
      .command = kind,
      .reason = std::move(reason)};
}

std::string RollUpDeployment(const std::vector<DeliveryState>& states) {
  if (states.empty()) {
    return "pending";
  }
  bool all_available = true, all_final = true, started = false;
  for (DeliveryState s : states) {
    all_available = all_available && s == DeliveryState::kAvailable;
    all_final = all_final && delivery::IsFinal(s);
    started = started || s == DeliveryState::kGranted || s == DeliveryState::kDownloading ||
              delivery::IsFinal(s);
  }
  if (all_available) {
    return "complete";
  }
  if (all_final) {
    return "failed";
  }
  return started ? "delivering" : "pending";
}

// ---- the orchestrator ----

void DeliveryOrchestrator::Inbox::Push(Work w) {
  {
    std::lock_guard lock(mu);
    if (closed) {
      return;
    }
    if (items.size() >= kMaxQueued) {
      spdlog::warn("delivery: {} events waiting; dropping one (timers will recover)", items.size());
      ++dropped;
      return;
    }
    items.push_back(std::move(w));
  }
  cv.notify_one();
}

Result<std::unique_ptr<DeliveryOrchestrator>> DeliveryOrchestrator::Create(
    Options options, net::MqttClient& mqtt, store::RegistryStore& registry,
    store::MetadataStore& meta, AccessControl& access, const Clock& clock) {
  AIRLOCK_RETURN_IF_ERROR(options.policy.Check());
  AIRLOCK_ASSIGN_OR_RETURN(delivery::Topics topics, delivery::Topics::Create(options.prefix));
  return std::unique_ptr<DeliveryOrchestrator>(new DeliveryOrchestrator(
      std::move(options), std::move(topics), mqtt, registry, meta, access, clock));
}

DeliveryOrchestrator::DeliveryOrchestrator(Options options, delivery::Topics topics,
                                           net::MqttClient& mqtt, store::RegistryStore& registry,
                                           store::MetadataStore& meta, AccessControl& access,
                                           const Clock& clock)
    : options_(std::move(options)),
      topics_(std::move(topics)),
      mqtt_(mqtt),
      registry_(registry),
      meta_(meta),
      access_(access),
      clock_(clock) {}

DeliveryOrchestrator::~DeliveryOrchestrator() { Stop(); }

Status DeliveryOrchestrator::Start() {
  std::lock_guard lock(lifecycle_mu_);
  if (started_) {
    return {};
  }
  std::weak_ptr<Inbox> inbox = inbox_;
  mqtt_.SetConnectionHandler([inbox](bool connected) {
    if (auto in = inbox.lock(); in && connected) {
      in->Push(Connected{});
    }
  });
  inbox_->Push(Loaded{});
  for (const auto& filter : topics_.HubSubscriptions()) {
    Status s = mqtt_.Subscribe(filter, 1, [inbox](const net::MqttMessage& m) {
      if (auto in = inbox.lock()) {
        in->Push(Received{m});
      }
    });
    if (!s) {
      for (const auto& f : filters_) {
        (void)mqtt_.Unsubscribe(f);
      }
      filters_.clear();
      return Fail(std::move(s.error()).WithContext("while subscribing to the gateways' topics"));
    }
    filters_.push_back(filter);
  }
  worker_ = std::thread([this] { Run(); });
  started_ = true;
  // A connection made before the handler was set: resume now (resuming twice is harmless).
  if (mqtt_.IsConnected()) {
    inbox_->Push(Connected{});
  }
  return {};
}

void DeliveryOrchestrator::Stop() {
  std::lock_guard lock(lifecycle_mu_);
  if (!started_) {
    return;
  }
  started_ = false;
  // The subscriptions stay: the broker keeps the hub's persistent session, and with it what the
  // gateways send while the hub is away. The handlers only reach the closed inbox from now on.
  mqtt_.SetConnectionHandler(nullptr);
  {
    std::lock_guard inbox_lock(inbox_->mu);
    inbox_->closed = true;
    inbox_->items.clear();
  }
  inbox_->cv.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

void DeliveryOrchestrator::DeploymentCreated(std::string_view id) {
  inbox_->Push(Created{std::string(id)});
}

void DeliveryOrchestrator::DeploymentCancelled(std::string_view id, std::string_view reason) {
  inbox_->Push(Cancelled{std::string(id), std::string(reason)});
}

void DeliveryOrchestrator::DeploymentPauseChanged(std::string_view id) {
  inbox_->Push(PauseChanged{std::string(id)});
}

void DeliveryOrchestrator::Wake() {
  {
    std::lock_guard lock(inbox_->mu);
    inbox_->wake = true;
  }
  inbox_->cv.notify_one();
}

void DeliveryOrchestrator::Run() {
  std::unique_lock lock(inbox_->mu);
  while (!inbox_->closed) {
    if (!inbox_->items.empty()) {
      Work w = std::move(inbox_->items.front());
      inbox_->items.pop_front();
      lock.unlock();
      Do(w);
      lock.lock();
      continue;
    }
    lock.unlock();
    FireTimers();
    lock.lock();
    if (!inbox_->items.empty() || inbox_->closed) {
      continue;
    }
    // Sleep until the earliest timer, but at most kMaxSleep: the clock may be one that jumps.
    auto sleep = std::chrono::duration_cast<std::chrono::milliseconds>(kMaxSleep);
    TimePoint now = clock_.Now();
    for (const auto& [id, at] : timers_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
      sleep = std::clamp(left, std::chrono::milliseconds(0), sleep);
    }
    inbox_->cv.wait_for(lock, sleep, [&] {
      return inbox_->closed || inbox_->wake || !inbox_->items.empty();
    });
    inbox_->wake = false;
  }
}

void DeliveryOrchestrator::Do(Work& work) {
  std::visit(
      [&](auto& w) {
        using T = std::decay_t<decltype(w)>;
        if constexpr (std::is_same_v<T, Received>) {
          OnMessage(w.message);
        } else if constexpr (std::is_same_v<T, Created>) {
          StartDeployment(w.deployment);
        } else if constexpr (std::is_same_v<T, Cancelled>) {
          CancelDeployment(w.deployment, w.reason);
          SendRolloutCommand(w.deployment);
        } else if constexpr (std::is_same_v<T, PauseChanged>) {
          SendRolloutCommand(w.deployment);
        } else if constexpr (std::is_same_v<T, Connected>) {
          ResumeAll();
        } else {
          Load();
        }
      },
      work);
}

std::int64_t DeliveryOrchestrator::NowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch())
      .count();
}

double DeliveryOrchestrator::Jitter() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(random_);
}

Result<delivery::Envelope> DeliveryOrchestrator::NewEnvelope() {
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, RandomHex(16));
  return delivery::Envelope{
      .message_id = id,
      .sent_at = std::chrono::time_point_cast<std::chrono::seconds>(clock_.Now())};
}

void DeliveryOrchestrator::Load() {
  auto rows = registry_.ListDeliveries("", true);
  if (!rows) {
    spdlog::error("delivery: cannot load the deliveries: {}", rows.error().ToString());
    return;
  }
  for (const auto& row : *rows) {
    auto d = delivery::Delivery::FromJson(json::parse(row.record, nullptr, false));
    if (!d) {
      spdlog::error("delivery: the stored record of {} is unusable: {}", row.id,
                    d.error().ToString());
      continue;
    }
    live_[d->id] = *d;
  }
  // Deployments made while no orchestrator ran (or that a hub stopped while creating their
  // deliveries) get their missing deliveries; cancelled ones lose their live deliveries.
  auto deployments = registry_.ListDeployments("", "");
  if (!deployments) {
    spdlog::error("delivery: cannot list the deployments: {}", deployments.error().ToString());
    return;
  }
  for (const auto& dep : *deployments) {
    if (dep.state == "cancelled") {
      CancelDeployment(dep.id, "deployment " + dep.id + " cancelled");
    } else if (!store::FinalDeploymentStates().contains(dep.state)) {
      StartDeployment(dep.id);
    }
  }
  spdlog::info("delivery: {} delivery(ies) in progress", live_.size());
}

void DeliveryOrchestrator::ResumeAll() {
  ResendRolloutCommands();
  TimePoint now = clock_.Now();
  std::vector<std::string> ids;
  for (const auto& [id, d] : live_) {
    ids.push_back(id);
  }
  for (const auto& id : ids) {
    auto it = live_.find(id);
    if (it == live_.end()) {
      continue;
    }
    delivery::Delivery d = it->second;
    Perform(d, delivery::ResumeActions(d, now, options_.policy));
  }
}

Result<std::shared_ptr<const DeliveryOrchestrator::Package>> DeliveryOrchestrator::PackageOf(
    const std::string& deployment) {
  if (auto it = packages_.find(deployment); it != packages_.end()) {
    return it->second;
  }
  AIRLOCK_ASSIGN_OR_RETURN(store::DeploymentRecord dep, registry_.GetDeployment(deployment));
  AIRLOCK_ASSIGN_OR_RETURN(store::ReleaseRecord release,
                           registry_.GetRelease(dep.model, dep.release_version));
  AIRLOCK_ASSIGN_OR_RETURN(store::ModelVersionRecord version,
                           registry_.GetVersion(dep.model, dep.release_version));
  AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument doc,
                           trust::SignedDocument::Parse(release.document));
  AIRLOCK_ASSIGN_OR_RETURN(trust::Release body, trust::Release::FromJson(doc.body()));
  AIRLOCK_ASSIGN_OR_RETURN(
      PackagePlan plan,
      PlanPackage(meta_, version.repository, body.index_digest, body.index_media_type));
  std::optional<trust::SignedDocument> channel;
  if (auto state = registry_.GetChannel(dep.model, dep.channel); state && state->current) {
    if (auto parsed = trust::SignedDocument::Parse(state->current->document)) {
      channel = std::move(*parsed);
    }
  }
  dep.history.clear();
  auto package = std::make_shared<const Package>(Package{.deployment = std::move(dep),
                                                         .release = std::move(doc),
                                                         .plan = std::move(plan),
                                                         .channel = std::move(channel)});
  packages_[deployment] = package;
  return package;
}

void DeliveryOrchestrator::StartDeployment(const std::string& id) {
  auto dep = registry_.GetDeployment(id);
  if (!dep) {
    spdlog::error("delivery: deployment {}: {}", id, dep.error().ToString());
    return;
  }
  if (store::FinalDeploymentStates().contains(dep->state)) {
    return;
  }
  auto existing = registry_.ListDeliveries(id, false);
  if (!existing) {
    spdlog::error("delivery: deployment {}: {}", id, existing.error().ToString());
    return;
  }
  std::set<std::string> covered;
  for (const auto& row : *existing) {
    covered.insert(row.gateway);
  }
  std::vector<std::string> missing;
  for (const auto& g : dep->gateways) {
    if (g.is_string() && !covered.contains(g.get<std::string>())) {
      missing.push_back(g.get<std::string>());
    }
  }
  if (missing.empty()) {
    RollUp(id);
    return;
  }
  auto package = PackageOf(id);
  if (!package) {
    // The release or a blob of it is gone (or unreadable): nothing can be offered.
    std::string why = package.error().ToString();
    spdlog::error("delivery: deployment {} cannot be delivered: {}", id, why);
    if (package.error().code() != ErrorCode::kIo) {
      auto moved = registry_.TransitionDeployment(
          id, "failed", {NowSeconds(), "hub", "failed", ("cannot deliver: " + why).substr(0, 500)},
          store::FinalDeploymentStates());
      if (!moved) {
        spdlog::warn("delivery: deployment {}: {}", id, moved.error().ToString());
      }
    }
    return;
  }
  const delivery::Inputs in{.now = clock_.Now(), .jitter = Jitter()};
  std::vector<store::DeliveryRow> rows;
  std::vector<store::DeploymentEvent> events;
  std::vector<delivery::Step> steps;
  for (const auto& gateway : missing) {
    if (!delivery::ValidGatewayName(gateway)) {
      spdlog::error("delivery: deployment {}: gateway name {} cannot be used in topics", id,
                    gateway.substr(0, 64));
      continue;
    }
    auto hex = RandomHex(16);
    if (!hex) {
      spdlog::error("delivery: {}", hex.error().ToString());
      return;
    }
    delivery::Step step = delivery::StartDelivery("dlv-" + *hex, id, gateway,
                                                  (*package)->plan.total_size, in, options_.policy);
    const delivery::Delivery& d = step.delivery;
    std::int64_t at = NowSeconds();
    rows.push_back({.id = d.id,
                    .deployment = id,
                    .gateway = gateway,
                    .state = delivery::DeliveryStateName(d.state),
                    .final = false,
                    .record = d.ToJson().dump(),
                    .created_at = at,
                    .updated_at = at});
    events.push_back({at, "hub", "delivery", gateway + ": offered (" + d.id + ")"});
    steps.push_back(std::move(step));
  }
  if (Status s = registry_.CreateDeliveries(rows, events); !s) {
    spdlog::error("delivery: deployment {}: cannot store its deliveries: {}", id,
                  s.error().ToString());
    return;
  }
  for (auto& step : steps) {
    live_[step.delivery.id] = step.delivery;
    Perform(step.delivery, step.actions);
  }
  RollUp(id);
}

void DeliveryOrchestrator::CancelDeployment(const std::string& id, const std::string& reason) {
  std::vector<std::string> ids;
  for (const auto& [did, d] : live_) {
    if (d.deployment == id) {
      ids.push_back(did);
    }
  }
  for (const auto& did : ids) {
    Handle(did, delivery::CancelRequested{
                    reason.empty() ? "deployment " + id + " cancelled" : reason});
  }
  packages_.erase(id);
}

void DeliveryOrchestrator::SendRolloutCommand(const std::string& id) {
  auto dep = registry_.GetDeployment(id);
  if (!dep) {
    spdlog::error("rollout command: deployment {}: {}", id, dep.error().ToString());
    return;
  }
  for (const json& g : dep->gateways) {
    if (!g.is_string()) {
      continue;
    }
    auto command = RolloutCommandOf(*dep, g.get<std::string>());
    if (!command) {
      continue;
    }
    auto topic = topics_.Topic(delivery::TopicKind::kRolloutCommand, command->gateway);
    Status sent = topic ? mqtt_.Publish(*topic, command->ToJson().dump(),
                                        {.qos = 1, .retained = false,
                                         .content_type = "application/json"})
                        : Status(Fail(topic.error()));
    if (!sent) {
      // Sent again at the next (re)connect to the broker (ResendRolloutCommands).
      spdlog::warn("rollout command: the {} of {} to {} was not published: {}",
                   delivery::RolloutCommandKindName(command->command), id, command->gateway,
                   sent.error().ToString());
    } else {
      spdlog::info("rollout command: {} of {} sent to {}",
                   delivery::RolloutCommandKindName(command->command), id, command->gateway);
    }
  }
}

void DeliveryOrchestrator::ResendRolloutCommands() {
  auto deployments = registry_.ListDeployments("", "");
  if (!deployments) {
    spdlog::error("rollout command: cannot list the deployments: {}",
                  deployments.error().ToString());
    return;
  }
  constexpr std::int64_t kCancelResendWindow = 24 * 3600;  // the gateways' session expiry
  for (const auto& dep : *deployments) {
    bool resend = dep.state == "cancelled"
                      ? dep.updated_at + kCancelResendWindow >= NowSeconds()
                      : dep.state != "failed" && dep.paused_changed_at != 0;
    if (resend) {
      SendRolloutCommand(dep.id);
    }
  }
}

json DeliveryOrchestrator::Fleet(std::string_view deployment) const {
  json out = json::array();
  std::lock_guard lock(fleet_mu_);
  for (const auto& [gateway, report] : fleet_) {
    for (const json& rollout : report.rollouts) {
      if (rollout["deployment"] == deployment) {
        json shown = rollout;
        shown["gateway"] = gateway;
        shown["reported_at"] = FormatRfc3339(report.envelope.sent_at);
        out.push_back(std::move(shown));
      }
    }
  }
  return out;
}

std::map<std::string, delivery::FleetReport> DeliveryOrchestrator::FleetReports() const {
  std::lock_guard lock(fleet_mu_);
  return {fleet_.begin(), fleet_.end()};
}

std::size_t DeliveryOrchestrator::QueueDepth() const {
  std::lock_guard lock(inbox_->mu);
  return inbox_->items.size();
}

std::uint64_t DeliveryOrchestrator::DroppedWork() const {
  std::lock_guard lock(inbox_->mu);
  return inbox_->dropped;
}

void DeliveryOrchestrator::OnMessage(const net::MqttMessage& m) {
  auto address = topics_.Parse(m.topic);
  if (!address) {
    spdlog::debug("delivery: ignored a message on {}: {}", m.topic.substr(0, 200),
                  address.error().ToString());
    return;
  }
  using delivery::TopicKind;
  if (address->kind == TopicKind::kFleet) {
    auto j = delivery::ParsePayload(m.payload);
    auto report = j ? delivery::FleetReport::FromJson(*j)
                    : Result<delivery::FleetReport>(Fail(j.error()));
    if (!report || report->gateway != address->gateway ||
        !registry_.GetGateway(address->gateway)) {
      spdlog::warn("fleet: refused a report on {}: {}", m.topic,
                   !report ? report.error().ToString()
                           : "not from a registered gateway of that name");
      return;
    }
    std::lock_guard lock(fleet_mu_);
    fleet_[address->gateway] = std::move(*report);
    return;
  }
  auto payload = delivery::ParsePayload(m.payload);
  std::optional<delivery::Event> event;
  std::string delivery_id, message_id;
  auto take = [&](auto parsed) {
    if (!parsed) {
      spdlog::warn("delivery: refused a message on {}: {}", m.topic, parsed.error().ToString());
      return;
    }
    delivery_id = parsed->delivery_id;
    message_id = parsed->envelope.message_id;
    event = delivery::EventFrom(*parsed);
  };
  if (!payload) {
    spdlog::warn("delivery: refused a message on {}: {}", m.topic, payload.error().ToString());
    return;
  }
  switch (address->kind) {
    case TopicKind::kReady:
      take(delivery::DeliveryReady::FromJson(*payload));
      break;
    case TopicKind::kReject:
      take(delivery::DeliveryReject::FromJson(*payload));
      break;
    case TopicKind::kStatus:
      take(delivery::DeliveryStatus::FromJson(*payload));
      break;
    default:
      return;  // the hub's own kinds, echoed by a broker
  }
  if (!event) {
    return;
  }
  if (delivery_id != address->delivery_id) {
    spdlog::warn("delivery: refused a message on {}: its delivery_id is {}", m.topic, delivery_id);
    return;
  }
  if (!seen_messages_.insert(message_id).second) {
    spdlog::debug("delivery: {} repeated message {}", delivery_id, message_id);
    return;
  }
  seen_order_.push_back(message_id);
  if (seen_order_.size() > kSeenMessages) {
    seen_messages_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  auto it = live_.find(delivery_id);
  if (it == live_.end()) {
    spdlog::debug("delivery: {} from {} is not in progress; ignored",
                  delivery::EventName(*event), address->gateway);
    return;
  }
  if (it->second.gateway != address->gateway) {
    spdlog::warn("delivery: refused {} for {} from gateway {}: the delivery is {}'s",
                 delivery::EventName(*event), delivery_id, address->gateway, it->second.gateway);
    return;
  }
  Handle(delivery_id, *event);
}

void DeliveryOrchestrator::FireTimers() {
  TimePoint now = clock_.Now();
  std::vector<std::string> due;
  for (const auto& [id, at] : timers_) {
    if (at <= now) {
      due.push_back(id);
    }
  }
  for (const auto& id : due) {
    auto it = live_.find(id);
    if (it == live_.end()) {
      timers_.erase(id);
      continue;
    }
    timers_.erase(id);
    if (auto event = delivery::DueEvent(it->second, now, options_.policy)) {
      Handle(id, *event);
    }
    // An event that was ignored leaves no timer behind: take the record's own next wake-up.
    if (auto again = live_.find(id); again != live_.end() && !timers_.contains(id)) {
      if (auto next = delivery::NextWakeup(again->second, options_.policy); next && *next > now) {
        timers_[id] = *next;
      }
    }
  }
}

void DeliveryOrchestrator::Handle(const std::string& id, const delivery::Event& event) {
  auto it = live_.find(id);
  if (it == live_.end()) {
    return;
  }
  const delivery::Delivery before = it->second;
  delivery::Step step =
      delivery::Apply(before, event, {.now = clock_.Now(), .jitter = Jitter()}, options_.policy);
  if (!step.applied) {
    spdlog::debug("delivery: {} ignored {}: {}", id, delivery::EventName(event), step.note);
    return;
  }
  const delivery::Delivery& d = step.delivery;
  std::optional<store::DeploymentEvent> history;
  if (d.state != before.state) {
    std::string detail = d.gateway + ": " + delivery::DeliveryStateName(before.state) + " → " +
                         delivery::DeliveryStateName(d.state);
    if (delivery::IsFinal(d.state) && d.last_error) {
      detail += " (" + d.last_error->code + ": " + d.last_error->message + ")";
    }
    history = store::DeploymentEvent{NowSeconds(), "hub", "delivery", detail.substr(0, 500)};
  }
  store::DeliveryRow row{.id = d.id,
                         .deployment = d.deployment,
                         .gateway = d.gateway,
                         .state = delivery::DeliveryStateName(d.state),
                         .final = delivery::IsFinal(d.state),
                         .record = d.ToJson().dump(),
                         .created_at = 0,  // not updated
                         .updated_at = NowSeconds()};
  // Persist, then act: a hub that dies in between re-does the actions (ResumeActions).
  if (Status s = registry_.UpdateDelivery(row, history); !s) {
    spdlog::error("delivery: {}: cannot store its next state ({}); the event is dropped: {}", id,
                  step.note, s.error().ToString());
    return;
  }
  spdlog::info("delivery: {} ({}) {}: {}", id, d.gateway, delivery::EventName(event), step.note);
  if (delivery::IsFinal(d.state)) {
    live_.erase(id);
    timers_.erase(id);
  } else {
    it->second = d;
  }
  const std::string deployment = d.deployment;
  Perform(step.delivery, step.actions);
  if (history) {
    RollUp(deployment);
  }
}

void DeliveryOrchestrator::Perform(const delivery::Delivery& d,
                                   const std::vector<delivery::Action>& actions) {
  for (const auto& a : actions) {
    switch (a.kind) {
      case ActionKind::kPublishOffer:
        PublishOffer(d, a);
        break;
      case ActionKind::kPublishGrant:
        PublishGrant(d, a);
        break;
      case ActionKind::kPublishCancel:
        PublishCancel(d, a);
        break;
      case ActionKind::kScheduleTimer:
        // Only for the record this step made: a grant published meanwhile (PublishGrant feeds
        // GrantPublished at once) has scheduled its own, later timer.
        if (auto it = live_.find(d.id); it != live_.end() && it->second == d) {
          timers_[d.id] = a.at;
        }
        break;
      case ActionKind::kGiveUp:
        spdlog::warn("delivery: {} to {}: gave up: {}", d.id, d.gateway, a.reason);
        break;
    }
  }
}

Status DeliveryOrchestrator::Publish(delivery::TopicKind kind, const delivery::Delivery& d,
                                     const json& payload) {
  AIRLOCK_ASSIGN_OR_RETURN(
      std::string topic,
      topics_.Topic(kind, d.gateway,
                    kind == delivery::TopicKind::kOffer ? std::string_view() : d.id));
  return mqtt_.Publish(topic, payload.dump(),
                       {.qos = 1, .retained = false, .content_type = "application/json"});
}

void DeliveryOrchestrator::PublishOffer(const delivery::Delivery& d, const delivery::Action& a) {
  auto package = PackageOf(d.deployment);
  if (!package) {
    spdlog::error("delivery: {}: no offer: {}", d.id, package.error().ToString());
    return;  // the offer timeout retries
  }
  auto envelope = NewEnvelope();
  if (!envelope) {
    spdlog::error("delivery: {}: {}", d.id, envelope.error().ToString());
    return;
  }
  const Package& p = **package;
  delivery::DeliveryOffer offer{.envelope = *envelope,
                                .delivery_id = d.id,
                                .deployment_id = d.deployment,
                                .model = p.deployment.model,
                                .version = p.deployment.release_version,
                                .release = p.release,
                                .total_size = p.plan.total_size,
                                .platform_sizes = {},
                                .expires = a.at,
                                .channel = p.channel,
                                .rollout = {{"selector", p.deployment.selector},
                                            {"strategy", p.deployment.strategy}}};
  for (const auto& [platform, blobs] : p.plan.platforms) {
    if (offer.platform_sizes.size() < delivery::kMaxPlatforms) {
      offer.platform_sizes.push_back({platform, p.plan.PlatformSize(platform)});
    }
  }
  if (Status s = Publish(delivery::TopicKind::kOffer, d, offer.ToJson()); !s) {
    spdlog::warn("delivery: {}: the offer to {} was not published (resent on reconnect or at "
                 "its timeout): {}",
                 d.id, d.gateway, s.error().ToString());
  }
}

void DeliveryOrchestrator::PublishGrant(const delivery::Delivery& d, const delivery::Action& a) {
  auto package = PackageOf(d.deployment);
  if (!package) {
    spdlog::error("delivery: {}: no grant: {}", d.id, package.error().ToString());
    return;  // the grant timeout retries
  }
  const PackagePlan& plan = (*package)->plan;
  auto blobs = plan.BlobsFor(d.platforms);
  if (!blobs) {
    // The gateway asked for a platform the package does not have: nothing to grant, ever.
    Handle(d.id, delivery::CancelRequested{blobs.error().message() + " (the gateway asked for " +
                                           std::to_string(d.platforms.size()) + " platform(s))"});
    return;
  }
  auto envelope = NewEnvelope();
  if (!envelope) {
    spdlog::error("delivery: {}: {}", d.id, envelope.error().ToString());
    return;
  }
  delivery::DeliveryGrant grant{.envelope = *envelope,
                                .delivery_id = d.id,
                                .attempt = a.attempt,
                                .url_expires = {},
                                .blobs = {}};
  std::uint64_t total = 0;
  std::optional<std::int64_t> expires;
  for (const auto& b : *blobs) {
    std::int64_t e = 0;
    auto url = access_.PresignBlob(plan.repository, b.digest.ToString(), options_.policy.url_ttl,
                                   &e);
    if (!url) {
      spdlog::error("delivery: {}: cannot pre-sign {}: {}", d.id, b.digest.ToString(),
                    url.error().ToString());
      return;
    }
    expires = expires ? std::min(*expires, e) : e;
    total += b.size;
    grant.blobs.push_back(
        {.digest = b.digest, .size = b.size, .media_type = b.media_type, .url = *url});
  }
  grant.url_expires = TimePoint(std::chrono::seconds(expires.value_or(0)));
  if (Status s = Publish(delivery::TopicKind::kGrant, d, grant.ToJson()); !s) {
    spdlog::warn("delivery: {}: grant {} to {} not published (retried at its timeout): {}", d.id,
                 a.attempt, d.gateway, s.error().ToString());
    return;
  }
  spdlog::info("delivery: {}: granted {} blob(s), {} bytes, to {} until {} (attempt {})", d.id,
               grant.blobs.size(), total, d.gateway, Seconds(grant.url_expires), a.attempt);
  Handle(d.id, delivery::GrantPublished{
                   .attempt = a.attempt, .url_expires = grant.url_expires, .bytes_total = total});
}

void DeliveryOrchestrator::PublishCancel(const delivery::Delivery& d, const delivery::Action& a) {
  auto envelope = NewEnvelope();
  if (!envelope) {
    spdlog::error("delivery: {}: {}", d.id, envelope.error().ToString());
    return;
  }
  delivery::DeliveryCancel cancel{.envelope = *envelope,
                                  .delivery_id = d.id,
                                  .reason = a.reason.substr(0, delivery::kMaxTextLength)};
  if (Status s = Publish(delivery::TopicKind::kCancel, d, cancel.ToJson()); !s) {
    spdlog::warn("delivery: {}: the cancel to {} was not published: {}", d.id, d.gateway,
                 s.error().ToString());
  }
}

void DeliveryOrchestrator::RollUp(const std::string& deployment) {
  auto rows = registry_.ListDeliveries(deployment, false);
  if (!rows || rows->empty()) {
    return;
  }
  std::vector<DeliveryState> states;
  std::map<std::string, int> counts;
  for (const auto& row : *rows) {
    if (auto s = delivery::ParseDeliveryState(row.state)) {
      states.push_back(*s);
      ++counts[row.state];
    }
  }
  std::string target = RollUpDeployment(states);
  auto dep = registry_.GetDeployment(deployment);
  if (!dep || dep->state == target || store::FinalDeploymentStates().contains(dep->state)) {
    return;
  }
  std::string detail;
  for (const auto& [state, n] : counts) {
    detail += (detail.empty() ? "" : ", ") + std::to_string(n) + " " + state;
  }
  detail += " (of " + std::to_string(rows->size()) + " gateway(s))";
  auto moved = registry_.TransitionDeployment(deployment, target,
                                              {NowSeconds(), "hub", target, detail},
                                              store::FinalDeploymentStates());
  if (!moved && moved.error().code() != ErrorCode::kAlreadyExists) {
    spdlog::error("delivery: deployment {}: {}", deployment, moved.error().ToString());
  } else if (moved) {
    spdlog::info("delivery: deployment {} is {}: {}", deployment, target, detail);
  }
  if (store::FinalDeploymentStates().contains(target)) {
    packages_.erase(deployment);
  }
}

}  // namespace airlock::hub
