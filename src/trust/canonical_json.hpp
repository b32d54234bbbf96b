#pragma once
// Canonical JSON: the exact bytes that signatures cover.
//
// Objects with keys sorted by their UTF-8 bytes, no insignificant whitespace, strings as UTF-8
// with only '"', '\\' and control characters escaped (\n, \t, … or \u00XX), integers in plain
// decimal. Floating-point numbers are refused: they have no single textual form, and nothing
// Airlock signs needs them. Parsing is strict (no duplicate keys in what we sign, no comments).

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock::trust {

// The canonical form of value; kInvalidArgument if it holds a float or invalid UTF-8.
[[nodiscard]] Result<std::string> Canonicalize(const nlohmann::json& value);

// Arrays and objects nested deeper than this are refused by ParseJson. Nothing Airlock signs nests
// more than a few levels, and the code that walks a document (Canonicalize, nlohmann's dump)
// recurses once per level: a 1 MiB document of '[' would otherwise overflow the stack.
inline constexpr int kMaxJsonDepth = 64;

// Parses JSON text no longer than max_size bytes; kCorrupt on malformed text, on an object with
// the same key twice, and on nesting deeper than kMaxJsonDepth.
[[nodiscard]] Result<nlohmann::json> ParseJson(std::string_view text, std::size_t max_size,
                                               std::string_view what);

// Reading fields of untrusted JSON without exceptions: the value at key when it has the right
// type, else fallback (nlohmann's value() throws on a wrong type).
std::string StringOr(const nlohmann::json& obj, std::string_view key, std::string fallback = "");
std::int64_t IntOr(const nlohmann::json& obj, std::string_view key, std::int64_t fallback = 0);

}  // namespace airlock::trust
