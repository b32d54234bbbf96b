#pragma once
// A model's pipeline: what turns a request's raw input (a picture, a signal) into the model's
// input tensor, and the model's outputs into a result with a verdict — on the device, in C++.
//
// A Pipeline is built once from a package's pipeline.json (schema airlock.pipeline.v1) and the
// loaded model's signature. Parse checks every step (its op, every parameter, the order of the
// steps), so a bad package fails when it is loaded, not at its first request. The steps, their
// parameters and the result JSON are described in docs/pipelines.md.
//
// Everything a request brings is untrusted: sizes are checked before anything is allocated, and
// hostile bytes come back as kInvalidArgument, never as a crash. A Pipeline is immutable after
// Parse; its const methods may be called from several threads at once. No I/O, no threads.

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "pipeline/image.hpp"
#include "runtime/backend.hpp"
#include "runtime/tensor.hpp"

namespace airlock::pipeline {

// One request's raw input.
struct Input {
  std::string bytes;
  // "image/jpeg", "image/png", "application/x-npy", "application/json" (a JSON array of numbers,
  // possibly nested), "application/octet-stream" (raw little-endian FP32); parameters such as
  // "; charset=utf-8" and case are ignored. "" = sniff the bytes (JPEG/PNG magic, "\x93NUMPY",
  // '[' after optional white space); anything else is kInvalidArgument.
  std::string content_type;
  std::string name;  // file name or topic, for messages and results
};

// What a request may make the pipeline allocate.
struct Limits {
  std::uint64_t max_pixels = kDefaultMaxPixels;  // width × height of a decoded picture
  // Values in the input signal, and in any tensor a step makes (a resize, the windows):
  // 16 Mi values = 64 MiB of FP32.
  std::uint64_t max_elements = 16ull << 20;
};

class Pipeline {
 public:
  // pipeline_json: the package's pipeline.json. Reads "preprocess", "postprocess" (lists of
  // steps), "labels" (default labels of argmax/top_k), "thresholds" (default values of threshold
  // and reconstruction_error, by their `above` label) and "severity" (verdicts from best to
  // worst, default "labels"); other keys (resources, sources, sinks, the recorded signature) are
  // left to their readers. sig: the signature of the model as loaded (it wins over the one
  // recorded in the file). kInvalidArgument naming the step ("preprocess step 2 (resize): …")
  // for an unknown op, an unknown, missing or invalid parameter, or a step in the wrong place;
  // also when preprocess is not empty and the model has other than one input.
  [[nodiscard]] static Result<Pipeline> Parse(const nlohmann::json& pipeline_json,
                                              const runtime::ModelSignature& sig,
                                              const Limits& limits = {});

  bool has_preprocess() const;
  bool has_postprocess() const;

  // Input -> the model's input tensors (one, named and typed from the signature, with a batch
  // dimension added when the steps leave the tensor one rank short of the signature). Without
  // pre-processing steps a single-input model takes the npy/JSON/raw numbers as they are
  // (converted to the input's datatype). kInvalidArgument for input that is malformed, too
  // large, of the wrong kind for the pipeline, or that does not fit the signature afterwards;
  // kUnsupported for valid but unsupported data (CMYK JPEG, a BYTES npy).
  [[nodiscard]] Result<std::vector<runtime::Tensor>> Preprocess(const Input& in) const;

  // The model's inputs (as fed) and outputs -> the result JSON (docs/pipelines.md). Without
  // post-processing steps: {"outputs": {name: {"datatype", "shape", "data"}}}. kInvalidArgument
  // when a tensor a step needs is missing or has a shape the step cannot use; kModel when a
  // score the verdict depends on is NaN.
  [[nodiscard]] Result<nlohmann::json> Postprocess(
      const std::vector<runtime::Tensor>& inputs,
      const std::vector<runtime::Tensor>& outputs) const;

  // Preprocess, backend.Run, Postprocess; adds "name": in.name to the result. Blocks for the
  // duration of the inference.
  [[nodiscard]] Result<nlohmann::json> Run(const Input& in,
                                           runtime::InferenceBackend& backend) const;

  struct Impl;  // the parsed steps (pipeline.cpp)

 private:
  explicit Pipeline(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace airlock::pipeline
