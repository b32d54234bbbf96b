// BlobStore: blobs appear only whole and verified, chunks come in order, mismatches leave
// nothing, and what a killed process left of its uploads is swept on the next Open.

#include "store/blob_store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
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

TEST_F(BlobStoreTest, AStoreOpenedToKeepUploadsResumesThemAfterARestart) {
  auto id = store_->StartUpload("r");
  ASSERT_TRUE(store_->AppendUpload(*id, 0, Bytes({"first half, "})));
  store_.reset();  // the process dies mid-download

  auto reopened = BlobStore::Open(dir_.path(), UploadsOnOpen::kKeep);
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
