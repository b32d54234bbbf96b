#pragma once
// Human-written configuration: YAML read into a JSON value, so that the rest of Airlock works
// with one document model. Plain scalars become numbers, booleans or null when they look like
// one (YAML 1.2 core schema); quoted scalars always stay strings. yaml-cpp's exceptions stop here.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

[[nodiscard]] Result<nlohmann::json> ParseYaml(std::string_view text, std::string_view origin);
[[nodiscard]] Result<nlohmann::json> LoadYamlFile(const std::filesystem::path& path);

}  // namespace airlock
