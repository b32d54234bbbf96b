#pragma once
// BlobStore: the hub's content-addressed blobs on the local filesystem, and the upload sessions
// that fill it (DESIGN §7).
//
// Layout under the root directory (docs/hub.md):
//   blobs/sha256/ab/abcdef…      one file per blob, named by the hex of its SHA-256
//   uploads/<uuid>/data          the bytes of an upload session received so far
//   uploads/<uuid>/repository    the repository the session was opened for
//
// A blob file appears only complete and verified: an upload's data file is fsync'ed, its digest
// and size checked, and it is renamed into blobs/ (then the directory is fsync'ed).
//
// Several processes may share a root (hubs on one PostgreSQL database, behind a load balancer,
// with the data directory on shared storage) when each opens it with Sharing::kShared; a store
// opened with Sharing::kExclusive (a hub with SQLite metadata) is alone on it. ROOT/store.lock
// (flock) says which: kExclusive holds it exclusively for as long as the object lives; kShared
// holds it shared, and takes it exclusively for a moment at Open when it can. The rules across
// processes:
//   - Upload sessions live only in files, so any process may continue or finish any session; the
//     running hash below is an optimisation of the process that received every byte.
//   - Appends and the finish of one session are serialised by a flock on its data file (and, in
//     this process, a set of busy sessions, which does not depend on how the filesystem maps
//     flock): a second concurrent append, here or in another process, fails with kUnavailable.
//   - Publishing is a rename into blobs/, atomic for every reader.
//   - Whoever links a blob in the metadata or removes its file after the last unlink holds the
//     digest's lock (LockDigest: a mutex here and a flock on ROOT/locks/<xx>.lock across
//     processes), so a removal never takes away the bytes of a blob another process is linking.
//   - Sessions left by a dead process: Open removes every session when no other process has the
//     root open (it got the exclusive lock); otherwise it leaves them, and BlobCollector removes
//     sessions idle for longer than a limit (`airlock-hub gc`).
//
// The gateway's cache opens its root with Options::uploads = UploadsOnOpen::kKeep: its sessions
// are resumable downloads, found again by id and appended to from the bytes on disk.
//
// Which repository may see a blob is not this class's business (MetadataStore links blobs to
// repositories). Thread-safe: any method may be called from any thread. Every method blocks on
// the disk; LockDigest also waits for another holder of the digest's lock.
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/fs.hpp"
#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock::store {

// A blob opened for reading: the descriptor stays valid (and the bytes stay readable) even if the
// blob is removed meanwhile.
struct BlobFile {
  std::shared_ptr<UniqueFd> fd;
  std::uint64_t size = 0;
};

// Receives the bytes of one append, piece by piece. Returning an error stops the append; the
// bytes written so far stay in the session.
using ChunkSource = std::function<Status(const std::function<Status(std::string_view)>& sink)>;

// Whether other processes may use the same root at the same time (see BlobStore).
enum class Sharing {
  kExclusive,  // this process alone: Open fails while any other process has the root open
  kShared,     // beside other kShared processes; Open fails while a kExclusive one has it open
};

// Holds a digest's lock (BlobStore::LockDigest) until it dies. Movable.
class DigestLock {
 public:
  DigestLock(std::unique_lock<std::mutex> in_process, UniqueFd file)
      : in_process_(std::move(in_process)), file_(std::move(file)) {}

 private:
  std::unique_lock<std::mutex> in_process_;
  UniqueFd file_;  // closing it releases the flock (before the mutex: members die in reverse)
};

// What Open does with the upload sessions a previous process left (when no other process has the
// root open).
enum class UploadsOnOpen {
  kDiscard,  // remove them: an interrupted push starts again (the hub)
  kKeep,     // keep them, to be resumed or cancelled by their owner (the gateway's downloads)
};

class BlobStore {
 public:
  struct Options {
    Sharing sharing = Sharing::kExclusive;
    // kShared: how long Open waits while another process holds the lock exclusively (a sharing
    // process sweeping uploads/ at its own start holds it for a moment) before it gives up.
    std::chrono::milliseconds wait_for_exclusive_holder = std::chrono::seconds(10);
    UploadsOnOpen uploads = UploadsOnOpen::kDiscard;
  };

  // Creates the directories if needed and takes ROOT/store.lock as options.sharing says. Then,
  // if no other process has the root open, removes every upload session (a dead process's)
  // unless options.uploads says to keep them.
  // kUnavailable, with a message saying why, when the lock is held in a way that excludes us.
  [[nodiscard]] static Result<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& root,
                                                               Options options);
  [[nodiscard]] static Result<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& root) {
    return Open(root, Options{});
  }
  ~BlobStore();
  BlobStore(const BlobStore&) = delete;
  BlobStore& operator=(const BlobStore&) = delete;

  const std::filesystem::path& root() const { return root_; }
  Sharing sharing() const { return sharing_; }
  // How many upload sessions Open removed (0 when other processes had the root open).
  std::size_t swept_at_open() const { return swept_at_open_; }
  // Whether Open found other processes using the root (so it left uploads/ alone).
  bool joined_others_at_open() const { return joined_others_; }

  // ---- blobs ----
  // The size of a stored blob; kNotFound if there is none.
  [[nodiscard]] Result<std::uint64_t> Size(const Digest& digest) const;
  [[nodiscard]] Result<BlobFile> OpenBlob(const Digest& digest) const;
  // Removes a blob. kNotFound if there is none. Readers that have it open keep reading.
  [[nodiscard]] Status Remove(const Digest& digest);
  std::filesystem::path BlobPath(const Digest& digest) const;
  // Waits for and takes the digest's lock, in this process and across processes on the root.
  // Hold it from before a link is written (or a last link removed) until after the blob's file
  // was published (or removed). Digests share 256 locks by their first byte. kIo if the lock
  // file cannot be opened or locked.
  [[nodiscard]] Result<DigestLock> LockDigest(const Digest& digest);

  // ---- upload sessions ----
  // Starts a session for repository; returns its id (a random UUID).
  [[nodiscard]] Result<std::string> StartUpload(std::string_view repository);
  // The repository the session belongs to; kNotFound for an unknown (or malformed) id.
  [[nodiscard]] Result<std::string> UploadRepository(std::string_view id) const;
  // Bytes received so far. kNotFound for an unknown id.
  [[nodiscard]] Result<std::uint64_t> UploadSize(std::string_view id) const;
  // Appends what source produces. offset, when given, must equal the bytes received so far
  // (kMismatch, nothing written, otherwise: chunks must come in order). max_size caps the
  // session's total (kInvalidArgument beyond it). Returns the new size. kUnavailable if another
  // append to the same session is running; source's own error is returned as it is.
  [[nodiscard]] Result<std::uint64_t> AppendUpload(std::string_view id,
                                                   std::optional<std::uint64_t> offset,
                                                   const ChunkSource& source,
                                                   std::uint64_t max_size = UINT64_MAX);
  // The session held open for appending piece by piece (see Appender). offset and max_size as
  // for AppendUpload; kUnavailable while another append or finish uses the session.
  class Appender;
  [[nodiscard]] Result<std::unique_ptr<Appender>> OpenAppender(std::string_view id,
                                                               std::optional<std::uint64_t> offset,
                                                               std::uint64_t max_size = UINT64_MAX);
  // Verifies the session's bytes against expected (and expected_size when given) and publishes
  // them as a blob. On success the session is gone. On a mismatch (kCorrupt, naming both digests
  // or sizes) the session is removed too and nothing is published.
  [[nodiscard]] Result<FileDigest> FinishUpload(std::string_view id, const Digest& expected,
                                                std::optional<std::uint64_t> expected_size = {});
  // Removes a session and its bytes. kNotFound for an unknown id.
  [[nodiscard]] Status CancelUpload(std::string_view id);
  // Removes every session, including other processes' (Open does this when it is alone).
  // Returns how many there were.
  std::size_t RemoveAllUploads();

 private:
  BlobStore(std::filesystem::path root, UniqueFd lock, Sharing sharing);
  Result<std::filesystem::path> UploadDir(std::string_view id) const;
  // Marks a session busy in this process for as long as it lives (see AppendUpload).
  class BusyGuard;
  // Drops running hashes of sessions that no longer exist (finished or removed by another
  // process) once there are many. Called with mu_ held.
  void PruneHashes();

  // Bytes of a session hashed as they arrived, so that finishing does not read them again. Kept
  // only while every byte of the session went through this process in order.
  struct RunningHash {
    std::unique_ptr<Sha256> sha;
    std::uint64_t hashed = 0;
  };

  std::filesystem::path root_;
  UniqueFd lock_;
  Sharing sharing_;
  std::size_t swept_at_open_ = 0;
  bool joined_others_ = false;
  mutable std::mutex mu_;  // guards hashes_ and busy_
  std::map<std::string, RunningHash, std::less<>> hashes_;
  std::size_t prune_at_ = 256;  // PruneHashes looks for finished sessions from this many on
  std::set<std::string, std::less<>> busy_;  // sessions an append or finish of ours is using
  std::array<std::mutex, 256> digest_mutexes_;
};

// An upload session held open: its file, its lock and its running hash stay with it, so that
// each piece costs one write and one hash update (a download appends a large blob as its bytes
// arrive, while they are still in the CPU's cache). While it lives, other appends to the session
// and its FinishUpload are refused (kUnavailable); destroying it ends the append.
class BlobStore::Appender {
 public:
  ~Appender();
  Appender(const Appender&) = delete;
  Appender& operator=(const Appender&) = delete;
  // Appends piece. kInvalidArgument, nothing written, when it would pass max_size; kIo when the
  // write fails (part of piece may be in the file then).
  [[nodiscard]] Status Write(std::string_view piece);
  // The session's bytes so far.
  std::uint64_t size() const { return size_; }

 private:
  friend class BlobStore;
  Appender(BlobStore& store, std::string id, std::filesystem::path path, UniqueFd fd,
           std::unique_ptr<BusyGuard> busy, std::uint64_t size, std::uint64_t max_size);

  BlobStore& store_;
  std::string id_;
  std::filesystem::path path_;
  UniqueFd fd_;
  std::unique_ptr<BusyGuard> busy_;
  RunningHash hash_;
  bool hash_valid_ = false;
  std::uint64_t size_;
  std::uint64_t written_back_;  // bytes up to here were handed to the disk (Write)
  std::uint64_t max_size_;
};

// How processes have root open right now, by probing ROOT/store.lock without keeping it: nullopt
// when none does (or there is no store), else the sharing of the stores that have it open (a
// kShared one holds it exclusively for a moment at its Open, and looks kExclusive then). A tool
// that works beside them (`airlock-hub gc`) uses it to refuse to judge a shared directory by the
// wrong metadata.
[[nodiscard]] Result<std::optional<Sharing>> ProbeRootUse(const std::filesystem::path& root);

// Whether id has the shape of a session id (so it cannot name a path outside uploads/).
bool IsUploadId(std::string_view id);

// A blob file as the garbage collector sees it.
struct StoredBlob {
  Digest digest;
  std::uint64_t size = 0;
  // When the file last changed: the later of its mtime and ctime. Publishing renames a file into
  // blobs/, which sets its ctime, so a blob pushed a moment ago is young however long its upload
  // took (and however old its upload's last write was).
  TimePoint changed;
};

// What BlobCollector::RemoveIfUnlinked did with one blob.
enum class Collected {
  kRemoved,  // it was garbage: its bytes are gone
  kYoung,    // it changed after the cutoff (perhaps published a moment ago, its link not yet
             // written), or was replaced while being removed: kept
  kLinked,   // a repository links it: kept
  kGone,     // there was no such file (the hub removed it meanwhile)
};

// Garbage collection of a blob store's directory (`airlock-hub gc`). A blob file is garbage when
// no repository links it: a hub killed between publishing a blob and linking it leaves such a
// file, and so does a failed removal or a second hub's data directory on a shared database.
//
// It runs beside the hubs that use the directory (which hold ROOT/store.lock for as long as they
// serve), so it does not take that lock; it takes ROOT/gc.lock, which only collectors use. A hub
// may publish the very blob being removed, by renaming a new file into its place and then linking
// it. So removal is: skip a file that changed after the cutoff; ask whether it is linked; move it
// aside into ROOT/gc/; if what was moved is not the file first looked at (a publish replaced it)
// or the blob is linked now, put it back (the bytes are the same whatever file holds them: they
// were verified against the name); otherwise delete it. The grace period (the cutoff) covers the
// gap between a publish and its link; the moves make that gap safe even without it.
//
// Not thread-safe (one collector per directory, one thread). Every method blocks on the disk.
class BlobCollector {
 public:
  using IsLinked = std::function<Result<bool>(const Digest&)>;

  // Takes ROOT/gc.lock (kUnavailable while another collector holds it). kNotFound if ROOT has no
  // blob store.
  [[nodiscard]] static Result<std::unique_ptr<BlobCollector>> Open(
      const std::filesystem::path& root);
  ~BlobCollector();
  BlobCollector(const BlobCollector&) = delete;
  BlobCollector& operator=(const BlobCollector&) = delete;

  // Every blob file under blobs/sha256/, in digest order. Entries that are not a regular file
  // named by its digest in its folder are not blobs and are left alone.
  [[nodiscard]] Result<std::vector<StoredBlob>> List() const;
  // Removes the blob's file if it changed at or before cutoff and is_linked says no, by the moves
  // described above. is_linked's error is returned (and the file kept where it was).
  [[nodiscard]] Result<Collected> RemoveIfUnlinked(const Digest& digest, TimePoint cutoff,
                                                   const IsLinked& is_linked);
  // Settles what a collector killed mid-removal left in ROOT/gc/: linked blobs go back into
  // blobs/, the rest is deleted. Returns the bytes deleted. Call it before collecting.
  [[nodiscard]] Result<std::uint64_t> RecoverInterrupted(const IsLinked& is_linked);

  struct IdleUploads {
    std::size_t sessions = 0;
    std::uint64_t bytes = 0;
  };
  // Removes the upload sessions whose data last changed at or before cutoff (sessions of a hub
  // that died while others kept the root open, or that a client abandoned), except those an
  // append or finish is using right now (their data file's flock is taken). A hub that continues
  // a removed session afterwards answers kNotFound, as for any unknown session. dry_run: counts
  // them and removes nothing.
  [[nodiscard]] Result<IdleUploads> RemoveIdleUploads(TimePoint cutoff, bool dry_run);

 private:
  BlobCollector(std::filesystem::path root, UniqueFd lock);
  [[nodiscard]] Status PutBack(const std::filesystem::path& aside, const Digest& digest);

  std::filesystem::path root_;
  UniqueFd lock_;
};

}  // namespace airlock::store
