#pragma once
// MQTT messages a test's client received (header-only: the support library does not link
// airlock_net).

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "net/mqtt.hpp"

namespace airlock::testing {

// What an MQTT client received, for assertions from the test thread. Thread-safe.
class ReceivedMessages {
 public:
  net::MqttHandler Handler() {
    return [this](const net::MqttMessage& m) {
      std::lock_guard lk(mu_);
      seen_.push_back(m.topic + " " + m.payload);
    };
  }
  bool Has(const std::string& topic, const std::string& payload) {
    std::lock_guard lk(mu_);
    return std::find(seen_.begin(), seen_.end(), topic + " " + payload) != seen_.end();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> seen_;
};

}  // namespace airlock::testing
