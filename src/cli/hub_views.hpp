#pragma once
// How the hub commands print what the hub answered (the JSON of its REST API, docs/cli.md):
// aligned tables, one-line summaries, and for empty lists what to do next. Pure functions over
// the answer, tolerant of fields the hub leaves out (they print as "-").

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace airlock::cli {

// `airlock models ls`: NAME, VERSIONS, LATEST, CHANNELS, DESCRIPTION. hub: host[:port] for the
// hint printed when there are none.
std::string ModelsView(const nlohmann::json& answer, const std::string& search,
                       const std::string& hub);
// `airlock versions MODEL`: VERSION, PUSHED, BY, PLATFORMS, RELEASE, CHANNELS, LINEAGE.
std::string VersionsView(const nlohmann::json& answer, const std::string& model,
                         const std::string& hub);
// `airlock deployments ls`: ID, MODEL, CHANNEL, RELEASE, STATE, GATEWAYS, CREATED.
std::string DeploymentsView(const nlohmann::json& answer, bool filtered);
// `airlock deployments show ID`: the spec, then the history as TIME, WHO, ACTION, DETAIL.
std::string DeploymentView(const nlohmann::json& deployment);
// `airlock status ID`: state, what is deployed where, per-gateway delivery states when the hub
// reports them ("deliveries", as DeliveriesTable; an older "gateways_status" as key=value
// details), and the last `last` history entries.
std::string StatusView(const nlohmann::json& deployment, std::size_t last);
// The deployment's "deliveries" (GET /api/v1/deployments/ID) as a table: GATEWAY, STATE,
// PROGRESS (bytes done / total), ATTEMPT, RETRIES, UPDATED, LAST ERROR.
std::string DeliveriesTable(const nlohmann::json& deliveries);
// "1.5 MiB / 3.0 MiB (50%)"; "-" when total is 0.
std::string ByteProgress(std::uint64_t done, std::uint64_t total);
// Whether the deployment is complete, failed or cancelled (it changes no more).
bool DeploymentIsFinal(const nlohmann::json& deployment);
// "deployment d-1: vibration-anomaly production (channel version 4, release 1.1.0) to 2
// gateway(s), state pending".
std::string DeploymentSummary(const nlohmann::json& deployment);
// `airlock deploy … --dry-run` (POST /api/v1/deployments/preview): the release it resolves, then
// GATEWAY, DEVICES (selected in its last inventory), PLATFORMS, NO PLATFORM (selected devices
// whose platform the release lacks), WAVES (devices per wave), INVENTORY OF; and a total row.
std::string DeploymentPreviewView(const nlohmann::json& preview);
// `airlock gateways ls`: NAME, ID, LABELS, REGISTERED, LAST SEEN, DEVICES.
std::string GatewaysView(const nlohmann::json& answer, const std::string& hub);

// `airlock monitor MODEL` (GET /api/v1/monitor/MODEL): VERSION, DEVICES, REQUESTS, ERRORS,
// REQ/S, P50/P95/P99 MS, DRIFT; then per version its drift per feature and its predictions; the
// drift alerts; what senders had to drop.
std::string MonitorView(const nlohmann::json& answer);

// "sha256:0123456789ab" for "sha256:0123456789abcdef…": 12 hex digits.
std::string ShortDigest(const std::string& digest);
// A JSON value as one cell: strings as they are, null as "-", the rest as compact JSON.
std::string Cell(const nlohmann::json& value);

}  // namespace airlock::cli
