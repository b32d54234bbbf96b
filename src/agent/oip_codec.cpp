#include "agent/oip_codec.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace airlock::agent {
namespace {

using nlohmann::json;
using runtime::DataType;
using runtime::Tensor;

Error Bad(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

std::uint16_t FloatToHalf(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t mant = x & 0x7fffffu;
  int exp = static_cast<int>((x >> 23) & 0xff);
  if (exp == 255) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  }
  int e = exp - 127 + 15;
  if (e >= 31) {
    return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow to inf
  }
  if (e <= 0) {  // subnormal or zero, round to nearest even
    if (e < -10) {
      return static_cast<std::uint16_t>(sign);
    }
    mant |= 0x800000u;
    int shift = 14 - e;
    std::uint32_t half = mant >> shift;
    std::uint32_t rest = mant & ((1u << shift) - 1);
    std::uint32_t mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) {
      ++half;
    }
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = sign | static_cast<std::uint32_t>(e) << 10 | mant >> 13;
  std::uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) {
    ++half;  // may carry into the exponent, which is still correct rounding
  }
  return static_cast<std::uint16_t>(half);
}

std::uint16_t FloatToBf16(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) {
    return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  }
  x += 0x7fffu + ((x >> 16) & 1u);  // round to nearest even
  return static_cast<std::uint16_t>(x >> 16);
}

template <typename T>
void Append(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// Collects the leaves of a (possibly nested) JSON array, refusing more than limit of them.
Status Flatten(const json& data, std::vector<const json*>& out, std::uint64_t limit,
               const std::string& name) {
  if (!data.is_array()) {
    out.push_back(&data);
  } else {
    for (const auto& item : data) {
      AIRLOCK_RETURN_IF_ERROR(Flatten(item, out, limit, name));
    }
  }
  if (out.size() > limit) {
    return Fail(Bad("input '" + name + "' has more data elements than its shape holds"));
  }
  return {};
}

template <typename T>
Status AppendInteger(std::string& out, const json& v, const std::string& name) {
  if (!v.is_number_integer()) {
    return Fail(Bad("input '" + name + "' holds a non-integer value " + v.dump()));
  }
  bool fits;
  if (v.is_number_unsigned()) {
    std::uint64_t u = v.get<std::uint64_t>();
    fits = u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
  } else {
    std::int64_t s = v.get<std::int64_t>();
    fits = std::is_signed_v<T>
               ? s >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                     s <= static_cast<std::int64_t>(std::numeric_limits<T>::max())
               : s >= 0 && static_cast<std::uint64_t>(s) <=
                               static_cast<std::uint64_t>(std::numeric_limits<T>::max());
  }
  if (!fits) {
    return Fail(
        Bad("input '" + name + "' value " + v.dump() + " is out of range for its datatype"));
  }
  Append<T>(out, v.is_number_unsigned() ? static_cast<T>(v.get<std::uint64_t>())
                                        : static_cast<T>(v.get<std::int64_t>()));
  return {};
}

Status JsonToElements(const json& data, Tensor& t, std::uint64_t count) {
  std::vector<const json*> leaves;
  AIRLOCK_RETURN_IF_ERROR(Flatten(data, leaves, count, t.name));
  if (leaves.size() != count) {
    return Fail(Bad("input '" + t.name + "' has " + std::to_string(leaves.size()) +
                    " data elements, its shape " + runtime::ShapeToString(t.shape) + " needs " +
                    std::to_string(count)));
  }
  if (t.dtype != DataType::kBytes) {
    t.data.reserve(count * runtime::ElementSize(t.dtype));
  }
  for (const json* v : leaves) {
    switch (t.dtype) {
      case DataType::kBool:
        if (!v->is_boolean()) {
          return Fail(Bad("input '" + t.name + "' is BOOL but holds " + v->dump()));
        }
        Append<std::uint8_t>(t.data, v->get<bool>() ? 1 : 0);
        break;
      case DataType::kUint8:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::uint8_t>(t.data, *v, t.name));
        break;
      case DataType::kUint16:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::uint16_t>(t.data, *v, t.name));
        break;
      case DataType::kUint32:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::uint32_t>(t.data, *v, t.name));
        break;
      case DataType::kUint64:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::uint64_t>(t.data, *v, t.name));
        break;
      case DataType::kInt8:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::int8_t>(t.data, *v, t.name));
        break;
      case DataType::kInt16:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::int16_t>(t.data, *v, t.name));
        break;
      case DataType::kInt32:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::int32_t>(t.data, *v, t.name));
        break;
      case DataType::kInt64:
        AIRLOCK_RETURN_IF_ERROR(AppendInteger<std::int64_t>(t.data, *v, t.name));
        break;
      case DataType::kFp16:
      case DataType::kBf16:
      case DataType::kFp32:
      case DataType::kFp64: {
        if (!v->is_number()) {
          return Fail(Bad("input '" + t.name + "' is " + std::string(DataTypeName(t.dtype)) +
                          " but holds " + v->dump()));
        }
        double d = v->get<double>();
        if (t.dtype == DataType::kFp64) {
          Append<double>(t.data, d);
        } else if (t.dtype == DataType::kFp32) {
          Append<float>(t.data, static_cast<float>(d));
        } else if (t.dtype == DataType::kFp16) {
          Append<std::uint16_t>(t.data, FloatToHalf(static_cast<float>(d)));
        } else {
          Append<std::uint16_t>(t.data, FloatToBf16(static_cast<float>(d)));
        }
        break;
      }
      case DataType::kBytes:
        if (!v->is_string()) {
          return Fail(Bad("input '" + t.name + "' is BYTES but holds " + v->dump()));
        }
        t.strings.push_back(v->get<std::string>());
        break;
    }
  }
  return {};
}

// Reads the binary bytes of one tensor: raw elements, or length-prefixed BYTES elements.
Status BinaryToElements(std::string_view bytes, Tensor& t, std::uint64_t count) {
  if (t.dtype != DataType::kBytes) {
    std::uint64_t want = count * runtime::ElementSize(t.dtype);
    if (bytes.size() != want) {
      return Fail(Bad("input '" + t.name + "' has binary_data_size " +
                      std::to_string(bytes.size()) + ", its shape " +
                      runtime::ShapeToString(t.shape) + " and datatype " +
                      std::string(DataTypeName(t.dtype)) + " need " + std::to_string(want)));
    }
    t.data.assign(bytes);
    return {};
  }
  while (!bytes.empty()) {
    if (bytes.size() < 4) {
      return Fail(Bad("input '" + t.name + "': a BYTES element's 4-byte length is cut short"));
    }
    std::uint32_t len;
    std::memcpy(&len, bytes.data(), 4);
    bytes.remove_prefix(4);
    if (len > bytes.size()) {
      return Fail(Bad("input '" + t.name + "': a BYTES element of " + std::to_string(len) +
                      " bytes runs past its binary data"));
    }
    if (t.strings.size() == count) {
      return Fail(Bad("input '" + t.name + "' has more BYTES elements than its shape holds"));
    }
    t.strings.emplace_back(bytes.substr(0, len));
    bytes.remove_prefix(len);
  }
  if (t.strings.size() != count) {
    return Fail(Bad("input '" + t.name + "' has " + std::to_string(t.strings.size()) +
                    " BYTES elements, its shape needs " + std::to_string(count)));
  }
  return {};
}

bool BoolParameter(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains("parameters") || !obj["parameters"].is_object()) {
    return false;
  }
  const json& p = obj["parameters"];
  return p.contains(key) && p[key].is_boolean() && p[key].get<bool>();
}

}  // namespace

namespace {

// A body split into its JSON document and the binary section that follows it.
struct SplitBody {
  json doc;
  std::string_view binary;
};

// what: "request" or "response", for messages.
Result<SplitBody> SplitAndParse(std::string_view body, std::optional<std::uint64_t> header_length,
                                const RequestLimits& limits, const std::string& what) {
  std::uint64_t json_size = header_length.value_or(body.size());
  if (json_size > body.size()) {
    return Fail(Bad("Inference-Header-Content-Length " + std::to_string(json_size) +
                    " is past the end of the " + std::to_string(body.size()) + "-byte body"));
  }
  bool too_deep = false;
  auto limit_depth = [&](int depth, json::parse_event_t event, json& /*parsed*/) {
    // depth counts the enclosing arrays and objects; a dropped value is never built.
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= limits.max_json_depth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  SplitBody out;
  try {
    out.doc = json::parse(body.substr(0, json_size), limit_depth);
  } catch (const json::parse_error& e) {
    // e.byte says where; the rest of nlohmann's message names the token it did not expect.
    return Fail(Bad("malformed JSON in the " + what + " at byte " + std::to_string(e.byte)));
  } catch (const json::out_of_range&) {
    // A number no double holds ("1e999"; fuzz_infer_request found it: it escaped as an
    // exception, which the HTTP server answered with a 500).
    return Fail(Bad("a number in the " + what + " JSON is out of range"));
  }
  if (out.doc.is_discarded() || !out.doc.is_object()) {
    return Fail(Bad("the " + what + " body is not a JSON object"));
  }
  if (too_deep) {
    return Fail(Bad("the " + what + " nests arrays and objects deeper than " +
                    std::to_string(limits.max_json_depth) + " levels"));
  }
  out.binary = body.substr(json_size);
  return out;
}

// Reads a list of tensors ("inputs" of a request, "outputs" of a response), taking binary
// elements from the front of `binary` in order. kind: "input" or "output", for messages.
Result<std::vector<Tensor>> ParseTensors(const json& list, std::string_view& binary,
                                         const RequestLimits& limits, const std::string& kind) {
  std::vector<Tensor> tensors;
  for (const auto& in : list) {
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string() ||
        !in.contains("datatype") || !in["datatype"].is_string() || !in.contains("shape") ||
        !in["shape"].is_array()) {
      return Fail(Bad("each " + kind + " needs \"name\", \"datatype\" and \"shape\""));
    }
    Tensor t;
    t.name = in["name"].get<std::string>();
    for (const auto& other : tensors) {
      if (other.name == t.name) {
        return Fail(Bad(kind + " '" + t.name + "' is given twice"));
      }
    }
    auto dtype = runtime::ParseDataType(in["datatype"].get<std::string>());
    if (!dtype) {
      return Fail(Bad(kind + " '" + t.name + "' has unknown datatype " + in["datatype"].dump()));
    }
    t.dtype = *dtype;
    std::uint64_t count = 1;
    for (const auto& d : in["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) {
        return Fail(Bad(kind + " '" + t.name + "' has a shape that is not a list of sizes"));
      }
      std::uint64_t dim = d.get<std::uint64_t>();
      if (__builtin_mul_overflow(count, dim, &count) || count > limits.max_elements) {
        return Fail(Bad(kind + " '" + t.name + "' is larger than the server accepts (" +
                        std::to_string(limits.max_elements) + " elements)"));
      }
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const json* size_param = nullptr;
    if (in.contains("parameters") && in["parameters"].is_object() &&
        in["parameters"].contains("binary_data_size")) {
      size_param = &in["parameters"]["binary_data_size"];
    }
    if (size_param != nullptr) {
      if (!size_param->is_number_unsigned()) {
        return Fail(
            Bad(kind + " '" + t.name + "': binary_data_size must be a non-negative integer"));
      }
      std::uint64_t size = size_param->get<std::uint64_t>();
      if (size > binary.size()) {
        return Fail(Bad(kind + " '" + t.name + "' declares " + std::to_string(size) +
                        " binary bytes, but only " + std::to_string(binary.size()) + " remain"));
      }
      AIRLOCK_RETURN_IF_ERROR(BinaryToElements(binary.substr(0, size), t, count));
      binary.remove_prefix(size);
    } else if (in.contains("data")) {
      AIRLOCK_RETURN_IF_ERROR(JsonToElements(in["data"], t, count));
    } else {
      return Fail(Bad(kind + " '" + t.name + "' has neither \"data\" nor binary_data_size"));
    }
    tensors.push_back(std::move(t));
  }
  if (!binary.empty()) {
    return Fail(Bad(std::to_string(binary.size()) + " bytes after the binary " + kind +
                    "s belong to no " + kind));
  }
  return tensors;
}

// Appends a tensor's elements in the binary extension's form.
void AppendBinary(const Tensor& t, std::string& out) {
  if (t.dtype == DataType::kBytes) {
    for (const auto& s : t.strings) {
      Append<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
      out += s;
    }
  } else {
    out += t.data;
  }
}

// Adds a tensor to a body's list: with its "data" in the JSON, or its bytes appended to binary
// and their count in "binary_data_size".
void AddTensor(const Tensor& t, bool as_binary, json& list, std::string& binary) {
  if (!as_binary) {
    list.push_back(TensorToJson(t));
    return;
  }
  std::size_t before = binary.size();
  AppendBinary(t, binary);
  list.push_back({{"name", t.name},
                  {"datatype", std::string(DataTypeName(t.dtype))},
                  {"shape", t.shape},
                  {"parameters", {{"binary_data_size", binary.size() - before}}}});
}

// The JSON document, then the binary section when there is one (or a tensor declared one).
EncodedBody Finish(const json& doc, const std::string& list_key, const std::string& binary) {
  EncodedBody out;
  out.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  const json& list = doc[list_key];
  if (!binary.empty() || std::any_of(list.begin(), list.end(), [](const json& o) {
        return o.contains("parameters") && o["parameters"].contains("binary_data_size");
      })) {
    out.header_length = out.body.size();
    out.body += binary;
  }
  return out;
}

}  // namespace

Result<InferRequest> ParseInferRequest(std::string_view body,
                                       std::optional<std::uint64_t> header_length,
                                       const RequestLimits& limits) {
  AIRLOCK_ASSIGN_OR_RETURN(SplitBody split, SplitAndParse(body, header_length, limits, "request"));
  json& doc = split.doc;
  InferRequest req;
  if (doc.contains("id")) {
    if (!doc["id"].is_string()) {
      return Fail(Bad("\"id\" must be a string"));
    }
    req.id = doc["id"].get<std::string>();
  }
  req.binary_outputs = BoolParameter(doc, "binary_data_output");
  if (!doc.contains("inputs") || !doc["inputs"].is_array() || doc["inputs"].empty()) {
    return Fail(Bad("the request needs a non-empty \"inputs\" list"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(req.inputs, ParseTensors(doc["inputs"], split.binary, limits, "input"));
  if (doc.contains("outputs")) {
    if (!doc["outputs"].is_array()) {
      return Fail(Bad("\"outputs\" must be a list"));
    }
    for (const auto& out : doc["outputs"]) {
      if (!out.is_object() || !out.contains("name") || !out["name"].is_string()) {
        return Fail(Bad("each requested output needs a \"name\""));
      }
      req.outputs.push_back({out["name"].get<std::string>(),
                             BoolParameter(out, "binary_data") || req.binary_outputs});
    }
  }
  return req;
}

Result<InferResponse> ParseInferResponse(std::string_view body,
                                         std::optional<std::uint64_t> header_length,
                                         const RequestLimits& limits) {
  AIRLOCK_ASSIGN_OR_RETURN(SplitBody split, SplitAndParse(body, header_length, limits, "response"));
  const json& doc = split.doc;
  if (doc.contains("error")) {
    return Fail(Bad("the server answered with an error: " + doc["error"].dump()));
  }
  if (!doc.contains("outputs") || !doc["outputs"].is_array()) {
    return Fail(Bad("the response has no \"outputs\" list"));
  }
  InferResponse resp;
  auto text = [&](const char* key) {
    return doc.contains(key) && doc[key].is_string() ? doc[key].get<std::string>() : "";
  };
  resp.model_name = text("model_name");
  resp.model_version = text("model_version");
  resp.id = text("id");
  AIRLOCK_ASSIGN_OR_RETURN(resp.outputs,
                           ParseTensors(doc["outputs"], split.binary, limits, "output"));
  return resp;
}

EncodedBody EncodeInferRequest(const std::vector<Tensor>& inputs, const EncodeOptions& options) {
  json doc = {{"inputs", json::array()}};
  if (options.binary_outputs) {
    doc["parameters"] = {{"binary_data_output", true}};
  }
  std::string binary;
  for (const auto& t : inputs) {
    AddTensor(t, options.binary_inputs, doc["inputs"], binary);
  }
  return Finish(doc, "inputs", binary);
}

json TensorToJson(const Tensor& t) {
  json data = json::array();
  for (std::int64_t i = 0; i < t.ElementCount(); ++i) {
    if (t.dtype == DataType::kBytes) {
      data.push_back(t.strings[static_cast<std::size_t>(i)]);
    } else if (t.dtype == DataType::kBool) {
      data.push_back(t.ValueAsDouble(i) != 0);
    } else if (runtime::IsFloating(t.dtype)) {
      data.push_back(t.ValueAsDouble(i));
    } else if (t.dtype == DataType::kUint64) {
      std::uint64_t v;
      std::memcpy(&v, t.data.data() + i * 8, 8);
      data.push_back(v);
    } else if (t.dtype == DataType::kInt64) {
      std::int64_t v;
      std::memcpy(&v, t.data.data() + i * 8, 8);
      data.push_back(v);
    } else {
      data.push_back(static_cast<std::int64_t>(t.ValueAsDouble(i)));
    }
  }
  return {{"name", t.name},
          {"datatype", std::string(DataTypeName(t.dtype))},
          {"shape", t.shape},
          {"data", std::move(data)}};
}

EncodedBody EncodeInferResponse(std::string_view model_name, std::string_view model_version,
                                std::string_view id, const std::vector<Tensor>& outputs,
                                const InferRequest& request) {
  json doc = {{"model_name", model_name}, {"outputs", json::array()}};
  if (!model_version.empty()) {
    doc["model_version"] = model_version;
  }
  if (!id.empty()) {
    doc["id"] = id;
  }
  std::string binary;
  for (const auto& t : outputs) {
    bool as_binary = request.binary_outputs;
    for (const auto& r : request.outputs) {
      if (r.name == t.name) {
        as_binary = r.binary;
      }
    }
    AddTensor(t, as_binary, doc["outputs"], binary);
  }
  return Finish(doc, "outputs", binary);
}

}  // namespace airlock::agent
