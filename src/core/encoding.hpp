#pragma once
// Hex and base64 (RFC 4648, with padding) for digests, keys and signatures. Thread-safe.

#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

std::string HexEncode(std::string_view bytes);
// n bytes from the system's cryptographic random source, hex-encoded (2n characters); kInternal
// when the source fails.
[[nodiscard]] Result<std::string> RandomHex(std::size_t n);
// Lower- or upper-case hex; nullopt on odd length or a non-hex character.
std::optional<std::string> HexDecode(std::string_view hex);

std::string Base64Encode(std::string_view bytes);
// Strict: padding required, no whitespace; nullopt otherwise.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace airlock
