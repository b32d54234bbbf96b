#include "pkg/release.hpp"

#include <gtest/gtest.h>

#include "core/digest.hpp"
#include "pkg/fixture.hpp"
#include "pkg/layout.hpp"

namespace airlock::pkg {
namespace {

namespace fs = std::filesystem;
using airlock::testing::ReadAll;
using airlock::testing::TempDir;
using airlock::testing::WriteAll;
using std::chrono::hours;

const TimePoint kNow = ParseRfc3339("2026-06-01T00:00:00Z").value();

class ReleaseTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto ort = runtime::OnnxRuntime::Create().value();
    auto spec = LoadPackSpec(airlock::testing::WriteAffineProject(tmp_ / "src")).value();
    package_ = tmp_ / (GetParam() ? "affine.tar" : "affine");
    PackOptions options;
    options.output = package_;
    ASSERT_TRUE(Pack(spec, options, ort.get()));
    for (int i = 0; i < 3; ++i) {
      publishers_.push_back(PrivateKey::Generate().value());
    }
    root_key_ = std::make_unique<PrivateKey>(PrivateKey::Generate().value());
    root_ = MakeRoot(2);
  }

  // A root whose publisher role is publishers_ with the given threshold.
  trust::SignedDocument MakeRoot(int threshold) {
    trust::Root root;
    root.expires = kNow + hours(24 * 365);
    root.keys.emplace(root_key_->id(), root_key_->public_key());
    root.roles["root"] = {{root_key_->id()}, 1};
    trust::RoleSpec pub;
    pub.threshold = threshold;
    for (const auto& k : publishers_) {
      root.keys.emplace(k.id(), k.public_key());
      pub.keyids.push_back(k.id());
    }
    root.roles["publisher"] = pub;
    auto doc = trust::SignedDocument::Wrap(root.ToJson());
    EXPECT_TRUE(doc.Sign(*root_key_));
    return doc;
  }

  Result<SignResult> Sign(std::vector<PrivateKey> keys, std::optional<std::uint64_t> counter,
                          TimePoint created = kNow) {
    SignOptions o;
    o.counter = counter;
    o.created = created;
    o.expires = created + hours(24 * 30);
    return SignPackage(package_, keys, o);
  }

  Result<VerifyResult> Verify(std::uint64_t trusted = 0, TimePoint now = kNow + hours(1),
                              std::optional<std::string> platform = {}) {
    VerifyOptions o;
    o.now = now;
    o.trusted_counter = trusted;
    o.platform = platform;
    return VerifyPackage(package_, root_, o);
  }

  // Digest of the whole package on disk, to show a refusal changed nothing.
  std::string Snapshot() {
    if (fs::is_regular_file(package_)) return Sha256Of(ReadAll(package_)).hex();
    std::string all;
    for (const auto& e : fs::recursive_directory_iterator(package_)) {
      if (e.is_regular_file()) all += e.path().string() + ReadAll(e.path());
    }
    return Sha256Of(all).hex();
  }

  fs::path BlobFile(const Descriptor& d) { return package_ / BlobPath(d.digest); }

  TempDir tmp_;
  fs::path package_;
  std::vector<PrivateKey> publishers_;
  std::unique_ptr<PrivateKey> root_key_;
  trust::SignedDocument root_;
};

TEST_P(ReleaseTest, ThresholdReachedByCoSigning) {
  ASSERT_TRUE(Sign({publishers_[0]}, 1));
  auto under = Verify();
  ASSERT_FALSE(under);
  EXPECT_EQ(under.error().code(), ErrorCode::kVerification);
  EXPECT_NE(under.error().ToString().find("1 valid publisher signature(s), needs 2"),
            std::string::npos)
      << under.error().ToString();

  auto co = Sign({publishers_[1]}, std::nullopt);
  ASSERT_TRUE(co) << co.error().ToString();
  EXPECT_TRUE(co->added_to_existing);
  auto ok = Verify();
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->release.model, "affine");
  EXPECT_EQ(ok->release.release_counter, 1u);
  EXPECT_GE(ok->blobs_checked, 5u);
}

TEST_P(ReleaseTest, TheSameKeyTwiceCountsOnce) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[0]}, 1));
  ASSERT_TRUE(Sign({publishers_[0]}, std::nullopt));
  auto r = Verify();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("needs 2"), std::string::npos);
}

TEST_P(ReleaseTest, KeysOutsideThePublisherRoleDoNotCount) {
  auto stranger = PrivateKey::Generate().value();
  ASSERT_TRUE(Sign({publishers_[0], stranger}, 1));
  auto r = Verify();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("is not a publisher key"), std::string::npos);
  // The next good update still works.
  ASSERT_TRUE(Sign({publishers_[2]}, std::nullopt));
  EXPECT_TRUE(Verify());
}

TEST_P(ReleaseTest, ExpiredReleaseIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1));
  auto r = Verify(0, kNow + hours(24 * 31));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("expired"), std::string::npos);
}

TEST_P(ReleaseTest, CounterBelowTrustedIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 4));
  EXPECT_TRUE(Verify(4));
  auto r = Verify(5);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("below the trusted counter 5"), std::string::npos);
}

TEST_P(ReleaseTest, WrongPlatformIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1));
  EXPECT_TRUE(Verify(0, kNow + hours(1), "linux/arm64"));
  auto r = Verify(0, kNow + hours(1), "linux/riscv64");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("not linux/riscv64"), std::string::npos);
}

TEST_P(ReleaseTest, UnsignedPackageIsRefused) {
  auto r = Verify();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("holds no release document"), std::string::npos);
}

TEST_P(ReleaseTest, NewReleaseNeedsACounter) {
  auto r = Sign({publishers_[0]}, std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("--counter"), std::string::npos);
}

TEST_P(ReleaseTest, RefusalLeavesThePackageUnchanged) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1));
  std::string before = Snapshot();
  ASSERT_FALSE(Verify(9));
  ASSERT_FALSE(Verify(0, kNow + hours(24 * 400)));
  EXPECT_EQ(Snapshot(), before);
  EXPECT_TRUE(Verify());
}

INSTANTIATE_TEST_SUITE_P(DirectoryAndTar, ReleaseTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Tar" : "Directory"; });

// Tampering needs a directory layout to edit in place.
class TamperTest : public ReleaseTest {};

TEST_P(TamperTest, TamperedModelBlobIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1));
  auto reader = LayoutReader::Open(package_).value();
  auto pkg = LoadPackage(*reader).value();
  const Descriptor& model = *pkg.variants[0].Layers(media::kModelWeight)[0];
  fs::path blob = BlobFile(model);
  std::string good = ReadAll(blob);
  std::string bad = good;
  bad[bad.size() / 2] ^= 1;
  WriteAll(blob, bad);
  auto r = Verify();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.error().ToString().find("does not match its digest"), std::string::npos);
  // A blob with extra bytes is refused before it is read.
  WriteAll(blob, good + "more");
  r = Verify();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("its descriptor says"), std::string::npos);
  WriteAll(blob, good);
  EXPECT_TRUE(Verify());
}

TEST_P(TamperTest, TamperedReleaseDocumentIsRefused) {
  auto signed_r = Sign({publishers_[0], publishers_[1]}, 1);
  ASSERT_TRUE(signed_r);
  // Change the counter inside the stored document: its bytes no longer match the referrer's
  // digest, and a rebuilt document fails the signatures.
  auto body = signed_r->document.body();
  body["release_counter"] = 99;
  auto forged = trust::SignedDocument::Wrap(body);
  std::string forged_text = forged.Serialize().value();
  // Keep the old signatures: serialize by hand.
  auto j = nlohmann::json::parse(signed_r->document.Serialize().value());
  j["signed"]["release_counter"] = 99;
  WriteAll(tmp_ / "forged.json", j.dump());
  VerifyOptions o;
  o.now = kNow + hours(1);
  o.release_file = tmp_ / "forged.json";
  auto r = VerifyPackage(package_, root_, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("0 valid publisher signature(s)"), std::string::npos)
      << r.error().ToString();
}

TEST_P(TamperTest, SubstitutedIndexIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1));
  // Re-pack a different model and point the layout's index.json at it: the release still names
  // the original index, which is what verification follows; remove that blob and it fails.
  auto reader = LayoutReader::Open(package_).value();
  auto pkg = LoadPackage(*reader).value();
  fs::remove(BlobFile(pkg.index_descriptor));
  auto r = Verify();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("the package index the release signs"), std::string::npos)
      << r.error().ToString();
}

TEST_P(TamperTest, UnknownMediaTypeIsRefused) {
  // Rewrite a manifest with an unknown layer type, and the index and index.json to match.
  auto reader = LayoutReader::Open(package_).value();
  auto pkg = LoadPackage(*reader).value();
  Manifest m = pkg.variants[0].manifest;
  m.layers[0].media_type = "application/x-mystery";
  std::string mbytes = ToBytes(m.ToJson());
  Descriptor md = DescribeBytes(media::kImageManifest, mbytes);
  md.platform = pkg.variants[0].platform;
  Index idx = pkg.index;
  idx.manifests = {md};
  std::string ibytes = ToBytes(idx.ToJson());
  Descriptor id = DescribeBytes(media::kImageIndex, ibytes);
  id.annotations[std::string(annotation::kRefName)] = "1.0.0";
  WriteAll(package_ / BlobPath(md.digest), mbytes);
  WriteAll(package_ / BlobPath(id.digest), ibytes);
  Index top;
  top.manifests = {id};
  WriteAll(package_ / "index.json", ToBytes(top.ToJson()));
  auto reopened = LayoutReader::Open(package_).value();
  auto r = LoadPackage(*reopened);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(r.error().ToString().find("unknown media type application/x-mystery"),
            std::string::npos);
}

TEST_P(TamperTest, SymlinkedBlobIsRefused) {
  auto reader = LayoutReader::Open(package_).value();
  auto pkg = LoadPackage(*reader).value();
  fs::path blob = BlobFile(pkg.variants[0].manifest.config);
  fs::rename(blob, tmp_ / "elsewhere");
  fs::create_symlink(tmp_ / "elsewhere", blob);
  auto reopened = LayoutReader::Open(package_).value();
  auto r = LoadPackage(*reopened);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("not a regular file"), std::string::npos);
}

// Another package with the same name and version but different bytes (an attacker's), packed
// beside the honest one.
fs::path PackImpostor(const fs::path& dir) {
  auto ort = runtime::OnnxRuntime::Create().value();
  auto yaml = airlock::testing::WriteAffineProject(dir / "evil-src");
  airlock::testing::WriteAll(dir / "evil-src/model.onnx", "not the reviewed model");
  auto spec = LoadPackSpec(yaml).value();
  PackOptions options;
  options.output = dir / "evil";
  options.validate = false;
  EXPECT_TRUE(Pack(spec, options, ort.get()));
  return options.output;
}

// Stores document in layout as a referrer of index (what a hostile layout could hold).
void StoreReferrer(const fs::path& layout, const Descriptor& index, const std::string& document) {
  ReleaseReferrer r = MakeReleaseReferrer(index, document);
  WriteAll(layout / BlobPath(r.document_descriptor.digest), r.document_bytes);
  WriteAll(layout / BlobPath(r.config_descriptor.digest), r.config_bytes);
  WriteAll(layout / BlobPath(r.manifest_descriptor.digest), r.manifest_bytes);
  auto top = nlohmann::json::parse(ReadAll(layout / "index.json"));
  top["manifests"].push_back(r.manifest_descriptor.ToJson());
  WriteAll(layout / "index.json", top.dump());
}

TEST_P(TamperTest, CoSigningRefusesAReleaseForAnotherPackage) {
  fs::path evil = PackImpostor(tmp_.path());
  // One compromised publisher signs the impostor, and plants that release beside the honest
  // package for the second publisher to co-sign.
  SignOptions o;
  o.counter = 6;
  o.created = kNow;
  o.expires = kNow + hours(24);
  auto evil_release = SignPackage(evil, {publishers_[0]}, o);
  ASSERT_TRUE(evil_release);
  auto honest = LoadPackage(*LayoutReader::Open(package_).value()).value();
  StoreReferrer(package_, honest.index_descriptor, evil_release->document.Serialize().value());
  std::string before = Snapshot();
  auto co = Sign({publishers_[1]}, std::nullopt);
  ASSERT_FALSE(co);
  EXPECT_EQ(Snapshot(), before);
  // And the honest package can still be released properly.
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 7));
  EXPECT_TRUE(Verify());
}

TEST_P(TamperTest, AReleaseForAnotherIndexInTheLayoutIsRefused) {
  ASSERT_TRUE(Sign({publishers_[0], publishers_[1]}, 1, kNow));
  SignOptions o;
  o.counter = 1;
  o.created = kNow;
  o.expires = kNow + hours(24);
  auto release = SignPackage(package_, {publishers_[0], publishers_[1]}, o).value();
  WriteAll(tmp_ / "release.json", release.document.Serialize().value());
  // Point the layout's index.json at the impostor's index (copying its blobs in), keeping the
  // signed release: verify must not vouch for what index.json now names.
  fs::path evil = PackImpostor(tmp_.path());
  for (const auto& e : fs::directory_iterator(evil / "blobs/sha256")) {
    fs::copy_file(e.path(), package_ / "blobs/sha256" / e.path().filename(),
                  fs::copy_options::skip_existing);
  }
  fs::copy_file(evil / "index.json", package_ / "index.json", fs::copy_options::overwrite_existing);
  VerifyOptions vo;
  vo.now = kNow + hours(1);
  vo.release_file = tmp_ / "release.json";
  auto r = VerifyPackage(package_, root_, vo);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kVerification);
  EXPECT_NE(r.error().ToString().find("but " + package_.string() + " names index"),
            std::string::npos)
      << r.error().ToString();
  // Without the file, the stored release does not name the index: there is no release for it.
  auto stored = Verify();
  ASSERT_FALSE(stored);
  EXPECT_NE(stored.error().ToString().find("holds no release document"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Directory, TamperTest, ::testing::Values(false));

TEST(LayoutTest, TruncatedTarIsRefusedWithItsName) {
  TempDir tmp;
  auto ort = runtime::OnnxRuntime::Create().value();
  auto spec = LoadPackSpec(airlock::testing::WriteAffineProject(tmp / "src")).value();
  PackOptions options;
  options.output = tmp / "p.tar";
  ASSERT_TRUE(Pack(spec, options, ort.get()));
  std::string bytes = ReadAll(tmp / "p.tar");
  WriteAll(tmp / "cut.tar", bytes.substr(0, bytes.size() / 2));
  auto r = LayoutReader::Open(tmp / "cut.tar");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.error().ToString().find("cut.tar"), std::string::npos);
  EXPECT_NE(r.error().ToString().find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace airlock::pkg
