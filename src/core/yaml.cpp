#include "core/yaml.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <regex>

#include "core/fs.hpp"

namespace airlock {
namespace {

nlohmann::json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") {  // quoted: a string, whatever it looks like
    return s;
  }
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return false;
  }
  static const std::regex kInt(R"([-+]?[0-9]+)");
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(s, kInt)) {
    long long v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      return v;
    }
  }
  if (std::regex_match(s, kFloat)) {
    // strtod, not stod: out-of-range values ("1e999") become ±inf instead of throwing.
    return std::strtod(s.c_str(), nullptr);
  }
  if (s == ".inf" || s == "+.inf") {
    return std::numeric_limits<double>::infinity();
  }
  if (s == "-.inf") {
    return -std::numeric_limits<double>::infinity();
  }
  return s;
}

nlohmann::json ToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) {
        out.push_back(ToJson(item));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) {
        out[kv.first.as<std::string>()] = ToJson(kv.second);
      }
      return out;
    }
  }
  return nullptr;
}

}  // namespace

Result<nlohmann::json> ParseYaml(std::string_view text, std::string_view origin) {
  try {
    return ToJson(YAML::Load(std::string(text)));
  } catch (const YAML::Exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string(origin) + ":" +
                                                 std::to_string(e.mark.line + 1) + ":" +
                                                 std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

Result<nlohmann::json> LoadYamlFile(const std::filesystem::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 16 << 20));
  return ParseYaml(text, path.string());
}

}  // namespace airlock
