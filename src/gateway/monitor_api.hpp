#pragma once
// The site's own monitor view (docs/gateway.md, "Monitoring at the site"): what the devices
// reported in the last hours, summed per version with a series for charts and the drift alerts,
// from the gateway's memory (monitor::RecentTelemetry). It answers with or without the hub.
//
//   GET /api/v1/monitor                       {"models": [...], "kept": "24h"}
//   GET /api/v1/monitor/M[?since=&step=&device=]
//       {"model", "device", "since_ms", "versions": [...], "series"?, "alerts": [...]}
//
// The shapes are the hub's (docs/hub-api.md, "Monitoring"), site and dropped counters aside.
// Operator and viewer tokens.

#include <httplib.h>

#include "gateway/state_store.hpp"
#include "monitor/recent.hpp"

namespace airlock::gateway {

struct MonitorApiContext {
  GatewayStateStore* store = nullptr;  // the tokens
  const monitor::RecentTelemetry* recent = nullptr;
  std::chrono::milliseconds kept{0};  // how far back recent keeps reports
};

void InstallMonitorApi(httplib::Server& server, MonitorApiContext context);

}  // namespace airlock::gateway
