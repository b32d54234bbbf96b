#include "monitor/outbox.hpp"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "store/sql.hpp"
#include "store/sqlite_database.hpp"

namespace airlock::monitor {
namespace {

using store::SqlParam;
using store::SqlRows;
using store::SqlSession;

// The records, and one row of figures changed in the same transaction as the records they count.
// payload is a BLOB (bound as text and cast, so any bytes go in and come out unchanged); size is
// payload + id in bytes, what the bounds count.
const store::SqlMigration kMigrations[] = {
    {1, "telemetry records and their counters", R"sql(
CREATE TABLE outbox_records (
  seq         INTEGER PRIMARY KEY,
  id          TEXT NOT NULL UNIQUE,
  priority    INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  created_ms  INTEGER NOT NULL,
  size        INTEGER NOT NULL,
  payload     BLOB NOT NULL
);
CREATE INDEX outbox_records_by_age ON outbox_records (priority, created_ms, seq);
CREATE TABLE outbox_state (
  one              INTEGER PRIMARY KEY CHECK (one = 1),
  next_sequence    INTEGER NOT NULL,
  bytes            INTEGER NOT NULL,
  held_capture     INTEGER NOT NULL,
  held_metrics     INTEGER NOT NULL,
  held_alert       INTEGER NOT NULL,
  dropped_capture  INTEGER NOT NULL,
  dropped_metrics  INTEGER NOT NULL,
  dropped_alert    INTEGER NOT NULL,
  dropped_bytes    INTEGER NOT NULL,
  accepted         INTEGER NOT NULL,
  duplicates       INTEGER NOT NULL,
  acked            INTEGER NOT NULL,
  disk_full        INTEGER NOT NULL
);
INSERT INTO outbox_state VALUES (1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))sql"},
};

// What a relieving attempt frees beyond the record itself: about one page of the database for the
// b-tree's own changes.
constexpr std::uint64_t kReliefSlack = 4096;
// Rows read at a time while looking for records to evict or to send.
constexpr std::int64_t kPageRows = 256;

// The outbox_state row.
struct Tally {
  OutboxStats stats;
  std::uint64_t next_sequence = 1;
};

std::int64_t Signed(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t Unsigned(std::int64_t v) { return v < 0 ? 0 : static_cast<std::uint64_t>(v); }

bool ValidPriority(Priority p) {
  int v = static_cast<int>(p);
  return v >= 0 && v < kPriorities;
}

Result<Tally> ReadTally(SqlSession& s) {
  AIRLOCK_ASSIGN_OR_RETURN(
      SqlRows r,
      s.Query("SELECT next_sequence, bytes, held_capture, held_metrics, held_alert, "
              "dropped_capture, dropped_metrics, dropped_alert, dropped_bytes, accepted, "
              "duplicates, acked, disk_full FROM outbox_state WHERE one = 1"));
  if (r.empty()) {
    return Fail(ErrorCode::kCorrupt, "the outbox database has no outbox_state row");
  }
  Tally t;
  t.next_sequence = Unsigned(r.Int(0, 0));
  t.stats.bytes = Unsigned(r.Int(0, 1));
  for (int p = 0; p < kPriorities; ++p) {
    t.stats.held_by_priority[p] = Unsigned(r.Int(0, 2 + p));
    t.stats.records += t.stats.held_by_priority[p];
    t.stats.dropped[p] = Unsigned(r.Int(0, 5 + p));
  }
  t.stats.dropped_bytes = Unsigned(r.Int(0, 8));
  t.stats.accepted = Unsigned(r.Int(0, 9));
  t.stats.duplicates = Unsigned(r.Int(0, 10));
  t.stats.acked = Unsigned(r.Int(0, 11));
  t.stats.disk_full = Unsigned(r.Int(0, 12));
  return t;
}

Status WriteTally(SqlSession& s, const Tally& t) {
  const OutboxStats& st = t.stats;
  AIRLOCK_RETURN_IF_ERROR(s.Query(
      "UPDATE outbox_state SET next_sequence = ?, bytes = ?, held_capture = ?, held_metrics = ?, "
      "held_alert = ?, dropped_capture = ?, dropped_metrics = ?, dropped_alert = ?, "
      "dropped_bytes = ?, accepted = ?, duplicates = ?, acked = ?, disk_full = ? WHERE one = 1",
      {Signed(t.next_sequence), Signed(st.bytes), Signed(st.held_by_priority[0]),
       Signed(st.held_by_priority[1]), Signed(st.held_by_priority[2]), Signed(st.dropped[0]),
       Signed(st.dropped[1]), Signed(st.dropped[2]), Signed(st.dropped_bytes), Signed(st.accepted),
       Signed(st.duplicates), Signed(st.acked), Signed(st.disk_full)}));
  return {};
}

// Adds the counts of delta (not its held figures) to into.
void AddCounts(OutboxStats& into, const OutboxStats& delta) {
  for (int p = 0; p < kPriorities; ++p) {
    into.dropped[p] += delta.dropped[p];
  }
  into.dropped_bytes += delta.dropped_bytes;
  into.accepted += delta.accepted;
  into.duplicates += delta.duplicates;
  into.acked += delta.acked;
  into.disk_full += delta.disk_full;
}

bool HasCounts(const OutboxStats& st) {
  return st.dropped != decltype(st.dropped){} || st.dropped_bytes != 0 || st.accepted != 0 ||
         st.duplicates != 0 || st.acked != 0 || st.disk_full != 0;
}

void CountDrop(OutboxStats& st, int priority, std::uint64_t size) {
  st.dropped[priority] += 1;
  st.dropped_bytes += size;
}

void Forget(OutboxStats& st, int priority, std::uint64_t size) {
  st.held_by_priority[priority] -= 1;
  st.records -= 1;
  st.bytes -= size;
}

struct Victim {
  std::int64_t seq = 0;
  int priority = 0;
  std::int64_t created_ms = 0;
  std::uint64_t size = 0;
};

// The records a new one of this priority, age and size must evict, in eviction order; nullopt
// when even all it may evict would not make room (then none is evicted). relieve: also evict
// records of a lower priority until they free size + kReliefSlack, where there are any.
Result<std::optional<std::vector<Victim>>> PlanRoom(SqlSession& s, const OutboxStats& held,
                                                    const OutboxLimits& limits, int priority,
                                                    std::int64_t created_ms, std::uint64_t size,
                                                    bool relieve) {
  std::vector<Victim> victims;
  std::uint64_t records = held.records;
  std::uint64_t bytes = held.bytes;
  std::uint64_t relieved = 0;
  auto fits = [&] { return records + 1 <= limits.max_records && bytes + size <= limits.max_bytes; };
  auto relieving = [&](const Victim& v) {
    return relieve && v.priority < priority && relieved < size + kReliefSlack;
  };
  // Candidates in eviction order, read a page at a time after the last one read.
  Victim last{
      .seq = -1, .priority = -1, .created_ms = std::numeric_limits<std::int64_t>::min(), .size = 0};
  for (;;) {
    if (fits() && !relieve) {
      return std::optional(std::move(victims));
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r, s.Query("SELECT seq, priority, created_ms, size FROM outbox_records "
                           "WHERE (priority < ? OR (priority = ? AND created_ms <= ?)) "
                           "AND (priority, created_ms, seq) > (?, ?, ?) "
                           "ORDER BY priority, created_ms, seq LIMIT ?",
                           {std::int64_t{priority}, std::int64_t{priority}, created_ms,
                            std::int64_t{last.priority}, last.created_ms, last.seq, kPageRows}));
    for (std::size_t i = 0; i < r.size(); ++i) {
      Victim v{.seq = r.Int(i, 0),
               .priority = static_cast<int>(r.Int(i, 1)),
               .created_ms = r.Int(i, 2),
               .size = Unsigned(r.Int(i, 3))};
      last = v;
      if (fits() && !relieving(v)) {
        return std::optional(std::move(victims));
      }
      if (v.priority < priority) {
        relieved += v.size;
      }
      records -= 1;
      bytes -= std::min(bytes, v.size);
      victims.push_back(v);
    }
    if (r.size() < static_cast<std::size_t>(kPageRows)) {
      if (fits()) {
        return std::optional(std::move(victims));
      }
      return std::optional<std::vector<Victim>>();
    }
  }
}

OutboxRecord RecordFromRow(const SqlRows& r, std::size_t i) {
  return OutboxRecord{.id = r.Text(i, 0),
                      .priority = static_cast<Priority>(r.Int(i, 1)),
                      .kind = r.Text(i, 2),
                      .created_ms = r.Int(i, 3),
                      .payload = r.Text(i, 4)};
}

}  // namespace

const char* PriorityName(Priority priority) {
  switch (priority) {
    case Priority::kCapture:
      return "capture";
    case Priority::kMetrics:
      return "metrics";
    case Priority::kAlert:
      return "alert";
  }
  return "unknown";
}

// One transaction's outcome: per record of the batch its id if stored, and the figures after it.
struct Outbox::Attempt {
  std::vector<std::optional<std::string>> stored;
  Tally tally;
};

Outbox::Outbox(std::unique_ptr<store::SqliteDatabase> db, std::string id_prefix,
               OutboxLimits limits)
    : db_(std::move(db)), id_prefix_(std::move(id_prefix)), limits_(limits) {}

Outbox::~Outbox() {
  std::lock_guard lock(mu_);
  if (!HasCounts(unsaved_)) {
    return;
  }
  // The counts are worth keeping but not worth failing for: the disk may still be full.
  (void)db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(Tally t, ReadTally(s));
    AddCounts(t.stats, unsaved_);
    return WriteTally(s, t);
  });
}

Result<std::unique_ptr<Outbox>> Outbox::Open(const std::filesystem::path& path,
                                             std::string id_prefix, OutboxLimits limits) {
  if (limits.max_bytes == 0 || limits.max_records == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "the outbox needs limits above 0 (max_bytes and max_records)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto db, store::SqliteDatabase::Open(path));
  // The outbox reads no clock (its callers give every record's time), so the migrations' record
  // says 0 for when they were applied.
  Status migrated = store::MigrateComponent(*db, "outbox", kMigrations, 0);
  if (!migrated) {
    return Fail(
        std::move(migrated.error()).WithContext("while opening the outbox " + path.string()));
  }
  std::unique_ptr<Outbox> outbox(new Outbox(std::move(db), std::move(id_prefix), limits));
  Result<Tally> tally = store::SqlTransact<Tally>(*outbox->db_, ReadTally);
  if (!tally) {
    return Fail(std::move(tally.error()).WithContext("while opening the outbox " + path.string()));
  }
  outbox->saved_ = tally->stats;
  outbox->next_sequence_ = tally->next_sequence;
  return outbox;
}

Result<Outbox::Attempt> Outbox::TryStore(const std::vector<OutboxRecord>& batch, bool local,
                                         bool relieve) {
  Attempt out;
  Status done = db_->Transact([&](SqlSession& s) -> Status {
    out = Attempt{};
    AIRLOCK_ASSIGN_OR_RETURN(out.tally, ReadTally(s));
    OutboxStats& st = out.tally.stats;
    AddCounts(st, unsaved_);
    for (const OutboxRecord& given : batch) {
      std::string id = local ? id_prefix_ + std::to_string(out.tally.next_sequence++) : given.id;
      if (!local) {
        AIRLOCK_ASSIGN_OR_RETURN(SqlRows held,
                                 s.Query("SELECT 1 FROM outbox_records WHERE id = ?", {id}));
        if (!held.empty()) {
          st.duplicates += 1;
          out.stored.emplace_back();
          continue;
        }
      }
      int priority = static_cast<int>(given.priority);
      std::uint64_t size = id.size() + given.payload.size();
      if (size > limits_.max_bytes) {
        CountDrop(st, priority, size);
        out.stored.emplace_back();
        continue;
      }
      AIRLOCK_ASSIGN_OR_RETURN(auto victims,
                               PlanRoom(s, st, limits_, priority, given.created_ms, size, relieve));
      if (!victims) {
        CountDrop(st, priority, size);
        out.stored.emplace_back();
        continue;
      }
      for (const Victim& v : *victims) {
        AIRLOCK_RETURN_IF_ERROR(
            s.Query("DELETE FROM outbox_records WHERE seq = ?", {std::int64_t{v.seq}}));
        Forget(st, v.priority, v.size);
        CountDrop(st, v.priority, v.size);
      }
      AIRLOCK_RETURN_IF_ERROR(s.Query(
          "INSERT INTO outbox_records (id, priority, kind, created_ms, size, payload) "
          "VALUES (?, ?, ?, ?, ?, CAST(? AS BLOB))",
          {id, std::int64_t{priority}, given.kind, given.created_ms, Signed(size), given.payload}));
      st.held_by_priority[priority] += 1;
      st.records += 1;
      st.bytes += size;
      st.accepted += 1;
      out.stored.emplace_back(std::move(id));
    }
    return WriteTally(s, out.tally);
  });
  if (!done) {
    return Fail(std::move(done.error()));
  }
  saved_ = out.tally.stats;
  next_sequence_ = out.tally.next_sequence;
  unsaved_ = OutboxStats{};
  return out;
}

Result<Outbox::Attempt> Outbox::Store(const std::vector<OutboxRecord>& batch, bool local) {
  Result<Attempt> first = TryStore(batch, local, /*relieve=*/false);
  if (first || !store::IsDiskFull(first.error())) {
    return first;
  }
  // Rolled back. A checkpoint lets the next transaction reuse the write-ahead log's space (and
  // fails harmlessly when copying the log needs room the disk does not have); records of a lower
  // priority freed in the same transaction leave pages the new ones reuse.
  unsaved_.disk_full += 1;
  (void)db_->Checkpoint();
  Result<Attempt> second = TryStore(batch, local, /*relieve=*/true);
  if (second || !store::IsDiskFull(second.error())) {
    return second;
  }
  // Still full: the batch is dropped. Ids already held were no loss (duplicates); finding out is
  // a read, which a full disk allows, and if even that fails every record counts as dropped.
  std::unordered_set<std::string> held;
  if (!local) {
    std::vector<std::string> ids;
    for (const OutboxRecord& r : batch) {
      ids.push_back(r.id);
    }
    Status read = db_->Transact([&](SqlSession& s) -> Status {
      for (const std::string& id : ids) {
        AIRLOCK_ASSIGN_OR_RETURN(SqlRows r,
                                 s.Query("SELECT 1 FROM outbox_records WHERE id = ?", {id}));
        if (!r.empty()) {
          held.insert(id);
        }
      }
      return {};
    });
    if (!read) {
      held.clear();
    }
  }
  Attempt out;
  out.tally.stats = saved_;
  out.tally.next_sequence = next_sequence_;
  for (const OutboxRecord& r : batch) {
    out.stored.emplace_back();
    std::string id = local ? id_prefix_ + std::to_string(next_sequence_) : r.id;
    if (!local && !held.insert(r.id).second) {
      unsaved_.duplicates += 1;
      continue;
    }
    CountDrop(unsaved_, static_cast<int>(r.priority), id.size() + r.payload.size());
  }
  return out;
}

Result<std::optional<OutboxRecord>> Outbox::Append(Priority priority, std::string kind,
                                                   std::string payload, std::int64_t created_ms) {
  if (!ValidPriority(priority)) {
    return Fail(ErrorCode::kInvalidArgument,
                "no such telemetry priority: " + std::to_string(static_cast<int>(priority)));
  }
  std::lock_guard lock(mu_);
  std::vector<OutboxRecord> batch(1);
  batch[0] = OutboxRecord{.id = {},
                          .priority = priority,
                          .kind = std::move(kind),
                          .created_ms = created_ms,
                          .payload = std::move(payload)};
  Result<Attempt> attempt = Store(batch, /*local=*/true);
  if (!attempt) {
    return Fail(std::move(attempt.error()).WithContext("while appending to the outbox"));
  }
  if (!attempt->stored.front()) {
    return std::optional<OutboxRecord>();
  }
  batch[0].id = std::move(*attempt->stored.front());
  return std::optional(std::move(batch[0]));
}

Result<std::size_t> Outbox::Put(const std::vector<OutboxRecord>& records) {
  for (const OutboxRecord& r : records) {
    if (r.id.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "a telemetry record without an id");
    }
    if (!ValidPriority(r.priority)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the telemetry record " + r.id +
                      " has no such priority: " + std::to_string(static_cast<int>(r.priority)));
    }
  }
  if (records.empty()) {
    return 0;
  }
  std::lock_guard lock(mu_);
  Result<Attempt> attempt = Store(records, /*local=*/false);
  if (!attempt) {
    return Fail(std::move(attempt.error()).WithContext("while storing telemetry in the outbox"));
  }
  return static_cast<std::size_t>(
      std::count_if(attempt->stored.begin(), attempt->stored.end(),
                    [](const std::optional<std::string>& id) { return id.has_value(); }));
}

Result<std::vector<OutboxRecord>> Outbox::Peek(std::size_t max_records,
                                               std::uint64_t max_bytes) const {
  std::lock_guard lock(mu_);
  std::vector<OutboxRecord> out;
  std::uint64_t bytes = 0;
  Status read = db_->Transact([&](SqlSession& s) -> Status {
    out.clear();
    bytes = 0;
    for (int priority = kPriorities - 1; priority >= 0; --priority) {
      // Oldest first, a page at a time after the last one read (so big payloads past the byte
      // budget are not read at all).
      std::int64_t after_created = std::numeric_limits<std::int64_t>::min();
      std::int64_t after_seq = -1;
      for (;;) {
        if (out.size() >= max_records) {
          return {};
        }
        std::int64_t page =
            std::min<std::int64_t>(kPageRows, static_cast<std::int64_t>(max_records - out.size()));
        AIRLOCK_ASSIGN_OR_RETURN(
            SqlRows r,
            s.Query("SELECT id, priority, kind, created_ms, payload, seq FROM outbox_records "
                    "WHERE priority = ? AND (created_ms, seq) > (?, ?) "
                    "ORDER BY created_ms, seq LIMIT ?",
                    {std::int64_t{priority}, after_created, after_seq, page}));
        for (std::size_t i = 0; i < r.size(); ++i) {
          OutboxRecord record = RecordFromRow(r, i);
          if (!out.empty() && bytes + record.payload.size() > max_bytes) {
            return {};
          }
          bytes += record.payload.size();
          after_created = record.created_ms;
          after_seq = r.Int(i, 5);
          out.push_back(std::move(record));
        }
        if (r.size() < static_cast<std::size_t>(page)) {
          break;
        }
      }
    }
    return {};
  });
  if (!read) {
    return Fail(std::move(read.error()).WithContext("while reading the outbox"));
  }
  return out;
}

Result<std::size_t> Outbox::TryAck(const std::vector<std::string>& ids) {
  Tally tally;
  std::size_t removed = 0;
  Status done = db_->Transact([&](SqlSession& s) -> Status {
    removed = 0;
    AIRLOCK_ASSIGN_OR_RETURN(tally, ReadTally(s));
    AddCounts(tally.stats, unsaved_);
    for (const std::string& id : ids) {
      AIRLOCK_ASSIGN_OR_RETURN(
          SqlRows r,
          s.Query("DELETE FROM outbox_records WHERE id = ? RETURNING priority, size", {id}));
      if (r.empty()) {
        continue;
      }
      Forget(tally.stats, static_cast<int>(r.Int(0, 0)), Unsigned(r.Int(0, 1)));
      tally.stats.acked += 1;
      removed += 1;
    }
    return WriteTally(s, tally);
  });
  if (!done) {
    return Fail(std::move(done.error()));
  }
  saved_ = tally.stats;
  next_sequence_ = tally.next_sequence;
  unsaved_ = OutboxStats{};
  return removed;
}

Result<std::size_t> Outbox::Ack(const std::vector<std::string>& ids) {
  if (ids.empty()) {
    return 0;
  }
  std::lock_guard lock(mu_);
  Result<std::size_t> removed = TryAck(ids);
  if (!removed && store::IsDiskFull(removed.error())) {
    // As in Store: after a checkpoint the log's space may be reused.
    unsaved_.disk_full += 1;
    (void)db_->Checkpoint();
    removed = TryAck(ids);
  }
  if (!removed) {
    return Fail(std::move(removed.error()).WithContext("while acknowledging outbox records"));
  }
  return removed;
}

OutboxStats Outbox::Stats() const {
  std::lock_guard lock(mu_);
  OutboxStats out = saved_;
  AddCounts(out, unsaved_);
  return out;
}

}  // namespace airlock::monitor
