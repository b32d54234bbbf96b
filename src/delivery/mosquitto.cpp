#include "delivery/mosquitto.hpp"

#include "core/fs.hpp"
#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"

namespace airlock::delivery {
namespace fs = std::filesystem;

namespace {
constexpr std::chrono::hours kBrokerCertificateValidity{2 * 365 * 24};
}  // namespace

Result<std::string> MosquittoGatewayAcl(std::string_view prefix, std::string_view hub_user) {
  AIRLOCK_ASSIGN_OR_RETURN(auto topics, Topics::Create(prefix));
  const std::string gw = topics.prefix() + "/gw/";
  auto kind = [](TopicKind k) { return std::string(TopicKindName(k)); };
  return "# Airlock cloud broker ACL (airlock-hub broker-config). Clients are named by their\n"
         "# certificate's CN: the hub's, or a gateway's name.\n\n"
         "# The hub: every gateway's topics.\n"
         "user " + std::string(hub_user) + "\n" +
         "topic readwrite " + gw + "#\n\n" +
         "# Each gateway: its own topics, in the direction the protocol uses them.\n"
         "pattern read " + gw + "%u/delivery/" + kind(TopicKind::kOffer) + "\n" +
         "pattern read " + gw + "%u/delivery/+/" + kind(TopicKind::kGrant) + "\n" +
         "pattern read " + gw + "%u/delivery/+/" + kind(TopicKind::kCancel) + "\n" +
         "pattern read " + gw + "%u/rollout/" + kind(TopicKind::kRolloutCommand) + "\n" +
         "pattern write " + gw + "%u/delivery/+/" + kind(TopicKind::kReady) + "\n" +
         "pattern write " + gw + "%u/delivery/+/" + kind(TopicKind::kReject) + "\n" +
         "pattern write " + gw + "%u/delivery/+/" + kind(TopicKind::kStatus) + "\n" +
         "pattern write " + gw + "%u/" + kind(TopicKind::kFleet) + "\n";
}

Result<std::string> MosquittoDeviceAcl(std::string_view prefix, std::string_view gateway_user) {
  AIRLOCK_ASSIGN_OR_RETURN(auto topics, DeviceTopics::Create(prefix));
  const std::string dev = topics.prefix() + "/dev/";
  auto kind = [](DeviceTopicKind k) { return std::string(DeviceTopicKindName(k)); };
  return "# Airlock factory broker ACL (airlock-gateway broker-config). Clients are named by their\n"
         "# certificate's CN: the gateway's, or a device's id.\n\n"
         "# The gateway: every device's topics.\n"
         "user " + std::string(gateway_user) + "\n" +
         "topic readwrite " + dev + "#\n\n" +
         "# Each device: its own topics, in the direction the protocol uses them.\n"
         "pattern read " + dev + "%u/" + kind(DeviceTopicKind::kDirective) + "\n" +
         "pattern read " + dev + "%u/" + kind(DeviceTopicKind::kTelemetryAck) + "\n" +
         "pattern write " + dev + "%u/" + kind(DeviceTopicKind::kState) + "\n" +
         "pattern write " + dev + "%u/" + kind(DeviceTopicKind::kOnline) + "\n" +
         "pattern write " + dev + "%u/" + kind(DeviceTopicKind::kTelemetry) + "\n" +
         "pattern write " + dev + "%u/results/#\n";
}

std::string MosquittoTlsListener(const fs::path& dir, const fs::path& crl_file) {
  return "cafile " + (dir / "ca.pem").string() + "\n" +
         "certfile " + (dir / "server.pem").string() + "\n" +
         "keyfile " + (dir / "server.key").string() + "\n" +
         (crl_file.empty() ? std::string() : "crlfile " + crl_file.string() + "\n") +
         "tls_version tlsv1.2\n"
         "require_certificate true\n"
         "use_identity_as_username true\n";
}

Status WriteBrokerFiles(const pki::CertificateAuthority& ca, const BrokerFiles& files,
                        TimePoint now) {
  if (files.names.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "name the host names or addresses clients reach the broker at (--name)");
  }
  if (files.port <= 0 || files.port > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "the broker's port must be from 1 to 65535");
  }
  const fs::path& dir = files.dir;
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / "ca.pem", ca.certificate_pem(), 0644));
  AIRLOCK_ASSIGN_OR_RETURN(auto server, ca.MakeLeaf(files.title, files.names, now,
                                                    kBrokerCertificateValidity));
  AIRLOCK_RETURN_IF_ERROR(pki::WriteKeyAndCertificate(server, dir / "server"));
  AIRLOCK_ASSIGN_OR_RETURN(auto client,
                           ca.MakeLeaf(files.client_name, {}, now, kBrokerCertificateValidity));
  AIRLOCK_RETURN_IF_ERROR(pki::WriteKeyAndCertificate(client, dir / files.client_stem));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / "acl", files.acl, 0644));
  std::string conf =
      "# " + files.title + ".\n"
      "# Clients connect with TLS and their certificates; the ACL keeps each to its own topics.\n"
      "# Nothing listens without TLS.\n"
      "per_listener_settings false\n"
      "allow_anonymous false\n"
      "acl_file " + (dir / "acl").string() + "\n" +
      "listener " + std::to_string(files.port) +
      (files.address.empty() ? "" : " " + files.address) + "\n" +
      MosquittoTlsListener(dir, files.crl_file);
  return WriteFileAtomic(dir / "mosquitto.conf", conf, 0644);
}

}  // namespace airlock::delivery
