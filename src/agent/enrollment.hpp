#pragma once
// A device's identity at its gateway (docs/rollout.md, "Enrollment"): `airlock-agent enroll`
// makes a P-256 key and a CSR, sends them with a one-time token to the gateway, and keeps what
// comes back in STATE/identity/:
//
//   key.pem      the device's private key (0600; never leaves the device)
//   cert.pem     its certificate, CN = the device id, from the gateway's device CA
//   ca.pem       the gateway's device CA
//   root.json    the signed root the gateway pins; the agent verifies everything against it
//   device.json  id, labels, gateway URL, MQTT settings and password, the pinned directive key
//                (0600, because of the password)
//
// The files are written into STATE/identity.new/ and renamed into place in one step, so a device
// killed during enrollment has either no identity or a whole one. Thread-compatible.

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"
#include "trust/root_store.hpp"

namespace airlock::agent {

struct DeviceIdentity {
  std::string device_id;  // "dev-" + 16 hex
  std::map<std::string, std::string> labels;
  std::string gateway;  // the gateway's base URL, e.g. http://gw:7500 (its /v2/ is the registry)
  std::string mqtt_broker;
  std::string mqtt_prefix;
  std::string mqtt_username;
  std::string mqtt_password;
  std::string directive_key_pem;  // the gateway's Ed25519 key that signs this device's directives

  nlohmann::json ToJson() const;
  // kCorrupt naming the field.
  [[nodiscard]] static Result<DeviceIdentity> FromJson(const nlohmann::json& j);
};

struct EnrollOptions {
  std::string gateway;  // http(s)://host:port
  std::string token;    // alken_…
  std::map<std::string, std::string> labels;
  // When set, the gateway's root must be this very document (same signed body); otherwise the
  // root is trusted because the one-time token authenticated the answer.
  std::optional<trust::SignedDocument> expected_root;
  bool force = false;  // replace an existing identity
  // For an https:// gateway: the CA its certificate chains to (the gateway's device CA, its
  // DATA/devices/ca.pem); empty: the system's CAs.
  std::string ca_file;
};

// STATE/identity.
std::filesystem::path IdentityDir(const std::filesystem::path& state_dir);

// The identity's TLS files, for an https:// gateway and an mqtts:// broker: the device's key and
// certificate, and the gateway's device CA (which certifies the gateway and its broker too).
struct IdentityTls {
  std::string key, cert, ca;
};
IdentityTls IdentityTlsFiles(const std::filesystem::path& state_dir);

// Enrolls with the gateway and stores the identity under state_dir. kAlreadyExists when an
// identity exists and !force; kVerification when the gateway refuses
// the token (its reason) or its root does not verify at now or differs from expected_root;
// kUnavailable when the gateway cannot be reached.
[[nodiscard]] Result<DeviceIdentity> Enroll(const std::filesystem::path& state_dir,
                                            const EnrollOptions& options, TimePoint now);

// The stored identity; kNotFound when the device has not enrolled.
[[nodiscard]] Result<DeviceIdentity> LoadIdentity(const std::filesystem::path& state_dir);

// Where the root rotations the device accepted after enrolling are kept: STATE/identity/roots/.
// A new enrollment starts without them (the whole identity directory is replaced).
std::filesystem::path RootRotationsDir(const std::filesystem::path& state_dir);

// The root the device trusts: the one pinned at enrollment (STATE/identity/root.json) and the
// rotations accepted since, verified (trust/root_store.hpp).
[[nodiscard]] Result<trust::TrustedRoot> LoadDeviceRoot(const std::filesystem::path& state_dir,
                                                        TimePoint now);

}  // namespace airlock::agent
