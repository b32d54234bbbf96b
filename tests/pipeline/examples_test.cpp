// End to end with the two example models: the raw picture or signal, through the package's own
// pipeline (examples/*/airlock.yaml), must give the tensor the training script gave the model,
// and the real model behind it must reach the expected verdicts.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/yaml.hpp"
#include "encode.hpp"
#include "pipeline/image.hpp"
#include "pipeline/pipeline.hpp"
#include "runtime/npy.hpp"
#include "runtime/onnx_runtime.hpp"
#include "support/test_support.hpp"

namespace airlock::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::Tensor;

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> v(t.data.size() / 4);
  if (!v.empty()) {
    std::memcpy(v.data(), t.data.data(), t.data.size());
  }
  return v;
}

double MeanAbsDiff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = Floats(a), y = Floats(b);
  EXPECT_EQ(x.size(), y.size());
  double sum = 0;
  for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    sum += std::fabs(static_cast<double>(x[i]) - y[i]);
  }
  return x.empty() ? 0 : sum / static_cast<double>(x.size());
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = Floats(a), y = Floats(b);
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - y[i]));
  }
  return worst;
}

class ExampleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto rt = runtime::OnnxRuntime::Create();
    ASSERT_TRUE(rt) << rt.error().ToString();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() { runtime_.reset(); }

  void Load(const std::string& example) {
    dir_ = airlock::testing::SourceDir() / "examples" / example;
    auto backend = runtime_->Load(dir_ / "model.onnx", {});
    ASSERT_TRUE(backend) << backend.error().ToString();
    backend_ = std::move(*backend);
    auto doc = LoadYamlFile(dir_ / "airlock.yaml");
    ASSERT_TRUE(doc) << doc.error().ToString();
    pipeline_json_ = (*doc)["pipeline"];
    auto p = Pipeline::Parse(pipeline_json_, backend_->signature());
    ASSERT_TRUE(p) << p.error().ToString();
    pipeline_ = std::make_unique<Pipeline>(std::move(*p));
  }

  Tensor Npy(const std::string& rel, const std::string& name) {
    auto t = runtime::LoadNpy(dir_ / rel, name);
    EXPECT_TRUE(t) << t.error().ToString();
    return t ? *t : Tensor{};
  }

  json MustRun(const Pipeline& p, const Input& in) {
    auto r = p.Run(in, *backend_);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : json();
  }

  static std::unique_ptr<runtime::OnnxRuntime> runtime_;
  fs::path dir_;
  std::unique_ptr<runtime::InferenceBackend> backend_;
  json pipeline_json_;
  std::unique_ptr<Pipeline> pipeline_;
};
std::unique_ptr<runtime::OnnxRuntime> ExampleTest::runtime_;

// ---- visual-inspection: samples 0 and 2 are ok tags, 1 and 3 scratched ----

const char* const kTagVerdicts[] = {"ok", "scratched", "ok", "scratched"};

TEST_F(ExampleTest, VisualInspectionPngGivesTheTrainingTensorAndVerdict) {
  Load("visual-inspection");
  for (int k = 0; k < 4; ++k) {
    SCOPED_TRACE("sample " + std::to_string(k));
    std::string png = airlock::testing::ReadAll(dir_ / "samples" / std::to_string(k) / "image.png");
    auto tensors = pipeline_->Preprocess({png, "image/png", "image.png"});
    ASSERT_TRUE(tensors) << tensors.error().ToString();
    ASSERT_EQ(tensors->size(), 1u);
    Tensor expected = Npy("samples/" + std::to_string(k) + "/image.npy", "image");
    const Tensor& got = (*tensors)[0];
    EXPECT_EQ(got.name, "image");
    EXPECT_EQ(got.shape, expected.shape);
    // FP32 arithmetic in train.py's order: the same bits, allow a rounding step anyway.
    EXPECT_LE(MaxAbsDiff(got, expected), 1e-6);

    auto outputs = backend_->Run(*tensors);
    ASSERT_TRUE(outputs) << outputs.error().ToString();
    Tensor probs = Npy("samples/" + std::to_string(k) + "/probabilities.npy", "probabilities");
    EXPECT_TRUE(runtime::CompareTensors(probs, (*outputs)[0], {1e-3, 1e-4}));
    auto result = pipeline_->Postprocess(*tensors, *outputs);
    ASSERT_TRUE(result) << result.error().ToString();
    EXPECT_EQ((*result)["verdict"], kTagVerdicts[k]) << result->dump();
    EXPECT_EQ((*result)["label"], kTagVerdicts[k]);
    EXPECT_GT((*result)["score"].get<double>(), 0.5);
  }
}

TEST_F(ExampleTest, VisualInspectionLargerAndJpegPictures) {
  Load("visual-inspection");
  for (int k = 0; k < 4; ++k) {
    SCOPED_TRACE("sample " + std::to_string(k));
    std::string png = airlock::testing::ReadAll(dir_ / "samples" / std::to_string(k) / "image.png");
    auto img = DecodeImage(png, 3);
    ASSERT_TRUE(img) << img.error().ToString();
    ASSERT_EQ(img->width, 64);
    Tensor expected = Npy("samples/" + std::to_string(k) + "/image.npy", "image");

    // Twice the size (each pixel doubled): the bilinear resize back to 64×64 averages equal
    // pixels, so the tensor is exactly the training one.
    std::vector<std::uint8_t> big(128 * 128 * 3);
    for (int y = 0; y < 128; ++y) {
      for (int x = 0; x < 128; ++x) {
        for (int c = 0; c < 3; ++c) {
          big[static_cast<std::size_t>((y * 128 + x) * 3 + c)] =
              img->pixels[static_cast<std::size_t>(((y / 2) * 64 + x / 2) * 3 + c)];
        }
      }
    }
    auto tensors = pipeline_->Preprocess({pictures::EncodeRgbPng(big, 128, 128), "", "big.png"});
    ASSERT_TRUE(tensors) << tensors.error().ToString();
    EXPECT_EQ((*tensors)[0].shape, expected.shape);
    EXPECT_LE(MaxAbsDiff((*tensors)[0], expected), 1e-6);
    EXPECT_EQ(MustRun(*pipeline_, {pictures::EncodeRgbPng(big, 128, 128), "", "big.png"})["verdict"],
              kTagVerdicts[k]);

    // A camera's JPEG (quality 95, no chroma subsampling) loses some of the brushed texture's
    // sensor noise: about 2 grey levels on average (PIL measures the same 0.074 for sample 0).
    // Still the same verdict.
    std::string jpeg = pictures::EncodeJpeg(img->pixels, 64, 64, 3, 95);
    tensors = pipeline_->Preprocess({jpeg, "", "tag.jpg"});
    ASSERT_TRUE(tensors) << tensors.error().ToString();
    EXPECT_LE(MeanAbsDiff((*tensors)[0], expected), 0.12);  // one grey level is 0.034
    json result = MustRun(*pipeline_, {jpeg, "image/jpeg", "tag.jpg"});
    EXPECT_EQ(result["verdict"], kTagVerdicts[k]) << result.dump();
    EXPECT_EQ(result["name"], "tag.jpg");
  }
}

TEST_F(ExampleTest, VisualInspectionRefusesHostilePictures) {
  Load("visual-inspection");
  std::string png = airlock::testing::ReadAll(dir_ / "samples/0/image.png");
  for (const std::string& bad :
       {png.substr(0, png.size() / 2), pictures::WithPngSize(png, 50000, 50000),
        std::string("\xff\xd8\xff\xdb") + std::string(100, '\0'), std::string("[1, 2, 3]")}) {
    auto r = pipeline_->Run({bad, "", "bad"}, *backend_);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().ToString();
  }
}

// ---- vibration-anomaly: samples 0 and 2 normal, 1, 3 and 4 anomalous ----

const char* const kWindowVerdicts[] = {"normal", "anomaly", "normal", "anomaly", "anomaly"};

// The accelerometer signal in g that train.py scaled by 0.5 into window.npy.
std::vector<float> RawSignal(const Tensor& window) {
  std::vector<float> v = Floats(window);
  for (float& x : v) {
    x /= 0.5f;  // exact: a power of two
  }
  return v;
}

std::string JsonNumbers(const std::vector<float>& v) {
  json a = json::array();
  for (float x : v) {
    a.push_back(x);  // nlohmann prints the shortest text that reads back as the same FP32
  }
  return a.dump();
}

std::string RawFp32(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

TEST_F(ExampleTest, VibrationAnomalySignalsGiveTheTrainingWindowsAndVerdicts) {
  Load("vibration-anomaly");
  for (int k = 0; k < 5; ++k) {
    SCOPED_TRACE("sample " + std::to_string(k));
    Tensor window = Npy("samples/" + std::to_string(k) + "/window.npy", "window");
    std::vector<float> signal = RawSignal(window);
    auto tensors = pipeline_->Preprocess({JsonNumbers(signal), "application/json", "sensor/1"});
    ASSERT_TRUE(tensors) << tensors.error().ToString();
    EXPECT_EQ((*tensors)[0].shape, (std::vector<std::int64_t>{1, 256}));
    EXPECT_EQ(Floats((*tensors)[0]), Floats(window));  // bit for bit

    json result = MustRun(*pipeline_, {RawFp32(signal), "application/octet-stream", "sensor/1"});
    EXPECT_EQ(result["verdict"], kWindowVerdicts[k]) << result.dump();
    Tensor score = Npy("samples/" + std::to_string(k) + "/score.npy", "score");
    EXPECT_NEAR(result["score"].get<double>(), score.ValueAsDouble(0), 1e-6);
    EXPECT_EQ(result["name"], "sensor/1");
  }
}

TEST_F(ExampleTest, VibrationAnomalyStreamIsWindowedAndTheWorstWindowDecides) {
  Load("vibration-anomaly");
  // Half a second of normal running, then the bearing fault of sample 1: 512 samples make the
  // windows [0, 256), [128, 384) and [256, 512).
  std::vector<float> stream = RawSignal(Npy("samples/0/window.npy", "w"));
  std::vector<float> fault = RawSignal(Npy("samples/1/window.npy", "w"));
  stream.insert(stream.end(), fault.begin(), fault.end());
  Tensor npy = {"w", runtime::DataType::kFp32, {512}, RawFp32(stream), {}};
  json result = MustRun(*pipeline_, {runtime::SerializeNpy(npy).value(), "", "stream.npy"});
  ASSERT_EQ(result["rows"].size(), 3u) << result.dump();
  EXPECT_EQ(result["rows"][0]["verdict"], "normal");
  EXPECT_EQ(result["rows"][0]["start"], 0);
  EXPECT_EQ(result["rows"][1]["start"], 128);
  EXPECT_EQ(result["rows"][2]["verdict"], "anomaly");
  EXPECT_EQ(result["rows"][2]["start"], 256);
  EXPECT_EQ(result["verdict"], "anomaly");
  ASSERT_TRUE(result.contains("worst_row"));
  EXPECT_NE(result["worst_row"], 0);

  // A signal shorter than one window is the sender's mistake.
  auto r = pipeline_->Preprocess({JsonNumbers(std::vector<float>(100, 0.f)), "", "short"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("shorter than one window"), std::string::npos);
}

TEST_F(ExampleTest, VibrationAnomalyReconstructionErrorMatchesTheModelScore) {
  Load("vibration-anomaly");
  json p = pipeline_json_;
  p["postprocess"] = json::array({{{"op", "reconstruction_error"},
                                   {"output", "reconstruction"},
                                   {"above", "anomaly"},
                                   {"below", "normal"}}});  // value from thresholds.anomaly
  auto recon = Pipeline::Parse(p, backend_->signature());
  ASSERT_TRUE(recon) << recon.error().ToString();
  for (int k = 0; k < 5; ++k) {
    SCOPED_TRACE("sample " + std::to_string(k));
    Tensor window = Npy("samples/" + std::to_string(k) + "/window.npy", "window");
    json result = MustRun(*recon, {JsonNumbers(RawSignal(window)), "", ""});
    EXPECT_EQ(result["verdict"], kWindowVerdicts[k]) << result.dump();
    Tensor score = Npy("samples/" + std::to_string(k) + "/score.npy", "score");
    EXPECT_NEAR(result["score"].get<double>(), score.ValueAsDouble(0),
                1e-4 * score.ValueAsDouble(0));
  }
}

}  // namespace
}  // namespace airlock::pipeline
