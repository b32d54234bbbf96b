#include "core/rollout_strategy.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/time.hpp"

namespace airlock {
namespace {

using nlohmann::json;

// A count is at most 9 999 999: seven digits.
constexpr std::size_t kMaxCountDigits = 7;

tl::unexpected<Error> Bad(std::string why) {
  return Fail(ErrorCode::kInvalidArgument, std::move(why));
}

// "1d2h", "5m", "0s": the shortest text ParseDuration reads back as s.
std::string FormatSeconds(std::chrono::seconds s) {
  auto n = s.count();
  if (n == 0) {
    return "0s";
  }
  std::string out;
  for (auto [unit, name] : {std::pair{86400LL, 'd'}, {3600LL, 'h'}, {60LL, 'm'}, {1LL, 's'}}) {
    if (n >= unit) {
      out += std::to_string(n / unit) + name;
      n %= unit;
    }
  }
  return out;
}

Result<ShadowGate> ParseShadow(const json& j) {
  auto bad = [] {
    return Bad(
        "strategy.shadow: {\"min_agreement\": a fraction from 0 to 1, \"min_compared\": a whole "
        "number of at least 1}");
  };
  if (!j.is_object() || j.size() != 2) {
    return bad();
  }
  auto agreement = j.find("min_agreement");
  auto compared = j.find("min_compared");
  if (agreement == j.end() || !agreement->is_number() || compared == j.end() ||
      !compared->is_number_integer()) {
    return bad();
  }
  double a = agreement->get<double>();
  if (!(a >= 0 && a <= 1) ||
      (!compared->is_number_unsigned() && compared->get<std::int64_t>() < 1) ||
      compared->get<std::uint64_t>() < 1) {
    return bad();
  }
  return ShadowGate{a, compared->get<std::uint64_t>()};
}

}  // namespace

std::size_t DeviceShare::Of(std::size_t total) const {
  if (percent) {
    return (total * value + 99) / 100;
  }
  return std::min<std::size_t>(total, value);
}

std::vector<std::size_t> RolloutStrategy::WaveEnds(std::size_t selected) const {
  std::vector<std::size_t> ends;
  std::size_t end = 0;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    end = w + 1 == waves.size() ? selected : std::max(end, waves[w].Of(selected));
    ends.push_back(end);
  }
  return ends;
}

std::size_t RolloutStrategy::FailureLimit(std::size_t selected) const {
  return std::max<std::size_t>(failure_threshold.Of(selected), 1);
}

std::string DeviceShare::ToString() const { return std::to_string(value) + (percent ? "%" : ""); }

Result<DeviceShare> ParseDeviceShare(std::string_view text) {
  bool percent = text.ends_with('%');
  std::string_view digits = percent ? text.substr(0, text.size() - 1) : text;
  if (digits.empty() || digits.size() > kMaxCountDigits || digits[0] == '0' ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Bad("\"" + std::string(text.substr(0, 32)) +
               "\" is not a device count or a percentage such as \"10%\"");
  }
  auto value = static_cast<std::uint32_t>(std::stoul(std::string(digits)));
  if (percent && value > 100) {
    return Bad("\"" + std::string(text) + "\" is above 100%");
  }
  return DeviceShare{value, percent};
}

Result<RolloutStrategy> RolloutStrategy::FromJson(const json& j) {
  if (!j.is_object()) {
    return Bad("\"strategy\" must be an object");
  }
  RolloutStrategy s;
  for (const auto& [key, value] : j.items()) {
    if (key == "waves") {
      auto bad = [] {
        return Bad(
            "strategy.waves: a list of device counts or percentages, e.g. [\"1\", \"10%\", "
            "\"100%\"]");
      };
      if (!value.is_array() || value.empty() || value.size() > 100) {
        return bad();
      }
      s.waves.clear();
      for (const json& w : value) {
        auto share =
            w.is_string() ? ParseDeviceShare(w.get<std::string>()) : Result<DeviceShare>(Bad(""));
        if (!share) {
          return bad();
        }
        s.waves.push_back(*share);
      }
    } else if (key == "max_in_flight") {
      if (!value.is_number_integer() ||
          (!value.is_number_unsigned() && value.get<std::int64_t>() < 1) ||
          value.get<std::uint64_t>() < 1 ||
          value.get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max()) {
        return Bad("strategy.max_in_flight: a whole number of at least 1");
      }
      s.max_in_flight = value.get<std::uint32_t>();
    } else if (key == "health_window") {
      auto bad = [] {
        return Bad("strategy.health_window: a duration in whole seconds such as \"5m\"");
      };
      if (!value.is_string()) {
        return bad();
      }
      auto d = ParseDuration(value.get<std::string>());
      if (!d || d->count() % 1000 != 0) {
        return bad();
      }
      s.health_window = std::chrono::duration_cast<std::chrono::seconds>(*d);
    } else if (key == "failure_threshold") {
      auto share = value.is_string() ? ParseDeviceShare(value.get<std::string>())
                                     : Result<DeviceShare>(Bad(""));
      if (!share) {
        return Bad("strategy.failure_threshold: a device count or a percentage such as \"10%\"");
      }
      s.failure_threshold = *share;
    } else if (key == "shadow") {
      AIRLOCK_ASSIGN_OR_RETURN(s.shadow, ParseShadow(value));
    } else {
      return Bad("strategy." + key.substr(0, 64) +
                 ": unknown (waves, max_in_flight, health_window, failure_threshold, shadow)");
    }
  }
  return s;
}

json RolloutStrategy::ToJson() const {
  json w = json::array();
  for (const auto& share : waves) {
    w.push_back(share.ToString());
  }
  json j = {{"waves", w},
            {"max_in_flight", max_in_flight},
            {"health_window", FormatSeconds(health_window)},
            {"failure_threshold", failure_threshold.ToString()}};
  if (shadow) {
    j["shadow"] = {{"min_agreement", shadow->min_agreement},
                   {"min_compared", shadow->min_compared}};
  }
  return j;
}

Result<Selector> ParseSelector(const json& j) {
  if (!j.is_object()) {
    return Bad("\"selector\" must be an object of label: value");
  }
  Selector out;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      return Bad("selector label " + key.substr(0, 64) + " must have a string value");
    }
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

bool Selects(const Selector& selector, const std::map<std::string, std::string>& labels) {
  return std::all_of(selector.begin(), selector.end(), [&](const auto& wanted) {
    auto it = labels.find(wanted.first);
    return it != labels.end() && it->second == wanted.second;
  });
}

}  // namespace airlock
