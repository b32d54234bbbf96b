// Fuzzes agent::ParseInferRequest, the body of POST /v2/models/<m>/infer.
//
// Input: two little-endian bytes, then the body. 0xffff means no Inference-Header-Content-Length
// (a JSON-only request); any other value is that header, so both the JSON and the binary forms
// (and a header past the body's end) are reached.
//
// Properties of an accepted request: every input tensor is consistent with its shape, input names
// are unique, and re-encoding the inputs in the binary form and parsing that gives them back
// exactly (the binary form is lossless).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "agent/oip_codec.hpp"
#include "property.hpp"

namespace {

using airlock::agent::InferRequest;
using airlock::agent::ParseInferRequest;
using airlock::runtime::DataType;
using airlock::runtime::Tensor;

// Small enough that a run never spends its time filling one giant tensor.
constexpr airlock::agent::RequestLimits kLimits{.max_elements = 1 << 16};

std::string BinaryBody(const InferRequest& req, std::uint64_t& header_length) {
  nlohmann::json inputs = nlohmann::json::array();
  std::string binary;
  for (const Tensor& t : req.inputs) {
    std::size_t before = binary.size();
    if (t.dtype == DataType::kBytes) {
      for (const std::string& s : t.strings) {
        auto len = static_cast<std::uint32_t>(s.size());
        for (int i = 0; i < 4; ++i) {
          binary.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
        }
        binary += s;
      }
    } else {
      binary += t.data;
    }
    inputs.push_back({{"name", t.name},
                      {"datatype", std::string(airlock::runtime::DataTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"parameters", {{"binary_data_size", binary.size() - before}}}});
  }
  std::string body = nlohmann::json{{"inputs", inputs}}.dump();
  header_length = body.size();
  return body + binary;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  unsigned prefix = data[0] | static_cast<unsigned>(data[1]) << 8;
  std::optional<std::uint64_t> header_length;
  if (prefix != 0xffff) {
    header_length = prefix;
  }
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  auto req = ParseInferRequest(body, header_length, kLimits);
  if (!req) {
    return 0;
  }
  AIRLOCK_FUZZ_REQUIRE(!req->inputs.empty());
  std::set<std::string> names;
  for (const Tensor& t : req->inputs) {
    AIRLOCK_FUZZ_REQUIRE((t.CheckConsistent()));
    AIRLOCK_FUZZ_REQUIRE(names.insert(t.name).second);
    // Reads every element (out-of-bounds reads would show under ASan).
    (void)airlock::agent::TensorToJson(t);
  }
  std::uint64_t again_length = 0;
  std::string again_body = BinaryBody(*req, again_length);
  auto again = ParseInferRequest(again_body, again_length, kLimits);
  AIRLOCK_FUZZ_REQUIRE((again));
  AIRLOCK_FUZZ_REQUIRE(again->inputs.size() == req->inputs.size());
  for (std::size_t i = 0; i < req->inputs.size(); ++i) {
    const Tensor& a = req->inputs[i];
    const Tensor& b = again->inputs[i];
    AIRLOCK_FUZZ_REQUIRE(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape &&
                         a.data == b.data && a.strings == b.strings);
  }
  return 0;
}
