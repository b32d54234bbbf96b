#include "core/record_json.hpp"

namespace airlock {

using nlohmann::json;

Error RecordReader::Malformed(std::string_view field, std::string_view why) const {
  return Error(ErrorCode::kCorrupt, "malformed " + std::string(record_) + ": \"" +
                                        std::string(field) + "\" " + std::string(why));
}

Result<std::string> RecordReader::String(const json& j, const char* key) const {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return Fail(Malformed(key, "must be a string"));
  }
  return it->get<std::string>();
}

Result<std::uint64_t> RecordReader::Unsigned(const json& j, const char* key,
                                             std::uint64_t max) const {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() ||
      (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) ||
      it->get<std::uint64_t>() > max) {
    return Fail(Malformed(key, "must be an integer from 0 to " + std::to_string(max)));
  }
  return it->get<std::uint64_t>();
}

Result<bool> RecordReader::Bool(const json& j, const char* key) const {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) {
    return Fail(Malformed(key, "must be true or false"));
  }
  return it->get<bool>();
}

Result<TimePoint> RecordReader::Time(const json& j, const char* key) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, String(j, key));
  auto t = ParseRfc3339(text);
  if (!t) {
    return Fail(Malformed(key, "must be an RFC 3339 time"));
  }
  return *t;
}

Result<std::optional<TimePoint>> RecordReader::OptionalTime(const json& j,
                                                            const char* key) const {
  if (!j.contains(key)) {
    return std::optional<TimePoint>();
  }
  AIRLOCK_ASSIGN_OR_RETURN(TimePoint t, Time(j, key));
  return std::optional<TimePoint>(t);
}

}  // namespace airlock
