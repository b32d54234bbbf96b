#include "gateway/fleet_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <utility>

#include "core/digest.hpp"
#include "core/names.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
using std::chrono::seconds;

json RefJson(const ReleaseRef& r) { return {{"version", r.version}, {"release", r.release}}; }

// The {"version", "release"} at j[key], when it is one.
std::optional<ReleaseRef> RefAt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_object() || !it->contains("version") || !it->contains("release") ||
      !(*it)["version"].is_string() || !(*it)["release"].is_string()) {
    return std::nullopt;
  }
  return ReleaseRef{(*it)["version"].get<std::string>(), (*it)["release"].get<std::string>()};
}

// What the device runs active for model, by its stored state report.
std::optional<ReleaseRef> CurrentOf(const DeviceStateRecord& s, const std::string& model) {
  if (s.state.is_null()) {
    return std::nullopt;
  }
  auto state = delivery::DeviceState::FromJson(s.state);
  if (!state) {
    return std::nullopt;
  }
  for (const delivery::ModelReport& m : state->models) {
    if (m.model == model && !m.active_release.empty() && delivery::ValidVersion(m.active_version) &&
        Digest::Parse(m.active_release)) {
      return ReleaseRef{m.active_version, m.active_release};
    }
  }
  return std::nullopt;
}

DeviceInfo InfoOf(const DeviceRecord& d, const DeviceStateRecord& s, const std::string& model) {
  return DeviceInfo{
      .id = d.id, .labels = d.labels, .current = CurrentOf(s, model), .online = s.online};
}

std::string NewMessageId(const Clock& clock) {
  auto id = RandomHex(8);
  return id ? *id : std::to_string(clock.Now().time_since_epoch().count());
}

// An available delivery of this gateway, as directives use it.
struct Known {
  const DeliveryRecord* record = nullptr;
  trust::SignedDocument release = trust::SignedDocument::Wrap(json::object());
  std::string release_id;
  std::optional<trust::SignedDocument> channel_doc;  // the offer's, verified
  std::optional<trust::Channel> channel;
};

bool Lists(const trust::Channel& c, const std::string& release) {
  return std::any_of(c.releases.begin(), c.releases.end(),
                     [&](const trust::ChannelEntry& e) { return e.release.ToString() == release; });
}

}  // namespace

Result<std::unique_ptr<FleetService>> FleetService::Create(
    FleetServiceOptions options, trust::Root root, GatewayStateStore& store,
    PrivateKey directive_key, FleetPublisher to_devices, FleetPublisher to_hub,
    const Clock& clock) {
  if (!delivery::ValidGatewayName(options.gateway)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid gateway name " + options.gateway);
  }
  AIRLOCK_ASSIGN_OR_RETURN(delivery::DeviceTopics device_topics,
                           delivery::DeviceTopics::Create(options.device_prefix));
  AIRLOCK_ASSIGN_OR_RETURN(delivery::Topics hub_topics,
                           delivery::Topics::Create(options.hub_prefix));
  return std::unique_ptr<FleetService>(new FleetService(
      std::move(options), std::move(root), store, std::move(directive_key), std::move(to_devices),
      std::move(to_hub), clock, std::move(device_topics), std::move(hub_topics)));
}

FleetService::FleetService(FleetServiceOptions options, trust::Root root, GatewayStateStore& store,
                           PrivateKey directive_key, FleetPublisher to_devices,
                           FleetPublisher to_hub, const Clock& clock,
                           delivery::DeviceTopics device_topics, delivery::Topics hub_topics)
    : options_(std::move(options)),
      root_(std::move(root)),
      store_(store),
      directive_key_(std::move(directive_key)),
      to_devices_(std::move(to_devices)),
      to_hub_(std::move(to_hub)),
      clock_(clock),
      device_topics_(std::move(device_topics)),
      hub_topics_(std::move(hub_topics)) {}

FleetService::~FleetService() { Stop(); }

void FleetService::Start() {
  {
    std::lock_guard lock(queue_mu_);
    if (worker_.joinable() || stopping_) {
      return;
    }
    // Before anything queued already: the rollouts must be loaded first.
    queue_.push_front([this] {
      Load();
      Resume();
      PublishFleet();
      // A root rotated while the gateway was down: every directed device hears of it now.
      AnnounceRootRotations();
      // Revoked while the gateway was down: their retained directives go now.
      if (auto devices = store_.Devices()) {
        for (const DeviceRecord& d : *devices) {
          auto directive = store_.DeviceDirective(d.id);
          if (d.revoked_at && directive && !directive->message.empty()) {
            HandleDeviceChanged(d.id);
          }
        }
      }
      StartDueRollouts();
    });
  }
  worker_ = std::thread([this] { WorkerLoop(); });
}

void FleetService::Stop() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

std::uint64_t FleetService::handled() const { return handled_.load(); }

void FleetService::Enqueue(std::function<void()> job) {
  {
    std::lock_guard lock(queue_mu_);
    if (stopping_) {
      return;
    }
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_one();
}

void FleetService::OnDeviceMessage(const std::string& topic, const std::string& payload) {
  Enqueue([this, topic, payload] { HandleDeviceMessage(topic, payload); });
}

void FleetService::OnDeliveryApproved(const std::string& delivery_id) {
  Enqueue([this, delivery_id] {
    auto r = store_.Get(delivery_id);
    if (!r) {
      spdlog::error("fleet: delivery {}: {}", delivery_id, r.error().ToString());
      return;
    }
    if (r->phase == DeliveryPhase::kAvailable && r->approval == Approval::kRolloutApproved) {
      StartRollout(*r);
    }
  });
}

void FleetService::OnHubCommand(const std::string& topic, const std::string& payload) {
  Enqueue([this, topic, payload] { HandleHubCommand(topic, payload); });
}

void FleetService::OnDeviceChanged(const std::string& device) {
  Enqueue([this, device] { HandleDeviceChanged(device); });
}

void FleetService::OnDevicesConnected() {
  Enqueue([this] { Resume(); });
}

void FleetService::WorkerLoop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(queue_mu_);
      for (;;) {
        if (stopping_) {
          return;
        }
        if (!queue_.empty()) {
          job = std::move(queue_.front());
          queue_.pop_front();
          break;
        }
        std::optional<TimePoint> next;
        for (const auto& [deployment, at] : timers_) {
          next = next ? std::min(*next, at) : at;
        }
        TimePoint now = clock_.Now();
        if (next && *next <= now) {
          break;
        }
        // At most a second at a time: the clock is not the condition variable's.
        auto wait = std::chrono::milliseconds(1000);
        if (next) {
          wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(*next - now));
        }
        queue_cv_.wait_for(lock, wait);
      }
    }
    std::lock_guard lock(mu_);
    if (job) {
      job();
    } else {
      FireTimers();
    }
    handled_.fetch_add(1);
  }
}

// ---- loading and starting ----

void FleetService::Load() {
  auto stored = store_.Rollouts();
  if (!stored) {
    spdlog::error("fleet: cannot read the rollouts: {}", stored.error().ToString());
    return;
  }
  for (const StoredRollout& s : *stored) {
    auto r = Rollout::FromJson(s.record);
    if (!r) {
      spdlog::error("fleet: the rollout of {} is unreadable and left alone: {}", s.deployment,
                    r.error().ToString());
      continue;
    }
    rollouts_[s.deployment] = std::move(*r);
    started_.push_back(s.deployment);
    current_[s.model] = s.deployment;
  }
  if (!stored->empty()) {
    spdlog::info("fleet: {} rollouts loaded", rollouts_.size());
  }
}

void FleetService::Resume() {
  for (const std::string& deployment : CurrentRollouts()) {
    Perform(deployment, ResumeActions(rollouts_.at(deployment)));
  }
}

void FleetService::StartDueRollouts() {
  auto records = store_.List();
  if (!records) {
    spdlog::error("fleet: cannot read the deliveries: {}", records.error().ToString());
    return;
  }
  // Per model, the newest delivery approved for rollout: an older one is superseded by it.
  std::map<std::string, const DeliveryRecord*> newest;
  for (const DeliveryRecord& r : *records) {
    if (r.phase != DeliveryPhase::kAvailable || r.approval != Approval::kRolloutApproved) {
      continue;
    }
    auto [it, added] = newest.emplace(r.model, &r);
    if (!added && r.created_at > it->second->created_at) {
      it->second = &r;
    }
  }
  for (const auto& [model, r] : newest) {
    if (!rollouts_.contains(r->deployment)) {
      StartRollout(*r);
    }
  }
}

void FleetService::StartRollout(const DeliveryRecord& record) {
  const std::string& deployment = record.deployment;
  if (rollouts_.contains(deployment)) {
    spdlog::debug("fleet: deployment {} has its rollout already ({} is another delivery of it)",
                  deployment, record.id);
    return;
  }
  if (!delivery::ValidDeploymentId(deployment) || !delivery::ValidModelName(record.model) ||
      !delivery::ValidVersion(record.version)) {
    spdlog::error("fleet: delivery {} names no valid deployment, model and version; no rollout",
                  record.id);
    return;
  }
  auto offer = delivery::DeliveryOffer::FromJson(record.offer);
  auto release = offer ? trust::ReleaseId(offer->release) : Result<Digest>(Fail(offer.error()));
  if (!release) {
    spdlog::error("fleet: delivery {}: no rollout: {}", record.id, release.error().ToString());
    return;
  }
  RolloutPlan plan;  // no rollout in the offer (an older hub, an import): every device, defaults
  if (offer->rollout.is_object()) {
    auto parsed = RolloutPlan::FromDeployment(offer->rollout.value("selector", json::object()),
                                              offer->rollout.value("strategy", json::object()));
    if (!parsed) {
      spdlog::error(
          "fleet: deployment {}: its rollout plan is not one this gateway can run, so "
          "no rollout: {}",
          deployment, parsed.error().ToString());
      return;
    }
    plan = std::move(*parsed);
  }
  if (auto it = current_.find(record.model); it != current_.end()) {
    const Rollout& older = rollouts_.at(it->second);
    if (!IsFinal(older.state)) {
      Run(Apply(older, Cancel{"superseded by deployment " + deployment}, Inputs{clock_.Now()}));
    }
  }
  // The hub may have paused or cancelled the deployment before its rollout could start here.
  auto command = store_.HubCommand(deployment);
  if (!command) {
    spdlog::error("fleet: deployment {}: cannot read the hub's commands, so no rollout yet: {}",
                  deployment, command.error().ToString());
    return;
  }
  std::string hub_command = *command ? (*command)->command : "";
  ReleaseRef target{record.version, release->ToString()};
  bool started = Run(gateway::StartRollout(deployment, record.model, target, std::move(plan),
                                           DeviceInfos(record.model), Inputs{clock_.Now()},
                                           hub_command == "pause" || hub_command == "cancel"));
  if (started && hub_command == "cancel") {
    std::string reason = (*command)->reason;
    Run(Apply(rollouts_.at(deployment),
              Cancel{"cancelled by the hub" + (reason.empty() ? "" : " (" + reason + ")")},
              Inputs{clock_.Now()}));
  }
}

void FleetService::HandleHubCommand(const std::string& topic, const std::string& payload) {
  auto refuse = [&](const std::string& why) {
    spdlog::warn("fleet: refused a rollout command on {}: {}", topic.substr(0, 200), why);
  };
  auto address = hub_topics_.Parse(topic);
  if (!address || address->kind != delivery::TopicKind::kRolloutCommand ||
      address->gateway != options_.gateway) {
    return refuse(address ? "not this gateway's rollout command topic" : address.error().message());
  }
  auto j = delivery::ParsePayload(payload);
  auto parsed = j ? delivery::RolloutCommand::FromJson(*j)
                  : Result<delivery::RolloutCommand>(Fail(j.error()));
  if (!parsed) {
    return refuse(parsed.error().message());
  }
  const delivery::RolloutCommand& c = *parsed;
  if (c.gateway != options_.gateway) {
    return refuse("it is addressed to gateway " + c.gateway + ", not " + options_.gateway);
  }
  auto kept = store_.HubCommand(c.deployment_id);
  if (!kept) {
    spdlog::error("fleet: a rollout command for {} is dropped: {}", c.deployment_id,
                  kept.error().ToString());
    return;
  }
  if (*kept &&
      ((*kept)->message_id == c.envelope.message_id || (*kept)->sent_at > c.envelope.sent_at)) {
    spdlog::debug("fleet: dropped a repeated or older rollout command for {} ({})", c.deployment_id,
                  c.envelope.message_id);
    return;
  }
  const std::string name = delivery::RolloutCommandKindName(c.command);
  HubCommandRecord record{.deployment = c.deployment_id,
                          .command = name,
                          .reason = c.reason,
                          .message_id = c.envelope.message_id,
                          .sent_at = c.envelope.sent_at,
                          .received_at = clock_.Now()};
  if (Status put = store_.PutHubCommand(record); !put) {
    spdlog::error("fleet: the hub's {} of {} was not stored, so not acted on: {}", name,
                  c.deployment_id, put.error().ToString());
    return;
  }
  if (!rollouts_.contains(c.deployment_id)) {
    spdlog::info("fleet: the hub's {} of {} is kept for when its rollout starts", name,
                 c.deployment_id);
    return;
  }
  Command command = c.command == delivery::RolloutCommandKind::kPause    ? Command::kPause
                    : c.command == delivery::RolloutCommandKind::kResume ? Command::kResume
                                                                         : Command::kCancel;
  auto done = ControlLocked(c.deployment_id, command,
                            "the hub" + (c.reason.empty() ? "" : " (" + c.reason + ")"));
  if (!done) {
    spdlog::info("fleet: the hub's {} of {} changes nothing: {}", name, c.deployment_id,
                 done.error().message());
  }
}

std::vector<DeviceInfo> FleetService::DeviceInfos(const std::string& model) {
  std::vector<DeviceInfo> out;
  auto devices = store_.Devices();
  auto states = store_.DeviceStates();
  if (!devices || !states) {
    spdlog::error("fleet: cannot read the devices: {}",
                  (!devices ? devices.error() : states.error()).ToString());
    return out;
  }
  std::map<std::string, const DeviceStateRecord*> by_id;
  for (const DeviceStateRecord& s : *states) {
    by_id[s.device] = &s;
  }
  for (const DeviceRecord& d : *devices) {
    if (d.revoked_at || !delivery::ValidDeviceId(d.id)) {
      continue;
    }
    DeviceStateRecord none;
    auto it = by_id.find(d.id);
    out.push_back(InfoOf(d, it == by_id.end() ? none : *it->second, model));
  }
  return out;
}

std::vector<std::string> FleetService::CurrentRollouts() {
  std::vector<std::string> out;
  for (const auto& [model, deployment] : current_) {
    out.push_back(deployment);
  }
  return out;
}

// ---- the engine's steps and actions ----

bool FleetService::Run(Step step) {
  const Rollout& r = step.rollout;
  if (!step.applied) {
    spdlog::debug("rollout {}: {}", r.deployment, step.note);
    return false;
  }
  if (Status put = store_.PutRollout(r.deployment, r.model, r.ToJson(), r.updated_at); !put) {
    spdlog::error("rollout {}: the step was not stored, so it is not acted on ({}): {}",
                  r.deployment, step.note, put.error().ToString());
    return false;
  }
  std::string deployment = r.deployment;
  bool is_new = !rollouts_.contains(deployment);
  if (is_new) {
    started_.push_back(deployment);
    current_[r.model] = deployment;
  }
  spdlog::info("rollout {} ({} {}): {}", deployment, r.model, r.target.version, step.note);
  rollouts_[deployment] = std::move(step.rollout);
  Perform(deployment, step.actions);
  return true;
}

void FleetService::Perform(const std::string& deployment, const std::vector<Action>& actions) {
  bool publish = false;
  for (const Action& a : actions) {
    switch (a.kind) {
      case ActionKind::kDirect: {
        if (auto version = Direct(rollouts_.at(deployment), a)) {
          Run(Apply(
              rollouts_.at(deployment),
              DirectiveSent{.device = a.device, .direction = a.direction, .version = *version},
              Inputs{clock_.Now()}));
        }
        break;
      }
      case ActionKind::kPublishSummary:
        publish = true;
        break;
      case ActionKind::kScheduleTimer: {
        {
          std::lock_guard lock(queue_mu_);
          timers_[deployment] = a.at;
        }
        queue_cv_.notify_one();
        break;
      }
      case ActionKind::kCompleted:
        spdlog::info("rollout {}: complete", deployment);
        break;
      case ActionKind::kAborted:
        spdlog::warn("rollout {}: aborted: {}", deployment, a.reason);
        break;
    }
  }
  if (publish) {
    PublishFleet();
  }
}

void FleetService::FireTimers() {
  std::vector<std::string> due;
  {
    std::lock_guard lock(queue_mu_);
    TimePoint now = clock_.Now();
    for (auto it = timers_.begin(); it != timers_.end();) {
      if (it->second <= now) {
        due.push_back(it->first);
        it = timers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const std::string& deployment : due) {
    if (auto it = rollouts_.find(deployment); it != rollouts_.end()) {
      Run(Apply(it->second, Tick{}, Inputs{clock_.Now()}));
    }
  }
}

std::optional<std::uint64_t> FleetService::Direct(const Rollout& rollout, const Action& a) {
  auto device = store_.Device(a.device);
  if (!device) {
    spdlog::error("rollout {}: {}", rollout.deployment, device.error().ToString());
    return std::nullopt;
  }
  if (device->revoked_at) {
    spdlog::info("rollout {}: {} is revoked and gets no directive", rollout.deployment, a.device);
    return std::nullopt;
  }
  auto record = store_.DeviceDirective(a.device);
  if (!record) {
    spdlog::error("rollout {}: {}", rollout.deployment, record.error().ToString());
    return std::nullopt;
  }
  if (!a.active && !a.shadow) {
    record->desired.erase(rollout.model);
  } else {
    json entry = {{"deployment", rollout.deployment}};
    if (a.active) {
      entry["active"] = RefJson(*a.active);
    }
    if (a.shadow) {
      entry["shadow"] = RefJson(*a.shadow);
    }
    record->desired[rollout.model] = std::move(entry);
  }
  auto version = SignAndPublish(*record, "rollout " + rollout.deployment, [&](std::uint64_t v) {
    return BuildDirective(record->device, v, record->desired);
  });
  if (version) {
    spdlog::info("rollout {}: directive {} to {}: {} {}{}", rollout.deployment, *version, a.device,
                 rollout.model, a.active ? a.active->version : std::string("(none)"),
                 a.shadow ? ", shadow " + a.shadow->version : std::string());
  }
  return version;
}

std::optional<std::uint64_t> FleetService::SignAndPublish(DeviceDirectiveRecord& record,
                                                          const std::string& why,
                                                          const MessageBuilder& build) {
  std::uint64_t version = record.version + 1;
  auto message = build(version);
  if (!message) {
    spdlog::error("{}: no directive for {}: {}", why, record.device, message.error().ToString());
    return std::nullopt;
  }
  record.version = version;
  record.message = message->ToJson().dump();
  // Stored before it is published: a version is never signed twice.
  if (Status put = store_.PutDeviceDirective(record); !put) {
    spdlog::error("{}: directive {} for {} not stored, so not sent: {}", why, version,
                  record.device, put.error().ToString());
    return std::nullopt;
  }
  auto topic = device_topics_.Topic(delivery::DeviceTopicKind::kDirective, record.device);
  Status sent = topic ? to_devices_(*topic, record.message, true) : Status(Fail(topic.error()));
  if (!sent) {
    spdlog::warn(
        "{}: directive {} for {} not published (sent again once the factory broker is back): {}",
        why, version, record.device, sent.error().ToString());
    return std::nullopt;
  }
  return version;
}

void FleetService::AnnounceRootRotations() {
  const std::size_t rotations = options_.root_rotations.size();
  if (rotations == 0) {
    return;
  }
  auto devices = store_.Devices();
  if (!devices) {
    spdlog::error("fleet: {}", devices.error().ToString());
    return;
  }
  for (const DeviceRecord& d : *devices) {
    auto record = store_.DeviceDirective(d.id);
    if (d.revoked_at || !record || record->message.empty()) {
      continue;  // a device with no directive gets the roots with its first one
    }
    auto parsed = delivery::ParsePayload(record->message);
    auto sent = parsed ? delivery::DirectiveMessage::FromJson(*parsed)
                       : Result<delivery::DirectiveMessage>(Fail(parsed.error()));
    if (!sent) {
      spdlog::error("fleet: the stored directive of {} does not read back: {}", d.id,
                    sent.error().ToString());
      continue;
    }
    if (sent->roots.size() >= rotations) {
      continue;
    }
    // The directive it has, renewed with the roots: nothing else changes. (Built afresh, an
    // entry whose channel document was signed by a key the rotation removed would be left out,
    // and the device would stop serving that model. Renewed, the device takes the roots, then
    // refuses the entry and keeps serving until the channel is signed again with a key the new
    // root trusts; the refusal says so.)
    auto renew = [&](std::uint64_t version) -> Result<delivery::DirectiveMessage> {
      delivery::DirectiveMessage message = *sent;
      AIRLOCK_ASSIGN_OR_RETURN(trust::Directive directive,
                               trust::Directive::FromJson(message.directive.body()));
      TimePoint now = std::chrono::floor<seconds>(clock_.Now());
      directive.version = version;
      directive.issued = now;
      directive.expires = now + options_.directive_life;
      AIRLOCK_ASSIGN_OR_RETURN(message.directive, trust::SignDirective(directive, directive_key_));
      message.envelope = {.message_id = NewMessageId(clock_), .sent_at = now};
      message.roots = options_.root_rotations;
      return message;
    };
    if (auto version = SignAndPublish(*record, "root rotation", renew)) {
      spdlog::info("fleet: directive {} to {} carries root version {}", *version, d.id,
                   options_.root_rotations.back().body().value("version", 0));
    }
  }
}

Result<delivery::DirectiveMessage> FleetService::BuildDirective(const std::string& device,
                                                                std::uint64_t version,
                                                                const json& desired) {
  TimePoint now = std::chrono::floor<seconds>(clock_.Now());
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<DeliveryRecord> records, store_.List());
  std::vector<Known> known;
  for (const DeliveryRecord& r : records) {
    if (r.phase != DeliveryPhase::kAvailable) {
      continue;
    }
    auto offer = delivery::DeliveryOffer::FromJson(r.offer);
    auto id = offer ? trust::ReleaseId(offer->release) : Result<Digest>(Fail(offer.error()));
    if (!id) {
      continue;
    }
    Known k{.record = &r,
            .release = offer->release,
            .release_id = id->ToString(),
            .channel_doc = std::nullopt,
            .channel = std::nullopt};
    if (offer->channel) {
      auto channel = trust::VerifyChannel(*offer->channel, root_, now, 0);
      if (channel && channel->model == r.model) {
        k.channel_doc = offer->channel;
        k.channel = std::move(*channel);
      } else if (!channel) {
        spdlog::debug("fleet: the channel document of delivery {} does not verify: {}", r.id,
                      channel.error().ToString());
      }
    }
    known.push_back(std::move(k));
  }
  // The delivery of ref's release and the newest verified channel document that lists it.
  auto resolve = [&](const std::string& model, const ReleaseRef& ref,
                     std::string& why) -> std::optional<std::pair<const Known*, const Known*>> {
    const Known* delivered = nullptr;
    const Known* listed = nullptr;
    for (const Known& k : known) {
      if (k.record->model != model) {
        continue;
      }
      if (k.release_id == ref.release && (delivered == nullptr || !k.record->repository.empty())) {
        delivered = &k;
      }
      if (k.channel && Lists(*k.channel, ref.release) &&
          (listed == nullptr || k.channel->version > listed->channel->version)) {
        listed = &k;
      }
    }
    if (delivered == nullptr) {
      why = "no delivery of " + model + " " + ref.version + " is available on this gateway";
      return std::nullopt;
    }
    if (listed == nullptr) {
      why = "no valid channel document of " + model + " lists " + ref.version;
      return std::nullopt;
    }
    return std::pair(delivered, listed);
  };

  trust::Directive directive{.device = device,
                             .version = version,
                             .issued = now,
                             .expires = now + options_.directive_life,
                             .models = {},
                             .capture = options_.capture};
  delivery::DirectiveMessage message{
      .envelope = {.message_id = NewMessageId(clock_), .sent_at = now},
      .directive = trust::SignedDocument::Wrap(json::object()),
      .channels = {},
      .releases = {},
      .packages = {},
      .roots = options_.root_rotations};
  std::set<std::pair<std::string, std::uint64_t>> channels;  // (name, version) of those added
  std::set<std::string> releases;
  auto add = [&](const std::string& model, const ReleaseRef& ref, trust::DirectiveMode mode,
                 std::optional<trust::HealthLimits> health) {
    std::string why;
    auto found = resolve(model, ref, why);
    if (!found) {
      spdlog::warn("fleet: the directive for {} leaves out {} {} ({}): {}", device, model,
                   ref.version, trust::DirectiveModeName(mode), why);
      return false;
    }
    const auto& [delivered, listed] = *found;
    directive.models.push_back({.model = model,
                                .mode = mode,
                                .release = *Digest::Parse(ref.release),
                                .channel = listed->channel->name,
                                .channel_version = listed->channel->version,
                                .health = std::move(health)});
    if (channels.emplace(listed->channel->name, listed->channel->version).second) {
      message.channels.push_back(*listed->channel_doc);
    }
    if (releases.insert(ref.release).second) {
      message.releases.push_back(delivered->release);
      if (!delivered->record->repository.empty()) {
        message.packages.push_back({.release = ref.release,
                                    .repository = delivered->record->repository,
                                    .size = delivered->record->bytes_total});
      }
    }
    return true;
  };
  for (const auto& [model, entry] : desired.items()) {
    auto active = RefAt(entry, "active");
    auto shadow = RefAt(entry, "shadow");
    if (!active) {
      if (shadow) {
        spdlog::warn(
            "fleet: the directive for {} leaves out the shadow of {} {}: a directive "
            "runs a shadow only beside an active release, and the device runs none",
            device, model, shadow->version);
      }
      continue;
    }
    // The rollout's health window on its target, with the gateway's default limits: what the
    // agent watches before it counts the release healthy (docs/rollout-strategies.md).
    std::optional<trust::HealthLimits> health;
    auto rollout = rollouts_.find(entry.value("deployment", ""));
    if (rollout != rollouts_.end() && rollout->second.target.release == active->release &&
        rollout->second.plan.strategy.health_window >= seconds(1)) {
      health = trust::HealthLimits{};
      health->window = rollout->second.plan.strategy.health_window;
    }
    if (add(model, *active, trust::DirectiveMode::kActive, std::move(health)) && shadow) {
      add(model, *shadow, trust::DirectiveMode::kShadow, std::nullopt);
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(message.directive, trust::SignDirective(directive, directive_key_));
  return message;
}

void FleetService::PublishFleet() {
  // Device rows for the newest rollouts only, so that the retained message stays small.
  constexpr std::size_t kRolloutsWithDevices = 4;
  constexpr std::size_t kDevicesShown = 500;
  delivery::FleetReport report;
  report.envelope = {.message_id = NewMessageId(clock_),
                     .sent_at = std::chrono::floor<seconds>(clock_.Now())};
  report.gateway = options_.gateway;
  for (auto it = started_.rbegin();
       it != started_.rend() && report.rollouts.size() < delivery::kMaxFleetRollouts; ++it) {
    const Rollout& r = rollouts_.at(*it);
    json j = Summarize(r).ToJson();
    j["created_at"] = FormatRfc3339(r.created_at);
    j["updated_at"] = FormatRfc3339(r.updated_at);
    if (report.rollouts.size() < kRolloutsWithDevices) {
      json rows = json::array();
      for (const RolloutDevice& d : r.devices) {
        if (rows.size() == kDevicesShown) {
          j["device_status_truncated"] = true;
          break;
        }
        json row = {{"id", d.id},
                    {"wave", d.wave + 1},
                    {"status", DeviceStatusName(d.status)},
                    {"online", d.online}};
        if (!d.reason.empty()) {
          row["reason"] = d.reason;
        }
        rows.push_back(std::move(row));
      }
      j["device_status"] = std::move(rows);
    }
    report.rollouts.push_back(std::move(j));
  }
  json payload = report.ToJson();
  auto topic = hub_topics_.Topic(delivery::TopicKind::kFleet, options_.gateway);
  Status sent = topic ? to_hub_(*topic, payload.dump(), true) : Status(Fail(topic.error()));
  if (!sent) {
    spdlog::warn("fleet: the summary was not published (the next change publishes it): {}",
                 sent.error().ToString());
  }
}

// ---- device messages and changes ----

void FleetService::HandleDeviceMessage(const std::string& topic, const std::string& payload) {
  auto address = device_topics_.Parse(topic);
  if (!address) {
    spdlog::debug("fleet: ignoring a message on {}: {}", topic.substr(0, 200),
                  address.error().message());
    return;
  }
  if (address->kind == delivery::DeviceTopicKind::kDirective) {
    return;  // our own
  }
  const std::string& id = address->device;
  auto device = store_.Device(id);
  if (!device || device->revoked_at) {
    spdlog::debug("fleet: dropping {} of {}: {}", delivery::DeviceTopicKindName(address->kind), id,
                  device ? "the device is revoked" : "not an enrolled device");
    return;
  }
  TimePoint now = clock_.Now();
  std::vector<std::string> current = CurrentRollouts();
  if (address->kind == delivery::DeviceTopicKind::kOnline) {
    auto online = delivery::ParseOnline(payload);
    if (!online) {
      spdlog::debug("fleet: dropping online of {}: {}", id, online.error().message());
      return;
    }
    if (Status set = store_.SetDeviceOnline(id, *online, now); !set) {
      spdlog::error("fleet: {}: {}", id, set.error().ToString());
      return;
    }
    if (options_.on_device_report) {
      options_.on_device_report(id);
    }
    for (const std::string& deployment : current) {
      const Rollout& r = rollouts_.at(deployment);
      if (r.Find(id) != nullptr) {
        Run(Apply(r, DeviceOnline{.device = id, .online = *online}, Inputs{now}));
      }
    }
    return;
  }
  auto j = delivery::ParsePayload(payload);
  auto state =
      j ? delivery::DeviceState::FromJson(*j) : Result<delivery::DeviceState>(Fail(j.error()));
  if (!state) {
    spdlog::debug("fleet: dropping a state of {}: {}", id, state.error().message());
    return;
  }
  if (state->device != id) {
    spdlog::debug("fleet: dropping a state on {}'s topic that names {}", id, state->device);
    return;
  }
  auto taken = store_.PutDeviceState(id, state->seq, state->ToJson(), now);
  if (!taken) {
    spdlog::debug("fleet: dropping a state of {}: {}", id, taken.error().ToString());
    return;
  }
  if (!*taken) {
    spdlog::debug(
        "fleet: dropping a state of {} with seq {}: not above the last one taken "
        "(a replay or a late copy)",
        id, state->seq);
    return;
  }
  if (options_.on_device_report) {
    options_.on_device_report(id);
  }
  for (const std::string& deployment : current) {
    const Rollout& r = rollouts_.at(deployment);
    if (r.Find(id) != nullptr) {
      Run(Apply(r, ReportFrom(*state, r.model), Inputs{now}));
    }
  }
}

void FleetService::HandleDeviceChanged(const std::string& id) {
  auto device = store_.Device(id);
  if (!device) {
    spdlog::error("fleet: {}", device.error().ToString());
    return;
  }
  Inputs in{clock_.Now()};
  if (device->revoked_at) {
    // Its retained directive goes (an empty retained message clears it on the broker), and it
    // leaves every rollout as it is.
    auto topic = device_topics_.Topic(delivery::DeviceTopicKind::kDirective, id);
    Status cleared = topic ? to_devices_(*topic, "", true) : Status(Fail(topic.error()));
    if (!cleared) {
      spdlog::warn(
          "fleet: the retained directive of revoked {} was not cleared (tried again at "
          "the next start): {}",
          id, cleared.error().ToString());
    } else if (auto record = store_.DeviceDirective(id); record && !record->message.empty()) {
      record->message.clear();
      if (Status put = store_.PutDeviceDirective(*record); !put) {
        spdlog::error("fleet: {}: {}", id, put.error().ToString());
      }
    }
    for (const std::string& deployment : CurrentRollouts()) {
      const Rollout& r = rollouts_.at(deployment);
      if (r.Find(id) != nullptr) {
        Run(Apply(r, DeviceRemoved{.device = id}, in));
      }
    }
    return;
  }
  auto state = store_.DeviceState(id);
  if (!state) {
    spdlog::error("fleet: {}", state.error().ToString());
    return;
  }
  for (const std::string& deployment : CurrentRollouts()) {
    const Rollout& r = rollouts_.at(deployment);
    bool in_rollout = r.Find(id) != nullptr;
    bool selected = Selects(r.plan.selector, device->labels);
    if (selected && !in_rollout) {
      Run(Apply(r, DeviceAdded{.device = InfoOf(*device, *state, r.model)}, in));
    } else if (!selected && in_rollout) {
      Run(Apply(r, DeviceRemoved{.device = id}, in));
    }
  }
}

// ---- the operator's ----

FleetStats FleetService::Stats() {
  FleetStats stats;
  {
    std::lock_guard lock(mu_);
    for (const auto& [deployment, rollout] : rollouts_) {
      stats.rollouts[rollout.state] += 1;
      if (IsFinal(rollout.state)) {
        continue;
      }
      DeviceCounts counts = Summarize(rollout).devices;
      stats.devices.total += counts.total;
      stats.devices.offline += counts.offline;
      for (std::size_t i = 0; i < counts.by_status.size(); ++i) {
        stats.devices.by_status[i] += counts.by_status[i];
      }
    }
  }
  std::lock_guard lock(queue_mu_);
  stats.queued = queue_.size();
  return stats;
}

std::vector<Rollout> FleetService::Rollouts() {
  std::lock_guard lock(mu_);
  std::vector<Rollout> out;
  for (const std::string& deployment : started_) {
    out.push_back(rollouts_.at(deployment));
  }
  return out;
}

Result<Rollout> FleetService::Get(const std::string& deployment) {
  std::lock_guard lock(mu_);
  auto it = rollouts_.find(deployment);
  if (it == rollouts_.end()) {
    return Fail(ErrorCode::kNotFound, "no rollout of " + deployment + " on this gateway");
  }
  return it->second;
}

void FleetService::OnDeploymentCancelled(const std::string& deployment, const std::string& reason) {
  Enqueue([this, deployment, reason] {
    auto cancelled = ControlLocked(deployment, Command::kCancel,
                                   "the hub" + (reason.empty() ? "" : " (" + reason + ")"));
    if (!cancelled && cancelled.error().code() != ErrorCode::kNotFound) {
      spdlog::info("fleet: the hub cancelled {}: {}", deployment, cancelled.error().message());
    }
  });
}

Result<Rollout> FleetService::Control(const std::string& deployment, Command command,
                                      const std::string& by) {
  std::lock_guard lock(mu_);
  return ControlLocked(deployment, command, by);
}

Result<Rollout> FleetService::ControlLocked(const std::string& deployment, Command command,
                                            const std::string& by) {
  auto it = rollouts_.find(deployment);
  if (it == rollouts_.end()) {
    return Fail(ErrorCode::kNotFound, "no rollout of " + deployment + " on this gateway");
  }
  Event event = command == Command::kPause    ? Event(gateway::Pause{})
                : command == Command::kResume ? Event(gateway::Resume{})
                                              : Event(Cancel{"cancelled by " + by});
  Step step = Apply(it->second, event, Inputs{clock_.Now()});
  if (!step.applied) {
    return Fail(ErrorCode::kInvalidArgument, step.note);
  }
  spdlog::info("rollout {}: {} by {}", deployment, EventName(event), by);
  if (!Run(std::move(step))) {
    return Fail(ErrorCode::kIo, "the rollout of " + deployment + " could not be stored");
  }
  return rollouts_.at(deployment);
}

}  // namespace airlock::gateway
