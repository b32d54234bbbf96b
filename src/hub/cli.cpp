#include "hub/cli.hpp"

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/exit_codes.hpp"
#include "core/log.hpp"
#include "hub/server.hpp"
#include "store/postgres_metadata_store.hpp"

namespace airlock::hub {
namespace {

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-hub: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

// Opens the data directory and serves until SIGINT or SIGTERM.
int Serve(HubConfig config) {
  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::string address = config.http.address;
  std::filesystem::path data = config.data;
  std::string metadata =
      config.db.empty() ? (data / "metadata.db").string() : store::RedactedPostgresUri(config.db);
  auto hub = Hub::Open(std::move(config));
  if (!hub) {
    return Report(hub.error());
  }
  HubServer& server = (*hub)->server();
  Status bound = server.Bind();
  if (!bound) {
    return Report(bound.error());
  }
  spdlog::info("data directory {}, metadata in {}", data.string(), metadata);
  std::printf("airlock-hub: serving on http://%s:%d\n", address.c_str(), server.port());
  std::fflush(stdout);
  if (address != "127.0.0.1" && address != "::1" && address != "localhost") {
    spdlog::warn(
        "listening on {} without authentication: anyone who can reach this port can "
        "push and delete (tokens and roles are not implemented yet)",
        address);
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("stopping (signal {})", sig);
    server.Stop();
  });
  server.Serve();
  // Serve also returns when Stop was not called (a listen failure): wake the waiter.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
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
  serve->add_option("--address", address, "address to listen on (default 127.0.0.1)");
  serve->add_option("--port", port, "port to listen on (default 7400; 0 picks a free one)")
      ->check(CLI::Range(0, 65535));
  serve->add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str();

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
  if (port >= 0) {
    config.http.port = port;
  }
  return Serve(std::move(config));
}

}  // namespace airlock::hub
