// MetadataStore, on SQLite and on PostgreSQL (every case runs on both): migrations, blob links,
// manifests whose references must exist (checked atomically, leaving nothing behind when
// refused), tags in order with paging, referrers.

#include "store/metadata_store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>

#include "backend_fixture.hpp"

namespace airlock::store {
namespace {

using airlock::testing::MetadataBackend;
using airlock::testing::SharedPostgres;

ManifestRecord Manifest(std::string_view bytes, std::string artifact_type = "",
                        std::optional<Digest> subject = std::nullopt) {
  ManifestRecord m;
  m.digest = Sha256Of(bytes);
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.artifact_type = std::move(artifact_type);
  m.subject = subject;
  m.size = bytes.size();
  m.bytes = std::string(bytes);
  return m;
}

class MetadataStoreTest : public BackendTest {
 protected:
  Result<int> SchemaVersion() {
    if (auto* s = dynamic_cast<SqliteMetadataStore*>(db_.get())) {
      return s->SchemaVersion();
    }
    return dynamic_cast<PostgresMetadataStore&>(*db_).SchemaVersion();
  }
  int LatestSchemaVersion() {
    return GetParam() == MetadataBackend::kSqlite ? SqliteMetadataStore::LatestSchemaVersion()
                                                  : PostgresMetadataStore::LatestSchemaVersion();
  }
  // What a newer hub would have left in the database.
  void RecordFutureMigration() {
    if (GetParam() == MetadataBackend::kSqlite) {
      sqlite3* raw = nullptr;
      ASSERT_EQ(sqlite3_open((dir_ / "metadata.db").c_str(), &raw), SQLITE_OK);
      ASSERT_EQ(sqlite3_exec(raw, "INSERT INTO schema_migrations VALUES (999, 'future', 'x')",
                             nullptr, nullptr, nullptr),
                SQLITE_OK);
      sqlite3_close(raw);
    } else {
      SharedPostgres().Execute(uri_.substr(uri_.rfind('/') + 1),
                               "INSERT INTO schema_migrations VALUES (999, 'future', now())");
    }
  }

};

INSTANTIATE_TEST_SUITE_P(Backends, MetadataStoreTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(MetadataStoreTest, MigrationsAreRecordedAndANewerSchemaIsRefused) {
  EXPECT_EQ(*SchemaVersion(), LatestSchemaVersion());
  ASSERT_TRUE(db_->LinkBlob("r", Sha256Of("a"), 1));
  db_.reset();
  auto again = Open();  // nothing applied twice
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*(*again)->LinkedBlob("r", Sha256Of("a")), 1u);
  again->reset();

  RecordFutureMigration();
  auto newer = Open();
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(newer.error().ToString().find("schema version 999"), std::string::npos);
}

TEST_P(MetadataStoreTest, BlobsAreVisibleOnlyWhereLinked) {
  Digest d = Sha256Of("layer");
  EXPECT_EQ(db_->LinkedBlob("a", d).error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(*db_->RepositoryExists("a"));
  ASSERT_TRUE(db_->LinkBlob("a", d, 5));
  ASSERT_TRUE(db_->LinkBlob("a", d, 5));  // idempotent
  ASSERT_TRUE(db_->LinkBlob("b/c", d, 5));
  EXPECT_TRUE(*db_->RepositoryExists("a"));
  EXPECT_EQ(*db_->LinkedBlob("b/c", d), 5u);
  EXPECT_EQ(db_->LinkedBlob("b", d).error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(*db_->UnlinkBlob("a", d));  // b/c still has it
  EXPECT_EQ(db_->UnlinkBlob("a", d).error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(*db_->UnlinkBlob("b/c", d));  // the last link
}

TEST_P(MetadataStoreTest, ABlobIsLinkedWhileAnyRepositoryLinksIt) {
  Digest d = Sha256Of("layer"), other = Sha256Of("other");
  EXPECT_FALSE(*db_->IsBlobLinked(d));
  ASSERT_TRUE(db_->LinkBlob("a", d, 5));
  ASSERT_TRUE(db_->LinkBlob("b", d, 5));
  EXPECT_TRUE(*db_->IsBlobLinked(d));
  EXPECT_FALSE(*db_->IsBlobLinked(other));
  ASSERT_TRUE(db_->UnlinkBlob("a", d));
  EXPECT_TRUE(*db_->IsBlobLinked(d));  // b still has it
  // A manifest that uses the blob does not count: only links do (its bytes live in the database).
  ASSERT_TRUE(db_->PutManifest("b", Manifest("m"), {{{d, 5}}, {}}, "v1"));
  ASSERT_TRUE(db_->UnlinkBlob("b", d));
  EXPECT_FALSE(*db_->IsBlobLinked(d));
  // Seen the same way by a second connection (another process: the garbage collector).
  auto again = Open();
  ASSERT_TRUE(again) << again.error().ToString();
  ASSERT_TRUE(db_->LinkBlob("c", other, 5));
  EXPECT_TRUE(*(*again)->IsBlobLinked(other));
  EXPECT_FALSE(*(*again)->IsBlobLinked(d));
}

TEST_P(MetadataStoreTest, AManifestNeedsItsBlobsInItsRepositoryAndARefusalLeavesNothing) {
  Digest config = Sha256Of("{}"), layer = Sha256Of("weights");
  ManifestRecord m = Manifest("manifest-1");
  ManifestReferences refs{{{config, 2}, {layer, 7}}, {}};
  ASSERT_TRUE(db_->LinkBlob("other", layer, 7));  // in another repository only
  ASSERT_TRUE(db_->LinkBlob("models/x", config, 2));
  ASSERT_TRUE(db_->LinkBlob("elsewhere", config, 2));

  Status missing = db_->PutManifest("fresh", m, refs, "1.0");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(*db_->RepositoryExists("fresh"));  // rolled back, repository and all

  missing = db_->PutManifest("models/x", m, refs, "1.0");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find(layer.ToString()), std::string::npos);
  EXPECT_EQ(db_->ResolveTag("models/x", "1.0").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(db_->GetManifest("models/x", m.digest).error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE(db_->LinkBlob("models/x", layer, 8));
  Status wrong_size = db_->PutManifest("models/x", m, refs, "1.0");
  ASSERT_FALSE(wrong_size);
  EXPECT_EQ(wrong_size.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong_size.error().message().find("8 bytes"), std::string::npos);

  ManifestReferences right{{{config, 2}, {layer, 8}}, {}};
  ASSERT_TRUE(db_->PutManifest("models/x", m, right, "1.0"));
  EXPECT_EQ(*db_->ResolveTag("models/x", "1.0"), m.digest);
  auto got = db_->GetManifest("models/x", m.digest);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->bytes, "manifest-1");
  EXPECT_EQ(got->media_type, m.media_type);

  // An index needs its manifests.
  ManifestRecord index = Manifest("index-1");
  index.media_type = "application/vnd.oci.image.index.v1+json";
  ManifestReferences children{{}, {m.digest, Sha256Of("absent")}};
  EXPECT_EQ(db_->PutManifest("models/x", index, children, "idx").error().code(),
            ErrorCode::kNotFound);
  children.manifests.pop_back();
  ASSERT_TRUE(db_->PutManifest("models/x", index, children, "idx"));
}

TEST_P(MetadataStoreTest, TagsListInByteOrderWithPagingAndMoveAndDelete) {
  ManifestRecord a = Manifest("a"), b = Manifest("b");
  for (const char* tag : {"b", "A", "a", "1.0.0", "latest"}) {
    ASSERT_TRUE(db_->PutManifest("r", a, {}, tag));
  }
  EXPECT_EQ(*db_->ListTags("r", "", 100),
            (std::vector<std::string>{"1.0.0", "A", "a", "b", "latest"}));
  EXPECT_EQ(*db_->ListTags("r", "", 2), (std::vector<std::string>{"1.0.0", "A"}));
  EXPECT_EQ(*db_->ListTags("r", "A", 2), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(*db_->ListTags("r", "latest", 2), std::vector<std::string>{});
  EXPECT_EQ(db_->ListTags("nope", "", 2).error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE(db_->PutManifest("r", b, {}, "latest"));  // moves the tag
  EXPECT_EQ(*db_->ResolveTag("r", "latest"), b.digest);
  ASSERT_TRUE(db_->DeleteTag("r", "b"));
  EXPECT_EQ(db_->DeleteTag("r", "b").error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(db_->DeleteManifest("r", a.digest));  // and its tags with it
  EXPECT_EQ(*db_->ListTags("r", "", 100), std::vector<std::string>{"latest"});
  EXPECT_EQ(db_->DeleteManifest("r", a.digest).error().code(), ErrorCode::kNotFound);
}

TEST_P(MetadataStoreTest, ReferrersBySubjectAndArtifactType) {
  ManifestRecord subject = Manifest("subject");
  ASSERT_TRUE(db_->PutManifest("r", subject, {}, "v1"));
  ManifestRecord sig = Manifest("sig", "application/vnd.airlock.release.v1+json", subject.digest);
  sig.annotations_json = R"({"k":"v"})";
  ManifestRecord sbom = Manifest("sbom", "application/spdx+json", subject.digest);
  ManifestRecord unrelated = Manifest("unrelated", "application/spdx+json");
  for (const auto* m : {&sig, &sbom, &unrelated}) {
    ASSERT_TRUE(db_->PutManifest("r", *m, {}, std::nullopt));
  }
  ASSERT_TRUE(db_->PutManifest("other", sbom, {}, std::nullopt));
  auto all = db_->Referrers("r", subject.digest, "");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  auto sigs = db_->Referrers("r", subject.digest, "application/vnd.airlock.release.v1+json");
  ASSERT_EQ(sigs->size(), 1u);
  EXPECT_EQ((*sigs)[0].digest, sig.digest);
  EXPECT_EQ((*sigs)[0].annotations_json, R"({"k":"v"})");
  EXPECT_EQ((*sigs)[0].size, 3u);
  EXPECT_TRUE(db_->Referrers("nope", subject.digest, "")->empty());
}

}  // namespace
}  // namespace airlock::store
