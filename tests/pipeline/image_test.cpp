#include "pipeline/image.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "encode.hpp"

namespace airlock::pipeline {
namespace {

using pictures::EncodeJpeg;
using pictures::EncodePng;
using pictures::EncodeRgbPng;
using pictures::PngSpec;

// A smooth colour gradient (JPEG keeps it well) of width × height RGB pixels.
std::vector<std::uint8_t> Gradient(int width, int height) {
  std::vector<std::uint8_t> px;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      px.push_back(static_cast<std::uint8_t>(40 + 4 * x));
      px.push_back(static_cast<std::uint8_t>(60 + 3 * y));
      px.push_back(static_cast<std::uint8_t>(120 + x + y));
    }
  }
  return px;
}

std::uint8_t PilGrey(int r, int g, int b) {
  return static_cast<std::uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

TEST(DecodeImage, PngRgbIsExact) {
  auto px = Gradient(7, 5);
  auto img = DecodeImage(EncodeRgbPng(px, 7, 5), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->width, 7);
  EXPECT_EQ(img->height, 5);
  EXPECT_EQ(img->channels, 3);
  EXPECT_EQ(img->pixels, px);
}

TEST(DecodeImage, PngColourToGreyAsPil) {
  std::vector<std::uint8_t> px = {10, 200, 30, 255, 0, 128};
  auto img = DecodeImage(EncodeRgbPng(px, 2, 1), 1);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->channels, 1);
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{PilGrey(10, 200, 30), PilGrey(255, 0, 128)}));
}

TEST(DecodeImage, PngGreyToRgbRepeats) {
  auto img = DecodeImage(pictures::EncodeGreyPng({7, 250}, 2, 1), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{7, 7, 7, 250, 250, 250}));
}

TEST(DecodeImage, PngAlphaIsDropped) {
  std::vector<std::uint8_t> rgba = {1, 2, 3, 0, 4, 5, 6, 255};
  auto img = DecodeImage(EncodePng({2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, false, {}, {}}, rgba), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}));

  std::vector<std::uint8_t> ga = {9, 0, 200, 128};
  img = DecodeImage(EncodePng({2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, {}, {}}, ga), 1);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{9, 200}));
}

TEST(DecodeImage, PngPaletteWithTransparencyExpands) {
  PngSpec spec{3, 1, PNG_COLOR_TYPE_PALETTE, 8, false, {{10, 20, 30}, {40, 50, 60}}, {0, 255}};
  auto img = DecodeImage(EncodePng(spec, {1, 0, 1}), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{40, 50, 60, 10, 20, 30, 40, 50, 60}));
}

TEST(DecodeImage, Png16BitKeepsHighByteAndLowBitDepthExpands) {
  // Little-endian 16-bit samples (the writer swaps them): 0x12ab -> 0x12.
  std::vector<std::uint8_t> rgb16 = {0xab, 0x12, 0x00, 0xff, 0x34, 0x00};
  auto img = DecodeImage(EncodePng({1, 1, PNG_COLOR_TYPE_RGB, 16, false, {}, {}}, rgb16), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{0x12, 0xff, 0x00}));

  // 1-bit grey, 8 pixels in one byte: 1 0 1 1 0 0 0 1.
  img = DecodeImage(EncodePng({8, 1, PNG_COLOR_TYPE_GRAY, 1, false, {}, {}}, {0xb1}), 1);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, (std::vector<std::uint8_t>{255, 0, 255, 255, 0, 0, 0, 255}));
}

TEST(DecodeImage, PngInterlaced) {
  auto px = Gradient(9, 9);
  auto img = DecodeImage(EncodePng({9, 9, PNG_COLOR_TYPE_RGB, 8, true, {}, {}}, px), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  EXPECT_EQ(img->pixels, px);
}

TEST(DecodeImage, JpegRgbIsClose) {
  auto px = Gradient(16, 16);
  auto img = DecodeImage(EncodeJpeg(px, 16, 16, 3, 100), 3);
  ASSERT_TRUE(img) << img.error().ToString();
  ASSERT_EQ(img->pixels.size(), px.size());
  for (std::size_t i = 0; i < px.size(); ++i) {
    EXPECT_NEAR(img->pixels[i], px[i], 3) << "byte " << i;
  }
}

TEST(DecodeImage, JpegGreyAndChannelConversions) {
  std::vector<std::uint8_t> grey(64, 100);
  std::string jpeg = EncodeJpeg(grey, 8, 8, 1, 100);
  auto g = DecodeImage(jpeg, 1);
  ASSERT_TRUE(g) << g.error().ToString();
  EXPECT_EQ(g->pixels, grey);
  auto rgb = DecodeImage(jpeg, 3);
  ASSERT_TRUE(rgb) << rgb.error().ToString();
  EXPECT_EQ(rgb->pixels, std::vector<std::uint8_t>(64 * 3, 100));

  auto px = Gradient(8, 8);
  auto colour = DecodeImage(EncodeJpeg(px, 8, 8, 3, 100, true), 3);
  auto as_grey = DecodeImage(EncodeJpeg(px, 8, 8, 3, 100, true), 1);
  ASSERT_TRUE(colour && as_grey);
  for (std::size_t i = 0; i < 64; ++i) {
    const auto* p = colour->pixels.data() + 3 * i;
    EXPECT_EQ(as_grey->pixels[i], PilGrey(p[0], p[1], p[2]));
  }
}

TEST(DecodeImage, SniffsByMagic) {
  EXPECT_EQ(SniffImage(EncodeRgbPng({1, 2, 3}, 1, 1)), ImageFormat::kPng);
  EXPECT_EQ(SniffImage(EncodeJpeg({1, 2, 3}, 1, 1, 3)), ImageFormat::kJpeg);
  EXPECT_EQ(SniffImage("GIF89a"), std::nullopt);
  EXPECT_EQ(SniffImage(""), std::nullopt);
}

void ExpectRefused(const Result<Image>& r, const std::string& words) {
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().ToString().find(words), std::string::npos) << r.error().ToString();
}

TEST(DecodeImage, RefusesWrongChannelsAndUnknownBytes) {
  std::string png = EncodeRgbPng({1, 2, 3}, 1, 1);
  ExpectRefused(DecodeImage(png, 2), "1 or 3 channels");
  ExpectRefused(DecodeImage(png, 4), "1 or 3 channels");
  ExpectRefused(DecodeImage("GIF89a....", 3), "not a JPEG or PNG");
  ExpectRefused(DecodeImage("", 3), "not a JPEG or PNG");
}

TEST(DecodeImage, RefusesCorruptJpeg) {
  std::string jpeg = EncodeJpeg(Gradient(32, 32), 32, 32, 3);
  ExpectRefused(DecodeImage(jpeg.substr(0, 3), 3), "corrupt JPEG");
  std::string garbage = "\xff\xd8\xff" + std::string(200, 'x');
  ExpectRefused(DecodeImage(garbage, 3), "JPEG");
  // Damage the entropy-coded data: libjpeg warns, which is refused.
  std::string damaged = jpeg;
  for (std::size_t i = damaged.size() - 60; i < damaged.size() - 10; ++i) {
    damaged[i] = static_cast<char>(0xff);
  }
  ExpectRefused(DecodeImage(damaged, 3), "JPEG");
}

TEST(DecodeImage, RefusesTruncatedJpeg) {
  std::string jpeg = EncodeJpeg(Gradient(32, 32), 32, 32, 3);
  ExpectRefused(DecodeImage(jpeg.substr(0, jpeg.size() / 2), 3), "JPEG");
  ExpectRefused(DecodeImage(jpeg.substr(0, jpeg.size() - 2), 3), "JPEG");  // no EOI
}

TEST(DecodeImage, RefusesTruncatedOrCorruptPng) {
  std::string png = EncodeRgbPng(Gradient(32, 32), 32, 32);
  for (std::size_t cut : {std::size_t{8}, std::size_t{20}, std::size_t{40}, png.size() / 2,
                          png.size() - 12, png.size() - 1}) {
    SCOPED_TRACE(cut);
    ExpectRefused(DecodeImage(png.substr(0, cut), 3), "PNG");
  }
  std::string bad_crc = png;
  bad_crc[png.size() / 2] = static_cast<char>(bad_crc[png.size() / 2] ^ 0x55);
  ExpectRefused(DecodeImage(bad_crc, 3), "PNG");
}

TEST(DecodeImage, RefusesHugeDeclaredSizeBeforeAllocating) {
  // 60000 × 60000 pixels would need 10 GB: refused from the header alone.
  std::string png = pictures::WithPngSize(EncodeRgbPng(Gradient(4, 4), 4, 4), 60000, 60000);
  ExpectRefused(DecodeImage(png, 3), "larger than the limit of 64000000 pixels");
  std::string jpeg = pictures::WithJpegSize(EncodeJpeg(Gradient(8, 8), 8, 8, 3), 65000, 65000);
  ExpectRefused(DecodeImage(jpeg, 3), "larger than the limit");
  // The limit is the caller's.
  std::string small = EncodeRgbPng(Gradient(10, 10), 10, 10);
  ExpectRefused(DecodeImage(small, 3, 99), "10x10 pixels is larger than the limit of 99");
  EXPECT_TRUE(DecodeImage(small, 3, 100));
  // A declared size of zero.
  ExpectRefused(DecodeImage(pictures::WithPngSize(small, 0, 10), 3), "PNG");
  ExpectRefused(DecodeImage(pictures::WithJpegSize(EncodeJpeg(Gradient(8, 8), 8, 8, 3), 0, 8), 3),
                "JPEG");
}

TEST(DecodeImage, SurvivesRandomDamage) {
  // Not a fuzzer, but every single-byte change to a small image must decode or be refused.
  std::string jpeg = EncodeJpeg(Gradient(16, 16), 16, 16, 3);
  std::string png = EncodeRgbPng(Gradient(16, 16), 16, 16);
  std::srand(7);
  for (const std::string* original : {&jpeg, &png}) {
    for (int round = 0; round < 400; ++round) {
      std::string b = *original;
      std::size_t at = static_cast<std::size_t>(std::rand()) % b.size();
      b[at] = static_cast<char>(std::rand() & 0xff);
      auto img = DecodeImage(b, 3);
      if (img) {
        EXPECT_EQ(img->pixels.size(),
                  static_cast<std::size_t>(img->width) * static_cast<std::size_t>(img->height) * 3);
      }
    }
  }
}

}  // namespace
}  // namespace airlock::pipeline
