#include "support/daemon.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <stdexcept>
#include <thread>

#include "support/test_support.hpp"

namespace airlock::testing {

pid_t SpawnDaemon(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  std::optional<DaemonUser> user) {
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) {
    args.push_back(a.data());
  }
  args.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("cannot open " + log.string());
  }
  bool drop = user && ::geteuid() != user->uid;
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. The death signal is set after the
    // change of user, which would clear it.
    if (drop &&
        (::setgroups(0, nullptr) != 0 || ::setgid(user->gid) != 0 || ::setuid(user->uid) != 0)) {
      ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

bool WaitUntilServing(pid_t& pid, const std::function<bool()>& ready,
                      std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return false;
    }
    if (ready()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  StopDaemon(pid);
  return false;
}

void StopDaemon(pid_t& pid, int sig, std::chrono::milliseconds grace) {
  if (pid <= 0) {
    return;
  }
  ::kill(pid, sig);
  auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid = -1;
}

int WaitForServingPort(pid_t& pid, const std::filesystem::path& log,
                       std::chrono::milliseconds timeout) {
  std::regex serving("serving on https?://127\\.0\\.0\\.1:([0-9]+)");
  int port = 0;
  bool up = WaitUntilServing(
      pid,
      [&] {
        std::smatch m;
        std::string text = ReadAll(log);
        if (std::regex_search(text, m, serving)) {
          port = std::stoi(m[1]);
          return true;
        }
        return false;
      },
      timeout);
  return up ? port : 0;
}

}  // namespace airlock::testing
