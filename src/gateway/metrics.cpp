#include "gateway/metrics.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <array>

#include "gateway/approvals_api.hpp"

namespace airlock::gateway {
namespace {

using prometheus::MetricType;

constexpr std::array<DeliveryPhase, 7> kPhases = {
    DeliveryPhase::kHeld,        DeliveryPhase::kReady,  DeliveryPhase::kRejected,
    DeliveryPhase::kDownloading, DeliveryPhase::kFailed, DeliveryPhase::kAvailable,
    DeliveryPhase::kCancelled,
};

constexpr std::array<RolloutState, 5> kRolloutStates = {
    RolloutState::kRunning, RolloutState::kPaused,    RolloutState::kComplete,
    RolloutState::kAborted, RolloutState::kCancelled,
};

constexpr std::array<DeviceStatus, kDeviceStatusCount> kStatuses = {
    DeviceStatus::kPending,    DeviceStatus::kShadowing,    DeviceStatus::kDirected,
    DeviceStatus::kActivating, DeviceStatus::kHealthWindow, DeviceStatus::kDone,
    DeviceStatus::kFailed,     DeviceStatus::kRollingBack,  DeviceStatus::kRolledBack,
};

}  // namespace

GatewayMetrics::GatewayMetrics(GatewayMetricsSources sources) : sources_(sources) {}

void GatewayMetrics::AddMetricsAppender(prometheus::MetricsAppender appender) {
  std::lock_guard lock(appenders_mu_);
  appenders_.push_back(std::move(appender));
}

void GatewayMetrics::Install(httplib::Server& server) {
  http_.Count(server);
  server.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeMetrics(*sources_.store, req, res)) {
      return;
    }
    prometheus::MetricsText out;
    // A store or cache that cannot be read fails the scrape (Prometheus's `up` goes to 0) rather
    // than leaving their families out of an answer that looks whole.
    if (Status rendered = Render(out); !rendered) {
      spdlog::error("metrics: {}", rendered.error().ToString());
      return net::SendError(res, 500, "UNKNOWN", "internal error", rendered.error().message());
    }
    res.status = 200;
    res.set_content(out.Text(), prometheus::kMetricsContentType);
  });
}

Status GatewayMetrics::Render(prometheus::MetricsText& out) {
  AIRLOCK_ASSIGN_OR_RETURN(StateCounts counts, sources_.store->Counts());
  AIRLOCK_ASSIGN_OR_RETURN(CacheUsage cache, sources_.cache->Usage());

  http_.AppendMetrics(out, "gateway");

  out.Family("airlock_gateway_deliveries", MetricType::kGauge,
             "Deliveries the hub offered this gateway, by the state of each");
  for (DeliveryPhase phase : kPhases) {
    auto it = counts.deliveries.find(DeliveryPhaseName(phase));
    out.Sample({{"state", DeliveryPhaseName(phase)}},
               it == counts.deliveries.end() ? std::int64_t{0} : it->second);
  }
  out.Family("airlock_gateway_approvals_pending", MetricType::kGauge,
             "Deliveries waiting for an operator: held offers (offer) and delivered packages "
             "before any device rollout (rollout)");
  out.Sample({{"kind", "offer"}}, counts.offers_pending);
  out.Sample({{"kind", "rollout"}}, counts.rollouts_pending);

  out.Family("airlock_gateway_devices", MetricType::kGauge, "Devices enrolled, by state");
  out.Sample({{"state", "enrolled"}}, counts.devices_enrolled);
  out.Sample({{"state", "revoked"}}, counts.devices_revoked);
  out.Family("airlock_gateway_devices_online", MetricType::kGauge,
             "Enrolled devices whose last online message said they are online");
  out.Sample(counts.devices_online);

  if (sources_.fleet != nullptr) {
    FleetStats fleet = sources_.fleet->Stats();
    out.Family("airlock_gateway_rollouts", MetricType::kGauge, "Device rollouts, by state");
    for (RolloutState state : kRolloutStates) {
      auto it = fleet.rollouts.find(state);
      out.Sample({{"state", RolloutStateName(state)}},
                 it == fleet.rollouts.end() ? std::size_t{0} : it->second);
    }
    out.Family("airlock_gateway_rollout_devices", MetricType::kGauge,
               "Devices of the running and paused rollouts, by status (a device in two "
               "rollouts counts in each)");
    for (DeviceStatus status : kStatuses) {
      out.Sample({{"status", DeviceStatusName(status)}}, fleet.devices.Of(status));
    }
    out.Family("airlock_gateway_rollout_devices_offline", MetricType::kGauge,
               "Devices of the running and paused rollouts that are offline with a step still "
               "to take");
    out.Sample(fleet.devices.offline);
    out.Family("airlock_gateway_fleet_queue_depth", MetricType::kGauge,
               "Work waiting for the fleet service (device messages, approvals, operator "
               "commands)");
    out.Sample(fleet.queued);
  }
  if (sources_.deliveries != nullptr) {
    out.Family("airlock_gateway_delivery_queue_depth", MetricType::kGauge,
               "Messages from the hub waiting for the delivery service");
    out.Sample(sources_.deliveries->QueueDepth());
    out.Family("airlock_gateway_downloads_running", MetricType::kGauge,
               "Package downloads from the hub running now");
    out.Sample(sources_.deliveries->DownloadsRunning());
  }

  out.Family("airlock_gateway_cache_bytes", MetricType::kGauge, "Bytes of the cache's blobs");
  out.Sample(cache.committed_bytes);
  out.Family("airlock_gateway_cache_limit_bytes", MetricType::kGauge,
             "The most bytes of blobs the cache keeps (cache.max_bytes)");
  out.Sample(cache.max_bytes);
  out.Family("airlock_gateway_cache_pinned_bytes", MetricType::kGauge,
             "Bytes of blobs that pinned packages need (never evicted)");
  out.Sample(cache.pinned_bytes);
  out.Family("airlock_gateway_cache_blobs", MetricType::kGauge, "Blobs in the cache");
  out.Sample(cache.blobs);
  out.Family("airlock_gateway_cache_downloads", MetricType::kGauge,
             "Blob downloads not committed yet (running, or kept to be resumed)");
  out.Sample(cache.downloads);
  out.Family("airlock_gateway_cache_download_bytes", MetricType::kGauge,
             "Bytes of the open downloads on disk");
  out.Sample(cache.download_bytes);

  if (sources_.hub_mqtt != nullptr || sources_.devices_mqtt != nullptr) {
    out.Family("airlock_mqtt_connected", MetricType::kGauge,
               "Connected to the MQTT broker (1) or not (0): the hub's (connection=hub) and the "
               "devices' (connection=devices)");
    if (sources_.hub_mqtt != nullptr) {
      out.Sample({{"connection", "hub"}}, sources_.hub_mqtt->IsConnected() ? 1 : 0);
    }
    if (sources_.devices_mqtt != nullptr) {
      out.Sample({{"connection", "devices"}}, sources_.devices_mqtt->IsConnected() ? 1 : 0);
    }
  }

  std::vector<prometheus::MetricsAppender> hooks;
  {
    std::lock_guard lock(appenders_mu_);
    hooks = appenders_;
  }
  for (const auto& hook : hooks) {
    hook(out);
  }
  return {};
}

}  // namespace airlock::gateway
