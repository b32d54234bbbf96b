#pragma once
// The operator's approvals over HTTP (docs/gateway.md, "Approvals"), served beside the device
// registry on the gateway's one HTTP server:
//
//   GET  /api/v1/approvals                 every delivery that needs or had an operator's say
//   GET  /api/v1/approvals/ID              one of them, with the release's signers, its size,
//                                          and the package's test results when it carries them
//   POST /api/v1/approvals/ID/approve      {"comment": "…"} (optional)
//   POST /api/v1/approvals/ID/reject       {"comment": "…"}; a held offer is rejected to the hub
//                                          with reason "operator"
//   POST /api/v1/imports?name=FILE         the body is a bundle (airlock bundle export); verified
//                                          and loaded as DeliveryService::ImportBundle says, then
//                                          answered like GET /api/v1/approvals/ID
//
// Every route needs `Authorization: Bearer alkop_…`, an operator token made by
// `airlock-gateway token create` (stored hashed in gateway.db): 401 without or with an unknown
// one, 403 with a metrics token (`token create --role metrics`), which may only read /metrics.
// Errors have the OCI shape {"errors":[{"code","message","detail"}]}.
//
// Thread-safe (httplib's pool calls it); everything it is given must outlive the server.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "gateway/cache.hpp"
#include "gateway/delivery_service.hpp"
#include "gateway/state_store.hpp"
#include "trust/documents.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}

namespace airlock::gateway {

struct ApprovalsContext {
  GatewayStateStore* store = nullptr;
  DeliveryService* service = nullptr;
  GatewayCache* cache = nullptr;
  const trust::Root* root = nullptr;
  std::string hub_url;
  std::filesystem::path imports_dir;  // where uploaded bundles are kept while they are imported
};

// What an operator sees of one delivery (the API's and the CLI's JSON).
nlohmann::json ApprovalView(const DeliveryRecord& r, const ApprovalsContext& context,
                            bool details);

// The state an operator reads: held-offer, offer-approved, awaiting-approval, approved,
// rejected, or "" when the delivery never needed a decision.
std::string ApprovalState(const DeliveryRecord& r);

void InstallApprovalsApi(httplib::Server& server, ApprovalsContext context);

// The name of the operator token the request carries as `Authorization: Bearer alkop_…`, or
// nullopt with the answer already in res: 401 without a token or with an unknown one, 403 for a
// metrics token (it may only read /metrics) and for a viewer token on anything but GET and HEAD.
std::optional<std::string> AuthorizeOperator(GatewayStateStore& store, const httplib::Request& req,
                                             httplib::Response& res);
// GET /api/v1/whoami: the token's name and role (any role), for the console.
void InstallWhoAmI(httplib::Server& server, GatewayStateStore* store);
// The same for GET /metrics, which operator and metrics tokens may read.
std::optional<std::string> AuthorizeMetrics(GatewayStateStore& store, const httplib::Request& req,
                                            httplib::Response& res);

}  // namespace airlock::gateway
