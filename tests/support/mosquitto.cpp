#include "support/mosquitto.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "support/daemon.hpp"

namespace airlock::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

}  // namespace

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error("socket failed");
  }
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool WaitUntil(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (predicate()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return predicate();
    }
    std::this_thread::sleep_for(every);
  }
}

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in addr = Loopback(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

MosquittoBroker::MosquittoBroker(MosquittoOptions options) : options_(std::move(options)) {
  if (!options_.username.empty()) {
    auto r = RunCommand({"mosquitto_passwd", "-b", "-c", (dir_ / "passwd").string(),
                         options_.username, options_.password},
                        {}, 30);
    if (r.exit_code != 0) {
      throw std::runtime_error("mosquitto_passwd failed: " + r.err);
    }
  }
  // A port picked by FreePort can be taken by someone else before mosquitto binds it: try again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = options_.port != 0 ? options_.port : FreePort();
    if (TryStart()) {
      return;
    }
    if (options_.port != 0) {
      break;
    }
  }
  throw std::runtime_error("mosquitto did not start: " + Log());
}

MosquittoBroker::~MosquittoBroker() { Stop(); }

std::string MosquittoBroker::url() const {
  return (options_.listener_config.empty() ? "tcp://127.0.0.1:" : "mqtts://127.0.0.1:") +
         std::to_string(port_);
}

std::string MosquittoBroker::Log() const { return ReadAll(dir_ / "mosquitto.log"); }

void MosquittoBroker::Start() {
  if (running()) {
    return;
  }
  // The old broker's port is in TIME_WAIT at worst; mosquitto sets SO_REUSEADDR. Retry briefly
  // in case the kernel still holds it.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (TryStart()) {
      return;
    }
    std::this_thread::sleep_for(200ms);
  }
  throw std::runtime_error("mosquitto did not restart on port " + std::to_string(port_) + ": " +
                           Log());
}

bool MosquittoBroker::TryStart() {
  std::string config = "listener " + std::to_string(port_) + " 127.0.0.1\n" +
                       options_.listener_config + "persistence false\n" + "log_dest stderr\n" +
                       "log_type all\n";
  if (!options_.acl_file.empty()) {
    config += "acl_file " + options_.acl_file.string() + "\n";
  }
  if (!options_.listener_config.empty()) {
    config += "allow_anonymous false\n";  // the certificate names the client
  } else if (options_.username.empty()) {
    config += "allow_anonymous true\n";
  } else {
    config += "allow_anonymous false\npassword_file " + (dir_ / "passwd").string() + "\n";
  }
  if (::geteuid() == 0) {
    config += "user root\n";  // else mosquitto drops to user 'mosquitto' and cannot read the dir
  }
  fs::path conf = dir_ / "mosquitto.conf";
  WriteAll(conf, config);
  pid_ = SpawnDaemon({kMosquitto, "-c", conf.string()}, dir_ / "mosquitto.log");
  return WaitUntilServing(
      pid_, [this] { return CanConnect(port_); }, 10s);
}

void MosquittoBroker::Stop() { StopDaemon(pid_); }

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      ::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::runtime_error("TcpProxy: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  [[maybe_unused]] auto n = ::write(wake_[1], "x", 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpProxy::CutConnections() {
  {
    std::lock_guard lk(mu_);
    cut_ = true;
  }
  [[maybe_unused]] auto n = ::write(wake_[1], "x", 1);
  // Returns once the relay thread has closed them.
  WaitUntil([this] {
    std::lock_guard lk(mu_);
    return !cut_;
  });
}

void TcpProxy::Run() {
  std::vector<std::pair<int, int>> pairs;  // (client side, broker side)
  auto close_all = [&pairs] {
    for (auto [a, b] : pairs) {
      ::close(a);
      ::close(b);
    }
    pairs.clear();
  };
  char buf[16384];
  while (true) {
    {
      std::lock_guard lk(mu_);
      if (stop_) {
        break;
      }
      if (cut_) {
        close_all();
        cut_ = false;
      }
    }
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (auto [a, b] : pairs) {
      fds.push_back({a, POLLIN, 0});
      fds.push_back({b, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), 1000) <= 0) {
      continue;
    }
    if (fds[0].revents & POLLIN) {
      while (::read(wake_[0], buf, sizeof(buf)) > 0) {
      }
    }
    const std::size_t polled = pairs.size();  // fds has entries for these only
    if (fds[1].revents & POLLIN) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr = Loopback(target_port_);
        if (upstream >= 0 &&
            ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
          pairs.emplace_back(client, upstream);
        } else {
          ::close(client);
          if (upstream >= 0) {
            ::close(upstream);
          }
        }
      }
    }
    std::vector<std::pair<int, int>> keep(pairs.begin() + static_cast<std::ptrdiff_t>(polled),
                                          pairs.end());
    for (std::size_t i = 0; i < polled; ++i) {
      auto [a, b] = pairs[i];
      bool alive = true;
      for (int side = 0; side < 2 && alive; ++side) {
        const pollfd& p = fds[2 + 2 * i + side];
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) {
          continue;
        }
        int from = side == 0 ? a : b;
        int to = side == 0 ? b : a;
        ssize_t n = ::read(from, buf, sizeof(buf));
        if (n <= 0 || ::send(to, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) {
          alive = false;
        } else if (side == 1) {
          to_clients_ += static_cast<std::uint64_t>(n);
          if (std::uint64_t rate = rate_.load(); rate > 0) {
            // Sleep off what this piece took of the budget (every relayed connection waits).
            std::this_thread::sleep_for(std::chrono::microseconds(
                static_cast<std::uint64_t>(n) * 1'000'000 / rate));
          }
        }
      }
      if (alive) {
        keep.emplace_back(a, b);
      } else {
        ::close(a);
        ::close(b);
      }
    }
    pairs = std::move(keep);
  }
  close_all();
}

}  // namespace airlock::testing
