#include "trust/directive.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "core/names.hpp"
#include "core/text.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;

constexpr std::string_view kDirectiveType = "directive";

constexpr std::chrono::seconds kMaxHealthWindow = std::chrono::hours(24 * 30);
constexpr std::int64_t kMaxP99Ms = 3'600'000;
// max_error_rate is kept to a millionth: its decimal string has at most this many digits after
// the point.
constexpr int kRateDigits = 6;
constexpr std::int64_t kRateScale = 1'000'000;

Error Bad(const std::string& field, std::string_view why) {
  return Error(ErrorCode::kCorrupt, "malformed directive: \"" + field + "\" " + std::string(why));
}

// Reads the fields of one JSON object of the directive, each refusal naming the field by its path
// from the body ("models[1].channel.version").
class Fields {
 public:
  Fields(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  std::string Path(std::string_view key) const { return prefix_ + std::string(key); }

  const json* Find(std::string_view key) const {
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  Result<std::string> String(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr || !v->is_string()) {
      return Fail(Bad(Path(key), "must be a string"));
    }
    return v->get<std::string>();
  }

  Result<std::string> Id(std::string_view key, bool (*valid)(std::string_view),
                         std::string_view form) const {
    AIRLOCK_ASSIGN_OR_RETURN(std::string s, String(key));
    if (!valid(s)) {
      return Fail(
          Bad(Path(key), "must be " + std::string(form) + ", not \"" + s.substr(0, 80) + "\""));
    }
    return s;
  }

  // An integer in [min, max].
  Result<std::uint64_t> Unsigned(
      std::string_view key, std::uint64_t min,
      std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
    const json* v = Find(key);
    bool ok = v != nullptr && v->is_number_integer() &&
              (v->is_number_unsigned() || v->get<std::int64_t>() >= 0);
    if (!ok) {
      return Fail(Bad(Path(key), "must be a non-negative integer"));
    }
    auto n = v->get<std::uint64_t>();
    if (n < min) {
      return Fail(Bad(Path(key), "must be at least " + std::to_string(min)));
    }
    if (n > max) {
      return Fail(Bad(Path(key), "must be at most " + std::to_string(max)));
    }
    return n;
  }

  Result<TimePoint> Time(std::string_view key) const {
    AIRLOCK_ASSIGN_OR_RETURN(std::string s, String(key));
    auto t = ParseRfc3339(s);
    if (!t) {
      return Fail(Bad(Path(key), "must be an RFC 3339 time: " + t.error().message()));
    }
    return *t;
  }

  Result<const json*> Object(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr || !v->is_object()) {
      return Fail(Bad(Path(key), "must be an object"));
    }
    return v;
  }

 private:
  const json& j_;
  std::string prefix_;
};

// "0.05" → 50000 (millionths); nullopt unless the text is a decimal in [0, 1] with at most
// kRateDigits digits after the point.
std::optional<std::int64_t> ParseRate(std::string_view text) {
  if (text.empty() || (text[0] != '0' && text[0] != '1')) {
    return std::nullopt;
  }
  std::int64_t micros = (text[0] - '0') * kRateScale;
  if (text.size() == 1) {
    return micros;
  }
  std::string_view frac = text.substr(1);
  if (frac[0] != '.' || frac.size() < 2 || frac.size() > 1 + kRateDigits) {
    return std::nullopt;
  }
  std::int64_t scale = kRateScale;
  for (char c : frac.substr(1)) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    scale /= 10;
    micros += (c - '0') * scale;
  }
  if (micros > kRateScale) {
    return std::nullopt;
  }
  return micros;
}

// The shortest decimal string ParseRate reads back as rate rounded to a millionth. Values
// ParseRate refuses (negative, above 1, not a number) are written so that it refuses them too.
std::string FormatRate(double rate) {
  if (!(rate >= 0.0 && rate <= 1.0)) {
    return std::to_string(rate);
  }
  auto micros = static_cast<std::int64_t>(std::llround(rate * static_cast<double>(kRateScale)));
  std::string out = std::to_string(micros / kRateScale);
  std::int64_t frac = micros % kRateScale;
  if (frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, static_cast<std::size_t>(kRateDigits) - digits.size(), '0');
    while (digits.back() == '0') {
      digits.pop_back();
    }
    out += "." + digits;
  }
  return out;
}

json HealthToJson(const HealthLimits& h) {
  // A negative window or latency has no wire form; what is written instead is refused on reading.
  json p99 = h.max_p99_ms >= 0 && h.max_p99_ms == std::floor(h.max_p99_ms) &&
                     h.max_p99_ms <= static_cast<double>(kMaxP99Ms)
                 ? json(static_cast<std::int64_t>(h.max_p99_ms))
                 : json(std::to_string(h.max_p99_ms));
  return {{"window", FormatDuration(std::max(h.window, std::chrono::seconds(0)))},
          {"max_error_rate", FormatRate(h.max_error_rate)},
          {"max_p99_ms", std::move(p99)}};
}

Result<HealthLimits> HealthFromJson(const json& j, const std::string& prefix) {
  Fields f(j, prefix);
  HealthLimits h;
  AIRLOCK_ASSIGN_OR_RETURN(std::string window_text, f.String("window"));
  auto window = ParseDuration(window_text);
  if (!window) {
    return Fail(
        Bad(f.Path("window"), "must be a duration such as \"5m\": " + window.error().message()));
  }
  if (window->count() % 1000 != 0) {
    return Fail(
        Bad(f.Path("window"), "must be whole seconds, not \"" + window_text.substr(0, 40) + "\""));
  }
  if (*window < std::chrono::seconds(1) || *window > kMaxHealthWindow) {
    return Fail(Bad(f.Path("window"), "must be from 1s to " + FormatDuration(kMaxHealthWindow) +
                                          ", not \"" + window_text.substr(0, 40) + "\""));
  }
  h.window = std::chrono::duration_cast<std::chrono::seconds>(*window);
  AIRLOCK_ASSIGN_OR_RETURN(std::string rate_text, f.String("max_error_rate"));
  auto micros = ParseRate(rate_text);
  if (!micros) {
    return Fail(Bad(f.Path("max_error_rate"),
                    "must be a decimal string from \"0\" to \"1\" with at most " +
                        std::to_string(kRateDigits) + " digits after the point (\"0.05\"), not \"" +
                        rate_text.substr(0, 40) + "\""));
  }
  h.max_error_rate = static_cast<double>(*micros) / static_cast<double>(kRateScale);
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t p99,
                           f.Unsigned("max_p99_ms", 1, static_cast<std::uint64_t>(kMaxP99Ms)));
  h.max_p99_ms = static_cast<double>(p99);
  return h;
}

json ModelToJson(const DirectiveModel& m) {
  json j = {{"model", m.model},
            {"mode", DirectiveModeName(m.mode)},
            {"release", m.release.ToString()},
            {"channel", {{"name", m.channel}, {"version", m.channel_version}}}};
  if (m.health) {
    j["health"] = HealthToJson(*m.health);
  }
  return j;
}

json CaptureToJson(const CapturePolicy& c) {
  return {{"rate", FormatRate(c.rate)},
          {"max_bytes", c.max_bytes},
          {"inputs", c.inputs},
          {"outputs", c.outputs},
          {"upload", c.upload}};
}

Result<CapturePolicy> CaptureFromJson(const json& j) {
  if (!j.is_object()) {
    return Fail(Bad("capture", "must be an object"));
  }
  Fields f(j, "capture.");
  CapturePolicy c;
  AIRLOCK_ASSIGN_OR_RETURN(std::string rate_text, f.String("rate"));
  auto micros = ParseRate(rate_text);
  if (!micros) {
    return Fail(Bad(f.Path("rate"), "must be a decimal string from \"0\" to \"1\" (\"0.01\"), not \"" +
                                        rate_text.substr(0, 40) + "\""));
  }
  c.rate = static_cast<double>(*micros) / static_cast<double>(kRateScale);
  AIRLOCK_ASSIGN_OR_RETURN(c.max_bytes, f.Unsigned("max_bytes", 1ULL << 20, 1ULL << 40));
  for (auto [key, field] : {std::pair{"inputs", &CapturePolicy::inputs},
                            std::pair{"outputs", &CapturePolicy::outputs},
                            std::pair{"upload", &CapturePolicy::upload}}) {
    const json* v = f.Find(key);
    if (v == nullptr || !v->is_boolean()) {
      return Fail(Bad(f.Path(key), "must be true or false"));
    }
    c.*field = v->get<bool>();
  }
  return c;
}

Result<DirectiveModel> ModelFromJson(const json& j, const std::string& prefix) {
  if (!j.is_object()) {
    return Fail(Bad(prefix.substr(0, prefix.size() - 1), "must be an object"));
  }
  Fields f(j, prefix);
  DirectiveModel m;
  AIRLOCK_ASSIGN_OR_RETURN(m.model, f.Id("model", ValidModelName,
                                         "a model name (lowercase letters and digits separated "
                                         "by . _ or -, at most 128 characters)"));
  AIRLOCK_ASSIGN_OR_RETURN(std::string mode_text, f.String("mode"));
  auto mode = ParseDirectiveMode(mode_text);
  if (!mode) {
    return Fail(Bad(f.Path("mode"),
                    "must be \"active\" or \"shadow\", not \"" + mode_text.substr(0, 40) + "\""));
  }
  m.mode = *mode;
  AIRLOCK_ASSIGN_OR_RETURN(std::string release_text, f.String("release"));
  auto release = Digest::Parse(release_text);
  if (!release) {
    return Fail(
        Bad(f.Path("release"), "must be a release id, \"sha256:\" and 64 lowercase hex digits"));
  }
  m.release = *release;
  AIRLOCK_ASSIGN_OR_RETURN(const json* channel, f.Object("channel"));
  Fields cf(*channel, f.Path("channel") + ".");
  AIRLOCK_ASSIGN_OR_RETURN(
      m.channel, cf.Id("name", ValidChannelName, "a channel name (1-63 of a-z, 0-9 and '-')"));
  AIRLOCK_ASSIGN_OR_RETURN(m.channel_version, cf.Unsigned("version", 1));
  if (f.Find("health") != nullptr) {
    if (m.mode != DirectiveMode::kActive) {
      return Fail(Bad(f.Path("health"),
                      "is only for active entries (a shadow's answers are compared, never "
                      "served)"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(const json* health, f.Object("health"));
    AIRLOCK_ASSIGN_OR_RETURN(m.health, HealthFromJson(*health, f.Path("health") + "."));
  }
  return m;
}

std::string ShortKeyId(const std::string& id) { return id.substr(0, 12) + "…"; }

// "model defect-detector, channel production: " — the head of CheckDirectiveModel's refusals.
std::string EntryWhat(const DirectiveModel& entry) {
  return "model " + entry.model + ", channel " + entry.channel + ": ";
}

Error Refuse(const DirectiveModel& entry, std::string what) {
  return Error(ErrorCode::kVerification, EntryWhat(entry) + what);
}

// The error of a check on one entry's documents, its message prefixed with the entry.
Error AboutEntry(const DirectiveModel& entry, const Error& error) {
  return Error(error.code(), EntryWhat(entry) + error.message());
}

}  // namespace

const char* DirectiveModeName(DirectiveMode mode) {
  switch (mode) {
    case DirectiveMode::kActive:
      return "active";
    case DirectiveMode::kShadow:
      return "shadow";
  }
  return "unknown";
}

std::optional<DirectiveMode> ParseDirectiveMode(std::string_view name) {
  for (DirectiveMode mode : {DirectiveMode::kActive, DirectiveMode::kShadow}) {
    if (name == DirectiveModeName(mode)) {
      return mode;
    }
  }
  return std::nullopt;
}

json Directive::ToJson() const {
  json entries = json::array();
  for (const DirectiveModel& m : models) {
    entries.push_back(ModelToJson(m));
  }
  json j = {{"_type", kDirectiveType},
          {"spec_version", kSpecVersion},
          {"device", device},
          {"version", version},
          {"issued", FormatRfc3339(issued)},
          {"expires", FormatRfc3339(expires)},
          {"models", std::move(entries)}};
  if (capture) {
    j["capture"] = CaptureToJson(*capture);
  }
  return j;
}

Result<Directive> Directive::FromJson(const json& body) {
  if (!body.is_object()) {
    return Fail(ErrorCode::kCorrupt, "malformed directive: want a JSON object");
  }
  auto type = body.find("_type");
  if (type == body.end() || !type->is_string() || *type != kDirectiveType) {
    return Fail(ErrorCode::kVerification, "document is not a directive");
  }
  auto spec = body.find("spec_version");
  if (spec == body.end() || !spec->is_number_integer() || *spec != kSpecVersion) {
    return Fail(ErrorCode::kUnsupported,
                "directive has an unsupported spec_version (this Airlock understands " +
                    std::to_string(kSpecVersion) + ")");
  }
  Fields f(body, "");
  Directive d;
  AIRLOCK_ASSIGN_OR_RETURN(d.device,
                           f.Id("device", ValidDeviceId, "\"dev-\" and 16 lowercase hex digits"));
  AIRLOCK_ASSIGN_OR_RETURN(d.version, f.Unsigned("version", 1));
  AIRLOCK_ASSIGN_OR_RETURN(d.issued, f.Time("issued"));
  AIRLOCK_ASSIGN_OR_RETURN(d.expires, f.Time("expires"));
  if (d.expires <= d.issued) {
    return Fail(Bad("expires", "must be after \"issued\" (" + FormatRfc3339(d.issued) + "), not " +
                                   FormatRfc3339(d.expires)));
  }
  const json* models = f.Find("models");
  if (models == nullptr || !models->is_array()) {
    return Fail(Bad("models", "must be an array"));
  }
  if (models->size() > kMaxDirectiveModels) {
    return Fail(Bad("models", "must hold at most " + std::to_string(kMaxDirectiveModels) +
                                  " entries, not " + std::to_string(models->size())));
  }
  // Per model: which modes it has, to refuse a second entry of a mode and a lone shadow.
  std::map<std::string, std::pair<bool, bool>, std::less<>> modes;  // {active, shadow}
  for (std::size_t i = 0; i < models->size(); ++i) {
    std::string prefix = "models[" + std::to_string(i) + "].";
    AIRLOCK_ASSIGN_OR_RETURN(DirectiveModel m, ModelFromJson((*models)[i], prefix));
    auto& [active, shadow] = modes[m.model];
    bool& seen = m.mode == DirectiveMode::kActive ? active : shadow;
    if (seen) {
      return Fail(Bad(prefix + "mode", "is a second " + std::string(DirectiveModeName(m.mode)) +
                                           " entry for " + m.model +
                                           " (a model has at most one active and one shadow)"));
    }
    seen = true;
    d.models.push_back(std::move(m));
  }
  for (const auto& [model, has] : modes) {
    if (has.second && !has.first) {
      return Fail(Bad("models", "has a shadow entry for " + model +
                                    " but no active one (a shadow runs beside an active release)"));
    }
  }
  if (const json* capture = f.Find("capture")) {
    AIRLOCK_ASSIGN_OR_RETURN(d.capture, CaptureFromJson(*capture));
  }
  return d;
}

Result<SignedDocument> SignDirective(const Directive& directive, const PrivateKey& key) {
  json body = directive.ToJson();
  auto back = Directive::FromJson(body);
  if (!back) {
    return Fail(ErrorCode::kInvalidArgument,
                "refusing to sign a directive its agents would refuse: " + back.error().message());
  }
  if (!(*back == directive)) {
    return Fail(ErrorCode::kInvalidArgument,
                "refusing to sign directive version " + std::to_string(directive.version) +
                    " for " + directive.device +
                    ": it does not survive its wire form (times are whole seconds, max_error_rate "
                    "is kept to a millionth, max_p99_ms to whole milliseconds)");
  }
  SignedDocument doc = SignedDocument::Wrap(std::move(body));
  AIRLOCK_RETURN_IF_ERROR(doc.Sign(key));
  return doc;
}

Result<Directive> VerifyDirective(const SignedDocument& doc, const PublicKey& pinned_key,
                                  std::string_view device_id, std::uint64_t trusted_version,
                                  TimePoint now) {
  if (doc.type() != kDirectiveType) {
    return Fail(ErrorCode::kVerification, "the document on the directive topic is a \"" +
                                              doc.type().substr(0, 40) +
                                              "\" document, not a directive");
  }
  // The signature first: nothing in an unauthenticated body is looked at.
  auto bytes = doc.SignedBytes();
  if (!bytes) {
    return Fail(ErrorCode::kVerification,
                "directive cannot have been signed: " + bytes.error().message());
  }
  // A valid signature by the pinned key is enough; signatures by other keys are ignored.
  bool pinned_signed = false;  // some signature claims the pinned key
  std::vector<std::string> others;
  for (const Signature& s : doc.signatures()) {
    if (s.keyid != pinned_key.id()) {
      others.push_back(ShortKeyId(s.keyid));
    } else if (pinned_key.Verify(*bytes, s.sig)) {
      pinned_signed = true;
      break;
    }
  }
  if (!pinned_signed) {
    bool claimed = std::any_of(doc.signatures().begin(), doc.signatures().end(),
                               [&](const Signature& s) { return s.keyid == pinned_key.id(); });
    if (claimed) {
      return Fail(ErrorCode::kVerification,
                  "directive's signature by the gateway's directive key " +
                      ShortKeyId(pinned_key.id()) +
                      " does not verify: the directive was changed after it was signed");
    }
    if (others.empty()) {
      return Fail(ErrorCode::kVerification, "directive is not signed");
    }
    return Fail(ErrorCode::kVerification,
                "directive is signed by key " + Join(others) +
                    ", not by this device's gateway (its directive key, pinned at enrollment, is " +
                    ShortKeyId(pinned_key.id()) + ")");
  }
  AIRLOCK_ASSIGN_OR_RETURN(Directive d, Directive::FromJson(doc.body()));
  if (d.device != device_id) {
    return Fail(ErrorCode::kVerification, "directive is for device " + d.device +
                                              ", not this device (" + std::string(device_id) + ")");
  }
  if (d.version < trusted_version) {
    return Fail(ErrorCode::kVerification,
                "rollback: directive version " + std::to_string(d.version) +
                    " is older than the trusted " + std::to_string(trusted_version));
  }
  if (d.expires <= now) {
    return Fail(ErrorCode::kVerification, "directive version " + std::to_string(d.version) +
                                              " expired at " + FormatRfc3339(d.expires) +
                                              " (the gateway has not renewed it)");
  }
  return d;
}

Result<CheckedRelease> CheckDirectiveModel(const DirectiveModel& entry,
                                           const SignedDocument& channel_doc,
                                           const SignedDocument& release_doc, const Root& root,
                                           TimePoint now, std::uint64_t trusted_channel_version,
                                           std::string_view platform) {
  // Which channel it is, before its signatures: trusted_channel_version is this channel's, and
  // judging another channel's version against it would give a misleading refusal.
  auto claimed = Channel::FromJson(channel_doc.body());
  if (!claimed) {
    return Fail(AboutEntry(entry, claimed.error()));
  }
  if (claimed->model != entry.model || claimed->name != entry.channel) {
    return Fail(Refuse(entry, "the gateway served the document of channel " + claimed->name +
                                  " of " + claimed->model + " instead"));
  }
  auto channel = VerifyChannel(channel_doc, root, now, trusted_channel_version,
                               /*allow_equal=*/true);
  if (!channel) {
    return Fail(AboutEntry(entry, channel.error()));
  }
  const Channel& c = *channel;
  if (c.version < entry.channel_version) {
    return Fail(Refuse(entry, "the gateway served channel version " + std::to_string(c.version) +
                                  ", older than the version " +
                                  std::to_string(entry.channel_version) +
                                  " the directive names (its registry is behind)"));
  }
  auto listed = std::find_if(c.releases.begin(), c.releases.end(),
                             [&](const ChannelEntry& e) { return e.release == entry.release; });
  if (listed == c.releases.end()) {
    return Fail(Refuse(entry, "release " + entry.release.ToString() +
                                  " is not listed in channel version " + std::to_string(c.version) +
                                  " (withdrawn, or never approved: mix-and-match)"));
  }
  auto id = ReleaseId(release_doc);
  if (!id) {
    return Fail(AboutEntry(entry, id.error()));
  }
  if (*id != entry.release) {
    return Fail(Refuse(entry, "the gateway served release " + id->ToString() +
                                  " instead of the directive's " + entry.release.ToString()));
  }
  auto release = VerifyRelease(release_doc, root, now, /*trusted_counter=*/0);
  if (!release) {
    return Fail(AboutEntry(entry, release.error()));
  }
  const Release& r = *release;
  if (r.model != entry.model) {
    return Fail(Refuse(entry, "release " + entry.release.ToString() + " is of model " + r.model));
  }
  if (listed->version != r.version || listed->release_counter != r.release_counter) {
    return Fail(Refuse(entry, "the channel lists " + entry.release.ToString() + " as version " +
                                  listed->version + " (counter " +
                                  std::to_string(listed->release_counter) +
                                  "), but the release is version " + r.version + " (counter " +
                                  std::to_string(r.release_counter) + ")"));
  }
  if (std::find(r.platforms.begin(), r.platforms.end(), platform) == r.platforms.end()) {
    return Fail(Refuse(entry, "release " + r.version +
                                  " has no variant for this device's platform " +
                                  std::string(platform) + " (it has " + Join(r.platforms) + ")"));
  }
  return CheckedRelease{c, r};
}

}  // namespace airlock::trust
