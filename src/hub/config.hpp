#pragma once
// The hub's configuration: a YAML file (docs/hub.md lists every key), or the defaults.
//
// Every key is optional; an unknown key is refused with its path ("http.prot: unknown key"), so a
// typo never silently falls back to a default. Plain values; thread-compatible.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "delivery/state_machine.hpp"
#include "hub/access.hpp"

namespace airlock::hub {

struct HubConfig {
  // Blobs, upload sessions and the metadata database (docs/hub.md, "The data directory").
  std::filesystem::path data;
  // Where the metadata lives: "" for SQLite in DATA/metadata.db (the default), or a PostgreSQL
  // URI, postgres://user:password@host:port/db, so that several hubs can share one database
  // (docs/hub.md, "PostgreSQL").
  std::string db;
  // The root document (`airlock root init`) that releases and channel documents are verified
  // against. Empty: the hub serves OCI but refuses releases and promotions until it has one.
  std::filesystem::path root;
  struct Http {
    std::string address = "127.0.0.1";
    int port = 7400;   // 0: a free port (printed at start)
    int threads = 32;  // connections served at once; a keep-alive connection holds one
    std::filesystem::path tls_cert;  // with tls_key: HTTPS (docs/security.md, "HTTPS")
    std::filesystem::path tls_key;
    bool allow_plain = false;  // plain HTTP on an address other than loopback (not recommended)
    // With HTTPS: the CA (PEM) that the gateways' client certificates chain to. Set, the hub
    // asks every client for a certificate (operators need none), and a certificate from another
    // CA ends the handshake.
    std::filesystem::path client_ca;
    // How gateways authenticate (GatewayAuth); unset: certificate with a client_ca, else token.
    std::optional<GatewayAuth> gateway_auth;
    GatewayAuth effective_gateway_auth() const {
      return gateway_auth.value_or(client_ca.empty() ? GatewayAuth::kToken
                                                     : GatewayAuth::kCertificate);
    }
  } http;
  struct Oci {
    std::uint64_t max_blob_size = 64ULL << 30;  // bytes; bigger uploads are refused (413)
  } oci;
  struct Auth {
    // Tokens are required (docs/hub.md, "Tokens and roles"). false lets every request through;
    // the hub refuses that unless it listens on loopback only.
    bool enabled = true;
    bool anonymous_pull = false;  // requests without credentials may pull
    // The hub's external URL ("https://hub.example.com"), for the token realm and pre-signed
    // URLs; "" takes http://<Host header>.
    std::string public_url;
    int session_ttl = 300;            // seconds a /v2/token session token lives
    int max_presign_ttl = 7 * 86400;  // seconds a pre-signed URL may live at most
  } auth;
  // The broker the hub and its gateways share (DESIGN §5.1). Without a broker the hub runs no
  // delivery orchestrator: deployments stay pending until a hub with one starts.
  struct Mqtt {
    std::string broker;                  // "mqtts://host:port"; "" = no orchestrator
    std::string prefix = "airlock/v1";   // the topics' prefix (delivery::Topics)
    std::string client_id;               // "" = airlock-hub-<hostname>
    std::string username;                // "" = none
    std::string password;                // only sent with a username
    // With an mqtts:// broker: what airlock-hub broker-config wrote (ca.pem, hub.pem, hub.key);
    // "" = the system's CAs and no client certificate.
    std::filesystem::path tls_dir;
    bool allow_plain = false;  // plain MQTT to a broker on another host (not recommended)
  } mqtt;
  // Timeouts, retries and URL lifetimes of deliveries (docs/delivery.md, "Timeouts, retries and
  // backoff"); checked with Policy::Check, and url_ttl against auth.max_presign_ttl.
  delivery::Policy delivery;
};

// The data directory when neither --data nor the configuration names one: /var/lib/airlock-hub
// for root, otherwise $XDG_DATA_HOME/airlock-hub ($HOME/.local/share/airlock-hub when unset), so
// that a developer can run the hub without root and without flags.
std::filesystem::path DefaultDataDirectory();

// "airlock-hub-" and this machine's host name (characters outside [A-Za-z0-9._-] become '-').
std::string DefaultMqttClientId();

// The defaults, with data = DefaultDataDirectory().
HubConfig DefaultHubConfig();

// Whether the http section holds together: a client_ca needs HTTPS; gateway_auth certificate or
// either needs a client_ca, and token does not go with one. kInvalidArgument naming the keys.
[[nodiscard]] Status CheckHttpConfig(const HubConfig& config);

// Reads a YAML configuration over the defaults. kInvalidArgument names the offending key.
[[nodiscard]] Result<HubConfig> LoadHubConfig(const std::filesystem::path& path);
[[nodiscard]] Result<HubConfig> ParseHubConfig(std::string_view yaml, std::string_view origin);

}  // namespace airlock::hub
