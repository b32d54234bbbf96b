#pragma once
// A small tmpfs mounted for one test, to run code against a full disk. Mounting needs root (as in
// CI); where it fails, mounted() is false and the test should skip. Unmounted (lazily) on
// destruction.

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace airlock::testing {

class SmallDisk {
 public:
  // Mounts a tmpfs of size (as mount(8) says it: "600k", "2m") at at, creating the directory.
  SmallDisk(const std::filesystem::path& at, const char* size) : at_(at) {
    std::filesystem::create_directories(at_);
    std::string options = std::string("size=") + size;
    mounted_ = ::geteuid() == 0 && ::mount("tmpfs", at_.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) {
      ::umount2(at_.c_str(), MNT_DETACH);
    }
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
};

// Writes to path until the disk refuses another byte (the file stays; remove it to free the
// space). Returns false when path cannot be created.
inline bool FillDisk(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return false;
  }
  std::string chunk(64 * 1024, 'f');
  for (std::size_t size : {std::size_t{64 * 1024}, std::size_t{4096}, std::size_t{1}}) {
    while (::write(fd, chunk.data(), size) == static_cast<ssize_t>(size)) {
    }
  }
  ::close(fd);
  return true;
}

}  // namespace airlock::testing
