#pragma once
// Building tensors in tests.

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/npy.hpp"
#include "runtime/tensor.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {

// A numeric tensor whose elements are values, stored as T.
template <typename T>
runtime::Tensor MakeTensor(std::string name, runtime::DataType dtype,
                           std::vector<std::int64_t> shape, const std::vector<T>& values) {
  runtime::Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.resize(values.size() * sizeof(T));
  if (!values.empty()) {  // memcpy from a null pointer is undefined, even for 0 bytes
    std::memcpy(t.data.data(), values.data(), t.data.size());
  }
  return t;
}

inline runtime::Tensor Fp32(std::string name, std::vector<std::int64_t> shape,
                            const std::vector<float>& values) {
  return MakeTensor<float>(std::move(name), runtime::DataType::kFp32, std::move(shape), values);
}

inline void WriteNpy(const std::filesystem::path& p, const runtime::Tensor& t) {
  WriteAll(p, runtime::SerializeNpy(t).value());
}

}  // namespace airlock::testing
