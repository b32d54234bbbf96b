// CollectGarbage: the grace period counted back from the given time, the dry run, the tally,
// what an interrupted collection left aside, and idle upload sessions.

#include "hub/gc.hpp"
#include "hub/server.hpp"

#include <gtest/gtest.h>

#include "store/sqlite_metadata_store.hpp"
#include "support/test_support.hpp"

namespace airlock::hub {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;

class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    blobs_ = store::BlobStore::Open(dir_.path()).value();
    collector_ = store::BlobCollector::Open(dir_.path()).value();
    HubConfig config = DefaultHubConfig();
    config.data = dir_.path();
    meta_ = OpenMetadataStore(config, 1).value();
  }
  Digest Put(const std::string& bytes, bool link) {
    auto id = blobs_->StartUpload("r").value();
    EXPECT_TRUE(blobs_->AppendUpload(id, 0, [&](const auto& sink) { return sink(bytes); }));
    EXPECT_TRUE(blobs_->FinishUpload(id, Sha256Of(bytes)));
    if (link) {
      EXPECT_TRUE(meta_->LinkBlob("r", Sha256Of(bytes), bytes.size()));
    }
    return Sha256Of(bytes);
  }

  TempDir dir_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<store::BlobCollector> collector_;
  std::unique_ptr<store::MetadataStore> meta_;
};

TEST_F(GcTest, RemovesUnlinkedBlobsOlderThanTheGracePeriod) {
  Digest linked = Put("linked", true), garbage = Put("garbage", false);
  const auto now = std::chrono::system_clock::now();
  const auto in_two_hours = now + std::chrono::hours(2);

  // Everything changed a moment ago: within the default hour.
  auto fresh = CollectGarbage(*collector_, *meta_, {}, now);
  ASSERT_TRUE(fresh) << fresh.error().ToString();
  EXPECT_TRUE(fresh->removed.empty());
  EXPECT_EQ(fresh->young, 2u);

  // Two hours on, the dry run names the garbage and leaves it.
  auto dry = CollectGarbage(*collector_, *meta_, {.grace = std::chrono::hours(1), .dry_run = true},
                            in_two_hours);
  ASSERT_TRUE(dry) << dry.error().ToString();
  ASSERT_EQ(dry->removed.size(), 1u);
  EXPECT_EQ(dry->removed[0].digest, garbage);
  EXPECT_EQ(dry->removed_bytes, 7u);
  EXPECT_EQ(dry->linked, 1u);
  EXPECT_TRUE(blobs_->Size(garbage));

  // What a collector killed mid-removal set aside goes first.
  airlock::testing::WriteAll(dir_.path() / "gc" / Sha256Of("aside").hex(), "aside");
  auto real = CollectGarbage(*collector_, *meta_, {}, in_two_hours);
  ASSERT_TRUE(real) << real.error().ToString();
  EXPECT_EQ(real->recovered_bytes, 5u);
  ASSERT_EQ(real->removed.size(), 1u);
  EXPECT_EQ(real->removed[0].digest, garbage);
  EXPECT_EQ(real->linked, 1u);
  EXPECT_EQ(blobs_->Size(garbage).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(*blobs_->Size(linked), 6u);
  EXPECT_TRUE(fs::is_empty(dir_.path() / "gc"));

  // Nothing left to do.
  auto again = CollectGarbage(*collector_, *meta_, {}, in_two_hours);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->removed.empty());
  EXPECT_EQ(again->linked, 1u);
}

TEST_F(GcTest, UploadSessionsGoOnceIdleForLongerThanTheLimit) {
  auto id = blobs_->StartUpload("r").value();
  ASSERT_TRUE(blobs_->AppendUpload(id, 0, [](const auto& sink) { return sink("half a blob"); }));
  const auto now = std::chrono::system_clock::now();

  auto soon = CollectGarbage(*collector_, *meta_, {}, now + std::chrono::hours(23));
  ASSERT_TRUE(soon) << soon.error().ToString();
  EXPECT_EQ(soon->idle_uploads, 0u);  // within the default day
  EXPECT_TRUE(blobs_->UploadSize(id));

  GcOptions dry{.upload_idle = std::chrono::hours(1), .dry_run = true};
  auto listed = CollectGarbage(*collector_, *meta_, dry, now + std::chrono::hours(2));
  ASSERT_TRUE(listed) << listed.error().ToString();
  EXPECT_EQ(listed->idle_uploads, 1u);
  EXPECT_EQ(listed->idle_upload_bytes, 11u);
  EXPECT_TRUE(blobs_->UploadSize(id));

  auto later = CollectGarbage(*collector_, *meta_, {}, now + std::chrono::hours(25));
  ASSERT_TRUE(later) << later.error().ToString();
  EXPECT_EQ(later->idle_uploads, 1u);
  EXPECT_EQ(later->idle_upload_bytes, 11u);
  EXPECT_EQ(blobs_->UploadSize(id).error().code(), ErrorCode::kNotFound);
  // The hub starts the next upload as usual.
  Digest d = Put("a whole blob", true);
  EXPECT_EQ(*blobs_->Size(d), 12u);
}

TEST_F(GcTest, AnUnknownDatabaseSchemeIsRefused) {
  HubConfig config = DefaultHubConfig();
  config.data = dir_.path();
  config.db = "mysql://u:secret@h/db";
  auto r = OpenMetadataStore(config, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message().find("secret"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace airlock::hub
