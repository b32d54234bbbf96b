#pragma once
// The Open Inference Protocol's inference request and response bodies (KServe v2, as Triton
// serves them), with Triton's binary tensor extension.
//
// A request body is JSON, or, with the binary extension, a JSON header of
// Inference-Header-Content-Length bytes followed by the raw bytes of the inputs that declare
// "parameters": {"binary_data_size": N}, in the order they are listed. BYTES elements in binary
// form are each a 4-byte little-endian length and the bytes. JSON "data" may be flat or nested
// (row-major); BOOL is true/false, FP16/BF16 are JSON numbers, BYTES are strings.
//
// Everything here is untrusted input: every size is checked against the body and the shape
// before anything is allocated, and errors are kInvalidArgument with a message a client can act
// on. Pure functions; thread-safe.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "runtime/tensor.hpp"

namespace airlock::agent {

struct RequestedOutput {
  std::string name;
  bool binary = false;
};

struct InferRequest {
  std::string id;
  std::vector<runtime::Tensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output of the model
  bool binary_outputs = false;           // "parameters": {"binary_data_output": true}
};

struct RequestLimits {
  std::uint64_t max_elements = 1ULL << 28;  // per tensor
  // Arrays and objects nested deeper than this in the JSON are refused: reading "data" recurses
  // once per level. The request itself takes 3 levels ({"inputs": [{"data": …}]}), nested
  // "data" one per dimension.
  int max_json_depth = 64;
};

// Parses a request body. header_length is the Inference-Header-Content-Length header, when the
// client sent one.
[[nodiscard]] Result<InferRequest> ParseInferRequest(std::string_view body,
                                                     std::optional<std::uint64_t> header_length,
                                                     const RequestLimits& limits = {});

// A request or response body: JSON, then the binary tensors when there are any.
struct EncodedBody {
  std::string body;
  std::optional<std::uint64_t> header_length;  // set when binary tensors follow the JSON
};

// Encodes outputs as a response; outputs whose name is requested binary (or all, with
// binary_outputs) go in the binary section.
EncodedBody EncodeInferResponse(std::string_view model_name, std::string_view model_version,
                                std::string_view id, const std::vector<runtime::Tensor>& outputs,
                                const InferRequest& request);

// The client's side, for tests, benchmarks and tools.
struct EncodeOptions {
  bool binary_inputs = true;    // the binary extension; false: JSON "data"
  bool binary_outputs = false;  // ask for every output in binary form
};
EncodedBody EncodeInferRequest(const std::vector<runtime::Tensor>& inputs,
                               const EncodeOptions& options = {});

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<runtime::Tensor> outputs;
};
// Parses a response body (checked as strictly as a request); a body with "error" is
// kInvalidArgument quoting it.
[[nodiscard]] Result<InferResponse> ParseInferResponse(std::string_view body,
                                                       std::optional<std::uint64_t> header_length,
                                                       const RequestLimits& limits = {});

// The JSON encoding of one tensor ({"name", "datatype", "shape", "data"}).
nlohmann::json TensorToJson(const runtime::Tensor& t);

}  // namespace airlock::agent
