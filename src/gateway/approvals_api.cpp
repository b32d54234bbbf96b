#include "gateway/approvals_api.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cctype>

#include "core/fs.hpp"
#include "delivery/protocol.hpp"
#include "net/http_server.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
constexpr char kJson[] = "application/json";
constexpr char kSamplesType[] = "application/vnd.airlock.samples.v1.tar";

// Lineage metrics and sample sets of a package in the cache, when it is complete there.
json TestResults(const DeliveryRecord& r, GatewayCache& cache) {
  if (r.repository.empty() || r.phase != DeliveryPhase::kAvailable) {
    return nullptr;
  }
  auto offer = delivery::DeliveryOffer::FromJson(r.offer);
  if (!offer) {
    return nullptr;
  }
  auto release = trust::Release::FromJson(offer->release.body());
  if (!release) {
    return nullptr;
  }
  auto index = cache.GetManifest(r.repository, release->index_digest.ToString());
  if (!index) {
    return nullptr;
  }
  json out = json::object();
  json ij = json::parse(index->bytes, nullptr, false);
  if (ij.is_object() && ij.contains("annotations") && ij["annotations"].is_object()) {
    const json& a = ij["annotations"];
    if (a.contains("ai.airlock.lineage.metrics") && a["ai.airlock.lineage.metrics"].is_string()) {
      json metrics =
          json::parse(a["ai.airlock.lineage.metrics"].get<std::string>(), nullptr, false);
      if (!metrics.is_discarded()) {
        out["metrics"] = metrics;
      }
    }
    if (a.contains("ai.airlock.lineage.training-run")) {
      out["training_run"] = a["ai.airlock.lineage.training-run"];
    }
  }
  // Whether the variants carry sample inputs and expected outputs (the validation an agent
  // runs before activating).
  std::size_t samples = 0;
  if (ij.is_object() && ij.contains("manifests") && ij["manifests"].is_array()) {
    for (const json& entry : ij["manifests"]) {
      if (!entry.contains("digest") || !entry["digest"].is_string()) {
        continue;
      }
      auto m = cache.GetManifest(r.repository, entry["digest"].get<std::string>());
      if (!m) {
        continue;
      }
      json mj = json::parse(m->bytes, nullptr, false);
      if (mj.is_object() && mj.contains("layers") && mj["layers"].is_array()) {
        for (const json& layer : mj["layers"]) {
          if (layer.value("mediaType", "") == kSamplesType) {
            ++samples;
          }
        }
      }
    }
  }
  out["sample_layers"] = samples;
  return out;
}

}  // namespace

std::string ApprovalState(const DeliveryRecord& r) {
  switch (r.approval) {
    case Approval::kNone:
      return "";
    case Approval::kOfferPending:
      return "held-offer";
    case Approval::kOfferApproved:
      return "offer-approved";
    case Approval::kRolloutPending:
      return "awaiting-approval";
    case Approval::kRolloutApproved:
      return "approved";
    case Approval::kRejected:
      return "rejected";
  }
  return "";
}

json ApprovalView(const DeliveryRecord& r, const ApprovalsContext& context, bool details) {
  json v = {{"id", r.id},
            {"deployment", r.deployment},
            {"model", r.model},
            {"version", r.version},
            {"hub", context.hub_url},
            {"source", r.source.empty() ? "hub" : r.source},
            {"state", ApprovalState(r)},
            {"delivery", DeliveryPhaseName(r.phase)},
            {"size", r.bytes_total},
            {"platforms", r.platforms},
            {"updated_at", FormatRfc3339(r.updated_at)}};
  if (!r.decided_by.empty()) {
    v["decided_by"] = r.decided_by;
    v["decided_at"] = FormatRfc3339(r.decided_at);
    v["comment"] = r.comment;
  }
  if (!details) {
    return v;
  }
  v["received_at"] = FormatRfc3339(r.created_at);
  v["bytes_done"] = r.bytes_done;
  if (!r.reason.empty()) {
    v["reject_reason"] = r.reason;
  }
  if (!r.failure.empty()) {
    v["failure"] = r.failure;
  }
  if (!r.message.empty()) {
    v["message"] = r.message;
  }
  if (auto offer = delivery::DeliveryOffer::FromJson(r.offer)) {
    v["offer_expires"] = FormatRfc3339(offer->expires);
    json signers = json::array();
    for (const trust::Signature& s : offer->release.signatures()) {
      json roles = json::array();
      if (context.root != nullptr) {
        for (const auto& [role, spec] : context.root->roles) {
          if (std::find(spec.keyids.begin(), spec.keyids.end(), s.keyid) != spec.keyids.end()) {
            roles.push_back(role);
          }
        }
      }
      signers.push_back({{"keyid", s.keyid}, {"roles_in_root", roles}});
    }
    v["signed_by"] = signers;
    if (auto release = trust::Release::FromJson(offer->release.body())) {
      v["release_counter"] = release->release_counter;
      v["release_created"] = FormatRfc3339(release->created);
      v["release_expires"] = FormatRfc3339(release->expires);
      v["index_digest"] = release->index_digest.ToString();
    }
  }
  v["test_results"] = context.cache != nullptr ? TestResults(r, *context.cache) : json(nullptr);
  return v;
}

namespace {

// The holder of the request's `Authorization: Bearer alkop_…`, or nullopt with a 401 in res.
std::optional<TokenHolder> Authenticate(GatewayStateStore& store, const httplib::Request& req,
                                        httplib::Response& res) {
  std::string header = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (!header.starts_with(kBearer)) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"airlock-gateway\"");
    net::SendError(res, 401, "UNAUTHORIZED", "authentication required",
                   "send an operator token (airlock-gateway token create) as "
                   "Authorization: Bearer alkop_…");
    return std::nullopt;
  }
  auto holder = store.CheckToken(header.substr(kBearer.size()));
  if (!holder) {
    if (holder.error().code() != ErrorCode::kVerification) {
      spdlog::error("operator tokens: {}", holder.error().ToString());
      net::SendError(res, 500, "UNKNOWN", "internal error", holder.error().message());
      return std::nullopt;
    }
    res.set_header("WWW-Authenticate", "Bearer realm=\"airlock-gateway\"");
    net::SendError(res, 401, "UNAUTHORIZED", "authentication required", holder.error().message());
    return std::nullopt;
  }
  return *holder;
}

}  // namespace

std::optional<std::string> AuthorizeOperator(GatewayStateStore& store, const httplib::Request& req,
                                             httplib::Response& res) {
  auto holder = Authenticate(store, req, res);
  if (!holder) {
    return std::nullopt;
  }
  const bool reads = req.method == "GET" || req.method == "HEAD";
  if (holder->scope == TokenScope::kOperator || (reads && holder->scope == TokenScope::kViewer)) {
    return holder->name;
  }
  net::SendError(
      res, 403, "DENIED", "requested access to the resource is denied",
      "the token " + holder->name + " is a " + TokenScopeName(holder->scope) + " token: " +
          (holder->scope == TokenScope::kViewer ? "it may look, not act (an operator token may)"
                                                : "it may only read /metrics"));
  return std::nullopt;
}

void InstallWhoAmI(httplib::Server& server, GatewayStateStore* store) {
  server.Get("/api/v1/whoami", [store](const httplib::Request& req, httplib::Response& res) {
    auto holder = Authenticate(*store, req, res);
    if (holder) {
      res.set_content(json{{"name", holder->name}, {"role", TokenScopeName(holder->scope)}}.dump(),
                      kJson);
    }
  });
}

std::optional<std::string> AuthorizeMetrics(GatewayStateStore& store, const httplib::Request& req,
                                            httplib::Response& res) {
  auto holder = Authenticate(store, req, res);
  return holder ? std::optional<std::string>(holder->name) : std::nullopt;
}

void InstallApprovalsApi(httplib::Server& server, ApprovalsContext context) {
  auto ctx = std::make_shared<ApprovalsContext>(std::move(context));
  auto authorize = [ctx](const httplib::Request& req, httplib::Response& res) {
    return AuthorizeOperator(*ctx->store, req, res);
  };

  server.Get(
      "/api/v1/approvals", [ctx, authorize](const httplib::Request& req, httplib::Response& res) {
        if (!authorize(req, res)) {
          return;
        }
        auto records = ctx->store->List();
        if (!records) {
          return net::SendError(res, 500, "UNKNOWN", "internal error", records.error().message());
        }
        json list = json::array();
        for (const DeliveryRecord& r : *records) {
          if (r.approval != Approval::kNone) {
            list.push_back(ApprovalView(r, *ctx, false));
          }
        }
        res.set_content(json{{"approvals", list}}.dump(), kJson);
      });
  server.Get(R"(/api/v1/approvals/([A-Za-z0-9._-]{1,80}))",
             [ctx, authorize](const httplib::Request& req, httplib::Response& res) {
               if (!authorize(req, res)) {
                 return;
               }
               auto r = ctx->store->Get(req.matches[1].str());
               if (!r) {
                 return net::SendError(res, r.error().code() == ErrorCode::kNotFound ? 404 : 500,
                                       "NOT_FOUND", "no such delivery", r.error().message());
               }
               res.set_content(ApprovalView(*r, *ctx, true).dump(), kJson);
             });
  // The body goes to a file under imports_dir, read from the socket as it comes (bundles are as
  // large as packages), after the token was checked and before anything is verified.
  server.Post("/api/v1/imports", [ctx, authorize](const httplib::Request& req,
                                                  httplib::Response& res,
                                                  const httplib::ContentReader& content) {
    auto who = authorize(req, res);
    if (!who) {
      return;
    }
    if (!req.has_header("Content-Length") || req.is_multipart_form_data()) {
      return net::SendError(res, 411, "INVALID_REQUEST", "length required",
                            "send the bundle as the body, with a Content-Length");
    }
    std::string name = req.has_param("name") ? req.get_param_value("name") : "bundle.tar";
    bool plain = !name.empty() && name.size() <= 128 && name != "." && name != "..";
    for (char c : name) {
      plain = plain &&
              (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
    }
    if (!plain) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                            "name must be a file name of letters, digits, '.', '_' and '-'");
    }
    if (Status made = MakeDirectories(ctx->imports_dir); !made) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", made.error().message());
    }
    auto staging = TempDirectory::Create(ctx->imports_dir / ".upload-XXXXXX");
    if (!staging) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", staging.error().message());
    }
    std::filesystem::path file = staging->path() / name;
    auto out = AtomicFile::Create(file, 0600);
    if (!out) {
      return net::SendError(res, 500, "UNKNOWN", "internal error", out.error().message());
    }
    Status written;
    bool read = content([&](const char* data, std::size_t length) {
      written = out->Write(std::string_view(data, length));
      return static_cast<bool>(written);
    });
    if (!written) {
      return net::SendError(res, 507, "UNKNOWN", "insufficient storage",
                            "the gateway could not keep the upload: " + written.error().message());
    }
    if (!read) {
      return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                            "the upload ended before its Content-Length");
    }
    if (Status committed = out->Commit(); !committed) {
      return net::SendError(res, 507, "UNKNOWN", "insufficient storage",
                            committed.error().message());
    }
    auto r = ctx->service->ImportBundle(file, *who);
    if (!r) {
      ErrorCode code = r.error().code();
      int status = code == ErrorCode::kUnavailable                          ? 507
                   : code == ErrorCode::kIo || code == ErrorCode::kInternal ? 500
                                                                            : 422;
      return net::SendError(res, status, status == 422 ? "DENIED" : "UNKNOWN",
                            "the bundle was not imported", r.error().ToString());
    }
    res.set_content(ApprovalView(*r, *ctx, true).dump(), kJson);
  });
  server.Post(
      R"(/api/v1/approvals/([A-Za-z0-9._-]{1,80})/(approve|reject))",
      [ctx, authorize](const httplib::Request& req, httplib::Response& res) {
        auto who = authorize(req, res);
        if (!who) {
          return;
        }
        std::string comment;
        if (!req.body.empty()) {
          json body = json::parse(req.body, nullptr, false);
          if (!body.is_object() || (body.contains("comment") && !body["comment"].is_string())) {
            return net::SendError(res, 400, "INVALID_REQUEST", "invalid request",
                                  "the body must be {\"comment\": \"…\"}");
          }
          comment = body.value("comment", "");
        }
        bool approve = req.matches[2].str() == "approve";
        auto r = ctx->service->Decide(req.matches[1].str(), approve, *who, comment);
        if (!r) {
          ErrorCode code = r.error().code();
          int status = code == ErrorCode::kNotFound          ? 404
                       : code == ErrorCode::kInvalidArgument ? 409
                                                             : 500;
          return net::SendError(res, status, status == 404 ? "NOT_FOUND" : "CONFLICT",
                                status == 404 ? "no such delivery" : "nothing to decide",
                                r.error().message());
        }
        res.set_content(ApprovalView(*r, *ctx, true).dump(), kJson);
      });
}

}  // namespace airlock::gateway
