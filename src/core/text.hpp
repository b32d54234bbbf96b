#pragma once
// Small text helpers for messages.

#include <string>
#include <string_view>
#include <vector>

namespace airlock {

// "a, b, c" for {"a", "b", "c"}.
inline std::string Join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += sep;
    }
    out += item;
  }
  return out;
}

}  // namespace airlock
