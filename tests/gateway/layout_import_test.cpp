// ImportLayout, and skopeo pulling what it imported from the gateway's registry: a package packed
// by `airlock pack` and signed by `airlock sign` comes out of the gateway byte for byte.

#include "gateway/layout_import.hpp"

#include <map>
#include <nlohmann/json.hpp>

#include "gateway/gateway_fixture.hpp"
#include "gateway/registry.hpp"

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;
using airlock::testing::CommandResult;
using airlock::testing::ReadAll;
using airlock::testing::RunAirlock;
using airlock::testing::RunCommand;
using nlohmann::json;

const PackageRef kRef{"models/vibration-anomaly", "1.0.0"};

class LayoutImportTest : public CacheFixture {
 protected:
  void SetUp() override {
    CacheFixture::SetUp();
    Reopen(64 << 20);
    fs::path yaml =
        airlock::testing::SourceDir() / "examples" / "vibration-anomaly" / "airlock.yaml";
    CommandResult packed = RunAirlock({"pack", "-f", yaml.string(), "-o", layout().string()});
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
    fs::create_directories(dir_.path() / "keys");
    ASSERT_EQ(RunAirlock({"keygen", (dir_.path() / "keys" / "publisher").string()}).exit_code, 0);
    CommandResult signed_ =
        RunAirlock({"sign", "-k", (dir_.path() / "keys" / "publisher.key").string(), "--counter",
                    "1", "-o", (dir_.path() / "release.json").string(), layout().string()});
    ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  }

  fs::path layout() const { return dir_.path() / "layout"; }

  // Every blob file of a layout, by name.
  static std::map<std::string, std::string> Blobs(const fs::path& l) {
    std::map<std::string, std::string> out;
    for (const auto& f : fs::directory_iterator(l / "blobs" / "sha256")) {
      out[f.path().filename().string()] = ReadAll(f.path());
    }
    return out;
  }

  // The digest index.json tags 1.0.0.
  std::string TaggedIndex() const {
    json top = json::parse(ReadAll(layout() / "index.json"));
    for (const auto& m : top["manifests"]) {
      if (m.contains("annotations") &&
          m["annotations"].value("org.opencontainers.image.ref.name", "") == "1.0.0") {
        return m["digest"].get<std::string>();
      }
    }
    return "";
  }
};

TEST_F(LayoutImportTest, APackedAndSignedPackageIsImportedWhole) {
  auto copied = ImportLayout(*cache_, layout(), "1.0.0", kRef);
  ASSERT_TRUE(copied) << copied.error().ToString();
  EXPECT_GT(*copied, 0u);
  auto tagged = cache_->GetManifest(kRef.repository, "1.0.0");
  ASSERT_TRUE(tagged);
  EXPECT_EQ(tagged->digest.ToString(), TaggedIndex());
  // The release document kept with the package is the signed one, byte for byte.
  EXPECT_EQ(*cache_->Release(kRef), ReadAll(dir_.path() / "release.json"));
  // Importing again copies nothing: every blob is cached.
  EXPECT_EQ(*ImportLayout(*cache_, layout(), "1.0.0", kRef), 0u);
  EXPECT_EQ(ImportLayout(*cache_, layout(), "9.9.9", kRef).error().code(), ErrorCode::kNotFound);
}

TEST_F(LayoutImportTest, ATarLayoutReadsLikeTheDirectoryAndIsSelectableByDigest) {
  fs::path tar = dir_.path() / "package.tar";
  CommandResult packed = RunCommand({"tar", "-cf", tar.string(), "-C", layout().string(), "."});
  ASSERT_EQ(packed.exit_code, 0) << packed.err;
  auto files = LayoutFiles::Open(tar);
  ASSERT_TRUE(files) << files.error().ToString();
  auto digest = Digest::Parse(TaggedIndex());
  ASSERT_TRUE(digest);
  auto spec = ReadLayoutPackage(**files, {"", *digest}, kRef);
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->index, *digest);
  EXPECT_EQ(spec->release, ReadAll(dir_.path() / "release.json"));
  // Reading touched nothing in the cache.
  EXPECT_TRUE(cache_->ListPackages()->empty());
  auto copied = LoadLayoutPackage(*cache_, **files, *spec);
  ASSERT_TRUE(copied) << copied.error().ToString();
  EXPECT_GT(*copied, 0u);
  ASSERT_TRUE(cache_->GetManifest(kRef.repository, "1.0.0"));
  // An unknown digest, and a path that is not there.
  EXPECT_EQ(ReadLayoutPackage(**files, {"", Sha256Of("nothing")}, kRef).error().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(LayoutFiles::Open(dir_.path() / "absent.tar").error().code(), ErrorCode::kNotFound);
  // A file that is not a tar is refused as such.
  airlock::testing::WriteAll(dir_.path() / "junk.tar", std::string(1024, 'x'));
  EXPECT_EQ(LayoutFiles::Open(dir_.path() / "junk.tar").error().code(), ErrorCode::kCorrupt);
}

TEST_F(LayoutImportTest, ATamperedBlobIsRefusedAndThePackageNotServed) {
  // The largest blob is the model's weights.
  fs::path victim;
  std::uintmax_t largest = 0;
  for (const auto& f : fs::directory_iterator(layout() / "blobs" / "sha256")) {
    if (f.file_size() > largest) {
      largest = f.file_size();
      victim = f.path();
    }
  }
  std::string original = ReadAll(victim);
  std::string tampered = original;
  tampered[tampered.size() / 2] ^= 0x01;
  airlock::testing::WriteAll(victim, tampered);

  auto refused = ImportLayout(*cache_, layout(), "1.0.0", kRef);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorrupt) << refused.error().ToString();
  EXPECT_EQ(cache_->GetManifest(kRef.repository, "1.0.0").error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(cache_->HasBlob(Digest::FromHex(victim.filename().string())));
  EXPECT_EQ(cache_->Usage()->download_bytes, 0u);

  // What was committed before the refusal stays; the rest (the refused blob among it) is missing.
  auto missing = cache_->MissingBlobs(kRef);
  ASSERT_TRUE(missing);
  std::uint64_t missing_bytes = 0;
  for (const auto& [digest, size] : *missing) {
    missing_bytes += size;
  }
  EXPECT_GE(missing_bytes, largest);
  EXPECT_LT(missing_bytes, (*cache_->ListPackages())[0].bytes);

  airlock::testing::WriteAll(victim, original);
  auto again = ImportLayout(*cache_, layout(), "1.0.0", kRef);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*again, missing_bytes);  // only what was missing travels again
  EXPECT_TRUE(cache_->GetManifest(kRef.repository, "1.0.0"));
}

TEST_F(LayoutImportTest, SkopeoPullsTheCachedPackageByteForByte) {
  if (RunCommand({"skopeo", "--version"}).exit_code != 0) {
    GTEST_SKIP() << "skopeo is not installed (scripts/bootstrap installs it)";
  }
  ASSERT_TRUE(ImportLayout(*cache_, layout(), "1.0.0", kRef));
  RegistryOptions options;
  options.port = 0;
  auto registry = DeviceRegistry::Start(*cache_, options);
  ASSERT_TRUE(registry) << registry.error().ToString();
  std::string src = "docker://127.0.0.1:" + std::to_string((*registry)->port()) + "/" +
                    kRef.repository + ":1.0.0";
  fs::path copy = dir_.path() / "copy";
  fs::create_directories(dir_.path() / "skopeo-tmp");
  CommandResult pulled = RunCommand(
      {"skopeo", "--insecure-policy", "--tmpdir", (dir_.path() / "skopeo-tmp").string(), "copy",
       "-q", "--all", "--src-tls-verify=false", src, "oci:" + copy.string() + ":1.0.0"},
      {}, 180);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;

  auto original = Blobs(layout());
  auto copied = Blobs(copy);
  ASSERT_FALSE(copied.empty());
  for (const auto& [name, bytes] : copied) {
    ASSERT_TRUE(original.count(name)) << name << " is not in the original";
    EXPECT_TRUE(original[name] == bytes) << name;
  }
  // All but the release manifest, its document and its empty config, which skopeo does not
  // follow (a device finds them by the referrers API instead).
  EXPECT_EQ(copied.size() + 3, original.size());
  std::string copied_index;
  json top = json::parse(ReadAll(copy / "index.json"));
  for (const auto& m : top["manifests"]) {
    copied_index = m["digest"].get<std::string>();
  }
  EXPECT_EQ(copied_index, TaggedIndex());

  // And the same copy passes `airlock inspect` (it reads and checks the package's structure).
  CommandResult inspected = RunAirlock({"inspect", copy.string()});
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
}

}  // namespace
}  // namespace airlock::gateway
