#include "core/yaml.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <string_view>

#include "core/fs.hpp"

namespace airlock {
namespace {

// Hand-written rather than std::regex: libstdc++'s regex matcher recurses once per character, so
// a long plain scalar (a 100 kB run of digits) overflowed the stack.

std::size_t SkipDigits(std::string_view s, std::size_t i) {
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    ++i;
  }
  return i;
}

// [-+]?[0-9]+
bool IsYamlInt(std::string_view s) {
  std::size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  std::size_t end = SkipDigits(s, i);
  return end > i && end == s.size();
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsYamlFloat(std::string_view s) {
  std::size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  std::size_t int_end = SkipDigits(s, i);
  bool int_digits = int_end > i;
  i = int_end;
  if (i < s.size() && s[i] == '.') {
    std::size_t frac_end = SkipDigits(s, i + 1);
    if (!int_digits && frac_end == i + 1) {
      return false;
    }
    i = frac_end;
  } else if (!int_digits) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    std::size_t exp_end = SkipDigits(s, i);
    if (exp_end == i) {
      return false;
    }
    i = exp_end;
  }
  return i == s.size();
}

// Aliases make a YAML document a graph, not a tree: "&a [*a]" refers to itself, and nine levels
// of nine aliases expand to 9^9 nodes. The conversion stops at these limits.
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxNodes = 1 << 20;

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
  if (IsYamlInt(s)) {
    long long v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc() && ptr == s.data() + s.size()) {
      return v;
    }
  }
  if (IsYamlFloat(s)) {
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

Result<nlohmann::json> ToJson(const YAML::Node& node, int depth, std::size_t& nodes) {
  if (depth > kMaxDepth) {
    return Fail(ErrorCode::kInvalidArgument,
                "nests deeper than " + std::to_string(kMaxDepth) +
                    " levels (or an alias refers to a node that contains it)");
  }
  if (++nodes > kMaxNodes) {
    return Fail(ErrorCode::kInvalidArgument, "expands to more than " + std::to_string(kMaxNodes) +
                                                 " values (aliases of aliases?)");
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) {
        AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json value, ToJson(item, depth + 1, nodes));
        out.push_back(std::move(value));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) {
        AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json value, ToJson(kv.second, depth + 1, nodes));
        out[kv.first.as<std::string>()] = std::move(value);
      }
      return out;
    }
  }
  return nullptr;
}

}  // namespace

Result<nlohmann::json> ParseYaml(std::string_view text, std::string_view origin) {
  try {
    std::size_t nodes = 0;
    return WithContext(ToJson(YAML::Load(std::string(text)), 0, nodes), std::string(origin));
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
