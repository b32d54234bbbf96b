#include "hub/telemetry_api.hpp"

#include <algorithm>

#include "core/time.hpp"
#include "monitor/summary.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

// ?since= as Unix ms: a duration back from now ("1h", "30m") or an RFC 3339 time; 1h when
// absent. nullopt after sending the 400.
std::optional<std::int64_t> Since(const httplib::Request& req, httplib::Response& res) {
  std::string since = req.has_param("since") ? req.get_param_value("since") : "1h";
  auto t = ParseSince(since, std::chrono::system_clock::now());
  if (!t) {
    SendError(res, 400, "INVALID_REQUEST", "invalid request", "since: " + t.error().message());
    return std::nullopt;
  }
  return UnixMillis(*t);
}

TelemetryQuery Query(const httplib::Request& req, std::string model, std::int64_t since) {
  return TelemetryQuery{.model = std::move(model),
                        .site = req.get_param_value("site"),
                        .device = req.get_param_value("device"),
                        .since_ms = since};
}

json AlertsJson(const std::vector<DriftAlert>& alerts) {
  json out = json::array();
  for (const auto& a : alerts) {
    out.push_back(a.ToJson());
  }
  return out;
}

// ?step= as ms; 0 when absent (no series). nullopt after sending the 400.
std::optional<std::int64_t> Step(const httplib::Request& req, httplib::Response& res,
                                 std::int64_t since_ms, std::int64_t now_ms) {
  if (!req.has_param("step")) {
    return 0;
  }
  auto step = monitor::ParseStep(req.get_param_value("step"), now_ms - since_ms);
  if (!step) {
    SendError(res, 400, "INVALID_REQUEST", "invalid request", step.error().message());
    return std::nullopt;
  }
  return *step;
}

}  // namespace

void TelemetryApi::Routes(httplib::Server& s) {
  s.Post(R"(/api/v1/gateways/([^/]+)/telemetry)",
         [this](const httplib::Request& req, httplib::Response& res) {
           Ingest(req, res, req.matches[1]);
         });
  s.Get(R"(/api/v1/monitor/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    Monitor(req, res, req.matches[1]);
  });
  s.Get("/api/v1/events",
        [this](const httplib::Request& req, httplib::Response& res) { Events(req, res); });
  s.Get("/api/v1/captures",
        [this](const httplib::Request& req, httplib::Response& res) { Captures(req, res); });
}

void TelemetryApi::Ingest(const httplib::Request& req, httplib::Response& res,
                          const std::string& gateway) {
  Principal who;
  if (!gate_.ApiAllowed(req, res, Permission::kReportTelemetry, &who)) {
    return;
  }
  auto g = registry_.GetGateway(gateway);
  if (!g) {
    if (g.error().code() == ErrorCode::kNotFound) {
      return SendError(res, 404, "GATEWAY_UNKNOWN", "not found", g.error().message());
    }
    return SendInternal(res, g.error());
  }
  if (who.role == Role::kGateway && who.name != g->token_name) {
    return SendError(res, 403, "DENIED", "requested access to the resource is denied",
                     "the credential " + who.name + " belongs to another gateway than " + gateway);
  }
  auto batch = monitor::TelemetryBatch::Parse(req.body);
  if (!batch) {
    return SendError(res, 400, "INVALID_REQUEST", "invalid request", batch.error().ToString());
  }
  auto result = store_.Ingest(gateway, *batch, UnixMillis(std::chrono::system_clock::now()) / 1000);
  if (!result) {
    return SendInternal(res, result.error());
  }
  for (const auto& [id, why] : result->rejected) {
    spdlog::warn("telemetry from {}: record {} rejected: {}", gateway, id, why);
  }
  for (const auto& a : result->alerts) {
    spdlog::warn("drift alert: {} {} at {}/{} on {} (PSI {:.3f})", a.model, a.version, a.site,
                 a.device, a.feature, a.psi.value_or(0.0));
  }
  SendJson(res, 200, result->ToJson());
}

std::optional<std::int64_t> TelemetryApi::Read(const httplib::Request& req, httplib::Response& res,
                                               Permission p) {
  Principal who;
  if (!gate_.ApiAllowed(req, res, p, &who)) {
    return std::nullopt;
  }
  return Since(req, res);
}

void TelemetryApi::Monitor(const httplib::Request& req, httplib::Response& res,
                           const std::string& model) {
  auto since = Read(req, res, Permission::kReadRegistry);
  if (!since) {
    return;
  }
  TelemetryQuery q = Query(req, model, *since);
  auto step = Step(req, res, q.since_ms, UnixMillis(std::chrono::system_clock::now()));
  if (!step) {
    return;
  }
  constexpr std::size_t kMaxReports = 200000;
  auto reports = store_.Reports(q, kMaxReports);
  auto alerts = reports ? store_.Alerts(q) : Result<std::vector<DriftAlert>>(Fail(reports.error()));
  auto sources =
      alerts ? store_.Sources(q.site) : Result<std::vector<SourceCounters>>(Fail(alerts.error()));
  if (!sources) {
    return SendInternal(res, sources.error());
  }
  json versions = json::array();
  for (const auto& v : monitor::Summarize(model, *reports)) {
    versions.push_back(v.ToJson());
  }
  json dropped = json::array();
  for (const auto& s : *sources) {
    const auto& d = s.counters.dropped;
    if (d[0] + d[1] + d[2] > 0 || s.counters.disk_full > 0) {
      json entry = s.counters.ToJson();
      entry["site"] = s.site;
      entry["source"] = s.source;
      entry["updated"] = FormatRfc3339(TimePoint(std::chrono::seconds(s.updated)));
      dropped.push_back(std::move(entry));
    }
  }
  json out = {{"model", model},
              {"site", q.site},
              {"device", q.device},
              {"since_ms", q.since_ms},
              // More reports than kMaxReports in the window: the summary holds the newest only.
              {"truncated", reports->size() == kMaxReports},
              {"versions", std::move(versions)},
              {"alerts", AlertsJson(*alerts)},
              {"dropped", std::move(dropped)}};
  if (*step > 0) {
    out["series"] = monitor::Series(model, *reports, q.since_ms, *step);
  }
  SendJson(res, 200, out);
}

void TelemetryApi::Events(const httplib::Request& req, httplib::Response& res) {
  auto since = Read(req, res, Permission::kReadRegistry);
  if (!since) {
    return;
  }
  auto alerts = store_.Alerts(Query(req, req.get_param_value("model"), *since), 500);
  if (!alerts) {
    return SendInternal(res, alerts.error());
  }
  SendJson(res, 200, {{"events", AlertsJson(*alerts)}});
}

void TelemetryApi::Captures(const httplib::Request& req, httplib::Response& res) {
  auto since = Read(req, res, Permission::kReadCaptures);
  if (!since) {
    return;
  }
  std::string model = req.get_param_value("model");
  if (model.empty()) {
    return SendError(res, 400, "INVALID_REQUEST", "invalid request", "?model= is required");
  }
  std::int64_t after_ms = 0;
  std::size_t limit = 100;
  try {
    if (req.has_param("after_ms")) {
      after_ms = std::stoll(req.get_param_value("after_ms"));
    }
    if (req.has_param("limit")) {
      limit = std::clamp<std::size_t>(std::stoul(req.get_param_value("limit")), 1, 1000);
    }
  } catch (const std::exception&) {
    return SendError(res, 400, "INVALID_REQUEST", "invalid request",
                     "after_ms and limit must be whole numbers");
  }
  std::string after_id = req.get_param_value("after_id");
  auto page = store_.Captures(Query(req, model, *since), after_ms, after_id, limit);
  if (!page) {
    return SendInternal(res, page.error());
  }
  json captures = json::array();
  for (const auto& c : *page) {
    json capture = json::parse(c.payload, nullptr, false);
    captures.push_back({{"id", c.id}, {"site", c.site}, {"at_ms", c.at_ms}, {"capture", capture}});
  }
  json next = nullptr;
  if (page->size() == limit) {
    next = {{"after_ms", page->back().at_ms}, {"after_id", page->back().id}};
  }
  SendJson(res, 200, {{"captures", std::move(captures)}, {"next", std::move(next)}});
}

}  // namespace airlock::hub
