// Running the pre-processing steps: the request's bytes -> the model's input tensor.
//
// Between steps the data is an Array: a shape and FP32 values, or the 8-bit pixels of a decoded
// picture until the first step that needs arithmetic (crops keep pixels as they are, so a large
// picture is not widened to FP32 before it is cut down). FP32 arithmetic in the order the steps
// give reproduces NumPy float32 pre-processing bit for bit.

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "pipeline/steps.hpp"
#include "runtime/npy.hpp"

namespace airlock::pipeline {
namespace {

using runtime::DataType;
using runtime::Tensor;

enum class Kind { kJpeg, kPng, kNpy, kJson, kRawFp32 };

Result<Kind> ClassifyInput(const Input& in) {
  std::string ct;
  for (char c : in.content_type) {
    if (c == ';') {
      break;
    }
    if (c != ' ' && c != '\t') {
      ct += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  const std::string_view b = in.bytes;
  auto image = SniffImage(b);
  if (ct == "image/jpeg" || ct == "image/jpg" || ct == "image/png") {
    bool want_png = ct == "image/png";
    if (!image || (*image == ImageFormat::kPng) != want_png) {
      return Fail(ErrorCode::kInvalidArgument,
                  "content type " + ct + " but the bytes are not a " + (want_png ? "PNG" : "JPEG"));
    }
    return want_png ? Kind::kPng : Kind::kJpeg;
  }
  if (ct == "application/x-npy" || ct == "application/npy") {
    return Kind::kNpy;
  }
  if (ct == "application/json") {
    return Kind::kJson;
  }
  if (ct == "application/octet-stream") {
    return Kind::kRawFp32;
  }
  if (!ct.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "unsupported content type \"" + ct +
                    "\" (image/jpeg, image/png, application/x-npy, application/json, "
                    "application/octet-stream)");
  }
  if (image) {
    return *image == ImageFormat::kPng ? Kind::kPng : Kind::kJpeg;
  }
  if (b.size() >= 6 && b.substr(0, 6) == "\x93NUMPY") {
    return Kind::kNpy;
  }
  std::size_t first = b.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && b[first] == '[') {
    return Kind::kJson;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "cannot tell what the input is (not JPEG, PNG, npy or a JSON array); "
              "give a content type");
}

struct Array {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  std::vector<std::uint8_t> pixels;  // instead of values while is_u8
  bool is_u8 = false;
  bool chw = false;  // an image in channels-first layout

  std::size_t size() const { return is_u8 ? pixels.size() : values.size(); }
  void Widen() {
    if (is_u8) {
      values.assign(pixels.begin(), pixels.end());
      pixels.clear();
      pixels.shrink_to_fit();
      is_u8 = false;
    }
  }
};

Status CheckCount(std::uint64_t n, const Limits& limits, const std::string& what) {
  if (n > limits.max_elements) {
    return Fail(ErrorCode::kInvalidArgument, what + " has " + std::to_string(n) +
                                                 " values, more than the limit of " +
                                                 std::to_string(limits.max_elements));
  }
  return {};
}

// ---- numbers: npy, JSON, raw FP32 ----

Result<Array> FromNpy(const Input& in, const Limits& limits) {
  AIRLOCK_ASSIGN_OR_RETURN(Tensor t, runtime::ParseNpy(in.bytes, "input"));
  if (t.dtype == DataType::kBytes) {
    return Fail(ErrorCode::kUnsupported, "the npy input holds strings, not numbers");
  }
  std::int64_t n = t.ElementCount();
  AIRLOCK_RETURN_IF_ERROR(CheckCount(static_cast<std::uint64_t>(n), limits, "the npy input"));
  Array a;
  a.shape = t.shape;
  a.values.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    a.values[static_cast<std::size_t>(i)] = static_cast<float>(t.ValueAsDouble(i));
  }
  return a;
}

// A JSON array of numbers, nested to any rectangular shape, read with nlohmann's SAX interface
// so that no DOM is built and the limits hold while reading.
class NumberArrayReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  static constexpr std::size_t kMaxDepth = 8;
  explicit NumberArrayReader(std::uint64_t max_elements) : max_elements_(max_elements) {}

  bool null() override { return Bad("null is not a number"); }
  bool boolean(bool) override { return Bad("true/false is not a number"); }
  bool number_integer(number_integer_t v) override { return Number(static_cast<double>(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Number(static_cast<double>(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Number(v); }
  bool string(string_t&) override { return Bad("a string is not a number"); }
  bool binary(binary_t&) override { return Bad("binary data is not a number"); }
  bool start_object(std::size_t) override { return Bad("an object is not a number"); }
  bool key(string_t&) override { return Bad("an object is not a number"); }
  bool end_object() override { return Bad("an object is not a number"); }

  bool start_array(std::size_t) override {
    if (depth_ > 0) {
      if (leaf_depth_ == depth_) {
        return Bad("numbers and arrays side by side (the array is not rectangular)");
      }
      ++counts_[depth_ - 1];
    }
    if (depth_ == kMaxDepth) {
      return Bad("arrays nested deeper than " + std::to_string(kMaxDepth));
    }
    counts_[depth_] = 0;
    ++depth_;
    max_depth_ = std::max(max_depth_, depth_);
    return true;
  }
  bool end_array() override {
    std::size_t level = depth_ - 1;
    if (shape_.size() <= level) {
      shape_.resize(level + 1, -1);
    }
    if (shape_[level] == -1) {
      shape_[level] = counts_[level];
    } else if (shape_[level] != counts_[level]) {
      return Bad("the array is not rectangular (rows of " + std::to_string(shape_[level]) +
                 " and " + std::to_string(counts_[level]) + " values)");
    }
    --depth_;
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (message_.empty()) {
      message_ = "malformed JSON near byte " + std::to_string(pos) + ": " + e.what();
    }
    return false;
  }

  const std::string& message() const { return message_; }
  std::vector<std::int64_t>& shape() { return shape_; }
  std::vector<float>& values() { return values_; }

 private:
  bool Bad(const std::string& what) {
    if (message_.empty()) {
      message_ = "the JSON input must be an array of numbers: " + what;
    }
    return false;
  }
  bool Number(double v) {
    if (depth_ == 0) {
      return Bad("got a single number");
    }
    if (max_depth_ > depth_ || (leaf_depth_ != 0 && leaf_depth_ != depth_)) {
      return Bad("numbers at different depths (the array is not rectangular)");
    }
    leaf_depth_ = depth_;
    if (values_.size() >= max_elements_) {
      return Bad("more than the limit of " + std::to_string(max_elements_) + " values");
    }
    auto f = static_cast<float>(v);
    if (std::isfinite(v) && !std::isfinite(f)) {
      return Bad(std::to_string(v) + " does not fit in FP32");
    }
    values_.push_back(f);
    ++counts_[depth_ - 1];
    return true;
  }

  std::uint64_t max_elements_;
  std::size_t depth_ = 0;       // arrays open now
  std::size_t max_depth_ = 0;   // deepest seen
  std::size_t leaf_depth_ = 0;  // the depth numbers are at, 0 before the first
  std::int64_t counts_[kMaxDepth] = {};
  std::vector<std::int64_t> shape_;  // by depth, outermost first
  std::vector<float> values_;
  std::string message_;
};

Result<Array> FromJson(const Input& in, const Limits& limits) {
  NumberArrayReader reader(limits.max_elements);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(in.bytes, &reader);
  } catch (const std::exception& e) {  // sax_parse reports through parse_error; be safe anyway
    return Fail(ErrorCode::kInvalidArgument, std::string("malformed JSON: ") + e.what());
  }
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument,
                reader.message().empty() ? "malformed JSON input" : reader.message());
  }
  Array a;
  a.shape = std::move(reader.shape());
  a.values = std::move(reader.values());
  std::uint64_t expected = 1;
  for (std::int64_t d : a.shape) {
    expected *= static_cast<std::uint64_t>(d);
  }
  if (a.shape.empty() || expected != a.values.size()) {
    return Fail(ErrorCode::kInvalidArgument, "the JSON input is not a rectangular array");
  }
  return a;
}

Result<Array> FromRawFp32(const Input& in, const Limits& limits) {
  if (in.bytes.size() % 4 != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "raw FP32 input of " + std::to_string(in.bytes.size()) +
                    " bytes is not a whole number of 4-byte values");
  }
  std::size_t n = in.bytes.size() / 4;
  AIRLOCK_RETURN_IF_ERROR(CheckCount(n, limits, "the raw FP32 input"));
  Array a;
  a.shape = {static_cast<std::int64_t>(n)};
  a.values.resize(n);
  const auto* p = reinterpret_cast<const unsigned char*>(in.bytes.data());
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits = static_cast<std::uint32_t>(p[4 * i]) |
                         static_cast<std::uint32_t>(p[4 * i + 1]) << 8 |
                         static_cast<std::uint32_t>(p[4 * i + 2]) << 16 |
                         static_cast<std::uint32_t>(p[4 * i + 3]) << 24;
    a.values[i] = std::bit_cast<float>(bits);
  }
  return a;
}

Result<Array> ReadNumbers(Kind kind, const Input& in, const Limits& limits) {
  switch (kind) {
    case Kind::kNpy:
      return FromNpy(in, limits);
    case Kind::kJson:
      return FromJson(in, limits);
    case Kind::kRawFp32:
      return FromRawFp32(in, limits);
    case Kind::kJpeg:
    case Kind::kPng:
      break;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "this pipeline takes numbers (npy, a JSON array or raw FP32), not an image");
}

// ---- image steps ----

struct ImageDims {
  std::int64_t h, w, c;
};

ImageDims Dims(const Array& a) {
  return a.chw ? ImageDims{a.shape[1], a.shape[2], a.shape[0]}
               : ImageDims{a.shape[0], a.shape[1], a.shape[2]};
}

std::vector<std::int64_t> ImageShape(const Array& a, std::int64_t h, std::int64_t w,
                                     std::int64_t c) {
  return a.chw ? std::vector<std::int64_t>{c, h, w} : std::vector<std::int64_t>{h, w, c};
}

// Index of (y, x, channel) in an image of dims d.
std::size_t At(bool chw, const ImageDims& d, std::int64_t y, std::int64_t x, std::int64_t ch) {
  return static_cast<std::size_t>(chw ? (ch * d.h + y) * d.w + x : (y * d.w + x) * d.c + ch);
}

template <typename T>
std::vector<T> CropPixels(const std::vector<T>& src, bool chw, const ImageDims& d,
                          std::int64_t x0, std::int64_t y0, std::int64_t w, std::int64_t h) {
  std::vector<T> out(static_cast<std::size_t>(w * h * d.c));
  ImageDims od{h, w, d.c};
  for (std::int64_t y = 0; y < h; ++y) {
    for (std::int64_t x = 0; x < w; ++x) {
      for (std::int64_t ch = 0; ch < d.c; ++ch) {
        out[At(chw, od, y, x, ch)] = src[At(chw, d, y0 + y, x0 + x, ch)];
      }
    }
  }
  return out;
}

Status CropTo(Array& a, std::int64_t x0, std::int64_t y0, std::int64_t w, std::int64_t h) {
  ImageDims d = Dims(a);
  if (x0 + w > d.w || y0 + h > d.h) {
    return Fail(ErrorCode::kInvalidArgument,
                "cannot crop " + std::to_string(w) + "x" + std::to_string(h) + " at (" +
                    std::to_string(x0) + ", " + std::to_string(y0) + ") from a " +
                    std::to_string(d.w) + "x" + std::to_string(d.h) + " image");
  }
  if (a.is_u8) {
    a.pixels = CropPixels(a.pixels, a.chw, d, x0, y0, w, h);
  } else {
    a.values = CropPixels(a.values, a.chw, d, x0, y0, w, h);
  }
  a.shape = ImageShape(a, h, w, d.c);
  return {};
}

// torchvision's CenterCrop offset: int(round((size - crop) / 2.0)), Python rounding half to even.
std::int64_t CenterOffset(std::int64_t size, std::int64_t crop) {
  std::int64_t twice = size - crop;  // offset = twice / 2, rounded half to even
  std::int64_t half = twice / 2;
  if (twice % 2 != 0 && half % 2 != 0) {
    ++half;
  }
  return half;
}

// Bilinear interpolation with half-pixel centres and edge clamping, without antialiasing: the
// same as OpenCV's INTER_LINEAR and torch.nn.functional.interpolate(mode="bilinear",
// align_corners=False).
struct Taps {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> w1;  // weight of i1
};

Taps LinearTaps(std::int64_t in, std::int64_t out) {
  Taps t;
  double ratio = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t o = 0; o < out; ++o) {
    double src = std::max(0.0, (static_cast<double>(o) + 0.5) * ratio - 0.5);
    auto i0 = std::min(static_cast<std::int64_t>(src), in - 1);
    std::int64_t i1 = std::min(i0 + 1, in - 1);
    t.i0.push_back(i0);
    t.i1.push_back(i1);
    t.w1.push_back(static_cast<float>(src - static_cast<double>(i0)));
  }
  return t;
}

template <typename T>
std::vector<float> ResizePixels(const std::vector<T>& src, bool chw, const ImageDims& d,
                                std::int64_t w, std::int64_t h) {
  Taps tx = LinearTaps(d.w, w), ty = LinearTaps(d.h, h);
  ImageDims od{h, w, d.c};
  std::vector<float> out(static_cast<std::size_t>(w * h * d.c));
  for (std::int64_t y = 0; y < h; ++y) {
    auto yi = static_cast<std::size_t>(y);
    float wy = ty.w1[yi];
    for (std::int64_t x = 0; x < w; ++x) {
      auto xi = static_cast<std::size_t>(x);
      float wx = tx.w1[xi];
      for (std::int64_t ch = 0; ch < d.c; ++ch) {
        float p00 = static_cast<float>(src[At(chw, d, ty.i0[yi], tx.i0[xi], ch)]);
        float p01 = static_cast<float>(src[At(chw, d, ty.i0[yi], tx.i1[xi], ch)]);
        float p10 = static_cast<float>(src[At(chw, d, ty.i1[yi], tx.i0[xi], ch)]);
        float p11 = static_cast<float>(src[At(chw, d, ty.i1[yi], tx.i1[xi], ch)]);
        float top = p00 + (p01 - p00) * wx;
        float bottom = p10 + (p11 - p10) * wx;
        out[At(chw, od, y, x, ch)] = top + (bottom - top) * wy;
      }
    }
  }
  return out;
}

void ResizeTo(Array& a, std::int64_t w, std::int64_t h) {
  ImageDims d = Dims(a);
  if (d.w == w && d.h == h) {  // identity: keep the values exactly
    return;
  }
  a.values = a.is_u8 ? ResizePixels(a.pixels, a.chw, d, w, h)
                     : ResizePixels(a.values, a.chw, d, w, h);
  a.pixels.clear();
  a.is_u8 = false;
  a.shape = ImageShape(a, h, w, d.c);
}

void ToLayout(Array& a, bool to_chw) {
  ImageDims d = Dims(a);
  a.Widen();
  std::vector<float> out(a.values.size());
  for (std::int64_t y = 0; y < d.h; ++y) {
    for (std::int64_t x = 0; x < d.w; ++x) {
      for (std::int64_t ch = 0; ch < d.c; ++ch) {
        out[At(to_chw, d, y, x, ch)] = a.values[At(a.chw, d, y, x, ch)];
      }
    }
  }
  a.values = std::move(out);
  a.chw = to_chw;
  a.shape = ImageShape(a, d.h, d.w, d.c);
}

// ---- the other steps ----

Status ApplyNormalize(Array& a, const steps::Normalize& n, bool image) {
  a.Widen();
  std::size_t channels = 1;
  std::size_t inner = 1;  // values per channel run
  if (image) {
    ImageDims d = Dims(a);
    channels = static_cast<std::size_t>(d.c);
    inner = a.chw ? static_cast<std::size_t>(d.h * d.w) : 1;
  } else if (!a.shape.empty()) {
    channels = static_cast<std::size_t>(a.shape.back());
  }
  if (n.mean.size() != 1 && n.mean.size() != channels) {
    return Fail(ErrorCode::kInvalidArgument,
                "normalize has " + std::to_string(n.mean.size()) + " means for " +
                    std::to_string(channels) + (image ? " channels" : " values per row"));
  }
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    std::size_t ch = n.mean.size() == 1 ? 0 : (i / inner) % channels;
    a.values[i] = (a.values[i] - n.mean[ch]) / n.std[ch];
  }
  return {};
}

Status ApplyWindow(Array& a, const steps::Window& w, const Limits& limits) {
  std::int64_t n = static_cast<std::int64_t>(a.values.size());
  for (std::size_t i = 0; i + 1 < a.shape.size(); ++i) {
    if (a.shape[i] != 1) {
      return Fail(ErrorCode::kInvalidArgument, "window needs a one-dimensional signal, not " +
                                                   runtime::ShapeToString(a.shape));
    }
  }
  if (n < w.size) {
    return Fail(ErrorCode::kInvalidArgument, "a signal of " + std::to_string(n) +
                                                 " samples is shorter than one window of " +
                                                 std::to_string(w.size));
  }
  std::int64_t count = 1 + (n - w.size) / w.hop;  // samples after the last whole window drop
  AIRLOCK_RETURN_IF_ERROR(CheckCount(static_cast<std::uint64_t>(count) *
                                         static_cast<std::uint64_t>(w.size),
                                     limits, "the windows"));
  std::vector<float> out(static_cast<std::size_t>(count * w.size));
  for (std::int64_t k = 0; k < count; ++k) {
    std::copy_n(a.values.begin() + k * w.hop, w.size, out.begin() + k * w.size);
  }
  a.values = std::move(out);
  a.shape = {count, w.size};
  return {};
}

// ---- the model's datatype ----

std::uint16_t FloatToHalf(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t exp = (x >> 23) & 0xffu;
  std::uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) {  // infinity or NaN (kept a quiet NaN)
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mant != 0 ? 0x200u : 0u));
  }
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 31) {
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (e <= 0) {  // subnormal half, or zero
    if (e < -10) {
      return static_cast<std::uint16_t>(sign);
    }
    mant |= 0x800000u;
    auto shift = static_cast<std::uint32_t>(14 - e);
    std::uint32_t half = mant >> shift;
    std::uint32_t rem = mant & ((1u << shift) - 1);
    std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u) != 0)) {
      ++half;
    }
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = sign | static_cast<std::uint32_t>(e) << 10 | mant >> 13;
  std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u) != 0)) {
    ++half;  // a carry into the exponent is right, up to infinity
  }
  return static_cast<std::uint16_t>(half);
}

std::uint16_t FloatToBf16(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) {
    return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  }
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

// Integers: rounded to nearest (ties to even), saturated to the type's range, NaN -> 0.
template <typename T>
T ToInteger(float f) {
  if (std::isnan(f)) {
    return 0;
  }
  double r = std::nearbyint(static_cast<double>(f));
  constexpr auto lo = static_cast<double>(std::numeric_limits<T>::lowest());
  constexpr auto hi = static_cast<double>(std::numeric_limits<T>::max());
  if (r <= lo) {
    return std::numeric_limits<T>::lowest();
  }
  if (r >= hi) {
    return std::numeric_limits<T>::max();
  }
  return static_cast<T>(r);
}

template <typename T, typename F>
void Store(const std::vector<float>& v, std::string& data, F convert) {
  data.resize(v.size() * sizeof(T));
  for (std::size_t i = 0; i < v.size(); ++i) {
    T x = convert(v[i]);
    std::memcpy(data.data() + i * sizeof(T), &x, sizeof(T));
  }
}

Result<Tensor> ToTensor(Array a, const runtime::TensorSpec& spec) {
  a.Widen();
  Tensor t;
  t.name = spec.name;
  t.dtype = spec.dtype;
  t.shape = std::move(a.shape);
  if (!spec.shape.empty() && t.shape.size() + 1 == spec.shape.size()) {
    t.shape.insert(t.shape.begin(), 1);  // the batch dimension
  }
  const auto& v = a.values;
  switch (spec.dtype) {
    case DataType::kFp32:
      Store<float>(v, t.data, [](float f) { return f; });
      break;
    case DataType::kFp64:
      Store<double>(v, t.data, [](float f) { return static_cast<double>(f); });
      break;
    case DataType::kFp16:
      Store<std::uint16_t>(v, t.data, FloatToHalf);
      break;
    case DataType::kBf16:
      Store<std::uint16_t>(v, t.data, FloatToBf16);
      break;
    case DataType::kBool:
      Store<std::uint8_t>(v, t.data, [](float f) { return static_cast<std::uint8_t>(f != 0); });
      break;
    case DataType::kUint8:
      Store<std::uint8_t>(v, t.data, ToInteger<std::uint8_t>);
      break;
    case DataType::kUint16:
      Store<std::uint16_t>(v, t.data, ToInteger<std::uint16_t>);
      break;
    case DataType::kUint32:
      Store<std::uint32_t>(v, t.data, ToInteger<std::uint32_t>);
      break;
    case DataType::kUint64:
      Store<std::uint64_t>(v, t.data, ToInteger<std::uint64_t>);
      break;
    case DataType::kInt8:
      Store<std::int8_t>(v, t.data, ToInteger<std::int8_t>);
      break;
    case DataType::kInt16:
      Store<std::int16_t>(v, t.data, ToInteger<std::int16_t>);
      break;
    case DataType::kInt32:
      Store<std::int32_t>(v, t.data, ToInteger<std::int32_t>);
      break;
    case DataType::kInt64:
      Store<std::int64_t>(v, t.data, ToInteger<std::int64_t>);
      break;
    case DataType::kBytes:
      return Fail(ErrorCode::kUnsupported,
                  "the model's input \"" + spec.name + "\" takes strings (BYTES)");
  }
  auto fits = runtime::CheckAgainstSpec(t, spec);
  if (!fits) {
    return Fail(ErrorCode::kInvalidArgument, "the pre-processed input " +
                                                 runtime::ShapeToString(t.shape) +
                                                 " does not fit the model: " +
                                                 fits.error().message());
  }
  return t;
}

}  // namespace

Result<Tensor> RunPreprocess(const Pipeline::Impl& p, const Input& in) {
  if (p.sig.inputs.size() != 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "a raw input can only feed a model with one input; this one has " +
                    std::to_string(p.sig.inputs.size()));
  }
  const runtime::TensorSpec& spec = p.sig.inputs[0];
  AIRLOCK_ASSIGN_OR_RETURN(Kind kind, ClassifyInput(in));
  bool image = !p.pre.empty() && std::holds_alternative<steps::DecodeImage>(p.pre[0]);

  // Without steps, an npy of the model's datatype passes through bit for bit.
  if (p.pre.empty() && kind == Kind::kNpy) {
    AIRLOCK_ASSIGN_OR_RETURN(Tensor t, runtime::ParseNpy(in.bytes, spec.name));
    if (t.dtype == spec.dtype) {
      if (!spec.shape.empty() && t.shape.size() + 1 == spec.shape.size()) {
        t.shape.insert(t.shape.begin(), 1);
      }
      auto fits = runtime::CheckAgainstSpec(t, spec);
      if (!fits) {
        return Fail(ErrorCode::kInvalidArgument,
                    "the input does not fit the model: " + fits.error().message());
      }
      return t;
    }
  }

  Array a;
  if (image) {
    if (kind != Kind::kJpeg && kind != Kind::kPng) {
      return Fail(ErrorCode::kInvalidArgument,
                  "this pipeline takes a JPEG or PNG image, not numbers");
    }
    const auto& decode = std::get<steps::DecodeImage>(p.pre[0]);
    AIRLOCK_ASSIGN_OR_RETURN(Image img, DecodeImage(in.bytes, decode.channels, p.limits.max_pixels));
    a.shape = {img.height, img.width, img.channels};
    a.pixels = std::move(img.pixels);
    a.is_u8 = true;
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(a, ReadNumbers(kind, in, p.limits));
  }

  for (std::size_t i = image ? 1 : 0; i < p.pre.size(); ++i) {
    const steps::Pre& step = p.pre[i];
    Status st;
    if (const auto* s = std::get_if<steps::Resize>(&step)) {
      ResizeTo(a, s->width, s->height);
    } else if (const auto* c = std::get_if<steps::CenterCrop>(&step)) {
      ImageDims d = Dims(a);
      if (c->width > d.w || c->height > d.h) {
        st = Fail(ErrorCode::kInvalidArgument,
                  "cannot center-crop " + std::to_string(c->width) + "x" +
                      std::to_string(c->height) + " from a " + std::to_string(d.w) + "x" +
                      std::to_string(d.h) + " image");
      } else {
        st = CropTo(a, CenterOffset(d.w, c->width), CenterOffset(d.h, c->height), c->width,
                    c->height);
      }
    } else if (const auto* b = std::get_if<steps::Crop>(&step)) {
      st = CropTo(a, b->x, b->y, b->width, b->height);
    } else if (const auto* sc = std::get_if<steps::Scale>(&step)) {
      a.Widen();
      for (float& v : a.values) {
        v *= sc->factor;
      }
    } else if (const auto* n = std::get_if<steps::Normalize>(&step)) {
      st = ApplyNormalize(a, *n, image);
    } else if (const auto* l = std::get_if<steps::Layout>(&step)) {
      ToLayout(a, l->to_chw);
    } else if (const auto* w = std::get_if<steps::Window>(&step)) {
      st = ApplyWindow(a, *w, p.limits);
    }  // Cast: the conversion below uses the model's datatype, which Parse checked it names.
    if (!st) {
      return Fail(std::move(st.error())
                      .WithContext("in preprocess step " + std::to_string(i) + " (" +
                                   p.pre_ops[i] + ")"));
    }
  }
  return ToTensor(std::move(a), spec);
}

}  // namespace airlock::pipeline
