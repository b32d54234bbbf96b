#pragma once
// Logging through spdlog, to stderr. Call SetupLogging once in main; libraries log with
// spdlog::info/warn/… and never configure it. Messages never contain key material.

#include <spdlog/spdlog.h>

#include <string_view>

namespace airlock {

// level: "trace", "debug", "info", "warn", "error", "off". Unknown names mean "info".
void SetupLogging(std::string_view level);

}  // namespace airlock
