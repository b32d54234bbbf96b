#pragma once
// HubClient: a client of airlock-hub's registry REST API (/api/v1/: models, versions, releases,
// channels, deployments, gateways), for the `airlock` commands a release manager runs.
//
// Requests go through RegistryClient::Request (one libcurl wrapper for /v2/ and /api/v1/), with
// the hub token as a bearer token. Answers that list or show things come back as the hub's JSON
// (the commands print it as is with --json); what the CLI computes on (releases, channel states,
// the outcome of a channel PUT) is parsed into the structs below. It has the calls the commands
// make; releases reach the hub with `airlock push` (the release referrer), not through here.
//
// Errors: a refusal carries the hub's own reason (errors[0].detail, else its message) and the
// HTTP status, and says what to do next; codes: 400/401/403 → kInvalidArgument, 404 →
// kNotFound, 409 → kAlreadyExists, 422 → kVerification, 5xx → kUnavailable, an unreachable hub →
// kUnavailable. The token never appears in an error.
//
// Not thread-safe (one libcurl handle); every call blocks until the hub answers.

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "net/registry_client.hpp"
#include "trust/documents.hpp"

namespace airlock::net {

// Where the hub is and how to authenticate.
struct HubOptions {
  // "http://127.0.0.1:7400", "https://hub.example.com" or "host[:port]" (http:// on loopback,
  // else https://). Plain http to a host that is not this machine only when spelled http://.
  std::string url;
  std::string token;    // "alk_…"; empty: anonymous
  std::string ca_file;  // PEM bundle to verify an https hub with instead of the system's
};

// A release the hub holds for one model version (GET …/releases).
struct HubRelease {
  std::string version;
  std::uint64_t release_counter = 0;
  Digest id = Digest::FromHex(std::string(64, '0'));  // trust::ReleaseId of the document
  std::int64_t signatures = 0;
  std::string uploaded_by;
  std::string uploaded_at;
};

// A channel document the hub stores, current or pending.
struct HubChannelDocument {
  trust::SignedDocument document = trust::SignedDocument::Wrap({{"_type", "channel"}});
  trust::Channel channel;  // the document's body, parsed (not verified: the hub did that)
  std::uint64_t version = 0;
  std::int64_t signatures = 0;  // pending only: valid signatures so far
  std::string by;               // updated_by or proposed_by
  std::string at;               // updated_at or proposed_at
};

// GET /api/v1/models/{model}/channels/{channel}.
struct HubChannelState {
  std::string model;
  std::string channel;
  std::string signing_role;
  std::int64_t threshold = 1;
  std::optional<HubChannelDocument> current;
  std::optional<HubChannelDocument> pending;
  nlohmann::json raw;  // the whole answer
};

// The answer to a channel PUT.
struct ChannelPutOutcome {
  bool current = false;  // the threshold is met (200); else stored as the pending proposal (202)
  std::uint64_t version = 0;
  std::int64_t signatures = 0;
  std::int64_t threshold = 0;
  nlohmann::json raw;
};

// The URL, credentials file key and token for a hub, as the `airlock` commands take them.
struct HubAddress {
  std::string base_url;  // "http://127.0.0.1:7400"
  std::string registry;  // "127.0.0.1:7400": the key `airlock login` saves tokens under
};
// Parses HubOptions::url; kInvalidArgument saying what a good one looks like.
[[nodiscard]] Result<HubAddress> ParseHubUrl(std::string_view url);

class HubClient {
 public:
  // kInvalidArgument for an unusable URL.
  [[nodiscard]] static Result<std::unique_ptr<HubClient>> Create(const HubOptions& options);

  const std::string& base_url() const { return base_url_; }
  const std::string& registry() const { return registry_; }
  // The OCI client the requests go through, with the same address and token: for pulling
  // packages from the hub's /v2/.
  RegistryClient& registry_client() { return *http_; }

  // GET /api/v1/models[?q=search] → {"models": […]}.
  [[nodiscard]] Result<nlohmann::json> ListModels(std::string_view search = {});
  // GET /api/v1/models/{model}/versions → {"versions": […]}, newest first.
  [[nodiscard]] Result<nlohmann::json> ListVersions(std::string_view model);

  // GET /api/v1/models/{model}/releases.
  [[nodiscard]] Result<std::vector<HubRelease>> ListReleases(std::string_view model);

  // GET /api/v1/models/{model}/channels/{channel}.
  [[nodiscard]] Result<HubChannelState> GetChannel(std::string_view model,
                                                   std::string_view channel);
  // PUT /api/v1/models/{model}/channels/{channel} with a signed channel document.
  [[nodiscard]] Result<ChannelPutOutcome> PutChannel(std::string_view model,
                                                     std::string_view channel,
                                                     const trust::SignedDocument& document);

  // POST /api/v1/deployments with request (model, channel, gateways, selector, strategy) → the
  // deployment.
  [[nodiscard]] Result<nlohmann::json> CreateDeployment(const nlohmann::json& request);
  // GET /api/v1/deployments[?model=&state=] → {"deployments": […]}.
  [[nodiscard]] Result<nlohmann::json> ListDeployments(std::string_view model = {},
                                                       std::string_view state = {});
  // GET /api/v1/deployments/{id} → the deployment with its history.
  [[nodiscard]] Result<nlohmann::json> GetDeployment(std::string_view id);
  // POST /api/v1/deployments/{id}/cancel → the deployment.
  [[nodiscard]] Result<nlohmann::json> CancelDeployment(std::string_view id,
                                                        std::string_view reason);
  // POST /api/v1/deployments/{id}/pause (pause) or …/resume → the deployment.
  [[nodiscard]] Result<nlohmann::json> PauseDeployment(std::string_view id, bool pause,
                                                       std::string_view reason);
  // POST /api/v1/deployments/preview with a create request → what it would do, creating nothing.
  [[nodiscard]] Result<nlohmann::json> PreviewDeployment(const nlohmann::json& request);

  // GET /api/v1/monitor/{model}?since=&site=&device= → the monitor view (docs/hub-api.md);
  // empty filters are left out.
  [[nodiscard]] Result<nlohmann::json> GetMonitor(std::string_view model, std::string_view since,
                                                  std::string_view site, std::string_view device);
  // GET /api/v1/events?since=&model= → {"events": […]} (drift alerts, newest first).
  [[nodiscard]] Result<nlohmann::json> ListEvents(std::string_view since, std::string_view model);

  // GET /api/v1/captures?model=&since=&site=&device=&after_ms=&after_id=&limit= → one page,
  // {"captures": […], "next": {"after_ms", "after_id"} or null}.
  [[nodiscard]] Result<nlohmann::json> ListCaptures(std::string_view model, std::string_view since,
                                                    std::string_view site, std::string_view device,
                                                    std::int64_t after_ms, std::string_view after_id,
                                                    std::size_t limit);

  // GET /api/v1/gateways → {"gateways": […]}.
  [[nodiscard]] Result<nlohmann::json> ListGateways();
  // POST /api/v1/gateways/tokens → {"token", "expires_at"}.
  [[nodiscard]] Result<nlohmann::json> CreateGatewayToken(std::string_view expires_in);

 private:
  HubClient(std::unique_ptr<RegistryClient> http, std::string base_url, std::string registry,
            bool have_token);
  // Sends the request and parses a JSON answer with one of the wanted statuses; any other
  // status becomes an error about what (e.g. "promoting …").
  // body: JSON text, sent when set.
  Result<nlohmann::json> Call(std::string_view method, const std::string& path,
                              const std::string& what, const std::optional<std::string>& body,
                              std::initializer_list<long> wanted, long* status = nullptr);

  std::unique_ptr<RegistryClient> http_;
  std::string base_url_;
  std::string registry_;
  bool have_token_ = false;
};

// Percent-encodes everything but RFC 3986's unreserved characters (for path segments and
// query values).
std::string UrlEncode(std::string_view text);

}  // namespace airlock::net
