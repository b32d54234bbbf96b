#pragma once
// Tensors as Airlock moves them around: a name, a data type, a shape, and the elements.
//
// Data types use the names of the Open Inference Protocol (KServe v2 / Triton): BOOL, UINT8 …
// FP16, FP32, FP64, BF16, BYTES. Numeric elements are stored little-endian, densely, row-major
// in `data`; BYTES elements (ONNX strings) in `strings`. Plain values; thread-compatible.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace airlock::runtime {

enum class DataType {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
  kBytes,
};

std::string_view DataTypeName(DataType t);
[[nodiscard]] Result<DataType> ParseDataType(std::string_view name);
// Bytes per element; 0 for BYTES.
std::size_t ElementSize(DataType t);
bool IsFloating(DataType t);
// ONNX TensorProto.DataType numbers.
int ToOnnxType(DataType t);
[[nodiscard]] Result<DataType> FromOnnxType(int onnx_type);

struct Tensor {
  std::string name;
  DataType dtype = DataType::kFp32;
  std::vector<std::int64_t> shape;
  std::string data;                  // numeric elements
  std::vector<std::string> strings;  // BYTES elements

  // Product of the shape (1 for a scalar).
  std::int64_t ElementCount() const;
  // Checks that data/strings hold exactly ElementCount() elements.
  [[nodiscard]] Status CheckConsistent() const;
  // Element i as a double (not for BYTES); for comparisons and printing.
  double ValueAsDouble(std::int64_t i) const;
};

std::string ShapeToString(const std::vector<std::int64_t>& shape);

// What a model takes or gives: -1 in a shape is a dimension of any size.
struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kFp32;
  std::vector<std::int64_t> shape;
  std::vector<std::string> dim_names;  // symbolic names ("batch"), "" when fixed or unnamed
};

struct ModelSignature {
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;

  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<ModelSignature> FromJson(const nlohmann::json& j);
};

// Checks a tensor against a spec: dtype, rank, and every fixed dimension.
[[nodiscard]] Status CheckAgainstSpec(const Tensor& t, const TensorSpec& spec);

// Tolerances for comparing outputs: |actual - expected| <= atol + rtol * |expected|.
struct Tolerance {
  double rtol = 1e-3;
  double atol = 1e-5;
};

// Compares an output with its expected value: same dtype and shape; floats within tolerance
// (NaN equals NaN, infinities must match); everything else exactly. kMismatch describes the
// worst element on failure.
[[nodiscard]] Status CompareTensors(const Tensor& expected, const Tensor& actual,
                                    const Tolerance& tol);

// A short human summary: "FP32 [1,2] = [0.98, 0.02]" (at most max_values elements).
std::string Summarize(const Tensor& t, std::size_t max_values = 8);

}  // namespace airlock::runtime
