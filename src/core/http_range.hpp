#pragma once
// The HTTP Range request header (RFC 9110 §14.2) as Airlock's servers accept it: one byte range
// against a resource of known size. Both the hub's and the gateway's OCI blob routes answer a
// GET with it (206 for a satisfiable range, 416 otherwise). A pure function; thread-safe.

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

// The bytes a Range header asks for: [offset, offset + length), never empty, within the size.
struct ByteRange {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

// "bytes=START-", "bytes=START-END" (END clamped to size - 1) or "bytes=-N" (the last N bytes,
// all of them when N >= size). kInvalidArgument, with a message naming the header and the size,
// when the range cannot be satisfied: several ranges, another unit, a start at or past the end,
// END < START, a zero-length suffix, numbers that are not plain decimal or overflow 64 bits, or a
// resource of zero bytes.
[[nodiscard]] Result<ByteRange> ParseRange(std::string_view header, std::uint64_t size);

// A plain decimal number as HTTP range headers write them: digits only, no sign, no spaces,
// within 64 bits; nullopt otherwise.
std::optional<std::uint64_t> ParseDecimal(std::string_view s);

}  // namespace airlock
