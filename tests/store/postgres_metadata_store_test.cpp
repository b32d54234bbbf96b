// PostgresMetadataStore beyond the shared suite: what a server that is not there or refuses the
// login gives (never the password), and several stores — as several hubs would — racing on one
// database.

#include "store/postgres_metadata_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "support/mosquitto.hpp"
#include "support/postgres.hpp"

namespace airlock::store {
namespace {

using airlock::testing::PostgresServer;
using airlock::testing::SharedPostgres;

class PostgresMetadataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      uri_ = SharedPostgres().CreateDatabase();
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
  }
  std::string uri_;
};

TEST_F(PostgresMetadataStoreTest, AnUnreachableServerIsAClearErrorWithoutThePassword) {
  int port = airlock::testing::FreePort();  // nothing listens there
  std::string uri =
      "postgres://hub:s3cret-pw@127.0.0.1:" + std::to_string(port) + "/airlock?connect_timeout=5";
  auto store = PostgresMetadataStore::Open(uri);
  ASSERT_FALSE(store);
  std::string message = store.error().ToString();
  EXPECT_EQ(store.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(message.find("postgres://hub@127.0.0.1:" + std::to_string(port) + "/airlock"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("s3cret-pw"), std::string::npos) << message;
}

TEST_F(PostgresMetadataStoreTest, AWrongPasswordIsRefusedWithoutPrintingIt) {
  std::string uri = uri_;
  uri.replace(uri.find(PostgresServer::kPassword), std::string(PostgresServer::kPassword).size(),
              "wrong-pw-123");
  auto store = PostgresMetadataStore::Open(uri);
  ASSERT_FALSE(store);
  std::string message = store.error().ToString();
  EXPECT_EQ(store.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(message.find("password authentication failed"), std::string::npos) << message;
  EXPECT_EQ(message.find("wrong-pw-123"), std::string::npos) << message;
  // The right password still works.
  auto good = PostgresMetadataStore::Open(uri_);
  ASSERT_TRUE(good) << good.error().ToString();
}

TEST_F(PostgresMetadataStoreTest, AMalformedConnectionStringIsRefused) {
  auto store = PostgresMetadataStore::Open("postgres://u:pw@127.0.0.1:5432/db?nonsense=1");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store.error().ToString().find(":pw@"), std::string::npos);
  EXPECT_EQ(RedactedPostgresUri("postgresql://u:pw@db.example:6432/hub"),
            "postgres://u@db.example:6432/hub");
}

TEST_F(PostgresMetadataStoreTest, HubsStartingTogetherMigrateOnce) {
  std::vector<std::thread> hubs;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i) {
    hubs.emplace_back([&] {
      auto store = PostgresMetadataStore::Open(uri_);
      EXPECT_TRUE(store) << store.error().ToString();
      if (store) {
        EXPECT_EQ(*(*store)->SchemaVersion(), PostgresMetadataStore::LatestSchemaVersion());
        ++opened;
      }
    });
  }
  for (auto& t : hubs) {
    t.join();
  }
  EXPECT_EQ(opened, 4);
}

TEST_F(PostgresMetadataStoreTest, SeveralStoresRacingOnOneDatabaseLoseNothing) {
  // Two "hubs", each with four threads, push manifests (with tags) into the same repositories
  // and link and unlink the same blobs; every call succeeds and every write is there after.
  std::vector<std::unique_ptr<PostgresMetadataStore>> hubs;
  for (int i = 0; i < 2; ++i) {
    auto store = PostgresMetadataStore::Open(uri_, 4);
    ASSERT_TRUE(store) << store.error().ToString();
    hubs.push_back(std::move(*store));
  }
  constexpr int kThreads = 8, kPushes = 15;
  Digest layer = Sha256Of("shared layer");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      MetadataStore& db = *hubs[static_cast<std::size_t>(t % 2)];
      for (int i = 0; i < kPushes; ++i) {
        std::string repo = "models/m" + std::to_string(i % 3);
        std::string bytes = "manifest " + std::to_string(t) + "/" + std::to_string(i);
        ManifestRecord m;
        m.digest = Sha256Of(bytes);
        m.media_type = "application/vnd.oci.image.manifest.v1+json";
        m.size = bytes.size();
        m.bytes = bytes;
        Status linked = db.LinkBlob(repo, layer, 12);
        Status put = linked ? db.PutManifest(repo, m, {{{layer, 12}}, {}},
                                             "t" + std::to_string(t) + "-" + std::to_string(i))
                            : linked;
        Status moved = put ? db.PutManifest(repo, m, {}, "latest") : put;
        if (!moved) {
          ADD_FAILURE() << moved.error().ToString();
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_EQ(failures, 0);
  std::size_t tags = 0;
  for (int r = 0; r < 3; ++r) {
    auto listed = hubs[0]->ListTags("models/m" + std::to_string(r), "", 1000);
    ASSERT_TRUE(listed) << listed.error().ToString();
    tags += listed->size();
    EXPECT_TRUE(hubs[1]->ResolveTag("models/m" + std::to_string(r), "latest"));
  }
  EXPECT_EQ(tags, std::size_t{kThreads * kPushes + 3});  // every tag, plus one "latest" each
}

TEST_F(PostgresMetadataStoreTest, AServerRestartCostsNoCall) {
  // Pooled connections die with the server; the next call reconnects rather than failing.
  PostgresServer own;
  std::string uri = own.CreateDatabase();
  auto store = PostgresMetadataStore::Open(uri);
  ASSERT_TRUE(store) << store.error().ToString();
  ASSERT_TRUE((*store)->LinkBlob("r", Sha256Of("a"), 1));
  own.Restart();
  EXPECT_EQ(*(*store)->LinkedBlob("r", Sha256Of("a")), 1u);
  ASSERT_TRUE((*store)->LinkBlob("r", Sha256Of("b"), 1));
  EXPECT_TRUE(*(*store)->RepositoryExists("r"));
}

}  // namespace
}  // namespace airlock::store
