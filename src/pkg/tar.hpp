#pragma once
// POSIX ustar archives: a deterministic writer and a defensive reader.
//
// The writer emits regular files and directories only, with mode 0644/0755, uid/gid 0, mtime 0
// and empty user names, so the same entries always give the same bytes. The reader accepts ustar,
// pax ('x', for long names) and GNU long names ('L'), and refuses, with the entry named: absolute
// paths, ".." components, links of either kind, devices and fifos, duplicate entries, bad header
// checksums, and archives that end early. It never extracts; it maps entry names to byte ranges.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/fs.hpp"
#include "core/result.hpp"

namespace airlock::pkg {

struct TarEntryRange {
  std::uint64_t offset = 0;  // of the data in the archive
  std::uint64_t size = 0;
};

// Lists the regular files of the archive read from fd (size bytes long), by normalised path
// ("blobs/sha256/…", no leading "./"). Directories are checked but not listed.
[[nodiscard]] Result<std::map<std::string, TarEntryRange>> IndexTar(int fd, std::uint64_t size);
// The same, over bytes in memory.
[[nodiscard]] Result<std::map<std::string, TarEntryRange>> IndexTar(std::string_view bytes);

// Validates a path from an archive or a manifest: relative, no "..", no empty parts.
// Returns the normalised form.
[[nodiscard]] Result<std::string> CheckRelativePath(std::string_view path);

// Writes an archive entry by entry. Not thread-safe.
class TarWriter {
 public:
  // Writes into out (which the caller commits). For in-memory archives pass nullptr and use
  // bytes().
  explicit TarWriter(AtomicFile* out) : out_(out) {}

  [[nodiscard]] Status AddDirectory(std::string_view path);
  [[nodiscard]] Status AddBytes(std::string_view path, std::string_view data);
  // size bytes from fd at offset, copied in the kernel where possible.
  [[nodiscard]] Status AddRange(std::string_view path, int fd, std::uint64_t offset,
                                std::uint64_t size);
  // The end-of-archive marker. Call once, last.
  [[nodiscard]] Status Finish();

  const std::string& bytes() const { return memory_; }

 private:
  Status Header(std::string_view path, std::uint64_t size, char type);
  Status Emit(std::string_view data);
  Status Pad(std::uint64_t size);
  AtomicFile* out_;
  std::string memory_;
  std::uint64_t written_ = 0;
};

}  // namespace airlock::pkg
