#include "support/registry.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/daemon.hpp"
#include "support/mosquitto.hpp"

namespace airlock::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

DistributionRegistry::DistributionRegistry() {
  if (::access(kDockerRegistry, X_OK) != 0) {
    throw std::runtime_error(std::string(kDockerRegistry) +
                             " is missing (scripts/bootstrap installs docker-registry)");
  }
  // A port picked by FreePort can be taken before the registry binds it: try again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (TryStart()) {
      return;
    }
  }
  throw std::runtime_error("docker-registry did not start: " + Log());
}

DistributionRegistry::~DistributionRegistry() { Stop(); }

fs::path DistributionRegistry::BlobDataPath(const std::string& hex) const {
  return dir_.path() / "data/docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
}

std::string DistributionRegistry::Log() const { return ReadAll(dir_ / "registry.log"); }

bool DistributionRegistry::TryStart() {
  fs::path config = dir_ / "config.yml";
  WriteAll(config,
           "version: 0.1\n"
           "log:\n  level: info\n"
           "storage:\n"
           "  filesystem:\n    rootdirectory: " +
               (dir_ / "data").string() +
               "\n"
               "  delete:\n    enabled: true\n"
               "http:\n  addr: 127.0.0.1:" +
               std::to_string(port_) +
               "\n"
               "  secret: airlock-tests\n");
  pid_ = SpawnDaemon({kDockerRegistry, "serve", config.string()}, dir_ / "registry.log");
  return WaitUntilServing(
      pid_, [this] { return CanConnect(port_); }, 15s);
}

void DistributionRegistry::Stop() { StopDaemon(pid_); }

}  // namespace airlock::testing
