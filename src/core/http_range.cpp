#include "core/http_range.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>

namespace airlock {
std::optional<std::uint64_t> ParseDecimal(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty()) {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

Result<ByteRange> ParseRange(std::string_view header, std::uint64_t size) {
  auto refuse = [&] {
    return Fail(ErrorCode::kInvalidArgument, "the range \"" + std::string(header.substr(0, 100)) +
                                                 "\" cannot be satisfied for a blob of " +
                                                 std::to_string(size) + " bytes");
  };
  std::string_view s = header;
  if (!s.starts_with("bytes=") || s.find(',') != std::string_view::npos) {
    return refuse();
  }
  s.remove_prefix(6);
  std::size_t dash = s.find('-');
  if (dash == std::string_view::npos || size == 0) {
    return refuse();
  }
  std::string_view first = s.substr(0, dash), last = s.substr(dash + 1);
  if (first.empty()) {  // the last N bytes
    auto n = ParseDecimal(last);
    if (!n || *n == 0) {
      return refuse();
    }
    std::uint64_t length = std::min(*n, size);
    return ByteRange{size - length, length};
  }
  auto start = ParseDecimal(first);
  if (!start || *start >= size) {
    return refuse();
  }
  std::uint64_t end = size - 1;
  if (!last.empty()) {
    auto e = ParseDecimal(last);
    if (!e || *e < *start) {
      return refuse();
    }
    end = std::min(*e, size - 1);
  }
  return ByteRange{*start, end - *start + 1};
}

}  // namespace airlock
