// skopeo (Debian 12's 1.9) reads what `airlock pack` writes, as a layout directory (oci:DIR:REF)
// and as a tar (oci-archive:FILE:REF), and a package copied with skopeo still verifies.
//
// The package is made in code: the affine model of onnx_models.hpp for linux/amd64 and
// linux/arm64, with one sample written as .npy, so packing also runs the model.

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/digest.hpp"
#include "pkg/fixture.hpp"
#include "support/onnx_models.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kVersion[] = "1.0.0";
constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kReleaseType[] = "application/vnd.airlock.release.v1+json";

json ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
  return j;
}

class SkopeoInterop : public ::testing::Test {
 public:
  // skopeo with no policy file and its temporary files in our directory, so the host's
  // /etc/containers and /var/tmp play no part.
  CommandResult Skopeo(std::vector<std::string> args) const {
    fs::create_directories(dir_ / "skopeo-tmp");
    args.insert(args.begin(),
                {"skopeo", "--insecure-policy", "--tmpdir", (dir_ / "skopeo-tmp").string()});
    return RunCommand(args, {}, 120);
  }

 protected:
  void SetUp() override {
    if (RunCommand({"skopeo", "--version"}).exit_code != 0) {
      GTEST_SKIP() << "skopeo is not installed (scripts/bootstrap installs it)";
    }
    fs::path src = dir_ / "src";
    WriteAffineModel(src / "model.onnx", 4);
    // y = 2x + 1
    ASSERT_NO_FATAL_FAILURE(
        WriteNpy(src / "x.npy", Fp32("x", {2, 4}, {0, 1, 2, 3, -1, -0.5f, 0.25f, 100})));
    ASSERT_NO_FATAL_FAILURE(
        WriteNpy(src / "y.npy", Fp32("y", {2, 4}, {1, 3, 5, 7, -1, 0, 1.5f, 201})));
    WriteAll(src / "airlock.yaml", std::string("name: affine\n") + "version: \"" + kVersion +
                                       "\"\n" +
                                       "model: {files: [model.onnx], precision: fp32}\n"
                                       "platforms: [linux/amd64, linux/arm64]\n"
                                       "samples:\n"
                                       "  sets:\n"
                                       "    - name: first\n"
                                       "      inputs: {x: x.npy}\n"
                                       "      outputs: {y: y.npy}\n");
    for (const fs::path& out : {layout(), archive()}) {
      CommandResult r =
          RunAirlock({"pack", "-f", (src / "airlock.yaml").string(), "--json", "-o", out.string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      ASSERT_EQ(ParseJson(r.out).value("samples", 0), 1) << r.out;
    }
    CommandResult inspect = RunAirlock({"inspect", "--json", layout().string()});
    ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
    index_descriptor_ = ParseJson(inspect.out).at("index");
  }

  fs::path layout() const { return dir_ / "layout"; }
  fs::path archive() const { return dir_ / "package.tar"; }
  std::string OciRef() const { return "oci:" + layout().string() + ":" + kVersion; }
  std::string ArchiveRef() const { return "oci-archive:" + archive().string() + ":" + kVersion; }

  // The bytes of a blob of our layout.
  std::string LayoutBlob(const std::string& digest) const {
    return ReadAll(layout() / "blobs" / "sha256" / digest.substr(std::string("sha256:").size()));
  }

  std::string IndexDigest() const { return index_descriptor_.at("digest").get<std::string>(); }

  TempDir dir_;
  json index_descriptor_;  // the package index, as `airlock inspect --json` describes it
};

TEST_F(SkopeoInterop, InspectRawReturnsThePackageIndex) {
  for (const std::string& ref : {OciRef(), ArchiveRef()}) {
    SCOPED_TRACE(ref);
    CommandResult r = Skopeo({"inspect", "--raw", ref});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Sha256Of(r.out).ToString(), IndexDigest());
    EXPECT_EQ(r.out.size(), index_descriptor_.at("size").get<std::size_t>());
    EXPECT_EQ(r.out, LayoutBlob(IndexDigest()));

    json index = ParseJson(r.out);
    EXPECT_EQ(index.value("mediaType", ""), kIndexType);
    EXPECT_EQ(index.value("schemaVersion", 0), 2);
    std::set<std::string> platforms;
    for (const auto& m : index.at("manifests")) {
      platforms.insert(m.at("platform").value("os", "") + "/" +
                       m.at("platform").value("architecture", ""));
    }
    EXPECT_EQ(platforms, (std::set<std::string>{"linux/amd64", "linux/arm64"}));
  }
}

// skopeo inspect without --raw describes container images and refuses other artifacts; the
// package is one, with a CNCF model config.
TEST_F(SkopeoInterop, PlainInspectRefusesTheArtifact) {
  for (const std::string& ref : {OciRef(), ArchiveRef()}) {
    CommandResult r = Skopeo({"inspect", ref});
    EXPECT_NE(r.exit_code, 0) << ref << " was described as an image:\n" << r.out;
  }
}

TEST_F(SkopeoInterop, CopyToDirWritesTheLayoutsBlobs) {
  json index = ParseJson(LayoutBlob(IndexDigest()));
  for (const std::string& source : {OciRef(), ArchiveRef()}) {
    for (const auto& entry : index.at("manifests")) {
      std::string arch = entry.at("platform").at("architecture").get<std::string>();
      SCOPED_TRACE(source + " for " + arch);
      fs::path out = dir_ / ("copy-" + arch + (source == OciRef() ? "-oci" : "-archive"));
      CommandResult r = Skopeo({"--override-os", "linux", "--override-arch", arch, "copy", "-q",
                                source, "dir:" + out.string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;

      // The manifest is the one the index names for this platform, byte for byte.
      std::string manifest_digest = entry.at("digest").get<std::string>();
      EXPECT_EQ(ReadAll(out / "manifest.json"), LayoutBlob(manifest_digest));

      // Its config and every layer, each a file named by its digest with the layout's bytes.
      json manifest = ParseJson(LayoutBlob(manifest_digest));
      std::set<std::string> want = {manifest.at("config").at("digest").get<std::string>()};
      for (const auto& layer : manifest.at("layers")) {
        want.insert(layer.at("digest").get<std::string>());
      }
      std::set<std::string> got;
      for (const auto& f : fs::directory_iterator(out)) {
        std::string name = f.path().filename().string();
        if (name == "manifest.json" || name == "version") {
          continue;
        }
        std::string digest = "sha256:" + name;
        std::string bytes = ReadAll(f.path());
        EXPECT_EQ(Sha256Of(bytes).ToString(), digest) << name << " does not hash to its name";
        EXPECT_EQ(bytes, LayoutBlob(digest)) << name << " differs from the layout's blob";
        got.insert(digest);
      }
      EXPECT_EQ(got, want);
    }
  }
}

// What a signed layout looks like after `skopeo copy --all` into another layout.
struct RoundTrip {
  std::string signed_index;  // the index digest the release signs
  std::string copied_index;  // the index the copy tags with the version
  bool referrer_travelled = false;
  CommandResult verify;  // `airlock verify` of the copy
};

// Signs the layout (keeping the release document in a file too), copies every platform with
// `skopeo copy --all`, and verifies the copy. skopeo 1.9 copies the tagged index and what it
// references; if it leaves the release referrer behind, the copy is verified with the file.
void SignCopyAndVerify(const SkopeoInterop& t, const fs::path& dir, const fs::path& layout,
                       const std::string& oci_ref, RoundTrip* out) {
  fs::path keys = dir / "keys";
  fs::create_directories(keys);
  for (const char* name : {"publisher", "root"}) {
    CommandResult r = RunAirlock({"keygen", (keys / name).string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  fs::path root = dir / "root.json";
  CommandResult made =
      RunAirlock({"root", "init", "--root-key", (keys / "root.key").string(), "--publisher",
                  (keys / "publisher.pub").string(), "-o", root.string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  fs::path release = dir / "release.json";
  CommandResult signed_ = RunAirlock({"sign", "-k", (keys / "publisher.key").string(), "--counter",
                                      "1", "-o", release.string(), layout.string()});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  CommandResult original =
      RunAirlock({"verify", "--root", root.string(), "--json", layout.string()});
  ASSERT_EQ(original.exit_code, 0) << original.err;
  out->signed_index =
      ParseJson(original.out).at("release").at("index").at("digest").get<std::string>();

  fs::path copy = dir / "copy";
  CommandResult r =
      t.Skopeo({"copy", "-q", "--all", oci_ref, "oci:" + copy.string() + ":" + kVersion});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  json top = ParseJson(ReadAll(copy / "index.json"));
  for (const auto& m : top.at("manifests")) {
    if (m.value("artifactType", "") == kReleaseType) {
      out->referrer_travelled = true;
    }
    if (m.contains("annotations") &&
        m["annotations"].value("org.opencontainers.image.ref.name", "") == kVersion) {
      out->copied_index = m.at("digest").get<std::string>();
    }
  }
  ASSERT_FALSE(out->copied_index.empty()) << "the copy has no index tagged " << kVersion;
  std::cout << "[ SKOPEO   ] release referrer "
            << (out->referrer_travelled ? "travelled" : "dropped") << "; index "
            << (out->copied_index == out->signed_index ? "kept" : "rewritten") << "\n";

  std::vector<std::string> verify = {"verify", "--root", root.string(), copy.string()};
  if (!out->referrer_travelled) {
    verify.insert(verify.end(), {"--release", release.string()});
  }
  out->verify = RunAirlock(verify);
}

// Sign, copy every platform with `skopeo copy --all` into another layout, verify the copy.
// skopeo 1.9 keeps the index byte for byte (it would rewrite one whose manifest descriptors
// carried `artifactType`, which is why pack does not write that field there), and leaves the
// release referrer behind, so the copy is verified with the release file.
TEST_F(SkopeoInterop, CopyAllRoundTripStillVerifies) {
  RoundTrip rt;
  ASSERT_NO_FATAL_FAILURE(SignCopyAndVerify(*this, dir_.path(), layout(), OciRef(), &rt));
  EXPECT_EQ(rt.signed_index, IndexDigest());
  EXPECT_EQ(rt.copied_index, rt.signed_index) << "skopeo rewrote the package index";
  EXPECT_EQ(rt.verify.exit_code, 0) << rt.verify.out << rt.verify.err;
}

}  // namespace
}  // namespace airlock::testing
