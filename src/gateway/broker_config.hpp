#pragma once
// The factory broker's configuration, for Mosquitto (docs/security.md, "The brokers"): TLS with
// client certificates from the gateway's device CA, and an ACL that confines each device to its
// own topics.
//
// A device's certificate names it (CN = its device id, from enrollment), and the broker takes the
// CN as the client's user name (use_identity_as_username), so the ACL's patterns (%u) give each
// device exactly its own PREFIX/dev/{id}/… topics, each in the one direction the protocol uses:
// it reads its directive and the gateway's telemetry acknowledgements, and writes its state, its
// online flag (also its last will), its telemetry and its pipelines' results. The gateway's own
// certificate (CN = GatewayBrokerUser) may read and write every device's topics. Anyone else,
// and anything else, is refused: no anonymous clients, no certificate from another CA.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/pki.hpp"
#include "core/result.hpp"
#include "gateway/config.hpp"

namespace airlock::gateway {

// The CA that certifies the gateway's devices (and its factory broker): DATA/devices, made at the
// first use.
[[nodiscard]] Result<pki::CertificateAuthority> OpenDeviceCa(const GatewayConfig& config,
                                                             TimePoint now);

// Makes a key and has the CA certify it, for server_names (a server certificate) or, when empty,
// as a client named common_name; writes dir/NAME.key (0600), then dir/NAME.pem.
[[nodiscard]] Status WriteKeyAndCertificate(const pki::CertificateAuthority& ca,
                                            const std::filesystem::path& dir,
                                            const std::string& name,
                                            const std::string& common_name,
                                            const std::vector<std::string>& server_names,
                                            TimePoint now);

// The user name (certificate CN) of gateway `name` on its factory broker.
std::string GatewayBrokerUser(std::string_view name);

// A Mosquitto acl_file for the devices of one gateway under topic prefix `prefix`.
// kInvalidArgument for a prefix the topics do not allow.
[[nodiscard]] Result<std::string> MosquittoDeviceAcl(std::string_view prefix,
                                                     std::string_view gateway_user);

// The lines that follow a `listener` line to make it TLS with client certificates from dir's
// ca.pem, the server's certificate and key in dir, and the CN as the user name.
std::string MosquittoTlsListener(const std::filesystem::path& dir);

struct FactoryBrokerOptions {
  std::string gateway_name;
  std::string prefix = "airlock/v1";
  std::vector<std::string> names;  // host names and addresses devices reach the broker at
  int port = 8883;
  std::string address;             // the listener's address; "" = every interface
  std::filesystem::path dir;       // where the files go
};

// Writes into options.dir, each file whole (0600 for the keys):
//   ca.pem           the device CA's certificate (what devices' certificates chain to)
//   server.pem/.key  the broker's certificate, for options.names, issued by the device CA
//   gateway.pem/.key the gateway's client certificate for this broker (CN GatewayBrokerUser)
//   acl              MosquittoDeviceAcl
//   mosquitto.conf   a complete broker configuration using the files above
// Certificates are valid for two years; run it again to renew them (the keys are new too).
[[nodiscard]] Status WriteFactoryBrokerFiles(const pki::CertificateAuthority& ca,
                                             const FactoryBrokerOptions& options, TimePoint now);

}  // namespace airlock::gateway
