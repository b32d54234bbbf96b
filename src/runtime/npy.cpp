#include "runtime/npy.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>

#include "core/fs.hpp"

namespace airlock::runtime {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

Error Bad(std::string_view what) {
  return Error(ErrorCode::kCorrupt, "not a usable .npy file: " + std::string(what));
}

// NumPy caps headers at 10000 bytes by default; leave room for very long shapes.
constexpr std::size_t kMaxHeader = 64 * 1024;

// The text of a value in the header's Python dict literal: "'<key>': <value>," → "<value>",
// trimmed. Values are quoted strings, True/False, or tuples, none nested.
std::optional<std::string_view> DictValue(std::string_view header, std::string_view key) {
  std::string quoted = "'" + std::string(key) + "'";
  std::size_t at = header.find(quoted);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::size_t pos = header.find(':', at + quoted.size());
  if (pos == std::string_view::npos) {
    return std::nullopt;
  }
  ++pos;
  while (pos < header.size() && header[pos] == ' ') {
    ++pos;
  }
  std::size_t end;
  if (pos < header.size() && header[pos] == '\'') {
    end = header.find('\'', pos + 1);
    end = end == std::string_view::npos ? end : end + 1;
  } else if (pos < header.size() && header[pos] == '(') {
    end = header.find(')', pos);
    end = end == std::string_view::npos ? end : end + 1;
  } else {
    end = header.find_first_of(",}", pos);
  }
  if (end == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view value = header.substr(pos, end - pos);
  while (!value.empty() && value.back() == ' ') {
    value.remove_suffix(1);
  }
  return value;
}

struct Descr {
  DataType dtype;
  std::size_t item_size;  // bytes per element in the file
  char string_kind = 0;   // 'S' or 'U' for BYTES
};

Result<Descr> ParseDescr(const std::string& d) {
  if (d.size() < 2) {  // NumPy writes object arrays as '|O', without a size
    return Fail(Bad("dtype '" + d + "'"));
  }
  char order = d[0];
  char kind = d[1];
  int size = 0;  // 0 when the digits are missing, out of range or followed by anything
  auto parsed = std::from_chars(d.data() + 2, d.data() + d.size(), size);
  if (parsed.ptr != d.data() + d.size()) {
    size = 0;
  }
  if (order == '>' && size > 1) {
    return Fail(ErrorCode::kUnsupported,
                ".npy dtype '" + d + "' is big-endian; save it little-endian (arr.astype('<" +
                    d.substr(1) + "'))");
  }
  if (kind == 'O') {
    return Fail(ErrorCode::kUnsupported,
                ".npy holds Python objects (a pickle), which Airlock never loads; save strings as "
                "a fixed-width 'S' or 'U' array");
  }
  if (kind == 'S' || kind == 'U') {
    if (size <= 0) {
      return Fail(Bad("dtype '" + d + "'"));
    }
    return Descr{DataType::kBytes, static_cast<std::size_t>(size) * (kind == 'U' ? 4 : 1), kind};
  }
  struct Entry {
    char kind;
    int size;
    DataType type;
  };
  static constexpr Entry kTable[] = {
      {'b', 1, DataType::kBool},   {'i', 1, DataType::kInt8},   {'i', 2, DataType::kInt16},
      {'i', 4, DataType::kInt32},  {'i', 8, DataType::kInt64},  {'u', 1, DataType::kUint8},
      {'u', 2, DataType::kUint16}, {'u', 4, DataType::kUint32}, {'u', 8, DataType::kUint64},
      {'f', 2, DataType::kFp16},   {'f', 4, DataType::kFp32},   {'f', 8, DataType::kFp64},
  };
  for (const auto& e : kTable) {
    if (e.kind == kind && e.size == size) {
      return Descr{e.type, static_cast<std::size_t>(size)};
    }
  }
  return Fail(ErrorCode::kUnsupported, ".npy dtype '" + d + "' is not supported");
}

void AppendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

Result<Tensor> ParseNpy(std::string_view bytes, std::string name) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) {
    return Fail(Bad("missing the \\x93NUMPY magic"));
  }
  int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len;
  std::size_t header_start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) {
      return Fail(Bad("truncated header"));
    }
    std::uint32_t len;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    header_start = 12;
  } else {
    return Fail(ErrorCode::kUnsupported, ".npy format version " + std::to_string(major));
  }
  if (bytes.size() < header_start + header_len) {
    return Fail(Bad("truncated header"));
  }
  if (header_len > kMaxHeader) {
    return Fail(Bad("header of " + std::to_string(header_len) + " bytes is over the limit of " +
                    std::to_string(kMaxHeader)));
  }
  std::string_view header = bytes.substr(header_start, header_len);
  auto descr_text = DictValue(header, "descr");
  auto fortran_text = DictValue(header, "fortran_order");
  auto shape_text = DictValue(header, "shape");
  if (!descr_text || !fortran_text || !shape_text || descr_text->size() < 2 ||
      descr_text->front() != '\'' || descr_text->back() != '\'' || shape_text->size() < 2 ||
      shape_text->front() != '(' || shape_text->back() != ')') {
    return Fail(Bad("header lacks descr, fortran_order or shape"));
  }
  std::string descr_string(descr_text->substr(1, descr_text->size() - 2));
  AIRLOCK_ASSIGN_OR_RETURN(Descr descr, ParseDescr(descr_string));
  Tensor t;
  t.name = std::move(name);
  t.dtype = descr.dtype;
  // The header is untrusted: parse without exceptions and multiply with overflow checks.
  std::string_view dims = shape_text->substr(1, shape_text->size() - 2);
  std::int64_t count = 1;
  while (true) {
    while (!dims.empty() && (dims.front() == ' ' || dims.front() == ',')) {
      dims.remove_prefix(1);
    }
    if (dims.empty()) {
      break;
    }
    std::int64_t dim = 0;
    auto parsed = std::from_chars(dims.data(), dims.data() + dims.size(), dim);
    if (parsed.ec != std::errc() || dim < 0 || __builtin_mul_overflow(count, dim, &count)) {
      return Fail(Bad("shape " + std::string(*shape_text) + " is not a tuple of sizes, or too large"));
    }
    dims.remove_prefix(static_cast<std::size_t>(parsed.ptr - dims.data()));
    t.shape.push_back(dim);
  }
  if (*fortran_text == "True" && t.shape.size() > 1) {
    return Fail(ErrorCode::kUnsupported,
                ".npy is in Fortran order; save it with np.ascontiguousarray first");
  }
  std::string_view body = bytes.substr(header_start + header_len);
  std::uint64_t want = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(count), descr.item_size, &want)) {
    return Fail(Bad("shape " + ShapeToString(t.shape) + " is too large"));
  }
  if (body.size() != want) {
    return Fail(Bad("shape " + ShapeToString(t.shape) + " of " + descr_string + " needs " +
                    std::to_string(want) + " bytes of data, file has " +
                    std::to_string(body.size())));
  }
  if (descr.dtype != DataType::kBytes) {
    t.data.assign(body);
    return t;
  }
  for (std::int64_t i = 0; i < count; ++i) {
    std::string_view item = body.substr(i * descr.item_size, descr.item_size);
    // NumPy pads with NULs and strips only trailing ones; NULs inside a string are kept.
    std::string s;
    if (descr.string_kind == 'S') {
      s.assign(item.substr(0, item.find_last_not_of('\0') + 1));  // npos + 1 == 0
    } else {
      std::size_t used = item.size() / 4;
      while (used > 0 && item.substr((used - 1) * 4, 4) == std::string_view("\0\0\0\0", 4)) {
        --used;
      }
      for (std::size_t k = 0; k < used * 4; k += 4) {
        std::uint32_t cp;
        std::memcpy(&cp, item.data() + k, 4);
        // UTF-8 has no encoding for these: AppendUtf8 would write bytes that are not UTF-8.
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
          char hex[16];
          std::snprintf(hex, sizeof(hex), "U+%04X", static_cast<unsigned>(cp));
          return Fail(Bad("element " + std::to_string(i) + " of a '" + descr_string +
                          "' array holds " + hex + ", which is not a Unicode character"));
        }
        AppendUtf8(s, cp);
      }
    }
    t.strings.push_back(std::move(s));
  }
  return t;
}

Result<Tensor> LoadNpy(const std::filesystem::path& path, std::string name) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path, 4ULL << 30));
  return WithContext(ParseNpy(bytes, std::move(name)), path.string());
}

Result<std::string> SerializeNpy(const Tensor& t) {
  AIRLOCK_RETURN_IF_ERROR(t.CheckConsistent());
  std::string descr;
  std::size_t width = 0;
  switch (t.dtype) {
    case DataType::kBool:
      descr = "|b1";
      break;
    case DataType::kUint8:
      descr = "|u1";
      break;
    case DataType::kUint16:
      descr = "<u2";
      break;
    case DataType::kUint32:
      descr = "<u4";
      break;
    case DataType::kUint64:
      descr = "<u8";
      break;
    case DataType::kInt8:
      descr = "|i1";
      break;
    case DataType::kInt16:
      descr = "<i2";
      break;
    case DataType::kInt32:
      descr = "<i4";
      break;
    case DataType::kInt64:
      descr = "<i8";
      break;
    case DataType::kFp16:
      descr = "<f2";
      break;
    case DataType::kFp32:
      descr = "<f4";
      break;
    case DataType::kFp64:
      descr = "<f8";
      break;
    case DataType::kBf16:
      return Fail(ErrorCode::kUnsupported, "NumPy has no BF16 type; tensor " + t.name);
    case DataType::kBytes:
      for (const auto& s : t.strings) {
        width = std::max(width, s.size());
      }
      width = std::max<std::size_t>(width, 1);
      descr = "|S" + std::to_string(width);
      break;
  }
  std::string shape = "(";
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    shape += std::to_string(t.shape[i]) + (t.shape.size() == 1      ? ","
                                           : i + 1 < t.shape.size() ? ", "
                                                                    : "");
  }
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so that the data starts at a multiple of 64 bytes, then a newline.
  std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  if (t.dtype == DataType::kBytes) {
    for (const auto& s : t.strings) {
      out += s;
      out.append(width - s.size(), '\0');
    }
  } else {
    out += t.data;
  }
  return out;
}

}  // namespace airlock::runtime
