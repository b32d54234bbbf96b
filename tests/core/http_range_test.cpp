// The Range header the hub's and the gateway's blob routes accept.

#include "core/http_range.hpp"

#include <gtest/gtest.h>

namespace airlock {
namespace {

TEST(HttpRange, OneRangeWithinTheSize) {
  auto all = ParseRange("bytes=0-", 10);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->offset, 0u);
  EXPECT_EQ(all->length, 10u);
  auto middle = ParseRange("bytes=3-5", 10);
  ASSERT_TRUE(middle);
  EXPECT_EQ(middle->offset, 3u);
  EXPECT_EQ(middle->length, 3u);
  auto clamped = ParseRange("bytes=8-100", 10);
  ASSERT_TRUE(clamped);
  EXPECT_EQ(clamped->offset, 8u);
  EXPECT_EQ(clamped->length, 2u);
  auto tail = ParseRange("bytes=-4", 10);
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->offset, 6u);
  EXPECT_EQ(tail->length, 4u);
  EXPECT_EQ(ParseRange("bytes=-20", 10)->offset, 0u);
}

TEST(HttpRange, UnsatisfiableRangesAreRefusedWithTheSize) {
  for (const char* bad : {"bytes=10-", "bytes=5-4", "bytes=-0", "items=0-1", "bytes=0-1,2-3",
                          "bytes=", "bytes=x-1", "bytes=1", "0-1", "bytes= 1-2", "bytes=+1-2"}) {
    auto r = ParseRange(bad, 10);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find("10 bytes"), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(ParseRange("bytes=0-", 0));
}

TEST(HttpRange, NumbersAtTheLimitsOfSixtyFourBitsNeitherWrapNorPass) {
  constexpr std::uint64_t kMax = UINT64_MAX;
  auto last_two = ParseRange("bytes=18446744073709551613-18446744073709551615", kMax);
  ASSERT_TRUE(last_two);
  EXPECT_EQ(last_two->offset, kMax - 2);
  EXPECT_EQ(last_two->length, 2u);
  for (const char* bad : {"bytes=18446744073709551616-", "bytes=0-18446744073709551616",
                          "bytes=-18446744073709551616"}) {
    EXPECT_FALSE(ParseRange(bad, kMax)) << bad;
  }
}

}  // namespace
}  // namespace airlock
