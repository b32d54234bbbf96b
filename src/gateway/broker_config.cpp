#include "gateway/broker_config.hpp"

#include "core/fs.hpp"
#include "delivery/mosquitto.hpp"

namespace airlock::gateway {

std::filesystem::path DeviceCaDir(const GatewayConfig& config) { return config.data / "devices"; }

Result<pki::CertificateAuthority> OpenDeviceCa(const GatewayConfig& config, TimePoint now) {
  return pki::CertificateAuthority::Open(DeviceCaDir(config),
                                         "airlock-gateway " + config.name + " devices", now);
}

std::string GatewayBrokerUser(std::string_view name) {
  return "airlock-gateway-" + std::string(name);
}

Status WriteFactoryBrokerFiles(const pki::CertificateAuthority& ca,
                               const FactoryBrokerOptions& options, TimePoint now) {
  const std::string user = GatewayBrokerUser(options.gateway_name);
  AIRLOCK_ASSIGN_OR_RETURN(std::string acl, delivery::MosquittoDeviceAcl(options.prefix, user));
  return delivery::WriteBrokerFiles(
      ca,
      {.dir = options.dir,
       .names = options.names,
       .port = options.port,
       .address = options.address,
       .acl = std::move(acl),
       .title = "Airlock factory broker for gateway " + options.gateway_name,
       .client_stem = "gateway",
       .client_name = user},
      now);
}

Status WriteHttpsCertificate(const pki::CertificateAuthority& ca, const std::string& gateway_name,
                             const std::vector<std::string>& names, const std::filesystem::path& dir,
                             TimePoint now) {
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
  AIRLOCK_ASSIGN_OR_RETURN(auto leaf, ca.MakeLeaf("airlock-gateway " + gateway_name, names, now,
                                                  std::chrono::hours(2 * 365 * 24)));
  return pki::WriteKeyAndCertificate(leaf, dir / "https");
}

}  // namespace airlock::gateway
