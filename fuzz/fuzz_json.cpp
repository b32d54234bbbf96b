// Fuzzes trust::ParseJson, the strict parser every signed document goes through, and
// trust::Canonicalize, the bytes signatures cover.
//
// Properties: canonicalizing an accepted document and parsing the result gives the same value,
// and canonicalizing that again gives the same bytes (the canonical form is a fixed point).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "property.hpp"
#include "trust/canonical_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto value = airlock::trust::ParseJson(text, 1 << 20, "fuzz input");
  if (!value) {
    return 0;
  }
  // The accessors for untrusted fields must not throw on any value.
  (void)airlock::trust::StringOr(*value, "_type");
  (void)airlock::trust::IntOr(*value, "version");
  auto canonical = airlock::trust::Canonicalize(*value);
  if (!canonical) {
    return 0;  // floats are refused, by design
  }
  auto again = airlock::trust::ParseJson(*canonical, 1 << 21, "canonical form");
  AIRLOCK_FUZZ_REQUIRE(again);
  AIRLOCK_FUZZ_REQUIRE(*again == *value);
  auto canonical_again = airlock::trust::Canonicalize(*again);
  AIRLOCK_FUZZ_REQUIRE(canonical_again);
  AIRLOCK_FUZZ_REQUIRE(*canonical_again == *canonical);
  return 0;
}
