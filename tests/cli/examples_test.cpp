// The committed examples pack, validate and run exactly as the README and `make run` say.

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/yaml.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

class ExampleTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::filesystem::path Yaml() const {
    return SourceDir() / "examples" / GetParam() / "airlock.yaml";
  }
  TempDir tmp_;
};

TEST_P(ExampleTest, PacksReproduciblyAndItsSamplesRun) {
  auto a = RunAirlock({"pack", "-f", Yaml().string(), "-o", (tmp_ / "a.tar").string()});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto b = RunAirlock({"pack", "-f", Yaml().string(), "-o", (tmp_ / "b.tar").string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(ReadAll(tmp_ / "a.tar"), ReadAll(tmp_ / "b.tar"));

  auto run = RunAirlock({"run", (tmp_ / "a.tar").string()});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("sample(s) reproduce their expected outputs"), std::string::npos);

  auto inspect = RunAirlock({"inspect", "--json", (tmp_ / "a.tar").string()});
  ASSERT_EQ(inspect.exit_code, 0);
  auto j = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(j["name"], GetParam());
  EXPECT_TRUE(j.contains("baseline"));
  EXPECT_GE(j["samples"]["sets"].size(), 3u);
  EXPECT_EQ(j["variants"].size(), 2u);

  // The lineage's metrics are the figures the example's annotations state.
  ASSERT_TRUE(j.contains("lineage")) << inspect.out;
  EXPECT_EQ(j["lineage"]["training_run"], GetParam() + "-2026-11-22");
  auto yaml = LoadYamlFile(Yaml()).value();
  const auto& metrics = j["lineage"]["metrics"];
  EXPECT_GE(metrics.size(), 3u);
  for (const auto& [name, value] : metrics.items()) {
    std::string stated = yaml["annotations"].value("ai.airlock.example." + name, "");
    ASSERT_FALSE(stated.empty()) << name << " has no annotation";
    EXPECT_DOUBLE_EQ(value.get<double>(), std::stod(stated)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Examples, ExampleTest,
                         ::testing::Values("visual-inspection", "vibration-anomaly"),
                         [](const auto& p) {
                           std::string n = p.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace airlock::testing
