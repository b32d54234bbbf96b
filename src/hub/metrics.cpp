#include "hub/metrics.hpp"

#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "delivery/state_machine.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;
using prometheus::MetricType;

// What a deployment's state may be: RollUpDeployment's four, and cancelled (by a person).
constexpr std::array<std::string_view, 5> kDeploymentStates = {"pending", "delivering", "complete",
                                                               "failed", "cancelled"};

constexpr std::array<delivery::DeliveryState, 8> kDeliveryStates = {
    delivery::DeliveryState::kOffered,   delivery::DeliveryState::kReady,
    delivery::DeliveryState::kGranted,   delivery::DeliveryState::kDownloading,
    delivery::DeliveryState::kAvailable, delivery::DeliveryState::kRejected,
    delivery::DeliveryState::kFailed,    delivery::DeliveryState::kCancelled,
};

// The states first (zeros included), then any other the database holds, so nothing is lost.
template <typename Names>
void ByState(prometheus::MetricsText& out, const Names& states,
             const std::map<std::string, std::int64_t>& counts) {
  std::set<std::string, std::less<>> written;
  for (std::string_view state : states) {
    auto it = counts.find(std::string(state));
    out.Sample({{"state", state}}, it == counts.end() ? std::int64_t{0} : it->second);
    written.emplace(state);
  }
  for (const auto& [state, n] : counts) {
    if (!written.contains(state)) {
      out.Sample({{"state", state}}, n);
    }
  }
}

template <typename Names>
std::size_t IndexOf(const Names& names, std::string_view name) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) {
      return i;
    }
  }
  return names.size();
}

}  // namespace

Status AppendRegistryMetrics(prometheus::MetricsText& out, store::RegistryStore& registry) {
  AIRLOCK_ASSIGN_OR_RETURN(store::RegistryCounts counts, registry.Counts());
  out.Family("airlock_hub_deployments", MetricType::kGauge, "Deployments by state");
  ByState(out, kDeploymentStates, counts.deployments);

  std::vector<std::string> delivery_states;
  for (delivery::DeliveryState s : kDeliveryStates) {
    delivery_states.emplace_back(delivery::DeliveryStateName(s));
  }
  out.Family("airlock_hub_deliveries", MetricType::kGauge,
             "Deliveries (one per deployment and target gateway) by state");
  ByState(out, delivery_states, counts.deliveries);

  out.Family("airlock_hub_gateways", MetricType::kGauge, "Gateways registered with the hub");
  out.Sample(counts.gateways.size());

  out.Family("airlock_hub_gateway_deliveries", MetricType::kGauge,
             "Deliveries not final yet, per target gateway and state: offered and ready wait for "
             "the gateway or for a grant, granted and downloading are in flight");
  std::set<std::string> gateways(counts.gateways.begin(), counts.gateways.end());
  for (const auto& [key, n] : counts.active_deliveries) {
    gateways.insert(key.first);  // a delivery to a gateway no longer registered
  }
  for (const std::string& gateway : gateways) {
    for (delivery::DeliveryState s : kDeliveryStates) {
      if (delivery::IsFinal(s)) {
        continue;
      }
      std::string state = delivery::DeliveryStateName(s);
      auto it = counts.active_deliveries.find({gateway, state});
      out.Sample({{"gateway", gateway}, {"state", state}},
                 it == counts.active_deliveries.end() ? std::int64_t{0} : it->second);
    }
  }
  return {};
}

void AppendFleetMetrics(prometheus::MetricsText& out,
                        const std::map<std::string, delivery::FleetReport>& reports,
                        TimePoint now) {
  using delivery::kFleetDeviceStatuses;
  using delivery::kFleetRolloutStates;
  out.Family("airlock_hub_fleet_rollouts", MetricType::kGauge,
             "Device rollouts in each gateway's last fleet report, by state");
  for (const auto& [gateway, report] : reports) {
    std::array<std::int64_t, kFleetRolloutStates.size()> by_state{};
    for (const json& rollout : report.rollouts) {
      json state = rollout.value("state", json());
      if (state.is_string()) {
        std::size_t i = IndexOf(kFleetRolloutStates, state.get<std::string>());
        if (i < by_state.size()) {
          ++by_state[i];
        }
      }
    }
    for (std::size_t i = 0; i < by_state.size(); ++i) {
      out.Sample({{"gateway", gateway}, {"state", kFleetRolloutStates[i]}}, by_state[i]);
    }
  }

  out.Family("airlock_hub_fleet_devices", MetricType::kGauge,
             "Devices in each gateway's running and paused rollouts, by status, as its last fleet "
             "report says (a device in two rollouts counts in each)");
  for (const auto& [gateway, report] : reports) {
    std::array<std::int64_t, kFleetDeviceStatuses.size()> by_status{};
    for (const json& rollout : report.rollouts) {
      json state = rollout.value("state", json());
      if (state != "running" && state != "paused") {
        continue;
      }
      json devices = rollout.value("devices", json::object());
      if (!devices.is_object()) {
        continue;
      }
      for (std::size_t i = 0; i < by_status.size(); ++i) {
        json n = devices.value(std::string(kFleetDeviceStatuses[i]), json());
        if (n.is_number_unsigned()) {
          by_status[i] += n.get<std::int64_t>();
        }
      }
    }
    for (std::size_t i = 0; i < by_status.size(); ++i) {
      out.Sample({{"gateway", gateway}, {"status", kFleetDeviceStatuses[i]}}, by_status[i]);
    }
  }

  out.Family("airlock_hub_fleet_report_age_seconds", MetricType::kGauge,
             "Seconds since each gateway sent its last fleet report (by its sent_at, the "
             "gateway's clock)");
  for (const auto& [gateway, report] : reports) {
    out.Sample(
        {{"gateway", gateway}},
        std::chrono::duration_cast<std::chrono::seconds>(now - report.envelope.sent_at).count());
  }
}

void AppendOrchestratorMetrics(prometheus::MetricsText& out,
                               const DeliveryOrchestrator& orchestrator,
                               const net::MqttClient& mqtt, TimePoint now) {
  out.Family("airlock_mqtt_connected", MetricType::kGauge,
             "Connected to the MQTT broker (1) or not (0)");
  out.Sample(mqtt.IsConnected() ? 1 : 0);
  out.Family("airlock_hub_orchestrator_queue_depth", MetricType::kGauge,
             "Work waiting for the delivery orchestrator (gateways' messages, deployments made or "
             "cancelled)");
  out.Sample(orchestrator.QueueDepth());
  out.Family("airlock_hub_orchestrator_dropped_total", MetricType::kCounter,
             "Work the delivery orchestrator dropped because its queue was full (the deliveries' "
             "timers recover from it)");
  out.Sample(orchestrator.DroppedWork());
  AppendFleetMetrics(out, orchestrator.FleetReports(), now);
}

}  // namespace airlock::hub
