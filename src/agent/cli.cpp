#include "agent/cli.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "agent/agent.hpp"
#include "agent/config.hpp"
#include "agent/enrollment.hpp"
#include "agent/model_store.hpp"
#include "core/daemon.hpp"
#include "core/exit_codes.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "net/http_server.hpp"
#include "trust/documents.hpp"

namespace airlock::agent {
namespace {

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-agent: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

struct ServeArgs {
  std::string config_file;
  std::string address;
  int port = -1;
  std::string log_level = "info";
};

// Loads what the configuration says, serves until SIGINT or SIGTERM.
int Serve(AgentConfig config, const std::string& platform) {
  StopSignals stop_signals;  // before any thread starts
  if (Status checked = net::CheckPlainHttp(
          "the agent", config.http.address,
          {.cert = config.http.tls_cert, .key = config.http.tls_key, .client_ca = {}},
          config.http.allow_plain, "http.tls: {cert, key}");
      !checked) {
    return Report(checked.error());
  }

  auto agent = Agent::Create(config, platform);
  if (!agent) {
    return Report(agent.error());
  }
  Agent& server = **agent;
  const char* scheme = config.http.tls_cert.empty() ? "http" : "https";
  std::printf("airlock-agent: serving on %s://%s:%d\n", scheme, config.http.address.c_str(),
              server.port());
  std::fflush(stdout);
  if (!IsLoopbackHost(config.http.address) && config.http.api_key_file.empty()) {
    spdlog::warn(
        "listening on {} without an API key: anyone who can reach this port can run "
        "and unload models (set http.api_key_file)",
        config.http.address);
  }
  stop_signals.Serve([&] { server.Serve(); }, [&] { server.Stop(); });
  return kExitOk;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"airlock-agent: runs verified model packages on an edge device."};
  app.name("airlock-agent");
  app.require_subcommand(1);
  std::string store_dir = "/var/lib/airlock-agent";
  app.add_option("--store", store_dir, "the model store directory")->capture_default_str();
  std::string now_text;
  app.add_option("--now", now_text, "judge expiry at this RFC 3339 time instead of the clock");

  auto* install = app.add_subcommand(
      "install", "Verify a package against the root and add it to the store (refusing rollbacks)");
  std::string package, root_file, platform = HostPlatform();
  install->add_option("package", package, "package directory or .tar")->required();
  install->add_option("--root", root_file, "the root document to trust")->required();
  install->add_option("--platform", platform, "the platform this device needs")
      ->capture_default_str();
  auto* list = app.add_subcommand("list", "List the installed models");

  auto* enroll = app.add_subcommand(
      "enroll",
      "Enroll this device with its gateway: make a key pair, send a CSR with the one-time token "
      "the site's operator gave (airlock-gateway devices token), keep the identity in the store");
  EnrollOptions enroll_options;
  std::vector<std::string> enroll_labels;
  std::string expected_root_file;
  enroll->add_option("--gateway", enroll_options.gateway, "the gateway's URL, e.g. http://gw:7500")
      ->required();
  enroll->add_option("--token", enroll_options.token, "the one-time enrollment token (alken_…)")
      ->required();
  enroll->add_option("--label", enroll_labels,
                     "KEY=VALUE this device asks for (repeatable; the token's labels win)");
  enroll->add_option("--root", expected_root_file,
                     "refuse unless the gateway pins this root document (default: trust the "
                     "root the token-authenticated answer carries)");
  enroll->add_option("--ca", enroll_options.ca_file,
                     "for an https:// gateway: the CA its certificate chains to (the gateway's "
                     "DATA/devices/ca.pem; default: the system's CAs)");
  enroll->add_flag("--force", enroll_options.force, "replace an existing identity");

  auto* serve = app.add_subcommand(
      "serve",
      "Serve the installed models over the Open Inference Protocol (HTTP, Triton-compatible)");
  ServeArgs serve_args;
  serve->add_option("-c,--config", serve_args.config_file,
                    "YAML configuration (docs/agent.md lists every key); default: built-in");
  serve->add_option("--address", serve_args.address,
                    "address to listen on (default 127.0.0.1, from the configuration)");
  serve->add_option("--port", serve_args.port,
                    "port to listen on (default 8000; 0 picks a free one and prints it)");
  serve->add_option("--log-level", serve_args.log_level, "trace, debug, info, warn or error")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  SetupLogging(*serve ? serve_args.log_level : "warn");
  TimePoint now = SystemClock().Now();
  if (!now_text.empty()) {
    auto t = ParseRfc3339(now_text);
    if (!t) {
      Report(t.error());
      return kExitUsage;
    }
    now = *t;
  }
  if (*serve) {
    AgentConfig config;
    if (!serve_args.config_file.empty()) {
      auto loaded = LoadAgentConfig(serve_args.config_file);
      if (!loaded) {
        Report(loaded.error());
        return kExitUsage;
      }
      config = std::move(*loaded);
    }
    if (app.get_option("--store")->count() > 0) {
      config.store = store_dir;
    }
    if (!serve_args.address.empty()) {
      config.http.address = serve_args.address;
    }
    if (serve_args.port >= 0) {
      config.http.port = serve_args.port;
    }
    return Serve(std::move(config), platform);
  }
  if (*enroll) {
    for (const std::string& label : enroll_labels) {
      auto eq = label.find('=');
      if (eq == std::string::npos || eq == 0) {
        Report(Error(ErrorCode::kInvalidArgument, "--label wants KEY=VALUE, not '" + label + "'"));
        return kExitUsage;
      }
      enroll_options.labels[label.substr(0, eq)] = label.substr(eq + 1);
    }
    if (!expected_root_file.empty()) {
      auto text = ReadFile(expected_root_file, trust::kMaxDocumentSize);
      if (!text) {
        return Report(text.error());
      }
      auto root = trust::SignedDocument::Parse(*text);
      if (!root) {
        return Report(std::move(root.error()).WithContext(expected_root_file));
      }
      enroll_options.expected_root = std::move(*root);
    }
    auto identity = Enroll(store_dir, enroll_options, now);
    if (!identity) {
      return Report(identity.error());
    }
    std::string labels;
    for (const auto& [k, v] : identity->labels) {
      labels += (labels.empty() ? "" : ",") + k + "=" + v;
    }
    std::printf("enrolled as %s at %s (labels %s); identity in %s\n",
                identity->device_id.c_str(), identity->gateway.c_str(),
                labels.empty() ? "-" : labels.c_str(), IdentityDir(store_dir).c_str());
    return kExitOk;
  }
  auto store = ModelStore::Open(store_dir);
  if (!store) {
    return Report(store.error());
  }
  if (*install) {
    auto text = ReadFile(root_file, trust::kMaxDocumentSize);
    if (!text) {
      return Report(text.error());
    }
    auto root = trust::SignedDocument::Parse(*text);
    if (!root) {
      return Report(std::move(root.error()).WithContext(root_file));
    }
    auto m = store->Install(package, *root, now, platform);
    if (!m) {
      return Report(m.error());
    }
    std::printf("installed %s %s (release counter %llu) in %s\n", m->name.c_str(),
                m->version.c_str(), static_cast<unsigned long long>(m->release_counter),
                m->path.c_str());
    return 0;
  }
  if (*list) {
    auto models = store->List();
    if (!models) {
      return Report(models.error());
    }
    for (const auto& m : *models) {
      std::printf("%-24s %-12s counter %-4llu %s\n", m.name.c_str(), m.version.c_str(),
                  static_cast<unsigned long long>(m.release_counter), m.index_digest.c_str());
    }
    return 0;
  }
  return kExitUsage;
}

}  // namespace airlock::agent
