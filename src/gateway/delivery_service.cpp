#include "gateway/delivery_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <atomic>
#include <mutex>
#include <thread>
#include <set>

#include "core/digest.hpp"
#include "gateway/layout_import.hpp"

namespace airlock::gateway {

namespace {

using delivery::DeliveryFailure;
using delivery::FailureCode;
using delivery::GatewayState;
using delivery::RejectReason;
using delivery::TopicKind;
using nlohmann::json;

constexpr char kReleaseArtifactType[] = "application/vnd.airlock.release.v1+json";
constexpr char kManifestAccept[] =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

std::string Mb(std::uint64_t bytes) {
  char out[32];
  std::snprintf(out, sizeof(out), "%.1f MB", static_cast<double>(bytes) / 1e6);
  return out;
}

// "/v2/REPO/blobs/sha256:…?…" → REPO ("" when the URL is not of that form).
std::string RepositoryOf(const std::string& url) {
  if (!url.starts_with("/v2/")) {
    return "";
  }
  std::size_t end = url.find("/blobs/");
  if (end == std::string::npos || end <= 4) {
    return "";
  }
  std::string repo = url.substr(4, end - 4);
  return IsRepositoryName(repo) ? repo : "";
}

// "os/arch[/variant]" of an index entry's platform ("" when it has none).
std::string PlatformOf(const json& entry) {
  auto it = entry.find("platform");
  if (it == entry.end() || !it->is_object()) {
    return "";
  }
  std::string p = it->value("os", "") + "/" + it->value("architecture", "");
  if (it->contains("variant") && (*it)["variant"].is_string()) {
    p += "/" + (*it)["variant"].get<std::string>();
  }
  return p;
}

// Whether a wanted platform selects an index entry's: exactly, or "linux/arm64" any variant of it.
bool PlatformMatches(const std::string& wanted, const std::string& entry) {
  return wanted == entry || entry.starts_with(wanted + "/");
}

struct DownloadFailure {
  FailureCode code;
  std::string message;
};

}  // namespace

Result<std::unique_ptr<DeliveryService>> DeliveryService::Create(
    DeliveryServiceOptions options, trust::Root root, GatewayCache& cache,
    GatewayStateStore& store, HubHttp& hub, Publisher publish, const Clock& clock) {
  AIRLOCK_ASSIGN_OR_RETURN(delivery::Topics topics, delivery::Topics::Create(options.topic_prefix));
  if (!delivery::ValidGatewayName(options.gateway)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid gateway name " + options.gateway);
  }
  return std::unique_ptr<DeliveryService>(new DeliveryService(std::move(options), std::move(root),
                                                              cache, store, hub,
                                                              std::move(publish), clock, topics));
}

DeliveryService::DeliveryService(DeliveryServiceOptions options, trust::Root root,
                                 GatewayCache& cache, GatewayStateStore& store, HubHttp& hub,
                                 Publisher publish, const Clock& clock, delivery::Topics topics)
    : options_(std::move(options)),
      root_(std::move(root)),
      cache_(cache),
      store_(store),
      hub_(hub),
      publish_(std::move(publish)),
      clock_(clock),
      topics_(std::move(topics)) {}

DeliveryService::~DeliveryService() { Stop(); }

void DeliveryService::Start() {
  {
    std::lock_guard lock(queue_mu_);
    if (worker_.joinable() || stopping_) {
      return;
    }
  }
  worker_ = std::thread([this] {
    Resume();
    WorkerLoop();
  });
}

void DeliveryService::Stop() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
  for (auto& [id, job] : jobs_) {
    job.cancel->store(true);
  }
  for (auto& [id, job] : jobs_) {
    if (job.thread.joinable()) {
      job.thread.join();
    }
  }
  jobs_.clear();
}

void DeliveryService::SetRolloutApprovedHook(std::function<void(const DeliveryRecord&)> hook) {
  std::lock_guard lock(mu_);
  rollout_approved_ = std::move(hook);
}

void DeliveryService::SetCancelledHook(std::function<void(const DeliveryRecord&)> hook) {
  std::lock_guard lock(mu_);
  cancelled_ = std::move(hook);
}

void DeliveryService::AnnounceIfApproved(const DeliveryRecord& r) {
  if (rollout_approved_ && r.phase == DeliveryPhase::kAvailable &&
      r.approval == Approval::kRolloutApproved) {
    rollout_approved_(r);
  }
}

void DeliveryService::OnMessage(const std::string& topic, const std::string& payload) {
  {
    std::lock_guard lock(queue_mu_);
    if (stopping_) {
      return;
    }
    queue_.emplace_back(topic, payload);
  }
  queue_cv_.notify_one();
}

std::size_t DeliveryService::QueueDepth() const {
  std::lock_guard lock(queue_mu_);
  return queue_.size();
}

void DeliveryService::WorkerLoop() {
  for (;;) {
    std::pair<std::string, std::string> message;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      message = std::move(queue_.front());
      queue_.pop_front();
    }
    Handle(message.first, message.second);
    handled_.fetch_add(1);
  }
}

void DeliveryService::Handle(const std::string& topic, const std::string& payload) {
  auto address = topics_.Parse(topic);
  if (!address || address->gateway != options_.gateway) {
    spdlog::warn("delivery: ignoring a message on {}: {}", topic.substr(0, 200),
                 address ? "another gateway's topic" : address.error().message());
    return;
  }
  auto j = delivery::ParsePayload(payload);
  if (!j) {
    spdlog::warn("delivery: ignoring a message on {}: {}", topic, j.error().message());
    return;
  }
  auto check_id = [&](const std::string& id) {
    if (id != address->delivery_id) {
      spdlog::warn("delivery: ignoring a message on {} about another delivery ({})", topic, id);
      return false;
    }
    return true;
  };
  switch (address->kind) {
    case TopicKind::kOffer: {
      auto offer = delivery::DeliveryOffer::FromJson(*j);
      if (!offer) {
        spdlog::warn("delivery: ignoring an offer: {}", offer.error().message());
        return;
      }
      return HandleOffer(*offer);
    }
    case TopicKind::kGrant: {
      auto grant = delivery::DeliveryGrant::FromJson(*j);
      if (!grant) {
        spdlog::warn("delivery: ignoring a grant: {}", grant.error().message());
        return;
      }
      if (check_id(grant->delivery_id)) {
        HandleGrant(*grant);
      }
      return;
    }
    case TopicKind::kCancel: {
      auto cancel = delivery::DeliveryCancel::FromJson(*j);
      if (!cancel) {
        spdlog::warn("delivery: ignoring a cancel: {}", cancel.error().message());
        return;
      }
      if (check_id(cancel->delivery_id)) {
        HandleCancel(*cancel);
      }
      return;
    }
    default:
      spdlog::warn("delivery: ignoring a message on {}: not for a gateway", topic);
  }
}

delivery::Envelope DeliveryService::NewEnvelope() {
  auto id = RandomHex(8);
  return delivery::Envelope{
      .message_id = id ? *id : std::to_string(clock_.Now().time_since_epoch().count()),
      .sent_at = std::chrono::time_point_cast<std::chrono::seconds>(clock_.Now())};
}

void DeliveryService::Publish(TopicKind kind, const std::string& id, const json& body) {
  auto topic = topics_.Topic(kind, options_.gateway, id);
  if (!topic) {
    spdlog::error("delivery: {}", topic.error().ToString());
    return;
  }
  Status sent = publish_(*topic, body.dump());
  if (!sent) {
    spdlog::warn("delivery: could not publish {} of {} (the hub will ask again): {}",
                 delivery::TopicKindName(kind), id, sent.error().ToString());
  }
}

std::uint64_t DeliveryService::FreeBytes() {
  std::uint64_t cache_room = 0;
  if (auto usage = cache_.Usage()) {
    std::uint64_t used = usage->pinned_bytes + usage->download_bytes;
    cache_room = usage->max_bytes > used ? usage->max_bytes - used : 0;
  }
  std::uint64_t disk = 0;
  if (auto free = FreeDiskBytes(options_.data_dir)) {
    disk = *free > options_.reserve_bytes ? *free - options_.reserve_bytes : 0;
  }
  return std::min(cache_room, disk);
}

void DeliveryService::AnswerReady(const DeliveryRecord& r) {
  delivery::DeliveryReady ready{.envelope = NewEnvelope(),
                                .delivery_id = r.id,
                                .free_bytes = FreeBytes(),
                                .platforms = r.platforms};
  Publish(TopicKind::kReady, r.id, ready.ToJson());
}

void DeliveryService::AnswerReject(const DeliveryRecord& r) {
  auto reason = delivery::ParseRejectReason(r.reason);
  delivery::DeliveryReject reject{.envelope = NewEnvelope(),
                                  .delivery_id = r.id,
                                  .reason = reason ? *reason : RejectReason::kOperator,
                                  .message = r.message.substr(0, delivery::kMaxTextLength)};
  Publish(TopicKind::kReject, r.id, reject.ToJson());
}

void DeliveryService::SendStatus(const DeliveryRecord& r, GatewayState state,
                                 std::optional<DeliveryFailure> error) {
  if (error) {
    error->message = error->message.substr(0, delivery::kMaxTextLength);
    for (char& c : error->message) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        c = ' ';
      }
    }
  }
  delivery::DeliveryStatus status{.envelope = NewEnvelope(),
                                  .delivery_id = r.id,
                                  .state = state,
                                  .attempt = r.attempt,
                                  .bytes_done = std::min(r.bytes_done, r.bytes_total),
                                  .bytes_total = r.bytes_total,
                                  .error = std::move(error)};
  Publish(TopicKind::kStatus, r.id, status.ToJson());
}

// ---- offer ----

void DeliveryService::InheritDecision(DeliveryRecord& r) {
  auto records = store_.List();
  if (!records) {
    return;
  }
  for (const DeliveryRecord& other : *records) {
    bool decided = other.approval == Approval::kRolloutApproved ||
                   (other.approval == Approval::kRejected && other.phase == DeliveryPhase::kAvailable);
    if (other.id != r.id && other.deployment == r.deployment && other.version == r.version &&
        other.model == r.model && other.phase == DeliveryPhase::kAvailable && decided) {
      r.approval = other.approval;
      r.decided_by = other.decided_by;
      r.decided_at = other.decided_at;
      r.comment = other.comment;
      r.source = other.source;
      return;
    }
  }
}

Result<DeliveryRecord> DeliveryService::ImportBundle(const std::filesystem::path& bundle,
                                                     const std::string& by) {
  std::lock_guard lock(mu_);
  TimePoint now = clock_.Now();
  AIRLOCK_ASSIGN_OR_RETURN(auto files, LayoutFiles::Open(bundle));
  auto manifest_text = files->Read(delivery::kBundleManifestFile, 64 << 10);
  if (!manifest_text) {
    return Fail(manifest_text.error().code() == ErrorCode::kNotFound
                    ? Error(ErrorCode::kInvalidArgument,
                            bundle.string() + " is not an Airlock bundle (it has no " +
                                delivery::kBundleManifestFile +
                                "); make one with airlock bundle export")
                    : std::move(manifest_text.error()));
  }
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json manifest_json, delivery::ParsePayload(*manifest_text));
  AIRLOCK_ASSIGN_OR_RETURN(delivery::BundleManifest m,
                           delivery::BundleManifest::FromJson(manifest_json));
  AIRLOCK_ASSIGN_OR_RETURN(
      PackageSpec spec,
      ReadLayoutPackage(*files, {"", m.index_digest}, PackageRef{m.repository, m.version}));

  // The release: exactly the checks of an offer.
  if (spec.release.empty()) {
    return Fail(ErrorCode::kVerification, "the bundle carries no signed release for " + m.model +
                                              " " + m.version);
  }
  AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument doc, trust::SignedDocument::Parse(spec.release));
  AIRLOCK_ASSIGN_OR_RETURN(trust::Release body, trust::Release::FromJson(doc.body()));
  if (body.expires <= now) {
    return Fail(ErrorCode::kVerification, "the release of " + m.model + " " + m.version +
                                              " expired at " + FormatRfc3339(body.expires));
  }
  auto release = trust::VerifyRelease(doc, root_, now, 0);
  if (!release) {
    return Fail(ErrorCode::kVerification,
                "the release does not verify against this gateway's root: " +
                    release.error().message());
  }
  if (release->model != m.model || release->version != m.version ||
      release->index_digest != m.index_digest) {
    return Fail(ErrorCode::kVerification,
                "the bundle's package (" + m.model + " " + m.version + ", index " +
                    m.index_digest.ToString() + ") is not the one its release signs (" +
                    release->model + " " + release->version + ", index " +
                    release->index_digest.ToString() + ")");
  }

  DeliveryRecord r;
  // One id per deployment and package, so that importing the same bundle twice is one import.
  r.id = "dlv-" + Sha256Of(m.deployment_id + "\n" + m.index_digest.ToString()).hex().substr(0, 32);
  if (auto existing = store_.Get(r.id); existing && existing->phase == DeliveryPhase::kAvailable) {
    spdlog::info("import {}: {} {} was imported already", r.id, m.model, m.version);
    return *existing;
  }
  std::error_code ec;
  std::uint64_t bundle_size = std::filesystem::file_size(bundle, ec);
  std::uint64_t needed = 0;
  if (auto refusal = CheckSite(
          m.model, release->platforms,
          [&](const std::vector<std::string>&) { return bundle_size; }, r.platforms, needed)) {
    return Fail(refusal->reason == RejectReason::kInsufficientSpace ? ErrorCode::kUnavailable
                                                                     : ErrorCode::kInvalidArgument,
                std::string("this site refuses it (") + delivery::RejectReasonName(refusal->reason) +
                    "): " + refusal->message);
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t copied, LoadLayoutPackage(cache_, *files, spec));
  AIRLOCK_RETURN_IF_ERROR(cache_.Pin(r.id, spec.ref));

  // The record a network delivery ends with; the "offer" is the bundle's, so that the approval
  // shows the release's signers as for any delivery.
  delivery::DeliveryOffer as_offer;
  as_offer.envelope = NewEnvelope();
  as_offer.delivery_id = r.id;
  as_offer.deployment_id = m.deployment_id;
  as_offer.model = m.model;
  as_offer.version = m.version;
  as_offer.release = doc;
  as_offer.total_size = bundle_size;
  as_offer.expires = m.exported_at;
  // The channel document the bundle carries, so that devices can be directed to the release
  // (the fleet service and each device verify it; one that is not the model's channel is left
  // out, and the rollout then has no channel to name).
  if (auto channel_text = files->Read(delivery::kBundleChannelFile, 1 << 20)) {
    auto channel = trust::SignedDocument::Parse(*channel_text);
    if (channel && channel->type() == "channel" &&
        channel->body().value("model", "") == m.model) {
      as_offer.channel = *channel;
    } else {
      spdlog::warn("import: the bundle's {} is not a channel document of {}; left out",
                   delivery::kBundleChannelFile, m.model);
    }
  }
  r.deployment = m.deployment_id;
  r.model = m.model;
  r.version = m.version;
  r.offer = as_offer.ToJson();
  r.phase = DeliveryPhase::kAvailable;
  r.repository = m.repository;
  r.source = "bundle " + bundle.filename().string() + ", exported from " + m.exported_from +
             " at " + FormatRfc3339(m.exported_at);
  auto packages = cache_.ListPackages();
  if (packages) {
    for (const CachedPackage& p : *packages) {
      if (p.ref.repository == spec.ref.repository && p.ref.tag == spec.ref.tag) {
        r.bytes_done = r.bytes_total = p.bytes;
      }
    }
  }
  r.approval = options_.policy.rollout_approval == RolloutApproval::kAuto
                   ? Approval::kRolloutApproved
                   : Approval::kRolloutPending;
  if (r.approval == Approval::kRolloutApproved) {
    r.decided_by = "policy";
    r.decided_at = now;
  }
  r.created_at = now;
  r.updated_at = now;
  AIRLOCK_RETURN_IF_ERROR(store_.Put(r));
  spdlog::info("import {}: {} {} for deployment {} from {} ({} bytes copied){}", r.id, r.model,
               r.version, r.deployment, bundle.string(), copied,
               by.empty() ? "" : ", by " + by);
  AnnounceIfApproved(r);
  return r;
}

std::optional<DeliveryService::Refusal> DeliveryService::CheckSite(
    const std::string& model, const std::vector<std::string>& offered,
    const std::function<std::uint64_t(const std::vector<std::string>&)>& needed_for,
    std::vector<std::string>& platforms, std::uint64_t& needed) {
  const SitePolicy& policy = options_.policy;
  if (!policy.allowed_models.empty() &&
      std::find(policy.allowed_models.begin(), policy.allowed_models.end(), model) ==
          policy.allowed_models.end()) {
    return Refusal{RejectReason::kModelNotAllowed, "this site does not take the model " + model};
  }
  platforms.clear();
  for (const std::string& p : offered) {
    bool wanted = policy.platforms.empty();
    for (const std::string& w : policy.platforms) {
      wanted = wanted || PlatformMatches(w, p);
    }
    if (wanted && platforms.size() < delivery::kMaxPlatforms) {
      platforms.push_back(p);
    }
  }
  if (platforms.empty()) {
    std::string want;
    for (const std::string& w : policy.platforms) {
      want += (want.empty() ? "" : ", ") + w;
    }
    return Refusal{RejectReason::kUnsupportedPlatform,
                   "this site needs " + want + "; the package has none of them"};
  }
  needed = needed_for(platforms);
  if (policy.max_package_bytes > 0 && needed > policy.max_package_bytes) {
    return Refusal{RejectReason::kTooLarge, "needs " + Mb(needed) + "; this site takes at most " +
                                                Mb(policy.max_package_bytes) + " per package"};
  }
  if (Status room = cache_.CheckRoomFor(needed); !room) {
    return Refusal{RejectReason::kInsufficientSpace,
                   "needs " + Mb(needed) + ": " + room.error().message()};
  }
  if (auto free = FreeDiskBytes(options_.data_dir);
      free && (*free < options_.reserve_bytes || *free - options_.reserve_bytes < needed)) {
    return Refusal{RejectReason::kInsufficientSpace,
                   "needs " + Mb(needed) + " in " + options_.data_dir.string() + ", " +
                       Mb(*free > options_.reserve_bytes ? *free - options_.reserve_bytes : 0) +
                       " free after the reserve of " + Mb(options_.reserve_bytes)};
  }
  return std::nullopt;
}

void DeliveryService::HandleOffer(const delivery::DeliveryOffer& offer) {
  std::lock_guard lock(mu_);
  TimePoint now = clock_.Now();
  auto existing = store_.Get(offer.delivery_id);
  if (existing) {
    DeliveryRecord r = *existing;
    // A repeat: answer as before (a held offer stays held, an approved one gets its ready).
    switch (r.phase) {
      case DeliveryPhase::kHeld:
        r.offer = offer.ToJson();
        r.updated_at = now;
        if (Status put = store_.Put(r); !put) {
          spdlog::error("delivery {}: {}", r.id, put.error().ToString());
          return;
        }
        if (r.approval == Approval::kOfferApproved && offer.expires > now) {
          r.phase = DeliveryPhase::kReady;
          if (store_.Put(r)) {
            AnswerReady(r);
          }
          return;
        }
        return SendStatus(r, GatewayState::kHeld);
      case DeliveryPhase::kRejected:
        return AnswerReject(r);
      case DeliveryPhase::kReady:
      case DeliveryPhase::kDownloading:
      case DeliveryPhase::kFailed:
        return AnswerReady(r);
      case DeliveryPhase::kAvailable:
        return SendStatus(r, GatewayState::kAvailable);
      case DeliveryPhase::kCancelled:
        return;
    }
    return;
  }
  if (offer.expires <= now) {
    spdlog::info("delivery {}: the offer expired at {}; not answering", offer.delivery_id,
                 FormatRfc3339(offer.expires));
    return;
  }
  DeliveryRecord r;
  r.id = offer.delivery_id;
  r.deployment = offer.deployment_id;
  r.model = offer.model;
  r.version = offer.version;
  r.offer = offer.ToJson();
  r.created_at = now;
  r.updated_at = now;
  auto reject = [&](RejectReason reason, std::string message) {
    r.phase = DeliveryPhase::kRejected;
    r.reason = delivery::RejectReasonName(reason);
    r.message = std::move(message);
    spdlog::info("delivery {} ({} {}): rejected, {}: {}", r.id, r.model, r.version, r.reason,
                 r.message);
    if (Status put = store_.Put(r); !put) {
      spdlog::error("delivery {}: {}", r.id, put.error().ToString());
      return;
    }
    AnswerReject(r);
  };

  // The release: its own expiry first (a clearer reason), then the signatures.
  auto body = trust::Release::FromJson(offer.release.body());
  if (!body) {
    return reject(RejectReason::kVerification, "the release is malformed: " +
                                                   body.error().message());
  }
  if (body->expires <= now) {
    return reject(RejectReason::kExpired,
                  "the release of " + r.model + " " + r.version + " expired at " +
                      FormatRfc3339(body->expires));
  }
  auto release = trust::VerifyRelease(offer.release, root_, now, 0);
  if (!release) {
    return reject(RejectReason::kVerification,
                  "the release does not verify against this gateway's root: " +
                      release.error().message());
  }

  // Already here (an earlier delivery, an import): available at once.
  if (auto packages = cache_.ListPackages()) {
    for (const CachedPackage& p : *packages) {
      if (p.complete && p.index == release->index_digest) {
        if (Status pinned = cache_.Pin(r.id, p.ref); !pinned) {
          spdlog::warn("delivery {}: {}", r.id, pinned.error().ToString());
        }
        r.phase = DeliveryPhase::kAvailable;
        r.repository = p.ref.repository;
        r.bytes_done = r.bytes_total = p.bytes;
        r.platforms = release->platforms;
        r.approval = options_.policy.rollout_approval == RolloutApproval::kAuto
                         ? Approval::kRolloutApproved
                         : Approval::kRolloutPending;
        if (r.approval == Approval::kRolloutApproved) {
          r.decided_by = "policy";
          r.decided_at = now;
        }
        InheritDecision(r);
        if (store_.Put(r)) {
          SendStatus(r, GatewayState::kAvailable);
          AnnounceIfApproved(r);
        }
        return;
      }
    }
  }

  std::vector<std::string> offered = release->platforms;
  for (const auto& ps : offer.platform_sizes) {
    if (std::find(offered.begin(), offered.end(), ps.platform) == offered.end()) {
      offered.push_back(ps.platform);
    }
  }
  auto needed_for = [&](const std::vector<std::string>& platforms) {
    std::uint64_t sum = 0;
    for (const std::string& p : platforms) {
      auto it = std::find_if(offer.platform_sizes.begin(), offer.platform_sizes.end(),
                             [&](const delivery::PlatformSize& ps) { return ps.platform == p; });
      if (it == offer.platform_sizes.end()) {
        return offer.total_size;  // not sized: the whole package is the bound
      }
      sum += it->size;
    }
    return std::min(sum, offer.total_size);
  };
  std::uint64_t needed = 0;
  if (auto refusal = CheckSite(r.model, offered, needed_for, r.platforms, needed)) {
    return reject(refusal->reason, std::move(refusal->message));
  }
  const SitePolicy& policy = options_.policy;
  r.bytes_total = needed;
  if (policy.offers == OfferMode::kOperator) {
    r.phase = DeliveryPhase::kHeld;
    r.approval = Approval::kOfferPending;
    spdlog::info("delivery {} ({} {}): held for an operator", r.id, r.model, r.version);
    if (Status put = store_.Put(r); !put) {
      spdlog::error("delivery {}: {}", r.id, put.error().ToString());
      return;
    }
    return SendStatus(r, GatewayState::kHeld);
  }
  r.phase = DeliveryPhase::kReady;
  if (Status put = store_.Put(r); !put) {
    spdlog::error("delivery {}: {}", r.id, put.error().ToString());
    return;
  }
  spdlog::info("delivery {} ({} {}): ready", r.id, r.model, r.version);
  AnswerReady(r);
}

// ---- decisions ----

Result<DeliveryRecord> DeliveryService::Decide(const std::string& id, bool approve,
                                               const std::string& by, const std::string& comment) {
  std::lock_guard lock(mu_);
  AIRLOCK_ASSIGN_OR_RETURN(DeliveryRecord r, store_.Get(id));
  TimePoint now = clock_.Now();
  if (r.approval != Approval::kOfferPending && r.approval != Approval::kRolloutPending) {
    return Fail(ErrorCode::kInvalidArgument,
                id + " is waiting for no decision (approval: " + ApprovalName(r.approval) +
                    ", delivery: " + DeliveryPhaseName(r.phase) + ")");
  }
  bool offer_stage = r.approval == Approval::kOfferPending;
  r.decided_by = by;
  r.comment = comment.substr(0, delivery::kMaxTextLength);
  r.decided_at = now;
  r.updated_at = now;
  if (!approve) {
    r.approval = Approval::kRejected;
    if (offer_stage) {
      r.phase = DeliveryPhase::kRejected;
      r.reason = delivery::RejectReasonName(RejectReason::kOperator);
      r.message = "declined by the site's operator " + by + (comment.empty() ? "" : ": " + comment);
    }
    AIRLOCK_RETURN_IF_ERROR(store_.Put(r));
    if (offer_stage) {
      AnswerReject(r);
    }
    spdlog::info("delivery {}: rejected by {}", id, by);
    return r;
  }
  if (!offer_stage) {
    r.approval = Approval::kRolloutApproved;
    AIRLOCK_RETURN_IF_ERROR(store_.Put(r));
    spdlog::info("delivery {}: rollout approved by {}", id, by);
    AnnounceIfApproved(r);
    return r;
  }
  r.approval = Approval::kOfferApproved;
  auto offer = delivery::DeliveryOffer::FromJson(r.offer);
  bool answer = offer && offer->expires > now;
  if (answer) {
    r.phase = DeliveryPhase::kReady;
  }
  AIRLOCK_RETURN_IF_ERROR(store_.Put(r));
  if (answer) {
    AnswerReady(r);
  }
  spdlog::info("delivery {}: offer approved by {}{}", id, by,
               answer ? "" : " (the offer expired: ready goes with the next offer)");
  return r;
}

// ---- grant ----

void DeliveryService::HandleGrant(const delivery::DeliveryGrant& grant) {
  {
    std::lock_guard lock(mu_);
    auto existing = store_.Get(grant.delivery_id);
    if (!existing) {
      spdlog::info("delivery {}: ignoring a grant for a delivery this gateway did not accept",
                   grant.delivery_id);
      return;
    }
    DeliveryRecord r = *existing;
    if (r.phase == DeliveryPhase::kAvailable) {
      return SendStatus(r, GatewayState::kAvailable);
    }
    if (r.phase != DeliveryPhase::kReady && r.phase != DeliveryPhase::kDownloading &&
        r.phase != DeliveryPhase::kFailed) {
      spdlog::info("delivery {}: ignoring a grant while {}", r.id, DeliveryPhaseName(r.phase));
      return;
    }
    if (grant.attempt <= r.attempt) {
      spdlog::debug("delivery {}: ignoring grant attempt {} (working from {})", r.id,
                    grant.attempt, r.attempt);
      return;
    }
    r.attempt = grant.attempt;
    r.grant = grant.ToJson();
    r.phase = DeliveryPhase::kDownloading;
    r.failure.clear();
    r.message.clear();
    r.updated_at = clock_.Now();
    if (Status put = store_.Put(r); !put) {
      spdlog::error("delivery {}: {}", r.id, put.error().ToString());
      return;
    }
  }
  StartJob(grant.delivery_id, grant.attempt);
}

void DeliveryService::StartJob(const std::string& id, std::uint32_t attempt) {
  StopJob(id);
  Job& job = jobs_[id];
  job.attempt = attempt;
  job.cancel = std::make_shared<std::atomic<bool>>(false);
  job.thread = std::thread(&DeliveryService::RunDownload, this, id, attempt, job.cancel);
}

void DeliveryService::StopJob(const std::string& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return;
  }
  it->second.cancel->store(true);
  if (it->second.thread.joinable()) {
    it->second.thread.join();
  }
  jobs_.erase(it);
}

void DeliveryService::Resume() {
  auto records = store_.List();
  if (!records) {
    spdlog::error("delivery: cannot read the deliveries to resume: {}",
                  records.error().ToString());
    return;
  }
  for (const DeliveryRecord& r : *records) {
    if (r.phase == DeliveryPhase::kDownloading) {
      spdlog::info("delivery {}: resuming the download of attempt {}", r.id, r.attempt);
      StartJob(r.id, r.attempt);
    }
  }
}

void DeliveryService::Progress(const std::string& id, std::uint32_t attempt, std::uint64_t done,
                               std::uint64_t total) {
  std::lock_guard lock(mu_);
  auto r = store_.Get(id);
  if (!r || r->phase != DeliveryPhase::kDownloading || r->attempt != attempt) {
    return;
  }
  r->bytes_done = done;
  r->bytes_total = total;
  r->updated_at = clock_.Now();
  if (store_.Put(*r)) {
    SendStatus(*r, GatewayState::kDownloading);
  }
}

void DeliveryService::Finish(const std::string& id, std::uint32_t attempt,
                             std::optional<DeliveryFailure> failure) {
  std::lock_guard lock(mu_);
  auto r = store_.Get(id);
  if (!r || r->phase != DeliveryPhase::kDownloading || r->attempt != attempt) {
    return;
  }
  TimePoint now = clock_.Now();
  r->updated_at = now;
  if (failure) {
    r->phase = DeliveryPhase::kFailed;
    r->failure = delivery::FailureCodeName(failure->code);
    r->message = failure->message;
    spdlog::warn("delivery {}: attempt {} failed, {}: {}", id, attempt, r->failure, r->message);
    if (store_.Put(*r)) {
      SendStatus(*r, GatewayState::kFailed, failure);
    }
    return;
  }
  r->phase = DeliveryPhase::kAvailable;
  r->bytes_done = r->bytes_total;
  if (options_.policy.rollout_approval == RolloutApproval::kAuto) {
    r->approval = Approval::kRolloutApproved;
    r->decided_by = "policy";
    r->decided_at = now;
  } else {
    r->approval = Approval::kRolloutPending;
  }
  spdlog::info("delivery {} ({} {}): available", id, r->model, r->version);
  if (store_.Put(*r)) {
    SendStatus(*r, GatewayState::kAvailable);
    AnnounceIfApproved(*r);
  }
}

void DeliveryService::RunDownload(std::string id, std::uint32_t attempt,
                                  std::shared_ptr<std::atomic<bool>> cancel) {
  // Counted while this thread runs, whichever way it returns.
  struct Running {
    std::atomic<std::uint64_t>& n;
    explicit Running(std::atomic<std::uint64_t>& count) : n(count) { n.fetch_add(1); }
    ~Running() { n.fetch_sub(1); }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;
  } running(downloads_running_);
  DeliveryRecord r;
  delivery::DeliveryGrant grant;
  trust::Release release;
  {
    std::lock_guard lock(mu_);
    auto got = store_.Get(id);
    if (!got || got->attempt != attempt) {
      return;
    }
    r = *got;
  }
  auto fail = [&](FailureCode code, std::string message) {
    if (!cancel->load()) {
      Finish(id, attempt, DeliveryFailure{.code = code, .message = std::move(message)});
    }
  };
  auto parsed_grant = delivery::DeliveryGrant::FromJson(r.grant);
  auto parsed_offer = delivery::DeliveryOffer::FromJson(r.offer);
  if (!parsed_grant || !parsed_offer) {
    return fail(FailureCode::kIo, "the gateway's record of this delivery is damaged");
  }
  grant = *parsed_grant;
  auto parsed_release = trust::Release::FromJson(parsed_offer->release.body());
  if (!parsed_release) {
    return fail(FailureCode::kVerification, parsed_release.error().message());
  }
  release = *parsed_release;

  std::string repository = RepositoryOf(grant.blobs.front().url);
  if (repository.empty()) {
    repository = "models/" + r.model;
  }
  std::map<Digest, const delivery::GrantedBlob*> granted;
  for (const auto& b : grant.blobs) {
    granted[b.digest] = &b;
  }
  auto url_expired = [&] { return clock_.Now() >= grant.url_expires; };

  // A manifest by digest: from the grant when it lists it, else with the gateway's credential.
  auto fetch_manifest = [&](const Digest& digest,
                            std::uint64_t size) -> Result<std::string> {
    HttpReply reply;
    if (auto it = granted.find(digest); it != granted.end()) {
      AIRLOCK_ASSIGN_OR_RETURN(reply, hub_.Request("GET", it->second->url, "", "", false,
                                                   size + 1));
    } else {
      AIRLOCK_ASSIGN_OR_RETURN(
          reply, hub_.Request("GET", "/v2/" + repository + "/manifests/" + digest.ToString(), "",
                              "", true, size + 1, kManifestAccept));
    }
    if (reply.status != 200) {
      return Fail(ErrorCode::kUnavailable, "the hub answered " + std::to_string(reply.status) +
                                               " for " + digest.ToString());
    }
    if (reply.body.size() != size || Sha256Of(reply.body) != digest) {
      return Fail(ErrorCode::kVerification,
                  "the manifest " + digest.ToString() + " from the hub does not match its digest");
    }
    return reply.body;
  };
  auto classify = [&](const Error& e) {
    FailureCode code = e.code() == ErrorCode::kVerification ? FailureCode::kVerification
                                                             : FailureCode::kNetwork;
    return fail(code, e.message());
  };

  // 1. The index the release signs, then the variants the gateway wants.
  auto index = fetch_manifest(release.index_digest, release.index_size);
  if (!index) {
    return classify(index.error());
  }
  PackageSpec spec{.ref = {repository, r.version},
                   .index = release.index_digest,
                   .manifests = {*index},
                   .release = ""};
  if (auto doc = parsed_offer->release.Serialize()) {
    spec.release = *doc;
  }
  json index_json = json::parse(*index, nullptr, false);
  if (!index_json.is_object() || !index_json.contains("manifests") ||
      !index_json["manifests"].is_array()) {
    return fail(FailureCode::kVerification, "the signed index is not an OCI image index");
  }
  for (const json& entry : index_json["manifests"]) {
    std::string platform = PlatformOf(entry);
    bool wanted = std::any_of(r.platforms.begin(), r.platforms.end(),
                              [&](const std::string& w) { return PlatformMatches(w, platform); });
    if (!wanted) {
      continue;
    }
    auto digest = Digest::Parse(entry.value("digest", ""));
    if (!digest || !entry.contains("size") || !entry["size"].is_number_unsigned()) {
      return fail(FailureCode::kVerification, "the signed index has a malformed entry");
    }
    auto manifest = fetch_manifest(*digest, entry["size"].get<std::uint64_t>());
    if (!manifest) {
      return classify(manifest.error());
    }
    spec.manifests.push_back(*manifest);
  }
  if (cancel->load()) {
    return;
  }
  // The release's referrer manifest, so that devices find the release beside the package.
  // Optional: a hub without it still delivers.
  if (auto refs = hub_.Request("GET",
                               "/v2/" + repository + "/referrers/" +
                                   release.index_digest.ToString() +
                                   "?artifactType=application/vnd.airlock.release.v1%2Bjson",
                               "", "", true, 1 << 20);
      refs && refs->status == 200) {
    json list = json::parse(refs->body, nullptr, false);
    if (list.is_object() && list.contains("manifests") && list["manifests"].is_array()) {
      for (const json& m : list["manifests"]) {
        auto digest = Digest::Parse(m.value("digest", ""));
        if (m.value("artifactType", "") != kReleaseArtifactType || !digest ||
            !m.contains("size") || !m["size"].is_number_unsigned()) {
          continue;
        }
        if (auto manifest = fetch_manifest(*digest, m["size"].get<std::uint64_t>())) {
          spec.manifests.push_back(*manifest);
        }
        break;
      }
    }
  }

  // 2. Declare and pin before the first byte, so eviction cannot take it meanwhile.
  if (Status declared = cache_.DeclarePackage(spec); !declared) {
    return fail(declared.error().code() == ErrorCode::kIo ? FailureCode::kIo
                                                          : FailureCode::kVerification,
                declared.error().message());
  }
  if (Status pinned = cache_.Pin(id, spec.ref); !pinned) {
    return fail(FailureCode::kIo, pinned.error().message());
  }
  {
    std::lock_guard lock(mu_);
    if (auto cur = store_.Get(id); cur && cur->attempt == attempt) {
      cur->repository = repository;
      (void)store_.Put(*cur);
    }
  }
  auto missing = cache_.MissingBlobs(spec.ref);
  if (!missing) {
    return fail(FailureCode::kIo, missing.error().message());
  }
  std::uint64_t total = 0, missing_bytes = 0;
  if (auto packages = cache_.ListPackages()) {
    for (const CachedPackage& p : *packages) {
      if (p.ref == spec.ref) {
        total = p.bytes;
      }
    }
  }
  for (const auto& [d, size] : *missing) {
    missing_bytes += size;
  }
  // Bytes of committed blobs; a blob in progress adds its offset.
  std::uint64_t done = total - std::min(total, missing_bytes);
  auto last_report = std::chrono::steady_clock::now();
  Progress(id, attempt, done, total);

  // 3. Each missing blob, resumed with Range.
  for (const auto& [digest, size] : *missing) {
    const delivery::GrantedBlob* g = granted.contains(digest) ? granted[digest] : nullptr;
    if (g != nullptr && g->size != size) {
      return fail(FailureCode::kSizeMismatch, "the grant gives " + digest.ToString() + " " +
                                                  std::to_string(g->size) +
                                                  " bytes; the package needs " +
                                                  std::to_string(size));
    }
    std::string path = g != nullptr ? g->url : "/v2/" + repository + "/blobs/" + digest.ToString();
    bool credential = g == nullptr;
    std::optional<DownloadFailure> failure;
    bool committed = false;
    for (int tries = 0; tries <= options_.range_retries && !committed && !failure; ++tries) {
      auto download = cache_.BeginBlob(digest, size);
      if (!download) {
        if (download.error().code() == ErrorCode::kAlreadyExists) {
          committed = true;
          break;
        }
        failure = DownloadFailure{download.error().code() == ErrorCode::kUnavailable
                                      ? FailureCode::kInsufficientSpace
                                      : FailureCode::kIo,
                                  download.error().message()};
        break;
      }
      BlobDownload d = *download;
      auto offset = d.offset();
      if (!offset) {
        failure = DownloadFailure{FailureCode::kIo, offset.error().message()};
        break;
      }
      std::uint64_t off = *offset;
      if (off > 0 && off < size) {
        spdlog::info("delivery {}: resuming {} at byte {} of {}", id, digest.ToString(), off, size);
      }
      if (off < size) {
        long status = 0;
        std::optional<Error> append_error;
        std::string error_body;
        FetchSink sink;
        sink.on_status = [&](long s) {
          status = s;
          if (s == 200 && off > 0) {
            // The hub ignored the Range: start over from the first byte.
            spdlog::warn("delivery {}: the hub answered the whole of {} to a request from byte "
                         "{}; starting it over",
                         id, digest.ToString(), off);
            if (Status aborted = d.Abort(); !aborted) {
              append_error = aborted.error();
              return false;
            }
            auto again = cache_.BeginBlob(digest, size);
            if (!again) {
              append_error = again.error();
              return false;
            }
            d = *again;
            off = 0;
          }
          return true;
        };
        // Each piece libcurl hands over is written and hashed at once, while it is still in the
        // CPU's cache, through a writer that keeps the download open (bench/README.md, section
        // 5). A killed gateway fetches again only what the kernel had not yet handed over.
        std::optional<DownloadWriter> writer;
        sink.on_bytes = [&](std::string_view bytes) {
          if (status != 200 && status != 206) {
            error_body.append(bytes.substr(0, 4096 - std::min<std::size_t>(4096, error_body.size())));
            return true;
          }
          if (!writer) {
            auto opened = d.Writer(off);
            if (!opened) {
              append_error = opened.error();
              return false;
            }
            writer.emplace(std::move(*opened));
          }
          if (Status written = writer->Write(bytes); !written) {
            append_error = written.error();
            return false;
          }
          off = writer->offset();
          auto now = std::chrono::steady_clock::now();
          if (now - last_report >= options_.progress_interval) {
            last_report = now;
            Progress(id, attempt, done + off, total);
          }
          return true;
        };
        auto fetched = hub_.Fetch(path, off, credential, sink, cancel.get());
        writer.reset();  // Commit and Abort need the download closed
        if (cancel->load()) {
          return;
        }
        if (append_error) {
          if (append_error->code() == ErrorCode::kCorrupt) {
            failure = DownloadFailure{FailureCode::kSizeMismatch,
                                      "the hub sent more than the " + std::to_string(size) +
                                          " bytes of " + digest.ToString() + "; discarded"};
          } else {
            failure = DownloadFailure{FailureCode::kIo, append_error->message()};
          }
          break;
        }
        if (fetched && (status == 401 || status == 403)) {
          bool expired = url_expired() || error_body.find("expired") != std::string::npos;
          failure = DownloadFailure{expired ? FailureCode::kUrlExpired : FailureCode::kNetwork,
                                    "the hub refused " + digest.ToString() + " (" +
                                        std::to_string(status) + ")" +
                                        (expired ? ": the URL expired" : "")};
          break;
        }
        if (fetched && status == 416) {
          (void)d.Abort();
          continue;
        }
        if (fetched && status != 200 && status != 206) {
          if (tries == options_.range_retries) {
            failure = DownloadFailure{FailureCode::kNetwork,
                                      "the hub answered " + std::to_string(status) + " for " +
                                          digest.ToString()};
          }
          continue;
        }
        if (off < size) {
          // The connection broke or ended early: resume from where the bytes end.
          if (tries == options_.range_retries) {
            failure = DownloadFailure{
                FailureCode::kNetwork,
                "the transfer of " + digest.ToString() + " kept breaking at " +
                    std::to_string(off) + " of " + std::to_string(size) + " bytes" +
                    (fetched ? "" : ": " + fetched.error().message())};
          }
          continue;
        }
      }
      Status commit = d.Commit();
      if (!commit) {
        if (commit.error().code() == ErrorCode::kCorrupt) {
          failure = DownloadFailure{FailureCode::kDigestMismatch,
                                    "blob " + digest.ToString() + " had other bytes; discarded"};
        } else if (commit.error().code() == ErrorCode::kUnavailable) {
          failure = DownloadFailure{FailureCode::kInsufficientSpace, commit.error().message()};
        } else {
          failure = DownloadFailure{FailureCode::kIo, commit.error().message()};
        }
        break;
      }
      committed = true;
    }
    if (failure) {
      return fail(failure->code, failure->message);
    }
    if (!committed) {
      return fail(FailureCode::kNetwork, "could not fetch " + digest.ToString());
    }
    done += size;
    last_report = std::chrono::steady_clock::now();
    Progress(id, attempt, done, total);
  }

  // 4. Serve it.
  if (Status complete = cache_.CompletePackage(spec.ref); !complete) {
    return fail(FailureCode::kIo, complete.error().message());
  }
  Finish(id, attempt, std::nullopt);
}

// ---- cancel ----

void DeliveryService::HandleCancel(const delivery::DeliveryCancel& cancel) {
  DeliveryRecord r;
  {
    std::lock_guard lock(mu_);
    auto existing = store_.Get(cancel.delivery_id);
    if (!existing || existing->phase == DeliveryPhase::kCancelled) {
      return;
    }
    r = *existing;
    r.phase = DeliveryPhase::kCancelled;
    r.message = cancel.reason;
    r.updated_at = clock_.Now();
    if (Status put = store_.Put(r); !put) {
      spdlog::error("delivery {}: {}", r.id, put.error().ToString());
      return;
    }
  }
  StopJob(r.id);
  if (cancelled_) {
    cancelled_(r);
  }
  auto unpinned = cache_.Unpin(r.id);
  if (!unpinned) {
    spdlog::error("delivery {}: {}", r.id, unpinned.error().ToString());
  }
  // The partial downloads of its package go, unless another delivery still pins the package.
  if (!r.repository.empty()) {
    PackageRef ref{r.repository, r.version};
    bool pinned_elsewhere = false;
    if (auto packages = cache_.ListPackages()) {
      for (const CachedPackage& p : *packages) {
        if (p.ref == ref && !p.pinned_by.empty()) {
          pinned_elsewhere = true;
        }
      }
    }
    if (!pinned_elsewhere) {
      if (auto missing = cache_.MissingBlobs(ref)) {
        for (const auto& [digest, size] : *missing) {
          if (auto d = cache_.BeginBlob(digest, size)) {
            if (Status aborted = d->Abort(); !aborted) {
              spdlog::warn("delivery {}: {}", r.id, aborted.error().ToString());
            }
          }
        }
      }
    }
  }
  spdlog::info("delivery {}: cancelled ({})", r.id, cancel.reason);
}

}  // namespace airlock::gateway
