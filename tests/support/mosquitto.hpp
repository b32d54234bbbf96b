#pragma once
// A real Mosquitto broker for tests, and the free-port and bounded-wait helpers around it.
//
// MosquittoBroker starts /usr/sbin/mosquitto (Debian's 2.0) with a config of its own in a
// temporary directory: one listener on 127.0.0.1, anonymous access (or a password file),
// no persistence. The constructor returns once the broker accepts TCP connections and throws
// std::runtime_error when it does not within the deadline. The broker is killed by Stop() and by
// the destructor, and (PR_SET_PDEATHSIG) when the test process dies, so none is left behind.
// Not thread-safe.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "support/test_support.hpp"

namespace airlock::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, released).
// Another process can take it before the caller binds it; MosquittoBroker retries on that.
int FreePort();

// Polls predicate every `every` until it holds or timeout passes; returns its last value.
bool WaitUntil(const std::function<bool()>& predicate,
               std::chrono::milliseconds timeout = std::chrono::seconds(10),
               std::chrono::milliseconds every = std::chrono::milliseconds(10));

// Whether a TCP connection to 127.0.0.1:port succeeds right now.
bool CanConnect(int port);

struct MosquittoOptions {
  int port = 0;  // 0: a free port
  // When set, anonymous clients are refused and this one user may connect.
  std::string username;
  std::string password;
  // When set, lines that follow the listener line (a TLS listener, e.g. MosquittoTlsListener of
  // gateway/broker_config.hpp; url() is then mqtts://), and an ACL file.
  std::string listener_config;
  std::filesystem::path acl_file;
};

class MosquittoBroker {
 public:
  explicit MosquittoBroker(MosquittoOptions options = {});
  ~MosquittoBroker();
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  int port() const { return port_; }
  // "tcp://127.0.0.1:PORT", or mqtts:// for a TLS listener
  std::string url() const;
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // for signals (SIGHUP: reload the CRL)

  // Kills the broker (SIGTERM, then SIGKILL after a deadline) and waits until the port is closed.
  void Stop();
  // Starts it again on the same port (clients see a broker restart).
  void Start();
  // What the broker logged so far, for failure messages.
  std::string Log() const;

 private:
  bool TryStart();
  MosquittoOptions options_;
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A TCP relay on 127.0.0.1 to another local port, whose connections a test can cut, as a broken
// network would (no MQTT DISCONNECT reaches the broker, so it publishes the client's last will).
// New connections keep being relayed after a cut. Thread-safe.
class TcpProxy {
 public:
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;
  int port() const { return port_; }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  // Closes every relayed connection (both sides).
  void CutConnections();
  // Bytes relayed from the target to the clients so far.
  std::uint64_t bytes_to_clients() const { return to_clients_.load(); }
  // Relays at most this many bytes a second from the target to the clients (0: no limit), so
  // that a test can act in the middle of a transfer.
  void set_rate(std::uint64_t bytes_per_second) { rate_ = bytes_per_second; }

 private:
  void Run();
  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};  // a pipe that interrupts poll
  std::mutex mu_;
  bool stop_ = false;
  bool cut_ = false;
  std::atomic<std::uint64_t> to_clients_{0};
  std::atomic<std::uint64_t> rate_{0};
  std::thread thread_;
};

}  // namespace airlock::testing
