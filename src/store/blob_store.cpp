#include "store/blob_store.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace airlock::store {
namespace fs = std::filesystem;

namespace {

constexpr char kDataFile[] = "data";
constexpr char kRepositoryFile[] = "repository";

Result<std::string> NewUploadId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    return Fail(ErrorCode::kInternal, "the random number generator failed");
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // UUID version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return std::string(out);
}

Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError("cannot write", path));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

// Locks an open session file for this process's exclusive use, without waiting.
Status LockSession(int fd, std::string_view id) {
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Fail(ErrorCode::kUnavailable,
                  "upload " + std::string(id) + " is busy with another request");
    }
    return Fail(ErrorCode::kIo, "cannot lock upload " + std::string(id));
  }
  return {};
}

Result<std::uint64_t> SizeOf(int fd, const fs::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Fail(ErrnoError("cannot stat", path));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

bool IsUploadId(std::string_view id) {
  if (id.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

BlobStore::BlobStore(fs::path root, UniqueFd lock)
    : root_(std::move(root)), lock_(std::move(lock)) {}

BlobStore::~BlobStore() = default;

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const fs::path& root) {
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / "blobs" / "sha256"));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / "uploads"));
  fs::path lock_path = root / "store.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(ErrnoError("cannot open", lock_path));
  }
  UniqueFd lock(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Fail(ErrorCode::kUnavailable,
                  "another process (an airlock-hub?) is using the blob "
                  "store in " +
                      root.string());
    }
    return Fail(ErrnoError("cannot lock", lock_path));
  }
  std::unique_ptr<BlobStore> store(new BlobStore(root, std::move(lock)));
  store->RemoveAllUploads();
  return store;
}

fs::path BlobStore::BlobPath(const Digest& digest) const {
  return root_ / "blobs" / "sha256" / digest.hex().substr(0, 2) / digest.hex();
}

Result<std::uint64_t> BlobStore::Size(const Digest& digest) const {
  struct stat st {};
  fs::path path = BlobPath(digest);
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound, "blob " + digest.ToString() + " is not in the store");
    }
    return Fail(ErrnoError("cannot stat", path));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

Result<BlobFile> BlobStore::OpenBlob(const Digest& digest) const {
  fs::path path = BlobPath(digest);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound, "blob " + digest.ToString() + " is not in the store");
    }
    return Fail(ErrnoError("cannot open", path));
  }
  BlobFile file{std::make_shared<UniqueFd>(fd), 0};
  AIRLOCK_ASSIGN_OR_RETURN(file.size, SizeOf(fd, path));
  return file;
}

Status BlobStore::Remove(const Digest& digest) {
  fs::path path = BlobPath(digest);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound, "blob " + digest.ToString() + " is not in the store");
    }
    return Fail(ErrnoError("cannot remove", path));
  }
  return SyncDirectory(path.parent_path());
}

Result<fs::path> BlobStore::UploadDir(std::string_view id) const {
  fs::path dir = root_ / "uploads" / std::string(id);
  std::error_code ec;
  if (!IsUploadId(id) || !fs::is_directory(dir, ec)) {
    return Fail(ErrorCode::kNotFound, "no upload " + std::string(id.substr(0, 64)));
  }
  return dir;
}

Result<std::string> BlobStore::StartUpload(std::string_view repository) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string id, NewUploadId());
  fs::path dir = root_ / "uploads" / id;
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return Fail(ErrnoError("cannot create", dir));
  }
  Status written = WriteFileAtomic(dir / kRepositoryFile, repository, 0600);
  int fd = written
               ? ::open((dir / kDataFile).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
               : -1;
  if (fd < 0) {
    Error e = written ? ErrnoError("cannot create", dir / kDataFile) : written.error();
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    return Fail(std::move(e));
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  hashes_[id] = RunningHash{std::make_unique<Sha256>(), 0};
  return id;
}

Result<std::string> BlobStore::UploadRepository(std::string_view id) const {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  return ReadFile(dir / kRepositoryFile, 4096);
}

Result<std::uint64_t> BlobStore::UploadSize(std::string_view id) const {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  struct stat st {};
  if (::stat((dir / kDataFile).c_str(), &st) != 0) {
    return Fail(ErrnoError("cannot stat", dir / kDataFile));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

Result<std::uint64_t> BlobStore::AppendUpload(std::string_view id,
                                              std::optional<std::uint64_t> offset,
                                              const ChunkSource& source, std::uint64_t max_size) {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  fs::path path = dir / kDataFile;
  int raw = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (raw < 0) {
    return Fail(ErrnoError("cannot open", path));
  }
  UniqueFd fd(raw);
  AIRLOCK_RETURN_IF_ERROR(LockSession(fd.get(), id));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t size, SizeOf(fd.get(), path));
  if (offset && *offset != size) {
    return Fail(ErrorCode::kMismatch, "the chunk starts at byte " + std::to_string(*offset) +
                                          " but upload " + std::string(id) + " has " +
                                          std::to_string(size) +
                                          " bytes: chunks must be sent in order");
  }
  RunningHash hash;
  {
    std::lock_guard lock(mu_);
    auto it = hashes_.find(id);
    if (it != hashes_.end()) {
      if (it->second.hashed == size) {
        hash = std::move(it->second);
      }
      hashes_.erase(it);
    }
  }
  bool hash_valid = hash.sha != nullptr;
  std::uint64_t total = size;
  Status received = source([&](std::string_view piece) -> Status {
    if (piece.size() > max_size - total) {
      return Fail(ErrorCode::kInvalidArgument, "upload " + std::string(id) +
                                                   " would exceed the limit of " +
                                                   std::to_string(max_size) + " bytes per blob");
    }
    Status w = WriteAll(fd.get(), piece, path);
    if (!w) {
      hash_valid = false;  // some bytes may be in the file without being hashed
      return w;
    }
    total += piece.size();
    if (hash_valid) {
      hash.sha->Update(piece);
      hash.hashed = total;
    }
    return {};
  });
  if (hash_valid) {
    std::lock_guard lock(mu_);
    hashes_[std::string(id)] = std::move(hash);
  }
  if (!received) {
    return Fail(std::move(received).error());
  }
  return SizeOf(fd.get(), path);
}

Result<FileDigest> BlobStore::FinishUpload(std::string_view id, const Digest& expected,
                                           std::optional<std::uint64_t> expected_size) {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  fs::path path = dir / kDataFile;
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    return Fail(ErrnoError("cannot open", path));
  }
  UniqueFd fd(raw);
  AIRLOCK_RETURN_IF_ERROR(LockSession(fd.get(), id));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t size, SizeOf(fd.get(), path));

  std::optional<Digest> actual;
  {
    std::lock_guard lock(mu_);
    auto it = hashes_.find(id);
    if (it != hashes_.end()) {
      if (it->second.hashed == size) {
        actual = it->second.sha->Finish();
      }
      hashes_.erase(it);
    }
  }
  if (!actual) {
    AIRLOCK_ASSIGN_OR_RETURN(FileDigest hashed, HashFile(path));
    actual = hashed.digest;
    size = hashed.size;
  }
  auto refuse = [&](std::string message) -> Result<FileDigest> {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    return Fail(ErrorCode::kCorrupt,
                std::move(message) + "; upload " + std::string(id) + " is discarded");
  };
  if (expected_size && *expected_size != size) {
    return refuse("the upload has " + std::to_string(size) + " bytes, not the " +
                  std::to_string(*expected_size) + " announced");
  }
  if (*actual != expected) {
    return refuse("the uploaded bytes hash to " + actual->ToString() + ", not " +
                  expected.ToString());
  }
  if (::fsync(fd.get()) != 0) {
    return Fail(ErrnoError("cannot fsync", path));
  }
  fs::path target = BlobPath(expected);
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
  // Two sessions finishing the same blob both rename verified bytes: either result is right.
  if (::rename(path.c_str(), target.c_str()) != 0) {
    return Fail(ErrnoError("cannot move the upload to", target));
  }
  AIRLOCK_RETURN_IF_ERROR(SyncDirectory(target.parent_path()));
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return FileDigest{expected, size};
}

Status BlobStore::CancelUpload(std::string_view id) {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  {
    std::lock_guard lock(mu_);
    auto it = hashes_.find(id);
    if (it != hashes_.end()) {
      hashes_.erase(it);
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot remove " + dir.string() + ": " + ec.message());
  }
  return {};
}

std::size_t BlobStore::RemoveAllUploads() {
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ / "uploads", ec)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
    ++removed;
  }
  std::lock_guard lock(mu_);
  hashes_.clear();
  return removed;
}

}  // namespace airlock::store
