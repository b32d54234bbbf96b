#include "pipeline/pipeline.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "encode.hpp"
#include "runtime/npy.hpp"
#include "support/tensors.hpp"

namespace airlock::pipeline {
namespace {

using nlohmann::json;
using runtime::DataType;
using runtime::ModelSignature;
using runtime::Tensor;
using runtime::TensorSpec;

ModelSignature Sig(std::vector<std::int64_t> in_shape, DataType in_type = DataType::kFp32,
                   std::vector<TensorSpec> outputs = {{"y", DataType::kFp32, {-1, 3}, {}}}) {
  ModelSignature sig;
  sig.inputs.push_back({"x", in_type, std::move(in_shape), {}});
  sig.outputs = std::move(outputs);
  return sig;
}

Pipeline MustParse(const json& j, const ModelSignature& sig, const Limits& limits = {}) {
  auto p = Pipeline::Parse(j, sig, limits);
  EXPECT_TRUE(p) << p.error().ToString();
  if (!p) {
    throw std::runtime_error("parse failed");
  }
  return std::move(*p);
}

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> v(t.data.size() / 4);
  if (!v.empty()) {
    std::memcpy(v.data(), t.data.data(), t.data.size());
  }
  return v;
}

Tensor PreprocessOne(const Pipeline& p, const Input& in) {
  auto out = p.Preprocess(in);
  EXPECT_TRUE(out) << out.error().ToString();
  if (!out || out->size() != 1) {
    throw std::runtime_error("preprocess failed");
  }
  return std::move((*out)[0]);
}

void ExpectError(const Status& st, ErrorCode code, const std::string& words) {
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), code) << st.error().ToString();
  EXPECT_NE(st.error().ToString().find(words), std::string::npos) << st.error().ToString();
}
template <typename T>
Status AsStatus(const Result<T>& r) {
  if (r) {
    return {};
  }
  return Fail(r.error());
}

// ---- Parse ----

TEST(PipelineParse, ExamplePipelinesAndEmptyOnes) {
  auto p = MustParse(json::object(), Sig({-1, 3}));
  EXPECT_FALSE(p.has_preprocess());
  EXPECT_FALSE(p.has_postprocess());
  p = MustParse({{"schema", "airlock.pipeline.v1"},
                 {"preprocess", {{{"op", "scale"}, {"factor", 2}}}},
                 {"postprocess", {{{"op", "argmax"}}}}},
                Sig({-1, 3}));
  EXPECT_TRUE(p.has_preprocess());
  EXPECT_TRUE(p.has_postprocess());
}

struct BadPipeline {
  const char* name;
  json pipeline;
  std::string words;
};

TEST(PipelineParse, RefusesBadStepsNamingThem) {
  const json ok_step = {{"op", "scale"}, {"factor", 2}};
  std::vector<BadPipeline> cases = {
      {"unknown op", {{"preprocess", {ok_step, {{"op", "blur"}}}}},
       "preprocess step 1 (blur): unknown op \"blur\""},
      {"no op", {{"preprocess", {{{"factor", 2}}}}}, "preprocess step 0: a step must be an object"},
      {"step not object", {{"postprocess", {"argmax"}}}, "postprocess step 0"},
      {"steps not list", {{"preprocess", {{"op", "scale"}}}}, "must be a list of steps"},
      {"missing param", {{"preprocess", {{{"op", "resize"}, {"width", 4}}}}},
       "preprocess step 0 (resize): needs a decoded image"},
      {"missing height",
       {{"preprocess", {{{"op", "decode_image"}}, {{"op", "resize"}, {"width", 4}}}}},
       "preprocess step 1 (resize): missing parameter \"height\""},
      {"negative width",
       {{"preprocess",
         {{{"op", "decode_image"}}, {{"op", "resize"}, {"width", -4}, {"height", 4}}}}},
       "\"width\" must be between 1 and"},
      {"string width",
       {{"preprocess",
         {{{"op", "decode_image"}}, {{"op", "resize"}, {"width", "4"}, {"height", 4}}}}},
       "\"width\" must be an integer"},
      {"fractional", {{"preprocess", {{{"op", "window"}, {"size", 2.5}}}}},
       "\"size\" must be an integer"},
      {"unknown param", {{"preprocess", {{{"op", "scale"}, {"factor", 2}, {"facter", 3}}}}},
       "preprocess step 0 (scale): unknown parameter \"facter\""},
      {"channels 2", {{"preprocess", {{{"op", "decode_image"}, {"channels", 2}}}}},
       "\"channels\" must be 1 or 3"},
      {"channels 4", {{"preprocess", {{{"op", "decode_image"}, {"channels", 4}}}}},
       "\"channels\" must be between 1 and 3"},
      {"decode not first", {{"preprocess", {ok_step, {{"op", "decode_image"}}}}},
       "decode_image must be the first step"},
      {"window not first", {{"preprocess", {ok_step, {{"op", "window"}, {"size", 4}}}}},
       "window must be the first step"},
      {"layout twice",
       {{"preprocess",
         {{{"op", "decode_image"}},
          {{"op", "layout"}, {"from", "HWC"}, {"to", "CHW"}},
          {{"op", "layout"}, {"from", "HWC"}, {"to", "CHW"}}}}},
       "preprocess step 2 (layout): the image is in CHW layout, not HWC"},
      {"layout NCHW",
       {{"preprocess", {{{"op", "decode_image"}}, {{"op", "layout"}, {"from", "HWC"}, {"to", "NCHW"}}}}},
       "from HWC to NCHW"},
      {"normalize lengths",
       {{"preprocess", {{{"op", "normalize"}, {"mean", {1, 2}}, {"std", {1}}}}}},
       "same length"},
      {"normalize std 0", {{"preprocess", {{{"op", "normalize"}, {"mean", 0}, {"std", 0}}}}},
       "must not be 0"},
      {"scale nan", {{"preprocess", {{{"op", "scale"}, {"factor", "x"}}}}}, "finite number"},
      {"cast wrong dtype", {{"preprocess", {{{"op", "cast"}, {"dtype", "FP16"}}}}},
       "casts to FP16 but the model's input \"x\" is FP32"},
      {"cast bogus", {{"preprocess", {{{"op", "cast"}, {"dtype", "FLOAT"}}}}},
       "numeric datatype"},
      {"cast not last", {{"preprocess", {{{"op", "cast"}, {"dtype", "FP32"}}, ok_step}}},
       "cast must be the last"},
      {"huge resize",
       {{"preprocess",
         {{{"op", "decode_image"}}, {{"op", "resize"}, {"width", 60000}, {"height", 60000}}}}},
       "more than the limit"},
      {"argmax unknown tensor", {{"postprocess", {{{"op", "argmax"}, {"tensor", "z"}}}}},
       "postprocess step 0 (argmax): the model has no output \"z\" (it has y)"},
      {"top_k without k", {{"postprocess", {{{"op", "top_k"}}}}}, "missing parameter \"k\""},
      {"threshold no value",
       {{"postprocess", {{{"op", "threshold"}, {"above", "bad"}, {"below", "good"}}}}},
       "missing parameter \"value\""},
      {"threshold no labels", {{"postprocess", {{{"op", "threshold"}, {"value", 1}}}}},
       "missing parameter \"above\""},
      {"nms format",
       {{"postprocess", {{{"op", "nms"}, {"box_format", "yolo"}}}}},
       "\"box_format\" must be xyxy, xywh or cxcywh"},
      {"nms iou", {{"postprocess", {{{"op", "nms"}, {"iou", 2}}}}}, "between 0 and 1"},
      {"labels not strings", {{"postprocess", {{{"op", "argmax"}, {"labels", {1, 2}}}}}},
       "list of strings"},
      {"top labels", {{"labels", "ok"}}, "\"labels\" must be a list of strings"},
      {"label count", {{"postprocess", {{{"op", "argmax"}, {"labels", {"a", "b"}}}}}},
       "postprocess step 0 (argmax): 2 labels for the 3 classes of \"y\""},
      {"top_k label count", {{"labels", {"a"}}, {"postprocess", {{{"op", "top_k"}, {"k", 1}}}}},
       "1 labels for the 3 classes"},
      {"schema", {{"schema", "airlock.pipeline.v2"}}, "not airlock.pipeline.v1"},
      {"thresholds", {{"thresholds", {1, 2}}}, "\"thresholds\" must be an object"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectError(AsStatus(Pipeline::Parse(c.pipeline, Sig({-1, 3}))), ErrorCode::kInvalidArgument,
                c.words);
  }
  ExpectError(AsStatus(Pipeline::Parse(json::array(), Sig({-1, 3}))),
              ErrorCode::kInvalidArgument, "must be an object");
}

TEST(PipelineParse, PreprocessNeedsASingleInputModel) {
  ModelSignature two = Sig({-1, 3});
  two.inputs.push_back({"x2", DataType::kFp32, {-1, 3}, {}});
  ExpectError(AsStatus(Pipeline::Parse({{"preprocess", {{{"op", "scale"}, {"factor", 2}}}}}, two)),
              ErrorCode::kInvalidArgument, "one input; this one has 2");
  auto p = MustParse({{"postprocess", {{{"op", "argmax"}}}}}, two);
  ExpectError(AsStatus(p.Preprocess({"[1,2,3]", "", "a"})), ErrorCode::kInvalidArgument,
              "one input");
}

TEST(PipelineParse, ThresholdValueFromThresholdsMap) {
  auto p = MustParse({{"thresholds", {{"anomaly", 0.5}}},
                      {"postprocess",
                       {{{"op", "threshold"}, {"tensor", "y"}, {"above", "anomaly"},
                         {"below", "normal"}}}}},
                     Sig({-1, 3}, DataType::kFp32, {{"y", DataType::kFp32, {-1}, {}}}));
  auto r = p.Postprocess({}, {testing::Fp32("y", {2}, {0.4f, 0.6f})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["rows"][0]["verdict"], "normal");
  EXPECT_EQ((*r)["rows"][1]["verdict"], "anomaly");
}

// ---- inputs ----

json ScalePipeline() { return {{"preprocess", {{{"op", "scale"}, {"factor", 2}}}}}; }

TEST(PipelineInput, JsonNpyRawAndSniffing) {
  auto p = MustParse(ScalePipeline(), Sig({-1, 2, 2}));
  std::vector<float> want = {2, 4, 6, 8};
  std::vector<std::int64_t> shape = {1, 2, 2};

  Tensor t = PreprocessOne(p, {"[[1, 2], [3, 4.0]]", "application/json", "j"});
  EXPECT_EQ(t.name, "x");
  EXPECT_EQ(t.shape, shape);  // batch dimension added
  EXPECT_EQ(Floats(t), want);
  t = PreprocessOne(p, {" \n[[1,2],[3,4]]", "", "sniffed json"});
  EXPECT_EQ(Floats(t), want);

  Tensor npy_in = testing::MakeTensor<double>("a", DataType::kFp64, {2, 2}, {1, 2, 3, 4});
  std::string npy = runtime::SerializeNpy(npy_in).value();
  EXPECT_EQ(Floats(PreprocessOne(p, {npy, "application/x-npy", "n"})), want);
  EXPECT_EQ(Floats(PreprocessOne(p, {npy, "", "sniffed npy"})), want);

  auto raw_p = MustParse(ScalePipeline(), Sig({-1, 4}));
  std::vector<float> v = {1, 2, 3, 4};
  std::string raw(16, '\0');
  std::memcpy(raw.data(), v.data(), 16);  // the test machine is little-endian, like the format
  t = PreprocessOne(raw_p, {raw, "Application/Octet-Stream; foo=bar", "r"});
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(Floats(t), want);
}

TEST(PipelineInput, RefusesMalformedNumbers) {
  auto p = MustParse(ScalePipeline(), Sig({-1, 2}));
  struct Case {
    std::string bytes, type, words;
  };
  std::vector<Case> cases = {
      {"[[1,2],[3]]", "application/json", "not rectangular"},
      {"[[1,2],3]", "application/json", "not rectangular"},
      {"[1,[2,3]]", "application/json", "side by side"},
      {"[1,\"2\"]", "application/json", "a string is not a number"},
      {"[1,null]", "application/json", "null"},
      {"{\"a\":1}", "application/json", "an object"},
      {"3", "application/json", "a single number"},
      {"[1,2", "application/json", "malformed JSON"},
      {"[1,2] x", "application/json", "malformed JSON"},
      {"[1e39]", "application/json", "does not fit in FP32"},
      {std::string(20, '[') + std::string(20, ']'), "application/json", "nested deeper"},
      {"abc", "application/octet-stream", "not a whole number of 4-byte values"},
      {"\x93NUMPY garbage", "application/x-npy", ""},
      {"hello", "", "cannot tell what the input is"},
      {"[1,2]", "text/csv", "unsupported content type \"text/csv\""},
      {"[1,2]", "image/png", "the bytes are not a PNG"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.bytes);
    auto r = p.Preprocess({c.bytes, c.type, "input.bin"});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().ToString().find("while pre-processing input.bin"), std::string::npos);
    EXPECT_NE(r.error().ToString().find(c.words), std::string::npos) << r.error().ToString();
  }
}

TEST(PipelineInput, LimitsTheNumberOfValues) {
  Limits small;
  small.max_elements = 4;
  auto p = MustParse(ScalePipeline(), Sig({-1}), small);
  EXPECT_TRUE(p.Preprocess({"[1,2,3,4]", "", ""}));
  ExpectError(AsStatus(p.Preprocess({"[1,2,3,4,5]", "", ""})), ErrorCode::kInvalidArgument,
              "more than the limit of 4 values");
  ExpectError(AsStatus(p.Preprocess({std::string(20, '\0'), "application/octet-stream", ""})),
              ErrorCode::kInvalidArgument, "5 values, more than the limit of 4");
}

TEST(PipelineInput, ImageAndNumberPipelinesRefuseTheOtherKind) {
  auto img_p = MustParse({{"preprocess", {{{"op", "decode_image"}}}}}, Sig({-1, 1, 1, 3}));
  ExpectError(AsStatus(img_p.Preprocess({"[1,2,3]", "", ""})), ErrorCode::kInvalidArgument,
              "takes a JPEG or PNG image, not numbers");
  auto num_p = MustParse(ScalePipeline(), Sig({-1, 3}));
  ExpectError(AsStatus(num_p.Preprocess({pictures::EncodeRgbPng({1, 2, 3}, 1, 1), "", ""})),
              ErrorCode::kInvalidArgument, "takes numbers");
  ExpectError(AsStatus(img_p.Preprocess({"\xff\xd8\xff\xe0 broken", "image/jpeg", ""})),
              ErrorCode::kInvalidArgument, "corrupt JPEG");
}

TEST(PipelineInput, WithoutStepsNumbersPassThroughToTheModelType) {
  auto p = MustParse(json::object(), Sig({-1, 2}, DataType::kInt64));
  Tensor npy_in = testing::MakeTensor<std::int64_t>("a", DataType::kInt64, {2}, {1LL << 40, 7});
  Tensor t = PreprocessOne(p, {runtime::SerializeNpy(npy_in).value(), "", ""});
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(t.data, npy_in.data);  // bit for bit
  t = PreprocessOne(p, {"[[3, 4]]", "", ""});
  EXPECT_EQ(t.dtype, DataType::kInt64);
  EXPECT_EQ(t.ValueAsDouble(1), 4);
  ExpectError(AsStatus(p.Preprocess({"[[1,2,3]]", "", ""})), ErrorCode::kInvalidArgument,
              "does not fit the model");
}

// ---- image steps ----

json ImagePipeline(std::vector<json> steps, int channels = 1) {
  json pre = json::array({{{"op", "decode_image"}, {"channels", channels}}});
  for (auto& s : steps) {
    pre.push_back(std::move(s));
  }
  return {{"preprocess", pre}};
}

TEST(PipelineImage, DecodeAddsBatchAndKeepsPixelValues) {
  auto p = MustParse(ImagePipeline({}, 3), Sig({-1, 1, 2, 3}));
  Tensor t = PreprocessOne(p, {pictures::EncodeRgbPng({1, 2, 3, 4, 5, 6}, 2, 1), "image/png", ""});
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(Floats(t), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(PipelineImage, ResizeIsBilinearWithHalfPixelCentres) {
  // Up: [0, 100] -> sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  auto up = MustParse(ImagePipeline({{{"op", "resize"}, {"width", 4}, {"height", 1}}}),
                      Sig({1, 4, 1}));
  Tensor t = PreprocessOne(up, {pictures::EncodeGreyPng({0, 100}, 2, 1), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{0, 25, 75, 100}));
  // Down by two: every output is the mean of a 2×2 block.
  auto down = MustParse(ImagePipeline({{{"op", "resize"}, {"width", 2}, {"height", 1}}}),
                        Sig({1, 2, 1}));
  t = PreprocessOne(down, {pictures::EncodeGreyPng({0, 10, 20, 30, 40, 50, 60, 70}, 4, 2), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{25, 45}));
  // Same size: the exact pixels.
  auto same = MustParse(ImagePipeline({{{"op", "resize"}, {"width", 2}, {"height", 1}}}),
                        Sig({1, 2, 1}));
  t = PreprocessOne(same, {pictures::EncodeGreyPng({3, 250}, 2, 1), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{3, 250}));
}

std::vector<std::uint8_t> Ramp(int n) {
  std::vector<std::uint8_t> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    v[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
  }
  return v;
}

TEST(PipelineImage, CenterCropAndBoxCrop) {
  // 5×5 -> 2×2: offset round(1.5) = 2 (torchvision, half to even).
  auto center = MustParse(ImagePipeline({{{"op", "center_crop"}, {"width", 2}, {"height", 2}}}),
                          Sig({2, 2, 1}));
  Tensor t = PreprocessOne(center, {pictures::EncodeGreyPng(Ramp(25), 5, 5), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{12, 13, 17, 18}));
  // 4×4 -> 2×2: offset 1.
  t = PreprocessOne(center, {pictures::EncodeGreyPng(Ramp(16), 4, 4), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{5, 6, 9, 10}));
  ExpectError(AsStatus(center.Preprocess({pictures::EncodeGreyPng(Ramp(2), 2, 1), "", ""})),
              ErrorCode::kInvalidArgument, "preprocess step 1 (center_crop)");

  auto box = MustParse(
      ImagePipeline({{{"op", "crop"}, {"x", 1}, {"y", 2}, {"width", 3}, {"height", 1}}}),
      Sig({1, 3, 1}));
  t = PreprocessOne(box, {pictures::EncodeGreyPng(Ramp(20), 5, 4), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{11, 12, 13}));
  ExpectError(AsStatus(box.Preprocess({pictures::EncodeGreyPng(Ramp(9), 3, 3), "", ""})),
              ErrorCode::kInvalidArgument, "cannot crop 3x1 at (1, 2) from a 3x3 image");
}

TEST(PipelineImage, ScaleNormalizeLayoutPerChannel) {
  auto p = MustParse(ImagePipeline({{{"op", "scale"}, {"factor", 0.5}},
                                    {{"op", "normalize"}, {"mean", {1, 2, 3}}, {"std", {1, 2, 4}}},
                                    {{"op", "layout"}, {"from", "HWC"}, {"to", "CHW"}},
                                    {{"op", "cast"}, {"dtype", "FP32"}}},
                                   3),
                     Sig({-1, 3, 1, 2}));
  // Two pixels: (10, 20, 30), (40, 50, 60).
  Tensor t = PreprocessOne(p, {pictures::EncodeRgbPng({10, 20, 30, 40, 50, 60}, 2, 1), "", ""});
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 3, 1, 2}));
  // CHW: R of both pixels, then G, then B; (v/2 - mean) / std.
  EXPECT_EQ(Floats(t), (std::vector<float>{4, 19, 4, 11.5f, 3, 6.75f}));

  // Normalising after the layout change uses the channel axis of CHW.
  auto chw = MustParse(ImagePipeline({{{"op", "layout"}, {"from", "HWC"}, {"to", "CHW"}},
                                      {{"op", "normalize"}, {"mean", {0, 10, 20}}, {"std", {1, 1, 1}}}},
                                     3),
                       Sig({-1, 3, 1, 2}));
  ExpectError(AsStatus(Pipeline::Parse(
                  ImagePipeline({{{"op", "normalize"}, {"mean", {0, 10, 20}}, {"std", {1}}}}, 3),
                  Sig({-1, 1, 2, 3}))),
              ErrorCode::kInvalidArgument, "same length");
  t = PreprocessOne(chw, {pictures::EncodeRgbPng({10, 20, 30, 40, 50, 60}, 2, 1), "", ""});
  EXPECT_EQ(Floats(t), (std::vector<float>{10, 40, 10, 40, 10, 40}));
}

TEST(PipelineImage, WrongChannelsAreRefused) {
  // A grey decode cannot be normalised with three means…
  auto p = MustParse(ImagePipeline({{{"op", "normalize"}, {"mean", {1, 2, 3}}, {"std", {1, 1, 1}}}},
                                   1),
                     Sig({-1, 2, 1, 1}));
  ExpectError(AsStatus(p.Preprocess({pictures::EncodeRgbPng({1, 2, 3, 4, 5, 6}, 2, 1), "", ""})),
              ErrorCode::kInvalidArgument, "normalize has 3 means for 1 channels");
  // …nor fed to a model that wants three channels.
  auto q = MustParse(ImagePipeline({{{"op", "layout"}, {"from", "HWC"}, {"to", "CHW"}}}, 1),
                     Sig({-1, 3, 1, 2}));
  ExpectError(AsStatus(q.Preprocess({pictures::EncodeRgbPng({1, 2, 3, 4, 5, 6}, 2, 1), "", ""})),
              ErrorCode::kInvalidArgument, "does not fit the model");
}

TEST(PipelineImage, HugeImageRefusedWithPipelineLimit) {
  Limits limits;
  limits.max_pixels = 1000;
  auto p = MustParse(ImagePipeline({}), Sig({-1, 40, 40, 1}), limits);
  std::string png = pictures::WithPngSize(pictures::EncodeGreyPng(Ramp(4), 2, 2), 40, 40);
  ExpectError(AsStatus(p.Preprocess({png, "", "big.png"})), ErrorCode::kInvalidArgument,
              "40x40 pixels is larger than the limit of 1000 pixels");
}

TEST(PipelineCast, ConvertsToTheModelType) {
  auto half = MustParse({{"preprocess", {{{"op", "cast"}, {"dtype", "FP16"}}}}},
                        Sig({-1, 5}, DataType::kFp16));
  Tensor t = PreprocessOne(half, {"[1, 0.1, 65520, -2, 1e-7]", "", ""});
  ASSERT_EQ(t.dtype, DataType::kFp16);
  std::vector<std::uint16_t> bits(5);
  std::memcpy(bits.data(), t.data.data(), 10);
  // 1.0, 0.1 (rounded to nearest), overflow to infinity, -2, a subnormal (1e-7 / 2^-24 ≈ 1.68 -> 2).
  EXPECT_EQ(bits, (std::vector<std::uint16_t>{0x3c00, 0x2e66, 0x7c00, 0xc000, 0x0002}));

  auto u8 = MustParse({{"preprocess", {{{"op", "cast"}, {"dtype", "UINT8"}}}}},
                      Sig({-1, 5}, DataType::kUint8));
  t = PreprocessOne(u8, {"[-3, 2.5, 3.5, 254.6, 1000]", "", ""});
  EXPECT_EQ(t.data, std::string("\x00\x02\x04\xff\xff", 5));  // ties to even, saturated
  auto i32 = MustParse({{"preprocess", {{{"op", "scale"}, {"factor", 1}}}}},
                       Sig({-1, 2}, DataType::kInt32));
  t = PreprocessOne(i32, {"[-1.4, 7.6]", "", ""});
  EXPECT_EQ(t.ValueAsDouble(0), -1);
  EXPECT_EQ(t.ValueAsDouble(1), 8);
}

// ---- signals ----

TEST(PipelineWindow, CutsOverlappingWindows) {
  auto p = MustParse({{"preprocess",
                       {{{"op", "window"}, {"size", 4}, {"hop", 2}},
                        {{"op", "scale"}, {"factor", 10}}}}},
                     Sig({-1, 4}));
  Tensor t = PreprocessOne(p, {"[0,1,2,3,4,5,6,7,8,9,10]", "", ""});  // 10 drops
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{4, 4}));
  EXPECT_EQ(Floats(t), (std::vector<float>{0, 10, 20, 30, 20, 30, 40, 50, 40, 50, 60, 70, 60, 70,
                                           80, 90}));
  t = PreprocessOne(p, {"[[0,1,2,3]]", "", ""});  // [1, n] is a signal too
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 4}));
  ExpectError(AsStatus(p.Preprocess({"[1,2,3]", "", ""})), ErrorCode::kInvalidArgument,
              "a signal of 3 samples is shorter than one window of 4");
  ExpectError(AsStatus(p.Preprocess({"[[1,2,3,4],[5,6,7,8]]", "", ""})),
              ErrorCode::kInvalidArgument, "one-dimensional signal");

  Limits limits;
  limits.max_elements = 100;
  auto hop1 = MustParse({{"preprocess", {{{"op", "window"}, {"size", 10}, {"hop", 1}}}}},
                        Sig({-1, 10}), limits);
  ExpectError(AsStatus(hop1.Preprocess({json(std::vector<int>(50, 1)).dump(), "", ""})),
              ErrorCode::kInvalidArgument, "the windows has 410 values");
}

TEST(PipelineWindow, NormalizeSignalWithOneMean) {
  auto p = MustParse({{"preprocess", {{{"op", "normalize"}, {"mean", 1}, {"std", 2}}}}},
                     Sig({-1, 3}));
  EXPECT_EQ(Floats(PreprocessOne(p, {"[1, 3, 5]", "", ""})), (std::vector<float>{0, 1, 2}));
}

// ---- post-processing ----

ModelSignature OutSig(std::vector<TensorSpec> outputs) {
  return Sig({-1, 4}, DataType::kFp32, std::move(outputs));
}

Result<json> Post(const json& pipeline, const ModelSignature& sig, std::vector<Tensor> outputs,
                  std::vector<Tensor> inputs = {}) {
  auto p = Pipeline::Parse(pipeline, sig);
  if (!p) {
    return Fail(p.error());
  }
  return p->Postprocess(inputs, outputs);
}

TEST(PipelinePost, SoftmaxArgmaxTopK) {
  json pipeline = {{"labels", {"a", "b", "c"}},
                   {"postprocess",
                    {{{"op", "softmax"}, {"tensor", "y"}},
                     {{"op", "argmax"}, {"tensor", "y"}},
                     {{"op", "top_k"}, {"tensor", "y"}, {"k", 2}, {"labels", {"A", "B", "C"}}}}}};
  auto r = Post(pipeline, OutSig({{"y", DataType::kFp32, {-1, 3}, {}}}),
                {testing::Fp32("y", {1, 3}, {1, 3, 2})});
  ASSERT_TRUE(r) << r.error().ToString();
  double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), sum = e1 + e2 + e3;
  EXPECT_EQ((*r)["label"], "b");
  EXPECT_EQ((*r)["verdict"], "b");
  EXPECT_EQ((*r)["index"], 1);
  EXPECT_NEAR((*r)["score"].get<double>(), e3 / sum, 1e-12);
  ASSERT_EQ((*r)["top_k"].size(), 2u);
  EXPECT_EQ((*r)["top_k"][0]["label"], "B");
  EXPECT_EQ((*r)["top_k"][1]["label"], "C");
  EXPECT_NEAR((*r)["top_k"][1]["score"].get<double>(), e2 / sum, 1e-12);
  EXPECT_FALSE(r->contains("rows"));

  // k larger than the row; labels missing -> the index as label.
  r = Post({{"postprocess", {{{"op", "top_k"}, {"k", 5}}, {{"op", "argmax"}}}}},
           OutSig({{"y", DataType::kFp32, {-1, 2}, {}}}), {testing::Fp32("y", {1, 2}, {0.2f, 0.1f})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["top_k"].size(), 2u);
  EXPECT_EQ((*r)["label"], "0");
}

TEST(PipelinePost, ThresholdRowsAndWorstRow) {
  json pipeline = {{"labels", {"ok", "scratched"}},
                   {"postprocess",
                    {{{"op", "threshold"}, {"tensor", "y"}, {"index", 1}, {"value", 0.5},
                      {"above", "scratched"}, {"below", "ok"}}}}};
  auto sig = OutSig({{"y", DataType::kFp32, {-1, 2}, {}}});
  auto r = Post(pipeline, sig, {testing::Fp32("y", {3, 2}, {0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.7f})});
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ((*r)["rows"].size(), 3u);
  EXPECT_EQ((*r)["rows"][0]["verdict"], "ok");
  EXPECT_EQ((*r)["rows"][1]["verdict"], "scratched");
  EXPECT_EQ((*r)["rows"][2]["verdict"], "scratched");
  EXPECT_EQ((*r)["verdict"], "scratched");
  EXPECT_EQ((*r)["worst_row"], 1);  // the higher score of the two worst verdicts
  EXPECT_NEAR((*r)["score"].get<double>(), 0.8, 1e-6);
  EXPECT_FALSE((*r)["rows"][0].contains("start"));  // no window step

  // Exactly at the threshold is below it.
  r = Post(pipeline, sig, {testing::Fp32("y", {1, 2}, {0.5f, 0.5f})});
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["verdict"], "ok");

  // Rows of two values need an index.
  json no_index = {{"postprocess",
                    {{{"op", "threshold"}, {"value", 0.5}, {"above", "x"}, {"below", "y"}}}}};
  ExpectError(AsStatus(Post(no_index, sig, {testing::Fp32("y", {1, 2}, {0.5f, 0.5f})})),
              ErrorCode::kInvalidArgument, "postprocess step 0 (threshold)");
  // NaN never passes as a verdict.
  json one = {{"postprocess",
               {{{"op", "threshold"}, {"value", 0.5}, {"above", "x"}, {"below", "y"}}}}};
  ExpectError(AsStatus(Post(one, OutSig({{"y", DataType::kFp32, {-1}, {}}}),
                            {testing::Fp32("y", {2}, {0.1f, NAN})})),
              ErrorCode::kModel, "row 1 holds NaN");
  // A missing output.
  ExpectError(AsStatus(Post(one, OutSig({{"y", DataType::kFp32, {-1}, {}}}),
                            {testing::Fp32("z", {1}, {0.1f})})),
              ErrorCode::kInvalidArgument, "no tensor \"y\"");
}

TEST(PipelinePost, UnlistedVerdictsAreTheWorst) {
  json pipeline = {{"severity", {"good", "bad"}},
                   {"labels", {"good", "weird", "bad"}},
                   {"postprocess", {{{"op", "argmax"}}}}};
  auto r = Post(pipeline, OutSig({{"y", DataType::kFp32, {-1, 3}, {}}}),
                {testing::Fp32("y", {3, 3}, {0, 0, 1, 0, 1, 0, 1, 0, 0})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["verdict"], "weird");
  EXPECT_EQ((*r)["worst_row"], 1);
  EXPECT_EQ((*r)["label"], "weird");
}

TEST(PipelinePost, RowCountsMustAgree) {
  json pipeline = {{"postprocess",
                    {{{"op", "argmax"}, {"tensor", "p"}},
                     {{"op", "threshold"}, {"tensor", "s"}, {"value", 1}, {"above", "a"},
                      {"below", "b"}}}}};
  auto sig = OutSig({{"p", DataType::kFp32, {-1, 2}, {}}, {"s", DataType::kFp32, {-1}, {}}});
  ExpectError(AsStatus(Post(pipeline, sig,
                            {testing::Fp32("p", {2, 2}, {1, 2, 3, 4}),
                             testing::Fp32("s", {3}, {1, 2, 3})})),
              ErrorCode::kInvalidArgument, "tensor \"s\" has 3 rows but an earlier step saw 2");
}

TEST(PipelinePost, ReconstructionErrorPerRow) {
  json pipeline = {{"postprocess",
                    {{{"op", "reconstruction_error"}, {"output", "r"}, {"value", 1.0},
                      {"above", "anomaly"}, {"below", "normal"}}}},
                   {"labels", {"normal", "anomaly"}}};
  auto sig = Sig({-1, 2}, DataType::kFp32,
                 {{"r", DataType::kFp32, {-1, 2}, {}}, {"s", DataType::kFp32, {-1}, {}}});
  auto r = Post(pipeline, sig, {testing::Fp32("r", {2, 2}, {1, 2, 3, 6})},
                {testing::Fp32("x", {2, 2}, {1, 2, 3, 4})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["rows"][0]["score"], 0.0);
  EXPECT_EQ((*r)["rows"][0]["verdict"], "normal");
  EXPECT_EQ((*r)["rows"][1]["score"], 2.0);
  EXPECT_EQ((*r)["rows"][1]["verdict"], "anomaly");
  EXPECT_EQ((*r)["verdict"], "anomaly");
  EXPECT_EQ((*r)["worst_row"], 1);

  ExpectError(AsStatus(Post(pipeline, sig, {testing::Fp32("r", {1, 2}, {1, 2})},
                            {testing::Fp32("x", {2, 2}, {1, 2, 3, 4})})),
              ErrorCode::kInvalidArgument, "differ in shape");
  // The output must be named when the model has several.
  ExpectError(AsStatus(Pipeline::Parse({{"postprocess",
                                         {{{"op", "reconstruction_error"}, {"value", 1},
                                           {"above", "a"}, {"below", "b"}}}}},
                                       sig)),
              ErrorCode::kInvalidArgument, "missing parameter \"output\"");
}

TEST(PipelinePost, WindowRowsCarryTheirStartSample) {
  auto p = MustParse({{"preprocess", {{{"op", "window"}, {"size", 2}, {"hop", 3}}}},
                      {"postprocess",
                       {{{"op", "threshold"}, {"value", 1}, {"above", "a"}, {"below", "b"}}}}},
                     Sig({-1, 2}, DataType::kFp32, {{"s", DataType::kFp32, {-1}, {}}}));
  auto r = p.Postprocess({}, {testing::Fp32("s", {2}, {0, 2})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["rows"][0]["start"], 0);
  EXPECT_EQ((*r)["rows"][1]["start"], 3);
}

Tensor Boxes(std::vector<std::int64_t> shape, std::vector<float> v) {
  return testing::Fp32("boxes", std::move(shape), v);
}

TEST(PipelinePost, NmsKeepsTheBestBoxPerClass) {
  auto sig = OutSig({{"boxes", DataType::kFp32, {-1, -1, 7}, {}}});
  json pipeline = {{"postprocess",
                    {{{"op", "nms"}, {"box_format", "xyxy"}, {"iou", 0.5},
                      {"score_threshold", 0.3}, {"labels", {"cat", "dog"}}}}}};
  // x1 y1 x2 y2 objectness p(cat) p(dog)
  Tensor t = Boxes({1, 5, 7}, {
                                  0,  0,  10, 10, 0.9f, 0.9f, 0.1f,  // cat 0.81
                                  1,  1,  11, 11, 0.8f, 0.9f, 0.1f,  // cat 0.72, overlaps: gone
                                  1,  1,  11, 11, 0.9f, 0.1f, 0.9f,  // dog 0.81, other class
                                  50, 50, 60, 60, 0.5f, 1.0f, 0.0f,  // cat 0.5, apart
                                  0,  0,  10, 10, 0.2f, 1.0f, 0.0f,  // 0.2: under the threshold
                              });
  auto r = Post(pipeline, sig, {t});
  ASSERT_TRUE(r) << r.error().ToString();
  const json& d = (*r)["detections"];
  ASSERT_EQ(d.size(), 3u) << r->dump();
  EXPECT_EQ(d[0]["label"], "cat");
  EXPECT_EQ(d[0]["box"], json({0, 0, 10, 10}));
  EXPECT_NEAR(d[0]["score"].get<double>(), 0.81, 1e-6);
  EXPECT_EQ(d[1]["label"], "dog");
  EXPECT_EQ(d[1]["class"], 1);
  EXPECT_EQ(d[2]["box"], json({50, 50, 60, 60}));

  // Class-agnostic: the dog box overlaps the best cat box too; at most 1 detection.
  json agnostic = pipeline;
  agnostic["postprocess"][0]["class_agnostic"] = true;
  r = Post(agnostic, sig, {t});
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["detections"].size(), 2u);
  agnostic["postprocess"][0]["max_detections"] = 1;
  r = Post(agnostic, sig, {t});
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["detections"].size(), 1u);
}

TEST(PipelinePost, NmsBoxFormatsAndBatches) {
  // cx cy w h score, no classes, two images.
  auto sig = OutSig({{"boxes", DataType::kFp32, {-1, 1, 5}, {}}});
  json pipeline = {{"postprocess", {{{"op", "nms"}}}}};  // cxcywh, objectness
  auto r = Post(pipeline, sig, {Boxes({2, 1, 5}, {10, 20, 4, 6, 0.9f, 10, 20, 4, 6, 0.1f})});
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ((*r)["rows"].size(), 2u);
  EXPECT_EQ((*r)["rows"][0]["detections"][0]["box"], json({8, 17, 12, 23}));
  EXPECT_FALSE((*r)["rows"][0]["detections"][0].contains("class"));
  EXPECT_TRUE((*r)["rows"][1]["detections"].empty());

  json xywh = {{"postprocess",
                {{{"op", "nms"}, {"box_format", "xywh"}, {"objectness", false}}}}};
  r = Post(xywh, sig, {Boxes({1, 5}, {10, 20, 4, 6, 0.9f})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ((*r)["detections"][0]["box"], json({10, 20, 14, 26}));

  ExpectError(AsStatus(Post(pipeline, sig, {Boxes({1, 4}, {1, 2, 3, 4})})),
              ErrorCode::kInvalidArgument, "at least 5 values per box");
  ExpectError(AsStatus(Post(pipeline, sig, {Boxes({5}, {1, 2, 3, 4, 5})})),
              ErrorCode::kInvalidArgument, "nms needs boxes");
}

TEST(PipelinePost, WithoutStepsTheOutputsComeBackRaw) {
  auto p = MustParse(json::object(), OutSig({{"y", DataType::kFp32, {-1, 2}, {}}}));
  auto r = p.Postprocess({}, {testing::Fp32("y", {1, 2}, {0.5f, 0.25f})});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, json::parse(R"({"outputs": {"y": {"datatype": "FP32", "shape": [1, 2],
                                                   "data": [0.5, 0.25]}}})"));
}

}  // namespace
}  // namespace airlock::pipeline
