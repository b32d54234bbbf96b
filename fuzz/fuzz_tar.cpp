// Fuzzes pkg::IndexTar (package archives and layers) and pkg::CheckRelativePath.
//
// Each input is indexed twice: as given (checksums and all) and with every header checksum
// repaired (tar_repair.hpp), which lets mutations reach the rest of the header handling.
//
// Properties of an accepted archive: the in-memory and the file-descriptor readers agree; every
// entry lies inside the archive, starts on a 512-byte block and is named by a normalised relative
// path; writing the entries again with TarWriter and indexing that gives the same names and sizes.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "pkg/tar.hpp"
#include "property.hpp"
#include "tar_repair.hpp"

namespace {

using airlock::pkg::IndexTar;
using airlock::pkg::TarEntryRange;

bool SameRanges(const std::map<std::string, TarEntryRange>& a,
                const std::map<std::string, TarEntryRange>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first || i->second.offset != j->second.offset ||
        i->second.size != j->second.size) {
      return false;
    }
  }
  return true;
}

// One memfd for the whole run: the fd reader reads it with pread.
int ArchiveFd() {
  static int fd = memfd_create("fuzz_tar", 0);
  return fd;
}

void Check(std::string_view bytes) {
  auto index = IndexTar(bytes);
  int fd = ArchiveFd();
  AIRLOCK_FUZZ_REQUIRE(fd >= 0);
  AIRLOCK_FUZZ_REQUIRE(ftruncate(fd, 0) == 0);
  AIRLOCK_FUZZ_REQUIRE(pwrite(fd, bytes.data(), bytes.size(), 0) ==
                       static_cast<ssize_t>(bytes.size()));
  auto from_fd = IndexTar(fd, bytes.size());
  AIRLOCK_FUZZ_REQUIRE(static_cast<bool>(index) == static_cast<bool>(from_fd));
  if (!index) {
    return;
  }
  AIRLOCK_FUZZ_REQUIRE(SameRanges(*index, *from_fd));
  airlock::pkg::TarWriter writer(nullptr);
  bool written = true;
  for (const auto& [name, range] : *index) {
    AIRLOCK_FUZZ_REQUIRE(range.offset % 512 == 0);
    AIRLOCK_FUZZ_REQUIRE(range.offset <= bytes.size() && range.size <= bytes.size() - range.offset);
    auto normal = airlock::pkg::CheckRelativePath(name);
    AIRLOCK_FUZZ_REQUIRE(normal && *normal == name);
    // Names too long for a ustar header without a pax record are the writer's to refuse.
    written = written && writer.AddBytes(name, bytes.substr(range.offset, range.size));
  }
  if (!written || !writer.Finish()) {
    return;
  }
  auto again = IndexTar(writer.bytes());
  AIRLOCK_FUZZ_REQUIRE(again && again->size() == index->size());
  for (auto i = index->begin(), j = again->begin(); i != index->end(); ++i, ++j) {
    AIRLOCK_FUZZ_REQUIRE(i->first == j->first && i->second.size == j->second.size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  airlock::fuzz::RepairTarChecksums(bytes);
  Check(bytes);
  // The path check on its own, over the input as a path: accepted paths are normal forms.
  auto path = airlock::pkg::CheckRelativePath(
      std::string_view(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 256)));
  if (path) {
    auto again = airlock::pkg::CheckRelativePath(*path);
    AIRLOCK_FUZZ_REQUIRE(again && *again == *path);
  }
  return 0;
}
