#pragma once
// What the hub's GET /metrics says beyond its HTTP counters (docs/hub.md, "Metrics"), as
// Prometheus families appended to a MetricsText. Only numbers the hub has: the registry's
// database (deployments, deliveries, gateways) and, when it runs the delivery orchestrator, its
// queue, its broker connection and the fleet reports the gateways last sent.
//
// Every state a family is counted by is written, zeros included, so that a series does not
// vanish when its count falls to zero. Functions, thread-safe as what they read is.

#include <map>
#include <string>

#include "core/prometheus.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/protocol.hpp"
#include "hub/orchestrator.hpp"
#include "net/mqtt.hpp"
#include "store/registry_store.hpp"

namespace airlock::hub {

// airlock_hub_deployments{state}, airlock_hub_deliveries{state}, airlock_hub_gateways and, per
// registered gateway, airlock_hub_gateway_deliveries{gateway,state} (the deliveries it has not
// finished: offered, ready, granted, downloading). The database's counts: hubs sharing one
// PostgreSQL database report the same numbers. kIo when the database cannot be read (nothing is
// appended then).
[[nodiscard]] Status AppendRegistryMetrics(prometheus::MetricsText& out,
                                           store::RegistryStore& registry);

// Per gateway that sent a fleet report: airlock_hub_fleet_rollouts{gateway,state} (the rollouts
// in the report, at most delivery::kMaxFleetRollouts, by state),
// airlock_hub_fleet_devices{gateway,status} (the devices of its running and paused rollouts by
// status; a device in two rollouts counts in each) and airlock_hub_fleet_report_age_seconds
// (now minus the report's sent_at, the gateway's clock). Only the protocol's state and status
// names are counted (delivery::kFleetRolloutStates, kFleetDeviceStatuses).
void AppendFleetMetrics(prometheus::MetricsText& out,
                        const std::map<std::string, delivery::FleetReport>& reports, TimePoint now);

// The orchestrator's: airlock_mqtt_connected, airlock_hub_orchestrator_queue_depth,
// airlock_hub_orchestrator_dropped_total, then AppendFleetMetrics of its reports.
void AppendOrchestratorMetrics(prometheus::MetricsText& out,
                               const DeliveryOrchestrator& orchestrator,
                               const net::MqttClient& mqtt, TimePoint now);

}  // namespace airlock::hub
