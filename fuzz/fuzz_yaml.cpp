// Fuzzes ParseYaml (airlock.yaml and pipeline files given to `airlock pack`): yaml-cpp's
// exceptions must stop inside it, and nothing may crash, leak or hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/yaml.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto value = airlock::ParseYaml(text, "fuzz.yaml");
  (void)value;
  return 0;
}
