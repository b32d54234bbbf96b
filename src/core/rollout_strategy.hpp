#pragma once
// A deployment's selector and rollout strategy (DESIGN §6 "Rollout"): the rules the hub checks
// when a deployment is created and the gateway reads back when it runs the rollout, in one place
// so that both sides agree on what a strategy means (docs/rollout-strategies.md).
//
//   "selector": {"line": "3"}                  every label, with that value; {} selects all
//   "strategy": {"waves": ["1", "10%", "100%"],  counts or percentages of the selected devices
//                "max_in_flight": 10,           devices updating at once, at least 1
//                "health_window": "5m",         whole seconds, "0s" allowed
//                "failure_threshold": "10%",    a count or a percentage of the selected devices
//                "shadow": {"min_agreement": 0.99, "min_compared": 200}}   optional
//
// Plain values and free functions; thread-compatible.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace airlock {

// A number of devices: a count ("3", 1 to 9 999 999) or a percentage of the selected devices
// ("10%", 1 to 100).
struct DeviceShare {
  std::uint32_t value = 1;
  bool percent = false;

  // How many of `total` devices this is: a percentage rounded up ("10%" of 3 is 1), a count
  // capped at total.
  std::size_t Of(std::size_t total) const;
  std::string ToString() const;  // "3", "10%"
  bool operator==(const DeviceShare&) const = default;
};
// kInvalidArgument unless text is such a count or percentage.
[[nodiscard]] Result<DeviceShare> ParseDeviceShare(std::string_view text);

// The shadow gate: before the candidate becomes active on a device it runs there in shadow, and
// it passes once the device reports at least min_compared compared inferences of which a fraction
// of at least min_agreement agreed with the active model.
struct ShadowGate {
  double min_agreement = 0.99;     // 0 to 1
  std::uint64_t min_compared = 1;  // at least 1
  bool operator==(const ShadowGate&) const = default;
};

struct RolloutStrategy {
  // Each entry is the cumulative size the rollout has reached when that wave is done; the first is
  // the canary. The last wave always takes the rollout to every selected device.
  std::vector<DeviceShare> waves = {{1, false}, {100, true}};
  std::uint32_t max_in_flight = 10;
  std::chrono::seconds health_window{5 * 60};
  DeviceShare failure_threshold = {10, true};
  std::optional<ShadowGate> shadow;

  bool operator==(const RolloutStrategy&) const = default;

  // The strategy object of a deployment; absent keys take the defaults above. kInvalidArgument
  // naming the key ("strategy.waves: …") on an unknown key or a bad value.
  [[nodiscard]] static Result<RolloutStrategy> FromJson(const nlohmann::json& j);
  // Every key, durations in their shortest form ("5m", "1h30m"); FromJson reads it back equal.
  nlohmann::json ToJson() const;

  // How `selected` devices split into waves: for each wave, the cumulative number of devices the
  // rollout has reached when it is done — the share it names, never below the wave before, the
  // last one every device. The gateway's rollout engine sizes its waves with this, and the hub's
  // deployment preview shows it. One entry per wave; all 0 when nothing is selected.
  std::vector<std::size_t> WaveEnds(std::size_t selected) const;
  // The failures that abort a rollout of `selected` devices: failure_threshold of them, at least 1.
  std::size_t FailureLimit(std::size_t selected) const;
};

// Labels a device must carry, each with that value.
using Selector = std::map<std::string, std::string>;
// kInvalidArgument unless j is an object of string values.
[[nodiscard]] Result<Selector> ParseSelector(const nlohmann::json& j);
// Whether labels has every label of selector with its value (an empty selector selects all).
bool Selects(const Selector& selector, const std::map<std::string, std::string>& labels);

}  // namespace airlock
