#include "agent/oip_codec.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "support/tensors.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;
using runtime::DataType;
using runtime::Tensor;

// One tensor of each datatype, with values every encoding represents exactly.
std::vector<Tensor> EveryDatatype() {
  using testing::MakeTensor;
  std::vector<Tensor> out = {
      MakeTensor<std::uint8_t>("bool", DataType::kBool, {3}, {1, 0, 1}),
      MakeTensor<std::uint8_t>("u8", DataType::kUint8, {2}, {0, 255}),
      MakeTensor<std::uint16_t>("u16", DataType::kUint16, {2}, {0, 65535}),
      MakeTensor<std::uint32_t>("u32", DataType::kUint32, {2}, {0, 4000000000u}),
      MakeTensor<std::uint64_t>("u64", DataType::kUint64, {2}, {0, 18000000000000000000ull}),
      MakeTensor<std::int8_t>("i8", DataType::kInt8, {2}, {-128, 127}),
      MakeTensor<std::int16_t>("i16", DataType::kInt16, {2}, {-32768, 32767}),
      MakeTensor<std::int32_t>("i32", DataType::kInt32, {2, 2}, {-5, 0, 7, 2147483647}),
      MakeTensor<std::int64_t>("i64", DataType::kInt64, {2}, {-9000000000000000000ll, 42}),
      MakeTensor<std::uint16_t>("f16", DataType::kFp16, {3},
                                {0x3c00, 0xc000, 0x3555}),                        // 1, -2, ~1/3
      MakeTensor<std::uint16_t>("bf16", DataType::kBf16, {2}, {0x3f80, 0xc040}),  // 1, -3
      MakeTensor<float>("f32", DataType::kFp32, {1, 3}, {0.5f, -1.25f, 3.0e-8f}),
      MakeTensor<double>("f64", DataType::kFp64, {2}, {0.1, -1e300}),
  };
  Tensor bytes;
  bytes.name = "bytes";
  bytes.dtype = DataType::kBytes;
  bytes.shape = {3};
  bytes.strings = {"hello", "", std::string("a\0b", 3)};
  out.push_back(bytes);
  return out;
}

void ExpectSame(const Tensor& want, const Tensor& got) {
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.dtype, want.dtype) << want.name;
  EXPECT_EQ(got.shape, want.shape) << want.name;
  EXPECT_EQ(got.data, want.data) << want.name;
  EXPECT_EQ(got.strings, want.strings) << want.name;
}

TEST(OipCodecTest, JsonRequestForEveryDatatype) {
  for (const Tensor& t : EveryDatatype()) {
    json body = {{"id", "r1"}, {"inputs", {TensorToJson(t)}}};
    auto req = ParseInferRequest(body.dump(), std::nullopt);
    ASSERT_TRUE(req) << t.name << ": " << req.error().ToString();
    EXPECT_EQ(req->id, "r1");
    ExpectSame(t, req->inputs.at(0));
  }
}

TEST(OipCodecTest, NestedJsonDataIsRowMajor) {
  json body = {{"inputs",
                {{{"name", "x"},
                  {"datatype", "FP32"},
                  {"shape", {2, 2}},
                  {"data", {{1.0, 2.0}, {3.0, 4.0}}}}}}};
  auto req = ParseInferRequest(body.dump(), std::nullopt);
  ASSERT_TRUE(req) << req.error().ToString();
  ExpectSame(testing::Fp32("x", {2, 2}, {1, 2, 3, 4}), req->inputs[0]);
}

// A request carrying every tensor in binary form after the JSON header.
std::pair<std::string, std::uint64_t> BinaryRequest(const std::vector<Tensor>& tensors) {
  json inputs = json::array();
  std::string binary;
  for (const Tensor& t : tensors) {
    std::size_t before = binary.size();
    if (t.dtype == DataType::kBytes) {
      for (const auto& s : t.strings) {
        std::uint32_t len = static_cast<std::uint32_t>(s.size());
        binary.append(reinterpret_cast<const char*>(&len), 4);
        binary += s;
      }
    } else {
      binary += t.data;
    }
    inputs.push_back({{"name", t.name},
                      {"datatype", std::string(runtime::DataTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"parameters", {{"binary_data_size", binary.size() - before}}}});
  }
  std::string header = json{{"inputs", inputs}}.dump();
  return {header + binary, header.size()};
}

TEST(OipCodecTest, BinaryRequestForEveryDatatype) {
  auto tensors = EveryDatatype();
  auto [body, header] = BinaryRequest(tensors);
  auto req = ParseInferRequest(body, header);
  ASSERT_TRUE(req) << req.error().ToString();
  ASSERT_EQ(req->inputs.size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    ExpectSame(tensors[i], req->inputs[i]);
  }
}

TEST(OipCodecTest, BinaryResponseRoundTrip) {
  auto tensors = EveryDatatype();
  InferRequest asked;
  asked.binary_outputs = true;
  asked.outputs = {{"f32", false}};  // this one as JSON, the rest binary
  auto encoded = EncodeInferResponse("m", "1", "id7", tensors, asked);
  ASSERT_TRUE(encoded.header_length);
  json header = json::parse(encoded.body.substr(0, *encoded.header_length));
  EXPECT_EQ(header["model_name"], "m");
  EXPECT_EQ(header["model_version"], "1");
  EXPECT_EQ(header["id"], "id7");
  // A client reading the response gets the same tensors.
  auto back = ParseInferResponse(encoded.body, encoded.header_length);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->model_name, "m");
  EXPECT_EQ(back->model_version, "1");
  EXPECT_EQ(back->id, "id7");
  ASSERT_EQ(back->outputs.size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    ExpectSame(tensors[i], back->outputs[i]);
  }
  EXPECT_TRUE(header["outputs"][11].contains("data"));  // f32 stayed JSON
}

// The client's encoder writes what the hand-made request above holds, byte for byte.
TEST(OipCodecTest, RequestEncoderMatchesTheProtocol) {
  auto tensors = EveryDatatype();
  auto [body, header] = BinaryRequest(tensors);
  auto encoded = EncodeInferRequest(tensors);
  ASSERT_TRUE(encoded.header_length);
  EXPECT_EQ(*encoded.header_length, header);
  EXPECT_EQ(encoded.body, body);

  auto with_outputs = EncodeInferRequest(tensors, {.binary_inputs = true, .binary_outputs = true});
  auto req = ParseInferRequest(with_outputs.body, with_outputs.header_length);
  ASSERT_TRUE(req) << req.error().ToString();
  EXPECT_TRUE(req->binary_outputs);

  // JSON tensors: no header length, and the parser reads the same values (BYTES as UTF-8 text).
  std::vector<Tensor> printable = tensors;
  for (auto& t : printable) {
    if (t.dtype == DataType::kBytes) {
      for (auto& s : t.strings) {
        s = "text";
      }
    }
  }
  auto as_json = EncodeInferRequest(printable, {.binary_inputs = false});
  EXPECT_FALSE(as_json.header_length);
  auto parsed = ParseInferRequest(as_json.body, std::nullopt);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->inputs.size(), printable.size());
  for (std::size_t i = 0; i < printable.size(); ++i) {
    ExpectSame(printable[i], parsed->inputs[i]);
  }
}

TEST(OipCodecTest, ResponseParserRefusesErrorsAndShortBodies) {
  auto err = ParseInferResponse(R"({"error": "model 'x' is not ready"})", std::nullopt);
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().message().find("is not ready"), std::string::npos);
  auto no_outputs = ParseInferResponse(R"({"model_name": "m"})", std::nullopt);
  ASSERT_FALSE(no_outputs);
  EXPECT_NE(no_outputs.error().message().find("no \"outputs\""), std::string::npos);
  InferRequest binary;
  binary.binary_outputs = true;
  auto encoded = EncodeInferResponse("m", "", "", {testing::Fp32("y", {2}, {1, 2})}, binary);
  ASSERT_TRUE(encoded.header_length);
  auto truncated =
      ParseInferResponse(encoded.body.substr(0, encoded.body.size() - 1), encoded.header_length);
  ASSERT_FALSE(truncated);
  EXPECT_NE(truncated.error().message().find("output 'y' declares 8 binary bytes"),
            std::string::npos)
      << truncated.error().message();
}

TEST(OipCodecTest, JsonOnlyResponseHasNoHeaderLength) {
  auto encoded = EncodeInferResponse("m", "", "", {testing::Fp32("y", {1}, {2})}, {});
  EXPECT_FALSE(encoded.header_length);
  EXPECT_EQ(json::parse(encoded.body)["outputs"][0]["data"], json({2.0}));
}

struct BadRequest {
  const char* name;
  std::string body;
  std::optional<std::uint64_t> header;
  const char* message;
  std::string binary = "";  // appended after body, which then is the JSON header
};

class OipCodecRefuses : public ::testing::TestWithParam<BadRequest> {};

TEST_P(OipCodecRefuses, WithAMessageTheClientCanActOn) {
  RequestLimits limits;
  limits.max_elements = 1 << 20;
  const BadRequest& b = GetParam();
  auto r = b.binary.empty() ? ParseInferRequest(b.body, b.header, limits)
                            : ParseInferRequest(b.body + b.binary, b.body.size(), limits);
  ASSERT_FALSE(r) << GetParam().name;
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find(GetParam().message), std::string::npos) << r.error().message();
}

std::string Input(const std::string& fields) { return R"({"inputs": [{)" + fields + "}]}"; }

INSTANTIATE_TEST_SUITE_P(
    Requests, OipCodecRefuses,
    ::testing::Values(
        BadRequest{"NotJson", "{inputs", std::nullopt, "malformed JSON in the request at byte 2"},
        // nlohmann throws out_of_range, not parse_error, for it (found by fuzz_infer_request).
        BadRequest{"NumberOutOfRange",
                   Input(R"("name": "x", "datatype": "FP32", "shape": [1], "data": [1e999])"),
                   std::nullopt, "a number in the request JSON is out of range"},
        BadRequest{"NoInputs", "{}", std::nullopt, "non-empty \"inputs\""},
        BadRequest{"NoShape", Input(R"("name": "x", "datatype": "FP32")"), std::nullopt,
                   "\"name\", \"datatype\" and \"shape\""},
        BadRequest{"UnknownDatatype",
                   Input(R"("name": "x", "datatype": "FP8", "shape": [1], "data": [1])"),
                   std::nullopt, "unknown datatype \"FP8\""},
        BadRequest{"TooFewElements",
                   Input(R"("name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2])"),
                   std::nullopt, "has 2 data elements, its shape [3] needs 3"},
        BadRequest{"TooManyElements",
                   Input(R"("name": "x", "datatype": "FP32", "shape": [1], "data": [1, 2])"),
                   std::nullopt, "more data elements than its shape holds"},
        BadRequest{"WrongType",
                   Input(R"("name": "x", "datatype": "INT32", "shape": [1], "data": ["a"])"),
                   std::nullopt, "non-integer value"},
        BadRequest{"OutOfRange",
                   Input(R"("name": "x", "datatype": "UINT8", "shape": [1], "data": [256])"),
                   std::nullopt, "out of range"},
        BadRequest{"NegativeDim",
                   Input(R"("name": "x", "datatype": "FP32", "shape": [-1], "data": [])"),
                   std::nullopt, "not a list of sizes"},
        BadRequest{
            "HugeShape",
            Input(
                R"("name": "x", "datatype": "FP32", "shape": [100000, 100000, 100000, 100000], "data": [])"),
            std::nullopt, "larger than the server accepts"},
        BadRequest{"HeaderPastBody",
                   Input(R"("name": "x", "datatype": "FP32", "shape": [1], "data": [1])"),
                   std::uint64_t{100000}, "past the end"},
        BadRequest{
            "BinarySizePastBody",
            Input(
                R"("name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4})"),
            std::nullopt, "declares 4 binary bytes, but only 0 remain"},
        BadRequest{
            "BinarySizeWrong",
            Input(
                R"("name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4})"),
            std::nullopt, "need 8", "abcd"},
        BadRequest{
            "BytesLengthPastData",
            Input(
                R"("name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6})"),
            std::nullopt, "runs past its binary data", std::string("\x09\x00\x00\x00hi", 6)},
        BadRequest{"Duplicate",
                   R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                                  {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})",
                   std::nullopt, "given twice"},
        BadRequest{"NoData", Input(R"("name": "x", "datatype": "FP32", "shape": [1])"),
                   std::nullopt, "neither \"data\" nor binary_data_size"}),
    [](const ::testing::TestParamInfo<BadRequest>& p) { return std::string(p.param.name); });

TEST(OipCodecTest, BytesAfterTheBinaryInputsAreRefused) {
  auto [body, header] = BinaryRequest({testing::Fp32("x", {1}, {1})});
  auto r = ParseInferRequest(body + "junk", header);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("4 bytes after the binary inputs"), std::string::npos);
}

// Found while writing fuzz/fuzz_infer_request (a crafted input run through it): "data" nested a few
// hundred thousand levels deep overflowed the stack (reading it recursed once per level) and killed
// the agent.
TEST(OipCodecTest, DeeplyNestedDataIsRefusedAndTheNextRequestWorks) {
  const int deep = 200000;
  std::string data = std::string(deep, '[') + "1" + std::string(deep, ']');
  auto r = ParseInferRequest(
      Input(R"("name": "x", "datatype": "FP32", "shape": [1], "data": )" + data), std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("deeper than 64 levels"), std::string::npos)
      << r.error().message();
  // A deep object where a number belongs is refused the same way (its text would be in the error).
  std::string object;
  for (int i = 0; i < deep / 8; ++i) {
    object += R"({"a":)";
  }
  object += "1" + std::string(deep / 8, '}');
  EXPECT_FALSE(ParseInferRequest(
      Input(R"("name": "x", "datatype": "FP32", "shape": [1], "data": [)" + object + "]"),
      std::nullopt));
  // Nesting that matches a rank-4 shape is fine.
  auto ok = ParseInferRequest(
      Input(R"("name": "x", "datatype": "FP32", "shape": [1, 1, 1, 2], "data": [[[[1, 2]]]])"),
      std::nullopt);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->inputs.at(0).shape, (std::vector<std::int64_t>{1, 1, 1, 2}));
}

}  // namespace
}  // namespace airlock::agent
