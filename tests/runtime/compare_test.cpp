#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runtime/tensor.hpp"
#include "support/tensors.hpp"

namespace airlock::runtime {
namespace {

template <typename T>
Tensor Make(DataType dtype, std::vector<std::int64_t> shape, const std::vector<T>& values,
            std::string name = "probs") {
  return testing::MakeTensor<T>(std::move(name), dtype, std::move(shape), values);
}

Tensor Fp32(const std::vector<float>& v) {
  return Make<float>(DataType::kFp32, {static_cast<std::int64_t>(v.size())}, v);
}

Tensor Strings(const std::vector<std::string>& v) {
  Tensor t;
  t.name = "labels";
  t.dtype = DataType::kBytes;
  t.shape = {static_cast<std::int64_t>(v.size())};
  t.strings = v;
  return t;
}

const Tolerance kDefault;  // rtol 1e-3, atol 1e-5
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

TEST(CompareTensorsTest, IdenticalTensorsMatch) {
  EXPECT_TRUE(CompareTensors(Fp32({1, 2, 3}), Fp32({1, 2, 3}), kDefault));
  EXPECT_TRUE(CompareTensors(Fp32({}), Fp32({}), kDefault));
}

TEST(CompareTensorsTest, WithinToleranceMatches) {
  // |a - e| <= atol + rtol * |e|
  EXPECT_TRUE(
      CompareTensors(Fp32({1000.0f, 1.0f, 0.0f}), Fp32({1000.9f, 1.0009f, 0.000009f}), kDefault));
  EXPECT_TRUE(CompareTensors(Fp32({-2.0f}), Fp32({-2.0019f}), kDefault));
  // Custom tolerances.
  EXPECT_TRUE(CompareTensors(Fp32({1.0f}), Fp32({1.09f}), Tolerance{0, 0.1}));
  EXPECT_FALSE(CompareTensors(Fp32({1.0f}), Fp32({1.11f}), Tolerance{0, 0.1}));
}

TEST(CompareTensorsTest, BeyondToleranceIsAMismatchNamingTheWorstElement) {
  Tensor expected = Fp32({0.1f, 0.2f, 0.3f, 0.4f});
  Tensor actual = Fp32({0.1f, 0.21f, 0.5f, 0.4f});
  auto st = CompareTensors(expected, actual, kDefault);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kMismatch);
  const std::string& msg = st.error().message();
  EXPECT_NE(msg.find("output probs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 of 4 elements"), std::string::npos) << msg;
  EXPECT_NE(msg.find("worst at 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("got 0.5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 0.3"), std::string::npos) << msg;
}

TEST(CompareTensorsTest, NanMatchesNanOnly) {
  EXPECT_TRUE(CompareTensors(Fp32({kNan, 1}), Fp32({kNan, 1}), kDefault));
  auto st = CompareTensors(Fp32({1, kNan}), Fp32({1, 2}), kDefault);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("worst at 1"), std::string::npos);
  EXPECT_FALSE(CompareTensors(Fp32({0}), Fp32({kNan}), kDefault));
}

TEST(CompareTensorsTest, InfinitiesMustMatchExactly) {
  EXPECT_TRUE(CompareTensors(Fp32({kInf, -kInf}), Fp32({kInf, -kInf}), kDefault));
  EXPECT_FALSE(CompareTensors(Fp32({kInf}), Fp32({-kInf}), kDefault));
  EXPECT_FALSE(CompareTensors(Fp32({kInf}), Fp32({3.4e38f}), kDefault));
  EXPECT_FALSE(CompareTensors(Fp32({3.4e38f}), Fp32({kInf}), kDefault));
  // Even an infinite tolerance does not make infinity equal to a number.
  EXPECT_FALSE(CompareTensors(Fp32({1}), Fp32({kInf}), Tolerance{kInf, kInf}));
}

TEST(CompareTensorsTest, ShapeAndDtypeMustMatch) {
  Tensor a = Make<float>(DataType::kFp32, {2, 2}, {1, 2, 3, 4});
  Tensor b = Make<float>(DataType::kFp32, {4}, {1, 2, 3, 4});
  auto shape = CompareTensors(a, b, kDefault);
  ASSERT_FALSE(shape);
  EXPECT_EQ(shape.error().code(), ErrorCode::kMismatch);
  EXPECT_NE(shape.error().message().find("has shape [4], expected [2,2]"), std::string::npos)
      << shape.error().message();

  Tensor c = Make<double>(DataType::kFp64, {2, 2}, {1, 2, 3, 4});
  auto dtype = CompareTensors(a, c, kDefault);
  ASSERT_FALSE(dtype);
  EXPECT_EQ(dtype.error().code(), ErrorCode::kMismatch);
  EXPECT_NE(dtype.error().message().find("is FP64, expected FP32"), std::string::npos)
      << dtype.error().message();
}

TEST(CompareTensorsTest, IntegersCompareExactly) {
  Tensor e = Make<std::int32_t>(DataType::kInt32, {3}, {1, 2, 3});
  EXPECT_TRUE(CompareTensors(e, Make<std::int32_t>(DataType::kInt32, {3}, {1, 2, 3}), kDefault));
  // No tolerance for integers, whatever the Tolerance says.
  auto st =
      CompareTensors(e, Make<std::int32_t>(DataType::kInt32, {3}, {1, 3, 3}), Tolerance{1.0, 10.0});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kMismatch);
  EXPECT_NE(st.error().message().find("element 1 is 3, expected 2"), std::string::npos)
      << st.error().message();
}

TEST(CompareTensorsTest, SixtyFourBitIntegersCompareBitForBit) {
  // 2^53 and 2^53 + 1 are the same double; as class ids or counts they differ.
  const std::int64_t big = std::int64_t{1} << 53;
  Tensor e = Make<std::int64_t>(DataType::kInt64, {2}, {0, big});
  Tensor a = Make<std::int64_t>(DataType::kInt64, {2}, {0, big + 1});
  auto st = CompareTensors(e, a, kDefault);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("element 1 is 9007199254740993, expected 9007199254740992"),
            std::string::npos)
      << st.error().message();

  const std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
  EXPECT_FALSE(CompareTensors(Make<std::uint64_t>(DataType::kUint64, {1}, {top}),
                              Make<std::uint64_t>(DataType::kUint64, {1}, {top - 1}), kDefault));
  EXPECT_TRUE(CompareTensors(Make<std::uint64_t>(DataType::kUint64, {1}, {top}),
                             Make<std::uint64_t>(DataType::kUint64, {1}, {top}), kDefault));
}

TEST(CompareTensorsTest, BooleansCompareExactly) {
  Tensor e = Make<std::uint8_t>(DataType::kBool, {3}, {1, 0, 1});
  EXPECT_TRUE(CompareTensors(e, Make<std::uint8_t>(DataType::kBool, {3}, {1, 0, 1}), kDefault));
  EXPECT_FALSE(CompareTensors(e, Make<std::uint8_t>(DataType::kBool, {3}, {1, 1, 1}), kDefault));
}

TEST(CompareTensorsTest, StringsCompareExactly) {
  EXPECT_TRUE(CompareTensors(Strings({"cat", "", "dög"}), Strings({"cat", "", "dög"}), kDefault));
  auto st = CompareTensors(Strings({"cat", "dog"}), Strings({"cat", "Dog"}), kDefault);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kMismatch);
  EXPECT_NE(st.error().message().find("element 1 is \"Dog\", expected \"dog\""), std::string::npos)
      << st.error().message();
  EXPECT_FALSE(CompareTensors(Strings({"a"}), Strings({"a "}), kDefault));
}

TEST(CompareTensorsTest, HalfPrecisionUsesTolerance) {
  // 0x3C00 = 1.0, 0x3C01 = 1.0009765625, 0x3C10 = 1.015625
  Tensor e = Make<std::uint16_t>(DataType::kFp16, {1}, {0x3C00});
  EXPECT_TRUE(CompareTensors(e, Make<std::uint16_t>(DataType::kFp16, {1}, {0x3C00}), kDefault));
  EXPECT_TRUE(
      CompareTensors(e, Make<std::uint16_t>(DataType::kFp16, {1}, {0x3C01}), Tolerance{2e-3, 0}));
  EXPECT_FALSE(CompareTensors(e, Make<std::uint16_t>(DataType::kFp16, {1}, {0x3C10}), kDefault));
}

TEST(CompareTensorsTest, NameFallsBackToTheActualTensor) {
  Tensor e = Fp32({1});
  e.name = "";
  Tensor a = Fp32({2});
  a.name = "logits";
  auto st = CompareTensors(e, a, kDefault);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("logits"), std::string::npos);
}

}  // namespace
}  // namespace airlock::runtime
