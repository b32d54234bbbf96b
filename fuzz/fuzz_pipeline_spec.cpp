// Fuzzes the pipeline a package declares (pipeline.json, schema airlock.pipeline.v1;
// docs/pipelines.md): pipeline::Pipeline::Parse against a model signature, then, when it is
// accepted, the steps it declares on a fixed input and on fixed model outputs. The first byte
// picks the signature (a picture classifier, or a signal autoencoder); the rest is the JSON.
//
// Properties: a pipeline Parse accepts never crashes on a valid input; what Preprocess returns is
// one tensor consistent with its shape, named after the model's input.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/pipeline.hpp"
#include "property.hpp"

namespace {

using airlock::pipeline::Input;
using airlock::pipeline::Pipeline;
using airlock::runtime::DataType;
using airlock::runtime::ModelSignature;
using airlock::runtime::Tensor;

constexpr airlock::pipeline::Limits kLimits{.max_pixels = 1u << 16, .max_elements = 1u << 16};

struct Case {
  ModelSignature sig;
  Input input;
  std::vector<Tensor> outputs;  // what the model would return for a batch of one
};

Tensor Fp32(std::string name, std::vector<std::int64_t> shape, float value) {
  Tensor t{.name = std::move(name), .dtype = DataType::kFp32, .shape = std::move(shape),
           .data = {}, .strings = {}};
  std::vector<float> values(static_cast<std::size_t>(t.ElementCount()), value);
  t.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return t;
}

std::string JsonNumbers(std::size_t count) {
  std::string s = "[";
  for (std::size_t i = 0; i < count; ++i) {
    s += (i ? "," : "") + std::to_string(static_cast<int>(i % 251));
  }
  return s + "]";
}

const Case& Picture() {
  static const Case c = [] {
    Case k;
    k.sig.inputs.push_back({"image", DataType::kFp32, {-1, 3, 8, 8}, {}});
    k.sig.outputs.push_back({"probabilities", DataType::kFp32, {-1, 2}, {}});
    k.input = {.bytes = JsonNumbers(8 * 8 * 3), .content_type = "application/json",
               .name = "fuzz"};
    k.outputs = {Fp32("probabilities", {1, 2}, 0.5F)};
    return k;
  }();
  return c;
}

const Case& Signal() {
  static const Case c = [] {
    Case k;
    k.sig.inputs.push_back({"window", DataType::kFp32, {-1, 256}, {}});
    k.sig.outputs.push_back({"reconstruction", DataType::kFp32, {-1, 256}, {}});
    k.sig.outputs.push_back({"score", DataType::kFp32, {-1}, {}});
    k.input = {.bytes = JsonNumbers(512), .content_type = "application/json", .name = "fuzz"};
    k.outputs = {Fp32("reconstruction", {1, 256}, 0.25F), Fp32("score", {1}, 0.001F)};
    return k;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const Case& c = data[0] % 2 == 0 ? Picture() : Signal();
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto spec = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (spec.is_discarded()) {
    return 0;
  }
  auto pipeline = Pipeline::Parse(spec, c.sig, kLimits);
  if (!pipeline) {
    return 0;
  }
  auto inputs = pipeline->Preprocess(c.input);
  if (inputs) {
    AIRLOCK_FUZZ_REQUIRE(inputs->size() == 1);
    AIRLOCK_FUZZ_REQUIRE(inputs->front().CheckConsistent());
    AIRLOCK_FUZZ_REQUIRE(inputs->front().name == c.sig.inputs.front().name);
  }
  std::vector<Tensor> fed = inputs ? *inputs : std::vector<Tensor>{};
  if (auto result = pipeline->Postprocess(fed, c.outputs)) {
    AIRLOCK_FUZZ_REQUIRE(result->is_object());
  }
  return 0;
}
