#include "gateway/devices_api.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/digest.hpp"
#include "gateway/approvals_api.hpp"
#include "net/http_server.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
constexpr const char* kJson = "application/json";
constexpr auto kDefaultTokenLife = std::chrono::hours(24);
constexpr auto kLongestTokenLife = std::chrono::hours(24 * 30);

json DeviceView(const DeviceRecord& d, const DeviceStateRecord* reported = nullptr) {
  json v = {{"id", d.id},
            {"labels", d.labels},
            {"state", d.revoked_at ? "revoked" : "enrolled"},
            {"certificate_serial", d.cert_serial},
            {"certificate_expires", FormatRfc3339(d.cert_not_after)},
            {"enrolled_at", FormatRfc3339(d.enrolled_at)},
            {"revoked_at", d.revoked_at ? json(FormatRfc3339(*d.revoked_at)) : json(nullptr)}};
  if (reported == nullptr) {
    return v;
  }
  // What it last said on dev/{dev}/state and dev/{dev}/online.
  v["online"] = reported->online;
  v["last_seen"] = reported->last_seen ? json(FormatRfc3339(*reported->last_seen)) : json(nullptr);
  v["models"] = reported->Models();
  return v;
}

void Changed(const DevicesContext& ctx, const std::string& id) {
  if (ctx.on_change) {
    ctx.on_change(id);
  }
}

// The labels of body[key] (an object of strings), or an error message.
std::optional<std::string> ReadLabels(const json& body, Labels& out) {
  if (!body.contains("labels") || body["labels"].is_null()) {
    return std::nullopt;
  }
  const json& labels = body["labels"];
  if (!labels.is_object() || labels.size() > kMaxDeviceLabels) {
    return "labels must be an object of at most " + std::to_string(kMaxDeviceLabels) + " strings";
  }
  for (const auto& [k, v] : labels.items()) {
    if (!v.is_string() || !ValidLabel(k, v.get<std::string>())) {
      return "label " + k +
             " is not valid: a key of 1-63 of [A-Za-z0-9._/-], a value of 0-63 of "
             "[A-Za-z0-9._-]";
    }
    out[k] = v.get<std::string>();
  }
  return std::nullopt;
}

json ParseBody(const httplib::Request& req, httplib::Response& res) {
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object()) {
    net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                   "the body must be a JSON object");
  }
  return body;
}

}  // namespace

bool ValidLabel(std::string_view key, std::string_view value) {
  auto in = [](char c, std::string_view extra) {
    return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
  };
  if (key.empty() || key.size() > 63 || !std::isalnum(static_cast<unsigned char>(key[0])) ||
      value.size() > 63) {
    return false;
  }
  for (char c : key) {
    if (!in(c, "._/-")) {
      return false;
    }
  }
  for (char c : value) {
    if (!in(c, "._-")) {
      return false;
    }
  }
  return true;
}

void InstallDevicesApi(httplib::Server& server, DevicesContext context) {
  auto ctx = std::make_shared<DevicesContext>(std::move(context));

  server.Post("/api/v1/devices/tokens", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    json body = req.body.empty() ? json::object() : ParseBody(req, res);
    if (!body.is_object()) {
      return;
    }
    Labels labels;
    if (auto bad = ReadLabels(body, labels)) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request", *bad);
    }
    std::chrono::milliseconds life = kDefaultTokenLife;
    if (body.contains("expires_in")) {
      auto parsed = body["expires_in"].is_string()
                        ? ParseDuration(body["expires_in"].get<std::string>())
                        : Result<std::chrono::milliseconds>(
                              Fail(ErrorCode::kInvalidArgument, "not a string"));
      if (!parsed || *parsed <= std::chrono::milliseconds(0) || *parsed > kLongestTokenLife) {
        return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                              "expires_in must be a duration such as 30m or 24h, at most 30 days");
      }
      life = *parsed;
    }
    TimePoint now = ctx->clock->Now();
    TimePoint expires = std::chrono::time_point_cast<std::chrono::seconds>(now + life);
    auto token = ctx->store->CreateEnrollmentToken(labels, expires, now);
    if (!token) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", token.error().message());
    }
    res.status = 201;
    res.set_content(json{{"token", *token},
                         {"id", EnrollmentTokenId(*token)},
                         {"expires_at", FormatRfc3339(expires)},
                         {"labels", labels}}
                        .dump(),
                    kJson);
  });

  server.Get("/api/v1/devices/tokens", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    auto tokens = ctx->store->EnrollmentTokens();
    if (!tokens) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", tokens.error().message());
    }
    const TimePoint now = ctx->clock->Now();
    json list = json::array();
    for (const EnrollmentTokenRecord& t : *tokens) {
      list.push_back({{"id", t.id},
                      {"labels", t.labels},
                      {"state", !t.used_by.empty()    ? "used"
                                : t.expires_at <= now ? "expired"
                                                      : "open"},
                      {"used_by", t.used_by.empty() ? json(nullptr) : json(t.used_by)},
                      {"created_at", FormatRfc3339(t.created_at)},
                      {"expires_at", FormatRfc3339(t.expires_at)}});
    }
    res.set_content(json{{"tokens", list}}.dump(), kJson);
  });
  server.Delete(R"(/api/v1/devices/tokens/([0-9a-f]{12}))",
                [ctx](const httplib::Request& req, httplib::Response& res) {
                  if (!AuthorizeOperator(*ctx->store, req, res)) {
                    return;
                  }
                  Status withdrawn = ctx->store->WithdrawEnrollmentToken(req.matches[1].str());
                  if (!withdrawn) {
                    int status = withdrawn.error().code() == ErrorCode::kNotFound ? 404 : 500;
                    return net::SendError(res, status, status == 404 ? "NOT_FOUND" : "UNKNOWN",
                                          "no such enrollment token", withdrawn.error().message());
                  }
                  res.status = 204;
                });

  server.Get("/api/v1/devices", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    auto devices = ctx->store->Devices();
    if (!devices) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", devices.error().message());
    }
    auto states = ctx->store->DeviceStates();
    if (!states) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", states.error().message());
    }
    std::map<std::string, const DeviceStateRecord*> reported;
    for (const DeviceStateRecord& s : *states) {
      reported[s.device] = &s;
    }
    json list = json::array();
    for (const DeviceRecord& d : *devices) {
      DeviceStateRecord never;
      never.device = d.id;
      auto it = reported.find(d.id);
      list.push_back(DeviceView(d, it == reported.end() ? &never : it->second));
    }
    res.set_content(json{{"devices", list}}.dump(), kJson);
  });

  server.Post(R"(/api/v1/devices/(dev-[0-9a-f]{16})/revoke)", [ctx](const httplib::Request& req,
                                                                    httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    std::string id = req.matches[1].str();
    Status revoked = ctx->store->RevokeDevice(id, ctx->clock->Now());
    if (!revoked) {
      int status = revoked.error().code() == ErrorCode::kNotFound ? 404 : 500;
      return net::SendError(res, status, "NOT_FOUND", "no such device", revoked.error().message());
    }
    Changed(*ctx, id);
    auto device = ctx->store->Device(id);
    if (!device) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", device.error().message());
    }
    res.set_content(DeviceView(*device).dump(), kJson);
  });

  // {"set": {k: v}, "remove": [k]} → the device with its new labels.
  server.Post(R"(/api/v1/devices/(dev-[0-9a-f]{16})/labels)", [ctx](const httplib::Request& req,
                                                                    httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    json body = ParseBody(req, res);
    if (!body.is_object()) {
      return;
    }
    Labels set;
    json wrapped = {{"labels", body.value("set", json::object())}};
    if (auto bad = ReadLabels(wrapped, set)) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request", "set: " + *bad);
    }
    std::vector<std::string> remove;
    json keys = body.value("remove", json::array());
    if (!keys.is_array() || keys.size() > kMaxDeviceLabels ||
        !std::all_of(keys.begin(), keys.end(), [](const json& k) { return k.is_string(); })) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                            "remove must be a list of label keys");
    }
    for (const json& k : keys) {
      remove.push_back(k.get<std::string>());
    }
    std::string id = req.matches[1].str();
    auto labels = ctx->store->UpdateDeviceLabels(id, set, remove);
    if (!labels) {
      ErrorCode code = labels.error().code();
      int status = code == ErrorCode::kNotFound          ? 404
                   : code == ErrorCode::kInvalidArgument ? 400
                                                         : 500;
      return net::SendError(res, status, status == 404 ? "NOT_FOUND" : "INVALID_REQUEST",
                            status == 404 ? "no such device" : "invalid request",
                            labels.error().message());
    }
    Changed(*ctx, id);
    auto device = ctx->store->Device(id);
    if (!device) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", device.error().message());
    }
    res.set_content(DeviceView(*device).dump(), kJson);
  });

  server.Post("/api/v1/devices/enroll", [ctx](const httplib::Request& req, httplib::Response& res) {
    json body = ParseBody(req, res);
    if (!body.is_object()) {
      return;
    }
    if (!body.contains("token") || !body["token"].is_string() || !body.contains("csr") ||
        !body["csr"].is_string()) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                            "the body must carry \"token\" and \"csr\" (a PEM request)");
    }
    Labels asked;
    if (auto bad = ReadLabels(body, asked)) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request", *bad);
    }
    TimePoint now = std::chrono::time_point_cast<std::chrono::seconds>(ctx->clock->Now());
    std::string certificate, password;
    auto device = ctx->store->Enroll(
        body["token"].get<std::string>(),
        [&](const Labels& given) -> Result<DeviceRecord> {
          AIRLOCK_ASSIGN_OR_RETURN(std::string suffix, RandomHex(8));
          DeviceRecord d;
          d.id = "dev-" + suffix;
          // The operator's labels (on the token) win over what the device asks for.
          d.labels = asked;
          for (const auto& [k, v] : given) {
            d.labels[k] = v;
          }
          AIRLOCK_ASSIGN_OR_RETURN(
              pki::IssuedCertificate issued,
              ctx->ca->Issue(body["csr"].get<std::string>(), d.id, now, ctx->certificate_validity));
          AIRLOCK_ASSIGN_OR_RETURN(password, RandomHex(16));
          certificate = issued.pem;
          d.cert_serial = issued.serial;
          d.cert_not_after = issued.not_after;
          d.mqtt_password_hash = Sha256Of(password).hex();
          d.enrolled_at = now;
          return d;
        },
        now);
    if (!device) {
      ErrorCode code = device.error().code();
      int status = code == ErrorCode::kVerification      ? 403
                   : code == ErrorCode::kInvalidArgument ? 400
                                                         : 500;
      return net::SendError(res, status, status == 403 ? "DENIED" : "INVALID_REQUEST",
                            status == 403 ? "enrollment refused" : "invalid request",
                            device.error().message());
    }
    Changed(*ctx, device->id);
    res.status = 201;
    res.set_content(json{{"device_id", device->id},
                         {"labels", device->labels},
                         {"certificate", certificate},
                         {"ca", ctx->ca->certificate_pem()},
                         {"mqtt",
                          {{"broker", ctx->mqtt_broker},
                           {"prefix", ctx->mqtt_prefix},
                           {"username", device->id},
                           {"password", password}}},
                         {"root", json::parse(ctx->root_document, nullptr, false)},
                         {"directive_key", ctx->directive_key->public_key().ToPem()}}
                        .dump(),
                    kJson);
  });
}

Status AuthorizeDevicePull(GatewayStateStore& store, const ReadRequest& request) {
  if (request.client.empty()) {
    return Fail(ErrorCode::kVerification,
                "present the device certificate from enrollment (STORE/identity/cert.pem)");
  }
  auto device = store.Device(request.client);
  if (!device) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(request.client) + " is not a device enrolled here");
  }
  if (device->revoked_at) {
    return Fail(ErrorCode::kInvalidArgument, device->id + " is revoked");
  }
  // Both lowercase hex; the certificate's without the leading zeros a serial may have.
  auto significant = [](std::string_view hex) {
    return hex.substr(std::min(hex.find_first_not_of('0'), hex.size()));
  };
  if (significant(request.client_serial) != significant(device->cert_serial)) {
    return Fail(ErrorCode::kInvalidArgument,
                device->id + " presented a certificate it was not last given; enroll it again");
  }
  return {};
}

}  // namespace airlock::gateway
