#include "gateway/broker_config.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "core/fs.hpp"
#include "delivery/mosquitto.hpp"
#include "net/mqtt.hpp"

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
       .client_name = user,
       .crl_file = options.crl_file},
      now);
}

std::filesystem::path DeviceCrlFile(const GatewayConfig& config) {
  return config.devices_mqtt_crl_file.empty() ? DeviceCaDir(config) / "crl.pem"
                                              : config.devices_mqtt_crl_file;
}

Status WriteDeviceCrl(const pki::CertificateAuthority& ca, const GatewayConfig& config,
                      const std::vector<std::string>& revoked_serials, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string crl, ca.RevocationList(revoked_serials, now,
                                                              std::chrono::hours(24 * 3650)));
  const std::filesystem::path path = DeviceCrlFile(config);
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(path.parent_path()));
  return WriteFileAtomic(path, crl, 0644);
}

Status PublishDeviceCrl(const pki::CertificateAuthority& ca, GatewayStateStore& store,
                        const GatewayConfig& config, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<DeviceRecord> devices, store.Devices());
  std::vector<std::string> revoked;
  for (const DeviceRecord& d : devices) {
    if (d.revoked_at && !d.cert_serial.empty()) {
      revoked.push_back(d.cert_serial);
    }
  }
  AIRLOCK_RETURN_IF_ERROR(WriteDeviceCrl(ca, config, revoked, now));
  const std::filesystem::path path = DeviceCrlFile(config);
  if (config.devices_mqtt_broker_pid_file.empty()) {
    return {};
  }
  auto text = ReadFile(config.devices_mqtt_broker_pid_file, 64);
  long pid = text ? std::strtol(text->c_str(), nullptr, 10) : 0;
  if (pid <= 1 || ::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
    spdlog::warn("the factory broker was not told to reload {} (pid file {}: {}); a revoked "
                 "device is refused once the broker reloads it",
                 path.string(), config.devices_mqtt_broker_pid_file.string(),
                 !text ? text.error().ToString()
                       : pid <= 1 ? std::string("no pid in it") : std::strerror(errno));
  }
  return {};
}

Status DisconnectDevice(const pki::CertificateAuthority& ca, const GatewayConfig& config,
                        const std::string& device, TimePoint now) {
  const std::string broker = config.factory_broker();
  if (!broker.starts_with("mqtts://") || config.devices_mqtt_tls_dir.empty()) {
    return {};
  }
  const std::filesystem::path dir = DeviceCaDir(config) / "disconnect";
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
  AIRLOCK_ASSIGN_OR_RETURN(auto leaf, ca.MakeLeaf(device, {}, now, std::chrono::minutes(1)));
  AIRLOCK_RETURN_IF_ERROR(pki::WriteKeyAndCertificate(leaf, dir / device));
  net::MqttOptions o;
  o.broker_url = broker;
  o.client_id = device;
  o.tls = net::MqttTls{.ca_file = (config.devices_mqtt_tls_dir / "ca.pem").string(),
                       .cert_file = (dir / (device + ".pem")).string(),
                       .key_file = (dir / (device + ".key")).string(),
                       .verify_hostname = true};
  o.connect_timeout = std::chrono::seconds(5);
  Status done = [&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(auto client, net::MqttClient::Create(std::move(o)));
    if (!client->WaitConnected(std::chrono::seconds(5))) {
      return Fail(ErrorCode::kUnavailable,
                  "could not reach the factory broker " + broker + " as " + device);
    }
    return {};
  }();
  std::error_code ec;
  std::filesystem::remove(dir / (device + ".key"), ec);
  std::filesystem::remove(dir / (device + ".pem"), ec);
  return done;
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
