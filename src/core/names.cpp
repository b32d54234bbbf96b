#include "core/names.hpp"

#include <algorithm>

namespace airlock {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

bool ValidModelName(std::string_view name) {
  // [a-z0-9]+([._-][a-z0-9]+)*: no separator first, last, or next to another.
  if (name.empty() || name.size() > 128) {
    return false;
  }
  bool prev_separator = true;  // so that a leading separator is refused
  for (char c : name) {
    if (IsLowerAlnum(c)) {
      prev_separator = false;
    } else if ((c == '.' || c == '_' || c == '-') && !prev_separator) {
      prev_separator = true;
    } else {
      return false;
    }
  }
  return !prev_separator;
}

bool ValidDeviceId(std::string_view id) {
  constexpr std::string_view kPrefix = "dev-";
  if (id.size() != kPrefix.size() + 16 || !id.starts_with(kPrefix)) {
    return false;
  }
  std::string_view hex = id.substr(kPrefix.size());
  return std::all_of(hex.begin(), hex.end(), IsLowerHex);
}

}  // namespace airlock
