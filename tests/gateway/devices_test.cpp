// The gateway's device registry: enrollment tokens are one-time and expire, a device is recorded
// only together with the token's use, racing enrollments with one token make one device, and a
// revoke sticks. (The certificate a device gets: tests/core/pki_test.cpp.)

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/digest.hpp"
#include "gateway/state_store.hpp"
#include "support/test_support.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::TempDir;
using std::chrono::hours;
using std::chrono::seconds;

TimePoint T0() { return TimePoint(seconds(1'796'000'000)); }

class DevicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = GatewayStateStore::Open(dir_.path(), T0());
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  // What the enrollment handler will do: a device from the token's labels.
  static std::function<Result<DeviceRecord>(const Labels&)> Maker(std::string id) {
    return [id](const Labels& labels) -> Result<DeviceRecord> {
      return DeviceRecord{.id = id,
                          .labels = labels,
                          .cert_serial = "00ff",
                          .cert_not_after = T0() + hours(24 * 365),
                          .mqtt_password_hash = "ab",
                          .revoked_at = std::nullopt,
                          .enrolled_at = T0()};
    };
  }
  TempDir dir_;
  std::unique_ptr<GatewayStateStore> store_;
};

TEST_F(DevicesTest, ATokenEnrollsOneDeviceWithItsLabels) {
  auto token = store_->CreateEnrollmentToken({{"line", "3"}}, T0() + hours(24), T0());
  ASSERT_TRUE(token) << token.error().ToString();
  EXPECT_TRUE(token->starts_with("alken_"));
  EXPECT_EQ(token->size(), 6u + 64u);

  auto d = store_->Enroll(*token, Maker("dev-0000000000000001"), T0() + hours(1));
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->labels, (Labels{{"line", "3"}}));
  auto listed = store_->Devices();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, "dev-0000000000000001");
  EXPECT_EQ((*listed)[0].labels.at("line"), "3");
  EXPECT_FALSE((*listed)[0].revoked_at);

  // Used: refused, saying so, and nothing more is recorded.
  auto again = store_->Enroll(*token, Maker("dev-0000000000000002"), T0() + hours(2));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kVerification);
  EXPECT_NE(again.error().message().find("used already (by dev-0000000000000001)"),
            std::string::npos)
      << again.error().ToString();
  EXPECT_EQ(store_->Devices()->size(), 1u);
}

TEST_F(DevicesTest, TokensAreListedByIdNewestFirstAndAnUnusedOneCanBeWithdrawn) {
  auto used = store_->CreateEnrollmentToken({{"cell", "a"}}, T0() + hours(24), T0());
  auto open = store_->CreateEnrollmentToken({{"cell", "b"}}, T0() + hours(24), T0() + seconds(1));
  ASSERT_TRUE(used && open);
  ASSERT_TRUE(store_->Enroll(*used, Maker("dev-0000000000000001"), T0() + seconds(2)));

  auto tokens = store_->EnrollmentTokens();
  ASSERT_TRUE(tokens) << tokens.error().ToString();
  ASSERT_EQ(tokens->size(), 2u);
  const EnrollmentTokenRecord& newest = (*tokens)[0];
  EXPECT_EQ(newest.id, EnrollmentTokenId(*open));
  EXPECT_EQ(newest.id.size(), 12u);
  EXPECT_EQ(newest.id, Sha256Of(*open).hex().substr(0, 12));  // of the hash, not the token
  EXPECT_EQ(newest.labels, (Labels{{"cell", "b"}}));
  EXPECT_EQ(newest.expires_at, T0() + hours(24));
  EXPECT_EQ(newest.used_by, "");
  EXPECT_EQ((*tokens)[1].used_by, "dev-0000000000000001");

  // A used token stays on record; an unused one goes, and can no longer enroll.
  EXPECT_EQ(store_->WithdrawEnrollmentToken(EnrollmentTokenId(*used)).error().code(),
            ErrorCode::kNotFound);
  ASSERT_TRUE(store_->WithdrawEnrollmentToken(newest.id));
  EXPECT_EQ(store_->EnrollmentTokens()->size(), 1u);
  auto refused = store_->Enroll(*open, Maker("dev-0000000000000002"), T0() + seconds(3));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("unknown enrollment token"), std::string::npos);
  for (std::string_view bad : {"", "zzzzzzzzzzzz", "0123", "' OR 1=1 --"}) {
    EXPECT_EQ(store_->WithdrawEnrollmentToken(bad).error().code(), ErrorCode::kNotFound) << bad;
  }
}

TEST_F(DevicesTest, UnknownAndExpiredTokensAreRefusedAndAFailedEnrollmentKeepsTheToken) {
  auto unknown = store_->Enroll("alken_nope", Maker("dev-0000000000000001"), T0());
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("unknown enrollment token"), std::string::npos);

  auto token = store_->CreateEnrollmentToken({}, T0() + hours(1), T0());
  ASSERT_TRUE(token);
  // The device's side failed (a bad CSR, say): the token is still good.
  auto failed = store_->Enroll(
      *token,
      [](const Labels&) -> Result<DeviceRecord> {
        return Fail(ErrorCode::kInvalidArgument, "the certificate request is not a PEM CSR");
      },
      T0());
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(store_->Devices()->empty());
  auto expired = store_->Enroll(*token, Maker("dev-0000000000000001"), T0() + hours(1));
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message().find("expired at"), std::string::npos)
      << expired.error().ToString();
  EXPECT_TRUE(store_->Enroll(*token, Maker("dev-0000000000000001"), T0() + hours(1) - seconds(1)));
}

TEST_F(DevicesTest, EnrollmentsRacingWithOneTokenMakeOneDevice) {
  auto token = store_->CreateEnrollmentToken({}, T0() + hours(1), T0());
  ASSERT_TRUE(token);
  // Each racer has its own connection to gateway.db, as separate requests would.
  std::atomic<int> enrolled{0};
  std::vector<std::thread> racers;
  for (int i = 0; i < 8; ++i) {
    racers.emplace_back([&, i] {
      auto own = GatewayStateStore::Open(dir_.path(), T0());
      ASSERT_TRUE(own);
      std::string id = "dev-000000000000000" + std::to_string(i);
      if ((*own)->Enroll(*token, Maker(id), T0())) {
        enrolled++;
      }
    });
  }
  for (auto& t : racers) {
    t.join();
  }
  EXPECT_EQ(enrolled.load(), 1);
  EXPECT_EQ(store_->Devices()->size(), 1u);
}

TEST_F(DevicesTest, ARevokeSticks) {
  auto token = store_->CreateEnrollmentToken({}, T0() + hours(1), T0());
  ASSERT_TRUE(store_->Enroll(*token, Maker("dev-0000000000000001"), T0()));
  ASSERT_TRUE(store_->RevokeDevice("dev-0000000000000001", T0() + hours(1)));
  ASSERT_TRUE(store_->RevokeDevice("dev-0000000000000001", T0() + hours(2)));
  auto d = store_->Device("dev-0000000000000001");
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->revoked_at);
  EXPECT_EQ(*d->revoked_at, T0() + hours(1));  // the first revoke's time
  EXPECT_EQ(store_->RevokeDevice("dev-ffffffffffffffff", T0()).error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(store_->Device("dev-ffffffffffffffff").error().code(), ErrorCode::kNotFound);
}

// What a device reports is taken only with a seq above the last one, also across a reopen; the
// online flag does not touch the report.
TEST_F(DevicesTest, AStateIsTakenOnlyWithAHigherSeq) {
  const std::string id = "dev-0000000000000001";
  auto none = store_->DeviceState(id);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->state.is_null());
  EXPECT_EQ(none->seq, 0u);
  EXPECT_FALSE(none->last_seen);

  ASSERT_TRUE(store_->SetDeviceOnline(id, true, T0()));
  EXPECT_EQ(store_->PutDeviceState(id, 10, {{"seq", 10}}, T0() + seconds(1)).value(), true);
  EXPECT_EQ(store_->PutDeviceState(id, 10, {{"seq", 10}, {"replayed", true}}, T0()).value(), false);
  EXPECT_EQ(store_->PutDeviceState(id, 9, {{"seq", 9}}, T0()).value(), false);
  auto reopened = GatewayStateStore::Open(dir_.path(), T0());
  ASSERT_TRUE(reopened);
  auto s = (*reopened)->DeviceState(id);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, (nlohmann::json{{"seq", 10}}));
  EXPECT_EQ(s->seq, 10u);
  EXPECT_TRUE(s->online);
  EXPECT_EQ(s->last_seen, T0() + seconds(1));
  ASSERT_TRUE(store_->SetDeviceOnline(id, false, T0() + seconds(2)));
  EXPECT_EQ(store_->DeviceState(id)->state, (nlohmann::json{{"seq", 10}}));
  EXPECT_FALSE(store_->DeviceState(id)->online);
  EXPECT_EQ(store_->PutDeviceState(id, 11, {{"seq", 11}}, T0() + seconds(3)).value(), true);
  EXPECT_EQ(store_->DeviceStates()->size(), 1u);
}

TEST_F(DevicesTest, DirectivesAndRolloutsAreKept) {
  const std::string id = "dev-0000000000000001";
  auto first = store_->DeviceDirective(id);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->version, 0u);
  EXPECT_EQ(first->desired, nlohmann::json::object());
  DeviceDirectiveRecord r = *first;
  r.version = 3;
  r.desired = {{"vib", {{"deployment", "dep-00000001"}}}};
  r.message = "{}";
  ASSERT_TRUE(store_->PutDeviceDirective(r));
  auto back = store_->DeviceDirective(id);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->version, 3u);
  EXPECT_EQ(back->desired, r.desired);
  EXPECT_EQ(back->message, "{}");

  // Rollouts are numbered in the order they started; replacing one keeps its place.
  ASSERT_TRUE(store_->PutRollout("dep-0000000b", "vib", {{"n", 1}}, T0()));
  ASSERT_TRUE(store_->PutRollout("dep-0000000a", "vib", {{"n", 2}}, T0()));
  ASSERT_TRUE(store_->PutRollout("dep-0000000b", "vib", {{"n", 3}}, T0() + seconds(1)));
  auto rollouts = store_->Rollouts();
  ASSERT_TRUE(rollouts);
  ASSERT_EQ(rollouts->size(), 2u);
  EXPECT_EQ((*rollouts)[0].deployment, "dep-0000000b");
  EXPECT_EQ((*rollouts)[0].started, 1u);
  EXPECT_EQ((*rollouts)[0].record, (nlohmann::json{{"n", 3}}));
  EXPECT_EQ((*rollouts)[1].deployment, "dep-0000000a");
  EXPECT_EQ((*rollouts)[1].started, 2u);
}

}  // namespace
}  // namespace airlock::gateway
