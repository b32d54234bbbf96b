#include "delivery/device_protocol.hpp"

#include <algorithm>
#include <set>

#include "delivery/wire.hpp"

namespace airlock::delivery {
namespace {

using nlohmann::json;
using wire::Fields;

constexpr std::string_view kDirectiveType = "device.directive";
constexpr std::string_view kStateType = "device.state";

constexpr std::pair<DeviceTopicKind, const char*> kDeviceTopicKinds[] = {
    {DeviceTopicKind::kDirective, "directive"},
    {DeviceTopicKind::kState, "state"},
    {DeviceTopicKind::kOnline, "online"},
    {DeviceTopicKind::kTelemetry, "telemetry"},
    {DeviceTopicKind::kTelemetryAck, "telemetry-ack"},
};

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool ValidCode(std::string_view code) {
  return !code.empty() && code.size() <= 64 && std::all_of(code.begin(), code.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool ValidPhase(std::string_view phase) {
  return !phase.empty() && phase.size() <= 32 &&
         std::all_of(phase.begin(), phase.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; });
}

// "sha256:" and 64 lowercase hex digits, or "" when allow_empty.
bool ValidReleaseId(std::string_view id, bool allow_empty) {
  if (id.empty()) {
    return allow_empty;
  }
  return id.size() == 71 && id.starts_with("sha256:") &&
         std::all_of(id.begin() + 7, id.end(), IsLowerHex);
}

Result<std::vector<trust::SignedDocument>> Documents(const Fields& f, std::string_view key,
                                                     std::string_view type) {
  AIRLOCK_ASSIGN_OR_RETURN(const json* list, f.Array(key, 0, kMaxDirectiveDocuments));
  std::vector<trust::SignedDocument> out;
  for (const json& item : *list) {
    if (!item.is_object()) {
      return Fail(f.Bad(key, "must hold signed documents (objects)"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, wire::Dump(item));
    auto doc = trust::SignedDocument::Parse(text);
    if (!doc) {
      return Fail(f.Bad(key, doc.error().message()));
    }
    if (doc->type() != type) {
      return Fail(f.Bad(key, "holds a \"" + doc->type().substr(0, 32) + "\" document"));
    }
    out.push_back(std::move(*doc));
  }
  return out;
}

json Documents(const std::vector<trust::SignedDocument>& docs) {
  json out = json::array();
  for (const auto& d : docs) {
    out.push_back(wire::DocumentJson(d));
  }
  return out;
}

Result<ReportError> ErrorOf(const json& j, std::string_view what) {
  Fields f(j, what);
  AIRLOCK_RETURN_IF_ERROR(f.CheckObject());
  ReportError e;
  AIRLOCK_ASSIGN_OR_RETURN(e.code, f.Id("code", ValidCode, "1-64 of [a-z0-9-]"));
  AIRLOCK_ASSIGN_OR_RETURN(e.message, f.Text("message"));
  return e;
}

json ErrorJson(const ReportError& e) { return {{"code", e.code}, {"message", e.message}}; }

bool ValidRelease(std::string_view id) { return ValidReleaseId(id, false); }
bool ValidReleaseOrEmpty(std::string_view id) { return ValidReleaseId(id, true); }
bool ValidVersionOrEmpty(std::string_view v) { return v.empty() || ValidVersion(v); }
// Lowercase path components of [a-z0-9._-], none empty, "." or "..".
bool ValidRepository(std::string_view r) {
  if (r.empty() || r.size() > 255) {
    return false;
  }
  for (std::size_t start = 0; start <= r.size();) {
    std::size_t end = std::min(r.find('/', start), r.size());
    std::string_view part = r.substr(start, end - start);
    bool ok = !part.empty() && part != "." && part != ".." &&
              std::all_of(part.begin(), part.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-';
              });
    if (!ok) {
      return false;
    }
    start = end + 1;
  }
  return true;
}

Result<ModelReport> ModelOf(const json& j) {
  Fields f(j, "device state model");
  AIRLOCK_RETURN_IF_ERROR(f.CheckObject());
  ModelReport m;
  AIRLOCK_ASSIGN_OR_RETURN(m.model, f.Id("model", ValidModelName, "a model name"));
  AIRLOCK_ASSIGN_OR_RETURN(m.phase, f.Id("phase", ValidPhase, "1-32 of [a-z-]"));
  AIRLOCK_ASSIGN_OR_RETURN(m.active_version,
                           f.Id("active_version", ValidVersionOrEmpty, "a version or \"\""));
  AIRLOCK_ASSIGN_OR_RETURN(m.active_release,
                           f.Id("active_release", ValidReleaseOrEmpty, "\"sha256:<64 hex>\" or \"\""));
  AIRLOCK_ASSIGN_OR_RETURN(m.target_version,
                           f.Id("target_version", ValidVersionOrEmpty, "a version or \"\""));
  AIRLOCK_ASSIGN_OR_RETURN(m.target_release,
                           f.Id("target_release", ValidReleaseOrEmpty, "\"sha256:<64 hex>\" or \"\""));
  AIRLOCK_ASSIGN_OR_RETURN(const json* installed, f.Array("installed", 0, kMaxInstalledVersions));
  for (const json& v : *installed) {
    if (!v.is_string() || !ValidVersion(v.get<std::string>())) {
      return Fail(f.Bad("installed", "must hold versions"));
    }
    m.installed.push_back(v.get<std::string>());
  }
  if (const json* shadow = f.Find("shadow"); shadow != nullptr && !shadow->is_null()) {
    Fields sf(*shadow, "device state shadow");
    AIRLOCK_RETURN_IF_ERROR(sf.CheckObject());
    ShadowReport s;
    AIRLOCK_ASSIGN_OR_RETURN(s.version, sf.Id("version", ValidVersion, "a version"));
    AIRLOCK_ASSIGN_OR_RETURN(s.release, sf.Id("release", ValidRelease, "\"sha256:<64 hex>\""));
    AIRLOCK_ASSIGN_OR_RETURN(s.compared, sf.Unsigned("compared"));
    AIRLOCK_ASSIGN_OR_RETURN(s.agreed, sf.Unsigned("agreed", s.compared));
    m.shadow = std::move(s);
  }
  if (const json* error = f.Find("error"); error != nullptr && !error->is_null()) {
    AIRLOCK_ASSIGN_OR_RETURN(m.error, ErrorOf(*error, "device state error"));
  }
  return m;
}

json ModelJson(const ModelReport& m) {
  json j = {{"model", m.model},
            {"phase", m.phase},
            {"active_version", m.active_version},
            {"active_release", m.active_release},
            {"target_version", m.target_version},
            {"target_release", m.target_release},
            {"installed", m.installed}};
  if (m.shadow) {
    j["shadow"] = {{"version", m.shadow->version},
                   {"release", m.shadow->release},
                   {"compared", m.shadow->compared},
                   {"agreed", m.shadow->agreed}};
  }
  if (m.error) {
    j["error"] = ErrorJson(*m.error);
  }
  return j;
}

json HeadOf(std::string_view type, const Envelope& e) {
  return {{"type", type}, {"message_id", e.message_id}, {"sent_at", FormatRfc3339(e.sent_at)}};
}

}  // namespace

const char* DeviceTopicKindName(DeviceTopicKind kind) {
  return wire::NameOf(kDeviceTopicKinds, kind);
}

Result<DeviceTopics> DeviceTopics::Create(std::string_view prefix) {
  AIRLOCK_ASSIGN_OR_RETURN(Topics topics, Topics::Create(prefix));
  return DeviceTopics(topics.prefix());
}

Result<std::string> DeviceTopics::Topic(DeviceTopicKind kind, std::string_view device) const {
  if (!ValidDeviceId(device)) {
    return Fail(ErrorCode::kInvalidArgument,
                "not a device id: '" + std::string(device.substr(0, 64)) + "'");
  }
  return prefix_ + "/dev/" + std::string(device) + "/" + DeviceTopicKindName(kind);
}

Result<DeviceTopicAddress> DeviceTopics::Parse(std::string_view topic) const {
  std::string head = prefix_ + "/dev/";
  auto bad = [&](const std::string& why) -> Result<DeviceTopicAddress> {
    return Fail(ErrorCode::kInvalidArgument,
                "not a device topic: '" + std::string(topic.substr(0, 256)) + "': " + why);
  };
  if (!topic.starts_with(head)) {
    return bad("another prefix");
  }
  std::string_view rest = topic.substr(head.size());
  std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return bad("no kind");
  }
  std::string_view device = rest.substr(0, slash);
  std::string_view kind = rest.substr(slash + 1);
  if (!ValidDeviceId(device)) {
    return bad("an invalid device id");
  }
  auto parsed = wire::FindName(kDeviceTopicKinds, kind);
  if (!parsed) {
    return bad("an unknown kind");
  }
  return DeviceTopicAddress{*parsed, std::string(device)};
}

std::vector<std::string> DeviceTopics::GatewaySubscriptions() const {
  return {prefix_ + "/dev/+/state", prefix_ + "/dev/+/online"};
}

std::string DeviceTopics::TelemetrySubscription() const { return prefix_ + "/dev/+/telemetry"; }

json DirectiveMessage::ToJson() const {
  json j = HeadOf(kDirectiveType, envelope);
  j["directive"] = wire::DocumentJson(directive);
  j["channels"] = Documents(channels);
  j["releases"] = Documents(releases);
  if (!roots.empty()) {
    j["roots"] = Documents(roots);
  }
  json list = json::array();
  for (const auto& p : packages) {
    list.push_back({{"release", p.release}, {"repository", p.repository}, {"size", p.size}});
  }
  j["packages"] = list;
  return j;
}

const DirectivePackage* DirectiveMessage::PackageOf(std::string_view release) const {
  for (const auto& p : packages) {
    if (p.release == release) {
      return &p;
    }
  }
  return nullptr;
}

Result<DirectiveMessage> DirectiveMessage::FromJson(const json& j) {
  Fields f(j, "device directive");
  DirectiveMessage m;
  AIRLOCK_ASSIGN_OR_RETURN(m.envelope, f.Head(kDirectiveType));
  const json* directive = f.Find("directive");
  if (directive == nullptr || !directive->is_object()) {
    return Fail(f.Bad("directive", "must be the signed directive (an object)"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, wire::Dump(*directive));
  auto doc = trust::SignedDocument::Parse(text);
  if (!doc) {
    return Fail(f.Bad("directive", doc.error().message()));
  }
  if (doc->type() != "directive") {
    return Fail(f.Bad("directive", "is a \"" + doc->type().substr(0, 32) + "\" document"));
  }
  m.directive = std::move(*doc);
  AIRLOCK_ASSIGN_OR_RETURN(m.channels, Documents(f, "channels", "channel"));
  AIRLOCK_ASSIGN_OR_RETURN(m.releases, Documents(f, "releases", "release"));
  if (f.Find("roots") != nullptr) {  // optional: only after a root rotation
    AIRLOCK_ASSIGN_OR_RETURN(m.roots, Documents(f, "roots", "root"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(const json* packages, f.Array("packages", 0, kMaxDirectiveDocuments));
  for (const json& p : *packages) {
    Fields pf(p, "device directive package");
    AIRLOCK_RETURN_IF_ERROR(pf.CheckObject());
    DirectivePackage package;
    AIRLOCK_ASSIGN_OR_RETURN(package.release,
                             pf.Id("release", ValidRelease, "\"sha256:<64 hex>\""));
    AIRLOCK_ASSIGN_OR_RETURN(package.repository,
                             pf.Id("repository", ValidRepository, "1-255 of [a-z0-9._-] components joined by /"));
    AIRLOCK_ASSIGN_OR_RETURN(package.size, pf.Unsigned("size"));
    if (m.PackageOf(package.release) != nullptr) {
      return Fail(f.Bad("packages", "names release " + package.release + " twice"));
    }
    m.packages.push_back(std::move(package));
  }
  return m;
}

json DeviceState::ToJson() const {
  json j = HeadOf(kStateType, envelope);
  j["device"] = device;
  j["seq"] = seq;
  j["platform"] = platform;
  j["directive_version"] = directive_version;
  j["refused_version"] = refused_version;
  if (refused) {
    j["refused"] = ErrorJson(*refused);
  }
  json models_json = json::array();
  for (const auto& m : models) {
    models_json.push_back(ModelJson(m));
  }
  j["models"] = models_json;
  return j;
}

Result<DeviceState> DeviceState::FromJson(const json& j) {
  Fields f(j, "device state");
  DeviceState s;
  AIRLOCK_ASSIGN_OR_RETURN(s.envelope, f.Head(kStateType));
  AIRLOCK_ASSIGN_OR_RETURN(s.device, f.Id("device", ValidDeviceId, "\"dev-\" and 16 hex digits"));
  AIRLOCK_ASSIGN_OR_RETURN(s.seq, f.Unsigned("seq"));
  AIRLOCK_ASSIGN_OR_RETURN(s.platform, f.Id("platform", ValidPlatform, "os/arch[/variant]"));
  AIRLOCK_ASSIGN_OR_RETURN(s.directive_version, f.Unsigned("directive_version"));
  AIRLOCK_ASSIGN_OR_RETURN(s.refused_version, f.Unsigned("refused_version"));
  if (const json* refused = f.Find("refused"); refused != nullptr && !refused->is_null()) {
    AIRLOCK_ASSIGN_OR_RETURN(s.refused, ErrorOf(*refused, "device state refusal"));
  }
  if (s.refused.has_value() != (s.refused_version != 0)) {
    return Fail(f.Bad("refused", "must be present exactly when refused_version is not 0"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(const json* models, f.Array("models", 0, kMaxDeviceModels));
  std::set<std::string> seen;
  for (const json& item : *models) {
    AIRLOCK_ASSIGN_OR_RETURN(ModelReport m, ModelOf(item));
    if (!seen.insert(m.model).second) {
      return Fail(f.Bad("models", "lists " + m.model + " twice"));
    }
    s.models.push_back(std::move(m));
  }
  return s;
}

Result<bool> ParseOnline(std::string_view payload) {
  if (payload == kOnlinePayload) {
    return true;
  }
  if (payload == kOfflinePayload) {
    return false;
  }
  return Fail(ErrorCode::kCorrupt, "a device's online message must be true or false");
}

}  // namespace airlock::delivery
