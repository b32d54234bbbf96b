#include "gateway/config.hpp"

#include <nlohmann/json.hpp>
#include <set>

#include "core/fs.hpp"
#include "core/yaml.hpp"
#include "delivery/protocol.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;

Error Bad(const std::string& key, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, key + ": " + what);
}

Status CheckKeys(const json& obj, const std::string& path, std::set<std::string> known) {
  if (!obj.is_object()) {
    return Fail(Bad(path.empty() ? "(top)" : path, "must be a mapping"));
  }
  for (const auto& [key, value] : obj.items()) {
    if (!known.contains(key)) {
      return Fail(Bad(path.empty() ? key : path + "." + key, "unknown key"));
    }
  }
  return {};
}

// Each reader leaves out untouched when the key is absent or null.
Status Str(const json& obj, const std::string& path, const char* key, std::string& out,
           bool allow_empty = false) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return {};
  }
  if (!it->is_string() || (!allow_empty && it->get<std::string>().empty())) {
    return Fail(Bad(path + key, allow_empty ? "must be a string" : "must be a non-empty string"));
  }
  out = it->get<std::string>();
  return {};
}

Status Bool(const json& obj, const std::string& path, const char* key, bool& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return {};
  }
  if (!it->is_boolean()) {
    return Fail(Bad(path + key, "must be true or false"));
  }
  out = it->get<bool>();
  return {};
}

Status UInt(const json& obj, const std::string& path, const char* key, std::uint64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return {};
  }
  if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<std::int64_t>() < 0)) {
    return Fail(Bad(path + key, "must be a whole number of bytes (0 or more)"));
  }
  out = it->get<std::uint64_t>();
  return {};
}

Status StrList(const json& obj, const std::string& path, const char* key,
               std::vector<std::string>& out, bool (*valid)(std::string_view)) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return {};
  }
  if (!it->is_array()) {
    return Fail(Bad(path + key, "must be a list"));
  }
  out.clear();
  for (const json& v : *it) {
    if (!v.is_string() || !valid(v.get<std::string>())) {
      return Fail(Bad(path + key, "has an invalid entry " + v.dump()));
    }
    out.push_back(v.get<std::string>());
  }
  return {};
}

const json* Section(const json& top, const char* key) {
  auto it = top.find(key);
  return it == top.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

const char kDefaultGatewayConfig[] = R"(# airlock-gateway serve: the embedded defaults (docs/gateway.md, "Configuration").
# name: plant-7              # required: the gateway's name at the hub (1-48 of A-Za-z0-9._-)
hub:
  url: http://127.0.0.1:7400  # the hub's base URL (grant URLs are relative to it)
  register_token: ""          # one-time registration token; only needed on the first start
  ca_file: ""                 # for an https:// hub: the CA of its certificate ("" = the system's)
  cert_file: ""               # with key_file: the gateway's client certificate for an https://
  key_file: ""                #   hub (CN = its name); "" = mqtt.cert_file and mqtt.key_file
  labels: {}                  # sent with the registration (site, line, ...)
root: /etc/airlock/root.json  # the pinned root: releases must verify against it
data: /var/lib/airlock-gateway  # state (gateway.db, credential) and the cache (data/cache)
mqtt:
  broker: tcp://127.0.0.1:1883  # the broker the hub and its gateways share
  prefix: airlock/v1          # the topics' prefix, as on the hub
  client_id: ""               # default airlock-gw-<name>; persistent session, QoS 1
  ca_file: ""                 # with mqtts://: the CA of the broker ("" = the system's CAs)
  cert_file: ""               # with key_file: the gateway's client certificate (CN = its name)
  key_file: ""
  allow_plain: false          # true: plain MQTT to brokers on other hosts (not recommended)
devices:
  mqtt_broker: ""             # the factory broker of this site's devices; "" = mqtt.broker
  mqtt_prefix: ""             # their topics' prefix; "" = mqtt.prefix
  mqtt_tls_dir: ""            # with an mqtts:// broker: what `broker-config --out` wrote
  mqtt_crl_file: ""           # the revoked devices' certificates, for the broker's crlfile;
                              #   "" = DATA/devices/crl.pem (rewritten at start and on revoke)
  mqtt_broker_pid_file: ""    # the broker's pid file: sent SIGHUP after the list changes, so
                              #   the broker reloads it ("" = reload the broker yourself)
http:
  address: 127.0.0.1          # the device registry (/v2/) and the operator API (/api/v1/)
  port: 7500
  tls_cert: ""                # with tls_key: HTTPS, and devices pull with their certificates
  tls_key: ""                 #   (airlock-gateway tls-cert makes a pair from the device CA)
  allow_plain: false          # true: plain HTTP on an address other than loopback
cache:
  max_bytes: 10737418240      # 10 GiB of blobs at most
  reserve_bytes: 1073741824   # free disk the gateway always leaves (1 GiB)
telemetry:
  outbox_max_bytes: 268435456 # devices' telemetry held while the hub is away (256 MiB)
  # capture:                  # sampled capture on the devices; off unless set
  #   rate: 0.01              #   share of requests kept (one in 100)
  #   max_bytes: 268435456    #   each device's ring on its disk (256 MiB)
  #   inputs: true            #   keep the inputs (the picture as sent, and the tensors)
  #   outputs: true           #   keep the outputs
  #   upload: false           #   true: copies go to the gateway and on to the hub
policy:
  allowed_models: []          # empty: every model
  max_package_bytes: 0        # 0: no limit
  platforms: []               # empty: every platform offered
  offers: auto                # auto: answer ready at once; operator: hold for an operator
  rollout_approval: required  # required: delivered packages wait for an operator; auto
log_level: info
)";

Result<GatewayConfig> ParseGatewayConfig(std::string_view yaml, std::string_view origin) {
  AIRLOCK_ASSIGN_OR_RETURN(json top, ParseYaml(yaml, origin));
  GatewayConfig c;
  if (top.is_null()) {
    top = json::object();
  }
  auto in = [&](Status s) -> Status {
    if (!s) {
      return Fail(std::move(s.error()).WithContext(std::string(origin)));
    }
    return {};
  };
  auto bad = [&](const std::string& key, const std::string& what) {
    return Fail(Bad(key, what).WithContext(std::string(origin)));
  };
  AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(
      top, "", {"name", "hub", "root", "data", "mqtt", "devices", "http", "cache", "telemetry",
                "policy",
                "log_level"})));
  AIRLOCK_RETURN_IF_ERROR(in(Str(top, "", "name", c.name)));
  std::string root = c.root.string(), data = c.data.string();
  AIRLOCK_RETURN_IF_ERROR(in(Str(top, "", "root", root)));
  AIRLOCK_RETURN_IF_ERROR(in(Str(top, "", "data", data)));
  c.root = root;
  c.data = data;
  AIRLOCK_RETURN_IF_ERROR(in(Str(top, "", "log_level", c.log_level)));
  if (const json* hub = Section(top, "hub")) {
    AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(
        *hub, "hub", {"url", "register_token", "labels", "ca_file", "cert_file", "key_file"})));
    std::string hub_ca, hub_cert, hub_key;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*hub, "hub.", "ca_file", hub_ca, true)));
    c.hub_ca_file = hub_ca;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*hub, "hub.", "cert_file", hub_cert, true)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*hub, "hub.", "key_file", hub_key, true)));
    if (hub_cert.empty() != hub_key.empty()) {
      return bad("hub.cert_file", "and hub.key_file: give both or neither");
    }
    c.hub_cert_file = hub_cert;
    c.hub_key_file = hub_key;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*hub, "hub.", "url", c.hub_url)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*hub, "hub.", "register_token", c.register_token, true)));
    if (const json* labels = Section(*hub, "labels")) {
      if (!labels->is_object()) {
        return bad("hub.labels", "must be a mapping of strings");
      }
      for (const auto& [k, v] : labels->items()) {
        if (!v.is_string()) {
          return bad("hub.labels." + k, "must be a string");
        }
        c.labels[k] = v.get<std::string>();
      }
    }
  }
  if (const json* mqtt = Section(top, "mqtt")) {
    AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(
        *mqtt, "mqtt",
        {"broker", "prefix", "client_id", "ca_file", "cert_file", "key_file", "allow_plain"})));
    AIRLOCK_RETURN_IF_ERROR(in(Bool(*mqtt, "mqtt.", "allow_plain", c.mqtt_allow_plain)));
    std::string ca, cert, key;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "ca_file", ca, true)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "cert_file", cert, true)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "key_file", key, true)));
    if (cert.empty() != key.empty()) {
      return bad("mqtt.cert_file", "and mqtt.key_file: give both or neither");
    }
    c.mqtt_ca_file = ca;
    c.mqtt_cert_file = cert;
    c.mqtt_key_file = key;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "broker", c.mqtt_broker)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "prefix", c.mqtt_prefix)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*mqtt, "mqtt.", "client_id", c.mqtt_client_id, true)));
  }
  if (const json* devices = Section(top, "devices")) {
    AIRLOCK_RETURN_IF_ERROR(
        in(CheckKeys(*devices, "devices", {"mqtt_broker", "mqtt_prefix", "mqtt_tls_dir",
                                           "mqtt_crl_file", "mqtt_broker_pid_file"})));
    AIRLOCK_RETURN_IF_ERROR(
        in(Str(*devices, "devices.", "mqtt_broker", c.devices_mqtt_broker, true)));
    AIRLOCK_RETURN_IF_ERROR(
        in(Str(*devices, "devices.", "mqtt_prefix", c.devices_mqtt_prefix, true)));
    std::string tls_dir;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*devices, "devices.", "mqtt_tls_dir", tls_dir, true)));
    c.devices_mqtt_tls_dir = tls_dir;
    std::string crl, pid_file;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*devices, "devices.", "mqtt_crl_file", crl, true)));
    AIRLOCK_RETURN_IF_ERROR(
        in(Str(*devices, "devices.", "mqtt_broker_pid_file", pid_file, true)));
    c.devices_mqtt_crl_file = crl;
    c.devices_mqtt_broker_pid_file = pid_file;
  }
  if (const json* http = Section(top, "http")) {
    AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(
        *http, "http", {"address", "port", "tls_cert", "tls_key", "allow_plain"})));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*http, "http.", "address", c.http_address)));
    std::string cert, key;
    AIRLOCK_RETURN_IF_ERROR(in(Str(*http, "http.", "tls_cert", cert, true)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*http, "http.", "tls_key", key, true)));
    if (cert.empty() != key.empty()) {
      return bad("http.tls_cert", "and http.tls_key: give both (HTTPS) or neither");
    }
    c.http_tls_cert = cert;
    c.http_tls_key = key;
    AIRLOCK_RETURN_IF_ERROR(in(Bool(*http, "http.", "allow_plain", c.http_allow_plain)));
    if (auto it = http->find("port"); it != http->end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int>() < 0 || it->get<int>() > 65535) {
        return bad("http.port", "must be an integer from 0 to 65535");
      }
      c.http_port = it->get<int>();
    }
  }
  if (const json* cache = Section(top, "cache")) {
    AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(*cache, "cache", {"max_bytes", "reserve_bytes"})));
    AIRLOCK_RETURN_IF_ERROR(in(UInt(*cache, "cache.", "max_bytes", c.cache_max_bytes)));
    AIRLOCK_RETURN_IF_ERROR(in(UInt(*cache, "cache.", "reserve_bytes", c.reserve_bytes)));
  }

  if (const json* telemetry = Section(top, "telemetry")) {
    AIRLOCK_RETURN_IF_ERROR(
        in(CheckKeys(*telemetry, "telemetry", {"outbox_max_bytes", "capture"})));
    if (const json* capture = Section(*telemetry, "capture")) {
      AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(*capture, "telemetry.capture",
                                           {"rate", "max_bytes", "inputs", "outputs", "upload"})));
      trust::CapturePolicy policy;
      if (auto it = capture->find("rate"); it != capture->end() && !it->is_null()) {
        if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 1) {
          return bad("telemetry.capture.rate", "must be a number from 0 to 1 (0.01: one in 100)");
        }
        policy.rate = it->get<double>();
      }
      AIRLOCK_RETURN_IF_ERROR(
          in(UInt(*capture, "telemetry.capture.", "max_bytes", policy.max_bytes)));
      if (policy.max_bytes < (1ULL << 20) || policy.max_bytes > (1ULL << 40)) {
        return bad("telemetry.capture.max_bytes", "must be from 1 MiB to 1 TiB");
      }
      for (auto [key, field] : {std::pair{"inputs", &trust::CapturePolicy::inputs},
                                std::pair{"outputs", &trust::CapturePolicy::outputs},
                                std::pair{"upload", &trust::CapturePolicy::upload}}) {
        AIRLOCK_RETURN_IF_ERROR(in(Bool(*capture, "telemetry.capture.", key, policy.*field)));
      }
      if (policy.rate > 0) {
        c.capture = policy;
      }
    }
    AIRLOCK_RETURN_IF_ERROR(
        in(UInt(*telemetry, "telemetry.", "outbox_max_bytes", c.telemetry_outbox_max)));
    if (c.telemetry_outbox_max < (64ULL << 10)) {
      return bad("telemetry.outbox_max_bytes", "must be at least 65536 (64 KiB)");
    }
  }
  if (const json* policy = Section(top, "policy")) {
    AIRLOCK_RETURN_IF_ERROR(in(CheckKeys(*policy, "policy",
                                         {"allowed_models", "max_package_bytes", "platforms",
                                          "offers", "rollout_approval"})));
    AIRLOCK_RETURN_IF_ERROR(in(StrList(*policy, "policy.", "allowed_models",
                                       c.policy.allowed_models, delivery::ValidModelName)));
    AIRLOCK_RETURN_IF_ERROR(
        in(UInt(*policy, "policy.", "max_package_bytes", c.policy.max_package_bytes)));
    AIRLOCK_RETURN_IF_ERROR(in(
        StrList(*policy, "policy.", "platforms", c.policy.platforms, delivery::ValidPlatform)));
    std::string offers = "auto", rollout = "required";
    AIRLOCK_RETURN_IF_ERROR(in(Str(*policy, "policy.", "offers", offers)));
    AIRLOCK_RETURN_IF_ERROR(in(Str(*policy, "policy.", "rollout_approval", rollout)));
    if (offers != "auto" && offers != "operator") {
      return bad("policy.offers", "must be auto or operator");
    }
    if (rollout != "auto" && rollout != "required") {
      return bad("policy.rollout_approval", "must be required or auto");
    }
    c.policy.offers = offers == "auto" ? OfferMode::kAuto : OfferMode::kOperator;
    c.policy.rollout_approval =
        rollout == "auto" ? RolloutApproval::kAuto : RolloutApproval::kRequired;
  }
  if (c.name.empty()) {
    return bad("name", "is required (the gateway's name at the hub)");
  }
  if (!delivery::ValidGatewayName(c.name)) {
    return bad("name", "must be 1-48 of A-Za-z0-9._- (not . or ..)");
  }
  if (!delivery::Topics::Create(c.mqtt_prefix)) {
    return bad("mqtt.prefix", "must be 1-8 levels of A-Za-z0-9._-");
  }
  if (!c.devices_mqtt_prefix.empty() && !delivery::Topics::Create(c.devices_mqtt_prefix)) {
    return bad("devices.mqtt_prefix", "must be 1-8 levels of A-Za-z0-9._-");
  }
  if (c.devices_mqtt_broker.starts_with("mqtts://") && c.devices_mqtt_tls_dir.empty()) {
    return bad("devices.mqtt_tls_dir",
               "is needed with an mqtts:// factory broker: the directory airlock-gateway "
               "broker-config wrote (its gateway.pem, gateway.key and ca.pem)");
  }
  if (!c.hub_url.starts_with("http://") && !c.hub_url.starts_with("https://")) {
    return bad("hub.url", "must start with http:// or https://");
  }
  while (c.hub_url.ends_with("/")) {
    c.hub_url.pop_back();
  }
  if (!c.hub_cert_file.empty() && !c.hub_url.starts_with("https://")) {
    return bad("hub.cert_file",
               "needs an https:// hub.url (a client certificate is presented "
               "in the TLS handshake)");
  }
  return c;
}

Result<GatewayConfig> LoadGatewayConfig(const std::filesystem::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  return ParseGatewayConfig(text, path.string());
}

}  // namespace airlock::gateway
