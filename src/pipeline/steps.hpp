#pragma once
// The parsed steps of a pipeline (internal to airlock_pipeline). pipeline.cpp reads them from
// pipeline.json and checks them; preprocess.cpp and postprocess.cpp run them.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "pipeline/pipeline.hpp"
#include "runtime/tensor.hpp"

namespace airlock::pipeline {
namespace steps {

// ---- pre-processing ----
struct DecodeImage {
  int channels = 3;
};
struct Resize {
  std::int64_t width = 0, height = 0;
};
struct CenterCrop {
  std::int64_t width = 0, height = 0;
};
struct Crop {
  std::int64_t x = 0, y = 0, width = 0, height = 0;
};
struct Scale {
  float factor = 1;
};
struct Normalize {
  std::vector<float> mean, std;
};
struct Layout {
  bool to_chw = true;  // HWC -> CHW, else CHW -> HWC
};
struct Cast {
  runtime::DataType dtype = runtime::DataType::kFp32;
};
struct Window {
  std::int64_t size = 0, hop = 0;
};
using Pre = std::variant<DecodeImage, Resize, CenterCrop, Crop, Scale, Normalize, Layout, Cast,
                         Window>;

// ---- post-processing ----
struct Softmax {
  std::string tensor;
};
struct Argmax {
  std::string tensor;
  std::vector<std::string> labels;
};
struct TopK {
  std::string tensor;
  std::int64_t k = 1;
  std::vector<std::string> labels;
};
struct Threshold {
  std::string tensor;
  double value = 0;
  std::string above, below;
  std::optional<std::int64_t> index;  // element of the row; required when rows are longer than 1
};
enum class BoxFormat { kXyxy, kXywh, kCxcywh };
struct Nms {
  std::string tensor;
  double iou = 0.45;
  double score_threshold = 0.25;
  BoxFormat box_format = BoxFormat::kCxcywh;
  bool objectness = true;
  bool class_agnostic = false;
  std::int64_t max_detections = 100;
  std::vector<std::string> labels;
};
struct ReconstructionError {
  std::string input, output;
  double value = 0;
  std::string above, below;
};
using Post = std::variant<Softmax, Argmax, TopK, Threshold, Nms, ReconstructionError>;

}  // namespace steps

struct Pipeline::Impl {
  runtime::ModelSignature sig;
  Limits limits;
  std::vector<steps::Pre> pre;
  std::vector<steps::Post> post;
  std::vector<std::string> pre_ops;   // op names, for messages
  std::vector<std::string> post_ops;
  std::vector<std::string> severity;  // verdicts from best to worst
  std::optional<std::int64_t> window_hop;
};

// Non-ASCII bytes replaced by '?', so that text of unknown encoding cannot make a JSON dump throw.
inline std::string AsciiText(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) >= 0x80 || static_cast<unsigned char>(c) < 0x20) {
      c = '?';
    }
  }
  return s;
}

// preprocess.cpp
[[nodiscard]] Result<runtime::Tensor> RunPreprocess(const Pipeline::Impl& p, const Input& in);
// postprocess.cpp
[[nodiscard]] Result<nlohmann::json> RunPostprocess(const Pipeline::Impl& p,
                                                    const std::vector<runtime::Tensor>& inputs,
                                                    const std::vector<runtime::Tensor>& outputs);

}  // namespace airlock::pipeline
