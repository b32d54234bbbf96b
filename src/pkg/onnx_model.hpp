#pragma once
// ONNX files through libonnx (Debian's libonnx-dev): the model checker, and TensorProto sample
// files (the layout of ONNX's own test data). libonnx's exceptions stop here.

#include <filesystem>
#include <string>

#include "core/result.hpp"
#include "pkg/samples.hpp"
#include "runtime/tensor.hpp"

namespace airlock::pkg {

// Runs the ONNX checker on a model file. kModel with the checker's message when it fails, and
// for files that are not ONNX at all. Returns an empty string when the checker passed the model,
// or a note saying why it could not judge it (a model newer than the checker's IR version).
[[nodiscard]] Result<std::string> CheckOnnxModel(const std::filesystem::path& model);

// Reads a serialized onnx.TensorProto (.pb). The tensor keeps the name stored in the file, which
// may be empty. External data is refused.
[[nodiscard]] Result<runtime::Tensor> LoadTensorProto(const std::filesystem::path& path);

// Loads a sample tensor from a .npy or .pb file, by extension.
[[nodiscard]] Result<runtime::Tensor> LoadTensorFile(const std::filesystem::path& path,
                                                     std::string name);

// Reads ONNX's test data layout: dir/test_data_set_*/input_N.pb and output_N.pb.
[[nodiscard]] Result<std::vector<SampleSet>> LoadOnnxTestData(const std::filesystem::path& dir);

}  // namespace airlock::pkg
