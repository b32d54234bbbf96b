#include "runtime/onnx_runtime.hpp"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/onnx_models.hpp"
#include "support/test_support.hpp"

namespace airlock::runtime {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TempDir;
using airlock::testing::WriteAll;

Tensor Fp32(std::string name, std::vector<std::int64_t> shape, const std::vector<float>& v) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = DataType::kFp32;
  t.shape = std::move(shape);
  t.data.resize(v.size() * sizeof(float));
  if (!v.empty()) {  // memcpy from a null pointer is undefined, even for 0 bytes
    std::memcpy(t.data.data(), v.data(), t.data.size());
  }
  return t;
}

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> out(t.data.size() / sizeof(float));
  if (!out.empty()) {  // memcpy from a null pointer is undefined, even for 0 bytes
    std::memcpy(out.data(), t.data.data(), out.size() * sizeof(float));
  }
  return out;
}

// One ONNX Runtime environment for the whole suite, as in a real process.
class OnnxRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto rt = OnnxRuntime::Create();
    ASSERT_TRUE(rt) << rt.error().ToString();
    runtime_ = std::move(*rt);
  }
  static void TearDownTestSuite() { runtime_.reset(); }

  std::unique_ptr<InferenceBackend> LoadOk(const fs::path& model,
                                           const SessionConfig& config = {}) {
    auto backend = runtime_->Load(model, config);
    EXPECT_TRUE(backend) << backend.error().ToString();
    return backend ? std::move(*backend) : nullptr;
  }

  std::unique_ptr<InferenceBackend> LoadAffine() {
    testing::WriteAffineModel(dir_ / "affine.onnx");
    return LoadOk(dir_ / "affine.onnx");
  }

  // Runs x through the affine model and checks y == 2x + 1.
  static void ExpectAffine(InferenceBackend& backend, std::int64_t batch) {
    std::vector<float> x(static_cast<std::size_t>(batch) * 4);
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = static_cast<float>(i) * 0.5f - 3.0f;
    }
    auto out = backend.Run({Fp32("x", {batch, 4}, x)});
    ASSERT_TRUE(out) << out.error().ToString();
    ASSERT_EQ(out->size(), 1u);
    const Tensor& y = (*out)[0];
    EXPECT_EQ(y.name, "y");
    EXPECT_EQ(y.dtype, DataType::kFp32);
    EXPECT_EQ(y.shape, (std::vector<std::int64_t>{batch, 4}));
    std::vector<float> got = Floats(y);
    ASSERT_EQ(got.size(), x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_FLOAT_EQ(got[i], x[i] * 2 + 1) << "element " << i;
    }
  }

  static inline std::unique_ptr<OnnxRuntime> runtime_;
  TempDir dir_;
};

TEST_F(OnnxRuntimeTest, ReportsItsVersion) {
  std::string v = runtime_->Version();
  EXPECT_FALSE(v.empty());
  EXPECT_EQ(v.rfind("1.", 0), 0u) << v;
}

TEST_F(OnnxRuntimeTest, AffineModelSignature) {
  auto backend = LoadAffine();
  ASSERT_TRUE(backend);
  const ModelSignature& sig = backend->signature();
  ASSERT_EQ(sig.inputs.size(), 1u);
  EXPECT_EQ(sig.inputs[0].name, "x");
  EXPECT_EQ(sig.inputs[0].dtype, DataType::kFp32);
  EXPECT_EQ(sig.inputs[0].shape, (std::vector<std::int64_t>{-1, 4}));
  EXPECT_EQ(sig.inputs[0].dim_names, (std::vector<std::string>{"batch", ""}));
  ASSERT_EQ(sig.outputs.size(), 1u);
  EXPECT_EQ(sig.outputs[0].name, "y");
  EXPECT_EQ(sig.outputs[0].dtype, DataType::kFp32);
  EXPECT_EQ(sig.outputs[0].shape, (std::vector<std::int64_t>{-1, 4}));
}

TEST_F(OnnxRuntimeTest, AffineModelComputesTwoXPlusOne) {
  auto backend = LoadAffine();
  ASSERT_TRUE(backend);
  auto out = backend->Run({Fp32("x", {1, 4}, {0.0f, 1.0f, -2.5f, 100.0f})});
  ASSERT_TRUE(out) << out.error().ToString();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ(Floats((*out)[0]), (std::vector<float>{1.0f, 3.0f, -4.0f, 201.0f}));
}

TEST_F(OnnxRuntimeTest, AffineModelTakesAnyBatchSize) {
  auto backend = LoadAffine();
  ASSERT_TRUE(backend);
  ExpectAffine(*backend, 3);
  ExpectAffine(*backend, 1);
  ExpectAffine(*backend, 64);
}

TEST_F(OnnxRuntimeTest, OtherWidthsFromTheModel) {
  testing::WriteAffineModel(dir_ / "affine3.onnx", 3);
  auto backend = LoadOk(dir_ / "affine3.onnx");
  ASSERT_TRUE(backend);
  EXPECT_EQ(backend->signature().inputs[0].shape, (std::vector<std::int64_t>{-1, 3}));
  auto out = backend->Run({Fp32("x", {2, 3}, {1, 2, 3, 4, 5, 6})});
  ASSERT_TRUE(out);
  EXPECT_EQ(Floats((*out)[0]), (std::vector<float>{3, 5, 7, 9, 11, 13}));
}

TEST_F(OnnxRuntimeTest, InputsThatDoNotFitAreRefusedAndTheBackendKeepsWorking) {
  auto backend = LoadAffine();
  ASSERT_TRUE(backend);

  Tensor fp64;
  fp64.name = "x";
  fp64.dtype = DataType::kFp64;
  fp64.shape = {1, 4};
  fp64.data.assign(32, '\0');

  Tensor short_data = Fp32("x", {2, 4}, {1, 2, 3, 4});  // shape says 8 elements, data has 4

  struct Case {
    const char* what;
    std::vector<Tensor> inputs;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"wrong dtype", {fp64}, "must be FP32, got FP64"});
  cases.push_back({"wrong width", {Fp32("x", {1, 5}, {1, 2, 3, 4, 5})}, "must have shape [?,4]"});
  cases.push_back({"wrong rank", {Fp32("x", {4}, {1, 2, 3, 4})}, "must have shape"});
  cases.push_back({"wrong name", {Fp32("z", {1, 4}, {1, 2, 3, 4})}, "no input named \"z\""});
  cases.push_back({"missing input", {}, "missing input \"x\""});
  cases.push_back({"short data", {short_data}, "needs 32 bytes, has 16"});
  cases.push_back({"extra input",
                   {Fp32("x", {1, 4}, {1, 2, 3, 4}), Fp32("w", {1, 4}, {1, 2, 3, 4})},
                   "no input named \"w\""});
  for (const auto& c : cases) {
    auto out = backend->Run(c.inputs);
    ASSERT_FALSE(out) << c.what;
    EXPECT_EQ(out.error().code(), ErrorCode::kInvalidArgument) << c.what;
    EXPECT_NE(out.error().message().find(c.message), std::string::npos)
        << c.what << ": " << out.error().message();
    // The backend still serves the next good request.
    ExpectAffine(*backend, 2);
  }
}

TEST_F(OnnxRuntimeTest, ModelWithUnknownOperatorFailsToLoad) {
  testing::WriteUnknownOpModel(dir_ / "unknown.onnx");
  auto backend = runtime_->Load(dir_ / "unknown.onnx", {});
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().code(), ErrorCode::kModel);
  EXPECT_NE(backend.error().message().find((dir_ / "unknown.onnx").string()), std::string::npos)
      << backend.error().message();
  // The runtime still loads good models afterwards.
  auto good = LoadAffine();
  ASSERT_TRUE(good);
  ExpectAffine(*good, 1);
}

TEST_F(OnnxRuntimeTest, NonOnnxFilesFailToLoadNamingThePath) {
  WriteAll(dir_ / "model.onnx", "this is a README, not a model\n");
  WriteAll(dir_ / "empty.onnx", "");
  for (const fs::path& p : {dir_ / "model.onnx", dir_ / "empty.onnx", dir_ / "missing.onnx"}) {
    auto backend = runtime_->Load(p, {});
    ASSERT_FALSE(backend) << p;
    EXPECT_EQ(backend.error().code(), ErrorCode::kModel) << p;
    EXPECT_NE(backend.error().message().find(p.string()), std::string::npos)
        << backend.error().message();
  }
  auto good = LoadAffine();
  ASSERT_TRUE(good);
  ExpectAffine(*good, 1);
}

TEST_F(OnnxRuntimeTest, StringModelRoundTripsBytes) {
  testing::WriteStringIdentityModel(dir_ / "strings.onnx");
  auto backend = LoadOk(dir_ / "strings.onnx");
  ASSERT_TRUE(backend);
  const ModelSignature& sig = backend->signature();
  ASSERT_EQ(sig.inputs.size(), 1u);
  EXPECT_EQ(sig.inputs[0].name, "text");
  EXPECT_EQ(sig.inputs[0].dtype, DataType::kBytes);
  EXPECT_EQ(sig.inputs[0].shape, std::vector<std::int64_t>{-1});
  EXPECT_EQ(sig.inputs[0].dim_names, std::vector<std::string>{"n"});
  EXPECT_EQ(sig.outputs[0].name, "same");
  EXPECT_EQ(sig.outputs[0].dtype, DataType::kBytes);

  Tensor in;
  in.name = "text";
  in.dtype = DataType::kBytes;
  in.strings = {"hello",
                "",
                "w\xc3\xb6rld \xf0\x9f\x8f\xad",
                std::string(10000, 'x'),
                "end",
                std::string("in\0side", 7)};
  in.shape = {static_cast<std::int64_t>(in.strings.size())};
  auto out = backend->Run({in});
  ASSERT_TRUE(out) << out.error().ToString();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].name, "same");
  EXPECT_EQ((*out)[0].dtype, DataType::kBytes);
  EXPECT_EQ((*out)[0].shape, in.shape);
  EXPECT_EQ((*out)[0].strings, in.strings);

  // No strings at all.
  Tensor none = in;
  none.strings.clear();
  none.shape = {0};
  auto empty = backend->Run({none});
  ASSERT_TRUE(empty) << empty.error().ToString();
  EXPECT_TRUE((*empty)[0].strings.empty());
  EXPECT_EQ((*empty)[0].shape, std::vector<std::int64_t>{0});

  // A string count that does not match the shape is refused.
  Tensor wrong = in;
  wrong.shape = {2};
  auto bad = backend->Run({wrong});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(OnnxRuntimeTest, ConcurrentRunsGiveCorrectResults) {
  auto backend = LoadAffine();
  ASSERT_TRUE(backend);
  constexpr int kThreads = 4;
  constexpr int kIterations = 200;
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        std::int64_t batch = 1 + (i + t) % 5;
        std::vector<float> x(static_cast<std::size_t>(batch) * 4);
        for (std::size_t k = 0; k < x.size(); ++k) {
          x[k] = static_cast<float>(t * 100000 + i * 100 + static_cast<int>(k));
        }
        auto out = backend->Run({Fp32("x", {batch, 4}, x)});
        if (!out || out->size() != 1) {
          ++failed;
          continue;
        }
        std::vector<float> y = Floats((*out)[0]);
        if (y.size() != x.size()) {
          ++wrong;
          continue;
        }
        for (std::size_t k = 0; k < x.size(); ++k) {
          if (y[k] != x[k] * 2 + 1) {
            ++wrong;
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(OnnxRuntimeTest, SessionConfigVariantsAllWork) {
  testing::WriteAffineModel(dir_ / "affine.onnx");
  for (const SessionConfig& config : {SessionConfig{0, false, false}, SessionConfig{2, true, false},
                                      SessionConfig{1, false, true}}) {
    auto backend = LoadOk(dir_ / "affine.onnx", config);
    ASSERT_TRUE(backend);
    ExpectAffine(*backend, 3);
  }
}

// ---- Models from the ONNX project's own conformance data (Debian's libonnx-testdata). ----

Tensor FromProto(const onnx::TensorProto& tp) {
  Tensor t;
  t.name = tp.name();
  auto dtype = FromOnnxType(tp.data_type());
  EXPECT_TRUE(dtype) << tp.name();
  t.dtype = dtype.value_or(DataType::kFp32);
  t.shape.assign(tp.dims().begin(), tp.dims().end());
  if (t.dtype == DataType::kBytes) {
    t.strings.assign(tp.string_data().begin(), tp.string_data().end());
  } else {
    EXPECT_TRUE(tp.has_raw_data()) << tp.name() << " is not stored as raw_data";
    t.data = tp.raw_data();
  }
  return t;
}

Tensor LoadProto(const fs::path& path) {
  onnx::TensorProto tp;
  EXPECT_TRUE(tp.ParseFromString(airlock::testing::ReadAll(path))) << path;
  return FromProto(tp);
}

class OnnxConformanceTest : public OnnxRuntimeTest,
                            public ::testing::WithParamInterface<const char*> {};

TEST_P(OnnxConformanceTest, OutputsMatchTheReference) {
  fs::path dir = airlock::testing::OnnxTestData() / "node" / GetParam();
  if (!fs::exists(dir / "model.onnx")) {
    GTEST_SKIP() << dir << " is not installed (apt-get install libonnx-testdata)";
  }
  auto backend = LoadOk(dir / "model.onnx");
  ASSERT_TRUE(backend);
  const ModelSignature& sig = backend->signature();
  std::vector<Tensor> inputs;
  for (std::size_t i = 0; i < sig.inputs.size(); ++i) {
    Tensor t = LoadProto(dir / "test_data_set_0" / ("input_" + std::to_string(i) + ".pb"));
    t.name = sig.inputs[i].name;
    inputs.push_back(std::move(t));
  }
  auto outputs = backend->Run(inputs);
  ASSERT_TRUE(outputs) << outputs.error().ToString();
  ASSERT_EQ(outputs->size(), sig.outputs.size());
  for (std::size_t i = 0; i < outputs->size(); ++i) {
    Tensor expected = LoadProto(dir / "test_data_set_0" / ("output_" + std::to_string(i) + ".pb"));
    auto st = CompareTensors(expected, (*outputs)[i], Tolerance{});
    EXPECT_TRUE(st) << st.error().ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(NodeTests, OnnxConformanceTest,
                         ::testing::Values("test_relu", "test_sigmoid", "test_add",
                                           "test_matmul_2d", "test_softmax_axis_1",
                                           "test_conv_with_strides_padding",
                                           "test_maxpool_2d_default",
                                           "test_gemm_default_single_elem_vector_bias",
                                           "test_argmax_default_axis_example", "test_equal",
                                           "test_where_example", "test_cast_FLOAT_to_FLOAT16"));

}  // namespace
}  // namespace airlock::runtime
