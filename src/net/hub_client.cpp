#include "net/hub_client.hpp"

#include <algorithm>
#include <cctype>

#include "trust/canonical_json.hpp"

namespace airlock::net {

using nlohmann::json;

namespace {

// The hub's answers are lists of models, versions and deployments: small, but not tiny.
constexpr std::uint64_t kMaxAnswer = 16ULL << 20;

// The hub's reason for a refusal: "CODE: detail" (or its message) from {"errors": [...]}, else
// the start of its body.
std::string HubSays(const HttpAnswer& a) {
  auto j = json::parse(a.body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("errors") && j["errors"].is_array() &&
      !j["errors"].empty() && j["errors"][0].is_object()) {
    const json& e = j["errors"][0];
    std::string code = trust::StringOr(e, "code");
    std::string why = trust::StringOr(e, "detail");
    if (why.empty()) {
      why = trust::StringOr(e, "message");
    }
    return code.empty() ? why : code + ": " + why;
  }
  std::string text = a.body.substr(0, 200);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.pop_back();
  }
  for (char& c : text) {
    if (!std::isprint(static_cast<unsigned char>(c))) {
      c = '?';
    }
  }
  return text;
}

Error RefusalError(const HttpAnswer& a, const std::string& what, bool have_token) {
  std::string says = HubSays(a);
  std::string status = "HTTP " + std::to_string(a.status) + (says.empty() ? "" : ", " + says);
  switch (a.status) {
    case 401:
      return Error(ErrorCode::kInvalidArgument,
                   what + ": " +
                       (have_token ? "the hub refused the token (" + status +
                                         "); log in again with `airlock login HOST:PORT "
                                         "--token-stdin` or set AIRLOCK_REGISTRY_TOKEN"
                                   : "the hub wants a token (" + status +
                                         "); log in with `airlock login HOST:PORT --token-stdin` "
                                         "or set AIRLOCK_REGISTRY_TOKEN"));
    case 403:
      return Error(ErrorCode::kInvalidArgument,
                   what + ": the hub does not allow this token to do that (" + status +
                       "); ask the hub's administrator for a token with that role");
    case 404:
      return Error(ErrorCode::kNotFound, what + ": not found (" + status + ")");
    case 409:
      return Error(ErrorCode::kAlreadyExists, what + ": the hub refused it (" + status + ")");
    case 422:
      return Error(ErrorCode::kVerification, what + ": the hub refused it (" + status + ")");
    default:
      break;
  }
  if (a.status >= 500) {
    return Error(ErrorCode::kUnavailable,
                 what + ": the hub failed (" + status + "); try again, or look at its log");
  }
  return Error(ErrorCode::kInvalidArgument, what + ": the hub refused it (" + status + ")");
}

Result<HubRelease> ParseRelease(const json& j) {
  HubRelease r;
  r.version = trust::StringOr(j, "version");
  auto id = Digest::Parse(trust::StringOr(j, "id"));
  if (r.version.empty() || !id || !j.contains("release_counter") ||
      !j["release_counter"].is_number_unsigned()) {
    return Fail(ErrorCode::kCorrupt,
                "the hub listed a release without a version, release_counter or id");
  }
  r.id = *id;
  r.release_counter = j["release_counter"].get<std::uint64_t>();
  r.signatures = trust::IntOr(j, "signatures");
  r.uploaded_by = trust::StringOr(j, "uploaded_by");
  r.uploaded_at = trust::StringOr(j, "uploaded_at");
  return r;
}

Result<std::optional<HubChannelDocument>> ParseChannelDocument(const json& j, bool pending) {
  if (j.is_null()) {
    return std::optional<HubChannelDocument>();
  }
  std::string which = pending ? "pending" : "current";
  if (!j.is_object() || !j.contains("document") || !j["document"].is_object()) {
    return Fail(ErrorCode::kCorrupt, "the hub's " + which + " channel entry has no document");
  }
  HubChannelDocument d;
  AIRLOCK_ASSIGN_OR_RETURN(d.document,
                           WithContext(trust::SignedDocument::Parse(j["document"].dump()),
                                       "the hub's " + which + " channel document"));
  AIRLOCK_ASSIGN_OR_RETURN(d.channel, WithContext(trust::Channel::FromJson(d.document.body()),
                                                  "the hub's " + which + " channel document"));
  d.version = d.channel.version;
  d.signatures =
      trust::IntOr(j, "signatures", static_cast<std::int64_t>(d.document.signatures().size()));
  d.by = trust::StringOr(j, pending ? "proposed_by" : "updated_by");
  d.at = trust::StringOr(j, pending ? "proposed_at" : "updated_at");
  return std::optional<HubChannelDocument>(std::move(d));
}

}  // namespace

std::string UrlEncode(std::string_view text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<HubAddress> ParseHubUrl(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument,
                "bad hub address \"" + std::string(url) + "\": " + why +
                    " (want http://HOST:PORT or https://HOST[:PORT], e.g. http://127.0.0.1:7400)");
  };
  std::string_view rest = url;
  std::string scheme;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    scheme = std::string(rest.substr(0, sep));
    rest = rest.substr(sep + 3);
    if (scheme != "http" && scheme != "https") {
      return bad("the scheme must be http or https");
    }
  }
  while (!rest.empty() && rest.back() == '/') {
    rest.remove_suffix(1);
  }
  if (rest.empty()) {
    return bad("no host");
  }
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return bad("give only the scheme, host and port");
  }
  HubAddress address;
  address.registry = std::string(rest);
  bool loopback = IsLoopbackRegistry(address.registry);
  if (scheme.empty()) {
    scheme = loopback ? "http" : "https";
  }
  address.base_url = scheme + "://" + address.registry;
  return address;
}

Result<std::unique_ptr<HubClient>> HubClient::Create(const HubOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(HubAddress address, ParseHubUrl(options.url));
  RegistryOptions ro;
  ro.registry = address.registry;
  ro.plain_http = address.base_url.starts_with("http://");
  ro.https = address.base_url.starts_with("https://");
  ro.ca_file = options.ca_file;
  ro.credentials.token = options.token;
  ro.server_name = "hub";
  ro.connect_timeout = std::chrono::seconds(10);
  AIRLOCK_ASSIGN_OR_RETURN(auto http, WithContext(RegistryClient::Create(std::move(ro)),
                                                  "the hub address " + options.url));
  return std::unique_ptr<HubClient>(
      new HubClient(std::move(http), address.base_url, address.registry, !options.token.empty()));
}

HubClient::HubClient(std::unique_ptr<RegistryClient> http, std::string base_url,
                     std::string registry, bool have_token)
    : http_(std::move(http)),
      base_url_(std::move(base_url)),
      registry_(std::move(registry)),
      have_token_(have_token) {}

Result<json> HubClient::Call(std::string_view method, const std::string& path,
                             const std::string& what, const std::optional<std::string>& body,
                             std::initializer_list<long> wanted, long* status) {
  auto answer = body ? http_->Request(method, path, *body, "application/json", kMaxAnswer)
                     : http_->Request(method, path, {}, {}, kMaxAnswer);
  if (!answer) {
    return Fail(std::move(answer.error()).WithContext(what));
  }
  if (status != nullptr) {
    *status = answer->status;
  }
  if (std::find(wanted.begin(), wanted.end(), answer->status) == wanted.end()) {
    if (answer->status >= 200 && answer->status < 300) {
      return Fail(ErrorCode::kUnsupported,
                  what + ": the hub answered HTTP " + std::to_string(answer->status) +
                      ", which this airlock does not expect there (is the hub a newer version?)");
    }
    return Fail(RefusalError(*answer, what, have_token_));
  }
  if (answer->body.empty()) {
    return json(nullptr);
  }
  auto j = json::parse(answer->body, nullptr, false);
  if (j.is_discarded()) {
    return Fail(ErrorCode::kCorrupt,
                what + ": the hub's answer is not JSON (is " + base_url_ + " an airlock-hub?)");
  }
  return j;
}

Result<json> HubClient::ListModels(std::string_view search) {
  std::string path = "/api/v1/models";
  if (!search.empty()) {
    path += "?q=" + UrlEncode(search);
  }
  return Call("GET", path, "listing the models on " + base_url_, std::nullopt, {200});
}

Result<json> HubClient::ListVersions(std::string_view model) {
  return Call("GET", "/api/v1/models/" + UrlEncode(model) + "/versions",
              "listing the versions of " + std::string(model) + " on " + base_url_, std::nullopt,
              {200});
}

Result<std::vector<HubRelease>> HubClient::ListReleases(std::string_view model) {
  std::string what = "listing the releases of " + std::string(model) + " on " + base_url_;
  AIRLOCK_ASSIGN_OR_RETURN(json j, Call("GET", "/api/v1/models/" + UrlEncode(model) + "/releases",
                                        what, std::nullopt, {200}));
  if (!j.is_object() || !j.contains("releases") || !j["releases"].is_array()) {
    return Fail(ErrorCode::kCorrupt, what + ": the answer has no \"releases\" list");
  }
  std::vector<HubRelease> out;
  for (const auto& r : j["releases"]) {
    AIRLOCK_ASSIGN_OR_RETURN(HubRelease release, WithContext(ParseRelease(r), what));
    out.push_back(std::move(release));
  }
  return out;
}

Result<HubChannelState> HubClient::GetChannel(std::string_view model, std::string_view channel) {
  std::string what =
      "reading channel " + std::string(channel) + " of " + std::string(model) + " on " + base_url_;
  AIRLOCK_ASSIGN_OR_RETURN(
      json j, Call("GET", "/api/v1/models/" + UrlEncode(model) + "/channels/" + UrlEncode(channel),
                   what, std::nullopt, {200}));
  if (!j.is_object()) {
    return Fail(ErrorCode::kCorrupt, what + ": the answer is not an object");
  }
  HubChannelState state;
  state.model = trust::StringOr(j, "model", std::string(model));
  state.channel = trust::StringOr(j, "channel", std::string(channel));
  state.signing_role = trust::StringOr(j, "signing_role");
  state.threshold = trust::IntOr(j, "threshold", 1);
  AIRLOCK_ASSIGN_OR_RETURN(
      state.current, WithContext(ParseChannelDocument(j.value("current", json()), false), what));
  AIRLOCK_ASSIGN_OR_RETURN(
      state.pending, WithContext(ParseChannelDocument(j.value("pending", json()), true), what));
  state.raw = std::move(j);
  return state;
}

Result<ChannelPutOutcome> HubClient::PutChannel(std::string_view model, std::string_view channel,
                                                const trust::SignedDocument& document) {
  std::string what =
      "storing channel " + std::string(channel) + " of " + std::string(model) + " on " + base_url_;
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, document.Serialize());
  long status = 0;
  AIRLOCK_ASSIGN_OR_RETURN(
      json j, Call("PUT", "/api/v1/models/" + UrlEncode(model) + "/channels/" + UrlEncode(channel),
                   what, text, {200, 201, 202}, &status));
  ChannelPutOutcome out;
  out.current = status != 202 && trust::StringOr(j, "state", "current") == "current";
  out.version = static_cast<std::uint64_t>(trust::IntOr(j, "version"));
  out.signatures = trust::IntOr(j, "signatures");
  out.threshold = trust::IntOr(j, "threshold");
  out.raw = std::move(j);
  return out;
}

Result<json> HubClient::CreateDeployment(const json& request) {
  return Call("POST", "/api/v1/deployments",
              "creating a deployment of " + trust::StringOr(request, "model") + " on " + base_url_,
              request.dump(), {200, 201});
}

Result<json> HubClient::ListDeployments(std::string_view model, std::string_view state) {
  std::string query;
  if (!model.empty()) {
    query += "model=" + UrlEncode(model);
  }
  if (!state.empty()) {
    query += (query.empty() ? "" : "&") + std::string("state=") + UrlEncode(state);
  }
  return Call("GET", "/api/v1/deployments" + (query.empty() ? "" : "?" + query),
              "listing the deployments on " + base_url_, std::nullopt, {200});
}

Result<json> HubClient::GetDeployment(std::string_view id) {
  return Call("GET", "/api/v1/deployments/" + UrlEncode(id),
              "reading deployment " + std::string(id) + " on " + base_url_, std::nullopt, {200});
}

namespace {

// "?a=1&b=2" from the pairs whose value is not empty ("" when none is).
std::string QueryString(std::initializer_list<std::pair<const char*, std::string_view>> params) {
  std::string out;
  for (const auto& [key, value] : params) {
    if (!value.empty()) {
      out += (out.empty() ? "?" : "&") + std::string(key) + "=" + UrlEncode(value);
    }
  }
  return out;
}

}  // namespace

Result<json> HubClient::GetMonitor(std::string_view model, std::string_view since,
                                   std::string_view site, std::string_view device) {
  return Call("GET",
              "/api/v1/monitor/" + UrlEncode(model) +
                  QueryString({{"since", since}, {"site", site}, {"device", device}}),
              "reading the monitoring of " + std::string(model) + " on " + base_url_, std::nullopt,
              {200});
}

Result<json> HubClient::ListEvents(std::string_view since, std::string_view model) {
  return Call("GET", "/api/v1/events" + QueryString({{"since", since}, {"model", model}}),
              "listing the events on " + base_url_, std::nullopt, {200});
}

Result<json> HubClient::ListCaptures(std::string_view model, std::string_view since,
                                     std::string_view site, std::string_view device,
                                     std::int64_t after_ms, std::string_view after_id,
                                     std::size_t limit) {
  std::string after_ms_text = after_id.empty() ? "" : std::to_string(after_ms);
  std::string limit_text = std::to_string(limit);
  return Call("GET",
              "/api/v1/captures" + QueryString({{"model", model},
                                                {"since", since},
                                                {"site", site},
                                                {"device", device},
                                                {"after_ms", after_ms_text},
                                                {"after_id", after_id},
                                                {"limit", limit_text}}),
              "listing the captures of " + std::string(model) + " on " + base_url_, std::nullopt,
              {200});
}

Result<json> HubClient::CancelDeployment(std::string_view id, std::string_view reason) {
  json body = json::object();
  if (!reason.empty()) {
    body["reason"] = reason;
  }
  return Call("POST", "/api/v1/deployments/" + UrlEncode(id) + "/cancel",
              "cancelling deployment " + std::string(id) + " on " + base_url_, body.dump(), {200});
}

Result<json> HubClient::PauseDeployment(std::string_view id, bool pause,
                                        std::string_view reason) {
  json body = json::object();
  if (!reason.empty()) {
    body["reason"] = reason;
  }
  return Call("POST", "/api/v1/deployments/" + UrlEncode(id) + (pause ? "/pause" : "/resume"),
              std::string(pause ? "pausing" : "resuming") + " deployment " + std::string(id) +
                  " on " + base_url_,
              body.dump(), {200});
}

Result<json> HubClient::PreviewDeployment(const json& request) {
  return Call("POST", "/api/v1/deployments/preview",
              "previewing a deployment of " + trust::StringOr(request, "model") + " on " +
                  base_url_,
              request.dump(), {200});
}

Result<json> HubClient::ListGateways() {
  return Call("GET", "/api/v1/gateways", "listing the gateways on " + base_url_, std::nullopt,
              {200});
}

Result<json> HubClient::CreateGatewayToken(std::string_view expires_in) {
  json body = json::object();
  if (!expires_in.empty()) {
    body["expires_in"] = expires_in;
  }
  return Call("POST", "/api/v1/gateways/tokens",
              "making a gateway registration token on " + base_url_, body.dump(), {200, 201});
}

}  // namespace airlock::net
