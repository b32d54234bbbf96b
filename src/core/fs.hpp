#pragma once
// Files: whole-file reads with a size cap, and crash-safe writes.
//
// An atomic write never leaves a half-written file under the final name: the bytes go to a
// temporary file in the same directory, which is fsync'ed, renamed over the target, and the
// directory fsync'ed, so after a power cut the path holds the old content or the new, never a mix.
// All functions block on the disk. Thread-safe (no shared state).

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

// An Error of code kIo carrying strerror(errno), naming the operation and path.
Error ErrnoError(std::string_view what, const std::filesystem::path& path);

// Reads a whole file. Fails with kNotFound if missing, kInvalidArgument if larger than max_size.
[[nodiscard]] Result<std::string> ReadFile(const std::filesystem::path& path,
                                           std::uint64_t max_size = UINT64_MAX);

// Writes data to path atomically (temp file, fsync, rename, fsync dir), with the given mode.
[[nodiscard]] Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data,
                                     mode_t mode = 0644);

// fsyncs a directory so that renames and creations inside it are durable.
[[nodiscard]] Status SyncDirectory(const std::filesystem::path& dir);

// Creates a directory and its parents (like mkdir -p).
[[nodiscard]] Status MakeDirectories(const std::filesystem::path& dir);

// A file written in pieces and published atomically. Until Commit() succeeds the data lives in a
// temporary file beside the target, which the destructor removes. Not thread-safe.
class AtomicFile {
 public:
  [[nodiscard]] static Result<AtomicFile> Create(const std::filesystem::path& path,
                                                 mode_t mode = 0644);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  [[nodiscard]] Status Write(std::string_view data);
  // Copies the byte range [offset, offset+length) of an open file descriptor into this file
  // in the kernel (copy_file_range), falling back to read/write.
  [[nodiscard]] Status CopyFrom(int fd, std::uint64_t offset, std::uint64_t length);
  // fsync, rename over the target, fsync the directory. The object is spent afterwards.
  [[nodiscard]] Status Commit();

  int fd() const { return fd_; }

 private:
  AtomicFile(std::filesystem::path target, std::filesystem::path temp, int fd)
      : target_(std::move(target)), temp_(std::move(temp)), fd_(fd) {}
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
};

// An open file descriptor, closed on destruction.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }

 private:
  int fd_;
};

// Temporary files and directories beside a target are named ".NAME.KIND-PID-…" (KIND "tmp" for
// AtomicFile, others for callers' staging), so that what a killed process left behind can be
// recognised: RemoveStaleTemporaries deletes those of target whose process no longer exists.
std::string TemporaryPrefix(const std::filesystem::path& target, std::string_view kind);
void RemoveStaleTemporaries(const std::filesystem::path& target);

// A directory made by mkdtemp(3) from pattern (a path ending in "XXXXXX"), removed with
// everything in it when the object dies. Not thread-safe.
class TempDirectory {
 public:
  [[nodiscard]] static Result<TempDirectory> Create(const std::filesystem::path& pattern);
  TempDirectory(TempDirectory&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  ~TempDirectory();
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit TempDirectory(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Opens a file read-only.
[[nodiscard]] Result<UniqueFd> OpenForRead(const std::filesystem::path& path);

}  // namespace airlock
