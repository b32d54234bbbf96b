#pragma once
// Reading the JSON of a persisted record (a delivery, a rollout, an activation journal) strictly:
// each refusal is kCorrupt and names the record and the field, e.g.
//   malformed delivery record: "deadline" must be an RFC 3339 time
// Plain value; thread-safe.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock {

class RecordReader {
 public:
  // record: what the messages call the record ("delivery record"); must outlive the reader.
  constexpr explicit RecordReader(std::string_view record) : record_(record) {}

  Error Malformed(std::string_view field, std::string_view why) const;

  // j[key], which must be present and of the type; Unsigned also at most max.
  [[nodiscard]] Result<std::string> String(const nlohmann::json& j, const char* key) const;
  [[nodiscard]] Result<std::uint64_t> Unsigned(const nlohmann::json& j, const char* key,
                                               std::uint64_t max) const;
  [[nodiscard]] Result<bool> Bool(const nlohmann::json& j, const char* key) const;
  [[nodiscard]] Result<TimePoint> Time(const nlohmann::json& j, const char* key) const;
  // nullopt when key is absent; otherwise as Time.
  [[nodiscard]] Result<std::optional<TimePoint>> OptionalTime(const nlohmann::json& j,
                                                              const char* key) const;

 private:
  std::string_view record_;
};

}  // namespace airlock
