#include "core/time.hpp"

#include <gtest/gtest.h>

#include <string>

namespace airlock {
namespace {

using std::chrono::seconds;

TimePoint At(std::int64_t unix_seconds) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(seconds(unix_seconds)));
}

constexpr std::int64_t k20261122T10 = 1795341600;  // 2026-11-22T10:00:00Z

TEST(Rfc3339Test, FormatsUtcWholeSeconds) {
  EXPECT_EQ(FormatRfc3339(At(0)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(At(k20261122T10)), "2026-11-22T10:00:00Z");
  EXPECT_EQ(FormatRfc3339(At(951868799)), "2000-02-29T23:59:59Z");
  // Sub-second parts are dropped, not rounded.
  EXPECT_EQ(FormatRfc3339(At(k20261122T10) + std::chrono::milliseconds(999)),
            "2026-11-22T10:00:00Z");
}

TEST(Rfc3339Test, ParsesUtc) {
  auto t = ParseRfc3339("2026-11-22T10:00:00Z");
  ASSERT_TRUE(t) << t.error().ToString();
  EXPECT_EQ(*t, At(k20261122T10));
  auto lower = ParseRfc3339("2026-11-22t10:00:00z");
  ASSERT_TRUE(lower);
  EXPECT_EQ(*lower, At(k20261122T10));
}

TEST(Rfc3339Test, RoundTrips) {
  for (const char* text : {"1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2026-11-22T10:00:00Z",
                           "2099-12-31T23:59:59Z"}) {
    auto t = ParseRfc3339(text);
    ASSERT_TRUE(t) << text;
    EXPECT_EQ(FormatRfc3339(*t), text);
  }
  for (std::int64_t s : {0LL, 1LL, 86399LL, 1795341600LL, 4102444799LL}) {
    auto t = ParseRfc3339(FormatRfc3339(At(s)));
    ASSERT_TRUE(t);
    EXPECT_EQ(*t, At(s));
  }
}

// Found by fuzz/fuzz_release: a release "created" in year 4052 overflowed the conversion to
// system_clock's nanoseconds (undefined behaviour; in practice a wrapped, wrong time).
TEST(Rfc3339Test, TimesOutsideTheClockRangeAreRefused) {
  for (const char* text : {"4052-11-22T00:00:00Z", "9999-12-31T23:59:59Z", "2262-04-12T00:00:00Z",
                           "0000-01-01T00:00:00Z", "1677-09-21T00:00:00Z"}) {
    auto t = ParseRfc3339(text);
    ASSERT_FALSE(t) << text;
    EXPECT_EQ(t.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(t.error().message().find("outside the range"), std::string::npos)
        << t.error().message();
  }
  // Just inside both ends, round trip.
  for (const char* text : {"2262-04-11T00:00:00Z", "1677-09-22T00:00:00Z"}) {
    auto t = ParseRfc3339(text);
    ASSERT_TRUE(t) << text << ": " << t.error().ToString();
    EXPECT_EQ(FormatRfc3339(*t), text);
  }
}

TEST(Rfc3339Test, OffsetsAreAppliedToGiveTheSameInstant) {
  auto plus = ParseRfc3339("2026-11-22T12:00:00+02:00");
  ASSERT_TRUE(plus) << plus.error().ToString();
  EXPECT_EQ(*plus, At(k20261122T10));
  EXPECT_EQ(FormatRfc3339(*plus), "2026-11-22T10:00:00Z");

  auto minus = ParseRfc3339("2026-11-22T04:30:00-05:30");
  ASSERT_TRUE(minus);
  EXPECT_EQ(*minus, At(k20261122T10));

  // Across a day boundary.
  auto early = ParseRfc3339("2026-11-23T01:00:00+15:00");
  ASSERT_TRUE(early);
  EXPECT_EQ(*early, At(k20261122T10));

  auto zero = ParseRfc3339("2026-11-22T10:00:00+00:00");
  ASSERT_TRUE(zero);
  EXPECT_EQ(*zero, At(k20261122T10));
}

TEST(Rfc3339Test, FractionsAreAcceptedAndDropped) {
  for (const char* text : {"2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.123456789Z",
                           "2026-11-22T12:00:00.999+02:00"}) {
    auto t = ParseRfc3339(text);
    ASSERT_TRUE(t) << text;
    EXPECT_EQ(*t, At(k20261122T10)) << text;
  }
}

TEST(Rfc3339Test, GarbageIsRefused) {
  for (const char* text : {
           "",
           "yesterday",
           "2026-11-22",
           "2026-11-22T10:00Z",
           "2026-11-22T10:00:00",       // no zone
           "2026-11-22T10:00:00+0200",  // offset without colon
           "2026-11-22T10:00:00+02",
           "2026-11-22T10:00:00Zjunk",
           "2026-11-22T10:00:00ZZ",
           "2026/11/22T10:00:00Z",
           "2026-11-22X10:00:00Z",
           "2026-13-01T00:00:00Z",  // month 13
           "2026-00-10T00:00:00Z",
           "2026-11-32T00:00:00Z",
           "2026-11-00T00:00:00Z",
           "2026-11-22T24:00:00Z",
           "2026-11-22T10:60:00Z",
           "2026-11-22T10:00:61Z",
           "2026-1a-22T10:00:00Z",
           "+2026-11-22T10:00:00Z",
           "2026-11-22T10:00:00+0a:00",
       }) {
    auto t = ParseRfc3339(text);
    ASSERT_FALSE(t) << "accepted \"" << text << "\"";
    EXPECT_EQ(t.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(t.error().message().find("RFC 3339"), std::string::npos);
  }
}

TEST(Rfc3339Test, DaysThatDoNotExistAreRefused) {
  for (const char* text : {"2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-02-30T00:00:00Z",
                           "2026-04-31T00:00:00Z", "2026-11-31T00:00:00Z"}) {
    auto t = ParseRfc3339(text);
    EXPECT_FALSE(t) << "accepted \"" << text << "\" as " << FormatRfc3339(*t);
  }
  for (const char* text : {"2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-01-31T00:00:00Z",
                           "2026-12-31T23:59:59Z"}) {
    auto t = ParseRfc3339(text);
    ASSERT_TRUE(t) << text;
    EXPECT_EQ(FormatRfc3339(*t), text);
  }
}

TEST(DurationTest, ParsesUnitsAndCombinations) {
  EXPECT_EQ(ParseDuration("365d").value(), seconds(365 * 86400));
  EXPECT_EQ(ParseDuration("1d12h").value(), seconds(86400 + 12 * 3600));
  EXPECT_EQ(ParseDuration("90m").value(), seconds(5400));
  EXPECT_EQ(ParseDuration("45s").value(), seconds(45));
  EXPECT_EQ(ParseDuration("12h").value(), seconds(43200));
  EXPECT_EQ(ParseDuration("1h30m15s").value(), seconds(3600 + 1800 + 15));
  EXPECT_EQ(ParseDuration("0s").value(), seconds(0));
  EXPECT_EQ(ParseDuration("2ms").value(), std::chrono::milliseconds(2));
  EXPECT_EQ(ParseDuration("1s500ms").value(), std::chrono::milliseconds(1500));
  EXPECT_EQ(ParseDuration("1m5s").value(), seconds(65));
}

TEST(DurationTest, RefusesMalformed) {
  for (const char* text : {"", "5", "d", "5x", "1d12", "-5d", "5 d", "1.5h", "h5", "5D", "5msx", "ms"}) {
    auto d = ParseDuration(text);
    ASSERT_FALSE(d) << "accepted \"" << text << "\"";
    EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_NE(ParseDuration("5").error().message().find("unit"), std::string::npos);
}

TEST(DurationTest, RefusesAbsurdlyLongValues) {
  auto d = ParseDuration("99999999999999999999d");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument);
}

TEST(DurationTest, RefusesManyPartsWhoseSumIsTooLong) {
  // Each part alone is in range; their sum would overflow a 64-bit count of milliseconds.
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += "1000000000d";
  }
  auto d = ParseDuration(text);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find("too long"), std::string::npos);
}

TEST(DurationTest, FormatsTheShortestFormThatParsesBack) {
  using std::chrono::milliseconds;
  EXPECT_EQ(FormatDuration(seconds(0)), "0s");
  EXPECT_EQ(FormatDuration(seconds(30)), "30s");
  EXPECT_EQ(FormatDuration(seconds(300)), "5m");
  EXPECT_EQ(FormatDuration(seconds(3600)), "1h");
  EXPECT_EQ(FormatDuration(seconds(5400)), "1h30m");
  EXPECT_EQ(FormatDuration(seconds(86400 + 12 * 3600)), "1d12h");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1s500ms");
  EXPECT_EQ(FormatDuration(milliseconds(60500)), "1m500ms");
  for (long long ms : {0LL, 1LL, 999LL, 1000LL, 61001LL, 3599999LL, 90061001LL, 8640000000000LL}) {
    EXPECT_EQ(ParseDuration(FormatDuration(milliseconds(ms))).value(), milliseconds(ms)) << ms;
  }
}

TEST(ClockTest, FixedClockSaysWhatItWasTold) {
  FixedClock clock(At(k20261122T10));
  EXPECT_EQ(clock.Now(), At(k20261122T10));
  const Clock& as_base = clock;
  EXPECT_EQ(as_base.Now(), At(k20261122T10));
  SystemClock system;
  EXPECT_GT(system.Now(), At(k20261122T10 - 10LL * 365 * 86400));
}

}  // namespace
}  // namespace airlock
