#include "runtime/npy.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support/tensors.hpp"
#include "support/test_support.hpp"

namespace airlock::runtime {
namespace {

using testing::TempDir;
using testing::WriteAll;

template <typename T>
Tensor Make(DataType dtype, std::vector<std::int64_t> shape, const std::vector<T>& values) {
  return testing::MakeTensor<T>("x", dtype, std::move(shape), values);
}

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) {  // memcpy from a null pointer is undefined, even for 0 bytes
    std::memcpy(out.data(), values.data(), out.size());
  }
  return out;
}

// A .npy file laid out exactly as numpy.save writes it: magic, version, header length, the
// header dict padded with spaces and a newline so the data starts on a 64-byte boundary.
std::string NumpyFile(std::string_view descr, std::string_view shape, std::string_view data,
                      bool fortran = false, int major = 1) {
  std::string dict = "{'descr': '" + std::string(descr) +
                     "', 'fortran_order': " + (fortran ? "True" : "False") +
                     ", 'shape': " + std::string(shape) + ", }";
  std::size_t prefix = major == 1 ? 10 : 12;
  std::size_t unpadded = prefix + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  std::uint32_t len = static_cast<std::uint32_t>(dict.size());
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>(len >> 24));
  }
  return out + dict + std::string(data);
}

Tensor ParseOk(std::string_view bytes) {
  auto t = ParseNpy(bytes, "x");
  EXPECT_TRUE(t) << t.error().ToString();
  return t ? *t : Tensor();
}

Error ParseFails(std::string_view bytes) {
  auto t = ParseNpy(bytes, "x");
  EXPECT_FALSE(t) << "parsed as " << (t ? Summarize(*t) : "");
  return t ? Error(ErrorCode::kInternal, "parsed") : t.error();
}

void ExpectRoundTrip(const Tensor& t) {
  auto bytes = SerializeNpy(t);
  ASSERT_TRUE(bytes) << DataTypeName(t.dtype) << ": " << bytes.error().ToString();
  auto back = ParseNpy(*bytes, t.name);
  ASSERT_TRUE(back) << DataTypeName(t.dtype) << ": " << back.error().ToString();
  EXPECT_EQ(back->name, t.name);
  EXPECT_EQ(back->dtype, t.dtype);
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_EQ(back->data, t.data);
  EXPECT_EQ(back->strings, t.strings);
}

TEST(NpyTest, EveryNumericTypeRoundTrips) {
  ExpectRoundTrip(Make<std::uint8_t>(DataType::kBool, {4}, {1, 0, 0, 1}));
  ExpectRoundTrip(Make<std::uint8_t>(DataType::kUint8, {2, 2}, {0, 1, 254, 255}));
  ExpectRoundTrip(Make<std::uint16_t>(DataType::kUint16, {3}, {0, 1, 65535}));
  ExpectRoundTrip(Make<std::uint32_t>(DataType::kUint32, {2}, {7, 4294967295u}));
  ExpectRoundTrip(Make<std::uint64_t>(DataType::kUint64, {2}, {7, ~std::uint64_t{0}}));
  ExpectRoundTrip(Make<std::int8_t>(DataType::kInt8, {3}, {-128, 0, 127}));
  ExpectRoundTrip(Make<std::int16_t>(DataType::kInt16, {1, 3}, {-32768, 0, 32767}));
  ExpectRoundTrip(Make<std::int32_t>(DataType::kInt32, {2, 1, 2}, {-1, 0, 1, 1 << 30}));
  ExpectRoundTrip(
      Make<std::int64_t>(DataType::kInt64, {2}, {std::numeric_limits<std::int64_t>::min(), 42}));
  ExpectRoundTrip(Make<std::uint16_t>(DataType::kFp16, {2}, {0x3C00, 0x7E00}));
  ExpectRoundTrip(Make<float>(DataType::kFp32, {1, 3, 2, 2},
                              {0.5f, -1.25f, 3e38f, -0.0f, 1e-40f, 7, 8, 9, 10, 11, 12, 13}));
  ExpectRoundTrip(Make<double>(DataType::kFp64, {}, {3.141592653589793}));
  ExpectRoundTrip(Make<float>(DataType::kFp32, {0, 5}, {}));
}

TEST(NpyTest, BytesRoundTrip) {
  Tensor t;
  t.name = "labels";
  t.dtype = DataType::kBytes;
  t.shape = {2, 2};
  t.strings = {"cat", "", "caf\xc3\xa9", std::string("a\0b", 3)};  // inner NULs survive
  ExpectRoundTrip(t);
  auto bytes = SerializeNpy(t);
  ASSERT_TRUE(bytes);
  EXPECT_NE(bytes->find("'descr': '|S5'"), std::string::npos);  // the longest string
}

TEST(NpyTest, EmptyStringsRoundTrip) {
  Tensor t;
  t.dtype = DataType::kBytes;
  t.shape = {2};
  t.strings = {"", ""};
  ExpectRoundTrip(t);
}

TEST(NpyTest, Bf16HasNoNumpyTypeAndIsRefused) {
  auto bytes = SerializeNpy(Make<std::uint16_t>(DataType::kBf16, {1}, {0x3F80}));
  ASSERT_FALSE(bytes);
  EXPECT_EQ(bytes.error().code(), ErrorCode::kUnsupported);
}

TEST(NpyTest, SerializeRefusesInconsistentTensors) {
  auto bytes = SerializeNpy(Make<float>(DataType::kFp32, {2, 2}, {1, 2, 3}));
  ASSERT_FALSE(bytes);
  EXPECT_EQ(bytes.error().code(), ErrorCode::kInvalidArgument);
}

TEST(NpyTest, HeaderIsVersion1PaddedTo64Bytes) {
  for (const Tensor& t :
       {Make<float>(DataType::kFp32, {}, {1}), Make<float>(DataType::kFp32, {3}, {1, 2, 3}),
        Make<std::int8_t>(DataType::kInt8, {1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1},
                          std::vector<std::int8_t>(40320)),
        Make<float>(DataType::kFp32, {123456789, 0}, {})}) {
    auto bytes = SerializeNpy(t);
    ASSERT_TRUE(bytes);
    ASSERT_GE(bytes->size(), 10u);
    EXPECT_EQ(bytes->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    std::size_t header_len =
        static_cast<unsigned char>((*bytes)[8]) | static_cast<unsigned char>((*bytes)[9]) << 8;
    std::size_t data_offset = 10 + header_len;
    EXPECT_EQ(data_offset % 64, 0u) << ShapeToString(t.shape);
    EXPECT_EQ((*bytes)[data_offset - 1], '\n');
    EXPECT_EQ(bytes->size() - data_offset, t.data.size());
  }
}

TEST(NpyTest, WritesWhatNumpyWrites) {
  // numpy.save(np.arange(6, dtype='<i4').reshape(2, 3)) is 152 bytes: a 118-byte header.
  Tensor t = Make<std::int32_t>(DataType::kInt32, {2, 3}, {0, 1, 2, 3, 4, 5});
  std::string numpy_bytes = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                            "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }" +
                            std::string(58, ' ') + "\n" + Bytes<std::int32_t>({0, 1, 2, 3, 4, 5});
  ASSERT_EQ(numpy_bytes.size(), 152u);
  EXPECT_EQ(SerializeNpy(t).value(), numpy_bytes);
  EXPECT_EQ(NumpyFile("<i4", "(2, 3)", Bytes<std::int32_t>({0, 1, 2, 3, 4, 5})), numpy_bytes);

  Tensor parsed = ParseOk(numpy_bytes);
  EXPECT_EQ(parsed.dtype, DataType::kInt32);
  EXPECT_EQ(parsed.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(parsed.ValueAsDouble(5), 5.0);
}

TEST(NpyTest, ReadsNumpyLayoutsOfEveryShape) {
  Tensor vec = ParseOk(NumpyFile("<f4", "(3,)", Bytes<float>({1.5f, -2.0f, 3.25f})));
  EXPECT_EQ(vec.dtype, DataType::kFp32);
  EXPECT_EQ(vec.shape, std::vector<std::int64_t>{3});
  EXPECT_EQ(vec.ValueAsDouble(2), 3.25);

  Tensor scalar = ParseOk(NumpyFile("<f8", "()", Bytes<double>({7.0})));
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.ValueAsDouble(0), 7.0);

  Tensor empty = ParseOk(NumpyFile("<f4", "(0, 3)", ""));
  EXPECT_EQ(empty.shape, (std::vector<std::int64_t>{0, 3}));
  EXPECT_TRUE(empty.data.empty());

  Tensor flags = ParseOk(NumpyFile("|b1", "(2,)", std::string("\x01\x00", 2)));
  EXPECT_EQ(flags.dtype, DataType::kBool);
  EXPECT_EQ(flags.ValueAsDouble(0), 1.0);

  // Byte order '=' (native) and '|' (not applicable) are fine on a little-endian machine.
  Tensor native = ParseOk(NumpyFile("=u2", "(1,)", Bytes<std::uint16_t>({513})));
  EXPECT_EQ(native.dtype, DataType::kUint16);
  EXPECT_EQ(native.ValueAsDouble(0), 513.0);

  Tensor half = ParseOk(NumpyFile("<f2", "(1,)", Bytes<std::uint16_t>({0x3C00})));
  EXPECT_EQ(half.dtype, DataType::kFp16);
  EXPECT_EQ(half.ValueAsDouble(0), 1.0);

  // Big-endian markers on one-byte types mean nothing and are accepted.
  Tensor byte = ParseOk(NumpyFile(">u1", "(2,)", "\x05\x06"));
  EXPECT_EQ(byte.dtype, DataType::kUint8);
}

TEST(NpyTest, ReadsVersion2And3Headers) {
  for (int major : {2, 3}) {
    std::string file = NumpyFile("<i8", "(2,)", Bytes<std::int64_t>({-5, 5}), false, major);
    Tensor t = ParseOk(file);
    EXPECT_EQ(t.dtype, DataType::kInt64) << major;
    EXPECT_EQ(t.ValueAsDouble(0), -5.0);
  }
}

TEST(NpyTest, ReadsNumpyStrings) {
  // np.array([b'ab', b'a\x00b', b''], dtype='S3'): NUL padding is dropped, inner NULs kept.
  Tensor s = ParseOk(NumpyFile("|S3", "(3,)", std::string("ab\0a\0b\0\0\0", 9)));
  EXPECT_EQ(s.dtype, DataType::kBytes);
  EXPECT_EQ(s.strings, (std::vector<std::string>{"ab", std::string("a\0b", 3), ""}));

  // np.array(['hé', '🏭'], dtype='<U2'): UTF-32LE in the file, UTF-8 in the tensor.
  std::string utf32 = Bytes<std::uint32_t>({'h', 0xE9, 0x1F3ED, 0});
  Tensor u = ParseOk(NumpyFile("<U2", "(2,)", utf32));
  EXPECT_EQ(u.dtype, DataType::kBytes);
  EXPECT_EQ(u.strings, (std::vector<std::string>{"h\xc3\xa9", "\xf0\x9f\x8f\xad"}));
}

TEST(NpyTest, FortranOrderIsAcceptedOnlyWhereItChangesNothing) {
  auto matrix =
      ParseNpy(NumpyFile("<i2", "(2, 3)", Bytes<std::int16_t>({0, 3, 1, 4, 2, 5}), true), "m");
  ASSERT_FALSE(matrix);
  EXPECT_EQ(matrix.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(matrix.error().message().find("Fortran"), std::string::npos);

  // A 1-D array is the same in either order.
  Tensor vec = ParseOk(NumpyFile("<i2", "(3,)", Bytes<std::int16_t>({1, 2, 3}), true));
  EXPECT_EQ(vec.ValueAsDouble(2), 3.0);
}

TEST(NpyTest, RefusesBadMagic) {
  std::string good = NumpyFile("<f4", "(1,)", Bytes<float>({1}));
  for (std::string bad : {std::string(), std::string("\x93NUMPY"), "PK\x03\x04" + good.substr(4),
                          "\x93numpy" + good.substr(6), good.substr(1)}) {
    Error e = ParseFails(bad);
    EXPECT_EQ(e.code(), ErrorCode::kCorrupt);
    EXPECT_NE(e.message().find("magic"), std::string::npos) << e.message();
  }
}

TEST(NpyTest, RefusesTruncatedOrOverlongData) {
  std::string file = NumpyFile("<f4", "(2, 3)", Bytes<float>({1, 2, 3, 4, 5, 6}));
  Error truncated = ParseFails(std::string_view(file).substr(0, file.size() - 4));
  EXPECT_EQ(truncated.code(), ErrorCode::kCorrupt);
  EXPECT_NE(truncated.message().find("needs 24 bytes of data, file has 20"), std::string::npos)
      << truncated.message();

  Error overlong = ParseFails(file + "junk");
  EXPECT_EQ(overlong.code(), ErrorCode::kCorrupt);
  EXPECT_NE(overlong.message().find("file has 28"), std::string::npos) << overlong.message();

  // Cut inside the header.
  Error header = ParseFails(std::string_view(file).substr(0, 40));
  EXPECT_EQ(header.code(), ErrorCode::kCorrupt);
  EXPECT_NE(header.message().find("header"), std::string::npos);

  // The intact file still parses.
  EXPECT_EQ(ParseOk(file).ValueAsDouble(5), 6.0);
}

TEST(NpyTest, RefusesBigEndianData) {
  Error e = ParseFails(NumpyFile(">f4", "(3,)", std::string("\0\0\0\0?\x80\0\0@\0\0\0", 12)));
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(e.message().find("big-endian"), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("'>f4'"), std::string::npos) << e.message();
}

TEST(NpyTest, RefusesPickledObjectArrays) {
  // numpy.save(np.array([None, 1], dtype=object), allow_pickle=True) writes descr '|O' and then
  // a pickle stream. Nothing of it may be executed or even parsed.
  std::string pickle =
      "\x80\x03"
      "cnumpy.core.multiarray\n_reconstruct\nq\x00";
  Error e = ParseFails(NumpyFile("|O", "(2,)", pickle));
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(e.message().find("pickle"), std::string::npos) << e.message();

  Error sized = ParseFails(NumpyFile("|O8", "(2,)", std::string(16, '\0')));
  EXPECT_EQ(sized.code(), ErrorCode::kUnsupported);
}

TEST(NpyTest, RefusesUnsupportedAndMalformedDtypes) {
  EXPECT_EQ(ParseFails(NumpyFile("<c8", "(1,)", std::string(8, '\0'))).code(),
            ErrorCode::kUnsupported);  // complex
  EXPECT_EQ(ParseFails(NumpyFile("<f16", "(1,)", std::string(16, '\0'))).code(),
            ErrorCode::kUnsupported);  // long double
  EXPECT_EQ(ParseFails(NumpyFile("<M8[ns]", "(1,)", std::string(8, '\0'))).code(),
            ErrorCode::kUnsupported);  // datetime
  EXPECT_EQ(ParseFails(NumpyFile("|S0", "(1,)", "")).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ParseFails(NumpyFile("<U99999999999999999999", "(1,)", "")).code(),
            ErrorCode::kCorrupt);
  EXPECT_EQ(ParseFails(NumpyFile("f", "(1,)", "")).code(), ErrorCode::kCorrupt);
}

TEST(NpyTest, RefusesHeadersWithoutTheRequiredKeys) {
  std::string file = NumpyFile("<f4", "(1,)", Bytes<float>({1}));
  std::string no_shape = file;
  no_shape.replace(no_shape.find("'shape'"), 7, "'shapo'");
  EXPECT_EQ(ParseFails(no_shape).code(), ErrorCode::kCorrupt);
  std::string no_descr = file;
  no_descr.replace(no_descr.find("'descr'"), 7, "'desc' ");
  EXPECT_EQ(ParseFails(no_descr).code(), ErrorCode::kCorrupt);
}

TEST(NpyTest, RefusesUnknownFormatVersions) {
  std::string file = NumpyFile("<f4", "(1,)", Bytes<float>({1}));
  file[6] = '\x04';
  EXPECT_EQ(ParseFails(file).code(), ErrorCode::kUnsupported);
  file[6] = '\x00';
  EXPECT_EQ(ParseFails(file).code(), ErrorCode::kUnsupported);
}

TEST(NpyTest, RefusesShapesTooLargeToExist) {
  // Dimensions past 64 bits, and products that wrap around to match a tiny data section.
  Error digits = ParseFails(NumpyFile("<f4", "(99999999999999999999999,)", ""));
  EXPECT_EQ(digits.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ParseFails(NumpyFile("<f4", "(4294967296, 4294967296)", "")).code(),
            ErrorCode::kCorrupt);
  EXPECT_EQ(ParseFails(NumpyFile("<f4", "(4611686018427387904,)", "")).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ParseFails(NumpyFile("|S2", "(9223372036854775807,)", "")).code(), ErrorCode::kCorrupt);
}

TEST(NpyTest, LoadNpyNamesTheFileInErrors) {
  TempDir dir;
  WriteAll(dir / "good.npy", NumpyFile("<f4", "(2,)", Bytes<float>({1, 2})));
  auto good = LoadNpy(dir / "good.npy", "input");
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_EQ(good->name, "input");
  EXPECT_EQ(good->ValueAsDouble(1), 2.0);

  WriteAll(dir / "bad.npy", "not numpy at all");
  auto bad = LoadNpy(dir / "bad.npy", "input");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().ToString().find("bad.npy"), std::string::npos) << bad.error().ToString();

  auto missing = LoadNpy(dir / "missing.npy", "input");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace airlock::runtime

namespace airlock::runtime {
namespace {

TEST(NpyHostileTest, HugeHeaderIsRefusedWithoutParsingIt) {
  // Format 2.0 allows a 4 GiB header; NumPy itself stops at 10 KB.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  header.append(100000, ' ');
  header.push_back('\n');
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8);
  std::uint32_t len = static_cast<std::uint32_t>(header.size());
  bytes.append(reinterpret_cast<const char*>(&len), 4);
  bytes += header;
  bytes.append(4, '\0');
  auto r = ParseNpy(bytes, "x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("over the limit"), std::string::npos);
}

TEST(NpyHostileTest, NegativeOrGarbageDimensionsAreRefused) {
  for (const char* shape : {"(-1,)", "(1, x)", "(99999999999999999999,)"}) {
    std::string header =
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');
    header.push_back('\n');
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
    bytes.push_back(static_cast<char>(header.size() & 0xff));
    bytes.push_back(static_cast<char>(header.size() >> 8));
    bytes += header;
    EXPECT_FALSE(ParseNpy(bytes, "x")) << shape;
  }
}

// Found by fuzz/fuzz_npy: 'U' elements are UCS-4 code points, and ones past U+10FFFF or in the
// surrogate range were "encoded" into bytes that are not UTF-8 (past U+1FFFFF, garbage bytes).
TEST(NpyHostileTest, UnicodeArraysWithNonCharactersAreRefused) {
  for (std::uint32_t cp : {0x110000u, 0x20202020u, 0xD800u, 0xDFFFu, 0xFFFFFFFFu}) {
    Error e = ParseFails(NumpyFile("<U2", "(1,)", Bytes<std::uint32_t>({0x41, cp})));
    EXPECT_EQ(e.code(), ErrorCode::kCorrupt);
    EXPECT_NE(e.message().find("not a Unicode character"), std::string::npos) << e.message();
  }
  // The largest code point and those around the surrogates still decode.
  Tensor t = ParseOk(NumpyFile("<U3", "(1,)", Bytes<std::uint32_t>({0xD7FF, 0xE000, 0x10FFFF})));
  ASSERT_EQ(t.strings.size(), 1u);
  EXPECT_EQ(t.strings[0], "\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF");
}

// Found by fuzz/fuzz_npy: a descr with bytes after its size ("<U2\0{") was read as "<U2".
TEST(NpyHostileTest, DescrWithTrailingBytesIsRefused) {
  for (const char* descr : {"<f4x", "<U2 ", "|b1,"}) {
    EXPECT_FALSE(ParseNpy(NumpyFile(descr, "(1,)", std::string(4, '\0')), "x")) << descr;
  }
}

}  // namespace
}  // namespace airlock::runtime
