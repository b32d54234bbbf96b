#pragma once
// Rewrites the checksum of every ustar header a reader would visit, so that mutated archives get
// past the checksum test and reach the code behind it (a fuzzer cannot guess a checksum).
// Walks the archive the way pkg::IndexTar does: a header, then its data rounded up to 512 bytes.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace airlock::fuzz {

inline void RepairTarChecksums(std::string& tar) {
  constexpr std::size_t kBlock = 512;
  std::size_t pos = 0;
  while (pos + kBlock <= tar.size()) {
    char* h = tar.data() + pos;
    bool zero = true;
    for (std::size_t i = 0; i < kBlock && zero; ++i) {
      zero = h[i] == 0;
    }
    if (zero) {
      return;
    }
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (std::size_t i = 0; i < kBlock; ++i) {
      sum += static_cast<unsigned char>(h[i]);
    }
    char field[8];
    std::snprintf(field, sizeof(field), "%06o", sum);
    std::memcpy(h + 148, field, 7);
    // The size, octal only (base-256 sizes are left for the reader to refuse or accept).
    std::uint64_t size = 0;
    for (std::size_t i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; ++i) {
      size = size * 8 + static_cast<std::uint64_t>(h[i] - '0');
    }
    std::uint64_t blocks = (size + kBlock - 1) / kBlock;
    if (blocks > tar.size() / kBlock) {
      return;
    }
    pos += kBlock + blocks * kBlock;
  }
}

}  // namespace airlock::fuzz
