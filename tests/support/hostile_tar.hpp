#pragma once
// Hand-made tar archives, entry by entry, for tests of what readers refuse: any name, any entry
// type (a link, a device), a link target. pkg::TarWriter writes only what is safe, so hostile
// archives are made here instead.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace airlock::testing {

// A raw ustar header: name (its first 100 bytes), size, type ('0' file, '1' hard link,
// '2' symbolic link, '5' directory, …) and link target.
inline std::string TarHeader(const std::string& name, std::uint64_t size, char type,
                             const std::string& link = "") {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<std::size_t>(name.size(), 100));
  std::snprintf(h + 100, 8, "%07o", 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h + 136, 12, "%011o", 0);
  h[156] = type;
  std::memcpy(h + 157, link.data(), std::min<std::size_t>(link.size(), 100));
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h + 148, 8, "%06o", sum);
  return std::string(h, 512);
}

// An entry: its header, its data, and the padding to the next 512-byte block.
inline std::string TarEntry(const std::string& name, const std::string& data, char type = '0') {
  std::string out = TarHeader(name, data.size(), type) + data;
  out.append((512 - data.size() % 512) % 512, '\0');
  return out;
}

// The end-of-archive marker: two zero blocks.
inline std::string TarEnd() { return std::string(1024, '\0'); }

}  // namespace airlock::testing
