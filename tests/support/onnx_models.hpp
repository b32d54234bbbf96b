#pragma once
// Small ONNX models made in code for tests, so no test depends on a trained artefact.

#include <filesystem>
#include <string>
#include <vector>

namespace airlock::testing {

// y = x * 2 + 1 over FP32 [batch, n] (input "x", output "y"), opset 13.
void WriteAffineModel(const std::filesystem::path& path, int n = 4, int ir_version = 8);
// Passes the ONNX checker (custom domains are not checked) but ONNX Runtime has no kernel for it.
void WriteUnknownOpModel(const std::filesystem::path& path);
// Identity over [batch, n] for each ONNX element type given: inputs "in_T", outputs "out_T",
// where T is the Open Inference Protocol name of the type (in_FP32, out_BYTES, ...).
void WriteIdentityModel(const std::filesystem::path& path, const std::vector<int>& onnx_types);
// A string model: Identity over STRING [n] (input "text", output "same").
void WriteStringIdentityModel(const std::filesystem::path& path);

}  // namespace airlock::testing
