#include "pkg/pack.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/digest.hpp"
#include "pkg/fixture.hpp"
#include "pkg/layout.hpp"
#include "pkg/package.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;
using airlock::testing::WriteAffineProject;

class PackTest : public ::testing::Test {
 protected:
  static runtime::OnnxRuntime* Ort() {
    static auto ort = runtime::OnnxRuntime::Create().value();
    return ort.get();
  }

  Result<PackResult> PackTo(const fs::path& yaml, const fs::path& out, bool validate = true) {
    auto spec = LoadPackSpec(yaml);
    if (!spec) return Fail(spec.error());
    PackOptions options;
    options.output = out;
    options.validate = validate;
    return Pack(*spec, options, Ort());
  }

  // Every file of a directory tree, relative path → sha256.
  static std::map<std::string, std::string> Tree(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.is_regular_file()) {
        out[fs::relative(e.path(), dir).string()] =
            Sha256Of(airlock::testing::ReadAll(e.path())).hex();
      }
    }
    return out;
  }

  TempDir tmp_;
};

TEST_F(PackTest, PacksAValidatedPackageWithEveryLayer) {
  auto yaml = WriteAffineProject(tmp_.path() / "src");
  auto r = PackTo(yaml, tmp_ / "out");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->samples.size(), 2u);
  ASSERT_TRUE(r->signature);
  EXPECT_EQ(r->signature->inputs[0].name, "x");

  auto reader = LayoutReader::Open(tmp_ / "out").value();
  auto pkg = LoadPackage(*reader, "1.0.0");
  ASSERT_TRUE(pkg) << pkg.error().ToString();
  EXPECT_EQ(pkg->name(), "affine");
  EXPECT_EQ(pkg->PlatformNames(), (std::vector<std::string>{"linux/amd64", "linux/arm64"}));
  const Variant& v = pkg->variants[0];
  EXPECT_EQ(v.manifest.artifact_type, media::kModelArtifact);
  EXPECT_EQ(v.Layers(media::kModelWeight).size(), 1u);
  EXPECT_EQ(v.Layers(media::kPipeline).size(), 1u);
  EXPECT_EQ(v.Layers(media::kBaseline).size(), 1u);
  EXPECT_EQ(v.Layers(media::kSamples).size(), 1u);
  EXPECT_EQ(v.Layers(media::kModelDoc).size(), 1u);
  EXPECT_EQ(v.config["config"]["format"], "onnx");
  EXPECT_EQ(v.config["modelfs"]["diff_ids"].size(), v.manifest.layers.size());
  EXPECT_EQ(v.config["descriptor"]["createdAt"], "2026-01-01T00:00:00Z");
  EXPECT_TRUE(VerifyLayers(*reader, *pkg));

  // The pipeline layer carries the user's steps and the recorded signature.
  auto pipeline = nlohmann::json::parse(reader->ReadBlob(*v.Layers(media::kPipeline)[0]).value());
  EXPECT_EQ(pipeline["postprocess"][0]["op"], "threshold");
  EXPECT_EQ(pipeline["signature"]["outputs"][0]["name"], "y");

  // The samples layer holds both sets and the tolerance.
  auto samples = ParseSamplesLayer(reader->ReadBlob(*v.Layers(media::kSamples)[0]).value());
  ASSERT_TRUE(samples);
  EXPECT_EQ(samples->sets.size(), 2u);
  EXPECT_DOUBLE_EQ(samples->tolerance.rtol, 1e-5);
}

TEST_F(PackTest, IsDeterministic) {
  auto yaml = WriteAffineProject(tmp_.path() / "src");
  auto a = PackTo(yaml, tmp_ / "a");
  auto b = PackTo(yaml, tmp_ / "b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->index.digest, b->index.digest);
  EXPECT_EQ(Tree(tmp_ / "a"), Tree(tmp_ / "b"));
  ASSERT_TRUE(PackTo(yaml, tmp_ / "a.tar"));
  ASSERT_TRUE(PackTo(yaml, tmp_ / "b.tar"));
  EXPECT_EQ(airlock::testing::ReadAll(tmp_ / "a.tar"), airlock::testing::ReadAll(tmp_ / "b.tar"));
}

TEST_F(PackTest, TarAndDirectoryHoldTheSamePackage) {
  auto yaml = WriteAffineProject(tmp_.path() / "src");
  auto dir = PackTo(yaml, tmp_ / "d");
  auto tar = PackTo(yaml, tmp_ / "t.tar");
  ASSERT_TRUE(dir && tar);
  EXPECT_EQ(dir->index.digest, tar->index.digest);
}

TEST_F(PackTest, NoValidateSkipsTheModelButStillPacks) {
  fs::path src = tmp_ / "src";
  WriteAffineProject(src);
  airlock::testing::WriteAll(src / "model.onnx", "not a model at all");
  auto r = PackTo(src / "airlock.yaml", tmp_ / "out", /*validate=*/false);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_FALSE(r->signature);
  EXPECT_TRUE(r->samples.empty());
}

struct BadInput {
  const char* name;
  std::function<void(const fs::path&)> spoil;
  ErrorCode code;
  const char* message;
};

class PackRefuses : public PackTest, public ::testing::WithParamInterface<BadInput> {};

TEST_P(PackRefuses, NamesTheProblemAndWritesNothing) {
  fs::path src = tmp_ / "src";
  auto yaml = WriteAffineProject(src);
  GetParam().spoil(src);
  auto r = PackTo(yaml, tmp_ / "out.tar");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), GetParam().code) << r.error().ToString();
  EXPECT_NE(r.error().ToString().find(GetParam().message), std::string::npos)
      << r.error().ToString();
  // Nothing half-written is left behind.
  for (const auto& e : fs::directory_iterator(tmp_.path())) {
    EXPECT_EQ(e.path().filename(), "src") << "left behind: " << e.path();
  }
}

void Replace(const fs::path& file, const std::string& from, const std::string& to) {
  std::string s = airlock::testing::ReadAll(file);
  auto at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
  airlock::testing::WriteAll(file, s);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PackRefuses,
    ::testing::Values(
        BadInput{"NotOnnx",
                 [](const fs::path& d) { airlock::testing::WriteAll(d / "model.onnx", "hello"); },
                 ErrorCode::kModel, "model.onnx is not an ONNX model"},
        BadInput{"RuntimeRefuses",
                 [](const fs::path& d) { airlock::testing::WriteUnknownOpModel(d / "model.onnx"); },
                 ErrorCode::kModel, "ONNX Runtime cannot load"},
        BadInput{"MissingModel", [](const fs::path& d) { fs::remove(d / "model.onnx"); },
                 ErrorCode::kNotFound, "model.onnx does not exist"},
        BadInput{"MissingSample", [](const fs::path& d) { fs::remove(d / "samples/1/x.npy"); },
                 ErrorCode::kNotFound, "samples/1/x.npy"},
        BadInput{"MisShapedSample",
                 [](const fs::path& d) {
                   airlock::testing::WriteNpy(d / "samples/1/x.npy",
                                              airlock::testing::Fp32("x", {1, 3}, {1, 2, 3}));
                 },
                 ErrorCode::kInvalidArgument,
                 "sample 1: tensor x must have shape [?,4], got [1,3]"},
        BadInput{"WrongSampleName",
                 [](const fs::path& d) {
                   Replace(d / "airlock.yaml", "inputs: {x: samples/0", "inputs: {z: samples/0");
                 },
                 ErrorCode::kInvalidArgument, "names input \"z\", which the model does not have"},
        BadInput{"OutputsDoNotMatch",
                 [](const fs::path& d) {
                   airlock::testing::WriteNpy(
                       d / "samples/1/y.npy",
                       airlock::testing::Fp32("y", {2, 4}, {-1, 2, 21, 1, 3, 3, 3, 3.5f}));
                 },
                 ErrorCode::kMismatch, "sample 1: output y: 1 of 8 elements differ"},
        BadInput{"TruncatedNpy",
                 [](const fs::path& d) {
                   std::string s = airlock::testing::ReadAll(d / "samples/0/x.npy");
                   airlock::testing::WriteAll(d / "samples/0/x.npy", s.substr(0, s.size() - 3));
                 },
                 ErrorCode::kCorrupt, "samples/0/x.npy"},
        BadInput{"BadName",
                 [](const fs::path& d) {
                   Replace(d / "airlock.yaml", "name: affine", "name: Affine Model");
                 },
                 ErrorCode::kInvalidArgument, "model name \"Affine Model\""},
        BadInput{"BadPlatform",
                 [](const fs::path& d) { Replace(d / "airlock.yaml", "linux/arm64", "arm64"); },
                 ErrorCode::kInvalidArgument, "bad platform \"arm64\""},
        BadInput{"BadBaseline",
                 [](const fs::path& d) {
                   Replace(d / "baseline.json", "\"counts\": [4, 6]", "\"counts\": [4]");
                 },
                 ErrorCode::kInvalidArgument, "baseline: feature x: a histogram needs n+1 edges"},
        BadInput{"BaselineNamesUnknownTensor",
                 [](const fs::path& d) {
                   Replace(d / "baseline.json", "\"tensor\": \"x\"", "\"tensor\": \"w\"");
                 },
                 ErrorCode::kInvalidArgument, "which is not a model input"},
        BadInput{"YamlSyntax",
                 [](const fs::path& d) {
                   airlock::testing::WriteAll(d / "airlock.yaml", "name: [unclosed\n");
                 },
                 ErrorCode::kInvalidArgument, "airlock.yaml:"}),
    [](const ::testing::TestParamInfo<BadInput>& p) { return std::string(p.param.name); });

TEST_F(PackTest, RefusesToOverwriteWithoutForceAndKeepsTheOldOutput) {
  auto yaml = WriteAffineProject(tmp_.path() / "src");
  ASSERT_TRUE(PackTo(yaml, tmp_ / "out.tar"));
  std::string before = airlock::testing::ReadAll(tmp_ / "out.tar");
  auto again = PackTo(yaml, tmp_ / "out.tar");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(airlock::testing::ReadAll(tmp_ / "out.tar"), before);
}

TEST_F(PackTest, ModelNewerThanTheCheckerIsLoadedAndTestedAnyway) {
  fs::path src = tmp_ / "src";
  auto yaml = WriteAffineProject(src);
  airlock::testing::WriteAffineModel(src / "model.onnx", 4, /*ir_version=*/10);
  auto spec = LoadPackSpec(yaml).value();
  std::vector<std::string> said;
  PackOptions options;
  options.output = tmp_ / "out.tar";
  options.say = [&](const std::string& s) { said.push_back(s); };
  auto r = Pack(spec, options, Ort());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->samples.size(), 2u);
  bool noted = std::any_of(said.begin(), said.end(), [](const std::string& s) {
    return s.find("older than the model (IR version 10)") != std::string::npos;
  });
  EXPECT_TRUE(noted);
}

TEST_F(PackTest, RemovesWhatAKilledPackLeftBehind) {
  auto yaml = WriteAffineProject(tmp_.path() / "src");
  // A process that has exited: its pid names leftovers nobody owns any more.
  pid_t dead = ::fork();
  if (dead == 0) {
    ::_exit(0);
  }
  ::waitpid(dead, nullptr, 0);
  std::string pid = std::to_string(dead);
  airlock::testing::WriteAll(tmp_ / (".out.tar.tmp-" + pid + "-0123456789abcdef"), "half a tar");
  fs::create_directories(tmp_ / (".out.tar.staging-" + pid + "-AbCdEf") / "0");
  // Leftovers of a live process (this one's parent, say) are not touched.
  std::string live = ".out.tar.tmp-" + std::to_string(::getppid()) + "-0000";
  airlock::testing::WriteAll(tmp_ / live, "in use");
  ASSERT_TRUE(PackTo(yaml, tmp_ / "out.tar"));
  std::vector<std::string> hidden;
  for (const auto& e : fs::directory_iterator(tmp_.path())) {
    if (e.path().filename().string().starts_with(".")) hidden.push_back(e.path().filename());
  }
  EXPECT_EQ(hidden, std::vector<std::string>{live});
}

TEST_F(PackTest, SamplesFromOnnxTestLayout) {
  fs::path dir = airlock::testing::OnnxTestData() / "pytorch-converted/test_Conv2d";
  if (!fs::exists(dir)) GTEST_SKIP() << "libonnx-testdata not installed";
  nlohmann::json doc = {{"name", "conv2d"},
                        {"version", "1"},
                        {"model", (dir / "model.onnx").string()},
                        {"samples", {{"dir", dir.string()}}}};
  auto spec = PackSpecFromJson(doc, tmp_.path(), "test");
  ASSERT_TRUE(spec) << spec.error().ToString();
  PackOptions options;
  options.output = tmp_ / "conv2d.tar";
  auto r = Pack(*spec, options, Ort());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->samples.size(), 1u);
}

}  // namespace
}  // namespace airlock::pkg
