#include "core/time.hpp"

#include <cstdio>
#include <ctime>

namespace airlock {

std::string FormatRfc3339(TimePoint t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<TimePoint> ParseRfc3339(std::string_view text) {
  auto bad = [&] {
    return Fail(ErrorCode::kInvalidArgument, "bad time \"" + std::string(text) +
                                                 "\" (want RFC 3339, e.g. 2026-11-22T10:00:00Z)");
  };
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return bad();
  }
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    out = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') {
        return false;
      }
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  int year, mon, day, hour, min, sec;
  if (!num(0, 4, year) || !num(5, 2, mon) || !num(8, 2, day) || !num(11, 2, hour) ||
      !num(14, 2, min) || !num(17, 2, sec) || mon < 1 || mon > 12 || day < 1 || day > 31 ||
      hour > 23 || min > 59 || sec > 60) {
    return bad();
  }
  // timegm would quietly turn February 30 into March 2; RFC 3339 §5.7 makes it invalid.
  static constexpr int kDaysInMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > kDaysInMonth[mon - 1] + (mon == 2 && leap ? 1 : 0)) {
    return bad();
  }
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      ++pos;
    }
  }
  long offset = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z') && pos + 1 == text.size()) {
    offset = 0;
  } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-') &&
             text[pos + 3] == ':') {
    int oh, om;
    if (!num(pos + 1, 2, oh) || !num(pos + 4, 2, om)) {
      return bad();
    }
    offset = (oh * 3600L + om * 60L) * (text[pos] == '-' ? -1 : 1);
  } else {
    return bad();
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  std::time_t tt = timegm(&tm) - offset;
  // system_clock counts nanoseconds in 64 bits: about 1678 to 2262. Converting a time outside
  // that range would overflow (undefined behaviour), so it is refused.
  using std::chrono::seconds;
  using std::chrono::system_clock;
  constexpr auto kFirst =
      std::chrono::duration_cast<seconds>(system_clock::time_point::min().time_since_epoch());
  constexpr auto kLast =
      std::chrono::duration_cast<seconds>(system_clock::time_point::max().time_since_epoch());
  if (tt < kFirst.count() || tt > kLast.count()) {
    return Fail(ErrorCode::kInvalidArgument,
                "time \"" + std::string(text) +
                    "\" is outside the range Airlock's clock represents "
                    "(" +
                    FormatRfc3339(system_clock::time_point(kFirst)) + " to " +
                    FormatRfc3339(system_clock::time_point(kLast)) + ")");
  }
  return system_clock::from_time_t(tt);
}

// 10^9 days: the longest duration ParseDuration accepts.
constexpr long long kMaxDurationMs = 1000000000LL * 86400000LL;

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  if (text.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "empty duration");
  }
  auto bad = [&] {
    return Fail(ErrorCode::kInvalidArgument,
                "bad duration \"" + std::string(text) + "\" (want e.g. 365d, 12h, 30m, 1d12h, 5s, 2ms)");
  };
  long long total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    long long value = 0;
    std::size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++digits) {
      value = value * 10 + (text[i] - '0');
      if (value > 1000000000LL) {
        return Fail(ErrorCode::kInvalidArgument, "duration too long: " + std::string(text));
      }
    }
    if (digits == 0) {
      return bad();
    }
    if (i == text.size()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "duration \"" + std::string(text) + "\" needs a unit (d, h, m, s or ms)");
    }
    long long unit_ms = 0;
    if (text.substr(i, 2) == "ms") {
      unit_ms = 1;
      i += 2;
    } else {
      char c = text[i++];
      unit_ms = c == 'd' ? 86400000 : c == 'h' ? 3600000 : c == 'm' ? 60000 : c == 's' ? 1000 : 0;
    }
    if (unit_ms == 0) {
      return bad();
    }
    total_ms += value * unit_ms;
    // Each part is at most 10^9 days, so bounding the sum after every part keeps it from
    // overflowing however many parts the text has.
    if (total_ms > kMaxDurationMs) {
      return Fail(ErrorCode::kInvalidArgument, "duration too long: " + std::string(text));
    }
  }
  return std::chrono::milliseconds(total_ms);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  long long ms = d.count();
  if (ms == 0) {
    return "0s";
  }
  static constexpr struct {
    long long ms;
    const char* unit;
  } kUnits[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  std::string out;
  for (const auto& u : kUnits) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms) + u.unit;
      ms %= u.ms;
    }
  }
  return out;
}

Result<TimePoint> ParseSince(std::string_view text, TimePoint now) {
  if (auto d = ParseDuration(text)) {
    return now - *d;
  }
  if (auto t = ParseRfc3339(text)) {
    return *t;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "want a duration back from now (30m, 6h, 7d) or an RFC 3339 time, not \"" +
                  std::string(text.substr(0, 64)) + "\"");
}

}  // namespace airlock
