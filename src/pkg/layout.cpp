#include "pkg/layout.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kLayoutContent = R"({"imageLayoutVersion":"1.0.0"})";

class DirectoryReader final : public LayoutReader {
 public:
  explicit DirectoryReader(fs::path dir) : LayoutReader(std::move(dir), false) {}

  Result<FileRange> Locate(std::string_view rel) override {
    AIRLOCK_ASSIGN_OR_RETURN(std::string checked, CheckRelativePath(rel));
    auto it = open_.find(checked);
    if (it == open_.end()) {
      fs::path p = path() / checked;
      // Every component inside the layout must be what it claims: no symbolic links anywhere.
      fs::path walked = path();
      for (const auto& part : fs::path(checked)) {
        walked /= part;
        struct stat st {};
        if (::lstat(walked.c_str(), &st) != 0) {
          return Fail(ErrnoError("missing", walked));
        }
        bool last = walked == p;
        if (S_ISLNK(st.st_mode) || (last ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))) {
          return Fail(ErrorCode::kCorrupt, walked.string() + " is not a regular " +
                                               (last ? "file" : "directory") +
                                               " (links are refused)");
        }
      }
      AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(p));
      it = open_.emplace(checked, std::move(fd)).first;
    }
    struct stat st {};
    if (::fstat(it->second.get(), &st) != 0) {
      return Fail(ErrnoError("cannot stat", path() / checked));
    }
    return FileRange{it->second.get(), 0, static_cast<std::uint64_t>(st.st_size)};
  }

  std::vector<std::string> List() const override {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path(), ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) {
        out.push_back(fs::relative(it->path(), path()).string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::map<std::string, UniqueFd> open_;
};

class ArchiveReader final : public LayoutReader {
 public:
  ArchiveReader(fs::path file, UniqueFd fd, std::map<std::string, TarEntryRange> entries)
      : LayoutReader(std::move(file), true), fd_(std::move(fd)), entries_(std::move(entries)) {}

  Result<FileRange> Locate(std::string_view rel) override {
    auto it = entries_.find(std::string(rel));
    if (it == entries_.end()) {
      return Fail(ErrorCode::kNotFound, path().string() + " holds no " + std::string(rel));
    }
    return FileRange{fd_.get(), it->second.offset, it->second.size};
  }

  std::vector<std::string> List() const override {
    std::vector<std::string> out;
    for (const auto& [k, v] : entries_) {
      out.push_back(k);
    }
    return out;
  }

 private:
  UniqueFd fd_;
  std::map<std::string, TarEntryRange> entries_;
};

}  // namespace

Status ReadRange(const FileRange& r, std::uint64_t at, char* out, std::size_t count,
                 const fs::path& where) {
  std::size_t done = 0;
  while (done < count) {
    ssize_t n = ::pread(r.fd, out + done, count - done, static_cast<off_t>(r.offset + at + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError("cannot read", where));
    }
    if (n == 0) {
      return Fail(ErrorCode::kCorrupt, where.string() + " ended early");
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

std::string BlobPath(const Digest& d) { return "blobs/sha256/" + d.hex(); }

Result<std::unique_ptr<LayoutReader>> LayoutReader::Open(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return Fail(ErrorCode::kNotFound, "no package at " + path.string());
  }
  std::unique_ptr<LayoutReader> reader;
  if (fs::is_directory(status)) {
    reader = std::make_unique<DirectoryReader>(path);
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return Fail(ErrnoError("cannot stat", path));
    }
    auto entries = IndexTar(fd.get(), static_cast<std::uint64_t>(st.st_size));
    if (!entries) {
      return Fail(std::move(entries.error()).WithContext(path.string()));
    }
    reader = std::make_unique<ArchiveReader>(path, std::move(fd), std::move(*entries));
  }
  auto layout = reader->ReadFile(kLayoutFile, 4096);
  if (!layout) {
    return Fail(ErrorCode::kCorrupt,
                path.string() + " is not an OCI image layout (no oci-layout file)");
  }
  auto j = nlohmann::json::parse(*layout, nullptr, false);
  if (j.is_discarded() || !j.is_object() || trust::StringOr(j, "imageLayoutVersion") != "1.0.0") {
    return Fail(ErrorCode::kUnsupported,
                path.string() + ": unsupported oci-layout (want imageLayoutVersion 1.0.0)");
  }
  return reader;
}

Result<std::string> LayoutReader::ReadFile(std::string_view rel, std::uint64_t max_size) {
  AIRLOCK_ASSIGN_OR_RETURN(FileRange r, Locate(rel));
  if (r.size > max_size) {
    return Fail(ErrorCode::kCorrupt, path().string() + ": " + std::string(rel) + " is " +
                                         std::to_string(r.size) + " bytes, over its limit of " +
                                         std::to_string(max_size));
  }
  std::string out(r.size, '\0');
  AIRLOCK_RETURN_IF_ERROR(ReadRange(r, 0, out.data(), out.size(), path() / rel));
  return out;
}

Result<FileRange> LayoutReader::LocateBlob(const Descriptor& d) {
  auto r = Locate(BlobPath(d.digest));
  if (!r && r.error().code() == ErrorCode::kNotFound) {
    return Fail(ErrorCode::kCorrupt,
                path().string() + " lacks blob " + d.digest.ToString() + " (" + d.media_type + ")");
  }
  return r;
}

Result<std::string> LayoutReader::ReadBlob(const Descriptor& d, std::uint64_t max_size) {
  std::string rel = BlobPath(d.digest);
  if (d.size > max_size) {
    return Fail(ErrorCode::kCorrupt, "blob " + d.digest.ToString() + " claims " +
                                         std::to_string(d.size) + " bytes, over the limit of " +
                                         std::to_string(max_size) + " for " + d.media_type);
  }
  AIRLOCK_ASSIGN_OR_RETURN(FileRange r, LocateBlob(d));
  if (r.size != d.size) {
    return Fail(ErrorCode::kCorrupt, "blob " + d.digest.ToString() + " is " +
                                         std::to_string(r.size) + " bytes, its descriptor says " +
                                         std::to_string(d.size));
  }
  std::string out(d.size, '\0');
  AIRLOCK_RETURN_IF_ERROR(ReadRange(r, 0, out.data(), out.size(), path() / rel));
  Digest got = Sha256Of(out);
  if (got != d.digest) {
    return Fail(ErrorCode::kCorrupt, "blob " + d.digest.ToString() +
                                         " does not match its digest (content hashes to " +
                                         got.ToString() + ")");
  }
  return out;
}

Status LayoutReader::VerifyBlob(const Descriptor& d,
                                const std::function<void(std::uint64_t)>& progress) {
  std::string rel = BlobPath(d.digest);
  AIRLOCK_ASSIGN_OR_RETURN(FileRange r, LocateBlob(d));
  if (r.size != d.size) {
    return Fail(ErrorCode::kCorrupt, "blob " + d.digest.ToString() + " is " +
                                         std::to_string(r.size) + " bytes, its descriptor says " +
                                         std::to_string(d.size));
  }
  Sha256 h;
  std::string buf(std::min<std::uint64_t>(d.size, 4 << 20), '\0');
  for (std::uint64_t done = 0; done < d.size;) {
    std::size_t n = std::min<std::uint64_t>(buf.size(), d.size - done);
    AIRLOCK_RETURN_IF_ERROR(ReadRange(r, done, buf.data(), n, path() / rel));
    h.Update(std::string_view(buf.data(), n));
    done += n;
    if (progress) {
      progress(done);
    }
  }
  Digest got = h.Finish();
  if (got != d.digest) {
    return Fail(ErrorCode::kCorrupt, "blob " + d.digest.ToString() +
                                         " does not match its digest (content hashes to " +
                                         got.ToString() + ")");
  }
  return {};
}

Result<Index> LayoutReader::ReadIndex() {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(kLayoutIndex, kMaxJsonBlob));
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json j, trust::ParseJson(text, kMaxJsonBlob, "index.json"));
  return WithContext(Index::FromJson(j), path().string() + ": index.json");
}

LayoutWriter::LayoutWriter() {
  entries_.emplace(std::string(kLayoutFile), std::string(kLayoutContent));
}

void LayoutWriter::AddBytes(std::string rel, std::string data) {
  entries_.insert_or_assign(std::move(rel), std::move(data));
}

void LayoutWriter::AddBlob(const Descriptor& d, std::string data) {
  AddBytes(BlobPath(d.digest), std::move(data));
}

void LayoutWriter::AddRange(std::string rel, FileRange range) {
  entries_.insert_or_assign(std::move(rel), range);
}

void LayoutWriter::AddMovable(std::string rel, fs::path file) {
  entries_.insert_or_assign(std::move(rel), Movable{std::move(file)});
}

Status LayoutWriter::AddAll(LayoutReader& reader) {
  for (const auto& rel : reader.List()) {
    AIRLOCK_ASSIGN_OR_RETURN(FileRange range, reader.Locate(rel));
    AddRange(rel, range);
  }
  return {};
}

void LayoutWriter::SetIndex(const Index& index) {
  AddBytes(std::string(kLayoutIndex), ToBytes(index.ToJson()));
}

Status LayoutWriter::WriteEntry(const fs::path& target, const Source& src) const {
  if (const auto* movable = std::get_if<Movable>(&src)) {
    // The parent directory is fsync'ed by the caller once all entries are in.
    AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(movable->file));
    if (::fsync(fd.get()) != 0) {
      return Fail(ErrnoError("cannot fsync", movable->file));
    }
    if (::rename(movable->file.c_str(), target.c_str()) != 0) {
      return Fail(ErrnoError("cannot move into place", target));
    }
    return {};
  }
  AIRLOCK_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(target));
  if (const auto* bytes = std::get_if<std::string>(&src)) {
    AIRLOCK_RETURN_IF_ERROR(file.Write(*bytes));
  } else {
    const FileRange& r = std::get<FileRange>(src);
    AIRLOCK_RETURN_IF_ERROR(file.CopyFrom(r.fd, r.offset, r.size));
  }
  return file.Commit();
}

Status LayoutWriter::WriteDirectory(const fs::path& dir, bool replace) const {
  std::error_code ec;
  if (fs::exists(dir, ec) && !replace) {
    return Fail(ErrorCode::kAlreadyExists,
                dir.string() + " already exists (use --force to replace it)");
  }
  // --force replaces a package, never anything else that happens to be there.
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec) &&
      !(fs::is_directory(dir, ec) && fs::exists(dir / kLayoutFile, ec))) {
    return Fail(ErrorCode::kAlreadyExists,
                dir.string() + " exists and is not an OCI layout; refusing to replace it");
  }
  fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  fs::path staging = parent / (TemporaryPrefix(dir, "partial") + "layout");
  fs::remove_all(staging, ec);
  // Whatever fails below, no half-written layout stays behind.
  struct RemoveOnExit {
    fs::path path;
    ~RemoveOnExit() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{staging};
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(staging / "blobs" / "sha256"));
  for (const auto& [rel, src] : entries_) {
    fs::path target = staging / rel;
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
    AIRLOCK_RETURN_IF_ERROR(WriteEntry(target, src));
  }
  AIRLOCK_RETURN_IF_ERROR(SyncDirectory(staging / "blobs" / "sha256"));
  if (fs::exists(dir, ec)) {
    // Swap: move the old one aside, the new one in, then delete the old.
    fs::path old = parent / (TemporaryPrefix(dir, "old") + "layout");
    fs::remove_all(old, ec);
    fs::rename(dir, old, ec);
    if (ec) {
      return Fail(ErrorCode::kIo, "cannot move " + dir.string() + " aside: " + ec.message());
    }
    fs::rename(staging, dir, ec);
    if (ec) {
      fs::rename(old, dir, ec);
      return Fail(ErrorCode::kIo, "cannot move the new layout into " + dir.string());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(staging, dir, ec);
    if (ec) {
      return Fail(ErrorCode::kIo,
                  "cannot move the new layout into " + dir.string() + ": " + ec.message());
    }
  }
  return SyncDirectory(parent);
}

Status LayoutWriter::UpdateDirectory(const fs::path& dir) const {
  for (const auto& [rel, src] : entries_) {
    if (rel == kLayoutIndex) {
      continue;
    }
    fs::path target = dir / rel;
    std::error_code ec;
    if (rel.starts_with("blobs/") && fs::exists(target, ec)) {
      continue;  // content-addressed: already there
    }
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
    AIRLOCK_RETURN_IF_ERROR(WriteEntry(target, src));
  }
  AIRLOCK_RETURN_IF_ERROR(SyncDirectory(dir / "blobs" / "sha256"));
  auto index = entries_.find(std::string(kLayoutIndex));
  if (index != entries_.end()) {
    AIRLOCK_RETURN_IF_ERROR(WriteEntry(dir / kLayoutIndex, index->second));
  }
  return {};
}

Status LayoutWriter::WriteTar(const fs::path& file, bool replace) const {
  std::error_code ec;
  if (fs::exists(file, ec) && !replace) {
    return Fail(ErrorCode::kAlreadyExists,
                file.string() + " already exists (use --force to replace it)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(file));
  TarWriter tar(&out);
  std::set<std::string> dirs;
  for (const auto& [rel, src] : entries_) {
    // Parent directories first, once each, as tar(1) would.
    for (std::size_t slash = rel.find('/'); slash != std::string::npos;
         slash = rel.find('/', slash + 1)) {
      std::string d = rel.substr(0, slash);
      if (dirs.insert(d).second) {
        AIRLOCK_RETURN_IF_ERROR(tar.AddDirectory(d));
      }
    }
    if (const auto* bytes = std::get_if<std::string>(&src)) {
      AIRLOCK_RETURN_IF_ERROR(tar.AddBytes(rel, *bytes));
    } else if (const auto* movable = std::get_if<Movable>(&src)) {
      AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(movable->file));
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0) {
        return Fail(ErrnoError("cannot stat", movable->file));
      }
      AIRLOCK_RETURN_IF_ERROR(
          tar.AddRange(rel, fd.get(), 0, static_cast<std::uint64_t>(st.st_size)));
    } else {
      const FileRange& r = std::get<FileRange>(src);
      AIRLOCK_RETURN_IF_ERROR(tar.AddRange(rel, r.fd, r.offset, r.size));
    }
  }
  AIRLOCK_RETURN_IF_ERROR(tar.Finish());
  return out.Commit();
}

}  // namespace airlock::pkg
