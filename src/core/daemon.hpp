#pragma once
// What the daemons (airlock-agent, airlock-hub) share around their servers: whether an address
// is loopback, and shutting down on SIGINT or SIGTERM.

#include <signal.h>

#include <functional>
#include <string_view>

namespace airlock {

// Whether host (a name or address, without a port) is this machine only: "localhost",
// 127.x.x.x, "::1" or "[::1]".
bool IsLoopbackHost(std::string_view host);

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards, and
// ignores SIGPIPE. Construct it first thing in main's thread, before any thread exists.
class StopSignals {
 public:
  StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Runs serve() until it returns; a thread waits for the first stop signal and calls stop(),
  // which must make serve() return.
  void Serve(const std::function<void()>& serve, const std::function<void()>& stop);
  // Blocks until the first stop signal, for a daemon whose threads serve on their own.
  void Wait();

 private:
  sigset_t set_;
};

}  // namespace airlock
