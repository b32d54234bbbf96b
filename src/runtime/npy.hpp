#pragma once
// NumPy .npy files (format versions 1.0, 2.0, 3.0) for sample inputs and outputs.
//
// Read: little-endian or byte-order-free numeric dtypes (b1, i1…i8, u1…u8, f2, f4, f8) and
// fixed-width strings (S, U) as BYTES; C order only. Object arrays (pickles), big-endian data and
// Fortran order are refused with a message saying so. Write: version 1.0, C order, little-endian;
// BYTES as 'S<longest>' (so trailing NUL bytes of a string do not survive a round trip).

#include <filesystem>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "runtime/tensor.hpp"

namespace airlock::runtime {

[[nodiscard]] Result<Tensor> ParseNpy(std::string_view bytes, std::string name);
[[nodiscard]] Result<Tensor> LoadNpy(const std::filesystem::path& path, std::string name);
[[nodiscard]] Result<std::string> SerializeNpy(const Tensor& t);

}  // namespace airlock::runtime
