// BlobStore: blobs appear only whole and verified, chunks come in order, mismatches leave
// nothing, and what a killed process left of its uploads is swept on the next Open.

#include "store/blob_store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
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

}  // namespace
}  // namespace airlock::store
