#pragma once
// The rollouts over HTTP (docs/gateway.md, "Rolling out to devices"), on the gateway's one HTTP
// server:
//
//   GET  /api/v1/rollouts                      every rollout's summary, newest first
//   GET  /api/v1/rollouts/DEP                  one, with its plan and a row per device
//   POST /api/v1/rollouts/DEP/pause            directs no one new until resumed
//   POST /api/v1/rollouts/DEP/resume
//   POST /api/v1/rollouts/DEP/cancel           ends it for good; devices stay as they are
//
// Every route needs `Authorization: Bearer alkop_…`, as the approvals do. A command that does not
// apply (pausing a paused rollout, anything on a finished one) is 409 saying why; an unknown
// deployment 404. Errors have the OCI shape. Thread-safe; the context must outlive the server.

#include <nlohmann/json.hpp>

#include "gateway/fleet_service.hpp"
#include "gateway/rollout.hpp"
#include "gateway/state_store.hpp"

namespace httplib {
class Server;
}

namespace airlock::gateway {

struct RolloutsContext {
  GatewayStateStore* store = nullptr;  // the operator tokens
  FleetService* fleet = nullptr;
};

// What the API and the CLI show of a rollout: its FleetSummary's JSON with created_at and
// updated_at; with details also "plan" {selector, strategy} and "by_device", one row per device
// {id, wave (from 1), status, online, previous, directive_version, health_until?, agreement?,
// reason?}.
nlohmann::json RolloutView(const Rollout& r, bool details);

void InstallRolloutsApi(httplib::Server& server, RolloutsContext context);

}  // namespace airlock::gateway
