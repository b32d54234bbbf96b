// RegistryStore on SQLite and on PostgreSQL: versions and search, releases (immutable, counters
// that only grow), channels (current, pending, history, versions that only grow), deployments with
// their history and final states, gateway registration tokens used once, inventories.

#include "store/registry_store.hpp"

#include <gtest/gtest.h>

#include "backend_fixture.hpp"

namespace airlock::store {
namespace {

using nlohmann::json;

class RegistryStoreTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    auto r = RegistryStore::Open(db_->sql(), 1);
    ASSERT_TRUE(r) << r.error().ToString();
    reg_ = std::move(*r);
  }

  static ModelVersionRecord Version(std::string version, std::int64_t at, char digest = 'a') {
    ModelVersionRecord v;
    v.model = "vibration-anomaly";
    v.version = std::move(version);
    v.repository = "models/vibration-anomaly";
    v.index_digest = "sha256:" + std::string(64, digest);
    v.index_size = 900;
    v.platforms = {"linux/amd64"};
    v.description = "Flags anomalous vibration";
    v.lineage = {{"training_run", "run-" + v.version}, {"metrics", {{"auc", 0.97}}}};
    v.pushed_by = "ci";
    v.pushed_at = at;
    return v;
  }
  static ReleaseRecord Release(const ModelVersionRecord& v, std::uint64_t counter,
                               std::int64_t signatures = 1) {
    return {v.model, v.version, counter, "sha256:" + std::string(63, 'r') + v.version.back(),
            v.index_digest, "{\"doc\":" + std::to_string(signatures) + "}", signatures, "ci",
            v.pushed_at + 1};
  }
  static ChannelRecord Channel(std::uint64_t version, std::string current) {
    return {"vibration-anomaly", "production", version, std::move(current),
            "{\"v\":" + std::to_string(version) + "}", 2, "rm", static_cast<std::int64_t>(version)};
  }

  std::unique_ptr<RegistryStore> reg_;
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryStoreTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(RegistryStoreTest, VersionsAreListedNewestFirstAndSearchable) {
  ASSERT_TRUE(reg_->RecordVersion(Version("1.0.0", 10)));
  ASSERT_TRUE(reg_->RecordVersion(Version("1.1.0", 20, 'b')));
  ModelVersionRecord other = Version("0.1.0", 15);
  other.model = "visual-inspection";
  other.description = "Classifies metal tags";
  other.lineage = {{"dataset_digest", "sha256:feed"}};
  ASSERT_TRUE(reg_->RecordVersion(other));

  auto versions = reg_->ListVersions("vibration-anomaly");
  ASSERT_TRUE(versions) << versions.error().ToString();
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].version, "1.1.0");
  EXPECT_EQ((*versions)[0].lineage["metrics"]["auc"], 0.97);
  EXPECT_EQ((*versions)[1].platforms, json({"linux/amd64"}));
  EXPECT_EQ(reg_->ListVersions("nothing").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(reg_->GetVersion("vibration-anomaly", "9.9.9").error().code(), ErrorCode::kNotFound);

  auto all = reg_->ListModels("");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "vibration-anomaly");
  EXPECT_EQ((*all)[0].versions, 2);
  EXPECT_EQ((*all)[0].latest, "1.1.0");
  auto metal = reg_->ListModels("METAL");
  ASSERT_TRUE(metal);
  ASSERT_EQ(metal->size(), 1u);
  EXPECT_EQ((*metal)[0].name, "visual-inspection");
  EXPECT_EQ(reg_->ListModels("run-1.1")->size(), 1u);  // lineage
  EXPECT_EQ(reg_->ListModels("feed")->size(), 1u);
  EXPECT_EQ(reg_->ListModels("100%")->size(), 0u);  // LIKE's characters are literal
}

TEST_P(RegistryStoreTest, ReleasesAreImmutableAndCountersGrow) {
  auto v1 = Version("1.0.0", 10), v2 = Version("1.1.0", 20, 'b');
  ASSERT_TRUE(reg_->RecordVersion(v1));
  ASSERT_TRUE(reg_->RecordVersion(v2));
  bool created = false;
  auto r1 = reg_->PutRelease(Release(v1, 3), &created);
  ASSERT_TRUE(r1) << r1.error().ToString();
  EXPECT_TRUE(created);
  // Co-signed: same id, more signatures, the document is replaced.
  auto cosigned = reg_->PutRelease(Release(v1, 3, 2), &created);
  ASSERT_TRUE(cosigned);
  EXPECT_FALSE(created);
  EXPECT_EQ(reg_->GetRelease("vibration-anomaly", "1.0.0")->signatures, 2);
  // Another release for a released version, or a counter that does not grow: conflicts.
  ReleaseRecord other = Release(v1, 4);
  other.id = "sha256:" + std::string(64, '9');
  EXPECT_EQ(reg_->PutRelease(other, &created).error().code(), ErrorCode::kAlreadyExists);
  auto low = reg_->PutRelease(Release(v2, 3), &created);
  ASSERT_FALSE(low);
  EXPECT_EQ(low.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(low.error().message().find("--counter 4"), std::string::npos);
  // A release for a version not pushed, or for another index.
  EXPECT_EQ(reg_->PutRelease(Release(Version("2.0.0", 30), 9), &created).error().code(),
            ErrorCode::kInvalidArgument);
  ReleaseRecord wrong_index = Release(v2, 5);
  wrong_index.index_digest = v1.index_digest;
  EXPECT_EQ(reg_->PutRelease(wrong_index, &created).error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(reg_->PutRelease(Release(v2, 5), &created));
  // A released version cannot be re-pushed with another index; the same one is fine.
  EXPECT_TRUE(reg_->CheckVersionPush("vibration-anomaly", "1.0.0", v1.index_digest));
  EXPECT_EQ(reg_->CheckVersionPush("vibration-anomaly", "1.0.0", v2.index_digest).error().code(),
            ErrorCode::kAlreadyExists);
  EXPECT_TRUE(reg_->CheckVersionPush("vibration-anomaly", "3.0.0", v2.index_digest));

  auto list = reg_->ListReleases("vibration-anomaly");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].version, "1.1.0");
  EXPECT_EQ(reg_->GetReleaseById("vibration-anomaly", (*list)[1].id)->version, "1.0.0");
}

TEST_P(RegistryStoreTest, ChannelsOnlyMoveForwardAndKeepHistory) {
  auto state = reg_->GetChannel("vibration-anomaly", "production");
  ASSERT_TRUE(state);
  EXPECT_FALSE(state->current);
  ASSERT_TRUE(reg_->ProposeChannel(Channel(1, "1.0.0")));
  EXPECT_EQ(reg_->GetChannel("vibration-anomaly", "production")->pending->current_release,
            "1.0.0");
  ASSERT_TRUE(reg_->SetChannel(Channel(1, "1.0.0")));
  ASSERT_TRUE(reg_->SetChannel(Channel(2, "1.1.0")));
  EXPECT_EQ(reg_->SetChannel(Channel(2, "1.0.0")).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(reg_->ProposeChannel(Channel(1, "1.0.0")).error().code(), ErrorCode::kAlreadyExists);
  ASSERT_TRUE(reg_->SetChannel(Channel(3, "1.0.0")));  // a rollback is a newer version

  state = reg_->GetChannel("vibration-anomaly", "production");
  ASSERT_TRUE(state);
  ASSERT_TRUE(state->current);
  EXPECT_EQ(state->current->version, 3u);
  EXPECT_EQ(state->current->document, "{\"v\":3}");
  EXPECT_FALSE(state->pending) << "the proposal was superseded";
  ASSERT_EQ(state->history.size(), 3u);
  EXPECT_EQ(state->history[1].current_release, "1.1.0");
  ASSERT_TRUE(reg_->RecordVersion(Version("1.0.0", 10)));
  auto models = reg_->ListModels("");
  ASSERT_TRUE(models);
  EXPECT_EQ((*models)[0].channels.at("production"), "1.0.0");
  EXPECT_EQ(reg_->ListChannels("vibration-anomaly")->size(), 1u);
}

TEST_P(RegistryStoreTest, DeploymentsKeepTheirHistoryAndFinalStates) {
  DeploymentRecord d;
  d.id = "dep-1";
  d.model = "vibration-anomaly";
  d.channel = "production";
  d.channel_version = 2;
  d.release_version = "1.1.0";
  d.release_id = "sha256:" + std::string(64, 'r');
  d.gateways = {"plant-a"};
  d.selector = {{"line", "3"}};
  d.strategy = {{"waves", {"1", "100%"}}};
  d.state = "pending";
  d.created_by = "rm";
  d.created_at = d.updated_at = 100;
  d.history = {{100, "rm", "created", "production v2 (1.1.0) to plant-a"}};
  ASSERT_TRUE(reg_->CreateDeployment(d));
  EXPECT_EQ(reg_->CreateDeployment(d).error().code(), ErrorCode::kAlreadyExists);
  d.id = "dep-2";
  d.model = "visual-inspection";
  d.created_at = 200;
  ASSERT_TRUE(reg_->CreateDeployment(d));

  EXPECT_EQ(reg_->ListDeployments("", "")->size(), 2u);
  EXPECT_EQ(reg_->ListDeployments("", "")->front().id, "dep-2");
  EXPECT_EQ(reg_->ListDeployments("vibration-anomaly", "")->size(), 1u);
  EXPECT_EQ(reg_->ListDeployments("", "cancelled")->size(), 0u);

  auto cancelled = reg_->TransitionDeployment("dep-1", "cancelled",
                                              {150, "admin", "cancelled", "wrong line"},
                                              {"cancelled", "complete"});
  ASSERT_TRUE(cancelled) << cancelled.error().ToString();
  EXPECT_EQ(cancelled->state, "cancelled");
  ASSERT_EQ(cancelled->history.size(), 2u);
  EXPECT_EQ(cancelled->history[1].detail, "wrong line");
  auto again = reg_->TransitionDeployment("dep-1", "cancelled", {160, "admin", "cancelled", ""},
                                          {"cancelled", "complete"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(reg_->GetDeployment("dep-1")->history.size(), 2u);
  EXPECT_EQ(reg_->GetDeployment("dep-1")->selector["line"], "3");
  EXPECT_EQ(reg_->GetDeployment("nope").error().code(), ErrorCode::kNotFound);
}

TEST_P(RegistryStoreTest, RegistrationTokensAreUsedOnceAndInventoriesReplaced) {
  ASSERT_TRUE(reg_->AddRegistrationToken("h1", "admin", 10, 1000));
  ASSERT_TRUE(reg_->AddRegistrationToken("h2", "admin", 10, 20));
  ASSERT_TRUE(reg_->AddRegistrationToken("h3", "admin", 10, 1000));
  GatewayRecord g{.id = "gw-1", .name = "plant-a", .labels = {{"site", "a"}},
                  .token_name = "gateway-plant-a", .registered_at = 50, .last_seen = {},
                  .devices = 0};
  ASSERT_TRUE(reg_->RegisterGateway("h1", g));
  EXPECT_EQ(reg_->RegisterGateway("h1", g).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(reg_->RegisterGateway("h2", g).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(reg_->RegisterGateway("nope", g).error().code(), ErrorCode::kNotFound);
  g.id = "gw-2";
  auto taken = reg_->RegisterGateway("h3", g);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code(), ErrorCode::kAlreadyExists);
  g.name = "plant-b";
  ASSERT_TRUE(reg_->RegisterGateway("h3", g)) << "a refused registration leaves its token usable";

  json devices = json::array({{{"id", "d1"}}, {{"id", "d2"}}});
  ASSERT_TRUE(reg_->PutInventory("plant-a", devices, 70));
  ASSERT_TRUE(reg_->PutInventory("plant-a", json::array({{{"id", "d3"}}}), 80));
  EXPECT_EQ(reg_->PutInventory("plant-z", devices, 80).error().code(), ErrorCode::kNotFound);
  auto inv = reg_->GetInventory("plant-a");
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->reported_at, 80);
  EXPECT_EQ(inv->devices.size(), 1u);
  EXPECT_EQ(reg_->GetInventory("plant-b")->devices.size(), 0u);
  auto gws = reg_->ListGateways();
  ASSERT_TRUE(gws);
  ASSERT_EQ(gws->size(), 2u);
  EXPECT_EQ((*gws)[0].devices, 1);
  EXPECT_EQ((*gws)[0].last_seen, 80);
  EXPECT_EQ((*gws)[1].last_seen, std::nullopt);
  EXPECT_EQ(reg_->GetGateway("plant-a")->labels["site"], "a");
}

}  // namespace
}  // namespace airlock::store
