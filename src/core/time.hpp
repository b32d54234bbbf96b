#pragma once
// Time: a Clock seam for tests, and the RFC 3339 / duration forms used in documents and flags.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

using TimePoint = std::chrono::system_clock::time_point;

// Where code that judges expiry gets "now". Implementations must be thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

// A clock that says what it was told; for tests and for judging against a fixed time.
class FixedClock final : public Clock {
 public:
  explicit FixedClock(TimePoint t) : t_(t) {}
  TimePoint Now() const override { return t_; }

 private:
  TimePoint t_;
};

// "2026-11-22T10:00:00Z" (UTC, whole seconds).
std::string FormatRfc3339(TimePoint t);
// Accepts "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"; fractions are dropped.
[[nodiscard]] Result<TimePoint> ParseRfc3339(std::string_view text);
// "90d", "12h", "30m", "45s", or combinations like "1d12h".
// At most 10^9 days in all; longer is refused.
[[nodiscard]] Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// A lower bound in time as users give one: a duration back from now ("30m", "7d") or an RFC 3339
// time. kInvalidArgument when it is neither.
[[nodiscard]] Result<TimePoint> ParseSince(std::string_view text, TimePoint now);
// t as Unix milliseconds.
inline std::int64_t UnixMillis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
// The shortest form ParseDuration reads back to d: "5m", "1h30m", "1d", "1s500ms", "0s".
// d must not be negative.
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace airlock
