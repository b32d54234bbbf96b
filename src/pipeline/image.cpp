#include "pipeline/image.hpp"

#include <png.h>
#include <turbojpeg.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace airlock::pipeline {
namespace {

constexpr unsigned char kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

Status CheckDimensions(const char* format, std::uint64_t width, std::uint64_t height,
                       std::uint64_t max_pixels) {
  if (width == 0 || height == 0) {
    return Fail(ErrorCode::kInvalidArgument, std::string("corrupt ") + format +
                                                 ": declares an empty image (" +
                                                 std::to_string(width) + "x" +
                                                 std::to_string(height) + ")");
  }
  if (width * height > max_pixels) {  // both are below 2^32: no overflow
    return Fail(ErrorCode::kInvalidArgument,
                std::string(format) + " of " + std::to_string(width) + "x" +
                    std::to_string(height) + " pixels is larger than the limit of " +
                    std::to_string(max_pixels) + " pixels");
  }
  return {};
}

// Colour to grey as PIL's convert("L") does it (ITU-R 601 luma, 16-bit fixed point).
std::vector<std::uint8_t> RgbToGrey(const std::vector<std::uint8_t>& rgb) {
  std::vector<std::uint8_t> grey(rgb.size() / 3);
  for (std::size_t i = 0; i < grey.size(); ++i) {
    std::uint32_t r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    grey[i] = static_cast<std::uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
  }
  return grey;
}

std::vector<std::uint8_t> GreyToRgb(const std::vector<std::uint8_t>& grey) {
  std::vector<std::uint8_t> rgb(grey.size() * 3);
  for (std::size_t i = 0; i < grey.size(); ++i) {
    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = grey[i];
  }
  return rgb;
}

void ConvertChannels(Image& img, int channels) {
  if (img.channels == channels) {
    return;
  }
  img.pixels = channels == 1 ? RgbToGrey(img.pixels) : GreyToRgb(img.pixels);
  img.channels = channels;
}

// ---- JPEG (TurboJPEG 2.x API) ----

struct TjDeleter {
  void operator()(void* h) const { tjDestroy(h); }
};

Result<Image> DecodeJpeg(std::string_view bytes, std::uint64_t max_pixels) {
  std::unique_ptr<void, TjDeleter> tj(tjInitDecompress());
  if (!tj) {
    return Fail(ErrorCode::kInternal, "cannot create a TurboJPEG decompressor");
  }
  const auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), src, bytes.size(), &width, &height, &subsamp, &colorspace) !=
      0) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("corrupt JPEG header: ") + tjGetErrorStr2(tj.get()));
  }
  if (width < 0 || height < 0) {
    return Fail(ErrorCode::kInvalidArgument, "corrupt JPEG header: negative size");
  }
  AIRLOCK_RETURN_IF_ERROR(CheckDimensions("JPEG", static_cast<std::uint64_t>(width),
                                          static_cast<std::uint64_t>(height), max_pixels));
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    return Fail(ErrorCode::kUnsupported, "CMYK JPEG images are not supported");
  }
  Image img;
  img.width = width;
  img.height = height;
  img.channels = colorspace == TJCS_GRAY ? 1 : 3;
  img.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) *
                    static_cast<std::size_t>(img.channels));
  // Default flags match PIL (accurate integer DCT, fancy upsampling). STOPONWARNING turns
  // truncated or damaged data into an error; LIMITSCANS bounds the work a progressive JPEG can
  // ask for.
  int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(tj.get(), src, bytes.size(), img.pixels.data(), width, 0, height,
                    img.channels == 1 ? TJPF_GRAY : TJPF_RGB, flags) != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("corrupt or truncated JPEG: ") + tjGetErrorStr2(tj.get()));
  }
  return img;
}

// ---- PNG (libpng, classic API) ----
//
// libpng reports errors by longjmp. The two functions that call setjmp hold only trivially
// destructible locals, so jumping over their frames skips no destructor.

struct PngSource {
  const unsigned char* data;
  std::size_t size;
  std::size_t pos;
  char message[200];
};

void PngOnError(png_structp png, png_const_charp msg) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof(src->message), "%s", msg);
  png_longjmp(png, 1);
}

void PngOnWarning(png_structp, png_const_charp) {}  // damage that matters is an error

void PngRead(png_structp png, png_bytep out, std::size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->size - src->pos < n) {
    png_error(png, "truncated PNG data");
  }
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

struct PngHeader {
  png_uint_32 width;
  png_uint_32 height;
  int channels;  // after the transformations below: 1 or 3
};

bool PngReadHeader(png_structp png, png_infop info, PngHeader* h) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_read_info(png, info);
  h->width = png_get_image_width(png, info);
  h->height = png_get_image_height(png, info);
  int color = png_get_color_type(png, info);
  h->channels = (color & PNG_COLOR_MASK_COLOR) != 0 ? 3 : 1;  // palettes are colour
  return true;
}

// Sets the transformations to 8-bit grey or RGB without alpha, then reads every row. rows holds
// height pointers to rows of width * channels bytes; the layout is checked before reading.
bool PngReadPixels(png_structp png, png_infop info, const PngHeader* h, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) {
    return false;
  }
  png_set_strip_16(png);
  png_set_packing(png);
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_bit_depth(png, info) != 8 || png_get_channels(png, info) != h->channels ||
      png_get_rowbytes(png, info) != static_cast<png_size_t>(h->width) * h->channels) {
    png_error(png, "unsupported PNG pixel layout");
  }
  png_read_image(png, rows);
  png_read_end(png, nullptr);  // a PNG cut off after its pixels has no IEND: refused too
  return true;
}

Result<Image> DecodePng(std::string_view bytes, std::uint64_t max_pixels) {
  PngSource src{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0, {}};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, PngOnError, PngOnWarning);
  if (png == nullptr) {
    return Fail(ErrorCode::kInternal, "cannot create a libpng reader");
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return Fail(ErrorCode::kInternal, "cannot create a libpng info structure");
  }
  struct Cleanup {
    png_structp* png;
    png_infop* info;
    ~Cleanup() { png_destroy_read_struct(png, info, nullptr); }
  } cleanup{&png, &info};
  png_set_read_fn(png, &src, PngRead);
  // Text and other ancillary chunks are not needed; bound what one chunk may allocate.
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, 0);
  png_set_chunk_malloc_max(png, 8u << 20);

  PngHeader header{};
  if (!PngReadHeader(png, info, &header)) {
    return Fail(ErrorCode::kInvalidArgument, std::string("corrupt PNG: ") + src.message);
  }
  AIRLOCK_RETURN_IF_ERROR(CheckDimensions("PNG", header.width, header.height, max_pixels));
  Image img;
  img.width = static_cast<int>(header.width);
  img.height = static_cast<int>(header.height);
  img.channels = header.channels;
  std::size_t row_bytes = static_cast<std::size_t>(header.width) * header.channels;
  img.pixels.resize(row_bytes * header.height);
  std::vector<png_bytep> rows(header.height);
  for (std::size_t y = 0; y < rows.size(); ++y) {
    rows[y] = img.pixels.data() + y * row_bytes;
  }
  if (!PngReadPixels(png, info, &header, rows.data())) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("corrupt or truncated PNG: ") + src.message);
  }
  return img;
}

}  // namespace

std::optional<ImageFormat> SniffImage(std::string_view bytes) {
  if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xff &&
      static_cast<unsigned char>(bytes[1]) == 0xd8 && static_cast<unsigned char>(bytes[2]) == 0xff) {
    return ImageFormat::kJpeg;
  }
  if (bytes.size() >= sizeof(kPngMagic) &&
      std::memcmp(bytes.data(), kPngMagic, sizeof(kPngMagic)) == 0) {
    return ImageFormat::kPng;
  }
  return std::nullopt;
}

Result<Image> DecodeImage(std::string_view bytes, int channels, std::uint64_t max_pixels) {
  if (channels != 1 && channels != 3) {
    return Fail(ErrorCode::kInvalidArgument,
                "an image can be decoded to 1 or 3 channels, not " + std::to_string(channels));
  }
  auto format = SniffImage(bytes);
  if (!format) {
    return Fail(ErrorCode::kInvalidArgument, "not a JPEG or PNG image (unknown magic bytes)");
  }
  Result<Image> img = *format == ImageFormat::kJpeg ? DecodeJpeg(bytes, max_pixels)
                                                     : DecodePng(bytes, max_pixels);
  if (img) {
    ConvertChannels(*img, channels);
  }
  return img;
}

}  // namespace airlock::pipeline
