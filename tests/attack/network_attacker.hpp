#pragma once
// NetworkAttacker: someone who holds the network between a device and its gateway's registry
// (docs/security.md, "Someone who holds the network"). An HTTP relay on a free port of 127.0.0.1
// that passes requests under /v2/ to the registry and its answers back, except for the one
// document or blob it is told to attack: then it changes the bytes, sends more than there are,
// sends them a byte at a time, or holds them back.
//
// Thread-safe: the test changes the attack while the relay serves. The destructor stops the
// answers it is dragging out first, so a test never waits for a trickle to end.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/digest.hpp"

namespace airlock::testing {

class NetworkAttacker {
 public:
  enum class Mode {
    kHonest,      // the registry's answer, unchanged
    kFlipAByte,   // one byte in the middle changed, same length
    kLongerBody,  // the answer and 1 MiB more, with a Content-Length that says so
    kEndless,     // the answer, then more bytes for as long as the reader takes them (chunked)
    kTrickle,     // the answer one byte at a time, each after the one before by trickle_every
    kHold,        // the answer only once release_when() holds
  };

  explicit NetworkAttacker(int registry_port) : registry_port_(registry_port) {
    auto relay = [this](const httplib::Request& req, httplib::Response& res) { Relay(req, res); };
    server_.Get(R"(/v2/.*)", relay);
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) {
      throw std::runtime_error("the network attacker cannot listen on 127.0.0.1");
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }

  ~NetworkAttacker() {
    stopping_ = true;
    server_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  NetworkAttacker(const NetworkAttacker&) = delete;
  NetworkAttacker& operator=(const NetworkAttacker&) = delete;

  // "127.0.0.1:PORT": where the device is told its gateway is.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Attacks the answers to GET /v2/…/manifests/TARGET and /v2/…/blobs/TARGET from now on.
  void Attack(const Digest& target, Mode mode) {
    std::lock_guard lock(mu_);
    target_ = target.ToString();
    mode_ = mode;
  }
  // kHold: the answer waits until this holds (polled every 20 ms).
  void ReleaseWhen(std::function<bool()> predicate) {
    std::lock_guard lock(mu_);
    release_when_ = std::move(predicate);
  }
  // Relays everything unchanged from now on.
  void Honest() {
    std::lock_guard lock(mu_);
    target_.clear();
    mode_ = Mode::kHonest;
  }
  // How many requests for the target were attacked.
  int attacked() const { return attacked_.load(); }

  // kTrickle: the pause between two bytes.
  static constexpr std::chrono::milliseconds kTrickleEvery{100};

 private:
  void Relay(const httplib::Request& req, httplib::Response& res) {
    httplib::Client registry("127.0.0.1", registry_port_);
    registry.set_read_timeout(60);
    httplib::Headers headers;
    for (const char* name : {"Range", "Accept", "Authorization"}) {
      if (req.has_header(name)) {
        headers.emplace(name, req.get_header_value(name));
      }
    }
    std::string path = req.path;
    if (!req.params.empty()) {
      path += "?" + httplib::detail::params_to_query_str(req.params);
    }
    auto answer = registry.Get(path, headers);
    if (!answer) {
      res.status = 502;
      return;
    }
    res.status = answer->status;
    for (const char* name : {"Docker-Content-Digest", "Content-Range", "Location", "OCI-Subject",
                             "Docker-Distribution-API-Version", "Accept-Ranges"}) {
      if (answer->has_header(name)) {
        res.set_header(name, answer->get_header_value(name));
      }
    }
    const std::string type = answer->get_header_value("Content-Type");
    std::string body = answer->body;

    Mode mode = Mode::kHonest;
    std::function<bool()> release_when;
    {
      std::lock_guard lock(mu_);
      bool targeted =
          !target_.empty() && answer->status / 100 == 2 &&
          (req.path.ends_with("/blobs/" + target_) || req.path.ends_with("/manifests/" + target_));
      if (targeted) {
        mode = mode_;
        release_when = release_when_;
      }
    }
    if (mode != Mode::kHonest) {
      ++attacked_;
    }
    switch (mode) {
      case Mode::kHonest:
        res.set_content(body, type);
        return;
      case Mode::kFlipAByte:
        if (!body.empty()) {
          body[body.size() / 2] = static_cast<char>(body[body.size() / 2] ^ 0x5a);
        }
        res.set_content(body, type);
        return;
      case Mode::kLongerBody:
        res.set_content(body + std::string(1 << 20, 'x'), type);
        return;
      case Mode::kEndless:
        res.set_chunked_content_provider(
            type, [this, body](std::size_t offset, httplib::DataSink& sink) {
              if (stopping_) {
                return false;
              }
              if (offset < body.size()) {
                return sink.write(body.data() + offset, body.size() - offset);
              }
              static const std::string kMore(64 << 10, 'x');
              return sink.write(kMore.data(), kMore.size());
            });
        return;
      case Mode::kTrickle:
        res.set_content_provider(
            body.size(), type,
            [this, body](std::size_t offset, std::size_t, httplib::DataSink& sink) {
              if (!Pause(kTrickleEvery)) {
                return false;
              }
              return sink.write(body.data() + offset, 1);
            });
        return;
      case Mode::kHold:
        while (release_when && !release_when()) {
          if (!Pause(std::chrono::milliseconds(20))) {
            res.status = 503;
            return;
          }
        }
        res.set_content(body, type);
        return;
    }
  }

  // Sleeps for d; false when the relay is stopping.
  bool Pause(std::chrono::milliseconds d) const {
    std::this_thread::sleep_for(d);
    return !stopping_;
  }

  const int registry_port_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> attacked_{0};

  std::mutex mu_;
  std::string target_;  // "sha256:…"; empty: none
  Mode mode_ = Mode::kHonest;
  std::function<bool()> release_when_;
};

}  // namespace airlock::testing
