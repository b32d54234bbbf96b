#pragma once
// Whole numbers from JSON that came over the network (telemetry batches and reports).
// nlohmann's get<std::uint64_t>() converts any number it finds: a float out of range is undefined
// behaviour (fuzz_telemetry found 1e127 as an outbox count), and -1 becomes 2^64 - 1. These take
// only numbers the type holds and otherwise throw json::type_error, which the parsers already
// catch as json::exception and report as a malformed field.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace airlock::monitor::json_numbers {

inline std::uint64_t Unsigned(const nlohmann::json& v) {
  // A parsed 7 is number_unsigned; a 7 put into a json by code is number_integer.
  if (v.is_number_unsigned()) {
    return v.get<std::uint64_t>();
  }
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  throw nlohmann::json::type_error::create(302, "want a whole number of 0 or more", &v);
}

inline std::int64_t Integer(const nlohmann::json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    return v.get<std::int64_t>();
  }
  if (v.is_number_unsigned() &&
      v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v.get<std::uint64_t>());
  }
  throw nlohmann::json::type_error::create(302, "want a whole number (64-bit)", &v);
}

inline std::vector<std::uint64_t> Unsigneds(const nlohmann::json& v) {
  if (!v.is_array()) {
    throw nlohmann::json::type_error::create(302, "want a list of whole numbers", &v);
  }
  std::vector<std::uint64_t> out;
  out.reserve(v.size());
  for (const auto& x : v) {
    out.push_back(Unsigned(x));
  }
  return out;
}

// j[key] when present (as Unsigned), else fallback. j must be an object.
inline std::uint64_t UnsignedOr(const nlohmann::json& j, const char* key, std::uint64_t fallback) {
  if (!j.is_object()) {
    throw nlohmann::json::type_error::create(306, "want an object", &j);
  }
  auto it = j.find(key);
  return it == j.end() ? fallback : Unsigned(*it);
}

}  // namespace airlock::monitor::json_numbers
