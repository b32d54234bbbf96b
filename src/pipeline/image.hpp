#pragma once
// Decoding the pictures a pipeline receives (JPEG through libturbojpeg, PNG through libpng) into
// 8-bit pixels, height × width × channels, row-major.
//
// Every byte here is untrusted: a corrupt, truncated or oversized picture comes back as
// kInvalidArgument saying what is wrong, never as a crash, and the declared size is checked
// against max_pixels before any pixel buffer is allocated. The functions keep no state and are
// thread-safe; DecodeImage is the entry point a fuzz target calls.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace airlock::pipeline {

enum class ImageFormat { kJpeg, kPng };

// The format the magic bytes announce (JPEG: FF D8 FF; PNG: the 8-byte signature), or nullopt.
std::optional<ImageFormat> SniffImage(std::string_view bytes);

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;                  // 1 (grey) or 3 (R, G, B)
  std::vector<std::uint8_t> pixels;  // height * width * channels bytes, HWC
};

// Pictures larger than this many pixels (width × height) are refused unless a limit is given.
inline constexpr std::uint64_t kDefaultMaxPixels = 64ull * 1000 * 1000;

// Decodes a JPEG or PNG (found by its magic bytes) into `channels` (1 or 3) 8-bit channels.
// Colour to grey uses ITU-R 601 luma with PIL's integer rounding (PIL's convert("L")); grey to
// colour repeats the grey value; an alpha channel is dropped, not composited (PIL's
// convert("RGB")); 16-bit PNG samples keep their high byte; palettes are expanded.
// kInvalidArgument for: channels other than 1 or 3, bytes that are neither format, a declared
// size of zero or above max_pixels, and any decoder error or warning (corrupt or truncated data);
// kUnsupported for JPEG colour spaces TurboJPEG cannot turn into RGB (CMYK).
[[nodiscard]] Result<Image> DecodeImage(std::string_view bytes, int channels,
                                        std::uint64_t max_pixels = kDefaultMaxPixels);

}  // namespace airlock::pipeline
