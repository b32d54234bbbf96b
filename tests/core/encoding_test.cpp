#include "core/encoding.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <utility>
#include <vector>

namespace airlock {
namespace {

std::string AllBytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) {
    s.push_back(static_cast<char>(i));
  }
  return s;
}

// RFC 4648 §10.
const std::vector<std::pair<std::string, std::string>> kBase64Vectors = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
const std::vector<std::pair<std::string, std::string>> kBase16Vectors = {
    {"", ""},
    {"f", "66"},
    {"fo", "666F"},
    {"foo", "666F6F"},
    {"foob", "666F6F62"},
    {"fooba", "666F6F6261"},
    {"foobar", "666F6F626172"},
};

std::string Lower(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

TEST(HexTest, Rfc4648Vectors) {
  for (const auto& [plain, hex] : kBase16Vectors) {
    EXPECT_EQ(HexEncode(plain), Lower(hex)) << plain;  // we always write lowercase
    auto upper = HexDecode(hex);
    ASSERT_TRUE(upper) << hex;
    EXPECT_EQ(*upper, plain);
    auto lower = HexDecode(Lower(hex));
    ASSERT_TRUE(lower);
    EXPECT_EQ(*lower, plain);
  }
}

TEST(HexTest, EveryByteRoundTrips) {
  std::string all = AllBytes();
  std::string hex = HexEncode(all);
  EXPECT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(504), "fcfdfeff");
  auto back = HexDecode(hex);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, all);
}

TEST(HexTest, InvalidInputIsRefused) {
  EXPECT_FALSE(HexDecode("abc"));  // odd length
  EXPECT_FALSE(HexDecode("0g"));   // not a hex digit
  EXPECT_FALSE(HexDecode("zz"));
  EXPECT_FALSE(HexDecode("12 4"));  // whitespace
  EXPECT_FALSE(HexDecode("0x12"));  // prefix
  EXPECT_FALSE(HexDecode(std::string("1\0", 2)));
}

TEST(Base64Test, Rfc4648Vectors) {
  for (const auto& [plain, b64] : kBase64Vectors) {
    EXPECT_EQ(Base64Encode(plain), b64) << plain;
    auto back = Base64Decode(b64);
    ASSERT_TRUE(back) << b64;
    EXPECT_EQ(*back, plain);
  }
}

TEST(Base64Test, EveryByteRoundTripsAtEveryLength) {
  std::string all = AllBytes();
  for (std::size_t len = 0; len <= all.size(); len += 1) {
    std::string part = all.substr(all.size() - len);
    std::string enc = Base64Encode(part);
    EXPECT_EQ(enc.size(), (len + 2) / 3 * 4);
    auto back = Base64Decode(enc);
    ASSERT_TRUE(back) << enc;
    ASSERT_EQ(*back, part);
  }
}

TEST(Base64Test, UsesTheStandardAlphabet) {
  EXPECT_EQ(Base64Encode("\xfb\xff\xbf"), "+/+/");
  EXPECT_EQ(*Base64Decode("+/+/"), "\xfb\xff\xbf");
  EXPECT_FALSE(Base64Decode("-_-_"));  // URL-safe alphabet is not accepted
}

TEST(Base64Test, InvalidInputIsRefused) {
  EXPECT_FALSE(Base64Decode("Zg"));    // padding required
  EXPECT_FALSE(Base64Decode("Zg="));   // length not a multiple of 4
  EXPECT_FALSE(Base64Decode("Z==="));  // too much padding
  EXPECT_FALSE(Base64Decode("===="));
  EXPECT_FALSE(Base64Decode("=Zg="));       // padding first
  EXPECT_FALSE(Base64Decode("Z=g="));       // data after padding
  EXPECT_FALSE(Base64Decode("Zg==Zm8="));   // padding in the middle
  EXPECT_FALSE(Base64Decode("Zm9v!A=="));   // not in the alphabet
  EXPECT_FALSE(Base64Decode("Zm9\nYmFy"));  // whitespace, length still a multiple of 4
  EXPECT_FALSE(Base64Decode("Zm 9"));
  EXPECT_FALSE(Base64Decode(std::string("Zm9\0", 4)));
}

}  // namespace
}  // namespace airlock
