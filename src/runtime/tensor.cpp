#include "runtime/tensor.hpp"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <sstream>

namespace airlock::runtime {
namespace {

struct TypeInfo {
  DataType type;
  const char* name;
  std::size_t size;
  int onnx;
};

constexpr std::array<TypeInfo, 14> kTypes = {{
    {DataType::kBool, "BOOL", 1, 9},
    {DataType::kUint8, "UINT8", 1, 2},
    {DataType::kUint16, "UINT16", 2, 4},
    {DataType::kUint32, "UINT32", 4, 12},
    {DataType::kUint64, "UINT64", 8, 13},
    {DataType::kInt8, "INT8", 1, 3},
    {DataType::kInt16, "INT16", 2, 5},
    {DataType::kInt32, "INT32", 4, 6},
    {DataType::kInt64, "INT64", 8, 7},
    {DataType::kFp16, "FP16", 2, 10},
    {DataType::kBf16, "BF16", 2, 16},
    {DataType::kFp32, "FP32", 4, 1},
    {DataType::kFp64, "FP64", 8, 11},
    {DataType::kBytes, "BYTES", 0, 8},
}};

const TypeInfo& Info(DataType t) {
  for (const auto& i : kTypes) {
    if (i.type == t) {
      return i;
    }
  }
  std::abort();  // every enumerator is in the table
}

float HalfToFloat(std::uint16_t h) {
  std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

template <typename T>
T Load(const std::string& data, std::int64_t i) {
  T v;
  std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
  return v;
}

// An integer element as exact decimal (64-bit values do not fit a double).
std::string ExactText(const Tensor& t, std::int64_t i) {
  if (t.dtype == DataType::kInt64) {
    return std::to_string(Load<std::int64_t>(t.data, i));
  }
  if (t.dtype == DataType::kUint64) {
    return std::to_string(Load<std::uint64_t>(t.data, i));
  }
  return std::to_string(static_cast<std::int64_t>(t.ValueAsDouble(i)));
}

}  // namespace

std::string_view DataTypeName(DataType t) { return Info(t).name; }

Result<DataType> ParseDataType(std::string_view name) {
  for (const auto& i : kTypes) {
    if (name == i.name) {
      return i.type;
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown data type \"" + std::string(name) + "\"");
}

std::size_t ElementSize(DataType t) { return Info(t).size; }

bool IsFloating(DataType t) {
  return t == DataType::kFp16 || t == DataType::kBf16 || t == DataType::kFp32 ||
         t == DataType::kFp64;
}

int ToOnnxType(DataType t) { return Info(t).onnx; }

Result<DataType> FromOnnxType(int onnx_type) {
  for (const auto& i : kTypes) {
    if (i.onnx == onnx_type) {
      return i.type;
    }
  }
  return Fail(ErrorCode::kUnsupported,
              "ONNX element type " + std::to_string(onnx_type) + " is not supported");
}

std::int64_t Tensor::ElementCount() const {
  std::int64_t n = 1;
  for (auto d : shape) {
    n *= d;
  }
  return n;
}

Status Tensor::CheckConsistent() const {
  // The product is computed with overflow checks: a shape like [2^32, 2^32] must not wrap around
  // to a small count that some short buffer happens to match.
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tensor " + name + " has a negative dimension in " + ShapeToString(shape));
    }
    if (__builtin_mul_overflow(n, d, &n)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tensor " + name + " of shape " + ShapeToString(shape) + " is too large");
    }
  }
  if (dtype == DataType::kBytes) {
    if (static_cast<std::int64_t>(strings.size()) != n) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tensor " + name + " of shape " + ShapeToString(shape) + " needs " +
                      std::to_string(n) + " strings, has " + std::to_string(strings.size()));
    }
    return {};
  }
  std::uint64_t want = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(n), ElementSize(dtype), &want)) {
    return Fail(ErrorCode::kInvalidArgument,
                "tensor " + name + " of shape " + ShapeToString(shape) + " is too large");
  }
  if (data.size() != want) {
    return Fail(ErrorCode::kInvalidArgument,
                "tensor " + name + " of shape " + ShapeToString(shape) + " and type " +
                    std::string(DataTypeName(dtype)) + " needs " + std::to_string(want) +
                    " bytes, has " + std::to_string(data.size()));
  }
  return {};
}

double Tensor::ValueAsDouble(std::int64_t i) const {
  switch (dtype) {
    case DataType::kBool:
    case DataType::kUint8:
      return Load<std::uint8_t>(data, i);
    case DataType::kUint16:
      return Load<std::uint16_t>(data, i);
    case DataType::kUint32:
      return Load<std::uint32_t>(data, i);
    case DataType::kUint64:
      return static_cast<double>(Load<std::uint64_t>(data, i));
    case DataType::kInt8:
      return Load<std::int8_t>(data, i);
    case DataType::kInt16:
      return Load<std::int16_t>(data, i);
    case DataType::kInt32:
      return Load<std::int32_t>(data, i);
    case DataType::kInt64:
      return static_cast<double>(Load<std::int64_t>(data, i));
    case DataType::kFp16:
      return HalfToFloat(Load<std::uint16_t>(data, i));
    case DataType::kBf16:
      return std::bit_cast<float>(static_cast<std::uint32_t>(Load<std::uint16_t>(data, i)) << 16);
    case DataType::kFp32:
      return Load<float>(data, i);
    case DataType::kFp64:
      return Load<double>(data, i);
    case DataType::kBytes:
      return 0;
  }
  return 0;
}

std::string ShapeToString(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out += (i ? "," : "") + (shape[i] < 0 ? std::string("?") : std::to_string(shape[i]));
  }
  return out + "]";
}

nlohmann::json ModelSignature::ToJson() const {
  auto list = [](const std::vector<TensorSpec>& specs) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : specs) {
      nlohmann::json j = {
          {"name", s.name}, {"datatype", std::string(DataTypeName(s.dtype))}, {"shape", s.shape}};
      bool named = false;
      for (const auto& n : s.dim_names) {
        named = named || !n.empty();
      }
      if (named) {
        j["dim_names"] = s.dim_names;
      }
      out.push_back(std::move(j));
    }
    return out;
  };
  return {{"inputs", list(inputs)}, {"outputs", list(outputs)}};
}

Result<ModelSignature> ModelSignature::FromJson(const nlohmann::json& j) {
  ModelSignature sig;
  for (const char* side : {"inputs", "outputs"}) {
    if (!j.contains(side) || !j[side].is_array()) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("signature needs a list \"") + side + "\"");
    }
    for (const auto& t : j[side]) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string() ||
          !t.contains("datatype") || !t["datatype"].is_string() || !t.contains("shape") ||
          !t["shape"].is_array()) {
        return Fail(ErrorCode::kInvalidArgument,
                    std::string("each signature ") + side + " entry needs name, datatype, shape");
      }
      TensorSpec spec;
      spec.name = t["name"];
      AIRLOCK_ASSIGN_OR_RETURN(spec.dtype, ParseDataType(t["datatype"].get<std::string>()));
      for (const auto& d : t["shape"]) {
        if (!d.is_number_integer()) {
          return Fail(ErrorCode::kInvalidArgument, "shape of " + spec.name + " must be integers");
        }
        spec.shape.push_back(d.get<std::int64_t>());
      }
      spec.dim_names.assign(spec.shape.size(), "");
      if (t.contains("dim_names") && t["dim_names"].is_array() &&
          t["dim_names"].size() == spec.shape.size()) {
        for (std::size_t i = 0; i < spec.shape.size(); ++i) {
          spec.dim_names[i] =
              t["dim_names"][i].is_string() ? t["dim_names"][i].get<std::string>() : "";
        }
      }
      (std::string(side) == "inputs" ? sig.inputs : sig.outputs).push_back(std::move(spec));
    }
  }
  return sig;
}

Status CheckAgainstSpec(const Tensor& t, const TensorSpec& spec) {
  if (t.dtype != spec.dtype) {
    return Fail(ErrorCode::kInvalidArgument, "tensor " + spec.name + " must be " +
                                                 std::string(DataTypeName(spec.dtype)) + ", got " +
                                                 std::string(DataTypeName(t.dtype)));
  }
  bool ok = t.shape.size() == spec.shape.size();
  for (std::size_t i = 0; ok && i < spec.shape.size(); ++i) {
    ok = spec.shape[i] < 0 || spec.shape[i] == t.shape[i];
  }
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument, "tensor " + spec.name + " must have shape " +
                                                 ShapeToString(spec.shape) + ", got " +
                                                 ShapeToString(t.shape));
  }
  return t.CheckConsistent();
}

Status CompareTensors(const Tensor& expected, const Tensor& actual, const Tolerance& tol) {
  const std::string& name = expected.name.empty() ? actual.name : expected.name;
  AIRLOCK_RETURN_IF_ERROR(WithContext(expected.CheckConsistent(), "expected output " + name));
  AIRLOCK_RETURN_IF_ERROR(WithContext(actual.CheckConsistent(), "output " + name));
  if (expected.dtype != actual.dtype) {
    return Fail(ErrorCode::kMismatch, "output " + name + " is " +
                                          std::string(DataTypeName(actual.dtype)) + ", expected " +
                                          std::string(DataTypeName(expected.dtype)));
  }
  if (expected.shape != actual.shape) {
    return Fail(ErrorCode::kMismatch, "output " + name + " has shape " +
                                          ShapeToString(actual.shape) + ", expected " +
                                          ShapeToString(expected.shape));
  }
  std::int64_t n = expected.ElementCount();
  if (expected.dtype == DataType::kBytes) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (expected.strings[i] != actual.strings[i]) {
        return Fail(ErrorCode::kMismatch, "output " + name + " element " + std::to_string(i) +
                                              " is \"" + actual.strings[i] + "\", expected \"" +
                                              expected.strings[i] + "\"");
      }
    }
    return {};
  }
  if (!IsFloating(expected.dtype)) {
    // Exact means bit for bit: converting to double would make 2^53 and 2^53 + 1 look equal.
    if (expected.data != actual.data) {
      const std::size_t size = ElementSize(expected.dtype);
      for (std::int64_t i = 0; i < n; ++i) {
        if (std::memcmp(expected.data.data() + i * size, actual.data.data() + i * size, size)) {
          return Fail(ErrorCode::kMismatch, "output " + name + " element " + std::to_string(i) +
                                                " is " + ExactText(actual, i) + ", expected " +
                                                ExactText(expected, i));
        }
      }
    }
    return {};
  }
  std::int64_t worst = -1;
  double worst_excess = 0;
  std::int64_t failures = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    double e = expected.ValueAsDouble(i);
    double a = actual.ValueAsDouble(i);
    double excess;
    if (std::isnan(e) || std::isnan(a)) {
      excess = std::isnan(e) && std::isnan(a) ? 0 : INFINITY;
    } else if (std::isinf(e) || std::isinf(a)) {
      excess = e == a ? 0 : INFINITY;
    } else {
      excess = std::fabs(a - e) - (tol.atol + tol.rtol * std::fabs(e));
    }
    if (excess > 0) {
      ++failures;
      if (worst < 0 || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
    }
  }
  if (failures == 0) {
    return {};
  }
  std::ostringstream msg;
  msg.precision(9);
  msg << "output " << name << ": " << failures << " of " << n
      << " elements differ beyond rtol=" << tol.rtol << " atol=" << tol.atol << "; worst at "
      << worst << ": got " << actual.ValueAsDouble(worst) << ", expected "
      << expected.ValueAsDouble(worst);
  return Fail(ErrorCode::kMismatch, msg.str());
}

std::string Summarize(const Tensor& t, std::size_t max_values) {
  std::ostringstream out;
  out.precision(6);
  out << DataTypeName(t.dtype) << " " << ShapeToString(t.shape) << " = [";
  std::int64_t n = t.ElementCount();
  for (std::int64_t i = 0; i < n && static_cast<std::size_t>(i) < max_values; ++i) {
    if (i) {
      out << ", ";
    }
    if (t.dtype == DataType::kBytes) {
      out << '"' << t.strings[i] << '"';
    } else {
      out << t.ValueAsDouble(i);
    }
  }
  if (static_cast<std::size_t>(n) > max_values) {
    out << ", … (" << n << " values)";
  }
  out << "]";
  return out.str();
}

}  // namespace airlock::runtime
