// Fuzzes runtime::ParseNpy (sample tensors inside packages).
//
// Properties of an accepted file: the tensor is consistent with its shape, BYTES elements read
// from 'U' (UCS-4) arrays are valid UTF-8, and writing the tensor with SerializeNpy and reading it
// back gives the same tensor.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "property.hpp"
#include "runtime/npy.hpp"

namespace {

using airlock::runtime::DataType;
using airlock::runtime::Tensor;

// RFC 3629: shortest form, no surrogates, nothing past U+10FFFF.
bool IsUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return false;
      }
      cp = cp << 6 | (cc & 0x3f);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// The kind letter of the header's descr ('S', 'U', …), found the way ParseNpy finds it.
char DescrKind(std::string_view bytes) {
  std::size_t at = bytes.find("'descr'");
  if (at == std::string_view::npos) {
    return 0;
  }
  std::size_t pos = bytes.find(':', at + 7);
  if (pos == std::string_view::npos) {
    return 0;
  }
  ++pos;
  while (pos < bytes.size() && bytes[pos] == ' ') {
    ++pos;
  }
  return pos + 2 < bytes.size() && bytes[pos] == '\'' ? bytes[pos + 2] : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto t = airlock::runtime::ParseNpy(bytes, "x");
  if (!t) {
    return 0;
  }
  AIRLOCK_FUZZ_REQUIRE((t->CheckConsistent()));
  for (std::int64_t i = 0; i < t->ElementCount() && i < 64; ++i) {
    (void)t->ValueAsDouble(i);
  }
  if (t->dtype == DataType::kBytes && DescrKind(bytes) == 'U') {
    for (const std::string& s : t->strings) {
      AIRLOCK_FUZZ_REQUIRE(IsUtf8(s));
    }
  }
  auto written = airlock::runtime::SerializeNpy(*t);
  AIRLOCK_FUZZ_REQUIRE((written));
  auto back = airlock::runtime::ParseNpy(*written, "x");
  AIRLOCK_FUZZ_REQUIRE((back));
  AIRLOCK_FUZZ_REQUIRE(back->dtype == t->dtype && back->shape == t->shape &&
                       back->data == t->data && back->strings == t->strings);
  return 0;
}
