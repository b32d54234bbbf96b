// BlobStore: blobs appear only whole and verified, chunks come in order, mismatches leave
// nothing, and what a killed process left of its uploads is swept on the next Open. Several
// stores on one root (Sharing::kShared) keep each other's sessions, serialise appends to one
// session and the publish/remove of one digest across processes, and exclude a kExclusive one.

#include "store/blob_store.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace airlock::store {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;

ChunkSource Bytes(std::vector<std::string> pieces) {
  return [pieces](const std::function<Status(std::string_view)>& sink) -> Status {
    for (const auto& p : pieces) {
      AIRLOCK_RETURN_IF_ERROR(sink(p));
    }
    return {};
  };
}

std::string ReadBlob(BlobStore& store, const Digest& d) {
  auto file = store.OpenBlob(d);
  EXPECT_TRUE(file) << file.error().ToString();
  std::string out(file->size, '\0');
  EXPECT_EQ(pread(file->fd->get(), out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return out;
}

// Every regular file under dir, relative.
std::vector<std::string> FilesUnder(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      out.push_back(fs::relative(e.path(), dir).string());
    }
  }
  return out;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = BlobStore::Open(dir_.path());
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  TempDir dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, AnAppenderWritesPieceByPieceAndHoldsTheSessionUntilItIsClosed) {
  auto id = store_->StartUpload("models/big");
  ASSERT_TRUE(id);
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"head "})));
  EXPECT_EQ(store_->OpenAppender(*id, 4).error().code(), ErrorCode::kMismatch);
  // A blob big enough for the write-behind to start (every 8 MiB).
  std::string piece(1 << 20, 'x');
  std::string all = "head ";
  {
    auto appender = store_->OpenAppender(*id, 5, 5 + 10 * piece.size());
    ASSERT_TRUE(appender) << appender.error().ToString();
    for (int i = 0; i < 10; ++i) {
      piece[0] = static_cast<char>('a' + i);
      ASSERT_TRUE((*appender)->Write(piece));
      all += piece;
    }
    EXPECT_EQ((*appender)->size(), all.size());
    // Past the limit: refused, nothing written.
    EXPECT_EQ((*appender)->Write("z").error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(*store_->UploadSize(*id), all.size());
    // The session is this appender's until it is closed.
    EXPECT_EQ(store_->AppendUpload(*id, std::nullopt, Bytes({"no"})).error().code(),
              ErrorCode::kUnavailable);
    EXPECT_EQ(store_->FinishUpload(*id, Sha256Of(all)).error().code(), ErrorCode::kUnavailable);
  }
  auto done = store_->FinishUpload(*id, Sha256Of(all), all.size());
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_EQ(ReadBlob(*store_, Sha256Of(all)), all);
}

TEST_F(BlobStoreTest, ChunkedUploadBecomesABlobUnderItsDigest) {
  auto id = store_->StartUpload("models/affine");
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_TRUE(IsUploadId(*id));
  EXPECT_EQ(*store_->UploadRepository(*id), "models/affine");
  auto size = store_->AppendUpload(*id, 0, Bytes({"hello ", "wor"}));
  ASSERT_TRUE(size) << size.error().ToString();
  EXPECT_EQ(*size, 9u);
  size = store_->AppendUpload(*id, 9, Bytes({"ld"}));
  ASSERT_TRUE(size);
  EXPECT_EQ(*store_->UploadSize(*id), 11u);

  Digest d = Sha256Of("hello world");
  EXPECT_EQ(store_->Size(d).error().code(), ErrorCode::kNotFound);  // not before it is finished
  auto done = store_->FinishUpload(*id, d, 11);
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_EQ(done->digest, d);
  EXPECT_EQ(*store_->Size(d), 11u);
  EXPECT_EQ(ReadBlob(*store_, d), "hello world");
  EXPECT_EQ(store_->BlobPath(d), dir_.path() / "blobs/sha256" / d.hex().substr(0, 2) / d.hex());
  EXPECT_EQ(store_->UploadSize(*id).error().code(), ErrorCode::kNotFound);  // the session is gone
}

TEST_F(BlobStoreTest, AChunkOutOfOrderIsRefusedAndWritesNothing) {
  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"abc"})));
  for (std::uint64_t offset : {0u, 2u, 4u}) {
    auto r = store_->AppendUpload(*id, offset, Bytes({"zzz"}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kMismatch);
    EXPECT_NE(r.error().message().find("has 3 bytes"), std::string::npos) << r.error().message();
  }
  EXPECT_EQ(*store_->UploadSize(*id), 3u);
  // Without an offset, bytes go at the end; the next good chunk still works.
  ASSERT_TRUE(store_->AppendUpload(*id, std::nullopt, Bytes({"d"})));
  ASSERT_TRUE(store_->AppendUpload(*id, 4, Bytes({"e"})));
  ASSERT_TRUE(store_->FinishUpload(*id, Sha256Of("abcde")));
  EXPECT_EQ(ReadBlob(*store_, Sha256Of("abcde")), "abcde");
}

TEST_F(BlobStoreTest, ADigestOrSizeMismatchLeavesNothingVisible) {
  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"real bytes"})));
  Digest claimed = Sha256Of("other bytes");
  auto r = store_->FinishUpload(*id, claimed);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.error().message().find(Sha256Of("real bytes").ToString()), std::string::npos);
  EXPECT_NE(r.error().message().find(claimed.ToString()), std::string::npos);
  EXPECT_FALSE(store_->Size(claimed));
  EXPECT_FALSE(store_->Size(Sha256Of("real bytes")));
  EXPECT_EQ(store_->UploadSize(*id).error().code(), ErrorCode::kNotFound);

  auto id2 = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id2, 0, Bytes({"12345"})));
  auto sized = store_->FinishUpload(*id2, Sha256Of("12345"), 6);
  ASSERT_FALSE(sized);
  EXPECT_EQ(sized.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(sized.error().message().find("5 bytes, not the 6"), std::string::npos);
  EXPECT_FALSE(store_->Size(Sha256Of("12345")));
  EXPECT_EQ(FilesUnder(dir_.path() / "blobs"), std::vector<std::string>{});
  EXPECT_EQ(FilesUnder(dir_.path() / "uploads"), std::vector<std::string>{});
}

TEST_F(BlobStoreTest, AnUploadCannotGrowPastTheLimit) {
  auto id = store_->StartUpload("r");
  auto r = store_->AppendUpload(*id, 0, Bytes({"1234", "5678"}), 6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_LE(*store_->UploadSize(*id), 6u);
}

TEST_F(BlobStoreTest, CancelAndRemove) {
  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"x"})));
  ASSERT_TRUE(store_->CancelUpload(*id));
  EXPECT_EQ(store_->CancelUpload(*id).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(FilesUnder(dir_.path() / "uploads"), std::vector<std::string>{});

  auto id2 = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id2, 0, Bytes({"y"})));
  ASSERT_TRUE(store_->FinishUpload(*id2, Sha256Of("y")));
  auto open = store_->OpenBlob(Sha256Of("y"));
  ASSERT_TRUE(open);
  ASSERT_TRUE(store_->Remove(Sha256Of("y")));
  EXPECT_EQ(store_->Remove(Sha256Of("y")).error().code(), ErrorCode::kNotFound);
  char c = 0;
  EXPECT_EQ(pread(open->fd->get(), &c, 1, 0), 1);  // a reader that had it open keeps reading
  EXPECT_EQ(c, 'y');
}

TEST_F(BlobStoreTest, IdsThatAreNotSessionsNameNothing) {
  for (const char* id : {"", "..", "../blobs", "00000000-0000-4000-8000-000000000000",
                         "00000000-0000-4000-8000-00000000000/"}) {
    EXPECT_EQ(store_->UploadSize(id).error().code(), ErrorCode::kNotFound) << id;
    EXPECT_EQ(store_->CancelUpload(id).error().code(), ErrorCode::kNotFound) << id;
  }
  EXPECT_TRUE(fs::is_directory(dir_.path() / "blobs"));
}

TEST_F(BlobStoreTest, ConcurrentUploadsOfTheSameBlobBothSucceed) {
  std::string data(3 << 20, 'q');
  Digest d = Sha256Of(data);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto id = store_->StartUpload("r");
      if (id &&
          store_->AppendUpload(*id, 0, Bytes({data.substr(0, 1 << 20), data.substr(1 << 20)})) &&
          store_->FinishUpload(*id, d)) {
        ok[i] = 1;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok, std::vector<int>(4, 1));
  EXPECT_EQ(ReadBlob(*store_, d), data);
}

TEST_F(BlobStoreTest, OnlyOneProcessUsesADirectoryAndOpenSweepsOldUploads) {
  auto second = BlobStore::Open(dir_.path());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);

  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"partial"})));
  auto kept = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*kept, 0, Bytes({"kept"})));
  ASSERT_TRUE(store_->FinishUpload(*kept, Sha256Of("kept")));
  store_.reset();  // as if the process died: the session is still on disk
  EXPECT_FALSE(FilesUnder(dir_.path() / "uploads").empty());

  auto reopened = BlobStore::Open(dir_.path());
  ASSERT_TRUE(reopened) << reopened.error().ToString();
  EXPECT_EQ((*reopened)->UploadSize(*id).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(FilesUnder(dir_.path() / "uploads"), std::vector<std::string>{});
  EXPECT_EQ(ReadBlob(**reopened, Sha256Of("kept")), "kept");
}

// ---- several processes on one root ----

BlobStore::Options SharedOptions() {
  BlobStore::Options o;
  o.sharing = Sharing::kShared;
  o.wait_for_exclusive_holder = std::chrono::milliseconds(200);
  return o;
}

// flock belongs to an open file, not to a process, so two stores in one test process contend for
// store.lock, a session's file and a digest's lock file exactly as two hubs would.
TEST(SharedBlobStore, TheFirstSweepsADeadProcessesSessionsTheNextKeepsTheLiveOnes) {
  TempDir dir;
  airlock::testing::WriteAll(dir.path() / "uploads/00000000-0000-4000-8000-000000000000/data",
                             "left by a hub that died alone");
  auto a = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_FALSE((*a)->joined_others_at_open());
  EXPECT_EQ((*a)->swept_at_open(), 1u);
  EXPECT_EQ(FilesUnder(dir.path() / "uploads"), std::vector<std::string>{});

  auto id = (*a)->StartUpload("r");
  ASSERT_TRUE((*a)->AppendUpload(*id, 0, Bytes({"started on a, "})));
  auto b = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_TRUE((*b)->joined_others_at_open());
  EXPECT_EQ((*b)->swept_at_open(), 0u);
  // b continues a's session, and a finishes it: a's running hash covers only its own bytes, so
  // it must hash the file, and the blob is every byte in order.
  EXPECT_EQ(*(*b)->UploadRepository(*id), "r");
  ASSERT_EQ(*(*b)->AppendUpload(*id, 14, Bytes({"continued on b"})), 28u);
  auto stale = (*a)->FinishUpload(*id, Sha256Of("started on a, "));
  ASSERT_FALSE(stale);  // a digest of a's bytes alone is refused: the hash was not trusted
  EXPECT_EQ(stale.error().code(), ErrorCode::kCorrupt);

  auto id2 = (*a)->StartUpload("r");
  ASSERT_TRUE((*a)->AppendUpload(*id2, 0, Bytes({"started on a, "})));
  ASSERT_TRUE((*b)->AppendUpload(*id2, 14, Bytes({"continued on b, "})));
  ASSERT_TRUE((*a)->AppendUpload(*id2, 30, Bytes({"ended on a"})));
  const std::string whole = "started on a, continued on b, ended on a";
  auto done = (*a)->FinishUpload(*id2, Sha256Of(whole), whole.size());
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_EQ(ReadBlob(**b, Sha256Of(whole)), whole);
  EXPECT_EQ((*b)->UploadSize(*id2).error().code(), ErrorCode::kNotFound);

  // While b lives, a reopened store is not alone and leaves b's session in place.
  auto kept = (*b)->StartUpload("r");
  ASSERT_TRUE((*b)->AppendUpload(*kept, 0, Bytes({"b's"})));
  a->reset();
  auto again = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(again);
  EXPECT_TRUE((*again)->joined_others_at_open());
  EXPECT_EQ(*(*again)->UploadSize(*kept), 3u);
  // Once every store is gone, the next one is alone and sweeps.
  b->reset();
  again->reset();
  auto alone = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(alone);
  EXPECT_EQ((*alone)->swept_at_open(), 1u);
  EXPECT_EQ((*alone)->UploadSize(*kept).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ReadBlob(**alone, Sha256Of(whole)), whole);
}

TEST(SharedBlobStore, AnExclusiveStoreAndSharedOnesExcludeEachOther) {
  TempDir dir;
  {
    auto exclusive = BlobStore::Open(dir.path());
    ASSERT_TRUE(exclusive);
    auto id = (*exclusive)->StartUpload("r");
    auto shared = BlobStore::Open(dir.path(), SharedOptions());
    ASSERT_FALSE(shared);
    EXPECT_EQ(shared.error().code(), ErrorCode::kUnavailable);
    EXPECT_NE(shared.error().message().find("exclusively (an airlock-hub with SQLite metadata?)"),
              std::string::npos)
        << shared.error().message();
    EXPECT_TRUE((*exclusive)->UploadSize(*id));  // the refused store touched nothing
  }
  auto shared = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(shared);
  auto id = (*shared)->StartUpload("r");
  auto exclusive = BlobStore::Open(dir.path());
  ASSERT_FALSE(exclusive);
  EXPECT_EQ(exclusive.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(exclusive.error().message().find("same PostgreSQL database"), std::string::npos)
      << exclusive.error().message();
  EXPECT_EQ(*(*shared)->UploadSize(*id), 0u);
  EXPECT_TRUE(BlobStore::Open(dir.path(), SharedOptions()));  // another sharer still may
}

TEST(SharedBlobStore, AnAppendInAnotherProcessKeepsTheSessionBusyThere) {
  TempDir dir;
  auto store = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(store);
  auto id = (*store)->StartUpload("r");
  ASSERT_TRUE((*store)->AppendUpload(*id, 0, Bytes({"0123"})));
  int started[2], release[2];
  ASSERT_EQ(pipe(started), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Another hub: appends one piece, then waits (its request body still arriving).
    auto other = BlobStore::Open(dir.path(), SharedOptions());
    if (!other) {
      _exit(10);
    }
    auto appended = (*other)->AppendUpload(*id, 4, [&](const auto& sink) -> Status {
      AIRLOCK_RETURN_IF_ERROR(sink("4567"));
      char c = 'x';
      if (write(started[1], &c, 1) != 1 || read(release[0], &c, 1) != 1) {
        return Fail(ErrorCode::kIo, "pipe");
      }
      return sink("89");
    });
    _exit(appended && *appended == 10 ? 0 : 11);
  }
  char c;
  ASSERT_EQ(read(started[0], &c, 1), 1);
  auto busy = (*store)->AppendUpload(*id, std::nullopt, Bytes({"no"}));
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), ErrorCode::kUnavailable);
  auto finishing = (*store)->FinishUpload(*id, Sha256Of("0123456789"));
  ASSERT_FALSE(finishing);
  EXPECT_EQ(finishing.error().code(), ErrorCode::kUnavailable);
  ASSERT_EQ(write(release[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  for (int fd : {started[0], started[1], release[0], release[1]}) {
    close(fd);
  }
  // Nothing of the refused requests went in; the session finishes as the other process left it.
  ASSERT_TRUE((*store)->FinishUpload(*id, Sha256Of("0123456789"), 10));
  EXPECT_EQ(ReadBlob(**store, Sha256Of("0123456789")), "0123456789");
}

TEST(SharedBlobStore, ADigestsLockIsHeldAcrossStores) {
  TempDir dir;
  auto a = BlobStore::Open(dir.path(), SharedOptions());
  auto b = BlobStore::Open(dir.path(), SharedOptions());
  ASSERT_TRUE(a && b);
  Digest d = Sha256Of("contested");
  fs::path lock_file = dir.path() / "locks" / (d.hex().substr(0, 2) + ".lock");
  auto held = (*a)->LockDigest(d);
  ASSERT_TRUE(held) << held.error().ToString();
  // Any other open file of the lock, in any process, waits: b's does, and so does ours here.
  airlock::UniqueFd probe(open(lock_file.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_GE(probe.get(), 0);
  EXPECT_NE(flock(probe.get(), LOCK_EX | LOCK_NB), 0);
  std::atomic<bool> b_has_it = false;
  std::thread waiter([&] {
    auto lock = (*b)->LockDigest(d);
    b_has_it = lock.has_value();
  });
  held = Fail(ErrorCode::kInternal, "released");  // a lets go; b gets it
  waiter.join();
  EXPECT_TRUE(b_has_it);
  EXPECT_EQ(flock(probe.get(), LOCK_EX | LOCK_NB), 0);  // and let go of it too
}

TEST_F(BlobStoreTest, AStoreOpenedToKeepUploadsResumesThemAfterARestart) {
  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"first half, "})));
  store_.reset();  // the process dies mid-download

  auto reopened = BlobStore::Open(dir_.path(), {.uploads = UploadsOnOpen::kKeep});
  ASSERT_TRUE(reopened) << reopened.error().ToString();
  BlobStore& store = **reopened;
  ASSERT_EQ(*store.UploadSize(*id), 12u);
  EXPECT_EQ(store.AppendUpload(*id, 0, Bytes({"again"})).error().code(), ErrorCode::kMismatch);
  ASSERT_TRUE(store.AppendUpload(*id, 12, Bytes({"second half"})));
  // The running hash died with the first process: finishing hashes the file itself.
  auto done = store.FinishUpload(*id, Sha256Of("first half, second half"), 23);
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_EQ(ReadBlob(store, Sha256Of("first half, second half")), "first half, second half");
}

// ---- garbage collection ----

class BlobCollectorTest : public BlobStoreTest {
 protected:
  void SetUp() override {
    BlobStoreTest::SetUp();
    auto c = BlobCollector::Open(dir_.path());
    ASSERT_TRUE(c) << c.error().ToString();
    collector_ = std::move(*c);
  }
  // Publishes bytes as the hub does (an upload renamed into blobs/).
  Digest Put(const std::string& bytes) {
    auto id = store_->StartUpload("r");
    EXPECT_TRUE(store_->AppendUpload(*id, 0, Bytes({bytes})));
    auto done = store_->FinishUpload(*id, Sha256Of(bytes));
    EXPECT_TRUE(done) << done.error().ToString();
    return Sha256Of(bytes);
  }
  static BlobCollector::IsLinked LinkedSet(std::set<Digest> linked) {
    return [linked](const Digest& d) -> Result<bool> { return linked.contains(d); };
  }
  // A cutoff after every file's change time: everything counts as old.
  static TimePoint Later() { return std::chrono::system_clock::now() + std::chrono::hours(1); }

  std::unique_ptr<BlobCollector> collector_;
};

TEST_F(BlobCollectorTest, RunsBesideTheHubButNotBesideAnotherCollector) {
  // The BlobStore (the serving hub) holds store.lock; the collector opened anyway.
  auto second = BlobCollector::Open(dir_.path());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.error().message().find("another airlock-hub gc"), std::string::npos);
  collector_.reset();
  EXPECT_TRUE(BlobCollector::Open(dir_.path()));
  TempDir empty;
  EXPECT_EQ(BlobCollector::Open(empty.path()).error().code(), ErrorCode::kNotFound);
}

TEST_F(BlobCollectorTest, ListsBlobsInDigestOrderAndLeavesOtherFilesAlone) {
  std::vector<Digest> put = {Put("one"), Put("two"), Put("three")};
  std::sort(put.begin(), put.end());
  fs::path top = dir_.path() / "blobs/sha256";
  std::string hex = Sha256Of("stray").hex();
  airlock::testing::WriteAll(top / "zz" / hex, "not a folder of blobs");
  airlock::testing::WriteAll(top / (hex.substr(0, 2) == "00" ? "01" : "00") / hex, "wrong folder");
  airlock::testing::WriteAll(top / hex.substr(0, 2) / "notes.txt", "not a digest");
  fs::create_directories(top / hex.substr(0, 2) / hex);  // a directory named like a blob
  auto listed = collector_->List();
  ASSERT_TRUE(listed) << listed.error().ToString();
  ASSERT_EQ(listed->size(), 3u);
  for (std::size_t i = 0; i < put.size(); ++i) {
    EXPECT_EQ((*listed)[i].digest, put[i]);
    EXPECT_LE((*listed)[i].changed, std::chrono::system_clock::now());
  }
  EXPECT_EQ((*listed)[0].size, *store_->Size(put[0]));
}

TEST_F(BlobCollectorTest, RemovesOnlyUnlinkedBlobsThatChangedBeforeTheCutoff) {
  Digest linked = Put("linked"), garbage = Put("garbage");
  auto is_linked = LinkedSet({linked});
  // Just published (ctime now): young for a cutoff in the past, whatever the links say.
  TimePoint an_hour_ago = std::chrono::system_clock::now() - std::chrono::hours(1);
  EXPECT_EQ(*collector_->RemoveIfUnlinked(garbage, an_hour_ago, is_linked), Collected::kYoung);
  EXPECT_EQ(ReadBlob(*store_, garbage), "garbage");

  EXPECT_EQ(*collector_->RemoveIfUnlinked(linked, Later(), is_linked), Collected::kLinked);
  EXPECT_EQ(*collector_->RemoveIfUnlinked(garbage, Later(), is_linked), Collected::kRemoved);
  EXPECT_EQ(store_->Size(garbage).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(*collector_->RemoveIfUnlinked(garbage, Later(), is_linked), Collected::kGone);
  EXPECT_EQ(ReadBlob(*store_, linked), "linked");
  EXPECT_TRUE(fs::is_empty(dir_.path() / "gc"));
  // The hub can publish the collected blob again.
  Put("garbage");
  EXPECT_EQ(ReadBlob(*store_, garbage), "garbage");
}

TEST_F(BlobCollectorTest, ABlobPublishedOrLinkedDuringRemovalIsKept) {
  Digest d = Put("contested");
  // The hub publishes the same blob again between the collector's first look and its move: the
  // file moved aside is not the one it looked at, so it goes back.
  int calls = 0;
  auto publish_meanwhile = [&](const Digest&) -> Result<bool> {
    if (calls++ == 0) {
      Put("contested");
    }
    return false;
  };
  EXPECT_EQ(*collector_->RemoveIfUnlinked(d, Later(), publish_meanwhile), Collected::kYoung);
  EXPECT_EQ(ReadBlob(*store_, d), "contested");

  // The hub links it between the two questions: it goes back.
  calls = 0;
  auto linked_meanwhile = [&](const Digest&) -> Result<bool> { return calls++ > 0; };
  EXPECT_EQ(*collector_->RemoveIfUnlinked(d, Later(), linked_meanwhile), Collected::kLinked);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(ReadBlob(*store_, d), "contested");

  // The database fails on either question: the error, and the file stays.
  for (int failing_call : {0, 1}) {
    calls = 0;
    auto failing = [&](const Digest&) -> Result<bool> {
      if (calls++ == failing_call) {
        return Fail(ErrorCode::kIo, "database gone");
      }
      return false;
    };
    auto r = collector_->RemoveIfUnlinked(d, Later(), failing);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "database gone");
    EXPECT_EQ(ReadBlob(*store_, d), "contested");
  }
  EXPECT_TRUE(fs::is_empty(dir_.path() / "gc"));
}

TEST_F(BlobCollectorTest, RemovesIdleUploadSessionsButNotOnesInUse) {
  auto idle = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*idle, 0, Bytes({"abandoned"})));
  auto in_use = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*in_use, 0, Bytes({"arriving"})));
  fs::path half_made = dir_.path() / "uploads/11111111-1111-4111-8111-111111111111";
  fs::create_directories(half_made);  // a kill between mkdir and creating the data file
  airlock::testing::WriteAll(dir_.path() / "uploads/not-a-session", "left alone");

  // Everything changed a moment ago: nothing is idle for an hour.
  TimePoint an_hour_ago = std::chrono::system_clock::now() - std::chrono::hours(1);
  auto none = collector_->RemoveIdleUploads(an_hour_ago, false);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_EQ(none->sessions, 0u);

  // An append in progress (another hub's, holding the session's file lock) keeps its session.
  airlock::UniqueFd appending(
      open((dir_.path() / "uploads" / *in_use / "data").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_EQ(flock(appending.get(), LOCK_EX), 0);
  auto dry = collector_->RemoveIdleUploads(Later(), true);
  ASSERT_TRUE(dry) << dry.error().ToString();
  EXPECT_EQ(dry->sessions, 2u);
  EXPECT_EQ(dry->bytes, 9u);
  EXPECT_TRUE(store_->UploadSize(*idle));  // a dry run removes nothing

  auto removed = collector_->RemoveIdleUploads(Later(), false);
  ASSERT_TRUE(removed) << removed.error().ToString();
  EXPECT_EQ(removed->sessions, 2u);
  EXPECT_EQ(removed->bytes, 9u);
  EXPECT_FALSE(fs::exists(half_made));
  EXPECT_TRUE(fs::exists(dir_.path() / "uploads/not-a-session"));
  auto gone = store_->AppendUpload(*idle, 9, Bytes({"more"}));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), ErrorCode::kNotFound);
  // The one in use goes on once its append is over.
  appending = airlock::UniqueFd();
  ASSERT_TRUE(store_->AppendUpload(*in_use, 8, Bytes({" whole"})));
  ASSERT_TRUE(store_->FinishUpload(*in_use, Sha256Of("arriving whole")));
  EXPECT_EQ(ReadBlob(*store_, Sha256Of("arriving whole")), "arriving whole");
}

TEST_F(BlobCollectorTest, WhatAKilledCollectorMovedAsideIsSettled) {
  Digest linked = Sha256Of("linked"), garbage = Sha256Of("garbage!");
  airlock::testing::WriteAll(dir_.path() / "gc" / linked.hex(), "linked");
  airlock::testing::WriteAll(dir_.path() / "gc" / garbage.hex(), "garbage!");
  auto deleted = collector_->RecoverInterrupted(LinkedSet({linked}));
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(*deleted, 8u);
  EXPECT_EQ(ReadBlob(*store_, linked), "linked");
  EXPECT_EQ(store_->Size(garbage).error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(fs::is_empty(dir_.path() / "gc"));
}

}  // namespace
}  // namespace airlock::store
