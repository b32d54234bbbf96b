#pragma once
// The gateway's GET /metrics (docs/gateway.md, "Metrics"): Prometheus text (core/prometheus.hpp)
// with the HTTP responses its server sent, the deliveries from the hub by state and the approvals
// waiting, its rollouts by state and their devices by status, the enrolled devices, the cache's
// size, the work queued in the delivery and fleet services, its two broker connections, and what
// the appenders add (the telemetry outbox's sizes and drops, later). Only numbers the gateway
// has: each is read when Prometheus scrapes, from the store (a few GROUP BY queries), the cache's
// index and the services' counters.
//
// Who may read it: an operator token, or a token made with `airlock-gateway token create --role
// metrics`, which may read nothing else (approvals_api.hpp, AuthorizeMetrics).
//
// Thread-safe; what it is given must outlive it, and it must outlive the server it is installed
// on.

#include <mutex>
#include <vector>

#include "core/prometheus.hpp"
#include "core/result.hpp"
#include "gateway/cache.hpp"
#include "gateway/delivery_service.hpp"
#include "gateway/fleet_service.hpp"
#include "gateway/state_store.hpp"
#include "net/http_server.hpp"
#include "net/mqtt.hpp"

namespace airlock::gateway {

struct GatewayMetricsSources {
  GatewayStateStore* store = nullptr;  // required
  GatewayCache* cache = nullptr;       // required
  // Each of these may be null: its families are then left out.
  DeliveryService* deliveries = nullptr;
  FleetService* fleet = nullptr;
  const net::MqttClient* hub_mqtt = nullptr;      // the cloud broker (the hub's)
  const net::MqttClient* devices_mqtt = nullptr;  // the factory broker (the devices')
};

class GatewayMetrics {
 public:
  explicit GatewayMetrics(GatewayMetricsSources sources);
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  // Serves GET /metrics on server and counts every response server sends (its post-routing
  // handler). For DeviceRegistry::Start's install_api.
  void Install(httplib::Server& server);

  // appender is called on every GET /metrics, after the gateway's own families and the
  // appenders added before it, on the server's thread (so it must be quick and thread-safe).
  // Any thread, any time.
  void AddMetricsAppender(prometheus::MetricsAppender appender);

  // The gateway's families, then the appenders', into out. An error (and nothing of the
  // store's or the cache's appended) when the store or the cache's index cannot be read.
  [[nodiscard]] Status Render(prometheus::MetricsText& out);

 private:
  const GatewayMetricsSources sources_;
  net::HttpCounters http_;
  std::mutex appenders_mu_;
  std::vector<prometheus::MetricsAppender> appenders_;
};

}  // namespace airlock::gateway
