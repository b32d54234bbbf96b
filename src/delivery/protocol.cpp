#include "delivery/protocol.hpp"

#include <algorithm>
#include <limits>
#include <set>

#include "core/encoding.hpp"
#include "delivery/wire.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::delivery {
namespace {

using nlohmann::json;
using wire::Dump;
using wire::Fields;
using wire::FindName;
using wire::Head;
using wire::IsDisplayableText;
using wire::NameOf;

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool AllOf(std::string_view s, bool (*pred)(char)) { return std::all_of(s.begin(), s.end(), pred); }

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsPlatformChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// A printable ASCII character other than space: what URLs and media types are made of.
bool IsVisibleAscii(char c) { return c > 0x20 && c < 0x7f; }

bool PrefixedHex(std::string_view id, std::string_view prefix) {
  if (!id.starts_with(prefix)) {
    return false;
  }
  std::string_view hex = id.substr(prefix.size());
  return hex.size() >= 8 && hex.size() <= 64 && AllOf(hex, IsLowerHex);
}

bool ValidRelativeUrl(std::string_view url) {
  if (url.size() < 2 || url.size() > kMaxUrlLength || url[0] != '/' || url[1] == '/' ||
      !AllOf(url, IsVisibleAscii) || url.find('\\') != std::string_view::npos) {
    return false;
  }
  std::string_view path = url.substr(0, url.find('?'));
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) {
      end = path.size();
    }
    std::string_view segment = path.substr(start, end - start);
    if (segment == "." || segment == "..") {
      return false;
    }
    start = end + 1;
  }
  return true;
}

constexpr std::uint64_t kMaxAttempt = 1'000'000;

constexpr std::string_view kOfferType = "delivery.offer";
constexpr std::string_view kReadyType = "delivery.ready";
constexpr std::string_view kRejectType = "delivery.reject";
constexpr std::string_view kGrantType = "delivery.grant";
constexpr std::string_view kStatusType = "delivery.status";
constexpr std::string_view kCancelType = "delivery.cancel";
constexpr std::string_view kFleetType = "gateway.fleet";
constexpr std::string_view kRolloutCommandType = "rollout.command";

constexpr std::pair<RolloutCommandKind, const char*> kRolloutCommands[] = {
    {RolloutCommandKind::kPause, "pause"},
    {RolloutCommandKind::kResume, "resume"},
    {RolloutCommandKind::kCancel, "cancel"},
};

constexpr std::pair<RejectReason, const char*> kRejectReasons[] = {
    {RejectReason::kInsufficientSpace, "insufficient-space"},
    {RejectReason::kTooLarge, "too-large"},
    {RejectReason::kModelNotAllowed, "model-not-allowed"},
    {RejectReason::kUnsupportedPlatform, "unsupported-platform"},
    {RejectReason::kVerification, "verification"},
    {RejectReason::kOperator, "operator"},
    {RejectReason::kExpired, "expired"},
};

constexpr std::pair<FailureCode, const char*> kFailureCodes[] = {
    {FailureCode::kUrlExpired, "url-expired"},
    {FailureCode::kNetwork, "network"},
    {FailureCode::kDigestMismatch, "digest-mismatch"},
    {FailureCode::kSizeMismatch, "size-mismatch"},
    {FailureCode::kIo, "io"},
    {FailureCode::kInsufficientSpace, "insufficient-space"},
    {FailureCode::kVerification, "verification"},
};

constexpr std::pair<GatewayState, const char*> kGatewayStates[] = {
    {GatewayState::kHeld, "held"},
    {GatewayState::kDownloading, "downloading"},
    {GatewayState::kAvailable, "available"},
    {GatewayState::kFailed, "failed"},
};

constexpr std::pair<TopicKind, const char*> kTopicKinds[] = {
    {TopicKind::kOffer, "offer"}, {TopicKind::kReady, "ready"},   {TopicKind::kReject, "reject"},
    {TopicKind::kGrant, "grant"}, {TopicKind::kStatus, "status"}, {TopicKind::kCancel, "cancel"},
    {TopicKind::kFleet, "fleet"}, {TopicKind::kRolloutCommand, "command"},
};

bool PerDelivery(TopicKind kind) {
  return kind != TopicKind::kOffer && kind != TopicKind::kFleet &&
         kind != TopicKind::kRolloutCommand;
}

std::vector<std::string_view> SplitLevels(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  while (true) {
    std::size_t end = topic.find('/', start);
    if (end == std::string_view::npos) {
      levels.push_back(topic.substr(start));
      return levels;
    }
    levels.push_back(topic.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

// ---- identifiers ----

bool ValidGatewayName(std::string_view name) {
  return !name.empty() && name.size() <= 48 && AllOf(name, IsIdChar) && name != "." && name != "..";
}

bool ValidDeliveryId(std::string_view id) { return PrefixedHex(id, "dlv-"); }

bool ValidDeploymentId(std::string_view id) { return PrefixedHex(id, "dep-"); }

bool ValidMessageId(std::string_view id) {
  return !id.empty() && id.size() <= 64 && AllOf(id, IsIdChar);
}

bool ValidVersion(std::string_view version) {
  if (version.empty() || version.size() > 128 || version[0] == '.' || version[0] == '-') {
    return false;
  }
  return AllOf(version, IsIdChar);
}

bool ValidPlatform(std::string_view platform) {
  auto levels = SplitLevels(platform);
  if (levels.size() < 2 || levels.size() > 3) {
    return false;
  }
  return std::all_of(levels.begin(), levels.end(), [](std::string_view part) {
    return !part.empty() && part.size() <= 32 && AllOf(part, IsPlatformChar);
  });
}

// ---- topics ----

const char* TopicKindName(TopicKind kind) { return NameOf(kTopicKinds, kind); }

Result<Topics> Topics::Create(std::string_view prefix) {
  auto levels = SplitLevels(prefix);
  bool ok = !prefix.empty() && levels.size() <= 8 &&
            std::all_of(levels.begin(), levels.end(), [](std::string_view level) {
              return !level.empty() && level.size() <= 64 && AllOf(level, IsIdChar) &&
                     level != "." && level != "..";
            });
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument,
                "MQTT topic prefix \"" + std::string(prefix.substr(0, 128)) +
                    "\" must be 1-8 '/'-separated levels of letters, digits, '.', '_' and '-' "
                    "(no wildcards, no empty levels)");
  }
  return Topics(std::string(prefix));
}

Result<std::string> Topics::Topic(TopicKind kind, std::string_view gateway,
                                  std::string_view delivery_id) const {
  if (!ValidGatewayName(gateway)) {
    return Fail(ErrorCode::kInvalidArgument,
                "gateway name \"" + std::string(gateway.substr(0, 64)) +
                    "\" must be 1-48 of letters, digits, '.', '_' and '-'");
  }
  std::string base = prefix_ + "/gw/" + std::string(gateway);
  if (!PerDelivery(kind)) {
    if (!delivery_id.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("the ") + TopicKindName(kind) + " topic has no delivery id");
    }
    switch (kind) {
      case TopicKind::kOffer:
        return base + "/delivery/offer";
      case TopicKind::kRolloutCommand:
        return base + "/rollout/command";
      default:
        return base + "/fleet";
    }
  }
  if (!ValidDeliveryId(delivery_id)) {
    return Fail(ErrorCode::kInvalidArgument,
                "delivery id \"" + std::string(delivery_id.substr(0, 80)) +
                    "\" must be \"dlv-\" and 8-64 lowercase hex digits");
  }
  return base + "/delivery/" + std::string(delivery_id) + "/" + TopicKindName(kind);
}

Result<TopicAddress> Topics::Parse(std::string_view topic) const {
  auto refuse = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument,
                "topic \"" + std::string(topic.substr(0, 256)) + "\": " + std::string(why));
  };
  if (topic.size() > 512) {
    return refuse("too long");
  }
  if (topic.find_first_of("+#") != std::string_view::npos) {
    return refuse("wildcards are not topic names");
  }
  if (!topic.starts_with(prefix_ + "/")) {
    return refuse("not under the prefix " + prefix_);
  }
  auto levels = SplitLevels(topic.substr(prefix_.size() + 1));
  if (std::any_of(levels.begin(), levels.end(), [](std::string_view l) { return l.empty(); })) {
    return refuse("empty level");
  }
  if (levels.size() < 3 || levels[0] != "gw") {
    return refuse("not a gateway topic (gw/{gateway}/…)");
  }
  TopicAddress out;
  if (!ValidGatewayName(levels[1])) {
    return refuse("invalid gateway name");
  }
  out.gateway = std::string(levels[1]);
  if (levels.size() == 3 && levels[2] == "fleet") {
    out.kind = TopicKind::kFleet;
    return out;
  }
  if (levels.size() == 4 && levels[2] == "rollout" && levels[3] == "command") {
    out.kind = TopicKind::kRolloutCommand;
    return out;
  }
  if (levels[2] != "delivery") {
    return refuse("not a delivery, fleet or rollout command topic");
  }
  if (levels.size() == 4 && levels[3] == "offer") {
    out.kind = TopicKind::kOffer;
    return out;
  }
  if (levels.size() != 5) {
    return refuse("want gw/{gateway}/delivery/offer or gw/{gateway}/delivery/{id}/{kind}");
  }
  if (!ValidDeliveryId(levels[3])) {
    return refuse("invalid delivery id");
  }
  auto kind = FindName(kTopicKinds, levels[4]);
  if (!kind || !PerDelivery(*kind)) {
    return refuse("unknown delivery message \"" + std::string(levels[4].substr(0, 32)) + "\"");
  }
  out.kind = *kind;
  out.delivery_id = std::string(levels[3]);
  return out;
}

std::vector<std::string> Topics::HubSubscriptions() const {
  std::string gw = prefix_ + "/gw/+/";
  return {gw + "delivery/+/ready", gw + "delivery/+/reject", gw + "delivery/+/status",
          gw + "fleet"};
}

Result<std::vector<std::string>> Topics::GatewaySubscriptions(std::string_view gateway) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::string offer, Topic(TopicKind::kOffer, gateway));
  std::string base = prefix_ + "/gw/" + std::string(gateway) + "/delivery/+/";
  return std::vector<std::string>{offer, base + "grant", base + "cancel"};
}

// ---- enums ----

const char* RejectReasonName(RejectReason reason) { return NameOf(kRejectReasons, reason); }
std::optional<RejectReason> ParseRejectReason(std::string_view name) {
  return FindName(kRejectReasons, name);
}
const char* GatewayStateName(GatewayState state) { return NameOf(kGatewayStates, state); }
const char* FailureCodeName(FailureCode code) { return NameOf(kFailureCodes, code); }
std::optional<FailureCode> ParseFailureCode(std::string_view name) {
  return FindName(kFailureCodes, name);
}
bool IsRetryable(FailureCode code) {
  return code != FailureCode::kInsufficientSpace && code != FailureCode::kVerification;
}

// ---- payloads ----

Result<json> ParsePayload(std::string_view bytes) {
  return trust::ParseJson(bytes, kMaxMessageSize, "delivery message");
}

json DeliveryOffer::ToJson() const {
  json j = Head(kOfferType, envelope, delivery_id);
  json sizes = json::array();
  for (const auto& p : platform_sizes) {
    sizes.push_back({{"platform", p.platform}, {"size", p.size}});
  }
  j.update({{"deployment_id", deployment_id},
            {"model", model},
            {"version", version},
            {"release", wire::DocumentJson(release)},
            {"total_size", total_size},
            {"platform_sizes", sizes},
            {"expires", FormatRfc3339(expires)}});
  if (channel) {
    j["channel"] = wire::DocumentJson(*channel);
  }
  if (!rollout.is_null()) {
    j["rollout"] = rollout;
  }
  return j;
}

Result<DeliveryOffer> DeliveryOffer::FromJson(const json& j) {
  Fields f(j, "delivery offer");
  DeliveryOffer o;
  AIRLOCK_ASSIGN_OR_RETURN(o.envelope, f.Head(kOfferType));
  AIRLOCK_ASSIGN_OR_RETURN(o.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(o.deployment_id, f.Id("deployment_id", ValidDeploymentId,
                                                 "\"dep-\" and 8-64 lowercase hex digits"));
  AIRLOCK_ASSIGN_OR_RETURN(o.model, f.Id("model", ValidModelName,
                                         "a model name (lowercase letters and digits separated "
                                         "by . _ or -, at most 128)"));
  AIRLOCK_ASSIGN_OR_RETURN(o.version,
                           f.Id("version", ValidVersion, "an OCI tag (at most 128 characters)"));
  AIRLOCK_ASSIGN_OR_RETURN(o.total_size, f.Unsigned("total_size"));
  AIRLOCK_ASSIGN_OR_RETURN(o.expires, f.Time("expires"));
  AIRLOCK_ASSIGN_OR_RETURN(const json* sizes, f.Array("platform_sizes", 0, kMaxPlatforms));
  std::set<std::string> seen;
  for (const json& p : *sizes) {
    Fields pf(p, "delivery offer platform size");
    AIRLOCK_RETURN_IF_ERROR(pf.CheckObject());
    PlatformSize ps;
    AIRLOCK_ASSIGN_OR_RETURN(ps.platform,
                             pf.Id("platform", ValidPlatform, "\"os/architecture[/variant]\""));
    AIRLOCK_ASSIGN_OR_RETURN(ps.size, pf.Unsigned("size", o.total_size));
    if (!seen.insert(ps.platform).second) {
      return Fail(f.Bad("platform_sizes", "lists " + ps.platform + " twice"));
    }
    o.platform_sizes.push_back(std::move(ps));
  }
  const json* release = f.Find("release");
  if (release == nullptr || !release->is_object()) {
    return Fail(f.Bad("release", "must be the signed release document (an object)"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string release_text, Dump(*release));
  auto doc = trust::SignedDocument::Parse(release_text);
  if (!doc) {
    return Fail(f.Bad("release", doc.error().message()));
  }
  const json& body = doc->body();
  if (doc->type() != "release") {
    return Fail(f.Bad("release", "is a \"" + doc->type().substr(0, 32) + "\" document"));
  }
  if (trust::StringOr(body, "model") != o.model || trust::StringOr(body, "version") != o.version) {
    return Fail(f.Bad("release", "is for " + trust::StringOr(body, "model").substr(0, 128) + " " +
                                     trust::StringOr(body, "version").substr(0, 128) +
                                     ", not the offered " + o.model + " " + o.version));
  }
  o.release = std::move(*doc);
  if (const json* channel = f.Find("channel"); channel != nullptr && !channel->is_null()) {
    if (!channel->is_object()) {
      return Fail(f.Bad("channel", "must be the signed channel document (an object)"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string channel_text, Dump(*channel));
    auto cdoc = trust::SignedDocument::Parse(channel_text);
    if (!cdoc) {
      return Fail(f.Bad("channel", cdoc.error().message()));
    }
    if (cdoc->type() != "channel" || trust::StringOr(cdoc->body(), "model") != o.model) {
      return Fail(f.Bad("channel", "must be a channel document of " + o.model));
    }
    o.channel = std::move(*cdoc);
  }
  if (const json* rollout = f.Find("rollout"); rollout != nullptr && !rollout->is_null()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string rollout_text, Dump(*rollout));
    bool shaped = rollout->is_object() && rollout->contains("selector") &&
                  (*rollout)["selector"].is_object() && rollout->contains("strategy") &&
                  (*rollout)["strategy"].is_object() && rollout_text.size() <= (16 << 10);
    if (shaped) {
      const json& selector = (*rollout)["selector"];
      shaped = std::all_of(selector.begin(), selector.end(),
                           [](const json& v) { return v.is_string(); });
    }
    if (!shaped) {
      return Fail(f.Bad("rollout",
                        "must be {\"selector\": {label: value}, \"strategy\": {...}}, at most 16 KiB"));
    }
    o.rollout = *rollout;
  }
  return o;
}

json DeliveryReady::ToJson() const {
  json j = Head(kReadyType, envelope, delivery_id);
  j.update({{"free_bytes", free_bytes}, {"platforms", platforms}});
  return j;
}

Result<DeliveryReady> DeliveryReady::FromJson(const json& j) {
  Fields f(j, "delivery ready");
  DeliveryReady r;
  AIRLOCK_ASSIGN_OR_RETURN(r.envelope, f.Head(kReadyType));
  AIRLOCK_ASSIGN_OR_RETURN(r.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(r.free_bytes, f.Unsigned("free_bytes"));
  AIRLOCK_ASSIGN_OR_RETURN(const json* platforms, f.Array("platforms", 1, kMaxPlatforms));
  for (const json& p : *platforms) {
    if (!p.is_string() || !ValidPlatform(p.get<std::string>())) {
      return Fail(f.Bad("platforms", "must hold \"os/architecture[/variant]\" strings"));
    }
    if (std::find(r.platforms.begin(), r.platforms.end(), p.get<std::string>()) !=
        r.platforms.end()) {
      return Fail(f.Bad("platforms", "lists " + p.get<std::string>() + " twice"));
    }
    r.platforms.push_back(p.get<std::string>());
  }
  return r;
}

json DeliveryReject::ToJson() const {
  json j = Head(kRejectType, envelope, delivery_id);
  j.update({{"reason", RejectReasonName(reason)}, {"message", message}});
  return j;
}

Result<DeliveryReject> DeliveryReject::FromJson(const json& j) {
  Fields f(j, "delivery reject");
  DeliveryReject r;
  AIRLOCK_ASSIGN_OR_RETURN(r.envelope, f.Head(kRejectType));
  AIRLOCK_ASSIGN_OR_RETURN(r.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(std::string reason, f.String("reason"));
  auto parsed = ParseRejectReason(reason);
  if (!parsed) {
    return Fail(f.Bad("reason",
                      "must be one of insufficient-space, too-large, "
                      "model-not-allowed, unsupported-platform, verification, "
                      "operator, expired"));
  }
  r.reason = *parsed;
  AIRLOCK_ASSIGN_OR_RETURN(r.message, f.Text("message"));
  return r;
}

json DeliveryGrant::ToJson() const {
  json j = Head(kGrantType, envelope, delivery_id);
  json list = json::array();
  for (const auto& b : blobs) {
    list.push_back({{"digest", b.digest.ToString()},
                    {"size", b.size},
                    {"media_type", b.media_type},
                    {"url", b.url}});
  }
  j.update({{"attempt", attempt}, {"url_expires", FormatRfc3339(url_expires)}, {"blobs", list}});
  return j;
}

Result<DeliveryGrant> DeliveryGrant::FromJson(const json& j) {
  Fields f(j, "delivery grant");
  DeliveryGrant g;
  AIRLOCK_ASSIGN_OR_RETURN(g.envelope, f.Head(kGrantType));
  AIRLOCK_ASSIGN_OR_RETURN(g.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t attempt, f.Unsigned("attempt", kMaxAttempt));
  if (attempt == 0) {
    return Fail(f.Bad("attempt", "must be at least 1"));
  }
  g.attempt = static_cast<std::uint32_t>(attempt);
  AIRLOCK_ASSIGN_OR_RETURN(g.url_expires, f.Time("url_expires"));
  AIRLOCK_ASSIGN_OR_RETURN(const json* blobs, f.Array("blobs", 1, kMaxBlobs));
  std::set<Digest> seen;
  for (const json& b : *blobs) {
    Fields bf(b, "delivery grant blob");
    AIRLOCK_RETURN_IF_ERROR(bf.CheckObject());
    GrantedBlob blob;
    AIRLOCK_ASSIGN_OR_RETURN(std::string digest, bf.String("digest"));
    auto parsed = Digest::Parse(digest);
    if (!parsed) {
      return Fail(bf.Bad("digest", "must be \"sha256:\" and 64 lowercase hex digits"));
    }
    blob.digest = *parsed;
    if (!seen.insert(blob.digest).second) {
      return Fail(f.Bad("blobs", "lists " + digest + " twice"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(blob.size, bf.Unsigned("size"));
    AIRLOCK_ASSIGN_OR_RETURN(blob.media_type, bf.String("media_type"));
    if (blob.media_type.empty() || blob.media_type.size() > kMaxMediaTypeLength ||
        !AllOf(blob.media_type, IsVisibleAscii)) {
      return Fail(bf.Bad("media_type", "must be 1-255 printable ASCII characters"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(blob.url, bf.String("url"));
    if (!ValidRelativeUrl(blob.url)) {
      return Fail(bf.Bad("url",
                         "must be a path and query relative to the hub (\"/v2/…\"), at "
                         "most " +
                             std::to_string(kMaxUrlLength) +
                             " printable characters, without \".\" or \"..\" segments"));
    }
    g.blobs.push_back(std::move(blob));
  }
  return g;
}

json DeliveryStatus::ToJson() const {
  json j = Head(kStatusType, envelope, delivery_id);
  j.update({{"state", GatewayStateName(state)},
            {"attempt", attempt},
            {"bytes_done", bytes_done},
            {"bytes_total", bytes_total}});
  if (error) {
    j["error"] = {{"code", FailureCodeName(error->code)}, {"message", error->message}};
  }
  return j;
}

Result<DeliveryStatus> DeliveryStatus::FromJson(const json& j) {
  Fields f(j, "delivery status");
  DeliveryStatus s;
  AIRLOCK_ASSIGN_OR_RETURN(s.envelope, f.Head(kStatusType));
  AIRLOCK_ASSIGN_OR_RETURN(s.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(std::string state, f.String("state"));
  auto parsed = FindName(kGatewayStates, state);
  if (!parsed) {
    return Fail(f.Bad("state", "must be held, downloading, available or failed"));
  }
  s.state = *parsed;
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t attempt, f.Unsigned("attempt", kMaxAttempt));
  if (attempt == 0 && s.state != GatewayState::kAvailable && s.state != GatewayState::kHeld) {
    return Fail(f.Bad("attempt", "must be the grant's attempt (at least 1)"));
  }
  if (attempt != 0 && s.state == GatewayState::kHeld) {
    return Fail(f.Bad("attempt", "must be 0 when the state is held (nothing was granted)"));
  }
  s.attempt = static_cast<std::uint32_t>(attempt);
  AIRLOCK_ASSIGN_OR_RETURN(s.bytes_total, f.Unsigned("bytes_total"));
  AIRLOCK_ASSIGN_OR_RETURN(s.bytes_done, f.Unsigned("bytes_done", s.bytes_total));
  if (s.state == GatewayState::kAvailable && s.bytes_done != s.bytes_total) {
    return Fail(f.Bad("bytes_done", "must equal bytes_total when the state is available"));
  }
  const json* error = f.Find("error");
  if (s.state == GatewayState::kFailed) {
    if (error == nullptr || !error->is_object()) {
      return Fail(f.Bad("error", "must be {\"code\", \"message\"} when the state is failed"));
    }
    Fields ef(*error, "delivery status error");
    AIRLOCK_ASSIGN_OR_RETURN(std::string code, ef.String("code"));
    auto failure = ParseFailureCode(code);
    if (!failure) {
      return Fail(ef.Bad("code",
                         "must be one of url-expired, network, digest-mismatch, "
                         "size-mismatch, io, insufficient-space, verification"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string message, ef.Text("message"));
    s.error = DeliveryFailure{*failure, std::move(message)};
  } else if (error != nullptr) {
    return Fail(f.Bad("error", "is only allowed when the state is failed"));
  }
  return s;
}

json DeliveryCancel::ToJson() const {
  json j = Head(kCancelType, envelope, delivery_id);
  j["reason"] = reason;
  return j;
}

Result<DeliveryCancel> DeliveryCancel::FromJson(const json& j) {
  Fields f(j, "delivery cancel");
  DeliveryCancel c;
  AIRLOCK_ASSIGN_OR_RETURN(c.envelope, f.Head(kCancelType));
  AIRLOCK_ASSIGN_OR_RETURN(c.delivery_id, f.DeliveryId());
  AIRLOCK_ASSIGN_OR_RETURN(c.reason, f.Text("reason"));
  return c;
}

json FleetReport::ToJson() const {
  return {{"type", kFleetType},
          {"message_id", envelope.message_id},
          {"sent_at", FormatRfc3339(envelope.sent_at)},
          {"gateway", gateway},
          {"rollouts", rollouts}};
}

Result<FleetReport> FleetReport::FromJson(const json& j) {
  Fields f(j, "fleet report");
  FleetReport r;
  AIRLOCK_ASSIGN_OR_RETURN(r.envelope, f.Head(kFleetType));
  AIRLOCK_ASSIGN_OR_RETURN(r.gateway, f.Id("gateway", ValidGatewayName, "a gateway name"));
  AIRLOCK_ASSIGN_OR_RETURN(const json* list, f.Array("rollouts", 0, kMaxFleetRollouts));
  for (const json& rollout : *list) {
    Fields rf(rollout, "fleet report rollout");
    AIRLOCK_RETURN_IF_ERROR(rf.CheckObject());
    AIRLOCK_ASSIGN_OR_RETURN(std::string id,
                             rf.Id("deployment", ValidDeploymentId, "a deployment id"));
    bool twice = std::any_of(r.rollouts.begin(), r.rollouts.end(),
                             [&](const json& seen) { return seen["deployment"] == id; });
    if (twice) {
      return Fail(f.Bad("rollouts", "names deployment " + id + " twice"));
    }
    r.rollouts.push_back(rollout);
  }
  return r;
}

const char* RolloutCommandKindName(RolloutCommandKind kind) {
  return NameOf(kRolloutCommands, kind);
}
std::optional<RolloutCommandKind> ParseRolloutCommandKind(std::string_view name) {
  return FindName(kRolloutCommands, name);
}

json RolloutCommand::ToJson() const {
  return {{"type", kRolloutCommandType},
          {"message_id", envelope.message_id},
          {"sent_at", FormatRfc3339(envelope.sent_at)},
          {"gateway", gateway},
          {"deployment_id", deployment_id},
          {"command", RolloutCommandKindName(command)},
          {"reason", reason}};
}

Result<RolloutCommand> RolloutCommand::FromJson(const json& j) {
  Fields f(j, "rollout command");
  RolloutCommand c;
  AIRLOCK_ASSIGN_OR_RETURN(c.envelope, f.Head(kRolloutCommandType));
  AIRLOCK_ASSIGN_OR_RETURN(c.gateway, f.Id("gateway", ValidGatewayName, "a gateway name"));
  AIRLOCK_ASSIGN_OR_RETURN(c.deployment_id, f.Id("deployment_id", ValidDeploymentId,
                                                 "\"dep-\" and 8-64 lowercase hex digits"));
  AIRLOCK_ASSIGN_OR_RETURN(std::string command, f.String("command"));
  auto kind = ParseRolloutCommandKind(command);
  if (!kind) {
    return Fail(f.Bad("command", "must be one of pause, resume, cancel"));
  }
  c.command = *kind;
  AIRLOCK_ASSIGN_OR_RETURN(c.reason, f.Text("reason"));
  return c;
}

namespace {

constexpr std::string_view kBundleType = "airlock.bundle";
constexpr std::uint64_t kMaxBundleIndexSize = 16ULL << 20;  // the package reader's bound for JSON

// An OCI repository name: 1-255 of [a-z0-9._/-], components separated by single slashes.
bool ValidRepository(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/' || name.back() == '/' ||
      name.find("//") != std::string_view::npos) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '/';
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace

json BundleManifest::ToJson() const {
  return {{"type", kBundleType},
          {"bundle_version", kBundleVersion},
          {"deployment_id", deployment_id},
          {"model", model},
          {"version", version},
          {"channel", channel},
          {"channel_version", channel_version},
          {"repository", repository},
          {"index", {{"digest", index_digest.ToString()}, {"size", index_size}}},
          {"exported_at", FormatRfc3339(exported_at)},
          {"exported_from", exported_from}};
}

Result<BundleManifest> BundleManifest::FromJson(const json& j) {
  Fields f(j, "bundle manifest (" + std::string(kBundleManifestFile) + ")");
  AIRLOCK_RETURN_IF_ERROR(f.CheckObject());
  AIRLOCK_ASSIGN_OR_RETURN(std::string type, f.String("type"));
  if (type != kBundleType) {
    return Fail(f.Bad("type", "must be \"" + std::string(kBundleType) + "\""));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t format, f.Unsigned("bundle_version"));
  if (format != kBundleVersion) {
    return Fail(ErrorCode::kUnsupported,
                "the bundle has format version " + std::to_string(format) +
                    "; this airlock reads version " + std::to_string(kBundleVersion) +
                    " (export it again with the same release of airlock as the gateway)");
  }
  BundleManifest m;
  AIRLOCK_ASSIGN_OR_RETURN(m.deployment_id, f.Id("deployment_id", ValidDeploymentId,
                                                 "\"dep-\" and 8-64 lowercase hex digits"));
  AIRLOCK_ASSIGN_OR_RETURN(m.model, f.Id("model", ValidModelName, "a model name"));
  AIRLOCK_ASSIGN_OR_RETURN(m.version,
                           f.Id("version", ValidVersion, "an OCI tag (at most 128 characters)"));
  AIRLOCK_ASSIGN_OR_RETURN(m.channel, f.String("channel"));
  if (!m.channel.empty() && !trust::ValidChannelName(m.channel)) {
    return Fail(f.Bad("channel", "must be a channel name"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(m.channel_version, f.Unsigned("channel_version"));
  AIRLOCK_ASSIGN_OR_RETURN(m.repository, f.Id("repository", ValidRepository,
                                              "an OCI repository name (at most 255 characters)"));
  const json* index = f.Find("index");
  if (index == nullptr) {
    return Fail(f.Bad("index", "must be an object with \"digest\" and \"size\""));
  }
  Fields inf(*index, "bundle manifest index");
  AIRLOCK_RETURN_IF_ERROR(inf.CheckObject());
  AIRLOCK_ASSIGN_OR_RETURN(std::string digest, inf.String("digest"));
  auto parsed = Digest::Parse(digest);
  if (!parsed) {
    return Fail(inf.Bad("digest", "must be \"sha256:\" and 64 lowercase hex digits"));
  }
  m.index_digest = *parsed;
  AIRLOCK_ASSIGN_OR_RETURN(m.index_size, inf.Unsigned("size", kMaxBundleIndexSize));
  AIRLOCK_ASSIGN_OR_RETURN(m.exported_at, f.Time("exported_at"));
  AIRLOCK_ASSIGN_OR_RETURN(m.exported_from, f.Text("exported_from"));
  return m;
}

}  // namespace airlock::delivery
