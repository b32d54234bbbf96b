#include "pkg/pack.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <limits>

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

void AppendTo(const fs::path& file, const std::string& text) {
  airlock::testing::WriteAll(file, airlock::testing::ReadAll(file) + text);
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
                 ErrorCode::kInvalidArgument, "airlock.yaml:"},
        BadInput{"DatasetDigestNotSha256",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  dataset_digest: md5:0123abcd\n");
                 },
                 ErrorCode::kInvalidArgument,
                 "airlock.yaml: lineage.dataset_digest: \"md5:0123abcd\" is not a dataset digest"},
        BadInput{"DatasetDigestShortHex",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage: {dataset_digest: \"sha256:abc\"}\n");
                 },
                 ErrorCode::kInvalidArgument, "lineage.dataset_digest: \"sha256:abc\""},
        BadInput{"MetricNotANumber",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  metrics: {accuracy: high}\n");
                 },
                 ErrorCode::kInvalidArgument,
                 "airlock.yaml: lineage.metrics.accuracy must be a finite number, not the string "
                 "\"high\""},
        BadInput{"MetricQuoted",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  metrics: {accuracy: \"0.97\"}\n");
                 },
                 ErrorCode::kInvalidArgument, "lineage.metrics.accuracy must be a finite number"},
        BadInput{"MetricNested",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  metrics: {test: {accuracy: 1}}\n");
                 },
                 ErrorCode::kInvalidArgument, "lineage.metrics.test must be a finite number"},
        BadInput{"MetricInfinite",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  metrics: {loss: .inf}\n");
                 },
                 ErrorCode::kInvalidArgument, "lineage.metrics.loss must be a finite number"},
        BadInput{"LineageUnknownKey",
                 [](const fs::path& d) {
                   AppendTo(d / "airlock.yaml", "lineage:\n  dataset-digest: x\n");
                 },
                 ErrorCode::kInvalidArgument, "unknown key lineage.dataset-digest"}),
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

constexpr const char* kDataset =
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

constexpr const char* kLineageYaml = R"(revision: 1a2b3c4
lineage:
  training_run: run-2026-01-01
  dataset_digest: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  metrics: {recall: 0.958, accuracy: 0.9775, epochs: 20}
)";

Annotations IndexAnnotations(const fs::path& layout) {
  auto reader = LayoutReader::Open(layout).value();
  return LoadPackage(*reader, "1.0.0").value().index.annotations;
}

TEST_F(PackTest, LineageBecomesIndexAnnotations) {
  auto yaml = WriteAffineProject(tmp_ / "src");
  AppendTo(yaml, kLineageYaml);
  ASSERT_TRUE(PackTo(yaml, tmp_ / "out"));
  Annotations a = IndexAnnotations(tmp_ / "out");
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageTrainingRun), "run-2026-01-01");
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageDatasetDigest), kDataset);
  // Not given in the section: the top-level revision.
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageSourceRevision), "1a2b3c4");
  // Compact, keys sorted, integers stay integers.
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageMetrics),
            R"({"accuracy":0.9775,"epochs":20,"recall":0.958})");
  auto lineage = Lineage::FromAnnotations(a);
  ASSERT_TRUE(lineage && *lineage);
  EXPECT_EQ((*lineage)->metrics["accuracy"].get<double>(), 0.9775);
}

TEST_F(PackTest, WithoutALineageSectionTheIndexCarriesNone) {
  auto yaml = WriteAffineProject(tmp_ / "src");
  AppendTo(yaml, "revision: 1a2b3c4\n");
  ASSERT_TRUE(PackTo(yaml, tmp_ / "out"));
  for (const auto& [key, value] : IndexAnnotations(tmp_ / "out")) {
    EXPECT_FALSE(key.starts_with("ai.airlock.lineage.")) << key;
  }
}

TEST_F(PackTest, LineageOverridesReplaceAndExtendTheFile) {
  auto yaml = WriteAffineProject(tmp_ / "src");
  AppendTo(yaml, kLineageYaml);
  auto spec = LoadPackSpec(yaml).value();
  const std::string other = "sha256:" + std::string(64, 'e');
  LineageOverrides flags;
  flags.training_run = "run-2026-02-02";
  flags.dataset_digest = other;
  flags.source_revision = "feedbeef";
  flags.metrics = {"accuracy=0.99", "f1=0.5", "epochs=1e2"};
  ASSERT_TRUE(ApplyLineageOverrides(flags, spec));
  PackOptions options;
  options.output = tmp_ / "out";
  ASSERT_TRUE(Pack(spec, options, Ort()));
  Annotations a = IndexAnnotations(tmp_ / "out");
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageTrainingRun), "run-2026-02-02");
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageDatasetDigest), other);
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageSourceRevision), "feedbeef");
  // accuracy replaced, f1 added, recall kept from the file.
  EXPECT_EQ(AnnotationOf(a, annotation::kLineageMetrics),
            R"({"accuracy":0.99,"epochs":100.0,"f1":0.5,"recall":0.958})");

  // Flags alone make a lineage for a file without one.
  PackSpec bare = LoadPackSpec(WriteAffineProject(tmp_ / "bare")).value();
  ASSERT_TRUE(ApplyLineageOverrides({.training_run = "r1",
                                     .dataset_digest = std::nullopt,
                                     .source_revision = std::nullopt,
                                     .metrics = {}},
                                    bare));
  ASSERT_TRUE(bare.lineage);
  EXPECT_EQ(bare.lineage->ToAnnotations(),
            (Annotations{{std::string(annotation::kLineageTrainingRun), "r1"}}));
}

TEST_F(PackTest, BadLineageOverridesAreRefusedAndLeaveTheSpecAlone) {
  auto yaml = WriteAffineProject(tmp_ / "src");
  AppendTo(yaml, kLineageYaml);
  const PackSpec before = LoadPackSpec(yaml).value();
  struct Case {
    LineageOverrides flags;
    const char* message;
  };
  auto digest = [](const char* d) {
    LineageOverrides o;
    o.dataset_digest = d;
    return o;
  };
  auto metric = [](const char* m) {
    LineageOverrides o;
    o.training_run = "changed";
    o.metrics = {"ok=1", m};
    return o;
  };
  for (const Case& c : {
           Case{digest("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
                "--dataset-digest: \"9f86d0"},
           Case{digest("SHA256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
                "want sha256:<64 lowercase hex>"},
           Case{metric("accuracy=high"), "--metric accuracy=high: \"high\" is not a finite number"},
           Case{metric("accuracy=0.9x"), "\"0.9x\" is not a finite number"},
           Case{metric("loss=nan"), "\"nan\" is not a finite number"},
           Case{metric("loss=inf"), "\"inf\" is not a finite number"},
           Case{metric("accuracy"), "--metric accuracy: no NAME="},
           Case{metric("=0.5"), "no NAME="},
           Case{metric("accuracy="), "no value"},
       }) {
    PackSpec spec = before;
    auto s = ApplyLineageOverrides(c.flags, spec);
    ASSERT_FALSE(s) << c.message;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(s.error().message().find(c.message), std::string::npos) << s.error().message();
    ASSERT_TRUE(spec.lineage);
    EXPECT_EQ(spec.lineage->ToJson(), before.lineage->ToJson());
  }
  // A digest set in code is checked before anything is written, too.
  PackSpec spec = before;
  spec.lineage->dataset_digest = "sha256:xyz";
  PackOptions options;
  options.output = tmp_ / "out.tar";
  auto r = Pack(spec, options, Ort());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("lineage.dataset_digest"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_ / "out.tar"));
  spec = before;
  spec.lineage->metrics["loss"] = std::numeric_limits<double>::quiet_NaN();
  auto nan = Pack(spec, options, Ort());
  ASSERT_FALSE(nan);
  EXPECT_NE(nan.error().message().find("lineage.metrics.loss must be a finite number"),
            std::string::npos)
      << nan.error().message();
  EXPECT_FALSE(fs::exists(tmp_ / "out.tar"));
  // The good spec still packs.
  EXPECT_TRUE(Pack(before, options, Ort()));
}

TEST_F(PackTest, LineageKeepsPackingReproducible) {
  auto yaml = WriteAffineProject(tmp_ / "src");
  AppendTo(yaml, kLineageYaml);
  auto a = PackTo(yaml, tmp_ / "a.tar");
  auto b = PackTo(yaml, tmp_ / "b.tar");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->index.digest, b->index.digest);
  EXPECT_EQ(airlock::testing::ReadAll(tmp_ / "a.tar"), airlock::testing::ReadAll(tmp_ / "b.tar"));
  // The metrics' order in the file does not matter; their values do.
  Replace(yaml, "{recall: 0.958, accuracy: 0.9775, epochs: 20}",
          "{epochs: 20, accuracy: 0.9775, recall: 0.958}");
  auto reordered = PackTo(yaml, tmp_ / "c.tar");
  ASSERT_TRUE(reordered);
  EXPECT_EQ(reordered->index.digest, a->index.digest);
  Replace(yaml, "accuracy: 0.9775", "accuracy: 0.9776");
  auto changed = PackTo(yaml, tmp_ / "d.tar");
  ASSERT_TRUE(changed);
  EXPECT_NE(changed->index.digest, a->index.digest);
}

TEST(LineageTest, AnnotationsRoundTripAndCorruptMetricsAreReported) {
  Lineage l;
  l.training_run = "42";
  l.metrics["auc"] = 0.5;
  auto back = Lineage::FromAnnotations(l.ToAnnotations());
  ASSERT_TRUE(back && *back);
  EXPECT_EQ((*back)->ToJson(), l.ToJson());
  EXPECT_FALSE(*Lineage::FromAnnotations(Annotations{}));
  for (const char* bad : {"not json", "[1]", R"({"auc":"0.5"})", R"({"a":1,"a":2})"}) {
    Annotations a{{std::string(annotation::kLineageMetrics), bad}};
    auto r = Lineage::FromAnnotations(a);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << bad;
  }
  // An unquoted integer run id is kept as written; anything else unquoted is refused.
  auto run = Lineage::FromSpec(nlohmann::json{{"training_run", 20260101}}, "f.yaml");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->training_run, "20260101");
  auto list = Lineage::FromSpec(nlohmann::json{{"training_run", {1, 2}}}, "f.yaml");
  ASSERT_FALSE(list);
  EXPECT_NE(list.error().message().find("f.yaml: lineage.training_run must be a string"),
            std::string::npos);
}

}  // namespace
}  // namespace airlock::pkg
