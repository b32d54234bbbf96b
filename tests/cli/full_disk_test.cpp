// A full disk: the command says so, leaves no half-written file, and keeps what was there.
// Uses a small tmpfs, which needs root (as in CI); skipped where it cannot be mounted.

#include <gtest/gtest.h>

#include <algorithm>

#include "core/digest.hpp"
#include "support/small_disk.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FullDiskTest, PackFailsCleanlyAndKeepsThePreviousPackage) {
  TempDir tmp;
  fs::path disk = tmp / "disk";
  SmallDisk small(disk, "600k");
  if (!small.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  fs::path model = SourceDir() / "examples/visual-inspection/model.onnx";  // 158 KiB
  std::vector<std::string> pack = {"-q",     "pack",   "--no-validate", "--model", model.string(),
                                   "--name", "vi",     "--version",     "1",       "-o",
                                   "vi.tar", "--force"};
  auto first = RunAirlock(pack, disk);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::string before = Sha256Of(ReadAll(disk / "vi.tar")).hex();

  // Leave less room than a staged copy of the model needs.
  WriteAll(disk / "filler", std::string(600 * 1024 - 170 * 1024 - 64 * 1024, 'x'));
  auto full = RunAirlock(pack, disk);
  EXPECT_EQ(full.exit_code, 1);
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  EXPECT_EQ(Names(disk), (std::vector<std::string>{"filler", "vi.tar"}));
  EXPECT_EQ(Sha256Of(ReadAll(disk / "vi.tar")).hex(), before);

  // Signing rewrites the tar: it fails the same way and keeps the unsigned one.
  ASSERT_EQ(RunAirlock({"keygen", (tmp / "key").string()}).exit_code, 0);
  auto sign =
      RunAirlock({"sign", "vi.tar", "-k", (tmp / "key.key").string(), "--counter", "1"}, disk);
  EXPECT_EQ(sign.exit_code, 1);
  EXPECT_NE(sign.err.find("No space left on device"), std::string::npos) << sign.err;
  EXPECT_EQ(Names(disk), (std::vector<std::string>{"filler", "vi.tar"}));
  EXPECT_EQ(Sha256Of(ReadAll(disk / "vi.tar")).hex(), before);

  auto dir = RunAirlock({"-q", "pack", "--no-validate", "--model", model.string(), "--name", "vi",
                         "--version", "1", "-o", "vidir"},
                        disk);
  EXPECT_EQ(dir.exit_code, 1);
  EXPECT_EQ(Names(disk), (std::vector<std::string>{"filler", "vi.tar"}));

  // With room again, the same command works.
  fs::remove(disk / "filler");
  EXPECT_EQ(RunAirlock(pack, disk).exit_code, 0);
  EXPECT_EQ(Sha256Of(ReadAll(disk / "vi.tar")).hex(), before);
}

}  // namespace
}  // namespace airlock::testing
