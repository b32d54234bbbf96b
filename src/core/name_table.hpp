#pragma once
// Enum ↔ stable name through a table of pairs, for the names that go on the wire and into
// persisted records:
//   constexpr std::pair<State, const char*> kStates[] = {{State::kA, "a"}, …};
//   NameOf(kStates, State::kA) == "a";  FindName(kStates, "a") == State::kA

#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

namespace airlock {

// The name of value; "?" when the table lacks it.
template <typename Enum, std::size_t N>
const char* NameOf(const std::pair<Enum, const char*> (&table)[N], Enum value) {
  for (const auto& [v, text] : table) {
    if (v == value) {
      return text;
    }
  }
  return "?";
}

// The value named name; nullopt when no entry has that name.
template <typename Enum, std::size_t N>
std::optional<Enum> FindName(const std::pair<Enum, const char*> (&table)[N],
                             std::string_view name) {
  for (const auto& [value, text] : table) {
    if (name == text) {
      return value;
    }
  }
  return std::nullopt;
}

}  // namespace airlock
