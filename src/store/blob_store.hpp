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
// and size checked, and it is renamed into blobs/ (then the directory is fsync'ed). Uploads do not
// survive a restart: Open() removes every session left by a previous process, so a hub killed
// mid-upload leaves neither a partial blob nor a session — unless the owner opens the store with
// UploadsOnOpen::kKeep (the gateway's cache does: its sessions are resumable downloads, found again
// by id and appended to from the bytes on disk). Only one process may use a root at a time (Open()
// takes an exclusive lock on ROOT/store.lock, released when the object dies).
//
// Which repository may see a blob is not this class's business (MetadataStore links blobs to
// repositories). Thread-safe: any method may be called from any thread; appends to one session are
// serialised by a lock on its data file, and a second concurrent append to it fails with
// kUnavailable. Every method blocks on the disk.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

// What Open does with the upload sessions a previous process left.
enum class UploadsOnOpen {
  kDiscard,  // remove them: an interrupted push starts again (the hub)
  kKeep,     // keep them, to be resumed or cancelled by their owner (the gateway's downloads)
};

class BlobStore {
 public:
  // Creates the directories if needed, takes the root's lock (kUnavailable if another process
  // holds it), and removes the upload sessions a previous process left behind unless told to
  // keep them.
  [[nodiscard]] static Result<std::unique_ptr<BlobStore>> Open(
      const std::filesystem::path& root, UploadsOnOpen uploads = UploadsOnOpen::kDiscard);
  ~BlobStore();
  BlobStore(const BlobStore&) = delete;
  BlobStore& operator=(const BlobStore&) = delete;

  const std::filesystem::path& root() const { return root_; }

  // ---- blobs ----
  // The size of a stored blob; kNotFound if there is none.
  [[nodiscard]] Result<std::uint64_t> Size(const Digest& digest) const;
  [[nodiscard]] Result<BlobFile> OpenBlob(const Digest& digest) const;
  // Removes a blob. kNotFound if there is none. Readers that have it open keep reading.
  [[nodiscard]] Status Remove(const Digest& digest);
  std::filesystem::path BlobPath(const Digest& digest) const;

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
  // Verifies the session's bytes against expected (and expected_size when given) and publishes
  // them as a blob. On success the session is gone. On a mismatch (kCorrupt, naming both digests
  // or sizes) the session is removed too and nothing is published.
  [[nodiscard]] Result<FileDigest> FinishUpload(std::string_view id, const Digest& expected,
                                                std::optional<std::uint64_t> expected_size = {});
  // Removes a session and its bytes. kNotFound for an unknown id.
  [[nodiscard]] Status CancelUpload(std::string_view id);
  // Removes every session (Open does this). Returns how many there were.
  std::size_t RemoveAllUploads();

 private:
  BlobStore(std::filesystem::path root, UniqueFd lock);
  Result<std::filesystem::path> UploadDir(std::string_view id) const;

  // Bytes of a session hashed as they arrived, so that finishing does not read them again. Kept
  // only while every byte of the session went through this process in order.
  struct RunningHash {
    std::unique_ptr<Sha256> sha;
    std::uint64_t hashed = 0;
  };

  std::filesystem::path root_;
  UniqueFd lock_;
  mutable std::mutex mu_;  // guards hashes_
  std::map<std::string, RunningHash, std::less<>> hashes_;
};

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
// It runs beside the hub that owns the directory (which holds ROOT/store.lock for as long as it
// serves), so it does not take that lock; it takes ROOT/gc.lock, which only collectors use. A hub
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

 private:
  BlobCollector(std::filesystem::path root, UniqueFd lock);
  [[nodiscard]] Status PutBack(const std::filesystem::path& aside, const Digest& digest);

  std::filesystem::path root_;
  UniqueFd lock_;
};

}  // namespace airlock::store
