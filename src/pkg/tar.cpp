#include "pkg/tar.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

namespace airlock::pkg {
namespace {

constexpr std::size_t kBlock = 512;

Error Corrupt(std::string msg) { return Error(ErrorCode::kCorrupt, std::move(msg)); }

// Reads count bytes at offset through the callback; false if the archive ends first.
using ReadAt = std::function<Result<bool>(std::uint64_t offset, char* out, std::size_t count)>;

Result<std::uint64_t> ParseOctal(const char* field, std::size_t len, std::string_view what) {
  // Base-256 (GNU) for huge values: high bit of the first byte set.
  if (static_cast<unsigned char>(field[0]) & 0x80) {
    // 0x80 marks a positive value, 0xff a negative one (refused); no size of ours needs more
    // than 63 bits, so anything larger is refused rather than wrapped.
    if (static_cast<unsigned char>(field[0]) != 0x80) {
      return Fail(Corrupt("negative " + std::string(what) + " in a tar header"));
    }
    std::uint64_t v = 0;
    for (std::size_t i = 1; i < len; ++i) {
      if (v >> 55) {
        return Fail(Corrupt(std::string(what) + " too large in a tar header"));
      }
      v = v << 8 | static_cast<unsigned char>(field[i]);
    }
    return v;
  }
  std::uint64_t v = 0;
  std::size_t i = 0;
  while (i < len && (field[i] == ' ' || field[i] == '\0')) {
    ++i;
  }
  for (; i < len && field[i] >= '0' && field[i] <= '7'; ++i) {
    v = v * 8 + static_cast<std::uint64_t>(field[i] - '0');
  }
  for (; i < len; ++i) {
    if (field[i] != ' ' && field[i] != '\0') {
      return Fail(Corrupt("bad " + std::string(what) + " field in a tar header"));
    }
  }
  return v;
}

std::string FieldString(const char* field, std::size_t len) {
  return std::string(field, strnlen(field, len));
}

// Parses pax records "LEN key=value\n" and returns the path, if any.
Result<std::string> PaxPath(std::string_view records) {
  std::string path;
  while (!records.empty()) {
    std::size_t space = records.find(' ');
    if (space == std::string_view::npos) {
      return Fail(Corrupt("malformed pax header"));
    }
    std::size_t len = std::strtoull(std::string(records.substr(0, space)).c_str(), nullptr, 10);
    if (len <= space + 1 || len > records.size()) {
      return Fail(Corrupt("malformed pax header record"));
    }
    std::string_view rec = records.substr(space + 1, len - space - 2);
    std::size_t eq = rec.find('=');
    if (eq != std::string_view::npos && rec.substr(0, eq) == "path") {
      path = std::string(rec.substr(eq + 1));
    }
    if (eq != std::string_view::npos && (rec.substr(0, eq) == "linkpath")) {
      return Fail(Corrupt("pax header names a link target"));
    }
    if (eq != std::string_view::npos && (rec.substr(0, eq) == "size")) {
      // Other readers would split the archive by this size and Airlock by the ustar one; refuse
      // rather than disagree about where entries are.
      return Fail(Corrupt("pax header sets a size, which packages may not do"));
    }
    records.remove_prefix(len);
  }
  return path;
}

Result<std::map<std::string, TarEntryRange>> Index(const ReadAt& read, std::uint64_t total) {
  std::map<std::string, TarEntryRange> entries;
  std::uint64_t pos = 0;
  std::string long_name;
  char h[kBlock];
  while (true) {
    AIRLOCK_ASSIGN_OR_RETURN(bool got, read(pos, h, kBlock));
    if (!got) {
      return Fail(Corrupt("archive is truncated: it ends at byte " + std::to_string(total) +
                          " without the end-of-archive marker"));
    }
    bool zero = std::all_of(h, h + kBlock, [](char c) { return c == 0; });
    if (zero) {
      return entries;  // end of archive (a second zero block may follow; nothing after matters)
    }
    // Checksum: the header's bytes summed with the checksum field as spaces.
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < kBlock; ++i) {
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t stored, ParseOctal(h + 148, 8, "checksum"));
    if (stored != sum) {
      return Fail(Corrupt("tar header at byte " + std::to_string(pos) +
                          " has a bad checksum (the archive is damaged)"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t size, ParseOctal(h + 124, 12, "size"));
    char type = h[156];
    std::string name = FieldString(h, 100);
    if (std::memcmp(h + 257, "ustar", 5) == 0) {
      std::string prefix = FieldString(h + 345, 155);
      if (!prefix.empty()) {
        name = prefix + "/" + name;
      }
    }
    std::uint64_t data_at = pos + kBlock;
    // Written without additions that could wrap: size is untrusted.
    if (data_at > total || size > total - data_at) {
      return Fail(Corrupt("archive is truncated inside entry \"" + name + "\" (needs " +
                          std::to_string(size) + " bytes, " +
                          std::to_string(total > data_at ? total - data_at : 0) + " left)"));
    }
    std::uint64_t next = data_at + (size + kBlock - 1) / kBlock * kBlock;  // > pos: no loops
    if (type == 'x' || type == 'L') {
      if (size > (1 << 20)) {
        return Fail(Corrupt("oversized extended header for \"" + name + "\""));
      }
      std::string data(size, '\0');
      AIRLOCK_ASSIGN_OR_RETURN(bool ok, read(data_at, data.data(), size));
      if (!ok) {
        return Fail(Corrupt("archive is truncated in an extended header"));
      }
      if (type == 'L') {
        long_name = data.substr(0, strnlen(data.c_str(), data.size()));
      } else {
        AIRLOCK_ASSIGN_OR_RETURN(long_name, PaxPath(data));
      }
      pos = next;
      continue;
    }
    if (type == 'g') {
      pos = next;
      continue;
    }
    if (!long_name.empty()) {
      name = long_name;
      long_name.clear();
    }
    if (type == '1' || type == '2') {
      return Fail(Corrupt("archive entry \"" + name + "\" is a " +
                          (type == '1' ? "hard" : "symbolic") +
                          " link; packages may hold only regular files"));
    }
    if (type != '0' && type != '\0' && type != '5' && type != '7') {
      return Fail(Corrupt("archive entry \"" + name + "\" has type '" + std::string(1, type) +
                          "'; packages may hold only regular files and directories"));
    }
    if (type == '5' && (name == "./" || name == ".")) {
      pos = next;  // the archive's own top directory, as `tar -C DIR -cf OUT .` writes it
      continue;
    }
    auto checked = CheckRelativePath(name);
    if (!checked) {
      return Fail(Corrupt("archive entry \"" + name + "\": " + checked.error().message()));
    }
    if (type != '5') {
      if (!entries.emplace(*checked, TarEntryRange{data_at, size}).second) {
        return Fail(Corrupt("archive holds \"" + *checked + "\" twice"));
      }
    }
    pos = next;
  }
}

}  // namespace

Result<std::string> CheckRelativePath(std::string_view path) {
  std::string p(path);
  while (p.starts_with("./")) {
    p.erase(0, 2);
  }
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  if (p.empty() || p == ".") {
    return Fail(ErrorCode::kInvalidArgument, "empty path");
  }
  if (p[0] == '/') {
    return Fail(ErrorCode::kInvalidArgument, "absolute path \"" + p + "\" is not allowed");
  }
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t end = p.find('/', start);
    if (end == std::string::npos) {
      end = p.size();
    }
    std::string_view part(p.data() + start, end - start);
    if (part == "..") {
      return Fail(ErrorCode::kInvalidArgument, "path \"" + p + "\" climbs out with \"..\"");
    }
    if (part.empty() || part == ".") {
      return Fail(ErrorCode::kInvalidArgument, "path \"" + p + "\" has an empty or \".\" part");
    }
    if (part.find('\0') != std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument, "path contains a NUL byte");
    }
    start = end + 1;
  }
  return p;
}

Result<std::map<std::string, TarEntryRange>> IndexTar(int fd, std::uint64_t size) {
  return Index(
      [fd, size](std::uint64_t offset, char* out, std::size_t count) -> Result<bool> {
        if (offset + count > size) {
          return false;
        }
        std::size_t done = 0;
        while (done < count) {
          ssize_t n = ::pread(fd, out + done, count - done, static_cast<off_t>(offset + done));
          if (n < 0 && errno == EINTR) {
            continue;
          }
          if (n < 0) {
            return Fail(ErrorCode::kIo,
                        std::string("cannot read archive: ") + std::strerror(errno));
          }
          if (n == 0) {
            return false;
          }
          done += static_cast<std::size_t>(n);
        }
        return true;
      },
      size);
}

Result<std::map<std::string, TarEntryRange>> IndexTar(std::string_view bytes) {
  return Index(
      [bytes](std::uint64_t offset, char* out, std::size_t count) -> Result<bool> {
        if (offset + count > bytes.size()) {
          return false;
        }
        std::memcpy(out, bytes.data() + offset, count);
        return true;
      },
      bytes.size());
}

Status TarWriter::Emit(std::string_view data) {
  written_ += data.size();
  if (out_ == nullptr) {
    memory_.append(data);
    return {};
  }
  return out_->Write(data);
}

Status TarWriter::Pad(std::uint64_t size) {
  std::uint64_t rest = (kBlock - size % kBlock) % kBlock;
  static const char zeros[kBlock] = {};
  return Emit(std::string_view(zeros, rest));
}

Status TarWriter::Header(std::string_view path, std::uint64_t size, char type) {
  char h[kBlock] = {};
  std::string name(path);
  if (type == '5') {
    name += "/";
  }
  if (name.size() > 100) {
    // Split into prefix (≤155) and name (≤100) at a '/'.
    std::size_t cut = name.rfind('/', name.size() - 2);
    while (cut != std::string::npos && name.size() - cut - 1 > 100) {
      cut = std::string::npos;
    }
    if (cut == std::string::npos || cut > 155) {
      return Fail(ErrorCode::kInvalidArgument, "path too long for a tar entry: " + name);
    }
    std::memcpy(h + 345, name.data(), cut);
    name = name.substr(cut + 1);
  }
  std::memcpy(h, name.data(), name.size());
  std::snprintf(h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  if (size > 077777777777ULL) {
    return Fail(ErrorCode::kInvalidArgument, "entry too large for ustar: " + name);
  }
  std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h + 136, 12, "%011o", 0);
  h[156] = type;
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) {
    sum += static_cast<unsigned char>(c);
  }
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  return Emit(std::string_view(h, kBlock));
}

Status TarWriter::AddDirectory(std::string_view path) { return Header(path, 0, '5'); }

Status TarWriter::AddBytes(std::string_view path, std::string_view data) {
  AIRLOCK_RETURN_IF_ERROR(Header(path, data.size(), '0'));
  AIRLOCK_RETURN_IF_ERROR(Emit(data));
  return Pad(data.size());
}

Status TarWriter::AddRange(std::string_view path, int fd, std::uint64_t offset,
                           std::uint64_t size) {
  AIRLOCK_RETURN_IF_ERROR(Header(path, size, '0'));
  if (out_ == nullptr) {
    std::string data(size, '\0');
    for (std::uint64_t done = 0; done < size;) {
      ssize_t n = ::pread(fd, data.data() + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return Fail(ErrorCode::kIo, "short read while archiving " + std::string(path));
      }
      done += static_cast<std::uint64_t>(n);
    }
    AIRLOCK_RETURN_IF_ERROR(Emit(data));
  } else {
    AIRLOCK_RETURN_IF_ERROR(out_->CopyFrom(fd, offset, size));
    written_ += size;
  }
  return Pad(size);
}

Status TarWriter::Finish() {
  static const char zeros[kBlock * 2] = {};
  AIRLOCK_RETURN_IF_ERROR(Emit(std::string_view(zeros, sizeof(zeros))));
  // Round up to a whole 10 KiB record, as tar(1) does.
  std::uint64_t record = 20 * kBlock;
  std::string pad((record - written_ % record) % record, '\0');
  return Emit(pad);
}

}  // namespace airlock::pkg
