#include "gateway/broker_config.hpp"

#include "core/fs.hpp"
#include "delivery/device_protocol.hpp"

namespace airlock::gateway {
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::hours kBrokerCertificateValidity{2 * 365 * 24};

}  // namespace

Result<pki::CertificateAuthority> OpenDeviceCa(const GatewayConfig& config, TimePoint now) {
  return pki::CertificateAuthority::Open(config.data / "devices",
                                         "airlock-gateway " + config.name + " devices", now);
}

Status WriteKeyAndCertificate(const pki::CertificateAuthority& ca, const fs::path& dir,
                              const std::string& name, const std::string& common_name,
                              const std::vector<std::string>& server_names, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string key, pki::MakeKey());
  AIRLOCK_ASSIGN_OR_RETURN(std::string csr, pki::MakeCsr(key, common_name));
  auto issued = server_names.empty()
                    ? ca.Issue(csr, common_name, now, kBrokerCertificateValidity)
                    : ca.IssueServer(csr, common_name, server_names, now,
                                     kBrokerCertificateValidity);
  if (!issued) {
    return Fail(std::move(issued.error()));
  }
  // The key first: a certificate whose key is missing would be worse than neither.
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / (name + ".key"), key, 0600));
  return WriteFileAtomic(dir / (name + ".pem"), issued->pem, 0644);
}

std::string GatewayBrokerUser(std::string_view name) {
  return "airlock-gateway-" + std::string(name);
}

Result<std::string> MosquittoDeviceAcl(std::string_view prefix, std::string_view gateway_user) {
  AIRLOCK_ASSIGN_OR_RETURN(auto topics, delivery::DeviceTopics::Create(prefix));
  const std::string dev = topics.prefix() + "/dev/";
  using delivery::DeviceTopicKind;
  auto name = [](DeviceTopicKind k) { return std::string(delivery::DeviceTopicKindName(k)); };
  std::string acl =
      "# Airlock factory broker ACL (airlock-gateway broker-config). Clients are named by their\n"
      "# certificate's CN: the gateway's, or a device's id.\n\n"
      "# The gateway: every device's topics.\n"
      "user " + std::string(gateway_user) + "\n" +
      "topic readwrite " + dev + "#\n\n" +
      "# Each device: its own topics, in the direction the protocol uses them.\n"
      "pattern read " + dev + "%u/" + name(DeviceTopicKind::kDirective) + "\n" +
      "pattern read " + dev + "%u/" + name(DeviceTopicKind::kTelemetryAck) + "\n" +
      "pattern write " + dev + "%u/" + name(DeviceTopicKind::kState) + "\n" +
      "pattern write " + dev + "%u/" + name(DeviceTopicKind::kOnline) + "\n" +
      "pattern write " + dev + "%u/" + name(DeviceTopicKind::kTelemetry) + "\n" +
      "pattern write " + dev + "%u/results/#\n";
  return acl;
}

std::string MosquittoTlsListener(const fs::path& dir) {
  return "cafile " + (dir / "ca.pem").string() + "\n" +
         "certfile " + (dir / "server.pem").string() + "\n" +
         "keyfile " + (dir / "server.key").string() + "\n" +
         "tls_version tlsv1.2\n"
         "require_certificate true\n"
         "use_identity_as_username true\n";
}

Status WriteFactoryBrokerFiles(const pki::CertificateAuthority& ca,
                               const FactoryBrokerOptions& options, TimePoint now) {
  if (options.names.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "name the host names or addresses devices reach the broker at (--name)");
  }
  if (options.port <= 0 || options.port > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "the broker's port must be from 1 to 65535");
  }
  const std::string user = GatewayBrokerUser(options.gateway_name);
  AIRLOCK_ASSIGN_OR_RETURN(std::string acl, MosquittoDeviceAcl(options.prefix, user));
  const fs::path& dir = options.dir;
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / "ca.pem", ca.certificate_pem(), 0644));
  AIRLOCK_RETURN_IF_ERROR(WriteKeyAndCertificate(ca, dir, "server",
                                                 "airlock factory broker " + options.gateway_name,
                                                 options.names, now));
  AIRLOCK_RETURN_IF_ERROR(WriteKeyAndCertificate(ca, dir, "gateway", user, {}, now));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / "acl", acl, 0644));
  std::string conf =
      "# Airlock factory broker for gateway " + options.gateway_name +
      " (airlock-gateway broker-config).\n"
      "# Devices and the gateway connect with TLS and their certificates; the ACL keeps each\n"
      "# device to its own topics. Nothing listens without TLS.\n"
      "per_listener_settings false\n"
      "allow_anonymous false\n"
      "acl_file " + (dir / "acl").string() + "\n" +
      "listener " + std::to_string(options.port) +
      (options.address.empty() ? "" : " " + options.address) + "\n" +
      MosquittoTlsListener(dir);
  return WriteFileAtomic(dir / "mosquitto.conf", conf, 0644);
}

}  // namespace airlock::gateway
