#include "core/daemon.hpp"

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <string>
#include <thread>

#include "core/log.hpp"

namespace airlock {

bool IsLoopbackHost(std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (h == "localhost" || h == "::1" || h == "[::1]") {
    return true;
  }
  return h.starts_with("127.") && std::all_of(h.begin(), h.end(), [](char c) {
           return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
         });
}

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

void StopSignals::Serve(const std::function<void()>& serve, const std::function<void()>& stop) {
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set_, &sig);
    spdlog::info("stopping (signal {})", sig);
    stop();
  });
  serve();
  // serve also returns when stop was not called (a listen failure): wake the waiter.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
}

void StopSignals::Wait() {
  int sig = 0;
  sigwait(&set_, &sig);
  spdlog::info("stopping (signal {})", sig);
}

}  // namespace airlock
