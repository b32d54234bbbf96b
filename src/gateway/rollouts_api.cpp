#include "gateway/rollouts_api.hpp"

#include <httplib.h>

#include <memory>

#include "gateway/approvals_api.hpp"
#include "net/http_server.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
constexpr char kJson[] = "application/json";
constexpr char kDeployment[] = R"((dep-[0-9a-f]{8,64}))";

}  // namespace

json RolloutView(const Rollout& r, bool details) {
  json v = Summarize(r).ToJson();
  v["created_at"] = FormatRfc3339(r.created_at);
  v["updated_at"] = FormatRfc3339(r.updated_at);
  if (!details) {
    return v;
  }
  v["plan"] = {{"selector", r.plan.selector}, {"strategy", r.plan.strategy.ToJson()}};
  json rows = json::array();
  for (const RolloutDevice& d : r.devices) {
    json row = {{"id", d.id},
                {"wave", d.wave + 1},
                {"status", DeviceStatusName(d.status)},
                {"online", d.online},
                {"previous", d.previous ? json{{"version", d.previous->version},
                                               {"release", d.previous->release}}
                                        : json(nullptr)},
                {"directive_version", d.directive_version}};
    if (d.health_until) {
      row["health_until"] = FormatRfc3339(*d.health_until);
    }
    if (d.agreement) {
      row["agreement"] = {{"compared", d.agreement->compared}, {"agreed", d.agreement->agreed}};
    }
    if (!d.reason.empty()) {
      row["reason"] = d.reason;
    }
    rows.push_back(std::move(row));
  }
  v["by_device"] = std::move(rows);
  return v;
}

void InstallRolloutsApi(httplib::Server& server, RolloutsContext context) {
  auto ctx = std::make_shared<RolloutsContext>(context);

  server.Get("/api/v1/rollouts", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    std::vector<Rollout> all = ctx->fleet->Rollouts();
    json list = json::array();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      list.push_back(RolloutView(*it, false));
    }
    res.set_content(json{{"rollouts", list}}.dump(), kJson);
  });

  server.Get(std::string("/api/v1/rollouts/") + kDeployment, [ctx](const httplib::Request& req,
                                                                   httplib::Response& res) {
    if (!AuthorizeOperator(*ctx->store, req, res)) {
      return;
    }
    auto r = ctx->fleet->Get(req.matches[1].str());
    if (!r) {
      return net::SendError(res, 404, "NOT_FOUND", "no such rollout", r.error().message());
    }
    res.set_content(RolloutView(*r, true).dump(), kJson);
  });

  server.Post(std::string("/api/v1/rollouts/") + kDeployment + "/(pause|resume|cancel)",
              [ctx](const httplib::Request& req, httplib::Response& res) {
                auto who = AuthorizeOperator(*ctx->store, req, res);
                if (!who) {
                  return;
                }
                std::string verb = req.matches[2].str();
                FleetService::Command command = verb == "pause"    ? FleetService::Command::kPause
                                                : verb == "resume" ? FleetService::Command::kResume
                                                                   : FleetService::Command::kCancel;
                auto r = ctx->fleet->Control(req.matches[1].str(), command, *who);
                if (!r) {
                  ErrorCode code = r.error().code();
                  int status = code == ErrorCode::kNotFound          ? 404
                               : code == ErrorCode::kInvalidArgument ? 409
                                                                     : 500;
                  return net::SendError(res, status,
                                        status == 404   ? "NOT_FOUND"
                                        : status == 409 ? "CONFLICT"
                                                        : "UNKNOWN",
                                        status == 404   ? "no such rollout"
                                        : status == 409 ? "the rollout cannot " + verb
                                                        : "internal error",
                                        r.error().message());
                }
                res.set_content(RolloutView(*r, true).dump(), kJson);
              });
}

}  // namespace airlock::gateway
