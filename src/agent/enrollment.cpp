#include "agent/enrollment.hpp"

#include <httplib.h>

#include <system_error>

#include "core/fs.hpp"
#include "core/pki.hpp"
#include "net/http_server.hpp"

namespace airlock::agent {
namespace {

constexpr char kKeyFile[] = "key.pem";
constexpr char kCertFile[] = "cert.pem";
constexpr char kCaFile[] = "ca.pem";

using nlohmann::json;
constexpr std::size_t kMaxAnswer = 4 << 20;

Result<std::string> Field(const json& j, const char* key, std::string_view where) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string() ||
      j[key].get<std::string>().empty()) {
    return Fail(ErrorCode::kCorrupt,
                std::string(where) + ": \"" + key + "\" is missing or not a non-empty string");
  }
  return j[key].get<std::string>();
}

Result<std::map<std::string, std::string>> LabelsOf(const json& j, std::string_view where) {
  std::map<std::string, std::string> labels;
  json given = j.is_object() ? j.value("labels", json::object()) : json();
  if (!given.is_object()) {
    return Fail(ErrorCode::kCorrupt, std::string(where) + ": \"labels\" must be an object");
  }
  for (const auto& [k, v] : given.items()) {
    if (!v.is_string()) {
      return Fail(ErrorCode::kCorrupt, std::string(where) + ": label " + k + " is not a string");
    }
    labels[k] = v.get<std::string>();
  }
  return labels;
}

std::string Answered(const httplib::Response& r) {
  return "the gateway answered " + std::to_string(r.status) + ": " + net::ErrorDetail(r.body);
}

}  // namespace

json DeviceIdentity::ToJson() const {
  return {{"device_id", device_id},
          {"labels", labels},
          {"gateway", gateway},
          {"mqtt",
           {{"broker", mqtt_broker},
            {"prefix", mqtt_prefix},
            {"username", mqtt_username},
            {"password", mqtt_password}}},
          {"directive_key", directive_key_pem}};
}

Result<DeviceIdentity> DeviceIdentity::FromJson(const json& j) {
  DeviceIdentity d;
  AIRLOCK_ASSIGN_OR_RETURN(d.device_id, Field(j, "device_id", "device.json"));
  AIRLOCK_ASSIGN_OR_RETURN(d.labels, LabelsOf(j, "device.json"));
  AIRLOCK_ASSIGN_OR_RETURN(d.gateway, Field(j, "gateway", "device.json"));
  json mqtt = j.is_object() ? j.value("mqtt", json()) : json();
  AIRLOCK_ASSIGN_OR_RETURN(d.mqtt_broker, Field(mqtt, "broker", "device.json mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(d.mqtt_prefix, Field(mqtt, "prefix", "device.json mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(d.mqtt_username, Field(mqtt, "username", "device.json mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(d.mqtt_password, Field(mqtt, "password", "device.json mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(d.directive_key_pem, Field(j, "directive_key", "device.json"));
  if (!PublicKey::FromPem(d.directive_key_pem)) {
    return Fail(ErrorCode::kCorrupt, "device.json: \"directive_key\" is not an Ed25519 public key");
  }
  return d;
}

std::filesystem::path IdentityDir(const std::filesystem::path& state_dir) {
  return state_dir / "identity";
}

IdentityTls IdentityTlsFiles(const std::filesystem::path& state_dir) {
  const std::filesystem::path dir = IdentityDir(state_dir);
  return {.key = (dir / kKeyFile).string(),
          .cert = (dir / kCertFile).string(),
          .ca = (dir / kCaFile).string()};
}

Result<DeviceIdentity> Enroll(const std::filesystem::path& state_dir, const EnrollOptions& options,
                              TimePoint now) {
  std::filesystem::path dir = IdentityDir(state_dir);
  std::error_code ec;
  if (std::filesystem::exists(dir / "device.json", ec) && !options.force) {
    auto existing = LoadIdentity(state_dir);
    return Fail(ErrorCode::kAlreadyExists,
                "this device is already enrolled" +
                    (existing ? " as " + existing->device_id + " at " + existing->gateway
                              : std::string()) +
                    " (" + dir.string() + "); enroll --force replaces that identity");
  }
  if (!options.gateway.starts_with("http://") && !options.gateway.starts_with("https://")) {
    return Fail(ErrorCode::kInvalidArgument,
                "--gateway must be a URL such as http://gateway:7500, not '" + options.gateway +
                    "'");
  }
  std::string gateway = options.gateway;
  while (gateway.ends_with("/")) {
    gateway.pop_back();
  }

  AIRLOCK_ASSIGN_OR_RETURN(std::string key_pem, pki::MakeKey());
  AIRLOCK_ASSIGN_OR_RETURN(std::string csr, pki::MakeCsr(key_pem, "airlock-device"));
  json request = {{"token", options.token}, {"csr", csr}, {"labels", options.labels}};
  httplib::Client client(gateway);
  if (gateway.starts_with("https://")) {
    client.enable_server_certificate_verification(true);
    if (!options.ca_file.empty()) {
      client.set_ca_cert_path(options.ca_file.c_str());
    }
  }
  client.set_connection_timeout(10);
  client.set_read_timeout(30);
  httplib::Result r = client.Post("/api/v1/devices/enroll", request.dump(), "application/json");
  if (!r) {
    return Fail(ErrorCode::kUnavailable, "cannot reach the gateway at " + gateway + ": " +
                                             httplib::to_string(r.error()));
  }
  if (r->status == 403) {
    return Fail(ErrorCode::kVerification, Answered(*r) + " (ask the site's operator for a new "
                                                         "token: airlock-gateway devices token)");
  }
  if (r->status != 201) {
    return Fail(ErrorCode::kInvalidArgument, Answered(*r));
  }
  if (r->body.size() > kMaxAnswer) {
    return Fail(ErrorCode::kCorrupt, "the gateway's enrollment answer is over 4 MiB");
  }
  json answer = json::parse(r->body, nullptr, false);
  if (!answer.is_object()) {
    return Fail(ErrorCode::kCorrupt, "the gateway's enrollment answer is not a JSON object");
  }
  DeviceIdentity id;
  AIRLOCK_ASSIGN_OR_RETURN(id.device_id, Field(answer, "device_id", "enrollment answer"));
  AIRLOCK_ASSIGN_OR_RETURN(id.labels, LabelsOf(answer, "enrollment answer"));
  id.gateway = gateway;
  json mqtt = answer.value("mqtt", json());
  AIRLOCK_ASSIGN_OR_RETURN(id.mqtt_broker, Field(mqtt, "broker", "enrollment answer mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(id.mqtt_prefix, Field(mqtt, "prefix", "enrollment answer mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(id.mqtt_username, Field(mqtt, "username", "enrollment answer mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(id.mqtt_password, Field(mqtt, "password", "enrollment answer mqtt"));
  AIRLOCK_ASSIGN_OR_RETURN(id.directive_key_pem,
                           Field(answer, "directive_key", "enrollment answer"));
  AIRLOCK_ASSIGN_OR_RETURN(std::string certificate,
                           Field(answer, "certificate", "enrollment answer"));
  AIRLOCK_ASSIGN_OR_RETURN(std::string ca, Field(answer, "ca", "enrollment answer"));
  if (!answer.contains("root") || !answer["root"].is_object()) {
    return Fail(ErrorCode::kCorrupt, "enrollment answer: \"root\" is missing");
  }
  // Checks the identity as it will be read back.
  AIRLOCK_ASSIGN_OR_RETURN(id, DeviceIdentity::FromJson(id.ToJson()));
  AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument root,
                           trust::SignedDocument::Parse(answer["root"].dump()));
  auto verified = trust::VerifyRoot(root, now);
  if (!verified) {
    return Fail(ErrorCode::kVerification,
                "the gateway's root does not verify: " + verified.error().message());
  }
  if (options.expected_root) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string want, options.expected_root->SignedBytes());
    AIRLOCK_ASSIGN_OR_RETURN(std::string got, root.SignedBytes());
    if (want != got) {
      return Fail(ErrorCode::kVerification,
                  "the gateway pins another root than the one given with --root: refusing to "
                  "enroll (is this the right gateway?)");
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string root_text, root.Serialize());

  // Everything into identity.new, then one rename.
  std::filesystem::path fresh = state_dir / "identity.new";
  std::filesystem::remove_all(fresh, ec);
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(fresh));
  std::filesystem::permissions(fresh, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(fresh / kKeyFile, key_pem, 0600));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(fresh / kCertFile, certificate, 0644));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(fresh / kCaFile, ca, 0644));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(fresh / "root.json", root_text, 0644));
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(fresh / "device.json", id.ToJson().dump(2) + "\n", 0600));
  if (std::filesystem::exists(dir, ec)) {
    std::filesystem::path old = state_dir / "identity.old";
    std::filesystem::remove_all(old, ec);
    std::filesystem::rename(dir, old, ec);
    if (ec) {
      return Fail(ErrorCode::kIo, "cannot move the old identity aside: " + ec.message());
    }
  }
  std::filesystem::rename(fresh, dir, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot put the new identity in place: " + ec.message());
  }
  AIRLOCK_RETURN_IF_ERROR(SyncDirectory(state_dir));
  std::filesystem::remove_all(state_dir / "identity.old", ec);
  return id;
}

Result<DeviceIdentity> LoadIdentity(const std::filesystem::path& state_dir) {
  std::filesystem::path path = IdentityDir(state_dir) / "device.json";
  auto text = ReadFile(path, 1 << 20);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound,
                  "this device has not enrolled (no " + path.string() +
                      "): run airlock-agent enroll --gateway URL --token T");
    }
    return Fail(text.error());
  }
  json j = json::parse(*text, nullptr, false);
  auto id = DeviceIdentity::FromJson(j);
  if (!id) {
    return Fail(std::move(id.error()).WithContext(path.string()));
  }
  return id;
}

std::filesystem::path RootRotationsDir(const std::filesystem::path& state_dir) {
  return IdentityDir(state_dir) / "roots";
}

Result<trust::TrustedRoot> LoadDeviceRoot(const std::filesystem::path& state_dir, TimePoint now) {
  auto root = trust::LoadTrustedRoot(IdentityDir(state_dir) / "root.json",
                                     RootRotationsDir(state_dir), now);
  if (!root) {
    return Fail(std::move(root.error())
                    .WithContext("the root this device trusts; enroll again with --force to take "
                                 "the gateway's current one"));
  }
  return root;
}

}  // namespace airlock::agent
