#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace airlock {

void SetupLogging(std::string_view level) {
  auto logger = spdlog::stderr_color_mt("airlock");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  auto lvl = spdlog::level::from_str(std::string(level));
  spdlog::set_level(lvl == spdlog::level::off && level != "off" ? spdlog::level::info : lvl);
}

}  // namespace airlock
