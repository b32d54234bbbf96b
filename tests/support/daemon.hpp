#pragma once
// Child processes for the real servers the tests start (Mosquitto, Distribution, PostgreSQL):
// started with their output in a log file, killed when the test process dies, stopped with a
// signal and a deadline. Not thread-safe.

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace airlock::testing {

struct DaemonUser {
  uid_t uid;
  gid_t gid;
};

// Forks argv (argv[0] an absolute path) with stdin from /dev/null and stdout and stderr appended
// to log, as user when one is given and it is not ours. The child gets SIGKILL when this process
// dies (PR_SET_PDEATHSIG). Returns its pid; throws std::runtime_error when it cannot start.
pid_t SpawnDaemon(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  std::optional<DaemonUser> user = std::nullopt);

// Polls ready() until it holds (true), the process exits (false, pid set to -1: a port taken, a
// bad configuration) or timeout passes (false, the process stopped).
bool WaitUntilServing(pid_t& pid, const std::function<bool()>& ready,
                      std::chrono::milliseconds timeout);

// Waits until log says "serving on http://127.0.0.1:PORT" (what every Airlock daemon prints once
// it listens) and returns PORT; 0 when the process exits or timeout passes first (as
// WaitUntilServing).
int WaitForServingPort(pid_t& pid, const std::filesystem::path& log,
                       std::chrono::milliseconds timeout);

// Sends sig, waits up to grace for the process to exit, then SIGKILLs it; sets pid to -1. Does
// nothing when pid <= 0.
void StopDaemon(pid_t& pid, int sig = SIGTERM,
                std::chrono::milliseconds grace = std::chrono::seconds(5));

}  // namespace airlock::testing
