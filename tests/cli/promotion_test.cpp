// The channel document `airlock promote` signs, from what the hub holds: the first promotion, a
// newer version, a rollback, --keep, co-signing a pending proposal, and the refusals.

#include "cli/promotion.hpp"

#include <gtest/gtest.h>

#include "core/digest.hpp"

namespace airlock::cli {
namespace {

using std::chrono::hours;

const TimePoint kNow = TimePoint(std::chrono::seconds(1800000000));

trust::ChannelEntry Entry(const std::string& version, std::uint64_t counter) {
  return {
      .version = version, .release_counter = counter, .release = Sha256Of("release " + version)};
}

// The model's releases on the hub: 1.0.0 (#1), 1.1.0 (#2), 1.2.0 (#3).
std::vector<trust::ChannelEntry> Releases() {
  return {Entry("1.2.0", 3), Entry("1.1.0", 2), Entry("1.0.0", 1)};
}

PromotionRequest Request(const std::string& version, std::size_t keep = 3) {
  return {.model = "vibration-anomaly",
          .channel = "production",
          .version = version,
          .now = kNow,
          .expires = kNow + hours(24 * 30),
          .keep = keep};
}

trust::Channel ChannelAt(std::uint64_t version, std::vector<trust::ChannelEntry> releases) {
  trust::Channel c;
  c.model = "vibration-anomaly";
  c.name = "production";
  c.version = version;
  c.expires = kNow + hours(24);
  c.releases = std::move(releases);
  return c;
}

std::vector<std::string> Versions(const trust::Channel& c) {
  std::vector<std::string> out;
  for (const auto& e : c.releases) {
    out.push_back(e.version);
  }
  return out;
}

TEST(PlanPromotion, TheFirstPromotionIsVersionOneWithOneRelease) {
  auto plan = PlanPromotion(Request("1.0.0"), Releases(), {});
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->kind, PromotionPlan::Kind::kNew);
  EXPECT_EQ(plan->channel.version, 1u);
  EXPECT_EQ(Versions(plan->channel), std::vector<std::string>{"1.0.0"});
  EXPECT_EQ(plan->channel.releases[0].release, Sha256Of("release 1.0.0"));
  EXPECT_EQ(plan->channel.releases[0].release_counter, 1u);
  EXPECT_EQ(plan->channel.expires, kNow + hours(24 * 30));
  EXPECT_FALSE(plan->previous);
  // The document is the channel body, unsigned, and parses back to the same channel.
  EXPECT_TRUE(plan->document.signatures().empty());
  auto body = trust::Channel::FromJson(plan->document.body());
  ASSERT_TRUE(body) << body.error().ToString();
  EXPECT_EQ(body->model, "vibration-anomaly");
  EXPECT_EQ(body->name, "production");
  EXPECT_EQ(Versions(*body), std::vector<std::string>{"1.0.0"});
  EXPECT_EQ(DescribeCurrent(plan->channel, plan->previous),
            "production of vibration-anomaly is now version 1: 1.0.0 (no rollback targets)");
}

TEST(PlanPromotion, ANewerVersionGoesFirstAndTheOldOnesStayAsRollbackTargets) {
  ChannelOnHub hub{.current = ChannelAt(3, {Entry("1.0.0", 1)}), .pending = std::nullopt};
  auto plan = PlanPromotion(Request("1.1.0"), Releases(), hub);
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->channel.version, 4u);
  EXPECT_EQ(Versions(plan->channel), (std::vector<std::string>{"1.1.0", "1.0.0"}));
  ASSERT_TRUE(plan->previous);
  EXPECT_EQ(plan->previous->version, "1.0.0");
  EXPECT_EQ(DescribeCurrent(plan->channel, plan->previous),
            "production of vibration-anomaly is now version 4: 1.1.0 (rollback targets 1.0.0)");
}

TEST(PlanPromotion, ARollbackIsANewVersionPointingBackAtTheOlderRelease) {
  ChannelOnHub hub{.current = ChannelAt(4, {Entry("1.1.0", 2), Entry("1.0.0", 1)}),
                   .pending = std::nullopt};
  auto plan = PlanPromotion(Request("1.0.0"), Releases(), hub);
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->kind, PromotionPlan::Kind::kNew);
  EXPECT_EQ(plan->channel.version, 5u);  // versions only grow, even backwards in releases
  EXPECT_EQ(Versions(plan->channel), (std::vector<std::string>{"1.0.0", "1.1.0"}));
  EXPECT_EQ(DescribeCurrent(plan->channel, plan->previous),
            "production of vibration-anomaly is now version 5: 1.0.0, rolled back from 1.1.0 "
            "(rollback targets 1.1.0)");
}

TEST(PlanPromotion, KeepBoundsTheReleasesListed) {
  ChannelOnHub hub{.current = ChannelAt(7, {Entry("1.1.0", 2), Entry("1.0.0", 1)}),
                   .pending = std::nullopt};
  auto three = PlanPromotion(Request("1.2.0", 3), Releases(), hub);
  ASSERT_TRUE(three);
  EXPECT_EQ(Versions(three->channel), (std::vector<std::string>{"1.2.0", "1.1.0", "1.0.0"}));
  auto two = PlanPromotion(Request("1.2.0", 2), Releases(), hub);
  ASSERT_TRUE(two);
  EXPECT_EQ(Versions(two->channel), (std::vector<std::string>{"1.2.0", "1.1.0"}));
  auto one = PlanPromotion(Request("1.2.0", 1), Releases(), hub);
  ASSERT_TRUE(one);
  EXPECT_EQ(Versions(one->channel), std::vector<std::string>{"1.2.0"});
  EXPECT_EQ(DescribeCurrent(one->channel, one->previous),
            "production of vibration-anomaly is now version 8: 1.2.0 (no rollback targets)");
  auto none = PlanPromotion(Request("1.2.0", 0), Releases(), hub);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kInvalidArgument);
}

TEST(PlanPromotion, APendingProposalForTheSameReleaseIsCoSignedAsItIs) {
  auto alice = PrivateKey::Generate();
  auto bob = PrivateKey::Generate();
  ASSERT_TRUE(alice && bob);
  trust::Channel proposed = ChannelAt(4, {Entry("1.1.0", 2), Entry("1.0.0", 1)});
  proposed.expires = kNow + hours(24 * 7);  // the proposer's expiry, not this request's
  trust::SignedDocument pending = trust::SignedDocument::Wrap(proposed.ToJson());
  ASSERT_TRUE(pending.Sign(*alice));
  ChannelOnHub hub{.current = ChannelAt(3, {Entry("1.0.0", 1)}), .pending = pending};

  auto plan = PlanPromotion(Request("1.1.0"), Releases(), hub);
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->kind, PromotionPlan::Kind::kCosign);
  EXPECT_EQ(plan->channel.version, 4u);
  EXPECT_EQ(plan->channel.expires, kNow + hours(24 * 7));
  ASSERT_TRUE(plan->document.Sign(*bob));
  // Both signatures cover the same bytes: the proposer's is kept.
  ASSERT_EQ(plan->document.signatures().size(), 2u);
  EXPECT_EQ(plan->document.signatures()[0].keyid, alice->id());
  EXPECT_EQ(plan->document.SignedBytes().value(), pending.SignedBytes().value());
  EXPECT_EQ(DescribePending(plan->channel, 1, 2, "release-manager"),
            "proposed production version 4 of vibration-anomaly → 1.1.0: 1 of 2 "
            "release-manager signatures; another release manager approves with the same command");
  EXPECT_EQ(DescribePending(plan->channel, 1, 3, "release-manager"),
            "proposed production version 4 of vibration-anomaly → 1.1.0: 1 of 3 "
            "release-manager signatures; 2 more release managers approve with the same command");
}

TEST(PlanPromotion, APendingProposalForAnotherReleaseOrExpiredIsReplaced) {
  trust::Channel other = ChannelAt(4, {Entry("1.2.0", 3), Entry("1.0.0", 1)});
  ChannelOnHub hub{.current = ChannelAt(3, {Entry("1.0.0", 1)}),
                   .pending = trust::SignedDocument::Wrap(other.ToJson())};
  auto plan = PlanPromotion(Request("1.1.0"), Releases(), hub);
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_EQ(plan->kind, PromotionPlan::Kind::kNew);
  EXPECT_EQ(Versions(plan->channel), (std::vector<std::string>{"1.1.0", "1.0.0"}));
  ASSERT_TRUE(plan->replaced_pending);
  EXPECT_EQ(*plan->replaced_pending, "1.2.0");

  trust::Channel stale = ChannelAt(4, {Entry("1.1.0", 2)});
  stale.expires = kNow - hours(1);
  hub.pending = trust::SignedDocument::Wrap(stale.ToJson());
  auto fresh = PlanPromotion(Request("1.1.0"), Releases(), hub);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->kind, PromotionPlan::Kind::kNew);
  EXPECT_EQ(fresh->channel.expires, kNow + hours(24 * 30));
}

TEST(PlanPromotion, AVersionWithoutAReleaseOnTheHubIsRefused) {
  auto plan = PlanPromotion(Request("2.0.0"), Releases(), {});
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(plan.error().message().find("vibration-anomaly 2.0.0 has no release on the hub"),
            std::string::npos)
      << plan.error().message();
  EXPECT_NE(plan.error().message().find("releases: 1.2.0, 1.1.0, 1.0.0"), std::string::npos);
  EXPECT_NE(plan.error().message().find("airlock sign"), std::string::npos);

  auto nothing = PlanPromotion(Request("1.0.0"), {}, {});
  ASSERT_FALSE(nothing);
  EXPECT_NE(nothing.error().message().find("it has no releases at all"), std::string::npos);
}

TEST(PlanPromotion, PromotingWhatTheChannelAlreadyPointsAtIsRefused) {
  ChannelOnHub hub{.current = ChannelAt(4, {Entry("1.1.0", 2), Entry("1.0.0", 1)}),
                   .pending = std::nullopt};
  auto plan = PlanPromotion(Request("1.1.0"), Releases(), hub);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(plan.error().message().find("already points at 1.1.0 (channel version 4)"),
            std::string::npos)
      << plan.error().message();
}

TEST(PlanPromotion, BadChannelNamesAndExpiriesAreRefused) {
  PromotionRequest bad_name = Request("1.0.0");
  bad_name.channel = "Production";
  EXPECT_EQ(PlanPromotion(bad_name, Releases(), {}).error().code(), ErrorCode::kInvalidArgument);
  PromotionRequest expired = Request("1.0.0");
  expired.expires = kNow;
  EXPECT_EQ(PlanPromotion(expired, Releases(), {}).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace airlock::cli
