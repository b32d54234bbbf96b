#include "core/rollout_strategy.hpp"

#include <gtest/gtest.h>

namespace airlock {
namespace {

using nlohmann::json;

TEST(DeviceShare, ParsesCountsAndPercentagesAndRefusesTheRest) {
  EXPECT_EQ(ParseDeviceShare("1").value(), (DeviceShare{1, false}));
  EXPECT_EQ(ParseDeviceShare("9999999").value(), (DeviceShare{9999999, false}));
  EXPECT_EQ(ParseDeviceShare("10%").value(), (DeviceShare{10, true}));
  EXPECT_EQ(ParseDeviceShare("100%").value(), (DeviceShare{100, true}));
  for (const char* bad : {"", "0", "0%", "01", "101%", "10000000", "-1", "1.5", "%", "5 %", "x"}) {
    auto r = ParseDeviceShare(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(DeviceShare, PercentagesRoundUpAndCountsAreCapped) {
  EXPECT_EQ((DeviceShare{10, true}).Of(3), 1u);  // 0.3 of a device is one device
  EXPECT_EQ((DeviceShare{10, true}).Of(10), 1u);
  EXPECT_EQ((DeviceShare{10, true}).Of(11), 2u);
  EXPECT_EQ((DeviceShare{100, true}).Of(7), 7u);
  EXPECT_EQ((DeviceShare{50, true}).Of(0), 0u);
  EXPECT_EQ((DeviceShare{5, false}).Of(3), 3u);
  EXPECT_EQ((DeviceShare{1, false}).Of(3), 1u);
  EXPECT_EQ((DeviceShare{10, true}).ToString(), "10%");
  EXPECT_EQ((DeviceShare{3, false}).ToString(), "3");
}

TEST(RolloutStrategy, AbsentKeysTakeTheDefaults) {
  auto s = RolloutStrategy::FromJson(json::object()).value();
  EXPECT_EQ(s, RolloutStrategy{});
  EXPECT_EQ(s.ToJson(), json::parse(R"({"waves": ["1", "100%"], "max_in_flight": 10,
      "health_window": "5m", "failure_threshold": "10%"})"));
}

TEST(RolloutStrategy, RoundTripsEveryKey) {
  json j = json::parse(R"({"waves": ["1", "10%", "100%"], "max_in_flight": 2,
      "health_window": "1h30m", "failure_threshold": "3",
      "shadow": {"min_agreement": 0.985, "min_compared": 200}})");
  auto s = RolloutStrategy::FromJson(j).value();
  EXPECT_EQ(s.waves.size(), 3u);
  EXPECT_EQ(s.max_in_flight, 2u);
  EXPECT_EQ(s.health_window, std::chrono::seconds(5400));
  EXPECT_EQ(s.failure_threshold, (DeviceShare{3, false}));
  ASSERT_TRUE(s.shadow);
  EXPECT_EQ(s.shadow->min_compared, 200u);
  EXPECT_EQ(s.ToJson(), j);
  EXPECT_EQ(RolloutStrategy::FromJson(s.ToJson()).value(), s);
  // Durations come back in their shortest form.
  EXPECT_EQ(RolloutStrategy::FromJson({{"health_window", "300s"}})->ToJson()["health_window"],
            "5m");
  EXPECT_EQ(RolloutStrategy::FromJson({{"health_window", "0s"}})->ToJson()["health_window"], "0s");
}

TEST(RolloutStrategy, RefusesBadValuesNamingTheKey) {
  const std::pair<json, const char*> cases[] = {
      {json::array(), "\"strategy\" must be an object"},
      {{{"waves", json::array()}}, "strategy.waves"},
      {{{"waves", {"1", "0"}}}, "strategy.waves"},
      {{{"waves", {1, "100%"}}}, "strategy.waves"},
      {{{"waves", "100%"}}, "strategy.waves"},
      {{{"max_in_flight", 0}}, "strategy.max_in_flight"},
      {{{"max_in_flight", -3}}, "strategy.max_in_flight"},
      {{{"max_in_flight", "2"}}, "strategy.max_in_flight"},
      {{{"max_in_flight", 1.5}}, "strategy.max_in_flight"},
      {{{"health_window", "soon"}}, "strategy.health_window"},
      {{{"health_window", "1500ms"}}, "strategy.health_window"},
      {{{"health_window", 300}}, "strategy.health_window"},
      {{{"failure_threshold", "0"}}, "strategy.failure_threshold"},
      {{{"failure_threshold", "120%"}}, "strategy.failure_threshold"},
      {{{"shadow", {{"min_agreement", 1.2}, {"min_compared", 10}}}}, "strategy.shadow"},
      {{{"shadow", {{"min_agreement", 0.9}, {"min_compared", 0}}}}, "strategy.shadow"},
      {{{"shadow", {{"min_agreement", 0.9}}}}, "strategy.shadow"},
      {{{"shadow", {{"min_agreement", 0.9}, {"min_compared", 5}, {"x", 1}}}}, "strategy.shadow"},
      {{{"canary", "1"}}, "strategy.canary: unknown"},
  };
  for (const auto& [j, want] : cases) {
    auto r = RolloutStrategy::FromJson(j);
    ASSERT_FALSE(r) << j.dump();
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << j.dump();
    EXPECT_NE(r.error().message().find(want), std::string::npos) << r.error().message();
  }
}

TEST(RolloutStrategy, WavesResolveAgainstTheSelectedDevices) {
  auto waves = [](std::vector<std::string> w) {
    return RolloutStrategy::FromJson({{"waves", w}}).value();
  };
  using Ends = std::vector<std::size_t>;
  EXPECT_EQ(waves({"1", "50%", "100%"}).WaveEnds(5), (Ends{1, 3, 5}));
  EXPECT_EQ(waves({"1", "50%", "100%"}).WaveEnds(1), (Ends{1, 1, 1}));
  EXPECT_EQ(waves({"1", "50%", "100%"}).WaveEnds(0), (Ends{0, 0, 0}));
  EXPECT_EQ(waves({"10", "5", "20%"}).WaveEnds(30), (Ends{10, 10, 30}));  // never below, last all
  EXPECT_EQ(waves({"100%"}).WaveEnds(7), (Ends{7}));
  EXPECT_EQ(RolloutStrategy{}.FailureLimit(5), 1u);   // 10% of 5, rounded up
  EXPECT_EQ(RolloutStrategy{}.FailureLimit(0), 1u);   // at least one
  EXPECT_EQ(RolloutStrategy{}.FailureLimit(25), 3u);
}

TEST(Selector, EveryLabelMustMatchAndEmptySelectsAll) {
  Selector line3 = ParseSelector({{"line", "3"}, {"cam", "top"}}).value();
  EXPECT_TRUE(Selects(line3, {{"line", "3"}, {"cam", "top"}, {"site", "x"}}));
  EXPECT_FALSE(Selects(line3, {{"line", "3"}}));
  EXPECT_FALSE(Selects(line3, {{"line", "4"}, {"cam", "top"}}));
  EXPECT_TRUE(Selects(ParseSelector(json::object()).value(), {}));
  EXPECT_FALSE(ParseSelector(json::array()));
  auto bad = ParseSelector({{"line", 3}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("selector label line"), std::string::npos);
}

}  // namespace
}  // namespace airlock
