#pragma once
// Outbox: the telemetry records a tier holds on disk until the next tier has stored them — on the
// agent the records it makes (Append), on the gateway the records its devices send (Put). Delivery
// is at least once: a record leaves the outbox only when Ack names it, after the next tier said it
// stored it, so a record may be sent twice (a crash between sending and Ack) and receivers drop
// duplicates by id (Put does, against the records it holds).
//
// One SQLite file (store::SqliteDatabase: WAL, synchronous=FULL) holds the records and the
// counters, so what a call reported done survives a crash or a power cut, and the counters survive
// restarts. Each change (records with the counters that count them) is one transaction.
//
// Bounded: at most OutboxLimits::max_records records and max_bytes bytes, where a record's size is
// its payload's bytes plus its id's. A record that would cross a bound evicts held records of a
// lower priority, or of its own priority and older, lowest priority first and oldest first within
// one; when those are not enough it is refused and nothing is evicted. Evicted and refused records
// are counted (OutboxStats::dropped). "Older" is by created_ms, then by arrival.
//
// A full disk is not an error for Append and Put: the write is rolled back (what was held stays
// held and readable), the write-ahead log is checkpointed so that its space can be reused, and the
// write is tried once more after evicting records of a lower priority (about as many bytes as the
// new record, so that it reuses their pages); if that fails too the new records are dropped and
// counted (disk_full, dropped). Every write goes through the log first, so the retry helps only
// when the log has room a checkpoint can free; on a disk with no room at all every write is
// refused until space is freed. Counts made while nothing could be written are kept in memory and
// written with the next transaction that succeeds (or when the Outbox is destroyed); a crash before
// that loses those counts, never records.
//
// Thread-safe: every method may be called from any thread; calls are serialised. One Outbox per
// database file at a time: a second one on the same file would keep correct records but report
// stale Stats().

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace airlock::store {
class SqliteDatabase;
}

namespace airlock::monitor {

// Which records stay when there is no room: alerts over metrics over captures.
enum class Priority : int { kCapture = 0, kMetrics = 1, kAlert = 2 };
inline constexpr int kPriorities = 3;
const char* PriorityName(Priority priority);  // "capture", "metrics", "alert"

struct OutboxRecord {
  std::string id;  // unique across the fleet, e.g. "<device>/<sequence>"
  Priority priority = Priority::kMetrics;
  std::string kind;             // free text: "metrics", "alert", "capture", …
  std::int64_t created_ms = 0;  // Unix milliseconds, from the producer's clock
  std::string payload;          // opaque bytes (usually JSON)

  bool operator==(const OutboxRecord&) const = default;
};

struct OutboxLimits {
  std::uint64_t max_bytes = 64ull << 20;  // payloads + ids
  std::uint64_t max_records = 200000;
};

// Indexed by static_cast<int>(Priority). Every counter is kept in the database and survives
// restarts (see above for the counts made while the disk is full).
struct OutboxStats {
  std::uint64_t records = 0;  // held now
  std::uint64_t bytes = 0;    // held now: payloads + ids
  std::array<std::uint64_t, kPriorities> held_by_priority{};
  std::array<std::uint64_t, kPriorities> dropped{};  // evicted or refused, by priority
  std::uint64_t dropped_bytes = 0;                   // their sizes (payload + id)
  std::uint64_t accepted = 0;    // records stored by Append and Put (not duplicates)
  std::uint64_t duplicates = 0;  // records Put with an id already held
  std::uint64_t acked = 0;       // records removed by Ack
  std::uint64_t disk_full = 0;   // calls whose write met a full disk

  bool operator==(const OutboxStats&) const = default;
};

class Outbox {
 public:
  // Opens the database at path, creating it (and its schema) when missing; path's directory must
  // exist. Append's ids are id_prefix followed by a decimal sequence number (e.g. "cam-1/" →
  // "cam-1/17"). kInvalidArgument for a limit of 0; kIo when the file cannot be opened or read;
  // kUnsupported when it was written by a newer Airlock.
  [[nodiscard]] static Result<std::unique_ptr<Outbox>> Open(const std::filesystem::path& path,
                                                            std::string id_prefix,
                                                            OutboxLimits limits = {});
  // Writes the counts not yet written (see above), if it can.
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Stores a record made here, with the next id: a sequence number never used before in this
  // database (not after Ack removed its records, not after a crash or a restart). Returns the
  // record as stored, or nullopt when it was dropped (by the bounds or a full disk; counted).
  // kInvalidArgument for a priority out of range; kIo for a database failure other than a full
  // disk (nothing stored, nothing counted).
  [[nodiscard]] Result<std::optional<OutboxRecord>> Append(Priority priority, std::string kind,
                                                           std::string payload,
                                                           std::int64_t created_ms);

  // Stores records from the tier below with their own ids, in one transaction. A record whose id
  // is held already (or came earlier in records) is a duplicate: counted, not stored again. A
  // record the bounds or a full disk drop is counted, not an error. Returns how many were stored;
  // on success every record is dealt with and the sender may forget them all. kInvalidArgument for
  // an empty id or a priority out of range (nothing stored); kIo for a database failure other than
  // a full disk (nothing stored, nothing counted: the sender should keep them).
  [[nodiscard]] Result<std::size_t> Put(const std::vector<OutboxRecord>& records);

  // The next records to send, without removing them: highest priority first, oldest first within
  // a priority; at most max_records, and past the first at most max_bytes of payload in all (so a
  // record larger than max_bytes still goes out, alone). kIo when the database cannot be read.
  [[nodiscard]] Result<std::vector<OutboxRecord>> Peek(std::size_t max_records,
                                                       std::uint64_t max_bytes) const;

  // Removes the records with these ids (the next tier has stored them); ids not held are
  // ignored. Returns how many were removed. kIo when the removal could not be written, a full
  // disk included (counted in disk_full; nothing removed: the records will be sent again).
  [[nodiscard]] Result<std::size_t> Ack(const std::vector<std::string>& ids);

  // The counters as of the last call; does not touch the disk.
  OutboxStats Stats() const;

 private:
  struct Attempt;
  Outbox(std::unique_ptr<store::SqliteDatabase> db, std::string id_prefix, OutboxLimits limits);

  // Stores batch (Append's one record when local, else Put's) in one transaction; relieve: the
  // disk was full, evict lower-priority records to make room on it.
  Result<Attempt> TryStore(const std::vector<OutboxRecord>& batch, bool local, bool relieve);
  // Store with the full-disk handling described above.
  Result<Attempt> Store(const std::vector<OutboxRecord>& batch, bool local);
  Result<std::size_t> TryAck(const std::vector<std::string>& ids);

  std::unique_ptr<store::SqliteDatabase> db_;
  const std::string id_prefix_;
  const OutboxLimits limits_;

  mutable std::mutex mu_;
  OutboxStats saved_;                // as the database holds them after the last commit
  OutboxStats unsaved_;              // counts (not held figures) not yet in the database
  std::uint64_t next_sequence_ = 1;  // as the database holds it
};

}  // namespace airlock::monitor
