#include "hub/config.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "core/fs.hpp"
#include "core/yaml.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxConfigSize = 1 << 20;

// Checks that obj (at path, "" for the top) is a mapping with only the known keys.
Status CheckMapping(const json& obj, const std::string& path,
                    std::initializer_list<const char*> known) {
  std::string where = path.empty() ? "" : path + ": ";
  if (!obj.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, where + "must be a mapping");
  }
  std::set<std::string> names(known.begin(), known.end());
  for (const auto& [key, value] : obj.items()) {
    if (names.count(key) == 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  (path.empty() ? key : path + "." + key) + ": unknown key");
    }
  }
  return {};
}

const json* Get(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

Status ReadString(const json& obj, const std::string& path, const char* key, std::string& out) {
  if (const json* v = Get(obj, key)) {
    if (!v->is_string() || v->get<std::string>().empty()) {
      return Fail(ErrorCode::kInvalidArgument, path + key + ": must be a non-empty string");
    }
    out = v->get<std::string>();
  }
  return {};
}

Status ReadBool(const json& obj, const std::string& path, const char* key, bool& out) {
  if (const json* v = Get(obj, key)) {
    if (!v->is_boolean()) {
      return Fail(ErrorCode::kInvalidArgument, path + key + ": must be true or false");
    }
    out = v->get<bool>();
  }
  return {};
}

Status ReadInteger(const json& obj, const std::string& path, const char* key, std::int64_t min,
                   std::int64_t max, std::int64_t& out) {
  if (const json* v = Get(obj, key)) {
    if (!v->is_number_integer() || v->get<std::int64_t>() < min || v->get<std::int64_t>() > max) {
      return Fail(ErrorCode::kInvalidArgument, path + key + ": must be an integer from " +
                                                   std::to_string(min) + " to " +
                                                   std::to_string(max));
    }
    out = v->get<std::int64_t>();
  }
  return {};
}

}  // namespace

std::filesystem::path DefaultDataDirectory() {
  if (::geteuid() == 0) {
    return "/var/lib/airlock-hub";
  }
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    return std::filesystem::path(xdg) / "airlock-hub";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr && home[0] != '\0' ? home : ".") / ".local" /
         "share" / "airlock-hub";
}

std::string DefaultMqttClientId() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "unknown");
  }
  std::string id = std::string("airlock-hub-") + host;
  for (char& c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      c = '-';
    }
  }
  return id.substr(0, 64);
}

HubConfig DefaultHubConfig() {
  HubConfig config;
  config.data = DefaultDataDirectory();
  return config;
}

Result<HubConfig> ParseHubConfig(std::string_view yaml, std::string_view origin) {
  AIRLOCK_ASSIGN_OR_RETURN(json doc, ParseYaml(yaml, origin));
  HubConfig config = DefaultHubConfig();
  if (doc.is_null()) {
    return config;  // an empty file: the defaults
  }
  auto where = [&](Status s) -> Status {
    if (!s) {
      return Fail(std::move(s.error()).WithContext(std::string(origin)));
    }
    return s;
  };
  AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(doc, "", {"data", "db", "root", "http", "oci", "auth", "mqtt", "delivery"})));
  std::string data;
  AIRLOCK_RETURN_IF_ERROR(where(ReadString(doc, "", "data", data)));
  if (!data.empty()) {
    config.data = data;
  }
  AIRLOCK_RETURN_IF_ERROR(where(ReadString(doc, "", "db", config.db)));
  std::string root;
  AIRLOCK_RETURN_IF_ERROR(where(ReadString(doc, "", "root", root)));
  if (!root.empty()) {
    config.root = root;
  }
  if (const json* http = Get(doc, "http")) {
    AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(*http, "http",
                                               {"address", "port", "threads", "tls_cert", "tls_key",
                                                "allow_plain", "client_ca", "gateway_auth"})));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*http, "http.", "address", config.http.address)));
    std::string cert, key;
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*http, "http.", "tls_cert", cert)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*http, "http.", "tls_key", key)));
    if (cert.empty() != key.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "http.tls_cert and http.tls_key: give both (HTTPS) or neither");
    }
    config.http.tls_cert = cert;
    config.http.tls_key = key;
    std::string client_ca, gateway_auth;
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*http, "http.", "client_ca", client_ca)));
    config.http.client_ca = client_ca;
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*http, "http.", "gateway_auth", gateway_auth)));
    if (!gateway_auth.empty()) {
      config.http.gateway_auth = ParseGatewayAuth(gateway_auth);
      if (!config.http.gateway_auth) {
        AIRLOCK_RETURN_IF_ERROR(where(Fail(ErrorCode::kInvalidArgument,
                                           "http.gateway_auth: must be certificate, either or "
                                           "token")));
      }
    }
    AIRLOCK_RETURN_IF_ERROR(where(ReadBool(*http, "http.", "allow_plain", config.http.allow_plain)));
    std::int64_t port = config.http.port, threads = config.http.threads;
    AIRLOCK_RETURN_IF_ERROR(where(ReadInteger(*http, "http.", "port", 0, 65535, port)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadInteger(*http, "http.", "threads", 1, 1024, threads)));
    config.http.port = static_cast<int>(port);
    config.http.threads = static_cast<int>(threads);
  }
  if (const json* oci = Get(doc, "oci")) {
    AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(*oci, "oci", {"max_blob_size"})));
    auto size = static_cast<std::int64_t>(config.oci.max_blob_size);
    AIRLOCK_RETURN_IF_ERROR(where(ReadInteger(*oci, "oci.", "max_blob_size", 1, INT64_MAX, size)));
    config.oci.max_blob_size = static_cast<std::uint64_t>(size);
  }
  if (const json* auth = Get(doc, "auth")) {
    AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(
        *auth, "auth",
        {"enabled", "anonymous_pull", "public_url", "session_ttl", "max_presign_ttl"})));
    AIRLOCK_RETURN_IF_ERROR(where(ReadBool(*auth, "auth.", "enabled", config.auth.enabled)));
    AIRLOCK_RETURN_IF_ERROR(
        where(ReadBool(*auth, "auth.", "anonymous_pull", config.auth.anonymous_pull)));
    AIRLOCK_RETURN_IF_ERROR(
        where(ReadString(*auth, "auth.", "public_url", config.auth.public_url)));
    std::string& url = config.auth.public_url;
    if (!url.empty() && !url.starts_with("http://") && !url.starts_with("https://")) {
      AIRLOCK_RETURN_IF_ERROR(where(Fail(ErrorCode::kInvalidArgument,
                                         "auth.public_url: must start with http:// or https://")));
    }
    while (url.ends_with("/")) {
      url.pop_back();
    }
    std::int64_t session = config.auth.session_ttl, presign = config.auth.max_presign_ttl;
    AIRLOCK_RETURN_IF_ERROR(where(ReadInteger(*auth, "auth.", "session_ttl", 10, 86400, session)));
    AIRLOCK_RETURN_IF_ERROR(
        where(ReadInteger(*auth, "auth.", "max_presign_ttl", 1, 366 * 86400, presign)));
    config.auth.session_ttl = static_cast<int>(session);
    config.auth.max_presign_ttl = static_cast<int>(presign);
  }
  if (const json* mqtt = Get(doc, "mqtt")) {
    AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(
        *mqtt, "mqtt", {"broker", "prefix", "client_id", "username", "password", "tls_dir",
                          "allow_plain"})));
    AIRLOCK_RETURN_IF_ERROR(
        where(ReadBool(*mqtt, "mqtt.", "allow_plain", config.mqtt.allow_plain)));
    std::string tls_dir;
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "tls_dir", tls_dir)));
    config.mqtt.tls_dir = tls_dir;
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "broker", config.mqtt.broker)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "prefix", config.mqtt.prefix)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "client_id", config.mqtt.client_id)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "username", config.mqtt.username)));
    AIRLOCK_RETURN_IF_ERROR(where(ReadString(*mqtt, "mqtt.", "password", config.mqtt.password)));
  }
  if (const json* d = Get(doc, "delivery")) {
    delivery::Policy& p = config.delivery;
    const std::pair<const char*, std::chrono::seconds*> durations[] = {
        {"offer_timeout", &p.offer_timeout},
        {"grant_timeout", &p.grant_timeout},
        {"start_timeout", &p.start_timeout},
        {"progress_timeout", &p.progress_timeout},
        {"url_ttl", &p.url_ttl},
        {"url_refresh_margin", &p.url_refresh_margin},
        {"backoff_initial", &p.backoff_initial},
        {"backoff_max", &p.backoff_max}};
    AIRLOCK_RETURN_IF_ERROR(where(CheckMapping(
        *d, "delivery",
        {"offer_timeout", "grant_timeout", "start_timeout", "progress_timeout", "url_ttl",
         "url_refresh_margin", "backoff_initial", "backoff_max", "jitter_ratio", "max_retries"})));
    for (const auto& [key, out] : durations) {
      std::string text;
      AIRLOCK_RETURN_IF_ERROR(where(ReadString(*d, "delivery.", key, text)));
      if (text.empty()) {
        continue;
      }
      auto parsed = ParseDuration(text);
      if (!parsed || parsed->count() % 1000 != 0) {
        AIRLOCK_RETURN_IF_ERROR(where(Fail(
            ErrorCode::kInvalidArgument,
            std::string("delivery.") + key + ": must be a duration of whole seconds (\"90s\", \"15m\")")));
      }
      *out = std::chrono::duration_cast<std::chrono::seconds>(*parsed);
    }
    if (const json* v = Get(*d, "jitter_ratio")) {
      if (!v->is_number()) {
        AIRLOCK_RETURN_IF_ERROR(where(
            Fail(ErrorCode::kInvalidArgument, "delivery.jitter_ratio: must be a number")));
      }
      p.jitter_ratio = v->get<double>();
    }
    std::int64_t retries = p.max_retries;
    AIRLOCK_RETURN_IF_ERROR(
        where(ReadInteger(*d, "delivery.", "max_retries", 1, 1000000, retries)));
    p.max_retries = static_cast<std::uint32_t>(retries);
  }
  if (Status s = config.delivery.Check(); !s) {
    AIRLOCK_RETURN_IF_ERROR(where(Fail(std::move(s.error()).WithContext("delivery"))));
  }
  AIRLOCK_RETURN_IF_ERROR(where(CheckHttpConfig(config)));
  if (config.delivery.url_ttl.count() > config.auth.max_presign_ttl) {
    AIRLOCK_RETURN_IF_ERROR(where(Fail(ErrorCode::kInvalidArgument,
                                       "delivery.url_ttl: above auth.max_presign_ttl")));
  }
  return config;
}

Status CheckHttpConfig(const HubConfig& config) {
  const HubConfig::Http& http = config.http;
  if (!http.client_ca.empty() && http.tls_cert.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "http.client_ca: client certificates need HTTPS (http.tls_cert and http.tls_key)");
  }
  if (!http.gateway_auth) {
    return {};
  }
  if (*http.gateway_auth != GatewayAuth::kToken && http.client_ca.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("http.gateway_auth: ") + GatewayAuthName(*http.gateway_auth) +
                    " needs http.client_ca, the CA of the gateways' certificates");
  }
  if (*http.gateway_auth == GatewayAuth::kToken && !http.client_ca.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "http.gateway_auth: token would ask for the certificates of http.client_ca and "
                "ignore them; use either (to take credentials and certificates), or leave "
                "http.client_ca out");
  }
  return {};
}

Result<HubConfig> LoadHubConfig(const std::filesystem::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, kMaxConfigSize));
  return ParseHubConfig(text, path.string());
}

}  // namespace airlock::hub
