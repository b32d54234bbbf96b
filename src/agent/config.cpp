#include "agent/config.hpp"

#include <cstdio>
#include <set>

#include "core/fs.hpp"
#include "core/time.hpp"
#include "core/yaml.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;

// Reads one object's keys, refusing the ones it does not know. Errors name the key's path.
class Fields {
 public:
  Fields(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {}

  Status CheckObject() const {
    if (!obj_.is_object()) {
      return Fail(ErrorCode::kInvalidArgument, Where("") + "must be a mapping");
    }
    return {};
  }

  // Refuses keys not in known.
  Status CheckKnown(std::initializer_list<const char*> known) const {
    std::set<std::string> names(known.begin(), known.end());
    for (const auto& [key, value] : obj_.items()) {
      if (names.count(key) == 0) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + "unknown key");
      }
    }
    return {};
  }

  const json* Get(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  Status String(const char* key, std::string& out) const {
    if (const json* v = Get(key)) {
      if (!v->is_string()) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + "must be a string");
      }
      out = v->get<std::string>();
    }
    return {};
  }

  Status Path(const char* key, std::filesystem::path& out) const {
    std::string s = out.string();
    AIRLOCK_RETURN_IF_ERROR(String(key, s));
    out = s;
    return {};
  }

  Status Bool(const char* key, bool& out) const {
    if (const json* v = Get(key)) {
      if (!v->is_boolean()) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + "must be true or false");
      }
      out = v->get<bool>();
    }
    return {};
  }

  template <typename T>
  Status Int(const char* key, T& out, std::int64_t min, std::int64_t max) const {
    if (const json* v = Get(key)) {
      if (!v->is_number_integer() || v->get<std::int64_t>() < min ||
          v->get<std::int64_t>() > max) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + "must be an integer from " +
                                                     std::to_string(min) + " to " +
                                                     std::to_string(max));
      }
      out = static_cast<T>(v->get<std::int64_t>());
    }
    return {};
  }

  Status Number(const char* key, double& out, double min, double max) const {
    if (const json* v = Get(key)) {
      if (!v->is_number() || !(v->get<double>() >= min && v->get<double>() <= max)) {
        char range[64];
        std::snprintf(range, sizeof range, "must be a number from %g to %g", min, max);
        return Fail(ErrorCode::kInvalidArgument, Where(key) + range);
      }
      out = v->get<double>();
    }
    return {};
  }

  template <typename Duration>
  Status Time(const char* key, Duration& out) const {
    if (const json* v = Get(key)) {
      auto d = v->is_string() ? ParseDuration(v->get<std::string>())
                              : Fail(ErrorCode::kInvalidArgument, "want a string like 30s or 2ms");
      if (!d) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + d.error().message());
      }
      out = std::chrono::duration_cast<Duration>(*d);
    }
    return {};
  }

  Status Size(const char* key, std::uint64_t& out) const {
    if (const json* v = Get(key)) {
      auto n = ParseByteSize(*v);
      if (!n) {
        return Fail(ErrorCode::kInvalidArgument, Where(key) + n.error().message());
      }
      out = *n;
    }
    return {};
  }

  std::string Where(const std::string& key) const {
    std::string p = path_.empty() ? key : key.empty() ? path_ : path_ + "." + key;
    return p.empty() ? "" : p + ": ";
  }
  std::string Child(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const json& obj_;
  std::string path_;
};

Status ParseVersions(const json& v, const std::string& path, VersionPolicy& out) {
  if (v.is_string() && v.get<std::string>() == "all") {
    out = VersionPolicy{VersionPolicy::Kind::kAll, 0, {}};
    return {};
  }
  Fields f(v, path);
  if (!v.is_object()) {
    return Fail(ErrorCode::kInvalidArgument,
                path + ": want {latest: N}, {specific: [V, ...]} or all");
  }
  AIRLOCK_RETURN_IF_ERROR(f.CheckKnown({"latest", "specific"}));
  if (f.Get("latest") != nullptr && f.Get("specific") != nullptr) {
    return Fail(ErrorCode::kInvalidArgument, path + ": give latest or specific, not both");
  }
  if (f.Get("latest") != nullptr) {
    out.kind = VersionPolicy::Kind::kLatest;
    return f.Int("latest", out.latest, 1, 1000);
  }
  if (const json* s = f.Get("specific")) {
    out.kind = VersionPolicy::Kind::kSpecific;
    out.versions.clear();
    if (!s->is_array() || s->empty()) {
      return Fail(ErrorCode::kInvalidArgument, path + ".specific: want a list of versions");
    }
    for (const auto& e : *s) {
      if (!e.is_string()) {
        return Fail(ErrorCode::kInvalidArgument,
                    path + ".specific: versions are strings (quote 1.0 as \"1.0\")");
      }
      out.versions.push_back(e.get<std::string>());
    }
  }
  return {};
}

Status ParseModel(const json& doc, const std::string& path, ModelConfig& m) {
  Fields f(doc, path);
  AIRLOCK_RETURN_IF_ERROR(f.CheckObject());
  AIRLOCK_RETURN_IF_ERROR(f.CheckKnown({"versions", "intra_op_threads", "allow_spinning",
                                        "cpu_arena", "shared_pool", "instances", "max_queue",
                                        "timeout", "warmup", "dynamic_batching", "sources",
                                        "sinks"}));
  if (const json* v = f.Get("versions")) {
    AIRLOCK_RETURN_IF_ERROR(ParseVersions(*v, f.Child("versions"), m.versions));
  }
  AIRLOCK_RETURN_IF_ERROR(f.Int("intra_op_threads", m.session.intra_op_threads, 0, 1024));
  AIRLOCK_RETURN_IF_ERROR(f.Bool("allow_spinning", m.session.allow_spinning));
  AIRLOCK_RETURN_IF_ERROR(f.Bool("cpu_arena", m.session.cpu_arena));
  AIRLOCK_RETURN_IF_ERROR(f.Bool("shared_pool", m.session.shared_pool));
  AIRLOCK_RETURN_IF_ERROR(f.Int("instances", m.instances, 1, 64));
  AIRLOCK_RETURN_IF_ERROR(f.Int("max_queue", m.max_queue, 0, 1000000));
  AIRLOCK_RETURN_IF_ERROR(f.Time("timeout", m.timeout));
  if (m.timeout.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, f.Where("timeout") + "must be more than 0");
  }
  AIRLOCK_RETURN_IF_ERROR(f.Bool("warmup", m.warmup));
  if (const json* b = f.Get("dynamic_batching")) {
    if (b->is_boolean() && !b->get<bool>()) {
      m.batching.reset();
    } else {
      Fields fb(*b, f.Child("dynamic_batching"));
      AIRLOCK_RETURN_IF_ERROR(fb.CheckObject());
      AIRLOCK_RETURN_IF_ERROR(fb.CheckKnown({"max_batch_size", "max_queue_delay"}));
      DynamicBatching batching = m.batching.value_or(DynamicBatching{});
      AIRLOCK_RETURN_IF_ERROR(fb.Int("max_batch_size", batching.max_batch_size, 1, 65536));
      AIRLOCK_RETURN_IF_ERROR(fb.Time("max_queue_delay", batching.max_queue_delay));
      m.batching = batching;
    }
  }
  if (const json* s = f.Get("sources")) {
    m.io["sources"] = *s;
  }
  if (const json* s = f.Get("sinks")) {
    m.io["sinks"] = *s;
  }
  return {};
}

}  // namespace

const ModelConfig& AgentConfig::For(const std::string& model) const {
  auto it = models.find(model);
  return it == models.end() ? defaults : it->second;
}

Result<std::uint64_t> ParseByteSize(const json& value) {
  if (value.is_number_unsigned()) {
    return value.get<std::uint64_t>();
  }
  if (!value.is_string()) {
    return Fail(ErrorCode::kInvalidArgument, "want a size like 64MiB");
  }
  std::string s = value.get<std::string>();
  std::size_t i = 0;
  std::uint64_t n = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    n = n * 10 + static_cast<std::uint64_t>(s[i] - '0');
    if (n > (1ULL << 40)) {
      return Fail(ErrorCode::kInvalidArgument, "size too large: " + s);
    }
  }
  std::string unit = s.substr(i);
  std::uint64_t mult = unit.empty() || unit == "B" ? 1
                       : unit == "KiB"             ? 1ULL << 10
                       : unit == "MiB"             ? 1ULL << 20
                       : unit == "GiB"             ? 1ULL << 30
                                                   : 0;
  if (i == 0 || mult == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "bad size \"" + s + "\" (want bytes or a number with KiB, MiB or GiB)");
  }
  return n * mult;
}

Result<AgentConfig> ParseAgentConfig(const json& doc, std::string_view origin) {
  AgentConfig c;
  auto parse = [&]() -> Status {
    if (doc.is_null()) {
      return {};  // an empty file: every default
    }
    Fields f(doc, "");
    AIRLOCK_RETURN_IF_ERROR(f.CheckObject());
    AIRLOCK_RETURN_IF_ERROR(f.CheckKnown(
        {"store", "http", "runtime", "model_control", "load", "defaults", "models", "mqtt",
         "telemetry"}));
    AIRLOCK_RETURN_IF_ERROR(f.Path("store", c.store));
    if (const json* h = f.Get("http")) {
      Fields fh(*h, "http");
      AIRLOCK_RETURN_IF_ERROR(fh.CheckObject());
      AIRLOCK_RETURN_IF_ERROR(fh.CheckKnown(
          {"address", "port", "threads", "max_request_size", "api_key_file", "tls",
           "allow_plain"}));
      AIRLOCK_RETURN_IF_ERROR(fh.Bool("allow_plain", c.http.allow_plain));
      AIRLOCK_RETURN_IF_ERROR(fh.String("address", c.http.address));
      AIRLOCK_RETURN_IF_ERROR(fh.Int("port", c.http.port, 0, 65535));
      AIRLOCK_RETURN_IF_ERROR(fh.Int("threads", c.http.threads, 1, 1024));
      AIRLOCK_RETURN_IF_ERROR(fh.Size("max_request_size", c.http.max_request_size));
      AIRLOCK_RETURN_IF_ERROR(fh.Path("api_key_file", c.http.api_key_file));
      if (const json* t = fh.Get("tls")) {
        Fields ft(*t, "http.tls");
        AIRLOCK_RETURN_IF_ERROR(ft.CheckObject());
        AIRLOCK_RETURN_IF_ERROR(ft.CheckKnown({"cert", "key"}));
        AIRLOCK_RETURN_IF_ERROR(ft.Path("cert", c.http.tls_cert));
        AIRLOCK_RETURN_IF_ERROR(ft.Path("key", c.http.tls_key));
        if (c.http.tls_cert.empty() != c.http.tls_key.empty()) {
          return Fail(ErrorCode::kInvalidArgument, "http.tls: give both cert and key");
        }
      }
    }
    if (const json* r = f.Get("runtime")) {
      Fields fr(*r, "runtime");
      AIRLOCK_RETURN_IF_ERROR(fr.CheckObject());
      AIRLOCK_RETURN_IF_ERROR(fr.CheckKnown({"shared_pool_threads", "shared_pool_spinning"}));
      AIRLOCK_RETURN_IF_ERROR(fr.Int("shared_pool_threads", c.runtime.shared_pool_threads, 0, 1024));
      AIRLOCK_RETURN_IF_ERROR(fr.Bool("shared_pool_spinning", c.runtime.shared_pool_spinning));
    }
    std::string control = "all";
    AIRLOCK_RETURN_IF_ERROR(f.String("model_control", control));
    if (control != "all" && control != "explicit") {
      return Fail(ErrorCode::kInvalidArgument, "model_control: want all or explicit");
    }
    c.model_control =
        control == "all" ? AgentConfig::ModelControl::kAll : AgentConfig::ModelControl::kExplicit;
    if (const json* l = f.Get("load")) {
      if (!l->is_array()) {
        return Fail(ErrorCode::kInvalidArgument, "load: want a list of model names");
      }
      for (const auto& e : *l) {
        if (!e.is_string()) {
          return Fail(ErrorCode::kInvalidArgument, "load: want a list of model names");
        }
        c.load.push_back(e.get<std::string>());
      }
    }
    json defaults = json::object();
    if (const json* d = f.Get("defaults")) {
      defaults = *d;
      AIRLOCK_RETURN_IF_ERROR(ParseModel(defaults, "defaults", c.defaults));
    }
    if (const json* m = f.Get("models")) {
      if (!m->is_object()) {
        return Fail(ErrorCode::kInvalidArgument, "models: want a mapping of model name to settings");
      }
      for (const auto& [name, settings] : m->items()) {
        json merged = defaults;
        merged.merge_patch(settings.is_null() ? json::object() : settings);
        ModelConfig mc;
        AIRLOCK_RETURN_IF_ERROR(ParseModel(merged, "models." + name, mc));
        c.models.emplace(name, std::move(mc));
      }
    }
    if (const json* t = f.Get("telemetry")) {
      Fields ft(*t, "telemetry");
      AIRLOCK_RETURN_IF_ERROR(ft.CheckObject());
      AIRLOCK_RETURN_IF_ERROR(
          ft.CheckKnown({"enabled", "interval", "sample_per_request", "monitor_budget",
                                     "outbox_max", "capture_max_per_second"}));
      AIRLOCK_RETURN_IF_ERROR(ft.Bool("enabled", c.telemetry.enabled));
      AIRLOCK_RETURN_IF_ERROR(ft.Time("interval", c.telemetry.interval));
      if (c.telemetry.interval < std::chrono::seconds(1)) {
        return Fail(ErrorCode::kInvalidArgument, "telemetry.interval: must be at least 1s");
      }
      AIRLOCK_RETURN_IF_ERROR(
          ft.Int("sample_per_request", c.telemetry.sample_per_request, 1, 1 << 20));
      AIRLOCK_RETURN_IF_ERROR(ft.Number("monitor_budget", c.telemetry.monitor_budget, 0.0001, 1));
      AIRLOCK_RETURN_IF_ERROR(ft.Number("capture_max_per_second",
                                        c.telemetry.capture_max_per_second, 0.001, 100000));
      AIRLOCK_RETURN_IF_ERROR(ft.Size("outbox_max", c.telemetry.outbox_max));
      if (c.telemetry.outbox_max < (1ULL << 20)) {
        return Fail(ErrorCode::kInvalidArgument, "telemetry.outbox_max: must be at least 1MiB");
      }
    }
    if (const json* mq = f.Get("mqtt")) {
      Fields fm(*mq, "mqtt");
      AIRLOCK_RETURN_IF_ERROR(fm.CheckObject());
      AIRLOCK_RETURN_IF_ERROR(fm.CheckKnown({"broker", "client_id", "username", "password_file"}));
      AIRLOCK_RETURN_IF_ERROR(fm.String("broker", c.mqtt.broker));
      AIRLOCK_RETURN_IF_ERROR(fm.String("client_id", c.mqtt.client_id));
      AIRLOCK_RETURN_IF_ERROR(fm.String("username", c.mqtt.username));
      std::filesystem::path password_file;
      AIRLOCK_RETURN_IF_ERROR(fm.Path("password_file", password_file));
      if (!password_file.empty()) {
        auto text = ReadFile(password_file, 4096);
        if (!text) {
          return Fail(std::move(text.error()).WithContext("mqtt.password_file"));
        }
        c.mqtt.password = *text;
        while (!c.mqtt.password.empty() &&
               (c.mqtt.password.back() == '\n' || c.mqtt.password.back() == '\r')) {
          c.mqtt.password.pop_back();
        }
      }
    }
    return {};
  };
  auto status = parse();
  if (!status) {
    return Fail(std::move(status.error()).WithContext(std::string(origin)));
  }
  return c;
}

Result<AgentConfig> LoadAgentConfig(const std::filesystem::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(json doc, LoadYamlFile(path));
  return ParseAgentConfig(doc, path.string());
}

}  // namespace airlock::agent
