#include "core/fs.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

namespace airlock {
namespace fs = std::filesystem;

Error ErrnoError(std::string_view what, const fs::path& path) {
  int err = errno;
  ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
  return Error(code, std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

std::string TemporaryPrefix(const fs::path& target, std::string_view kind) {
  std::string out = ".";
  out += target.filename().string();
  out += ".";
  out += kind;
  out += "-" + std::to_string(::getpid()) + "-";
  return out;
}

void RemoveStaleTemporaries(const fs::path& target) {
  fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string prefix = "." + target.filename().string() + ".";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) {
      continue;
    }
    // ".NAME.KIND-PID-…": take the PID between the first two dashes after the prefix.
    std::string rest = name.substr(prefix.size());
    std::size_t dash = rest.find('-');
    std::size_t dash2 = dash == std::string::npos ? dash : rest.find('-', dash + 1);
    if (dash2 == std::string::npos) {
      continue;
    }
    long pid = std::strtol(rest.substr(dash + 1, dash2 - dash - 1).c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) {
      continue;
    }
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
}

Result<TempDirectory> TempDirectory::Create(const fs::path& pattern) {
  std::string path = pattern.string();
  if (::mkdtemp(path.data()) == nullptr) {
    return Fail(ErrnoError("cannot create a temporary directory", pattern));
  }
  return TempDirectory(path);
}

TempDirectory::~TempDirectory() {
  std::error_code ec;
  if (!path_.empty()) {
    fs::remove_all(path_, ec);
  }
}

Result<UniqueFd> OpenForRead(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Fail(ErrnoError("cannot open", path));
  }
  return UniqueFd(fd);
}

Result<std::string> ReadFile(const fs::path& path, std::uint64_t max_size) {
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Fail(ErrnoError("cannot stat", path));
  }
  if (S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path.string() + " is a directory, not a file");
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_size) {
    return Fail(ErrorCode::kInvalidArgument, path.string() + " is " + std::to_string(st.st_size) +
                                                 " bytes, over the limit of " +
                                                 std::to_string(max_size));
  }
  std::string data;
  data.resize(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (true) {
    if (done == data.size()) {
      // The file may have grown since fstat; read on until EOF, within the cap.
      if (data.size() >= max_size) {
        char probe;
        ssize_t n = ::read(fd.get(), &probe, 1);
        if (n > 0) {
          return Fail(ErrorCode::kInvalidArgument,
                      path.string() + " grew over the limit of " + std::to_string(max_size));
        }
        break;
      }
      data.resize(std::min<std::uint64_t>(max_size, data.size() * 2 + 4096));
    }
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError("cannot read", path));
    }
    if (n == 0) {
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  data.resize(done);
  return data;
}

Status SyncDirectory(const fs::path& dir) {
  fs::path d = dir.empty() ? fs::path(".") : dir;
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return Fail(ErrnoError("cannot open directory", d));
  }
  UniqueFd guard(fd);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    return Fail(ErrnoError("cannot fsync directory", d));
  }
  return {};
}

Status MakeDirectories(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot create directory " + dir.string() + ": " + ec.message());
  }
  return {};
}

Result<AtomicFile> AtomicFile::Create(const fs::path& path, mode_t mode) {
  fs::path parent = path.parent_path();
  if (parent.empty()) {
    parent = ".";
  }
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  for (int attempt = 0; attempt < 16; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(rng()));
    fs::path temp = parent / (TemporaryPrefix(path, "tmp") + suffix);
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0) {
      // The umask must not widen or narrow what the caller asked for (0600 for keys).
      if (::fchmod(fd, mode) != 0) {
        Error e = ErrnoError("cannot chmod", temp);
        ::close(fd);
        ::unlink(temp.c_str());
        return Fail(std::move(e));
      }
      return AtomicFile(path, temp, fd);
    }
    if (errno != EEXIST) {
      return Fail(ErrnoError("cannot create", temp));
    }
  }
  return Fail(ErrorCode::kIo, "cannot create a temporary file beside " + path.string());
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)), temp_(std::move(other.temp_)), fd_(other.fd_) {
  other.fd_ = -1;
  other.temp_.clear();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
  }
}

Status AtomicFile::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError("cannot write", temp_));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Status AtomicFile::CopyFrom(int fd, std::uint64_t offset, std::uint64_t length) {
  off_t in_off = static_cast<off_t>(offset);
  std::uint64_t left = length;
  bool kernel_copy = true;
  std::vector<char> buf;
  while (left > 0) {
    if (kernel_copy) {
      ssize_t n = ::copy_file_range(fd, &in_off, fd_, nullptr, left, 0);
      if (n > 0) {
        left -= static_cast<std::uint64_t>(n);
        continue;
      }
      if (n == 0) {
        return Fail(ErrorCode::kCorrupt, "source file ended " + std::to_string(left) +
                                             " bytes early while writing " + temp_.string());
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
        return Fail(ErrnoError("cannot copy into", temp_));
      }
      kernel_copy = false;
      buf.resize(1 << 20);
    }
    ssize_t n = ::pread(fd, buf.data(), std::min<std::uint64_t>(left, buf.size()), in_off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError("cannot read while writing", temp_));
    }
    if (n == 0) {
      return Fail(ErrorCode::kCorrupt, "source file ended " + std::to_string(left) +
                                           " bytes early while writing " + temp_.string());
    }
    AIRLOCK_RETURN_IF_ERROR(Write(std::string_view(buf.data(), static_cast<std::size_t>(n))));
    in_off += n;
    left -= static_cast<std::uint64_t>(n);
  }
  return {};
}

Status AtomicFile::Commit() {
  if (fd_ < 0) {
    return Fail(ErrorCode::kInternal, "AtomicFile::Commit called twice for " + target_.string());
  }
  if (::fsync(fd_) != 0) {
    return Fail(ErrnoError("cannot fsync", temp_));
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    return Fail(ErrnoError("cannot close", temp_));
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    return Fail(ErrnoError("cannot rename into place", target_));
  }
  temp_.clear();
  return SyncDirectory(target_.parent_path());
}

Status WriteFileAtomic(const fs::path& path, std::string_view data, mode_t mode) {
  AIRLOCK_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, mode));
  AIRLOCK_RETURN_IF_ERROR(file.Write(data));
  return file.Commit();
}

}  // namespace airlock
