#include "runtime/tensor.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support/tensors.hpp"

namespace airlock::runtime {
namespace {

using nlohmann::json;

const std::vector<DataType> kAllTypes = {
    DataType::kBool, DataType::kUint8, DataType::kUint16, DataType::kUint32, DataType::kUint64,
    DataType::kInt8, DataType::kInt16, DataType::kInt32,  DataType::kInt64,  DataType::kFp16,
    DataType::kBf16, DataType::kFp32,  DataType::kFp64,   DataType::kBytes,
};

template <typename T>
Tensor Make(DataType dtype, std::vector<std::int64_t> shape, const std::vector<T>& values) {
  return testing::MakeTensor<T>("t", dtype, std::move(shape), values);
}

TEST(DataTypeTest, NamesRoundTrip) {
  for (DataType t : kAllTypes) {
    auto parsed = ParseDataType(DataTypeName(t));
    ASSERT_TRUE(parsed) << DataTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(DataTypeName(DataType::kFp32), "FP32");
  EXPECT_EQ(DataTypeName(DataType::kBytes), "BYTES");
  EXPECT_EQ(DataTypeName(DataType::kBool), "BOOL");
  EXPECT_EQ(DataTypeName(DataType::kBf16), "BF16");
}

TEST(DataTypeTest, UnknownNamesAreRefused) {
  for (const char* name : {"", "fp32", "FLOAT", "FLOAT32", "STRING", "INT128", "FP32 "}) {
    auto parsed = ParseDataType(name);
    ASSERT_FALSE(parsed) << name;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(DataTypeTest, OnnxTypeNumbersFollowTensorProto) {
  // onnx.TensorProto.DataType
  EXPECT_EQ(ToOnnxType(DataType::kFp32), 1);
  EXPECT_EQ(ToOnnxType(DataType::kUint8), 2);
  EXPECT_EQ(ToOnnxType(DataType::kInt8), 3);
  EXPECT_EQ(ToOnnxType(DataType::kUint16), 4);
  EXPECT_EQ(ToOnnxType(DataType::kInt16), 5);
  EXPECT_EQ(ToOnnxType(DataType::kInt32), 6);
  EXPECT_EQ(ToOnnxType(DataType::kInt64), 7);
  EXPECT_EQ(ToOnnxType(DataType::kBytes), 8);
  EXPECT_EQ(ToOnnxType(DataType::kBool), 9);
  EXPECT_EQ(ToOnnxType(DataType::kFp16), 10);
  EXPECT_EQ(ToOnnxType(DataType::kFp64), 11);
  EXPECT_EQ(ToOnnxType(DataType::kUint32), 12);
  EXPECT_EQ(ToOnnxType(DataType::kUint64), 13);
  EXPECT_EQ(ToOnnxType(DataType::kBf16), 16);
  for (DataType t : kAllTypes) {
    auto back = FromOnnxType(ToOnnxType(t));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, t);
  }
}

TEST(DataTypeTest, UnsupportedOnnxTypesAreRefused) {
  // 0 UNDEFINED, 14/15 complex, 17+ float8 and int4 variants.
  for (int onnx : {0, 14, 15, 17, 18, 21, 22, -1, 1000}) {
    auto t = FromOnnxType(onnx);
    ASSERT_FALSE(t) << onnx;
    EXPECT_EQ(t.error().code(), ErrorCode::kUnsupported);
  }
}

TEST(DataTypeTest, ElementSizesAndFloatingness) {
  EXPECT_EQ(ElementSize(DataType::kBool), 1u);
  EXPECT_EQ(ElementSize(DataType::kUint16), 2u);
  EXPECT_EQ(ElementSize(DataType::kFp16), 2u);
  EXPECT_EQ(ElementSize(DataType::kBf16), 2u);
  EXPECT_EQ(ElementSize(DataType::kInt32), 4u);
  EXPECT_EQ(ElementSize(DataType::kFp32), 4u);
  EXPECT_EQ(ElementSize(DataType::kUint64), 8u);
  EXPECT_EQ(ElementSize(DataType::kFp64), 8u);
  EXPECT_EQ(ElementSize(DataType::kBytes), 0u);
  for (DataType t : kAllTypes) {
    bool floating = t == DataType::kFp16 || t == DataType::kBf16 || t == DataType::kFp32 ||
                    t == DataType::kFp64;
    EXPECT_EQ(IsFloating(t), floating) << DataTypeName(t);
  }
}

TEST(TensorTest, ElementCount) {
  Tensor t;
  EXPECT_EQ(t.ElementCount(), 1);  // a scalar
  t.shape = {2, 3, 4};
  EXPECT_EQ(t.ElementCount(), 24);
  t.shape = {5, 0, 7};
  EXPECT_EQ(t.ElementCount(), 0);
}

TEST(TensorTest, CheckConsistentAcceptsExactSizes) {
  EXPECT_TRUE(Make<float>(DataType::kFp32, {2, 2}, {1, 2, 3, 4}).CheckConsistent());
  EXPECT_TRUE(Make<float>(DataType::kFp32, {}, {1}).CheckConsistent());
  EXPECT_TRUE(Make<float>(DataType::kFp32, {0, 4}, {}).CheckConsistent());
  EXPECT_TRUE(Make<std::int64_t>(DataType::kInt64, {3}, {1, 2, 3}).CheckConsistent());
  Tensor s;
  s.dtype = DataType::kBytes;
  s.shape = {2};
  s.strings = {"a", ""};
  EXPECT_TRUE(s.CheckConsistent());
}

TEST(TensorTest, CheckConsistentRefusesWrongByteCounts) {
  Tensor t = Make<float>(DataType::kFp32, {2, 2}, {1, 2, 3});
  t.name = "pixels";
  auto st = t.CheckConsistent();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(st.error().message().find("pixels"), std::string::npos);
  EXPECT_NE(st.error().message().find("needs 16 bytes, has 12"), std::string::npos)
      << st.error().message();

  Tensor extra = Make<float>(DataType::kFp32, {2}, {1, 2, 3});
  EXPECT_FALSE(extra.CheckConsistent());

  Tensor odd = Make<float>(DataType::kFp32, {1}, {1});
  odd.data.push_back('\0');
  EXPECT_FALSE(odd.CheckConsistent());
}

TEST(TensorTest, CheckConsistentRefusesNegativeDimensions) {
  Tensor t = Make<float>(DataType::kFp32, {-1, 4}, {1, 2, 3, 4});
  auto st = t.CheckConsistent();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("negative"), std::string::npos);
}

TEST(TensorTest, CheckConsistentRefusesStringCountMismatch) {
  Tensor s;
  s.name = "text";
  s.dtype = DataType::kBytes;
  s.shape = {3};
  s.strings = {"a", "b"};
  auto st = s.CheckConsistent();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("needs 3 strings, has 2"), std::string::npos)
      << st.error().message();
}

TEST(TensorTest, CheckConsistentRefusesShapesWhoseSizeOverflows) {
  // 2^32 * 2^32 wraps to 0 in 64 bits: an empty buffer must not pass for it.
  Tensor wrap;
  wrap.dtype = DataType::kFp32;
  wrap.shape = {std::int64_t{1} << 32, std::int64_t{1} << 32};
  EXPECT_FALSE(wrap.CheckConsistent());

  // 2^62 elements fit in int64, but 2^62 * 4 bytes wrap to 0.
  Tensor bytes_wrap;
  bytes_wrap.dtype = DataType::kFp32;
  bytes_wrap.shape = {std::int64_t{1} << 62};
  EXPECT_FALSE(bytes_wrap.CheckConsistent());

  Tensor strings;
  strings.dtype = DataType::kBytes;
  strings.shape = {std::int64_t{1} << 32, std::int64_t{1} << 32};
  EXPECT_FALSE(strings.CheckConsistent());
}

TEST(TensorTest, ValueAsDoubleReadsEveryType) {
  EXPECT_EQ(Make<std::uint8_t>(DataType::kBool, {2}, {0, 1}).ValueAsDouble(1), 1.0);
  EXPECT_EQ(Make<std::uint8_t>(DataType::kUint8, {1}, {255}).ValueAsDouble(0), 255.0);
  EXPECT_EQ(Make<std::int8_t>(DataType::kInt8, {1}, {-128}).ValueAsDouble(0), -128.0);
  EXPECT_EQ(Make<std::uint16_t>(DataType::kUint16, {1}, {65535}).ValueAsDouble(0), 65535.0);
  EXPECT_EQ(Make<std::int16_t>(DataType::kInt16, {1}, {-300}).ValueAsDouble(0), -300.0);
  EXPECT_EQ(Make<std::uint32_t>(DataType::kUint32, {1}, {4000000000u}).ValueAsDouble(0),
            4000000000.0);
  EXPECT_EQ(Make<std::int32_t>(DataType::kInt32, {2}, {7, -7}).ValueAsDouble(1), -7.0);
  EXPECT_EQ(Make<std::int64_t>(DataType::kInt64, {1}, {-(std::int64_t{1} << 40)}).ValueAsDouble(0),
            -1099511627776.0);
  EXPECT_EQ(Make<std::uint64_t>(DataType::kUint64, {1}, {std::uint64_t{1} << 63}).ValueAsDouble(0),
            9223372036854775808.0);
  EXPECT_EQ(Make<float>(DataType::kFp32, {1}, {0.25f}).ValueAsDouble(0), 0.25);
  EXPECT_EQ(Make<double>(DataType::kFp64, {1}, {-1e300}).ValueAsDouble(0), -1e300);
}

TEST(TensorTest, ValueAsDoubleDecodesHalfPrecision) {
  Tensor h = Make<std::uint16_t>(DataType::kFp16, {8},
                                 {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0000, 0x8000, 0x7C00, 0x3555});
  EXPECT_EQ(h.ValueAsDouble(0), 1.0);
  EXPECT_EQ(h.ValueAsDouble(1), -2.0);
  EXPECT_EQ(h.ValueAsDouble(2), 65504.0);               // largest half
  EXPECT_EQ(h.ValueAsDouble(3), std::ldexp(1.0, -24));  // smallest subnormal
  EXPECT_EQ(h.ValueAsDouble(4), 0.0);
  EXPECT_TRUE(std::signbit(h.ValueAsDouble(5)));
  EXPECT_TRUE(std::isinf(h.ValueAsDouble(6)));
  EXPECT_NEAR(h.ValueAsDouble(7), 1.0 / 3.0, 1e-3);
  Tensor nan = Make<std::uint16_t>(DataType::kFp16, {1}, {0x7E00});
  EXPECT_TRUE(std::isnan(nan.ValueAsDouble(0)));

  Tensor b = Make<std::uint16_t>(DataType::kBf16, {3}, {0x3F80, 0xC040, 0x7F80});
  EXPECT_EQ(b.ValueAsDouble(0), 1.0);
  EXPECT_EQ(b.ValueAsDouble(1), -3.0);
  EXPECT_TRUE(std::isinf(b.ValueAsDouble(2)));
}

TEST(TensorTest, ShapeToString) {
  EXPECT_EQ(ShapeToString({}), "[]");
  EXPECT_EQ(ShapeToString({3}), "[3]");
  EXPECT_EQ(ShapeToString({-1, 3, 224, 224}), "[?,3,224,224]");
}

TEST(TensorTest, SummarizeShowsTypeShapeAndFirstValues) {
  Tensor t = Make<float>(DataType::kFp32, {1, 2}, {0.5f, 0.25f});
  EXPECT_EQ(Summarize(t), "FP32 [1,2] = [0.5, 0.25]");
  Tensor many = Make<std::int32_t>(DataType::kInt32, {10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(Summarize(many, 3), "INT32 [10] = [0, 1, 2, … (10 values)]");
  Tensor s;
  s.dtype = DataType::kBytes;
  s.shape = {2};
  s.strings = {"cat", "dog"};
  EXPECT_EQ(Summarize(s), "BYTES [2] = [\"cat\", \"dog\"]");
}

TEST(SignatureTest, JsonRoundTrip) {
  ModelSignature sig;
  sig.inputs.push_back({"images", DataType::kFp32, {-1, 3, 224, 224}, {"batch", "", "", ""}});
  sig.inputs.push_back({"mask", DataType::kBool, {4}, {""}});
  sig.outputs.push_back({"scores", DataType::kFp16, {-1, 1000}, {"batch", ""}});
  json j = sig.ToJson();
  EXPECT_EQ(j["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(j["inputs"][0]["shape"], json({-1, 3, 224, 224}));
  EXPECT_EQ(j["inputs"][0]["dim_names"], json({"batch", "", "", ""}));
  EXPECT_FALSE(j["inputs"][1].contains("dim_names"));  // all unnamed: left out

  auto back = ModelSignature::FromJson(j);
  ASSERT_TRUE(back) << back.error().ToString();
  ASSERT_EQ(back->inputs.size(), 2u);
  ASSERT_EQ(back->outputs.size(), 1u);
  EXPECT_EQ(back->inputs[0].name, "images");
  EXPECT_EQ(back->inputs[0].dtype, DataType::kFp32);
  EXPECT_EQ(back->inputs[0].shape, sig.inputs[0].shape);
  EXPECT_EQ(back->inputs[0].dim_names, sig.inputs[0].dim_names);
  EXPECT_EQ(back->inputs[1].dim_names, std::vector<std::string>{""});
  EXPECT_EQ(back->outputs[0].dtype, DataType::kFp16);
  EXPECT_EQ(back->ToJson(), j);
}

TEST(SignatureTest, FromJsonRefusesMalformed) {
  for (const char* text : {
           R"({})",
           R"({"inputs":[]})",
           R"({"inputs":{},"outputs":[]})",
           R"({"inputs":[{"name":"x","datatype":"FP32"}],"outputs":[]})",
           R"({"inputs":[{"name":"x","datatype":"FLOAT","shape":[1]}],"outputs":[]})",
           R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1.5]}],"outputs":[]})",
           R"({"inputs":[{"name":1,"datatype":"FP32","shape":[1]}],"outputs":[]})",
           R"({"inputs":["x"],"outputs":[]})",
       }) {
    auto sig = ModelSignature::FromJson(json::parse(text));
    EXPECT_FALSE(sig) << text;
  }
}

TEST(SignatureTest, CheckAgainstSpec) {
  TensorSpec spec{"x", DataType::kFp32, {-1, 4}, {"batch", ""}};
  EXPECT_TRUE(CheckAgainstSpec(Make<float>(DataType::kFp32, {1, 4}, {1, 2, 3, 4}), spec));
  EXPECT_TRUE(CheckAgainstSpec(Make<float>(DataType::kFp32, {2, 4}, std::vector<float>(8)), spec));
  EXPECT_TRUE(CheckAgainstSpec(Make<float>(DataType::kFp32, {0, 4}, {}), spec));

  auto dtype = CheckAgainstSpec(Make<double>(DataType::kFp64, {1, 4}, {1, 2, 3, 4}), spec);
  ASSERT_FALSE(dtype);
  EXPECT_NE(dtype.error().message().find("must be FP32, got FP64"), std::string::npos);

  auto dim = CheckAgainstSpec(Make<float>(DataType::kFp32, {1, 5}, std::vector<float>(5)), spec);
  ASSERT_FALSE(dim);
  EXPECT_NE(dim.error().message().find("must have shape [?,4], got [1,5]"), std::string::npos)
      << dim.error().message();

  EXPECT_FALSE(CheckAgainstSpec(Make<float>(DataType::kFp32, {4}, {1, 2, 3, 4}), spec));
  EXPECT_FALSE(CheckAgainstSpec(Make<float>(DataType::kFp32, {1, 1, 4}, {1, 2, 3, 4}), spec));
  // Right shape, but the data does not fill it.
  EXPECT_FALSE(CheckAgainstSpec(Make<float>(DataType::kFp32, {1, 4}, {1, 2, 3}), spec));
}

}  // namespace
}  // namespace airlock::runtime
