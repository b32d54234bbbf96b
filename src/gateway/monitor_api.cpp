#include "gateway/monitor_api.hpp"

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/time.hpp"
#include "gateway/approvals_api.hpp"
#include "monitor/summary.hpp"
#include "net/http_server.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
constexpr char kJson[] = "application/json";

void BadRequest(httplib::Response& res, const std::string& detail) {
  net::SendError(res, 400, "INVALID_REQUEST", "invalid request", detail);
}

}  // namespace

void InstallMonitorApi(httplib::Server& server, MonitorApiContext context) {
  auto ctx = std::make_shared<MonitorApiContext>(context);
  server.Get("/api/v1/monitor", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    res.set_content(
        json{{"models", ctx->recent->Models()}, {"kept", FormatDuration(ctx->kept)}}.dump(), kJson);
  });
  server.Get(R"(/api/v1/monitor/([^/]{1,128}))", [ctx](const httplib::Request& req,
                                                       httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    const auto now = std::chrono::system_clock::now();
    auto since = ParseSince(req.has_param("since") ? req.get_param_value("since") : "1h", now);
    if (!since) {
      return BadRequest(res, "since: " + since.error().message());
    }
    const std::int64_t since_ms = UnixMillis(*since);
    std::int64_t step_ms = 0;
    if (req.has_param("step")) {
      auto step = monitor::ParseStep(req.get_param_value("step"), UnixMillis(now) - since_ms);
      if (!step) {
        return BadRequest(res, step.error().message());
      }
      step_ms = *step;
    }
    const std::string model = req.matches[1].str();
    const std::string device = req.get_param_value("device");
    auto reports = ctx->recent->Reports(model, device, since_ms);
    json versions = json::array();
    for (const auto& v : monitor::Summarize(model, reports)) {
      versions.push_back(v.ToJson());
    }
    json alerts = json::array();
    for (const auto& a : ctx->recent->Alerts(model, device, since_ms)) {
      alerts.push_back(a.ToJson());
    }
    json out = {{"model", model},
                {"device", device},
                {"since_ms", since_ms},
                {"versions", std::move(versions)},
                {"alerts", std::move(alerts)}};
    if (step_ms > 0) {
      out["series"] = monitor::Series(model, reports, since_ms, step_ms);
    }
    res.set_content(out.dump(), kJson);
  });
}

}  // namespace airlock::gateway
