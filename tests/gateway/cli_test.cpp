// The airlock-gateway binary's cache commands, as docs/gateway.md runs them.

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;
using airlock::testing::CommandResult;
using airlock::testing::RunAirlock;
using airlock::testing::RunCommand;

CommandResult Gateway(std::vector<std::string> args) {
  args.insert(args.begin(), AIRLOCK_GATEWAY_BINARY);
  return RunCommand(args, {}, 60);
}

TEST(GatewayCli, LoadPinListAndUnpinACachedPackage) {
  airlock::testing::TempDir dir;
  fs::path yaml = airlock::testing::SourceDir() / "examples" / "vibration-anomaly" / "airlock.yaml";
  ASSERT_EQ(
      RunAirlock({"pack", "-f", yaml.string(), "-o", (dir.path() / "layout").string()}).exit_code,
      0);
  std::string cache = (dir.path() / "cache").string();
  CommandResult loaded =
      Gateway({"cache", "load", (dir.path() / "layout").string(), "--tag", "1.0.0", "--as",
               "models/vibration-anomaly:1.0.0", "--cache", cache});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_NE(loaded.out.find("loaded"), std::string::npos);
  ASSERT_EQ(
      Gateway({"cache", "pin", "deployment-42", "models/vibration-anomaly:1.0.0", "--cache", cache})
          .exit_code,
      0);
  CommandResult listed = Gateway({"cache", "ls", "--cache", cache});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("models/vibration-anomaly:1.0.0"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("complete"), std::string::npos);
  EXPECT_NE(listed.out.find("deployment-42"), std::string::npos);
  CommandResult unpinned = Gateway({"cache", "unpin", "deployment-42", "--cache", cache});
  EXPECT_EQ(unpinned.exit_code, 0);
  EXPECT_NE(unpinned.out.find("removed 1 pin(s)"), std::string::npos) << unpinned.out;
}

TEST(GatewayCli, BadInputIsAClearErrorWithTheUsageExitCode) {
  airlock::testing::TempDir dir;
  std::string cache = (dir.path() / "cache").string();
  CommandResult bad_ref = Gateway({"cache", "pin", "d1", "no-tag", "--cache", cache});
  EXPECT_EQ(bad_ref.exit_code, 2);
  EXPECT_NE(bad_ref.err.find("is not REPOSITORY:TAG"), std::string::npos) << bad_ref.err;
  CommandResult exposed = Gateway({"registry", "--address", "0.0.0.0", "--cache", cache});
  EXPECT_EQ(exposed.exit_code, 2);
  EXPECT_NE(exposed.err.find("loopback"), std::string::npos) << exposed.err;
  CommandResult missing = Gateway({"cache", "pin", "d1", "models/none:1", "--cache", cache});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("not in the cache"), std::string::npos) << missing.err;
}

// docs/trust.md, "Rotating the root": the gateway takes a rotated root only when it verifies
// against the one it trusts, keeps it in DATA/roots/, and shows it.
TEST(GatewayCli, RootUpdateTakesOnlyAValidRotationAndKeepsIt) {
  airlock::testing::TempDir dir;
  auto airlock = [&](std::vector<std::string> args) { return RunAirlock(args, dir.path()); };
  for (const char* k : {"root", "alice", "carol", "stranger"}) {
    ASSERT_EQ(airlock({"keygen", k}).exit_code, 0);
  }
  ASSERT_EQ(airlock({"root", "init", "--root-key", "root.key", "--publisher", "alice.pub", "-o",
                     "root.json"})
                .exit_code,
            0);
  ASSERT_EQ(airlock({"root", "rotate", "--from", "root.json", "--publisher", "carol.pub", "-k",
                     "root.key", "-o", "root.2.json"})
                .exit_code,
            0);
  ASSERT_EQ(airlock({"root", "rotate", "--from", "root.json", "--publisher", "carol.pub", "-k",
                     "stranger.key", "-o", "forged.json"})
                .exit_code,
            0);
  std::string config = (dir.path() / "gateway.yaml").string();
  airlock::testing::WriteAll(dir.path() / "gateway.yaml",
                             "name: plant-1\ndata: " + (dir.path() / "data").string() +
                                 "\nroot: " + (dir.path() / "root.json").string() + "\n");

  CommandResult forged =
      Gateway({"root", "update", (dir.path() / "forged.json").string(), "--config", config});
  EXPECT_NE(forged.exit_code, 0);
  EXPECT_NE(forged.err.find("by the keys of the root it replaces"), std::string::npos)
      << forged.err;
  EXPECT_FALSE(fs::exists(dir.path() / "data" / "roots" / "2.root.json"));

  CommandResult updated =
      Gateway({"root", "update", (dir.path() / "root.2.json").string(), "--config", config});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  EXPECT_NE(updated.out.find("trusted root version 2 (was 1)"), std::string::npos) << updated.out;
  EXPECT_NE(updated.out.find("keys removed from: publisher"), std::string::npos) << updated.out;
  EXPECT_TRUE(fs::exists(dir.path() / "data" / "roots" / "2.root.json"));

  CommandResult again =
      Gateway({"root", "update", (dir.path() / "root.2.json").string(), "--config", config});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("already trusted"), std::string::npos) << again.out;

  CommandResult shown = Gateway({"root", "show", "--config", config});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("root version 2"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("1 rotation(s)"), std::string::npos) << shown.out;
}

}  // namespace
}  // namespace airlock::gateway
