#pragma once
// The gateway's certificates (docs/security.md): its device CA certifies its devices (at
// enrollment), its factory broker and its HTTPS; `airlock-gateway broker-config` writes the
// factory broker's configuration (delivery/mosquitto.hpp) and `tls-cert` the HTTPS pair.

#include <string>
#include <string_view>
#include <vector>

#include "core/pki.hpp"
#include "core/result.hpp"
#include "gateway/config.hpp"
#include "gateway/state_store.hpp"

namespace airlock::gateway {

// Where the gateway's device CA lives: DATA/devices (ca.key, ca.pem).
std::filesystem::path DeviceCaDir(const GatewayConfig& config);

// The CA that certifies the gateway's devices, made at the first use.
[[nodiscard]] Result<pki::CertificateAuthority> OpenDeviceCa(const GatewayConfig& config,
                                                             TimePoint now);

// The user name (certificate CN) of gateway `name` on its factory broker.
std::string GatewayBrokerUser(std::string_view name);

struct FactoryBrokerOptions {
  std::string gateway_name;
  std::string prefix = "airlock/v1";
  std::vector<std::string> names;  // host names and addresses devices reach the broker at
  int port = 8883;
  std::string address;             // the listener's address; "" = every interface
  std::filesystem::path dir;       // where the files go
  std::filesystem::path crl_file;  // the broker's crlfile (DeviceCrlFile); "" = none
};

// delivery::WriteBrokerFiles for the factory broker: the device ACL, and gateway.pem/.key as the
// gateway's client certificate (CN GatewayBrokerUser).
[[nodiscard]] Status WriteFactoryBrokerFiles(const pki::CertificateAuthority& ca,
                                             const FactoryBrokerOptions& options, TimePoint now);

// Where the revocation list of the device CA is kept: devices.mqtt_crl_file, or
// DATA/devices/crl.pem.
std::filesystem::path DeviceCrlFile(const GatewayConfig& config);

// Writes the device CA's revocation list of revoked_serials to DeviceCrlFile, atomically, valid
// for ten years (it is rewritten whenever it changes, and at every start).
[[nodiscard]] Status WriteDeviceCrl(const pki::CertificateAuthority& ca,
                                    const GatewayConfig& config,
                                    const std::vector<std::string>& revoked_serials, TimePoint now);

// WriteDeviceCrl of the current certificates of the revoked devices, then SIGHUP to the broker
// named by devices.mqtt_broker_pid_file, if any, so that it reloads the list: a revoked device is
// refused at its next connection. Errors: the store, the CA, the file; a broker that cannot be
// signalled is logged, not an error.
[[nodiscard]] Status PublishDeviceCrl(const pki::CertificateAuthority& ca, GatewayStateStore& store,
                                      const GatewayConfig& config, TimePoint now);

// Ends device's connection to the factory broker at once, rather than at its next connection:
// connects under its client id (a session takeover, which Mosquitto answers by closing the
// device's connection) with a certificate for its name the device CA makes for this one minute,
// then leaves. The device's reconnection is then refused by the revocation list. Only for an
// mqtts:// factory broker (devices.mqtt_tls_dir); a no-op otherwise.
[[nodiscard]] Status DisconnectDevice(const pki::CertificateAuthority& ca,
                                      const GatewayConfig& config, const std::string& device,
                                      TimePoint now);

// The gateway's HTTPS certificate for names, from ca: dir/https.pem and dir/https.key.
[[nodiscard]] Status WriteHttpsCertificate(const pki::CertificateAuthority& ca,
                                           const std::string& gateway_name,
                                           const std::vector<std::string>& names,
                                           const std::filesystem::path& dir, TimePoint now);

}  // namespace airlock::gateway
