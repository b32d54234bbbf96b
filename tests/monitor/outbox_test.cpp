// The telemetry outbox on real SQLite files: ids, order, acknowledgement, duplicates, counters
// across restarts, the bounds and their drop policy, SIGKILL at random moments, and a full disk
// (a small tmpfs; skipped where it cannot be mounted).

#include "monitor/outbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "store/sqlite_database.hpp"
#include "support/small_disk.hpp"
#include "support/test_support.hpp"

namespace airlock::monitor {
namespace {

namespace fs = std::filesystem;
using testing::FillDisk;
using testing::SmallDisk;
using testing::TempDir;

constexpr int kCapture = static_cast<int>(Priority::kCapture);
constexpr int kMetrics = static_cast<int>(Priority::kMetrics);
constexpr int kAlert = static_cast<int>(Priority::kAlert);

std::unique_ptr<Outbox> MustOpen(const fs::path& path, const std::string& prefix = "d/",
                                 OutboxLimits limits = {}) {
  auto opened = Outbox::Open(path, prefix, limits);
  EXPECT_TRUE(opened) << opened.error().ToString();
  return opened ? std::move(*opened) : nullptr;
}

// The record as stored, or "" when it was dropped (and a test failure on an error).
std::string Add(Outbox& outbox, Priority p, const std::string& payload, std::int64_t created_ms) {
  auto r = outbox.Append(p, PriorityName(p), payload, created_ms);
  EXPECT_TRUE(r) << r.error().ToString();
  return r && *r ? (*r)->id : std::string();
}

OutboxRecord Remote(std::string id, Priority p, std::int64_t created_ms, std::string payload) {
  return OutboxRecord{.id = std::move(id),
                      .priority = p,
                      .kind = PriorityName(p),
                      .created_ms = created_ms,
                      .payload = std::move(payload)};
}

std::vector<OutboxRecord> All(const Outbox& outbox) {
  auto all = outbox.Peek(std::numeric_limits<std::size_t>::max(),
                         std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(all) << all.error().ToString();
  return all ? *all : std::vector<OutboxRecord>();
}

std::vector<std::string> Ids(const std::vector<OutboxRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) {
    out.push_back(r.id);
  }
  return out;
}

std::uint64_t Size(const std::string& id, const std::string& payload) {
  return id.size() + payload.size();
}

// PRAGMA integrity_check on the file, through a connection of its own.
std::string IntegrityCheck(const fs::path& path) {
  auto db = store::SqliteDatabase::Open(path);
  if (!db) {
    return db.error().ToString();
  }
  auto rows = store::SqlTransact<store::SqlRows>(
      **db, [](store::SqlSession& s) { return s.Query("PRAGMA integrity_check"); });
  if (!rows) {
    return rows.error().ToString();
  }
  return rows->empty() ? "no answer" : rows->Text(0, 0);
}

TEST(Outbox, AppendIdsNeverRepeatAfterAckAndReopen) {
  TempDir tmp;
  std::set<std::string> seen;
  for (int round = 0; round < 3; ++round) {
    auto outbox = MustOpen(tmp / "outbox.db", "cam-1/");
    ASSERT_NE(outbox, nullptr);
    for (int i = 0; i < 3; ++i) {
      std::string id = Add(*outbox, Priority::kMetrics, "m", i);
      EXPECT_TRUE(id.starts_with("cam-1/")) << id;
      EXPECT_TRUE(seen.insert(id).second) << id << " came twice";
    }
    auto acked = outbox->Ack(Ids(All(*outbox)));
    ASSERT_TRUE(acked);
    EXPECT_EQ(*acked, 3u);
    EXPECT_EQ(outbox->Stats().records, 0u);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"cam-1/1", "cam-1/2", "cam-1/3", "cam-1/4", "cam-1/5",
                                         "cam-1/6", "cam-1/7", "cam-1/8", "cam-1/9"}));
}

TEST(Outbox, PeekGivesAlertsThenMetricsThenCapturesOldestFirst) {
  TempDir tmp;
  auto outbox = MustOpen(tmp / "outbox.db");
  ASSERT_NE(outbox, nullptr);
  auto put = outbox->Put({Remote("g/1", Priority::kCapture, 10, std::string(10, '1')),
                          Remote("g/2", Priority::kAlert, 30, std::string(10, '2')),
                          Remote("g/3", Priority::kMetrics, 20, std::string(10, '3')),
                          Remote("g/4", Priority::kAlert, 5, std::string(10, '4')),
                          Remote("g/5", Priority::kMetrics, 20, std::string(10, '5')),
                          Remote("g/6", Priority::kCapture, 1, std::string(10, '6'))});
  ASSERT_TRUE(put) << put.error().ToString();
  EXPECT_EQ(*put, 6u);
  // Equal times go in the order they came.
  EXPECT_EQ(Ids(All(*outbox)),
            (std::vector<std::string>{"g/4", "g/2", "g/3", "g/5", "g/6", "g/1"}));
  auto three = outbox->Peek(3, 1000);
  ASSERT_TRUE(three);
  EXPECT_EQ(Ids(*three), (std::vector<std::string>{"g/4", "g/2", "g/3"}));
  EXPECT_EQ(three->front(), Remote("g/4", Priority::kAlert, 5, std::string(10, '4')));
  // 25 bytes of payload: two records of 10; the third would pass it.
  auto budget = outbox->Peek(10, 25);
  ASSERT_TRUE(budget);
  EXPECT_EQ(Ids(*budget), (std::vector<std::string>{"g/4", "g/2"}));
  // The first record goes out even when it alone is over the budget.
  auto first = outbox->Peek(10, 5);
  ASSERT_TRUE(first);
  EXPECT_EQ(Ids(*first), (std::vector<std::string>{"g/4"}));
  auto none = outbox->Peek(0, 1000);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(outbox->Stats().records, 6u);  // Peek removes nothing
}

TEST(Outbox, AckRemovesTheNamedRecordsAndIgnoresUnknownIds) {
  TempDir tmp;
  auto outbox = MustOpen(tmp / "outbox.db");
  ASSERT_NE(outbox, nullptr);
  std::string a = Add(*outbox, Priority::kAlert, "a", 1);
  std::string m = Add(*outbox, Priority::kMetrics, "m", 2);
  std::string c = Add(*outbox, Priority::kCapture, "c", 3);
  auto acked = outbox->Ack({m, "elsewhere/1", a});
  ASSERT_TRUE(acked) << acked.error().ToString();
  EXPECT_EQ(*acked, 2u);
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{c}));
  auto again = outbox->Ack({m, a});
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 0u);
  OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.acked, 2u);
  EXPECT_EQ(st.records, 1u);
  EXPECT_EQ(st.bytes, Size(c, "c"));
  EXPECT_EQ(st.held_by_priority, (std::array<std::uint64_t, 3>{1, 0, 0}));
}

TEST(Outbox, PutStoresEachIdOnce) {
  TempDir tmp;
  auto outbox = MustOpen(tmp / "outbox.db");
  ASSERT_NE(outbox, nullptr);
  auto first = outbox->Put({Remote("dev-1/1", Priority::kMetrics, 1, "x"),
                            Remote("dev-1/2", Priority::kMetrics, 2, "y"),
                            Remote("dev-1/1", Priority::kMetrics, 1, "x")});
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(*first, 2u);
  auto second = outbox->Put(
      {Remote("dev-1/1", Priority::kMetrics, 1, "x"), Remote("dev-1/3", Priority::kAlert, 3, "z")});
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, 1u);
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{"dev-1/3", "dev-1/1", "dev-1/2"}));
  OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.accepted, 3u);
  EXPECT_EQ(st.duplicates, 2u);
  EXPECT_EQ(st.records, 3u);
  // Only held ids are known: once acknowledged, the same id is stored again (the receiver at the
  // end drops it).
  ASSERT_TRUE(outbox->Ack({"dev-1/1"}));
  auto third = outbox->Put({Remote("dev-1/1", Priority::kMetrics, 1, "x")});
  ASSERT_TRUE(third);
  EXPECT_EQ(*third, 1u);
}

TEST(Outbox, PayloadBytesComeBackUnchanged) {
  TempDir tmp;
  auto outbox = MustOpen(tmp / "outbox.db");
  ASSERT_NE(outbox, nullptr);
  std::string bytes;
  for (int i = 0; i < 256; ++i) {
    bytes.push_back(static_cast<char>(i));
  }
  bytes += std::string("\0\0\xff\xfe", 4);
  auto r = outbox->Append(Priority::kCapture, "capture", bytes, 7);
  ASSERT_TRUE(r && *r);
  ASSERT_TRUE(outbox->Put({Remote("g/bin", Priority::kCapture, 8, bytes)}));
  auto all = All(*outbox);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], **r);
  EXPECT_EQ(all[1].payload, bytes);
  EXPECT_EQ(outbox->Stats().bytes, Size((*r)->id, bytes) + Size("g/bin", bytes));
}

TEST(Outbox, RefusesBadInputAndKeepsWhatItHolds) {
  TempDir tmp;
  EXPECT_EQ(Outbox::Open(tmp / "a.db", "d/", {.max_bytes = 0, .max_records = 10}).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Outbox::Open(tmp / "a.db", "d/", {.max_bytes = 10, .max_records = 0}).error().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_FALSE(Outbox::Open(tmp / "no" / "such" / "dir" / "a.db", "d/"));

  auto outbox = MustOpen(tmp / "outbox.db");
  ASSERT_NE(outbox, nullptr);
  std::string kept = Add(*outbox, Priority::kMetrics, "kept", 1);
  OutboxStats before = outbox->Stats();
  auto bad_priority = outbox->Append(static_cast<Priority>(3), "x", "x", 2);
  ASSERT_FALSE(bad_priority);
  EXPECT_EQ(bad_priority.error().code(), ErrorCode::kInvalidArgument);
  // One bad record spoils the batch: nothing of it is stored.
  auto no_id = outbox->Put(
      {Remote("g/1", Priority::kMetrics, 1, "x"), Remote("", Priority::kMetrics, 1, "x")});
  ASSERT_FALSE(no_id);
  EXPECT_EQ(no_id.error().code(), ErrorCode::kInvalidArgument);
  auto negative = outbox->Put({Remote("g/2", static_cast<Priority>(-1), 1, "x")});
  ASSERT_FALSE(negative);
  EXPECT_EQ(outbox->Stats(), before);
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{kept}));
  EXPECT_FALSE(Add(*outbox, Priority::kAlert, "next", 3).empty());
}

TEST(Outbox, CountersSurviveReopen) {
  TempDir tmp;
  OutboxStats before;
  {
    auto outbox = MustOpen(tmp / "outbox.db", "d/", {.max_bytes = 1 << 20, .max_records = 3});
    ASSERT_NE(outbox, nullptr);
    std::string a = Add(*outbox, Priority::kAlert, "a", 1);
    Add(*outbox, Priority::kCapture, "c", 2);
    Add(*outbox, Priority::kMetrics, "m", 3);
    Add(*outbox, Priority::kMetrics, "m2", 4);  // evicts the capture
    ASSERT_TRUE(outbox->Put({Remote("g/1", Priority::kCapture, 5, "refused"),
                             Remote("g/2", Priority::kAlert, 6, "evicts m")}));
    ASSERT_TRUE(outbox->Put({Remote("g/2", Priority::kAlert, 6, "duplicate")}));
    ASSERT_TRUE(outbox->Ack({a}));
    before = outbox->Stats();
  }
  EXPECT_EQ(before.records, 2u);
  EXPECT_EQ(before.held_by_priority, (std::array<std::uint64_t, 3>{0, 1, 1}));
  EXPECT_EQ(before.dropped, (std::array<std::uint64_t, 3>{2, 1, 0}));
  EXPECT_EQ(before.dropped_bytes, Size("d/2", "c") + Size("g/1", "refused") + Size("d/3", "m"));
  EXPECT_EQ(before.accepted, 5u);
  EXPECT_EQ(before.duplicates, 1u);
  EXPECT_EQ(before.acked, 1u);
  EXPECT_EQ(before.disk_full, 0u);
  auto reopened = MustOpen(tmp / "outbox.db");
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Stats(), before);
  EXPECT_EQ(Ids(All(*reopened)), (std::vector<std::string>{"g/2", "d/4"}));
}

// ---- The bounds ----

TEST(OutboxBound, RecordLimitEvictsLowerPrioritiesThenOlderOfTheSame) {
  TempDir tmp;
  auto outbox = MustOpen(tmp / "outbox.db", "d/", {.max_bytes = 1 << 20, .max_records = 4});
  ASSERT_NE(outbox, nullptr);
  std::string c1 = Add(*outbox, Priority::kCapture, "c1", 1);
  std::string c2 = Add(*outbox, Priority::kCapture, "c2", 2);
  std::string m1 = Add(*outbox, Priority::kMetrics, "m1", 3);
  std::string a1 = Add(*outbox, Priority::kAlert, "a1", 4);
  std::string m2 = Add(*outbox, Priority::kMetrics, "m2", 5);  // full: the oldest capture goes
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a1, m1, m2, c2}));
  std::string a2 = Add(*outbox, Priority::kAlert, "a2", 6);  // the other capture goes
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a1, a2, m1, m2}));

  // Only higher priorities held: a capture is refused and nothing changes.
  OutboxStats before = outbox->Stats();
  EXPECT_EQ(Add(*outbox, Priority::kCapture, "c3", 7), "");
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a1, a2, m1, m2}));
  OutboxStats after = outbox->Stats();
  EXPECT_EQ(after.dropped[kCapture], before.dropped[kCapture] + 1);
  EXPECT_EQ(after.records, before.records);
  EXPECT_EQ(after.bytes, before.bytes);

  // A metric evicts the oldest metric held.
  std::string m3 = Add(*outbox, Priority::kMetrics, "m3", 8);
  ASSERT_FALSE(m3.empty());
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a1, a2, m2, m3}));
  // A metric older than every metric held may evict none of them: refused.
  auto old = outbox->Put({Remote("g/old", Priority::kMetrics, 0, "old")});
  ASSERT_TRUE(old);
  EXPECT_EQ(*old, 0u);
  // An alert from below evicts the oldest metric, whatever its own age.
  auto alert = outbox->Put({Remote("g/a", Priority::kAlert, 1, "ga")});
  ASSERT_TRUE(alert);
  EXPECT_EQ(*alert, 1u);
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{"g/a", a1, a2, m3}));

  OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.dropped, (std::array<std::uint64_t, 3>{3, 3, 0}));  // c1 c2 c3, m1 g/old m2
  EXPECT_EQ(st.dropped_bytes, Size(c1, "c1") + Size(c2, "c2") + Size("d/7", "c3") + Size(m1, "m1") +
                                  Size("g/old", "old") + Size(m2, "m2"));
  EXPECT_EQ(st.accepted, 8u);
  EXPECT_EQ(st.records, 4u);
  EXPECT_EQ(st.held_by_priority, (std::array<std::uint64_t, 3>{0, 1, 3}));
}

TEST(OutboxBound, ByteLimitEvictsOnlyWhatItMustAndRefusesWhatCannotFit) {
  TempDir tmp;
  // A record's size is its payload and its id ("d/1": 3 bytes).
  auto outbox = MustOpen(tmp / "outbox.db", "d/", {.max_bytes = 100, .max_records = 1000});
  ASSERT_NE(outbox, nullptr);
  std::string c1 = Add(*outbox, Priority::kCapture, std::string(40, 'c'), 1);  // 43
  std::string c2 = Add(*outbox, Priority::kCapture, std::string(40, 'c'), 2);  // 86
  std::string a3 = Add(*outbox, Priority::kAlert, std::string(40, 'a'), 3);    // 129: c1 goes
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a3, c2}));
  EXPECT_EQ(outbox->Stats().bytes, 86u);
  // 93 bytes: needs 79 freed, so the capture and then the older alert go.
  std::string a4 = Add(*outbox, Priority::kAlert, std::string(90, 'A'), 4);
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a4}));
  EXPECT_EQ(outbox->Stats().bytes, 93u);
  EXPECT_EQ(outbox->Stats().dropped, (std::array<std::uint64_t, 3>{2, 0, 1}));

  // A metric that would need the alert's room is refused, and the alert stays.
  EXPECT_EQ(Add(*outbox, Priority::kMetrics, std::string(50, 'm'), 5), "");
  // Records larger than the whole outbox are refused, whatever their priority: the payload
  // alone, or with its id.
  EXPECT_EQ(Add(*outbox, Priority::kAlert, std::string(101, 'x'), 6), "");
  EXPECT_EQ(Add(*outbox, Priority::kAlert, std::string(98, 'x'), 7), "");
  auto huge = outbox->Put({Remote("g/huge", Priority::kAlert, 8, std::string(1000, 'x'))});
  ASSERT_TRUE(huge);
  EXPECT_EQ(*huge, 0u);
  auto held = All(*outbox);
  ASSERT_EQ(Ids(held), (std::vector<std::string>{a4}));
  EXPECT_EQ(held[0].payload, std::string(90, 'A'));
  OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.dropped, (std::array<std::uint64_t, 3>{2, 1, 4}));
  EXPECT_EQ(st.dropped_bytes, 43u + 43u + 43u + 53u + 104u + 101u + 1006u);
  EXPECT_EQ(st.bytes, 93u);

  // The next record that fits is stored.
  std::string small = Add(*outbox, Priority::kAlert, "ok", 9);  // 93 + 5 = 98
  EXPECT_EQ(Ids(All(*outbox)), (std::vector<std::string>{a4, small}));
}

// ---- A process killed at random moments ----

// The child: opens the outbox and appends forever, writing each id it got back to out (one line,
// a single write below PIPE_BUF, so whole or not at all) before it appends the next one.
[[noreturn]] void AppendForever(const fs::path& path, int out, unsigned seed) {
  auto outbox = Outbox::Open(path, "dev-7/");
  if (!outbox) {
    ::_exit(2);
  }
  std::mt19937 rng(seed);
  for (std::int64_t i = 0;; ++i) {
    auto p = static_cast<Priority>(i % 3);
    std::string payload(std::uniform_int_distribution<std::size_t>(16, 4000)(rng),
                        static_cast<char>('a' + i % 26));
    auto r = (*outbox)->Append(p, PriorityName(p), std::move(payload), i);
    if (!r || !*r) {
      ::_exit(3);  // nothing may fail or be dropped here: the parent sees the pipe close early
    }
    std::string line = (*r)->id + "\n";
    if (::write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      ::_exit(4);
    }
  }
}

// Reads whole lines from fd into lines until it has want of them (0: until end of file) or
// nothing comes for 60 s. False when the pipe closed first (want > 0) or on the timeout.
bool ReadLines(int fd, std::string& buffer, std::vector<std::string>& lines, std::size_t want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (want == 0 || lines.size() < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      return false;
    }
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return want == 0;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
      lines.push_back(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
    }
  }
  return true;
}

TEST(OutboxCrash, EveryAppendThatReturnedSurvivesSigkill) {
  TempDir tmp;
  fs::path path = tmp / "outbox.db";
  unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::set<std::string> earlier;  // every id reported or found in an earlier cycle
  std::uint64_t reported_total = 0;
  for (int cycle = 0; cycle < 20; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      AppendForever(path, fds[1], seed + static_cast<unsigned>(cycle));
    }
    ::close(fds[1]);
    // Kill once the child has reported a random number of records, a random moment later (the
    // delay only picks the moment; nothing waits for it). It is then somewhere inside an Append.
    std::string buffer;
    std::vector<std::string> reported;
    bool alive = ReadLines(fds[0], buffer, reported,
                           std::uniform_int_distribution<std::size_t>(1, 120)(rng));
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(alive) << "the child stopped by itself, status " << status;
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    // Whatever it wrote before it died is in the pipe.
    ASSERT_TRUE(ReadLines(fds[0], buffer, reported, 0));
    ::close(fds[0]);
    reported_total += reported.size();

    ASSERT_EQ(IntegrityCheck(path), "ok");
    auto outbox = MustOpen(path, "dev-7/");
    ASSERT_NE(outbox, nullptr);
    std::vector<OutboxRecord> held = All(*outbox);
    std::map<std::string, int> copies;
    for (const auto& r : held) {
      copies[r.id] += 1;
    }
    for (const auto& [id, n] : copies) {
      EXPECT_EQ(n, 1) << id;
    }
    for (const std::string& id : reported) {
      EXPECT_EQ(copies.count(id), 1u) << id << " was appended but is gone";
      EXPECT_EQ(earlier.count(id), 0u) << id << " was used before";
    }
    for (const auto& r : held) {
      if (!earlier.count(r.id)) {
        // New this cycle: reported, or committed just before the kill.
        EXPECT_TRUE(r.payload.size() >= 16 && r.payload.size() <= 4000) << r.id;
      }
    }
    // Nothing is dropped, so every record ever stored is held or acknowledged.
    OutboxStats st = outbox->Stats();
    EXPECT_EQ(st.records, held.size());
    EXPECT_EQ(st.accepted, st.records + st.acked);
    EXPECT_EQ(st.dropped, (std::array<std::uint64_t, 3>{}));
    // Acknowledge about half, so that reusing a removed record's id would show next time.
    std::vector<std::string> ack;
    for (const auto& r : held) {
      earlier.insert(r.id);
      if (rng() % 2 == 0) {
        ack.push_back(r.id);
      }
    }
    for (const std::string& id : reported) {
      earlier.insert(id);
    }
    auto acked = outbox->Ack(ack);
    ASSERT_TRUE(acked) << acked.error().ToString();
    EXPECT_EQ(*acked, ack.size());
  }
  EXPECT_GE(reported_total, 20u);
}

// ---- A full disk ----

TEST(OutboxFullDisk, DropsAndCountsNewRecordsAndKeepsWhatItHolds) {
  TempDir tmp;
  fs::path disk = tmp / "disk";
  SmallDisk small(disk, "2m");
  if (!small.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  fs::path path = disk / "outbox.db";
  std::map<std::string, OutboxRecord> expected;  // what must still be there, by id
  std::array<std::uint64_t, 3> stored_of{};      // held before and stored while full, by priority
  OutboxStats after;
  {
    auto outbox = MustOpen(path, "cam-1/");
    ASSERT_NE(outbox, nullptr);
    for (int i = 0; i < 30; ++i) {
      auto p = static_cast<Priority>(i % 3);
      auto r =
          outbox->Append(p, PriorityName(p), std::string(2000, static_cast<char>('a' + i % 26)), i);
      ASSERT_TRUE(r && *r);
      expected[(*r)->id] = **r;
      stored_of[i % 3] += 1;
    }
    ASSERT_TRUE(FillDisk(disk / "filler"));

    std::array<std::uint64_t, 3> refused{};
    for (int i = 0; i < 40; ++i) {
      auto p = i % 2 == 0 ? Priority::kMetrics : Priority::kAlert;
      auto r = outbox->Append(p, PriorityName(p),
                              std::string(3000, static_cast<char>('A' + i % 26)), 100 + i);
      ASSERT_TRUE(r) << "a full disk is not the caller's error: " << r.error().ToString();
      if (*r) {
        expected[(*r)->id] = **r;
        stored_of[static_cast<int>(p)] += 1;
      } else {
        refused[static_cast<int>(p)] += 1;
      }
    }
    OutboxStats st = outbox->Stats();
    EXPECT_GE(st.disk_full, 1u);
    EXPECT_GT(refused[kMetrics] + refused[kAlert], 0u);

    // Every record not dropped is there, whole. Nothing outranks an alert and the bounds are far
    // away, so no alert was evicted; a capture or a metric may have been, to relieve the disk for
    // an alert, and then it is counted.
    std::vector<OutboxRecord> held = All(*outbox);
    std::array<std::uint64_t, 3> held_of{};
    for (const auto& r : held) {
      ASSERT_EQ(expected.count(r.id), 1u) << r.id;
      EXPECT_EQ(r, expected[r.id]);
      held_of[static_cast<int>(r.priority)] += 1;
    }
    EXPECT_EQ(held_of[kAlert], stored_of[kAlert]);
    for (int p : {kCapture, kMetrics, kAlert}) {
      EXPECT_EQ(st.dropped[p], stored_of[p] - held_of[p] + refused[p])
          << PriorityName(static_cast<Priority>(p));
    }
    EXPECT_EQ(st.records, held.size());
    EXPECT_EQ(st.held_by_priority, held_of);

    // With room again, appending works, and the counts made while full are written with it.
    fs::remove(disk / "filler");
    std::string id = Add(*outbox, Priority::kMetrics, "room again", 200);
    EXPECT_FALSE(id.empty());
    EXPECT_EQ(All(*outbox).size(), held.size() + 1);
    after = outbox->Stats();
    EXPECT_EQ(after.disk_full, st.disk_full);
    EXPECT_EQ(after.dropped, st.dropped);
  }
  EXPECT_EQ(IntegrityCheck(path), "ok");
  auto reopened = MustOpen(path, "cam-1/");
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Stats(), after);
}

// Where the write-ahead log has room that a checkpoint can free for reuse (records acknowledged
// since the last checkpoint: the log holds only changes to pages the database file has), an alert
// still goes in on a full disk, in place of captures.
TEST(OutboxFullDisk, AnAlertEvictsCapturesWhenTheLogCanBeReused) {
  TempDir tmp;
  fs::path disk = tmp / "disk";
  SmallDisk small(disk, "2m");
  if (!small.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  fs::path path = disk / "outbox.db";
  std::vector<std::string> captures;
  {
    auto outbox = MustOpen(path, "cam-1/");
    ASSERT_NE(outbox, nullptr);
    for (int i = 0; i < 60; ++i) {
      captures.push_back(Add(*outbox, Priority::kCapture, std::string(2000, 'c'), i));
    }
  }  // the last connection closing copies the log into the database file
  auto outbox = MustOpen(path, "cam-1/");
  ASSERT_NE(outbox, nullptr);
  std::vector<std::string> acked(captures.begin(), captures.begin() + 30);
  ASSERT_TRUE(outbox->Ack(acked));
  ASSERT_TRUE(FillDisk(disk / "filler"));

  OutboxStats before = outbox->Stats();
  auto alert = outbox->Append(Priority::kAlert, "alert", std::string(3000, 'a'), 100);
  ASSERT_TRUE(alert) << alert.error().ToString();
  ASSERT_TRUE(alert->has_value()) << "dropped: the retry found no room";
  OutboxStats st = outbox->Stats();
  EXPECT_EQ(st.disk_full, before.disk_full + 1);
  EXPECT_EQ(st.dropped[kAlert], 0u);
  EXPECT_GE(st.dropped[kCapture], 1u);  // evicted to relieve the disk, oldest first
  std::vector<OutboxRecord> held = All(*outbox);
  ASSERT_EQ(held.size(), 1 + 30 - st.dropped[kCapture]);
  EXPECT_EQ(held.front(), **alert);
  EXPECT_EQ(held[1].id, captures[30 + st.dropped[kCapture]]);
  EXPECT_EQ(held.back().id, captures.back());
  outbox.reset();
  fs::remove(disk / "filler");
  EXPECT_EQ(IntegrityCheck(path), "ok");
}

}  // namespace
}  // namespace airlock::monitor
