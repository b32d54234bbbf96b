#include "agent/model_store.hpp"

#include <gtest/gtest.h>

#include "core/digest.hpp"
#include "pkg/fixture.hpp"
#include "pkg/release.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using airlock::testing::ReadAll;
using airlock::testing::TempDir;
using airlock::testing::WriteAll;
using std::chrono::hours;

const TimePoint kNow = ParseRfc3339("2026-06-01T00:00:00Z").value();

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    publisher_ = std::make_unique<PrivateKey>(PrivateKey::Generate().value());
    trust::Root root;
    root.expires = kNow + hours(24 * 365);
    root.keys.emplace(publisher_->id(), publisher_->public_key());
    root.roles["root"] = {{publisher_->id()}, 1};
    root.roles["publisher"] = {{publisher_->id()}, 1};
    root_ = trust::SignedDocument::Wrap(root.ToJson());
    ASSERT_TRUE(root_.Sign(*publisher_));
    airlock::testing::WriteAffineProject(tmp_ / "src");
  }

  // Packs the affine project as version, signed with counter.
  fs::path Package(const std::string& version, std::uint64_t counter) {
    static auto ort = runtime::OnnxRuntime::Create().value();
    auto spec = pkg::LoadPackSpec(tmp_ / "src/airlock.yaml").value();
    spec.version = version;
    pkg::PackOptions options;
    options.output = tmp_ / ("affine-" + version + "-" + std::to_string(counter) + ".tar");
    options.force = true;
    EXPECT_TRUE(pkg::Pack(spec, options, ort.get()));
    pkg::SignOptions sign;
    sign.counter = counter;
    sign.created = kNow;
    sign.expires = kNow + hours(24 * 30);
    EXPECT_TRUE(pkg::SignPackage(options.output, {*publisher_}, sign));
    return options.output;
  }

  std::string Snapshot(const fs::path& dir) {
    std::string all;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      all += e.path().string() + (e.is_regular_file() ? ReadAll(e.path()) : "");
    }
    return Sha256Of(all).hex();
  }

  TempDir tmp_;
  std::unique_ptr<PrivateKey> publisher_;
  trust::SignedDocument root_;
};

TEST_F(ModelStoreTest, InstallsVersionsSideBySideAndRemembersTheCounter) {
  auto store = ModelStore::Open(tmp_ / "store").value();
  auto one = store.Install(Package("1.0.0", 1), root_, kNow, "linux/amd64");
  ASSERT_TRUE(one) << one.error().ToString();
  EXPECT_TRUE(fs::exists(one->path / "oci-layout"));
  auto two = store.Install(Package("1.1.0", 2), root_, kNow, "linux/arm64");
  ASSERT_TRUE(two) << two.error().ToString();
  auto list = store.List().value();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].version, "1.0.0");
  EXPECT_EQ(list[1].version, "1.1.0");
  EXPECT_EQ(store.TrustedCounter("affine").value(), 2u);
  // The same release again is fine.
  EXPECT_TRUE(store.Install(Package("1.1.0", 2), root_, kNow, "linux/amd64"));
}

TEST_F(ModelStoreTest, RefusalsLeaveTheStoreAsItWas) {
  auto store = ModelStore::Open(tmp_ / "store").value();
  ASSERT_TRUE(store.Install(Package("2.0.0", 5), root_, kNow, "linux/amd64"));
  std::string before = Snapshot(tmp_ / "store");

  auto rollback = store.Install(Package("1.0.0", 4), root_, kNow, "linux/amd64");
  ASSERT_FALSE(rollback);
  EXPECT_EQ(rollback.error().code(), ErrorCode::kVerification);
  EXPECT_NE(rollback.error().ToString().find("below the 5 this device already trusts"),
            std::string::npos);

  auto platform = store.Install(Package("2.1.0", 6), root_, kNow, "linux/riscv64");
  ASSERT_FALSE(platform);

  auto expired = store.Install(Package("2.2.0", 7), root_, kNow + hours(24 * 60), "linux/amd64");
  ASSERT_FALSE(expired);

  // Another package claiming an installed version.
  WriteAll(tmp_ / "src/README.md", "# changed\n");
  auto changed = store.Install(Package("2.0.0", 8), root_, kNow, "linux/amd64");
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error().code(), ErrorCode::kAlreadyExists);

  EXPECT_EQ(Snapshot(tmp_ / "store"), before);
  EXPECT_EQ(store.TrustedCounter("affine").value(), 5u);
  // The next good update still works.
  EXPECT_TRUE(store.Install(Package("3.0.0", 9), root_, kNow, "linux/amd64"));
}

TEST_F(ModelStoreTest, TamperedPackageIsNotInstalled) {
  auto store = ModelStore::Open(tmp_ / "store").value();
  fs::path tar = Package("1.0.0", 1);
  std::string bytes = ReadAll(tar);
  bytes[bytes.size() / 3] ^= 1;  // somewhere inside a blob
  WriteAll(tar, bytes);
  auto r = store.Install(tar, root_, kNow, "linux/amd64");
  ASSERT_FALSE(r);
  EXPECT_TRUE(store.List().value().empty());
  EXPECT_EQ(store.TrustedCounter("affine").value(), 0u);
}

}  // namespace
}  // namespace airlock::agent
