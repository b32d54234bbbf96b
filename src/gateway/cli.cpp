#include "gateway/cli.hpp"

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "core/daemon.hpp"
#include "core/exit_codes.hpp"
#include "core/log.hpp"
#include "gateway/cache.hpp"
#include "gateway/layout_import.hpp"
#include "gateway/registry.hpp"

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
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  signals.Serve(
      [&] {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopped; });
      },
      [&] {
        (*registry)->Stop();
        std::lock_guard lock(mu);
        stopped = true;
        cv.notify_all();
      });
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
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
  return ServeRegistry(**cache, options, signals);
}

}  // namespace airlock::gateway
