#include "gateway/cli.hpp"

#include <httplib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/daemon.hpp"
#include "core/exit_codes.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "gateway/approvals_api.hpp"
#include "gateway/broker_config.hpp"
#include "gateway/cache.hpp"
#include "gateway/config.hpp"
#include "gateway/layout_import.hpp"
#include "gateway/registry.hpp"
#include "gateway/serve.hpp"
#include "gateway/state_store.hpp"
#include "net/http_server.hpp"
#include "trust/root_store.hpp"

namespace airlock::gateway {
namespace {

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-gateway: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

// "repository:tag" (the tag after the last colon, so that a registry host:port cannot be
// mistaken for one).
Result<PackageRef> ParseRef(const std::string& text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() ||
      text.find('/', colon) != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + text + "\" is not REPOSITORY:TAG (e.g. models/vibration-anomaly:1.0.0)");
  }
  return PackageRef{text.substr(0, colon), text.substr(colon + 1)};
}

std::string Mib(std::uint64_t bytes) {
  char out[32];
  std::snprintf(out, sizeof(out), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return out;
}

int List(GatewayCache& cache) {
  auto packages = cache.ListPackages();
  auto usage = cache.Usage();
  if (!packages || !usage) {
    return Report(!packages ? packages.error() : usage.error());
  }
  std::printf("%-40s %-12s %-10s %-10s %s\n", "PACKAGE", "STATE", "SIZE", "MISSING", "PINNED BY");
  for (const CachedPackage& p : *packages) {
    std::string pins;
    for (const std::string& owner : p.pinned_by) {
      pins += (pins.empty() ? "" : ",") + owner;
    }
    std::printf("%-40s %-12s %-10s %-10s %s\n", p.ref.ToString().c_str(),
                p.complete ? "complete" : "incomplete", Mib(p.bytes).c_str(),
                Mib(p.missing_bytes).c_str(), pins.empty() ? "-" : pins.c_str());
  }
  std::printf("cache: %s of %s used, %s pinned, %s in open downloads\n",
              Mib(usage->committed_bytes).c_str(), Mib(usage->max_bytes).c_str(),
              Mib(usage->pinned_bytes).c_str(), Mib(usage->download_bytes).c_str());
  return kExitOk;
}

int ServeRegistry(GatewayCache& cache, const RegistryOptions& options, StopSignals& signals) {
  auto registry = DeviceRegistry::Start(cache, options);
  if (!registry) {
    return Report(registry.error());
  }
  std::printf("airlock-gateway: serving %s read-only on http://%s:%d/v2/\n",
              cache.dir().string().c_str(), options.address.c_str(), (*registry)->port());
  std::fflush(stdout);
  signals.Wait();
  (*registry)->Stop();
  return kExitOk;
}

Result<GatewayConfig> ConfigFrom(const std::string& path) {
  if (path.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "--config FILE is required (`airlock-gateway config default` prints a start)");
  }
  return LoadGatewayConfig(path);
}

// The certificate commands (tls-cert, broker-config): body with the gateway's configuration and
// its device CA; the exit code.
int WithDeviceCa(const std::string& config_path,
                 const std::function<Status(const GatewayConfig&, const pki::CertificateAuthority&,
                                            TimePoint)>& body) {
  SetupLogging("warn");
  auto config = ConfigFrom(config_path);
  if (!config) {
    return Report(config.error());
  }
  SystemClock clock;
  auto ca = OpenDeviceCa(*config, clock.Now());
  if (!ca) {
    return Report(ca.error());
  }
  Status done = body(*config, *ca, clock.Now());
  return done ? kExitOk : Report(done.error());
}

// The operator token for the approvals commands: $AIRLOCK_GATEWAY_TOKEN, else the token file.
Result<std::string> OperatorToken(const std::string& token_file) {
  if (const char* env = std::getenv("AIRLOCK_GATEWAY_TOKEN"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  auto text = ReadFile(token_file, 4096);
  if (!text) {
    return Fail(ErrorCode::kInvalidArgument,
                "no operator token: set AIRLOCK_GATEWAY_TOKEN or pass --token-file (" +
                    text.error().message() + ")");
  }
  std::string token = *text;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
    token.pop_back();
  }
  return token;
}

void PrintApproval(const nlohmann::json& a) {
  auto s = [&](const char* k) {
    return a.contains(k) && a[k].is_string() ? a[k].get<std::string>() : std::string("-");
  };
  std::printf("id:          %s\n", s("id").c_str());
  std::printf("state:       %s (delivery %s)\n", s("state").c_str(), s("delivery").c_str());
  std::printf("model:       %s %s\n", s("model").c_str(), s("version").c_str());
  if (s("source") == "hub" || s("source") == "-") {
    std::printf("from:        hub %s, deployment %s\n", s("hub").c_str(), s("deployment").c_str());
  } else {
    std::printf("from:        %s, deployment %s\n", s("source").c_str(), s("deployment").c_str());
  }
  std::printf("size:        %s (%s)\n", Mib(a.value("size", std::uint64_t{0})).c_str(),
              a.value("platforms", nlohmann::json::array()).dump().c_str());
  if (a.contains("release_counter")) {
    std::printf("release:     counter %llu, created %s, expires %s\n",
                static_cast<unsigned long long>(a["release_counter"].get<std::uint64_t>()),
                s("release_created").c_str(), s("release_expires").c_str());
  }
  for (const auto& signer : a.value("signed_by", nlohmann::json::array())) {
    std::printf("signed by:   %s %s\n", signer.value("keyid", "").c_str(),
                signer.value("roles_in_root", nlohmann::json::array()).dump().c_str());
  }
  if (a.contains("test_results") && !a["test_results"].is_null()) {
    std::printf("tests:       %s\n", a["test_results"].dump().c_str());
  } else {
    std::printf("tests:       (known once the package is delivered)\n");
  }
  if (a.contains("decided_by")) {
    std::printf("decided:     by %s at %s: %s\n", s("decided_by").c_str(), s("decided_at").c_str(),
                s("comment").c_str());
  }
  if (a.contains("message")) {
    std::printf("message:     %s\n", s("message").c_str());
  }
}

// The gateway's JSON answer to show as a table, or nullopt when it was printed as it came (with
// --json, or when it is not JSON).
std::optional<nlohmann::json> AnswerToShow(const std::string& body, bool as_json) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (as_json || j.is_discarded()) {
    std::printf("%s\n", body.c_str());
    return std::nullopt;
  }
  return j;
}

// The CA an https:// gateway's certificate must chain to (--ca); "" = the system's CAs.
std::string g_gateway_ca;  // NOLINT: set once from the command line

// A client of the running gateway's API; over https, its certificate is verified.
std::unique_ptr<httplib::Client> GatewayClient(const std::string& gateway) {
  auto client = std::make_unique<httplib::Client>(gateway);
  if (gateway.starts_with("https://")) {
    client->enable_server_certificate_verification(true);
    if (!g_gateway_ca.empty()) {
      client->set_ca_cert_path(g_gateway_ca.c_str());
    }
  }
  return client;
}

// One call to the running gateway's operator API with the operator token: kExitOk with the
// answer's body in body, or the exit code after the error was printed.
int CallGateway(const std::string& gateway, const std::string& token_file,
                const std::string& method, const std::string& path, const nlohmann::json& request,
                std::string& body) {
  auto token = OperatorToken(token_file);
  if (!token) {
    return Report(token.error());
  }
  auto gateway_client = GatewayClient(gateway);
  httplib::Client& client = *gateway_client;
  client.set_connection_timeout(10);
  client.set_read_timeout(30);
  httplib::Headers headers = {{"Authorization", "Bearer " + *token}};
  httplib::Result r = method == "GET"
                          ? client.Get(path, headers)
                          : client.Post(path, headers, request.dump(), "application/json");
  if (!r) {
    return Report(Error(ErrorCode::kUnavailable, "cannot reach the gateway at " + gateway + ": " +
                                                     httplib::to_string(r.error())));
  }
  if (r->status != 200 && r->status != 201) {
    std::fprintf(stderr, "airlock-gateway: error: the gateway answered %d: %s\n", r->status,
                 net::ErrorDetail(r->body).c_str());
    return kExitFailure;
  }
  body = r->body;
  return kExitOk;
}

int Approvals(const std::string& gateway, const std::string& token_file, const std::string& verb,
              const std::string& id, const std::string& comment, bool as_json) {
  std::string body;
  int called =
      verb == "ls" ? CallGateway(gateway, token_file, "GET", "/api/v1/approvals", {}, body)
      : verb == "show"
          ? CallGateway(gateway, token_file, "GET", "/api/v1/approvals/" + id, {}, body)
          : CallGateway(gateway, token_file, "POST", "/api/v1/approvals/" + id + "/" + verb,
                        nlohmann::json{{"comment", comment}}, body);
  if (called != kExitOk) {
    return called;
  }
  auto shown = AnswerToShow(body, as_json);
  if (!shown) {
    return kExitOk;
  }
  const nlohmann::json& j = *shown;
  if (verb == "ls") {
    std::printf("%-40s %-18s %-28s %-10s %s\n", "ID", "STATE", "MODEL", "SIZE", "DEPLOYMENT");
    for (const auto& a : j.value("approvals", nlohmann::json::array())) {
      std::string model = a.value("model", "") + " " + a.value("version", "");
      std::printf("%-40s %-18s %-28s %-10s %s\n", a.value("id", "").c_str(),
                  a.value("state", "").c_str(), model.c_str(),
                  Mib(a.value("size", std::uint64_t{0})).c_str(),
                  a.value("deployment", "").c_str());
    }
    return kExitOk;
  }
  PrintApproval(j);
  return kExitOk;
}

// airlock-gateway devices token | ls | revoke | label, through the running gateway's API.
int Devices(const std::string& gateway, const std::string& token_file, const std::string& verb,
            const std::string& id, const std::vector<std::string>& labels,
            const std::string& expires_in, bool as_json) {
  std::string body;
  int called = kExitOk;
  if (verb == "token") {
    nlohmann::json request = {{"labels", nlohmann::json::object()}, {"expires_in", expires_in}};
    for (const std::string& label : labels) {
      auto eq = label.find('=');
      if (eq == std::string::npos) {
        return Report(
            Error(ErrorCode::kInvalidArgument, "--label wants KEY=VALUE, not '" + label + "'"));
      }
      request["labels"][label.substr(0, eq)] = label.substr(eq + 1);
    }
    called = CallGateway(gateway, token_file, "POST", "/api/v1/devices/tokens", request, body);
  } else if (verb == "ls") {
    called = CallGateway(gateway, token_file, "GET", "/api/v1/devices", {}, body);
  } else if (verb == "label") {
    nlohmann::json request = {{"set", nlohmann::json::object()},
                              {"remove", nlohmann::json::array()}};
    for (const std::string& change : labels) {
      auto eq = change.find('=');
      if (eq != std::string::npos) {
        request["set"][change.substr(0, eq)] = change.substr(eq + 1);
      } else if (change.size() > 1 && change.back() == '-') {
        request["remove"].push_back(change.substr(0, change.size() - 1));
      } else {
        return Report(Error(ErrorCode::kInvalidArgument,
                            "a label change is KEY=VALUE or KEY-, not '" + change + "'"));
      }
    }
    called = CallGateway(gateway, token_file, "POST", "/api/v1/devices/" + id + "/labels", request,
                         body);
  } else {
    called =
        CallGateway(gateway, token_file, "POST", "/api/v1/devices/" + id + "/revoke", {}, body);
  }
  if (called != kExitOk) {
    return called;
  }
  auto shown = AnswerToShow(body, as_json);
  if (!shown) {
    return kExitOk;
  }
  const nlohmann::json& j = *shown;
  auto labels_text = [](const nlohmann::json& d) {
    std::string out;
    nlohmann::json pairs = d.value("labels", nlohmann::json::object());
    for (const auto& [k, v] : pairs.items()) {
      out += (out.empty() ? "" : ",") + k + "=" + (v.is_string() ? v.get<std::string>() : "");
    }
    return out.empty() ? std::string("-") : out;
  };
  if (verb == "token") {
    std::printf("%s\n", j.value("token", "").c_str());
    std::fprintf(stderr,
                 "one enrollment, until %s, labels %s; the device sends it with its CSR to "
                 "%s/api/v1/devices/enroll (docs/gateway.md, \"Devices and enrollment\")\n",
                 j.value("expires_at", "").c_str(), labels_text(j).c_str(), gateway.c_str());
    return kExitOk;
  }
  std::vector<nlohmann::json> rows;
  if (verb == "ls") {
    for (const auto& d : j.value("devices", nlohmann::json::array())) {
      rows.push_back(d);
    }
  } else {
    rows.push_back(j);
  }
  // What it last reported (only the list has it): online or when last seen, and each model's
  // active version and phase.
  auto seen_text = [](const nlohmann::json& d) -> std::string {
    if (!d.contains("online")) {
      return "-";
    }
    if (d.value("online", false)) {
      return "online";
    }
    return d.contains("last_seen") && d["last_seen"].is_string()
               ? "seen " + d["last_seen"].get<std::string>()
               : std::string("never");
  };
  auto models_text = [](const nlohmann::json& d) {
    std::string out;
    for (const auto& m : d.value("models", nlohmann::json::array())) {
      std::string version = m.value("active_version", "");
      out += (out.empty() ? "" : ",") + m.value("model", "") + "@" +
             (version.empty() ? "-" : version) + "(" + m.value("phase", "") + ")";
    }
    return out.empty() ? std::string("-") : out;
  };
  std::printf("%-22s %-9s %-22s %-28s %-24s %s\n", "ID", "STATE", "ENROLLED", "SEEN", "LABELS",
              "MODELS");
  for (const auto& d : rows) {
    std::printf("%-22s %-9s %-22s %-28s %-24s %s\n", d.value("id", "").c_str(),
                d.value("state", "").c_str(), d.value("enrolled_at", "").c_str(),
                seen_text(d).c_str(), labels_text(d).c_str(), models_text(d).c_str());
  }
  return kExitOk;
}

// "done 2, health-window 1 of 3 (1 offline)": the non-zero statuses of a DeviceCounts' JSON.
std::string CountsText(const nlohmann::json& counts) {
  static constexpr const char* kOrder[] = {"pending",    "shadowing",     "directed",
                                           "activating", "health-window", "done",
                                           "failed",     "rolling-back",  "rolled-back"};
  std::string out;
  for (const char* status : kOrder) {
    std::uint64_t n = counts.value(status, std::uint64_t{0});
    if (n > 0) {
      out += (out.empty() ? "" : ", ") + std::string(status) + " " + std::to_string(n);
    }
  }
  out += (out.empty() ? "" : " ") + std::string("of ") +
         std::to_string(counts.value("total", std::uint64_t{0}));
  if (std::uint64_t offline = counts.value("offline", std::uint64_t{0}); offline > 0) {
    out += " (" + std::to_string(offline) + " offline)";
  }
  return out;
}

// airlock-gateway rollouts ls | show | pause | resume | cancel, through the running gateway's API.
int Rollouts(const std::string& gateway, const std::string& token_file, const std::string& verb,
             const std::string& deployment, bool as_json) {
  std::string body;
  int called =
      verb == "ls" ? CallGateway(gateway, token_file, "GET", "/api/v1/rollouts", {}, body)
      : verb == "show"
          ? CallGateway(gateway, token_file, "GET", "/api/v1/rollouts/" + deployment, {}, body)
          : CallGateway(gateway, token_file, "POST", "/api/v1/rollouts/" + deployment + "/" + verb,
                        nlohmann::json::object(), body);
  if (called != kExitOk) {
    return called;
  }
  auto shown = AnswerToShow(body, as_json);
  if (!shown) {
    return kExitOk;
  }
  const nlohmann::json& j = *shown;
  auto target = [](const nlohmann::json& r) {
    nlohmann::json release = r.value("target", nlohmann::json::object());
    return r.value("model", "") + " " + release.value("version", "");
  };
  if (verb == "ls") {
    std::printf("%-24s %-28s %-10s %-6s %-9s %s\n", "DEPLOYMENT", "MODEL", "STATE", "WAVE",
                "FAILURES", "DEVICES");
    for (const auto& r : j.value("rollouts", nlohmann::json::array())) {
      std::string wave =
          std::to_string(r.value("wave", 0)) + "/" + std::to_string(r.value("waves", 0));
      std::string failures = std::to_string(r.value("failures", 0)) + "/" +
                             std::to_string(r.value("failure_limit", 0));
      std::printf("%-24s %-28s %-10s %-6s %-9s %s\n", r.value("deployment", "").c_str(),
                  target(r).c_str(), r.value("state", "").c_str(), wave.c_str(), failures.c_str(),
                  CountsText(r.value("devices", nlohmann::json::object())).c_str());
    }
    return kExitOk;
  }
  std::printf("deployment:  %s\n", j.value("deployment", "").c_str());
  std::printf("target:      %s (release %s)\n", target(j).c_str(),
              j.value("target", nlohmann::json::object()).value("release", "").c_str());
  std::printf("state:       %s%s\n", j.value("state", "").c_str(),
              j.contains("reason") ? (": " + j.value("reason", "")).c_str() : "");
  std::printf("wave:        %d of %d\n", j.value("wave", 0), j.value("waves", 0));
  std::printf("failures:    %d (aborts at %d)\n", j.value("failures", 0),
              j.value("failure_limit", 0));
  std::printf("devices:     %s\n",
              CountsText(j.value("devices", nlohmann::json::object())).c_str());
  if (j.contains("plan")) {
    std::printf("plan:        %s\n", j["plan"].dump().c_str());
  }
  std::printf("started:     %s, updated %s\n", j.value("created_at", "").c_str(),
              j.value("updated_at", "").c_str());
  std::printf("\n%-22s %-5s %-14s %-8s %-10s %-9s %s\n", "DEVICE", "WAVE", "STATUS", "ONLINE",
              "PREVIOUS", "DIRECTIVE", "REASON");
  for (const auto& d : j.value("by_device", nlohmann::json::array())) {
    std::string previous = d.contains("previous") && d["previous"].is_object()
                               ? d["previous"].value("version", "")
                               : std::string("-");
    std::printf("%-22s %-5d %-14s %-8s %-10s %-9llu %s\n", d.value("id", "").c_str(),
                d.value("wave", 0), d.value("status", "").c_str(),
                d.value("online", false) ? "yes" : "no", previous.c_str(),
                static_cast<unsigned long long>(d.value("directive_version", std::uint64_t{0})),
                d.value("reason", "").c_str());
  }
  return kExitOk;
}

// airlock-gateway root update/show (trust::RootCommand).
int RootCommand(const std::string& config_path, const std::vector<std::string>& files) {
  auto config = ConfigFrom(config_path);
  if (!config) {
    return Report(config.error());
  }
  SystemClock clock;
  auto text = trust::RootCommand(config->root, config->roots_dir(), files, clock.Now(),
                                 "restart the gateway (systemctl restart airlock-gateway) to use "
                                 "it and send it to the devices");
  if (!text) {
    return Report(text.error());
  }
  std::fputs(text->c_str(), stdout);
  return 0;
}

// airlock-gateway import: streams a bundle to the running gateway, which verifies and loads it.
int Import(const std::string& gateway, const std::string& token_file, const std::string& bundle,
           bool as_json) {
  auto token = OperatorToken(token_file);
  if (!token) {
    return Report(token.error());
  }
  auto fd = OpenForRead(bundle);
  if (!fd) {
    return Report(fd.error());
  }
  std::error_code ec;
  std::uint64_t size = std::filesystem::file_size(bundle, ec);
  if (ec) {
    return Report(Error(ErrorCode::kIo, "cannot read the size of " + bundle + ": " + ec.message()));
  }
  auto gateway_client = GatewayClient(gateway);
  httplib::Client& client = *gateway_client;
  client.set_connection_timeout(10);
  client.set_write_timeout(300);
  client.set_read_timeout(3600);  // the gateway verifies every byte before it answers
  httplib::Headers headers = {{"Authorization", "Bearer " + *token}};
  std::string name = std::filesystem::path(bundle).filename().string();
  // The gateway records the name as the import's source: at most 128 of [A-Za-z0-9._-].
  std::string query;
  for (char c : name.substr(0, 128)) {
    query +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ? c : '_';
  }
  if (query == "." || query == "..") {
    query = "bundle.tar";
  }
  int file = fd->get();
  httplib::Result r = client.Post(
      "/api/v1/imports?name=" + query, headers, static_cast<std::size_t>(size),
      [file](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
        std::string buffer(std::min<std::size_t>(length, 1 << 20), '\0');
        ssize_t n = ::pread(file, buffer.data(), buffer.size(), static_cast<off_t>(offset));
        if (n <= 0) {
          return false;
        }
        return sink.write(buffer.data(), static_cast<std::size_t>(n));
      },
      "application/x-tar");
  if (!r) {
    return Report(Error(ErrorCode::kUnavailable, "cannot reach the gateway at " + gateway + ": " +
                                                     httplib::to_string(r.error())));
  }
  if (r->status != 200) {
    std::fprintf(stderr, "airlock-gateway: error: the gateway did not import %s (HTTP %d): %s\n",
                 bundle.c_str(), r->status, net::ErrorDetail(r->body).c_str());
    return r->status == 422 ? kExitVerification : kExitFailure;
  }
  auto shown = AnswerToShow(r->body, as_json);
  if (!shown) {
    return kExitOk;
  }
  const nlohmann::json& j = *shown;
  std::printf("imported %s %s for deployment %s: verified against the site's root, %s\n",
              j.value("model", "").c_str(), j.value("version", "").c_str(),
              j.value("deployment", "").c_str(), Mib(j.value("size", std::uint64_t{0})).c_str());
  PrintApproval(j);
  if (j.value("state", "") == "awaiting-approval") {
    std::printf("approve the rollout with: airlock-gateway approvals approve %s\n",
                j.value("id", "").c_str());
  }
  return kExitOk;
}

}  // namespace

int Main(int argc, char** argv) {
  StopSignals signals;  // before any thread starts
  CLI::App app{"airlock-gateway: the factory's model cache and its registry for devices."};
  app.name("airlock-gateway");
  app.require_subcommand(1);

  std::string dir = "/var/lib/airlock-gateway/cache", log_level = "info";
  std::uint64_t max_bytes = 10ULL << 30;
  auto common = [&](CLI::App* cmd) {
    cmd->add_option("--cache", dir, "the cache directory")->capture_default_str();
    cmd->add_option("--max-bytes", max_bytes,
                    "the most bytes of blobs the cache keeps (least recently used unpinned "
                    "packages are evicted beyond it)")
        ->capture_default_str();
    cmd->add_option("--log-level", log_level, "trace, debug, info, warn or error")
        ->capture_default_str();
  };

  auto* cache_cmd = app.add_subcommand("cache",
                                       "Look at and manage the package cache (offline: "
                                       "not while `registry` serves the same directory)");
  cache_cmd->require_subcommand(1);
  auto* ls = cache_cmd->add_subcommand("ls", "List the cached packages and the cache's usage");
  std::string layout, layout_tag, as, owner;
  auto* load = cache_cmd->add_subcommand(
      "load",
      "Load a package from an OCI layout directory (airlock pack's output). Checks digests and "
      "sizes but NOT signatures: for tests and demos, not a substitute for a verified delivery");
  load->add_option("layout", layout, "the OCI image layout: a directory or a .tar")->required();
  load->add_option("--tag", layout_tag, "the layout's tag to load (its index.json ref.name)")
      ->required();
  load->add_option("--as", as, "REPOSITORY:TAG to serve it as")->required();
  auto* pin = cache_cmd->add_subcommand("pin", "Keep a package from eviction on behalf of OWNER");
  pin->add_option("owner", owner, "who needs it: a deployment or delivery id")->required();
  pin->add_option("package", as, "REPOSITORY:TAG")->required();
  auto* unpin = cache_cmd->add_subcommand("unpin", "Drop every pin OWNER holds");
  unpin->add_option("owner", owner, "a deployment or delivery id")->required();

  auto* registry = app.add_subcommand(
      "registry", "Serve the cache read-only to devices as an OCI registry (/v2/) until stopped");
  RegistryOptions options;
  registry
      ->add_option("--address", options.address,
                   "address to listen on; loopback only until devices authenticate")
      ->capture_default_str();
  registry->add_option("--port", options.port, "port to listen on (0 picks a free one)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  for (auto* cmd : {ls, load, pin, unpin, registry}) {
    common(cmd);
  }

  auto* serve = app.add_subcommand(
      "serve",
      "Run the gateway: register with the hub (first start), take deliveries over MQTT, serve "
      "devices (/v2/) and operators (/api/v1/) until stopped");
  std::string config_path, register_token;
  serve->add_option("--config", config_path, "the YAML configuration (docs/gateway.md)")
      ->required();
  serve->add_option("--register-token", register_token,
                    "the hub's one-time registration token (first start only; also "
                    "AIRLOCK_GATEWAY_REGISTER_TOKEN or hub.register_token)");
  auto* config_cmd = app.add_subcommand("config", "The configuration");
  config_cmd->require_subcommand(1);
  auto* config_default =
      config_cmd->add_subcommand("default", "Print the embedded default configuration");

  auto* token_cmd =
      app.add_subcommand("token", "Tokens for the operator API (and for scraping /metrics)");
  token_cmd->require_subcommand(1);
  auto* token_create =
      token_cmd->add_subcommand("create", "Make a token (printed once; only its hash is kept)");
  std::string token_name, token_save, token_role = "operator";
  token_create->add_option("--name", token_name, "who it is for (shown with decisions)")
      ->required();
  token_create->add_option("--role", token_role,
                           "operator (the whole API; the default), viewer (every GET: look, not "
                           "act) or metrics (GET /metrics only, for a Prometheus server)");
  token_create->add_option("--config", config_path, "the gateway's configuration (its data dir)")
      ->required();
  token_create->add_option("--save", token_save,
                           "also write the token to this file (0600), e.g. "
                           "/var/lib/airlock-gateway/operator-token");

  auto* root_cmd = app.add_subcommand("root", "The site's root of trust and its rotations");
  root_cmd->require_subcommand(1);
  auto* root_update = root_cmd->add_subcommand(
      "update",
      "Trust a rotated root: each FILE must be the next version, signed by a threshold of the "
      "keys of the root before it and of its own (docs/trust.md). Kept in DATA/roots/; the "
      "gateway takes it at its next start and sends it to its devices");
  std::vector<std::string> root_files;
  root_update->add_option("files", root_files, "the new root document(s), any order")->required();
  root_update->add_option("--config", config_path, "the gateway's configuration")->required();
  auto* root_show = root_cmd->add_subcommand("show", "The root the gateway trusts");
  root_show->add_option("--config", config_path, "the gateway's configuration")->required();

  auto* broker_cmd = app.add_subcommand(
      "broker-config",
      "Write the factory broker's TLS certificates, ACL and mosquitto.conf (devices confined to "
      "their own topics)");
  std::string broker_out;
  std::vector<std::string> broker_names;
  int broker_port = 8883;
  std::string broker_address;
  broker_cmd->add_option("--config", config_path, "the gateway's configuration")->required();
  broker_cmd
      ->add_option("--out", broker_out, "the directory to write into, e.g. /etc/mosquitto/airlock")
      ->required();
  broker_cmd
      ->add_option("--name", broker_names,
                   "a host name or address devices reach the broker at (repeat for more)")
      ->required();
  broker_cmd->add_option("--port", broker_port, "the broker's TLS port")->capture_default_str();
  broker_cmd->add_option("--address", broker_address,
                         "the address the broker listens on (default: every interface)");

  auto* tls_cmd = app.add_subcommand(
      "tls-cert",
      "Write a certificate and key for the gateway's HTTPS, from its device CA (which devices "
      "trust)");
  std::string tls_out;
  std::vector<std::string> tls_names;
  tls_cmd->add_option("--config", config_path, "the gateway's configuration")->required();
  tls_cmd->add_option("--out", tls_out, "the directory to write https.pem and https.key into")
      ->required();
  tls_cmd
      ->add_option("--name", tls_names,
                   "a host name or address devices and operators reach the gateway at "
                   "(repeat for more)")
      ->required();

  auto* approvals =
      app.add_subcommand("approvals", "The operator's approvals, from the running gateway's API");
  approvals->require_subcommand(1);
  std::string gateway_url = "http://127.0.0.1:7500",
              token_file = "/var/lib/airlock-gateway/operator-token", approval_id, comment;
  bool as_json = false;
  auto* a_ls = approvals->add_subcommand("ls", "Deliveries that wait for (or had) a decision");
  auto* a_show =
      approvals->add_subcommand("show", "One delivery: what, from where, signed by, tests");
  auto* a_approve = approvals->add_subcommand("approve", "Approve a held offer or a rollout");
  auto* a_reject = approvals->add_subcommand(
      "reject", "Reject a held offer (the hub hears reason operator) or a rollout");
  for (auto* cmd : {a_ls, a_show, a_approve, a_reject}) {
    cmd->add_option("--gateway", gateway_url, "the gateway's API")->capture_default_str();
    cmd->add_option("--ca", g_gateway_ca,
                    "for an https:// gateway: the CA its certificate chains to (its "
                    "DATA/devices/ca.pem when made by tls-cert)");
    cmd->add_option("--token-file", token_file,
                    "the operator token's file when AIRLOCK_GATEWAY_TOKEN is not set")
        ->capture_default_str();
    cmd->add_flag("--json", as_json, "print the API's JSON");
    if (cmd != a_ls) {
      cmd->add_option("id", approval_id, "the delivery id (dlv-…)")->required();
    }
    if (cmd == a_approve || cmd == a_reject) {
      cmd->add_option("--comment", comment, "why (kept with the decision)");
    }
  }

  auto* devices = app.add_subcommand(
      "devices", "The site's devices and their enrollment, from the running gateway's API");
  devices->require_subcommand(1);
  std::string device_id, expires_in = "24h";
  std::vector<std::string> device_labels;
  auto* d_token = devices->add_subcommand(
      "token", "Make a one-time token a device enrolls with (POST /api/v1/devices/enroll)");
  d_token->add_option("--label", device_labels, "KEY=VALUE the device gets (repeatable)");
  d_token->add_option("--expires", expires_in, "how long the token is good for (at most 30d)")
      ->capture_default_str();
  auto* d_ls = devices->add_subcommand("ls", "The enrolled devices");
  auto* d_revoke = devices->add_subcommand(
      "revoke", "Mark a device revoked (it gets no directives; docs/gateway.md)");
  d_revoke->add_option("id", device_id, "the device id (dev-…)")->required();
  auto* d_label = devices->add_subcommand(
      "label", "Change a device's labels: KEY=VALUE sets one, KEY- removes one");
  d_label->add_option("id", device_id, "the device id (dev-…)")->required();
  d_label->add_option("changes", device_labels, "KEY=VALUE or KEY- (one or more)")->required();
  for (auto* cmd : {d_token, d_ls, d_revoke, d_label}) {
    cmd->add_option("--gateway", gateway_url, "the gateway's API")->capture_default_str();
    cmd->add_option("--ca", g_gateway_ca,
                    "for an https:// gateway: the CA its certificate chains to (its "
                    "DATA/devices/ca.pem when made by tls-cert)");
    cmd->add_option("--token-file", token_file,
                    "the operator token's file when AIRLOCK_GATEWAY_TOKEN is not set")
        ->capture_default_str();
    cmd->add_flag("--json", as_json, "print the API's JSON");
  }

  auto* rollouts = app.add_subcommand(
      "rollouts", "The device rollouts, one per deployment, from the running gateway's API");
  rollouts->require_subcommand(1);
  std::string deployment;
  auto* r_ls = rollouts->add_subcommand("ls", "Every rollout: state, wave, devices by status");
  auto* r_show = rollouts->add_subcommand("show", "One rollout, with a row per device");
  auto* r_pause = rollouts->add_subcommand(
      "pause", "Direct no new device until resumed (devices already directed carry on)");
  auto* r_resume = rollouts->add_subcommand("resume", "Carry on where the rollout was paused");
  auto* r_cancel = rollouts->add_subcommand(
      "cancel", "End the rollout for good; devices stay as they are (nothing is rolled back)");
  for (auto* cmd : {r_ls, r_show, r_pause, r_resume, r_cancel}) {
    cmd->add_option("--gateway", gateway_url, "the gateway's API")->capture_default_str();
    cmd->add_option("--ca", g_gateway_ca,
                    "for an https:// gateway: the CA its certificate chains to (its "
                    "DATA/devices/ca.pem when made by tls-cert)");
    cmd->add_option("--token-file", token_file,
                    "the operator token's file when AIRLOCK_GATEWAY_TOKEN is not set")
        ->capture_default_str();
    cmd->add_flag("--json", as_json, "print the API's JSON");
    if (cmd != r_ls) {
      cmd->add_option("deployment", deployment, "the deployment id (dep-…)")->required();
    }
  }

  std::string bundle;
  auto* import_cmd = app.add_subcommand(
      "import",
      "Load a bundle (airlock bundle export) into the running gateway: verified like a network "
      "delivery, then waiting for the operator's approval");
  import_cmd->add_option("bundle", bundle, "the bundle (.tar)")->required();
  import_cmd->add_option("--gateway", gateway_url, "the gateway's API")->capture_default_str();
  import_cmd->add_option("--ca", g_gateway_ca,
                         "for an https:// gateway: the CA its certificate chains to");
  import_cmd
      ->add_option("--token-file", token_file,
                   "the operator token's file when AIRLOCK_GATEWAY_TOKEN is not set")
      ->capture_default_str();
  import_cmd->add_flag("--json", as_json, "print the API's JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (config_default->parsed()) {
    std::fputs(kDefaultGatewayConfig, stdout);
    return kExitOk;
  }
  for (auto* cmd : {d_token, d_ls, d_revoke, d_label}) {
    if (cmd->parsed()) {
      SetupLogging("warn");
      return Devices(gateway_url, token_file, cmd->get_name(), device_id, device_labels, expires_in,
                     as_json);
    }
  }
  for (auto* cmd : {r_ls, r_show, r_pause, r_resume, r_cancel}) {
    if (cmd->parsed()) {
      SetupLogging("warn");
      return Rollouts(gateway_url, token_file, cmd->get_name(), deployment, as_json);
    }
  }
  for (auto* cmd : {a_ls, a_show, a_approve, a_reject}) {
    if (cmd->parsed()) {
      SetupLogging("warn");
      return Approvals(gateway_url, token_file, cmd->get_name(), approval_id, comment, as_json);
    }
  }
  if (import_cmd->parsed()) {
    SetupLogging("warn");
    return Import(gateway_url, token_file, bundle, as_json);
  }
  if (tls_cmd->parsed()) {
    return WithDeviceCa(
        config_path,
        [&](const GatewayConfig& config, const pki::CertificateAuthority& ca,
            TimePoint now) -> Status {
          AIRLOCK_RETURN_IF_ERROR(WriteHttpsCertificate(ca, config.name, tls_names, tls_out, now));
          std::printf(
              "wrote %s/https.pem and %s/https.key (valid two years)\n"
              "in the gateway's configuration:\n"
              "  http:\n    tls_cert: %s/https.pem\n    tls_key: %s/https.key\n"
              "devices enroll with: airlock-agent enroll --gateway https://%s:%d --ca %s --token "
              "…\n",
              tls_out.c_str(), tls_out.c_str(), tls_out.c_str(), tls_out.c_str(),
              tls_names.front().c_str(), config.http_port,
              (DeviceCaDir(config) / "ca.pem").c_str());
          return Status{};
        });
  }
  if (broker_cmd->parsed()) {
    return WithDeviceCa(
        config_path,
        [&](const GatewayConfig& config, const pki::CertificateAuthority& ca,
            TimePoint now) -> Status {
          AIRLOCK_RETURN_IF_ERROR(WriteFactoryBrokerFiles(ca,
                                                          {.gateway_name = config.name,
                                                           .prefix = config.factory_prefix(),
                                                           .names = broker_names,
                                                           .port = broker_port,
                                                           .address = broker_address,
                                                           .dir = broker_out,
                                                           .crl_file = DeviceCrlFile(config)},
                                                          now));
          // The broker needs the list to exist; the gateway rewrites it at start and on revoke.
          if (!std::filesystem::exists(DeviceCrlFile(config))) {
            AIRLOCK_RETURN_IF_ERROR(WriteDeviceCrl(ca, config, {}, now));
          }
          std::printf(
              "wrote %s/{mosquitto.conf,acl,ca.pem,server.pem,server.key,gateway.pem,gateway.key}\n"
              "start the broker:   mosquitto -c %s/mosquitto.conf\n"
              "then set devices.mqtt_broker: mqtts://%s:%d in the gateway's configuration; "
              "devices\n"
              "enrolled from then on connect with TLS and their certificates (docs/security.md).\n"
              "The broker refuses revoked devices by %s, which the gateway rewrites; set\n"
              "devices.mqtt_broker_pid_file so that it makes the broker reload it\n",
              broker_out.c_str(), broker_out.c_str(), broker_names.front().c_str(), broker_port,
              DeviceCrlFile(config).c_str());
          return Status{};
        });
  }
  if (root_update->parsed() || root_show->parsed()) {
    SetupLogging("warn");
    return RootCommand(config_path,
                       root_update->parsed() ? root_files : std::vector<std::string>{});
  }
  if (token_create->parsed()) {
    SetupLogging("warn");
    auto config = ConfigFrom(config_path);
    if (!config) {
      return Report(config.error());
    }
    if (Status made = MakeDirectories(config->data); !made) {
      return Report(made.error());
    }
    SystemClock clock;
    auto store = GatewayStateStore::Open(config->data, clock.Now());
    if (!store) {
      return Report(store.error());
    }
    auto scope = ParseTokenScope(token_role);
    if (!scope) {
      std::fprintf(stderr,
                   "airlock-gateway: error: --role must be operator, viewer or metrics, not %s\n",
                   token_role.c_str());
      return kExitUsage;
    }
    auto token = (*store)->CreateToken(token_name, clock.Now(), *scope);
    if (!token) {
      return Report(token.error());
    }
    if (!token_save.empty()) {
      if (Status saved = WriteFileAtomic(token_save, *token + "\n", 0600); !saved) {
        return Report(saved.error());
      }
    }
    std::printf("%s\n", token->c_str());
    return kExitOk;
  }
  if (serve->parsed()) {
    auto config = ConfigFrom(config_path);
    if (!config) {
      Report(config.error());
      return kExitUsage;
    }
    SetupLogging(config->log_level);
    std::string token = register_token;
    if (token.empty()) {
      if (const char* env = std::getenv("AIRLOCK_GATEWAY_REGISTER_TOKEN")) {
        token = env;
      }
    }
    if (token.empty()) {
      token = config->register_token;
    }
    return Serve(*config, token, signals);
  }
  SetupLogging(log_level);
  if (registry->parsed() && !IsLoopbackHost(options.address)) {
    std::fprintf(stderr,
                 "airlock-gateway: error: devices cannot authenticate yet, so the registry "
                 "serves only on a loopback address, not %s\n",
                 options.address.c_str());
    return kExitUsage;
  }
  std::optional<PackageRef> ref;
  if (!as.empty()) {
    auto parsed = ParseRef(as);
    if (!parsed) {
      Report(parsed.error());
      return kExitUsage;
    }
    ref = *parsed;
  }

  SystemClock clock;
  CacheOptions cache_options;
  cache_options.max_bytes = max_bytes;
  auto cache = GatewayCache::Open(dir, cache_options, clock);
  if (!cache) {
    return Report(cache.error());
  }
  if (ls->parsed()) {
    return List(**cache);
  }
  if (load->parsed()) {
    auto copied = ImportLayout(**cache, layout, layout_tag, *ref);
    if (!copied) {
      return Report(copied.error());
    }
    std::printf("loaded %s as %s (%s copied into the cache)\n", layout.c_str(),
                ref->ToString().c_str(), Mib(*copied).c_str());
    return kExitOk;
  }
  if (pin->parsed()) {
    Status pinned = (*cache)->Pin(owner, *ref);
    return pinned ? kExitOk : Report(pinned.error());
  }
  if (unpin->parsed()) {
    auto n = (*cache)->Unpin(owner);
    if (!n) {
      return Report(n.error());
    }
    std::printf("removed %zu pin(s) of %s\n", *n, owner.c_str());
    return kExitOk;
  }
  if (registry->parsed()) {
    return ServeRegistry(**cache, options, signals);
  }
  // Every subcommand returns above; reaching here is a command this function forgot.
  std::fputs("airlock-gateway: error: no handler for this command\n", stderr);
  return kExitUsage;
}

}  // namespace airlock::gateway
