#pragma once
// Sample inputs with their expected outputs: how a package proves it still works.
//
// In a package they are one layer (application/vnd.airlock.samples.v1.tar): a tar holding
// samples.json and one .npy file per tensor:
//   samples.json   {"schema": "airlock.samples.v1", "tolerance": {"rtol", "atol"},
//                   "sets": [{"name", "inputs": [{"name", "file"}], "outputs": [...]}]}
//   0/input_0.npy, 0/output_0.npy, 1/input_0.npy, …
// The agent uses them to warm a model up and to validate it before activation.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "runtime/backend.hpp"
#include "runtime/tensor.hpp"

namespace airlock::pkg {

struct SampleSet {
  std::string name;
  std::vector<runtime::Tensor> inputs;
  std::vector<runtime::Tensor> outputs;  // expected
};

struct Samples {
  runtime::Tolerance tolerance;
  std::vector<SampleSet> sets;
};

// Gives unnamed tensors (from .pb files without names) the signature's names by position, and
// checks every input against the signature. kInvalidArgument naming the set and tensor.
[[nodiscard]] Status BindToSignature(SampleSet& set, const runtime::ModelSignature& sig);

// Runs every set and compares each expected output. kMismatch naming the set on failure.
struct SampleOutcome {
  std::string name;
  double max_abs_error = 0;
};
[[nodiscard]] Result<std::vector<SampleOutcome>> RunSamples(runtime::InferenceBackend& model,
                                                            const Samples& samples);

[[nodiscard]] Result<std::string> BuildSamplesLayer(const Samples& samples);
[[nodiscard]] Result<Samples> ParseSamplesLayer(std::string_view tar_bytes);

}  // namespace airlock::pkg
