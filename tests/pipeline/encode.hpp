#pragma once
// Making test pictures with the real encoders: TurboJPEG and libpng (classic API, so that
// palettes, 16-bit samples and interlacing can be written too).

#include <png.h>
#include <turbojpeg.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace airlock::pipeline::pictures {

// pixels: height * width * channels bytes (channels 1 or 3).
inline std::string EncodeJpeg(const std::vector<std::uint8_t>& pixels, int width, int height,
                              int channels, int quality = 95, bool subsample = false) {
  tjhandle tj = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  int samp = channels == 1 ? TJSAMP_GRAY : (subsample ? TJSAMP_420 : TJSAMP_444);
  int rc = tjCompress2(tj, pixels.data(), width, 0, height, channels == 1 ? TJPF_GRAY : TJPF_RGB,
                       &out, &size, samp, quality, TJFLAG_ACCURATEDCT);
  std::string bytes = rc == 0 ? std::string(reinterpret_cast<char*>(out), size) : std::string();
  tjFree(out);
  tjDestroy(tj);
  if (rc != 0) {
    throw std::runtime_error("tjCompress2 failed");
  }
  return bytes;
}

struct PngSpec {
  int width = 0;
  int height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;  // GRAY, GRAY_ALPHA, RGB, RGB_ALPHA, PALETTE
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;       // for PALETTE
  std::vector<png_byte> palette_alpha;  // tRNS for PALETTE
};

namespace detail {
inline void PngAppend(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), n);
}
inline void PngFlush(png_structp) {}
// Only trivially destructible locals: libpng may longjmp out of here.
inline bool PngWrite(png_structp png, png_infop info, const PngSpec* spec, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_set_IHDR(png, info, static_cast<png_uint_32>(spec->width),
               static_cast<png_uint_32>(spec->height), spec->bit_depth, spec->color_type,
               spec->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec->palette.empty()) {
    png_set_PLTE(png, info, spec->palette.data(), static_cast<int>(spec->palette.size()));
  }
  if (!spec->palette_alpha.empty()) {
    png_set_tRNS(png, info, spec->palette_alpha.data(),
                 static_cast<int>(spec->palette_alpha.size()), nullptr);
  }
  png_write_info(png, info);
  if (spec->bit_depth == 16) {
    png_set_swap(png);  // rows are given as little-endian 16-bit samples
  }
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}
}  // namespace detail

// data: the raw rows, packed as the PNG stores them (16-bit samples little-endian).
inline std::string EncodePng(const PngSpec& spec, const std::vector<std::uint8_t>& data) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, detail::PngAppend, detail::PngFlush);
  std::size_t row_bytes = data.size() / static_cast<std::size_t>(spec.height);
  std::vector<png_bytep> rows(static_cast<std::size_t>(spec.height));
  for (std::size_t y = 0; y < rows.size(); ++y) {
    rows[y] = const_cast<png_bytep>(data.data()) + y * row_bytes;
  }
  bool ok = detail::PngWrite(png, info, &spec, rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) {
    throw std::runtime_error("libpng could not write the test image");
  }
  return out;
}

inline std::string EncodeRgbPng(const std::vector<std::uint8_t>& rgb, int width, int height) {
  return EncodePng({width, height, PNG_COLOR_TYPE_RGB, 8, false, {}, {}}, rgb);
}
inline std::string EncodeGreyPng(const std::vector<std::uint8_t>& grey, int width, int height) {
  return EncodePng({width, height, PNG_COLOR_TYPE_GRAY, 8, false, {}, {}}, grey);
}

// CRC-32 as PNG chunks use it, for tests that patch a chunk.
inline std::uint32_t Crc32(const std::string& bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) {
      crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

inline void PutBigEndian32(std::string& s, std::size_t at, std::uint32_t v) {
  s[at] = static_cast<char>(v >> 24);
  s[at + 1] = static_cast<char>(v >> 16);
  s[at + 2] = static_cast<char>(v >> 8);
  s[at + 3] = static_cast<char>(v);
}

// Rewrites the width and height a PNG's IHDR declares (and the chunk's CRC).
inline std::string WithPngSize(std::string png, std::uint32_t width, std::uint32_t height) {
  // signature (8), length (4), "IHDR" (4), width (4), height (4), … , CRC after 13 data bytes
  PutBigEndian32(png, 16, width);
  PutBigEndian32(png, 20, height);
  PutBigEndian32(png, 29, Crc32(png.substr(12, 17)));
  return png;
}

// Rewrites the size a baseline JPEG's SOF0 marker declares.
inline std::string WithJpegSize(std::string jpeg, std::uint16_t width, std::uint16_t height) {
  for (std::size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<unsigned char>(jpeg[i]) == 0xff &&
        static_cast<unsigned char>(jpeg[i + 1]) == 0xc0) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xff);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xff);
      return jpeg;
    }
  }
  throw std::runtime_error("no SOF0 marker");
}

}  // namespace airlock::pipeline::pictures
