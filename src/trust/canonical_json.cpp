#include "trust/canonical_json.hpp"

#include <set>
#include <vector>

namespace airlock::trust {
namespace {

Status CheckNoFloats(const nlohmann::json& v, const std::string& where) {
  if (v.is_number_float()) {
    return Fail(ErrorCode::kInvalidArgument, "floating-point number at " + where +
                                                 " cannot be signed (use an integer or string)");
  }
  if (v.is_object()) {
    for (const auto& [k, item] : v.items()) {
      AIRLOCK_RETURN_IF_ERROR(CheckNoFloats(item, where + "/" + k));
    }
  } else if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      AIRLOCK_RETURN_IF_ERROR(CheckNoFloats(v[i], where + "/" + std::to_string(i)));
    }
  }
  return {};
}

}  // namespace

std::string StringOr(const nlohmann::json& obj, std::string_view key, std::string fallback) {
  if (obj.is_object()) {
    auto it = obj.find(key);
    if (it != obj.end() && it->is_string()) {
      return it->get<std::string>();
    }
  }
  return fallback;
}

std::int64_t IntOr(const nlohmann::json& obj, std::string_view key, std::int64_t fallback) {
  if (obj.is_object()) {
    auto it = obj.find(key);
    if (it != obj.end() && it->is_number_integer()) {
      return it->get<std::int64_t>();
    }
  }
  return fallback;
}

Result<std::string> Canonicalize(const nlohmann::json& value) {
  AIRLOCK_RETURN_IF_ERROR(CheckNoFloats(value, ""));
  try {
    // nlohmann keeps object keys in a std::map (sorted by bytes) and, with no indent and
    // ensure_ascii off, writes exactly the form described in the header.
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("cannot canonicalize: ") + e.what());
  }
}

Result<nlohmann::json> ParseJson(std::string_view text, std::size_t max_size,
                                 std::string_view what) {
  if (text.size() > max_size) {
    return Fail(ErrorCode::kCorrupt, std::string(what) + " is " + std::to_string(text.size()) +
                                         " bytes, over its limit of " + std::to_string(max_size));
  }
  // Duplicate keys are refused: parsers disagree on which one wins, so a document that means
  // one thing here could mean another to some other reader.
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  bool too_deep = false;
  auto track = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    // depth counts the enclosing arrays and objects. Returning false drops the too-deep value, so
    // it is never built; the text is still read to its end, once.
    if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    if (event == Event::object_start) {
      keys.emplace_back();
    } else if (event == Event::object_end && !keys.empty()) {
      keys.pop_back();
    } else if (event == Event::key && !keys.empty() &&
               !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json out = nlohmann::json::parse(text, track, /*allow_exceptions=*/false);
  if (out.is_discarded()) {
    return Fail(ErrorCode::kCorrupt, std::string(what) + " is not valid JSON");
  }
  if (too_deep) {
    return Fail(ErrorCode::kCorrupt, std::string(what) + " nests arrays and objects deeper than " +
                                         std::to_string(kMaxJsonDepth) + " levels");
  }
  if (!duplicate.empty()) {
    return Fail(ErrorCode::kCorrupt,
                std::string(what) + " has the key \"" + duplicate + "\" twice in one object");
  }
  return out;
}

}  // namespace airlock::trust
