#include "store/blob_store.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>

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

Error GoneMeanwhile(std::string_view id) {
  return Error(ErrorCode::kNotFound,
               "no upload " + std::string(id) + " (it was finished or removed meanwhile)");
}

// A session's data file; kNotFound if another process finished or removed the session since its
// directory was looked up.
Result<UniqueFd> OpenSessionData(const fs::path& path, std::string_view id, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Fail(GoneMeanwhile(id));
    }
    return Fail(ErrnoError("cannot open", path));
  }
  return UniqueFd(fd);
}

// After taking a session's lock: whether path is still the file fd opened. Another process may
// have finished the session (renamed the file into blobs/) or a collector removed it between our
// open and our lock; writing then would change a published blob or bytes nobody will read.
Status CheckStillThere(int fd, const fs::path& path, std::string_view id) {
  struct stat opened {};
  struct stat now {};
  if (::fstat(fd, &opened) != 0) {
    return Fail(ErrnoError("cannot stat", path));
  }
  if (::stat(path.c_str(), &now) != 0) {
    if (errno == ENOENT) {
      return Fail(GoneMeanwhile(id));
    }
    return Fail(ErrnoError("cannot stat", path));
  }
  if (opened.st_dev != now.st_dev || opened.st_ino != now.st_ino) {
    return Fail(GoneMeanwhile(id));
  }
  return {};
}

// flock without waiting: true if taken, false if another open file holds a conflicting lock.
Result<bool> TryFlock(int fd, int operation, const fs::path& path) {
  while (::flock(fd, operation | LOCK_NB) != 0) {
    if (errno == EINTR) {
      continue;
    }
    if (errno == EWOULDBLOCK) {
      return false;
    }
    return Fail(ErrnoError("cannot lock", path));
  }
  return true;
}

Result<UniqueFd> OpenLockFile(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(ErrnoError("cannot open", path));
  }
  return UniqueFd(fd);
}

// Opens path and locks it for this process without waiting; kUnavailable says who holds it.
Result<UniqueFd> LockExclusively(const fs::path& path, const std::string& held_by) {
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd lock, OpenLockFile(path));
  AIRLOCK_ASSIGN_OR_RETURN(bool taken, TryFlock(lock.get(), LOCK_EX, path));
  if (!taken) {
    return Fail(ErrorCode::kUnavailable, held_by);
  }
  return lock;
}

fs::path BlobPathIn(const fs::path& root, const Digest& digest) {
  return root / "blobs" / "sha256" / digest.hex().substr(0, 2) / digest.hex();
}

TimePoint ToTimePoint(const struct timespec& t) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(
      std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec)));
}

// The file's identity and when it last changed (see StoredBlob::changed); nullopt if it is gone.
struct FileState {
  dev_t device = 0;
  ino_t inode = 0;
  std::uint64_t size = 0;
  TimePoint changed;
};
Result<std::optional<FileState>> StatFile(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return std::optional<FileState>();
    }
    return Fail(ErrnoError("cannot stat", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kCorrupt, path.string() + " is not a regular file");
  }
  return std::optional<FileState>(
      FileState{st.st_dev, st.st_ino, static_cast<std::uint64_t>(st.st_size),
                std::max(ToTimePoint(st.st_mtim), ToTimePoint(st.st_ctim))});
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Removes every entry of dir (best effort); returns how many there were.
std::size_t RemoveEverythingIn(const fs::path& dir) {
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
    ++removed;
  }
  return removed;
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

class BlobStore::BusyGuard {
 public:
  BusyGuard(BlobStore& store, std::string_view id) : store_(store), id_(id) {
    std::lock_guard lock(store_.mu_);
    taken_ = store_.busy_.insert(id_).second;
  }
  ~BusyGuard() {
    if (taken_) {
      std::lock_guard lock(store_.mu_);
      store_.busy_.erase(id_);
    }
  }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;
  // kUnavailable if another request of this process is using the session.
  Status Check() const {
    if (!taken_) {
      return Fail(ErrorCode::kUnavailable, "upload " + id_ + " is busy with another request");
    }
    return {};
  }

 private:
  BlobStore& store_;
  std::string id_;
  bool taken_ = false;
};

BlobStore::BlobStore(fs::path root, UniqueFd lock, Sharing sharing)
    : root_(std::move(root)), lock_(std::move(lock)), sharing_(sharing) {}

BlobStore::~BlobStore() = default;

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const fs::path& root, Options options) {
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / "blobs" / "sha256"));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / "uploads"));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / "locks"));
  const fs::path path = root / "store.lock";
  if (options.sharing == Sharing::kExclusive) {
    AIRLOCK_ASSIGN_OR_RETURN(
        UniqueFd lock,
        LockExclusively(path, "another process (an airlock-hub?) is using the blob store in " +
                                  root.string() +
                                  " (hubs may share a data directory only if each uses the same "
                                  "PostgreSQL database, --db postgres://…)"));
    std::unique_ptr<BlobStore> store(new BlobStore(root, std::move(lock), options.sharing));
    if (options.uploads == UploadsOnOpen::kDiscard) {
      store->swept_at_open_ = RemoveEverythingIn(root / "uploads");
    }
    return store;
  }
  // Shared: exclusive for a moment if nobody else is here (then the sessions in uploads/ are a
  // dead process's and go), shared from then on. flock converts a lock by dropping it and taking
  // the new one, so another process may take it exclusively in between: then try again.
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd lock, OpenLockFile(path));
  const auto deadline = std::chrono::steady_clock::now() + options.wait_for_exclusive_holder;
  std::size_t swept = 0;
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(bool alone, TryFlock(lock.get(), LOCK_EX, path));
    if (alone && options.uploads == UploadsOnOpen::kDiscard) {
      swept += RemoveEverythingIn(root / "uploads");
    }
    AIRLOCK_ASSIGN_OR_RETURN(bool shared, TryFlock(lock.get(), LOCK_SH, path));
    if (shared) {
      std::unique_ptr<BlobStore> store(new BlobStore(root, std::move(lock), options.sharing));
      store->swept_at_open_ = swept;
      store->joined_others_ = !alone;
      return store;
    }
    // Held exclusively by someone else: a sharing process sweeping at its start lets go in a
    // moment; a process that opened the root exclusively does not.
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ErrorCode::kUnavailable,
                  "another process holds the blob store in " + root.string() +
                      " exclusively (an airlock-hub with SQLite metadata?): hubs may share a data "
                      "directory only if each uses the same PostgreSQL database "
                      "(--db postgres://…)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::optional<Sharing>> ProbeRootUse(const fs::path& root) {
  const fs::path path = root / "store.lock";
  // Read-write: over NFS, flock is emulated by a byte-range lock, and an exclusive one needs it.
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::optional<Sharing>();
    }
    return Fail(ErrnoError("cannot open", path));
  }
  UniqueFd lock(fd);
  AIRLOCK_ASSIGN_OR_RETURN(bool unused, TryFlock(fd, LOCK_EX, path));
  if (unused) {
    return std::optional<Sharing>();  // the lock goes with the descriptor
  }
  AIRLOCK_ASSIGN_OR_RETURN(bool shared, TryFlock(fd, LOCK_SH, path));
  return std::optional<Sharing>(shared ? Sharing::kShared : Sharing::kExclusive);
}

Result<DigestLock> BlobStore::LockDigest(const Digest& digest) {
  const std::string prefix = digest.hex().substr(0, 2);
  std::unique_lock in_process(
      digest_mutexes_[static_cast<std::size_t>(std::stoul(prefix, nullptr, 16))]);
  const fs::path path = root_ / "locks" / (prefix + ".lock");
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd file, OpenLockFile(path));
  while (::flock(file.get(), LOCK_EX) != 0) {
    if (errno != EINTR) {
      return Fail(ErrnoError("cannot lock", path));
    }
  }
  return DigestLock(std::move(in_process), std::move(file));
}

fs::path BlobStore::BlobPath(const Digest& digest) const { return BlobPathIn(root_, digest); }

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
  PruneHashes();
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
    if (errno == ENOENT) {
      return Fail(GoneMeanwhile(id));
    }
    return Fail(ErrnoError("cannot stat", dir / kDataFile));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

Result<std::unique_ptr<BlobStore::Appender>> BlobStore::OpenAppender(
    std::string_view id, std::optional<std::uint64_t> offset, std::uint64_t max_size) {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  fs::path path = dir / kDataFile;
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenSessionData(path, id, O_WRONLY | O_APPEND));
  auto busy = std::make_unique<BusyGuard>(*this, id);
  AIRLOCK_RETURN_IF_ERROR(busy->Check());
  AIRLOCK_RETURN_IF_ERROR(LockSession(fd.get(), id));
  AIRLOCK_RETURN_IF_ERROR(CheckStillThere(fd.get(), path, id));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t size, SizeOf(fd.get(), path));
  if (offset && *offset != size) {
    return Fail(ErrorCode::kMismatch, "the chunk starts at byte " + std::to_string(*offset) +
                                          " but upload " + std::string(id) + " has " +
                                          std::to_string(size) +
                                          " bytes: chunks must be sent in order");
  }
  return std::unique_ptr<Appender>(new Appender(*this, std::string(id), std::move(path),
                                                std::move(fd), std::move(busy), size, max_size));
}

BlobStore::Appender::Appender(BlobStore& store, std::string id, fs::path path, UniqueFd fd,
                              std::unique_ptr<BusyGuard> busy, std::uint64_t size,
                              std::uint64_t max_size)
    : store_(store),
      id_(std::move(id)),
      path_(std::move(path)),
      fd_(std::move(fd)),
      busy_(std::move(busy)),
      size_(size),
      written_back_(size),
      max_size_(max_size) {
  // The running hash goes on only if it covers every byte up to here.
  std::lock_guard lock(store_.mu_);
  auto it = store_.hashes_.find(id_);
  if (it != store_.hashes_.end()) {
    if (it->second.hashed == size_) {
      hash_ = std::move(it->second);
      hash_valid_ = true;
    }
    store_.hashes_.erase(it);
  }
}

BlobStore::Appender::~Appender() {
  if (hash_valid_) {
    std::lock_guard lock(store_.mu_);
    store_.hashes_[id_] = std::move(hash_);
  }
}

Status BlobStore::Appender::Write(std::string_view piece) {
  if (piece.size() > max_size_ - size_) {
    return Fail(ErrorCode::kInvalidArgument, "upload " + id_ + " would exceed the limit of " +
                                                 std::to_string(max_size_) + " bytes per blob");
  }
  Status w = WriteAll(fd_.get(), piece, path_);
  if (!w) {
    hash_valid_ = false;  // some bytes may be in the file without being hashed
    return w;
  }
  size_ += piece.size();
  if (hash_valid_) {
    hash_.sha->Update(piece);
    hash_.hashed = size_;
  }
  // Starts writing the bytes to disk while more arrive, so that the fsync of FinishUpload waits
  // for the last few MiB only, not for the whole blob. A hint: errors surface at that fsync.
  constexpr std::uint64_t kWriteBehind = 8 << 20;
  if (size_ - written_back_ >= kWriteBehind) {
    (void)::sync_file_range(fd_.get(), static_cast<off_t>(written_back_),
                            static_cast<off_t>(size_ - written_back_), SYNC_FILE_RANGE_WRITE);
    written_back_ = size_;
  }
  return {};
}

Result<std::uint64_t> BlobStore::AppendUpload(std::string_view id,
                                              std::optional<std::uint64_t> offset,
                                              const ChunkSource& source, std::uint64_t max_size) {
  AIRLOCK_ASSIGN_OR_RETURN(std::unique_ptr<Appender> appender, OpenAppender(id, offset, max_size));
  AIRLOCK_RETURN_IF_ERROR(source([&](std::string_view piece) { return appender->Write(piece); }));
  return appender->size();
}

Result<FileDigest> BlobStore::FinishUpload(std::string_view id, const Digest& expected,
                                           std::optional<std::uint64_t> expected_size) {
  AIRLOCK_ASSIGN_OR_RETURN(fs::path dir, UploadDir(id));
  fs::path path = dir / kDataFile;
  // Read-write although it only reads: an exclusive flock over NFS needs a writable descriptor.
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenSessionData(path, id, O_RDWR));
  BusyGuard busy(*this, id);
  AIRLOCK_RETURN_IF_ERROR(busy.Check());
  AIRLOCK_RETURN_IF_ERROR(LockSession(fd.get(), id));
  AIRLOCK_RETURN_IF_ERROR(CheckStillThere(fd.get(), path, id));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t size, SizeOf(fd.get(), path));

  // The running hash counts only if it covers the whole file: sizes only grow, so a session that
  // another process appended to (or finished and we never heard) is longer than what we hashed,
  // and is hashed again from the file.
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

void BlobStore::PruneHashes() {
  constexpr std::size_t kFewHashes = 256;
  if (hashes_.size() < prune_at_) {
    return;
  }
  std::error_code ec;
  for (auto it = hashes_.begin(); it != hashes_.end();) {
    if (!fs::exists(root_ / "uploads" / it->first / kDataFile, ec)) {
      it = hashes_.erase(it);
    } else {
      ++it;
    }
  }
  // Sessions that are still there are not pruned again until there are twice as many.
  prune_at_ = std::max(kFewHashes, 2 * hashes_.size());
}

std::size_t BlobStore::RemoveAllUploads() {
  std::size_t removed = RemoveEverythingIn(root_ / "uploads");
  std::lock_guard lock(mu_);
  hashes_.clear();
  return removed;
}

// ---- garbage collection ----

namespace {
constexpr char kAsideDir[] = "gc";
}  // namespace

BlobCollector::BlobCollector(fs::path root, UniqueFd lock)
    : root_(std::move(root)), lock_(std::move(lock)) {}

BlobCollector::~BlobCollector() = default;

Result<std::unique_ptr<BlobCollector>> BlobCollector::Open(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root / "blobs" / "sha256", ec)) {
    return Fail(ErrorCode::kNotFound, root.string() + " holds no blob store (no blobs/sha256/)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(
      UniqueFd lock,
      LockExclusively(root / "gc.lock", "another airlock-hub gc is collecting " + root.string()));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(root / kAsideDir));
  return std::unique_ptr<BlobCollector>(new BlobCollector(root, std::move(lock)));
}

Result<std::vector<StoredBlob>> BlobCollector::List() const {
  std::vector<StoredBlob> out;
  fs::path top = root_ / "blobs" / "sha256";
  std::error_code ec;
  for (const auto& folder : fs::directory_iterator(top, ec)) {
    std::string prefix = folder.path().filename().string();
    std::error_code ignored;
    if (prefix.size() != 2 || !IsLowerHex(prefix) || !folder.is_directory(ignored)) {
      continue;
    }
    std::error_code inner;
    for (const auto& entry : fs::directory_iterator(folder.path(), inner)) {
      std::string name = entry.path().filename().string();
      if (name.size() != 64 || !name.starts_with(prefix) || !IsLowerHex(name)) {
        continue;
      }
      auto state = StatFile(entry.path());
      if (!state) {
        if (state.error().code() == ErrorCode::kCorrupt) {
          continue;  // not a regular file: not a blob
        }
        return Fail(std::move(state.error()));
      }
      if (!*state) {
        continue;  // removed since the listing began
      }
      out.push_back({Digest::FromHex(name), (*state)->size, (*state)->changed});
    }
    if (inner) {
      return Fail(ErrorCode::kIo, "cannot list " + folder.path().string() + ": " + inner.message());
    }
  }
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot list " + top.string() + ": " + ec.message());
  }
  std::sort(out.begin(), out.end(),
            [](const StoredBlob& a, const StoredBlob& b) { return a.digest < b.digest; });
  return out;
}

Status BlobCollector::PutBack(const fs::path& aside, const Digest& digest) {
  fs::path path = BlobPathIn(root_, digest);
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(path.parent_path()));
  // If a publish put a file there meanwhile, this replaces it with the same bytes.
  if (::rename(aside.c_str(), path.c_str()) != 0) {
    return Fail(ErrnoError("cannot put back " + digest.ToString() + " to", path));
  }
  return SyncDirectory(path.parent_path());
}

Result<Collected> BlobCollector::RemoveIfUnlinked(const Digest& digest, TimePoint cutoff,
                                                  const IsLinked& is_linked) {
  fs::path path = BlobPathIn(root_, digest);
  AIRLOCK_ASSIGN_OR_RETURN(auto before, StatFile(path));
  if (!before) {
    return Collected::kGone;
  }
  if (before->changed > cutoff) {
    return Collected::kYoung;
  }
  AIRLOCK_ASSIGN_OR_RETURN(bool linked, is_linked(digest));
  if (linked) {
    return Collected::kLinked;
  }
  fs::path aside = root_ / kAsideDir / digest.hex();
  if (::rename(path.c_str(), aside.c_str()) != 0) {
    if (errno == ENOENT) {
      return Collected::kGone;
    }
    return Fail(ErrnoError("cannot move aside", path));
  }
  // From here on the file is out of the hub's sight: anything but deleting it must put it back.
  auto moved = StatFile(aside);
  if (!moved || !*moved) {
    Error e = !moved ? std::move(moved.error())
                     : Error(ErrorCode::kIo, aside.string() + " vanished after the move");
    if (Status back = PutBack(aside, digest); !back) {
      e.WithContext("and putting it back failed: " + back.error().message());
    }
    return Fail(std::move(e));
  }
  bool replaced = (*moved)->device != before->device || (*moved)->inode != before->inode;
  if (replaced) {
    // A publish renamed a new file into place between the first look and the move.
    AIRLOCK_RETURN_IF_ERROR(PutBack(aside, digest));
    return Collected::kYoung;
  }
  auto linked_now = is_linked(digest);
  if (!linked_now || *linked_now) {
    AIRLOCK_RETURN_IF_ERROR(PutBack(aside, digest));
    if (!linked_now) {
      return Fail(std::move(linked_now.error()));
    }
    return Collected::kLinked;
  }
  if (::unlink(aside.c_str()) != 0) {
    return Fail(ErrnoError("cannot remove", aside));
  }
  return Collected::kRemoved;
}

Result<std::uint64_t> BlobCollector::RecoverInterrupted(const IsLinked& is_linked) {
  std::uint64_t deleted = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ / kAsideDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 64 || !IsLowerHex(name)) {
      continue;
    }
    Digest digest = Digest::FromHex(name);
    AIRLOCK_ASSIGN_OR_RETURN(auto state, StatFile(entry.path()));
    if (!state) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(bool linked, is_linked(digest));
    if (linked) {
      AIRLOCK_RETURN_IF_ERROR(PutBack(entry.path(), digest));
      continue;
    }
    if (::unlink(entry.path().c_str()) != 0 && errno != ENOENT) {
      return Fail(ErrnoError("cannot remove", entry.path()));
    }
    deleted += state->size;
  }
  if (ec) {
    return Fail(ErrorCode::kIo,
                "cannot list " + (root_ / kAsideDir).string() + ": " + ec.message());
  }
  return deleted;
}

Result<BlobCollector::IdleUploads> BlobCollector::RemoveIdleUploads(TimePoint cutoff,
                                                                    bool dry_run) {
  IdleUploads out;
  const fs::path top = root_ / "uploads";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(top, ec)) {
    if (!IsUploadId(entry.path().filename().string())) {
      continue;  // not a session: not ours to judge
    }
    const fs::path data = entry.path() / kDataFile;
    int raw = ::open(data.c_str(), O_RDWR | O_CLOEXEC);  // writable: see FinishUpload
    if (raw < 0) {
      if (errno != ENOENT) {
        return Fail(ErrnoError("cannot open", data));
      }
      // No data file: a session being created or finished this moment (the directory changed
      // just now), or one whose creation a kill interrupted (it did not).
      struct stat st {};
      if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
          std::max(ToTimePoint(st.st_mtim), ToTimePoint(st.st_ctim)) > cutoff) {
        continue;
      }
      if (!dry_run) {
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
      }
      ++out.sessions;
      continue;
    }
    UniqueFd fd(raw);
    // The lock keeps appends and finishes out while we decide; one running now keeps it.
    AIRLOCK_ASSIGN_OR_RETURN(bool idle_now, TryFlock(fd.get(), LOCK_EX, data));
    if (!idle_now || !CheckStillThere(fd.get(), data, "")) {
      continue;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return Fail(ErrnoError("cannot stat", data));
    }
    if (std::max(ToTimePoint(st.st_mtim), ToTimePoint(st.st_ctim)) > cutoff) {
      continue;
    }
    if (!dry_run) {
      // The data file first, under the lock: a hub that opened it before and locks it after sees
      // it gone (CheckStillThere) and answers that the session is unknown.
      if (::unlink(data.c_str()) != 0 && errno != ENOENT) {
        return Fail(ErrnoError("cannot remove", data));
      }
      // Closed before the directory goes: over NFS an unlinked file still open here lingers as
      // .nfsXXXX in it until the last close.
      fd = UniqueFd();
      std::error_code removed;
      fs::remove_all(entry.path(), removed);
      if (removed) {
        return Fail(ErrorCode::kIo,
                    "cannot remove " + entry.path().string() + ": " + removed.message());
      }
    }
    ++out.sessions;
    out.bytes += static_cast<std::uint64_t>(st.st_size);
  }
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot list " + top.string() + ": " + ec.message());
  }
  return out;
}

}  // namespace airlock::store
