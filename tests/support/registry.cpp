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
  std::string log = (dir_ / "registry.log").string();
  std::vector<std::string> argv{kDockerRegistry, "serve", config.string()};
  std::vector<char*> args;
  for (auto& a : argv) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("cannot open " + log);
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(kDockerRegistry, args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // exited: port taken, bad config
      return false;
    }
    if (CanConnect(port_)) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  Stop();
  return false;
}

void DistributionRegistry::Stop() {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
}

}  // namespace airlock::testing
