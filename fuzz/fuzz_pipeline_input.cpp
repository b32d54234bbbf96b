// Fuzzes what a pipeline does with a request's raw input: pipeline::Pipeline::Preprocess, and
// through it DecodeImage (JPEG, PNG), the npy, JSON and raw readers, and the image and signal
// steps. The first byte picks the declared content type and the pipeline; the rest is the input.
//
// Properties of an accepted input: one tensor comes out, consistent with its shape, of the
// signature's datatype, and of the shape the signature fixes (batch 1 for the picture; whole
// 256-value windows for the signal).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pipeline/pipeline.hpp"
#include "property.hpp"

namespace {

using airlock::pipeline::Pipeline;
using airlock::runtime::DataType;
using airlock::runtime::ModelSignature;

// Small limits keep each run fast and its memory bounded; they are checked like the defaults.
constexpr airlock::pipeline::Limits kLimits{.max_pixels = 1u << 20, .max_elements = 1u << 20};

Pipeline Make(const char* steps, DataType dtype, std::vector<std::int64_t> shape) {
  ModelSignature sig;
  sig.inputs.push_back({"x", dtype, std::move(shape), {}});
  sig.outputs.push_back({"y", DataType::kFp32, {-1, 2}, {}});
  auto p = Pipeline::Parse(nlohmann::json::parse(steps), sig, kLimits);
  if (!p) {
    __builtin_trap();  // the fixed pipelines below are valid
  }
  return *p;
}

// Like the visual-inspection example: a picture to a normalised CHW tensor.
const Pipeline& Picture() {
  static const Pipeline p = Make(R"({"preprocess": [
      {"op": "decode_image", "channels": 3},
      {"op": "resize", "width": 16, "height": 12},
      {"op": "center_crop", "width": 12, "height": 12},
      {"op": "scale", "factor": 0.00392156862745098},
      {"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
      {"op": "layout", "from": "HWC", "to": "CHW"},
      {"op": "cast", "dtype": "FP32"}]})",
                                 DataType::kFp32, {1, 3, 12, 12});
  return p;
}

// Like the vibration example: a signal cut into windows.
const Pipeline& Signal() {
  static const Pipeline p = Make(R"({"preprocess": [
      {"op": "window", "size": 256, "hop": 128},
      {"op": "scale", "factor": 0.5},
      {"op": "cast", "dtype": "FP32"}]})",
                                 DataType::kFp32, {-1, 256});
  return p;
}

// No steps: the numbers are taken as they are.
const Pipeline& Raw() {
  static const Pipeline p = Make(R"({"preprocess": []})", DataType::kInt32, {-1, 4});
  return p;
}

constexpr const char* kContentTypes[] = {"",
                                         "image/jpeg",
                                         "image/png",
                                         "application/x-npy",
                                         "application/json",
                                         "application/octet-stream",
                                         "Image/PNG; charset=binary",
                                         "text/plain"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::uint8_t selector = data[0];
  airlock::pipeline::Input in;
  in.bytes.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  in.content_type = kContentTypes[selector & 7];
  in.name = "fuzz";
  int which = (selector >> 3) % 3;
  const Pipeline& p = which == 0 ? Picture() : which == 1 ? Signal() : Raw();
  auto tensors = p.Preprocess(in);
  if (!tensors) {
    return 0;
  }
  AIRLOCK_FUZZ_REQUIRE(tensors->size() == 1);
  const auto& t = tensors->front();
  AIRLOCK_FUZZ_REQUIRE((t.CheckConsistent()));
  AIRLOCK_FUZZ_REQUIRE(t.name == "x");
  if (which == 0) {
    AIRLOCK_FUZZ_REQUIRE(t.dtype == DataType::kFp32);
    AIRLOCK_FUZZ_REQUIRE((t.shape == std::vector<std::int64_t>{1, 3, 12, 12}));
  } else if (which == 1) {
    AIRLOCK_FUZZ_REQUIRE(t.dtype == DataType::kFp32);
    AIRLOCK_FUZZ_REQUIRE(t.shape.size() == 2 && t.shape[0] >= 1 && t.shape[1] == 256);
  } else {
    AIRLOCK_FUZZ_REQUIRE(t.dtype == DataType::kInt32);
    AIRLOCK_FUZZ_REQUIRE(t.shape.size() == 2 && t.shape[1] == 4);
  }
  return 0;
}
