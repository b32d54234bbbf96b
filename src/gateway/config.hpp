#pragma once
// GatewayConfig: what `airlock-gateway serve` reads from its YAML file (docs/gateway.md,
// "Configuration"). kDefaultGatewayConfig is the embedded default, every key with its default
// value and a comment; a file only needs the keys it changes (at least `name`). Unknown keys,
// wrong types and out-of-range values are refused with the key named. Plain values.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "trust/directive.hpp"

namespace airlock::gateway {

// What a gateway does with an offer that passed every check.
enum class OfferMode {
  kAuto,      // "auto": answer ready at once
  kOperator,  // "operator": hold it until an operator approves (or rejects) it
};

// What happens to a package once it is delivered.
enum class RolloutApproval {
  kRequired,  // "required": it waits for an operator before any device rollout
  kAuto,      // "auto": approved as soon as it is available
};

struct SitePolicy {
  std::vector<std::string> allowed_models;  // empty: every model
  std::uint64_t max_package_bytes = 0;      // 0: no limit
  std::vector<std::string> platforms;       // empty: every platform offered
  OfferMode offers = OfferMode::kAuto;
  RolloutApproval rollout_approval = RolloutApproval::kRequired;
};

struct GatewayConfig {
  std::string name;  // as registered with the hub (delivery::ValidGatewayName)
  std::string hub_url = "http://127.0.0.1:7400";
  std::string register_token;  // one-time registration token (first start only)
  std::filesystem::path hub_ca_file;  // for an https hub: its CA ("" = the system's CAs)
  // For an https hub: the gateway's client certificate (CN = its name) and key, presented on
  // every request to the hub ("" = hub_client_cert() decides).
  std::filesystem::path hub_cert_file;
  std::filesystem::path hub_key_file;
  std::map<std::string, std::string> labels;
  std::filesystem::path root = "/etc/airlock/root.json";
  std::filesystem::path data = "/var/lib/airlock-gateway";
  std::string mqtt_broker = "tcp://127.0.0.1:1883";
  std::string mqtt_prefix = "airlock/v1";
  std::string mqtt_client_id;  // "" → "airlock-gw-<name>"
  // With an mqtts:// broker: its CA, and the gateway's client certificate (CN = its name) for
  // the cloud broker's ACL (airlock-hub broker-config, airlock ca issue).
  std::filesystem::path mqtt_ca_file;
  std::filesystem::path mqtt_cert_file;
  std::filesystem::path mqtt_key_file;
  bool mqtt_allow_plain = false;  // plain MQTT to brokers on other hosts (not recommended)
  std::string http_address = "127.0.0.1";
  int http_port = 7500;
  std::filesystem::path http_tls_cert;  // with http_tls_key: HTTPS (docs/security.md, "HTTPS")
  std::filesystem::path http_tls_key;
  bool http_allow_plain = false;  // plain HTTP on an address other than loopback
  std::uint64_t cache_max_bytes = 10ULL << 30;
  std::uint64_t reserve_bytes = 1ULL << 30;
  // Devices' telemetry kept while the hub is away (docs/monitoring.md); past it the outbox drops
  // captures first, then metrics, then alerts, oldest first, and counts them.
  std::uint64_t telemetry_outbox_max = 256ULL << 20;
  // What the site lets its devices capture, and whether captures leave them (telemetry.capture;
  // docs/monitoring.md "Captures"). None: devices capture nothing.
  std::optional<trust::CapturePolicy> capture;
  SitePolicy policy;
  // The factory broker the gateway and its devices share (DESIGN §5.1); "" means the same broker
  // as mqtt_broker (a small site with one broker). Enrolled devices are told this one.
  std::string devices_mqtt_broker;
  std::string devices_mqtt_prefix;  // "" → mqtt_prefix
  // With an mqtts:// factory broker: the files of airlock-gateway broker-config (the gateway's
  // client certificate and key, and the CA the broker's certificate chains to).
  std::filesystem::path devices_mqtt_tls_dir;
  // Where the revocation list of the device CA goes (the factory broker's crlfile); "" =
  // DATA/devices/crl.pem. And the broker's pid file, to send it SIGHUP when the list changed.
  std::filesystem::path devices_mqtt_crl_file;
  std::filesystem::path devices_mqtt_broker_pid_file;
  std::string log_level = "info";

  std::filesystem::path cache_dir() const { return data / "cache"; }
  // The root rotations accepted after `root` (trust/root_store.hpp).
  std::filesystem::path roots_dir() const { return data / "roots"; }
  const std::string& factory_broker() const {
    return devices_mqtt_broker.empty() ? mqtt_broker : devices_mqtt_broker;
  }
  const std::string& factory_prefix() const {
    return devices_mqtt_prefix.empty() ? mqtt_prefix : devices_mqtt_prefix;
  }
  // The certificate and key the gateway presents to its hub: hub.cert_file and hub.key_file; when
  // unset and the hub is https://, the cloud broker's (mqtt.cert_file, mqtt.key_file), which
  // name the gateway too; else none (docs/decisions.md).
  std::pair<std::filesystem::path, std::filesystem::path> hub_client_cert() const {
    if (!hub_cert_file.empty()) {
      return {hub_cert_file, hub_key_file};
    }
    if (hub_url.starts_with("https://")) {
      return {mqtt_cert_file, mqtt_key_file};
    }
    return {};
  }
  std::string client_id() const {
    return mqtt_client_id.empty() ? "airlock-gw-" + name : mqtt_client_id;
  }
};

// The embedded default configuration (YAML, commented).
extern const char kDefaultGatewayConfig[];

// Parses YAML text over the defaults. kInvalidArgument naming the key on any mistake; `name` is
// required (there is no sensible default).
[[nodiscard]] Result<GatewayConfig> ParseGatewayConfig(std::string_view yaml,
                                                       std::string_view origin);
[[nodiscard]] Result<GatewayConfig> LoadGatewayConfig(const std::filesystem::path& path);

}  // namespace airlock::gateway
