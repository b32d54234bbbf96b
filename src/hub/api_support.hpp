#pragma once
// What the hub's HTTP handlers share: the error body of the OCI spec (which /api/v1/ uses too),
// JSON request bodies, and the gate every /api/v1/ handler passes through (a role check that
// answers 401/403 itself, and the audit log). Internal to src/hub.

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/log.hpp"
#include "core/result.hpp"
#include "hub/access.hpp"
#include "net/http_server.hpp"

namespace airlock::hub {

inline constexpr char kJsonType[] = "application/json";

using net::SendError;

// An unexpected failure of the hub's own storage: logged here, where it is handled.
inline void SendInternal(httplib::Response& res, const Error& e) {
  spdlog::error("{}", e.ToString());
  SendError(res, 500, "UNKNOWN", "internal error", e.ToString());
}

inline void SendJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kJsonType);
}

// The JSON object body of an /api/v1/ request (at most max_size bytes); nullopt after sending
// the 400.
inline std::optional<nlohmann::json> JsonBody(const httplib::Request& req, httplib::Response& res,
                                              std::size_t max_size = 65536) {
  auto body = nlohmann::json::parse(req.body, nullptr, false);
  if (req.body.size() > max_size || !body.is_object()) {
    SendError(res, 400, "INVALID_REQUEST", "invalid request",
              "the body must be a JSON object of at most " + std::to_string(max_size) + " bytes");
    return std::nullopt;
  }
  return body;
}

class ApiGate {
 public:
  virtual ~ApiGate() = default;
  // Whether the request may do p; sends the 401/403 (and audits it) when not. who: the caller.
  virtual bool ApiAllowed(const httplib::Request& req, httplib::Response& res, Permission p,
                          Principal* who) = 0;
  // An audit entry for what who did to target; the result is res.status, the reason the error
  // body's detail unless given.
  virtual void Audit(const httplib::Request& req, const httplib::Response& res,
                     const Principal& who, std::string action, std::string target,
                     std::string reason = "") = 0;
};

}  // namespace airlock::hub
