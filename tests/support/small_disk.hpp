#pragma once
// A small tmpfs mounted for one test, to run code against a full disk. Mounting needs root (as in
// CI); where it fails, mounted() is false and the test should skip. Unmounted (lazily) on
// destruction.

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

}  // namespace airlock::testing
