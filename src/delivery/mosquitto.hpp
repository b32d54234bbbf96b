#pragma once
// Mosquitto configurations for Airlock's two brokers (docs/security.md, "The brokers"): TLS with
// client certificates, the certificate's CN as the MQTT user name, and an ACL that gives each
// client the topics of DESIGN §5.1 it has a part in, each in the direction it uses them.
//
// - The cloud broker (the hub and its gateways): the hub reads and writes every gateway's
//   PREFIX/gw/… topics; a gateway (CN = its name) reads its offers, grants and cancels and writes
//   its readies, rejects, statuses and fleet summary, and nothing of another gateway's.
// - The factory broker (a gateway and its devices): the gateway reads and writes every device's
//   PREFIX/dev/… topics; a device (CN = its id) reads its directive and telemetry
//   acknowledgements and writes its state, online flag, telemetry and results.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/pki.hpp"
#include "core/result.hpp"

namespace airlock::delivery {

// The cloud broker's ACL under prefix. kInvalidArgument for a prefix topics do not allow.
[[nodiscard]] Result<std::string> MosquittoGatewayAcl(std::string_view prefix,
                                                      std::string_view hub_user);
// The factory broker's ACL under prefix.
[[nodiscard]] Result<std::string> MosquittoDeviceAcl(std::string_view prefix,
                                                     std::string_view gateway_user);

// The lines that follow a `listener` line to make it TLS 1.2+ with client certificates from
// dir/ca.pem, the server's dir/server.pem and dir/server.key, and the CN as the user name; with
// crl_file, client certificates that list revokes are refused (Mosquitto reloads it on SIGHUP).
std::string MosquittoTlsListener(const std::filesystem::path& dir,
                                 const std::filesystem::path& crl_file = {});

struct BrokerFiles {
  std::filesystem::path dir;       // where the files go
  std::vector<std::string> names;  // host names and addresses clients reach the broker at
  int port = 8883;
  std::string address;             // the listener's address; "" = every interface
  std::string acl;                 // MosquittoGatewayAcl or MosquittoDeviceAcl
  std::string title;               // for the configuration's first comment line
  std::string client_stem;         // the owner's client certificate: dir/STEM.pem and .key
  std::string client_name;         // its CN (the ACL's user)
  std::filesystem::path crl_file;  // a revocation list for the listener (crlfile); "" = none
};

// Writes, each file whole: ca.pem (the CA's certificate), server.pem/.key for names,
// STEM.pem/.key for the owner, acl, and mosquitto.conf (a whole configuration using them, no
// listener without TLS). Keys are 0600. Certificates are valid for two years.
[[nodiscard]] Status WriteBrokerFiles(const pki::CertificateAuthority& ca, const BrokerFiles& files,
                                      TimePoint now);

}  // namespace airlock::delivery
