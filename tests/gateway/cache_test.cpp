// GatewayCache: downloads verified before they are cached, resumed after a restart, evicted by
// age unless pinned, and packages served only once complete.

#include "gateway/cache.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "gateway/gateway_fixture.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::ReadAll;

std::string ReadBlob(GatewayCache& cache, const std::string& repo, const Digest& d) {
  auto f = cache.OpenBlob(repo, d);
  if (!f) {
    return "<" + f.error().ToString() + ">";
  }
  std::string out(f->size, '\0');
  EXPECT_EQ(::pread(f->fd->get(), out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return out;
}

class GatewayCacheTest : public CacheFixture {};

TEST_F(GatewayCacheTest, ACommittedBlobIsVerifiedAndPublished) {
  std::string bytes = "the weights of a model";
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(*d->offset(), 0u);
  ASSERT_EQ(*d->Append(0, bytes.substr(0, 5)), 5u);
  ASSERT_EQ(*d->Append(5, bytes.substr(5)), bytes.size());
  ASSERT_TRUE(d->Commit());
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(bytes)));
  EXPECT_EQ(ReadAll(dir_.path() / "cache" / "blobs" / "sha256" /
                    Sha256Of(bytes).hex().substr(0, 2) / Sha256Of(bytes).hex()),
            bytes);
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "uploads"), std::vector<std::string>{});
  // Committed once: a second download of it is refused as pointless.
  EXPECT_EQ(cache_->BeginBlob(Sha256Of(bytes), bytes.size()).error().code(),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(cache_->Usage()->committed_bytes, bytes.size());
}

TEST_F(GatewayCacheTest, AWriterKeepsTheDownloadOpenAndRefusesBytesPastTheDeclaredSize) {
  std::string bytes = "0123456789";
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->Append(0, "012"));
  EXPECT_EQ(d->Writer(0).error().code(), ErrorCode::kMismatch);
  {
    auto writer = d->Writer(3);
    ASSERT_TRUE(writer) << writer.error().ToString();
    ASSERT_TRUE(writer->Write("3456"));
    EXPECT_EQ(writer->offset(), 7u);
    ASSERT_TRUE(writer->Write("789"));
    // Committing needs the writer closed.
    EXPECT_EQ(d->Commit().error().code(), ErrorCode::kUnavailable);
  }
  ASSERT_TRUE(d->Commit());
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(bytes)));

  // One byte too many through a writer: the whole download is discarded.
  std::string other = "abcdef";
  auto e = cache_->BeginBlob(Sha256Of(other), other.size());
  ASSERT_TRUE(e);
  auto writer = e->Writer(0);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->Write("abc"));
  Status over = writer->Write("defX");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::kCorrupt) << over.error().ToString();
  EXPECT_EQ(writer->Write("d").error().code(), ErrorCode::kInternal);
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "uploads"), std::vector<std::string>{});
}

TEST_F(GatewayCacheTest, WrongBytesAreRefusedAndNothingIsCached) {
  std::string good = "expected bytes";
  std::string bad = "tampered bytes";  // the same length
  ASSERT_EQ(good.size(), bad.size());
  auto d = cache_->BeginBlob(Sha256Of(good), good.size());
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->Append(0, bad));
  Status committed = d->Commit();
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(committed.error().ToString().find(Sha256Of(bad).ToString()), std::string::npos)
      << committed.error().ToString();
  EXPECT_FALSE(cache_->HasBlob(Sha256Of(good)));
  EXPECT_FALSE(cache_->HasBlob(Sha256Of(bad)));
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "blobs"), std::vector<std::string>{});
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "uploads"), std::vector<std::string>{});
  EXPECT_EQ(d->offset().error().code(), ErrorCode::kNotFound);  // the download is gone
  // The next good download of the same blob works from zero.
  ASSERT_TRUE(Put(good));
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(good)));
}

TEST_F(GatewayCacheTest, MoreBytesThanDeclaredAreRefusedAndTheDownloadDiscarded) {
  std::string bytes = "0123456789";
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->Append(0, "012345"));
  auto over = d->Append(6, "6789X");  // one byte too many
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(over.error().message().find("declared size of 10 bytes"), std::string::npos)
      << over.error().message();
  EXPECT_EQ(d->offset().error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "uploads"), std::vector<std::string>{});
  EXPECT_FALSE(cache_->HasBlob(Sha256Of(bytes)));
  // Also in one piece, and also for a blob whose declared size is smaller than its real one.
  auto again = cache_->BeginBlob(Sha256Of(bytes), 4);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->Append(0, bytes).error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(cache_->Usage()->download_bytes, 0u);
  // A good download afterwards works.
  ASSERT_TRUE(Put(bytes));
}

TEST_F(GatewayCacheTest, CommitBeforeTheLastByteIsRefusedAndTheBytesKept) {
  std::string bytes = "0123456789";
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d->Append(0, "0123"));
  Status early = d->Commit();
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(*d->offset(), 4u);
  ASSERT_TRUE(d->Append(4, "456789"));
  ASSERT_TRUE(d->Commit());
}

TEST_F(GatewayCacheTest, ADownloadResumesWhereItsBytesEndAfterARestart) {
  std::string bytes(5000, 'x');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>('a' + i % 26);
  }
  Reopen(100000);
  {
    auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->Append(0, bytes.substr(0, 3000)));
  }
  Reopen(100000);  // the gateway was killed mid-download
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d) << d.error().ToString();
  ASSERT_EQ(*d->offset(), 3000u);
  EXPECT_EQ(cache_->Usage()->download_bytes, 3000u);
  // A download that restarts from zero is told where the bytes end, and nothing is written.
  auto from_zero = d->Append(0, bytes);
  ASSERT_FALSE(from_zero);
  EXPECT_EQ(from_zero.error().code(), ErrorCode::kMismatch);
  ASSERT_TRUE(d->Append(3000, bytes.substr(3000)));
  Status committed = d->Commit();
  ASSERT_TRUE(committed) << committed.error().ToString();
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(bytes)));
}

TEST_F(GatewayCacheTest, ADownloadDeclaredWithAnotherSizeStartsAgain) {
  std::string bytes = "0123456789";
  {
    auto d = cache_->BeginBlob(Sha256Of(bytes), 20);
    ASSERT_TRUE(d->Append(0, "0123"));
  }
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d);
  EXPECT_EQ(*d->offset(), 0u);
  ASSERT_TRUE(d->Append(0, bytes));
  ASSERT_TRUE(d->Commit());
}

TEST_F(GatewayCacheTest, AbortRemovesThePartialBytes) {
  std::string bytes = "0123456789";
  auto d = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  ASSERT_TRUE(d->Append(0, "01234"));
  ASSERT_FALSE(FilesUnder(dir_.path() / "cache" / "uploads").empty());
  ASSERT_TRUE(d->Abort());
  EXPECT_EQ(FilesUnder(dir_.path() / "cache" / "uploads"), std::vector<std::string>{});
  EXPECT_EQ(d->Abort().error().code(), ErrorCode::kNotFound);
  Reopen();
  auto again = cache_->BeginBlob(Sha256Of(bytes), bytes.size());
  EXPECT_EQ(*again->offset(), 0u);
}

TEST_F(GatewayCacheTest, APackageIsNotServedUntilComplete) {
  TestPackage p = MakePackage("models/affine", "1.0.0", {"config", "weights"});
  ASSERT_TRUE(cache_->DeclarePackage(p.spec));
  EXPECT_EQ(cache_->GetManifest("models/affine", "1.0.0").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(cache_->GetManifest("models/affine", Sha256Of(p.index).ToString()).error().code(),
            ErrorCode::kNotFound);
  EXPECT_TRUE(cache_->Tags("models/affine")->empty());

  ASSERT_TRUE(Put("config"));
  Status early = cache_->CompletePackage(p.spec.ref);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(early.error().message().find("lacks 3 blob(s)"), std::string::npos)
      << early.error().message();
  EXPECT_NE(early.error().message().find(Sha256Of("weights").ToString()), std::string::npos);
  EXPECT_EQ(ReadBlob(*cache_, "models/affine", Sha256Of("config")).front(), '<');
  auto missing = cache_->MissingBlobs(p.spec.ref);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->size(), 3u);

  for (const std::string& b : p.blobs) {
    if (!cache_->HasBlob(Sha256Of(b))) {
      ASSERT_TRUE(Put(b));
    }
  }
  ASSERT_TRUE(cache_->CompletePackage(p.spec.ref));
  auto tagged = cache_->GetManifest("models/affine", "1.0.0");
  ASSERT_TRUE(tagged) << tagged.error().ToString();
  EXPECT_EQ(tagged->bytes, p.index);
  EXPECT_EQ(tagged->media_type, kIndexType);
  EXPECT_EQ(cache_->GetManifest("models/affine", Sha256Of(p.manifest).ToString())->bytes,
            p.manifest);
  EXPECT_EQ(ReadBlob(*cache_, "models/affine", Sha256Of("weights")), "weights");
  // Each repository sees only its own packages.
  EXPECT_EQ(cache_->OpenBlob("models/other", Sha256Of("weights")).error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(*cache_->Tags("models/affine"), std::vector<std::string>{"1.0.0"});
  auto refs = cache_->Referrers("models/affine", Sha256Of(p.index), kReleaseType);
  ASSERT_TRUE(refs);
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_EQ((*refs)[0].digest, Sha256Of(p.release_manifest));
  EXPECT_EQ((*refs)[0].size, p.release_manifest.size());
  EXPECT_TRUE(cache_->Referrers("models/affine", Sha256Of(p.index), "other/type")->empty());
  EXPECT_EQ(*cache_->Release(p.spec.ref), p.spec.release);
}

TEST_F(GatewayCacheTest, MalformedDeclarationsAreRefusedAndChangeNothing) {
  TestPackage p = MakePackage("models/affine", "1.0.0", {"config", "weights"});
  PackageSpec no_index = p.spec;
  no_index.manifests = {p.manifest};
  EXPECT_EQ(cache_->DeclarePackage(no_index).error().code(), ErrorCode::kInvalidArgument);
  PackageSpec not_json = p.spec;
  not_json.manifests.push_back("not json");
  EXPECT_EQ(cache_->DeclarePackage(not_json).error().code(), ErrorCode::kInvalidArgument);
  PackageSpec bad_digest = p.spec;
  bad_digest.manifests.push_back(
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"md5:x","size":1},"layers":[]})");
  EXPECT_FALSE(cache_->DeclarePackage(bad_digest));
  for (PackageRef bad : {PackageRef{"Models/Affine", "1"}, PackageRef{"models/../x", "1"},
                         PackageRef{"models/affine", ".hidden"}, PackageRef{"models/affine", ""}}) {
    PackageSpec renamed = p.spec;
    renamed.ref = bad;
    EXPECT_EQ(cache_->DeclarePackage(renamed).error().code(), ErrorCode::kInvalidArgument)
        << bad.ToString();
  }
  EXPECT_TRUE(cache_->ListPackages()->empty());
  // The good declaration still works.
  Deliver(p);
  EXPECT_TRUE(cache_->GetManifest("models/affine", "1.0.0"));
}

TEST_F(GatewayCacheTest, EvictionTakesTheLeastRecentlyUsedBlobsAndTheirPackages) {
  Reopen(1000);
  TestPackage old_pkg = MakePackage("models/a", "1", {"config-a", std::string(300, 'a')});
  TestPackage new_pkg = MakePackage("models/b", "1", {"config-b", std::string(300, 'b')});
  Deliver(old_pkg);
  clock_.Advance(std::chrono::seconds(10));
  Deliver(new_pkg);
  clock_.Advance(std::chrono::seconds(10));
  // models/a is pulled now (every blob of it): it becomes the most recently used.
  for (const std::string& b : old_pkg.blobs) {
    EXPECT_EQ(ReadBlob(*cache_, "models/a", Sha256Of(b)), b);
  }
  clock_.Advance(std::chrono::seconds(10));

  std::string big(450, 'c');  // fits only if one 300-byte layer goes
  Status put = Put(big);
  ASSERT_TRUE(put) << put.error().ToString();
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(big)));
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(std::string(300, 'a'))));
  EXPECT_FALSE(cache_->HasBlob(Sha256Of(std::string(300, 'b'))));
  // The package that needed the evicted blob is gone; the other one is served as before.
  EXPECT_EQ(cache_->GetManifest("models/b", "1").error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(cache_->GetManifest("models/a", "1"));
  auto packages = cache_->ListPackages();
  ASSERT_EQ(packages->size(), 1u);
  EXPECT_EQ((*packages)[0].ref.repository, "models/a");
  EXPECT_LE(cache_->Usage()->committed_bytes, 1000u);
}

TEST_F(GatewayCacheTest, PinnedBlobsAreNeverEvicted) {
  Reopen(1000);
  TestPackage pinned = MakePackage("models/a", "1", {"config-a", std::string(300, 'a')});
  TestPackage loose = MakePackage("models/b", "1", {"config-b", std::string(300, 'b')});
  Deliver(pinned);
  ASSERT_TRUE(cache_->Pin("deployment-7", pinned.spec.ref));
  ASSERT_TRUE(cache_->Pin("deployment-7", pinned.spec.ref));  // idempotent
  clock_.Advance(std::chrono::seconds(10));
  Deliver(loose);  // younger than the pinned package, and yet the one to go
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(Put(std::string(450, 'c')));
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(std::string(300, 'a'))));
  EXPECT_FALSE(cache_->HasBlob(Sha256Of(std::string(300, 'b'))));
  EXPECT_TRUE(cache_->GetManifest("models/a", "1"));
  auto packages = cache_->ListPackages();
  ASSERT_EQ(packages->size(), 1u);
  EXPECT_EQ((*packages)[0].pinned_by, std::vector<std::string>{"deployment-7"});
  EXPECT_GE(cache_->Usage()->pinned_bytes, 300u);
}

TEST_F(GatewayCacheTest, WhenPinnedBlobsLeaveNoRoomTheCommitIsRefusedClearly) {
  Reopen(1000);
  TestPackage p = MakePackage("models/a", "1", {"config-a", std::string(600, 'a')});
  Deliver(p);
  ASSERT_TRUE(cache_->Pin("delivery-1", p.spec.ref));
  std::string big(500, 'z');
  auto d = cache_->BeginBlob(Sha256Of(big), big.size());
  ASSERT_TRUE(d->Append(0, big));
  Status refused = d->Commit();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
  std::uint64_t pinned = cache_->Usage()->pinned_bytes;
  EXPECT_NE(refused.error().message().find(std::to_string(pinned) + " bytes of it are pinned"),
            std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find("limit is 1000 bytes"), std::string::npos);
  // Nothing was evicted, and the download is kept for a retry.
  EXPECT_TRUE(cache_->GetManifest("models/a", "1"));
  EXPECT_EQ(*d->offset(), big.size());
  EXPECT_FALSE(cache_->CheckRoomFor(big.size()));
  EXPECT_NE(cache_->CheckRoomFor(big.size()).error().message().find("pinned"), std::string::npos);
  // Once the deployment lets go, the same commit succeeds by evicting the old package.
  EXPECT_EQ(*cache_->Unpin("delivery-1"), 1u);
  EXPECT_TRUE(cache_->CheckRoomFor(big.size()));
  ASSERT_TRUE(d->Commit());
  EXPECT_TRUE(cache_->HasBlob(Sha256Of(big)));
  EXPECT_EQ(cache_->GetManifest("models/a", "1").error().code(), ErrorCode::kNotFound);
}

TEST_F(GatewayCacheTest, ABlobLargerThanTheLimitIsRefusedUpFront) {
  Reopen(100);
  auto d = cache_->BeginBlob(Sha256Of(std::string(101, 'x')), 101);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(d.error().message().find("limit of 100 bytes"), std::string::npos);
}

TEST_F(GatewayCacheTest, PinningNeedsADeclaredPackage) {
  EXPECT_EQ(cache_->Pin("d1", {"models/none", "1"}).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(cache_->Pin("", {"models/none", "1"}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(*cache_->Unpin("d1"), 0u);
}

TEST_F(GatewayCacheTest, ARestartKeepsPackagesPinsAndBlobs) {
  TestPackage p = MakePackage("models/affine", "1.0.0", {"config", "weights"});
  Deliver(p);
  ASSERT_TRUE(cache_->Pin("deployment-1", p.spec.ref));
  Reopen();
  auto tagged = cache_->GetManifest("models/affine", "1.0.0");
  ASSERT_TRUE(tagged) << tagged.error().ToString();
  EXPECT_EQ(tagged->bytes, p.index);
  EXPECT_EQ(ReadBlob(*cache_, "models/affine", Sha256Of("weights")), "weights");
  EXPECT_EQ(*cache_->Release(p.spec.ref), p.spec.release);
  auto packages = cache_->ListPackages();
  ASSERT_EQ(packages->size(), 1u);
  EXPECT_TRUE((*packages)[0].complete);
  EXPECT_EQ((*packages)[0].missing_bytes, 0u);
  EXPECT_EQ((*packages)[0].pinned_by, std::vector<std::string>{"deployment-1"});
}

TEST_F(GatewayCacheTest, ABlobFileLostFromTheDiskMakesItsPackageIncompleteOnReopen) {
  TestPackage p = MakePackage("models/affine", "1.0.0", {"config", "weights"});
  Deliver(p);
  cache_.reset();
  std::string hex = Sha256Of("weights").hex();
  std::filesystem::remove(dir_.path() / "cache" / "blobs" / "sha256" / hex.substr(0, 2) / hex);
  Reopen();
  EXPECT_FALSE(cache_->HasBlob(Sha256Of("weights")));
  EXPECT_EQ(cache_->GetManifest("models/affine", "1.0.0").error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(Put("weights"));
  ASSERT_TRUE(cache_->CompletePackage(p.spec.ref));
  EXPECT_TRUE(cache_->GetManifest("models/affine", "1.0.0"));
}

TEST_F(GatewayCacheTest, OnlyOneProcessUsesACacheDirectory) {
  CacheOptions options;
  options.max_bytes = 1000;
  auto second = GatewayCache::Open(dir_.path() / "cache", options, clock_);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.error().message().find("in use by another process"), std::string::npos);
  options.max_bytes = 0;
  EXPECT_EQ(GatewayCache::Open(dir_.path() / "other", options, clock_).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(FreeDisk, TheFilesystemOfATemporaryDirectoryHasSomeRoom) {
  airlock::testing::TempDir dir;
  auto free = FreeDiskBytes(dir.path());
  ASSERT_TRUE(free) << free.error().ToString();
  EXPECT_GT(*free, 0u);
  EXPECT_EQ(FreeDiskBytes(dir.path() / "missing").error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace airlock::gateway
