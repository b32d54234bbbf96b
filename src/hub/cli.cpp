#include "hub/cli.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/daemon.hpp"
#include "core/exit_codes.hpp"
#include "core/log.hpp"
#include "core/pki.hpp"
#include "delivery/mosquitto.hpp"
#include "hub/gc.hpp"
#include "hub/registry_api.hpp"
#include "hub/server.hpp"
#include "store/postgres_metadata_store.hpp"
#include "store/sqlite_metadata_store.hpp"
#include "trust/root_store.hpp"

namespace airlock::hub {
namespace {

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-hub: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

// Opens the data directory and serves until SIGINT or SIGTERM.
int Serve(HubConfig config) {
  StopSignals stop_signals;  // before any thread starts

  std::string address = config.http.address;
  const char* scheme = config.http.tls_cert.empty() ? "http" : "https";
  bool auth_enabled = config.auth.enabled;
  std::filesystem::path data = config.data;
  std::string metadata =
      config.db.empty() ? (data / "metadata.db").string() : store::RedactedPostgresUri(config.db);
  auto hub = Hub::Open(std::move(config));
  if (!hub) {
    if (hub.error().code() == ErrorCode::kInvalidArgument) {
      Report(hub.error());
      return kExitUsage;
    }
    return Report(hub.error());
  }
  HubServer& server = (*hub)->server();
  Status bound = server.Bind();
  if (!bound) {
    return Report(bound.error());
  }
  spdlog::info("data directory {}, metadata in {}", data.string(), metadata);
  if ((*hub)->orchestrator() == nullptr) {
    spdlog::info("no MQTT broker configured (mqtt.broker, --mqtt): deployments are not delivered");
  }
  const store::BlobStore& blobs = (*hub)->blobs();
  if (blobs.joined_others_at_open()) {
    spdlog::info("other hubs are using {}: serving beside them (their upload sessions are kept)",
                 data.string());
  } else if (blobs.swept_at_open() > 0) {
    spdlog::info("removed {} upload session(s) left by a previous run", blobs.swept_at_open());
  }
  std::printf("airlock-hub: serving on %s://%s:%d\n", scheme, address.c_str(), server.port());
  std::fflush(stdout);
  if (!auth_enabled) {
    spdlog::warn(
        "authentication is off (auth.enabled: false): anyone on this machine may push "
        "and delete");
  } else {
    auto tokens = (*hub)->access().store().ListTokens();
    if (tokens && tokens->empty()) {
      std::printf(
          "airlock-hub: no tokens yet; create the first admin with\n"
          "  airlock-hub token create --name admin --role admin --data %s\n",
          data.string().c_str());
      std::fflush(stdout);
    }
  }
  stop_signals.Serve([&] { server.Serve(); }, [&] { server.Stop(); });
  return kExitOk;
}

std::string Time(std::optional<std::int64_t> t) {
  return t ? FormatRfc3339(TimePoint(std::chrono::seconds(*t))) : std::string("-");
}

// airlock-hub token create|ls|revoke, on the data directory (works with or without a hub running).
int Token(const HubConfig& config, const std::string& verb, const std::string& name,
          const std::string& role_name, const std::string& expires) {
  SystemClock clock;
  auto opened = HubAccess::Open(config, clock);
  if (!opened) {
    return Report(opened.error());
  }
  AccessControl& access = (*opened)->access();
  const char* user = std::getenv("USER");
  std::string by = std::string("local:") + (user != nullptr ? user : "?");
  store::AuditEntry audit;
  audit.token_name = by;
  audit.result = "ok";
  audit.remote = "local";
  if (verb == "create") {
    auto role = ParseRole(role_name);
    if (!role) {
      std::fprintf(stderr,
                   "airlock-hub: error: --role must be viewer, publisher, release-manager, "
                   "admin, or metrics (GET /metrics only, for Prometheus)\n");
      return kExitUsage;
    }
    std::optional<std::chrono::seconds> ttl;
    if (!expires.empty() && expires != "never") {
      auto d = ParseDuration(expires);
      if (!d) {
        Report(d.error());
        return kExitUsage;
      }
      ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
    }
    auto minted = access.CreateToken(name, *role, by, ttl);
    if (!minted) {
      return Report(minted.error());
    }
    audit.action = "token.create";
    audit.target = name + " (" + role_name + ")";
    access.Record(audit);
    std::fprintf(stderr, "created token %s (role %s, expires %s); it is shown only this once:\n",
                 name.c_str(), role_name.c_str(), Time(minted->record.expires_at).c_str());
    std::printf("%s\n", minted->token.c_str());
    return kExitOk;
  }
  if (verb == "revoke") {
    Status s = (*opened)->store().RevokeToken(name, access.Now());
    if (!s) {
      return Report(s.error());
    }
    audit.action = "token.revoke";
    audit.target = name;
    access.Record(audit);
    std::printf("revoked token %s\n", name.c_str());
    return kExitOk;
  }
  auto tokens = (*opened)->store().ListTokens();
  if (!tokens) {
    return Report(tokens.error());
  }
  std::printf("%-24s %-16s %-22s %-22s %s\n", "NAME", "ROLE", "CREATED", "EXPIRES", "STATE");
  for (const auto& t : *tokens) {
    std::string state = t.revoked_at                                      ? "revoked"
                        : (t.expires_at && *t.expires_at <= access.Now()) ? "expired"
                                                                          : "active";
    std::printf("%-24s %-16s %-22s %-22s %s\n", t.name.c_str(), t.role.c_str(),
                Time(t.created_at).c_str(), Time(t.expires_at).c_str(), state.c_str());
  }
  return kExitOk;
}

// airlock-hub audit: the newest entries of the audit log.
// airlock-hub root update/show (trust::RootCommand).
int RootCommand(const HubConfig& config, const std::vector<std::string>& files) {
  if (config.root.empty()) {
    std::fprintf(stderr, "airlock-hub: error: the hub has no root: give --root or `root:` in "
                         "its configuration\n");
    return kExitUsage;
  }
  SystemClock clock;
  auto text = trust::RootCommand(config.root, HubRootsDir(config.data), files, clock.Now(),
                                 "restart the hub (systemctl restart airlock-hub) to use it; "
                                 "gateways fetch it at their next start");
  if (!text) {
    return Report(text.error());
  }
  std::fputs(text->c_str(), stdout);
  return kExitOk;
}

int Audit(const HubConfig& config, int limit, bool as_json) {
  SystemClock clock;
  auto opened = HubAccess::Open(config, clock);
  if (!opened) {
    return Report(opened.error());
  }
  auto entries = (*opened)->store().ListAudit(0, static_cast<std::size_t>(limit));
  if (!entries) {
    return Report(entries.error());
  }
  for (const auto& e : *entries) {
    if (as_json) {
      std::printf("%s\n", nlohmann::json{{"id", e.id},
                                         {"time", Time(e.at)},
                                         {"token", e.token_name},
                                         {"role", e.role},
                                         {"action", e.action},
                                         {"target", e.target},
                                         {"result", e.result},
                                         {"reason", e.reason},
                                         {"remote", e.remote}}
                              .dump()
                              .c_str());
    } else {
      std::printf("%s  %-16s %-16s %-22s %-4s %s%s\n", Time(e.at).c_str(),
                  e.token_name.empty() ? "(anonymous)" : e.token_name.c_str(),
                  e.role.empty() ? "-" : e.role.c_str(), e.action.c_str(), e.result.c_str(),
                  e.target.c_str(), e.reason.empty() ? "" : ("  (" + e.reason + ")").c_str());
    }
  }
  return kExitOk;
}

// airlock-hub gc: removes the blob files no repository links and idle upload sessions (works
// while hubs serve).
int Gc(const HubConfig& config, const std::string& grace_text, const std::string& idle_text,
       bool dry_run) {
  GcOptions options;
  options.dry_run = dry_run;
  auto grace = ParseDuration(grace_text);
  if (!grace) {
    Report(Error(grace.error()).WithContext("--grace"));
    return kExitUsage;
  }
  options.grace = std::chrono::duration_cast<std::chrono::seconds>(*grace);
  auto idle = ParseDuration(idle_text);
  if (!idle) {
    Report(Error(idle.error()).WithContext("--upload-idle"));
    return kExitUsage;
  }
  options.upload_idle = std::chrono::duration_cast<std::chrono::seconds>(*idle);
  // Blobs are judged by the links in the metadata the hubs on this directory use: gc with the
  // wrong database would take every blob for garbage.
  auto in_use = store::ProbeRootUse(config.data);
  if (!in_use) {
    return Report(in_use.error());
  }
  if (*in_use == store::Sharing::kShared && config.db.empty()) {
    return Report(Error(ErrorCode::kInvalidArgument,
                        "hubs with PostgreSQL metadata are using " + config.data.string() +
                            ": run gc with their database (--db postgres://…), not the SQLite "
                            "default"));
  }
  if (*in_use == store::Sharing::kExclusive && !config.db.empty()) {
    return Report(Error(ErrorCode::kInvalidArgument,
                        "a hub (with SQLite metadata?) holds " + config.data.string() +
                            " exclusively: run gc without --db, or again if a hub was starting"));
  }
  auto blobs = store::BlobCollector::Open(config.data);
  if (!blobs) {
    return Report(blobs.error());
  }
  auto metadata = OpenMetadataStore(config, 1);
  if (!metadata) {
    return Report(metadata.error());
  }
  auto report = CollectGarbage(**blobs, **metadata, options, std::chrono::system_clock::now());
  if (!report) {
    return Report(report.error());
  }
  const char* verb = dry_run ? "would remove" : "removed";
  for (const auto& b : report->removed) {
    std::printf("%s %s (%llu bytes)\n", verb, b.digest.ToString().c_str(),
                static_cast<unsigned long long>(b.size));
  }
  if (report->idle_uploads > 0) {
    std::printf("%s %zu upload session(s) idle for more than %s (%llu bytes)\n", verb,
                report->idle_uploads, idle_text.c_str(),
                static_cast<unsigned long long>(report->idle_upload_bytes));
  }
  if (report->recovered_bytes > 0) {
    std::printf("removed %llu bytes an interrupted gc had set aside\n",
                static_cast<unsigned long long>(report->recovered_bytes));
  }
  std::printf("%s %zu blob(s), %llu bytes; kept %zu linked, %zu changed within %s\n", verb,
              report->removed.size(), static_cast<unsigned long long>(report->removed_bytes),
              report->linked, report->young, grace_text.c_str());
  return kExitOk;
}

// The hub's user name (certificate CN) on the cloud broker.
constexpr char kHubBrokerUser[] = "airlock-hub";

// airlock-hub broker-config: the cloud broker's files (delivery/mosquitto.hpp).
int BrokerConfig(const HubConfig& config, const std::string& ca_dir, const std::string& out,
                 const std::vector<std::string>& names, int port, const std::string& address) {
  auto now = std::chrono::system_clock::now();
  if (!std::filesystem::exists(std::filesystem::path(ca_dir) / "ca.key")) {
    return Report(Error(ErrorCode::kNotFound,
                        "no CA in " + ca_dir + ": make one with airlock ca init " + ca_dir));
  }
  auto ca = pki::CertificateAuthority::Open(ca_dir, "", now);
  if (!ca) {
    return Report(ca.error());
  }
  auto acl = delivery::MosquittoGatewayAcl(config.mqtt.prefix, kHubBrokerUser);
  if (!acl) {
    return Report(acl.error());
  }
  Status written = delivery::WriteBrokerFiles(*ca,
                                              {.dir = out,
                                               .names = names,
                                               .port = port,
                                               .address = address,
                                               .acl = std::move(*acl),
                                               .title = "Airlock cloud broker",
                                               .client_stem = "hub",
                                               .client_name = kHubBrokerUser,
                                               .crl_file = {}},
                                              now);
  if (!written) {
    return Report(written.error());
  }
  std::printf(
      "wrote %s/{mosquitto.conf,acl,ca.pem,server.pem,server.key,hub.pem,hub.key}\n"
      "start the broker:   mosquitto -c %s/mosquitto.conf\n"
      "the hub:            mqtt: {broker: mqtts://%s:%d, tls_dir: %s}\n"
      "each gateway:       airlock ca issue --ca %s --name GATEWAY -o GATEWAY-mqtt, then\n"
      "                    mqtt: {broker: mqtts://%s:%d, ca_file: %s/ca.pem,\n"
      "                           cert_file: GATEWAY-mqtt.pem, key_file: GATEWAY-mqtt.key}\n",
      out.c_str(), out.c_str(), names.front().c_str(), port, out.c_str(), ca_dir.c_str(),
      names.front().c_str(), port, ca_dir.c_str());
  return kExitOk;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"airlock-hub: the registry that model packages are pushed to and delivered from."};
  app.name("airlock-hub");
  app.require_subcommand(1);
  app.set_version_flag("--version", AIRLOCK_VERSION);

  auto* serve = app.add_subcommand("serve", "Serve the OCI distribution API (/v2/) over HTTP");
  std::string config_file, data, db, address, log_level = "info";
  int port = -1;
  serve->add_option("-c,--config", config_file,
                    "YAML configuration (docs/hub.md lists every key); default: built-in");
  serve->add_option("--data", data,
                    "data directory (default /var/lib/airlock-hub for root, else "
                    "$XDG_DATA_HOME/airlock-hub)");
  serve->add_option("--db", db,
                    "metadata database: postgres://user:password@host:port/db (default: SQLite "
                    "in the data directory)");
  std::string root;
  serve->add_option("--root", root,
                    "root document that releases and channel documents must verify against "
                    "(airlock root init)");
  serve->add_option("--address", address, "address to listen on (default 127.0.0.1)");
  serve->add_option("--port", port, "port to listen on (default 7400; 0 picks a free one)")
      ->check(CLI::Range(0, 65535));
  serve->add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str();
  std::string mqtt;
  serve->add_option("--mqtt", mqtt,
                    "MQTT broker the gateways use, mqtts://host:port (mqtt.broker): runs the "
                    "delivery orchestrator");
  bool no_auth = false;
  serve->add_flag("--no-auth", no_auth,
                  "serve without tokens (auth.enabled: false); only on a loopback address");

  auto* token = app.add_subcommand("token", "Create, list and revoke access tokens (offline)");
  token->require_subcommand(1);
  std::string token_name, token_role, token_expires;
  auto* create = token->add_subcommand("create", "Create a token; it is printed once");
  create->add_option("--name", token_name, "a unique name (letters, digits, . _ -)")->required();
  create
      ->add_option("--role", token_role,
                   "viewer, publisher, release-manager, admin, or metrics (GET /metrics only)")
      ->required();
  create->add_option("--expires", token_expires, "lifetime, e.g. 90d or 12h (default: never)");
  auto* revoke = token->add_subcommand("revoke", "Revoke a token by name");
  revoke->add_option("name", token_name, "the token's name")->required();
  token->add_subcommand("ls", "List the tokens (names, roles, expiry; never the tokens)");
  auto* audit = app.add_subcommand("audit", "Print the newest entries of the audit log (offline)");
  int audit_limit = 50;
  bool audit_json = false;
  audit->add_option("-n,--limit", audit_limit, "how many entries")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  audit->add_flag("--json", audit_json, "one JSON object per line");
  auto* gc = app.add_subcommand(
      "gc",
      "Remove blob files no repository links and idle upload sessions (safe while hubs serve)");
  std::string gc_grace = "1h";
  bool gc_dry_run = false;
  gc->add_option("--grace", gc_grace,
                 "keep files that changed more recently than this (a blob is published just "
                 "before it is linked)")
      ->capture_default_str();
  std::string gc_upload_idle = "24h";
  gc->add_option("--upload-idle", gc_upload_idle,
                 "remove upload sessions that received nothing for longer than this (a hub "
                 "killed while others use the data directory leaves its sessions)")
      ->capture_default_str();
  gc->add_flag("--dry-run", gc_dry_run, "list what would be removed; remove nothing");
  for (auto* cmd : {create, revoke, token->get_subcommand("ls"), audit, gc}) {
    cmd->add_option("-c,--config", config_file, "YAML configuration (for its data directory)");
    cmd->add_option("--data", data, "data directory (default as for serve)");
    cmd->add_option("--db", db, "the hub's PostgreSQL database, when it uses one (as for serve)");
  }

  auto* root_cmd = app.add_subcommand("root", "The root of trust the hub verifies against (offline)");
  root_cmd->require_subcommand(1);
  std::vector<std::string> root_files;
  auto* root_update = root_cmd->add_subcommand(
      "update",
      "Trust a rotated root: each FILE must be the next version, signed by a threshold of the "
      "keys of the root before it and of its own (docs/trust.md). Kept in DATA/roots/; the hub "
      "takes it at its next start and serves it to the gateways (GET /api/v1/roots)");
  root_update->add_option("files", root_files, "the new root document(s), any order")
      ->required();
  auto* root_show = root_cmd->add_subcommand("show", "The root the hub trusts");
  for (auto* cmd : {root_update, root_show}) {
    cmd->add_option("-c,--config", config_file, "YAML configuration (its root and data)");
    cmd->add_option("--data", data, "data directory (default as for serve)");
    cmd->add_option("--root", root, "the root document the hub is started with");
  }

  auto* broker = app.add_subcommand(
      "broker-config",
      "Write the cloud broker's TLS certificates, ACL and mosquitto.conf (each gateway confined "
      "to its own topics), from a CA made with airlock ca init");
  std::string broker_ca, broker_out, broker_address;
  std::vector<std::string> broker_names;
  int broker_port = 8883;
  broker->add_option("--ca", broker_ca, "the CA's directory (airlock ca init)")->required();
  broker->add_option("--out", broker_out, "the directory to write into")->required();
  broker->add_option("--name", broker_names,
                     "a host name or address the hub and gateways reach the broker at (repeat)")
      ->required();
  broker->add_option("--port", broker_port, "the broker's TLS port")->capture_default_str();
  broker->add_option("--address", broker_address,
                     "the address the broker listens on (default: every interface)");
  broker->add_option("-c,--config", config_file, "the hub's configuration (its mqtt.prefix)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  SetupLogging(log_level);
  HubConfig config = DefaultHubConfig();
  if (!config_file.empty()) {
    auto loaded = LoadHubConfig(config_file);
    if (!loaded) {
      Report(loaded.error());
      return kExitUsage;
    }
    config = std::move(*loaded);
  }
  if (!data.empty()) {
    config.data = data;
  }
  if (!db.empty()) {
    config.db = db;
  }
  if (!address.empty()) {
    config.http.address = address;
  }
  if (!root.empty()) {
    config.root = root;
  }
  if (port >= 0) {
    config.http.port = port;
  }
  if (no_auth) {
    config.auth.enabled = false;
  }
  if (!mqtt.empty()) {
    config.mqtt.broker = mqtt;
  }
  if (*broker) {
    return BrokerConfig(config, broker_ca, broker_out, broker_names, broker_port, broker_address);
  }
  if (*token) {
    std::error_code ec;
    std::filesystem::create_directories(config.data, ec);
    std::string verb = create->parsed() ? "create" : revoke->parsed() ? "revoke" : "ls";
    return Token(config, verb, token_name, token_role, token_expires);
  }
  if (*audit) {
    return Audit(config, audit_limit, audit_json);
  }
  if (*root_cmd) {
    return RootCommand(config, root_update->parsed() ? root_files : std::vector<std::string>{});
  }
  if (*gc) {
    return Gc(config, gc_grace, gc_upload_idle, gc_dry_run);
  }
  return Serve(std::move(config));
}

}  // namespace airlock::hub
