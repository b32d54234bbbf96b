// Fuzzes the hub's byte-range headers: hub::ParseRange (a GET's Range against a blob's size) and
// hub::ParseContentRange (an upload chunk's Content-Range).
//
// Properties: an accepted Range lies inside the blob (at least one byte, no overflow), came from
// a single "bytes=" range, and its normal form "bytes=<first>-<last>" parses to the same range; an
// accepted Content-Range has start <= end and reads the same from its normal form.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hub/oci_rules.hpp"
#include "property.hpp"

// Input: "<blob size>\n<header>"; a first line that is not a number means a blob of 10 bytes.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace airlock::hub;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::uint64_t blob_size = 10;
  std::string_view header = text;
  if (std::size_t newline = text.find('\n'); newline != std::string_view::npos) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + newline, n);
    if (ec == std::errc() && end == text.data() + newline) {
      blob_size = n;
    }
    header = text.substr(newline + 1);
  }

  if (auto r = ParseRange(header, blob_size)) {
    AIRLOCK_FUZZ_REQUIRE(header.starts_with("bytes="));
    AIRLOCK_FUZZ_REQUIRE(header.find(',') == std::string_view::npos);
    AIRLOCK_FUZZ_REQUIRE(r->length >= 1);
    AIRLOCK_FUZZ_REQUIRE(r->offset < blob_size);
    AIRLOCK_FUZZ_REQUIRE(r->length <= blob_size - r->offset);
    std::string normal = "bytes=" + std::to_string(r->offset) + "-" +
                         std::to_string(r->offset + r->length - 1);
    auto again = ParseRange(normal, blob_size);
    AIRLOCK_FUZZ_REQUIRE(again);
    AIRLOCK_FUZZ_REQUIRE(again->offset == r->offset && again->length == r->length);
  }

  if (auto c = ParseContentRange(header)) {
    AIRLOCK_FUZZ_REQUIRE(c->start <= c->end);
    auto again = ParseContentRange(std::to_string(c->start) + "-" + std::to_string(c->end));
    AIRLOCK_FUZZ_REQUIRE(again);
    AIRLOCK_FUZZ_REQUIRE(again->start == c->start && again->end == c->end);
  }
  return 0;
}
