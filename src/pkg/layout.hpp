#pragma once
// An OCI image layout (oci-layout, index.json, blobs/sha256/…) as a directory or a tar of one.
//
// LayoutReader reads either form without extracting it: files are byte ranges of the directory's
// files or of the archive. Blob reads check size first and digest after, so a wrong blob is never
// believed and a blob longer than its descriptor says is refused before it is read.
// LayoutWriter collects entries (bytes, or ranges of open files) and writes a directory or a tar
// atomically. Neither is thread-safe.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/fs.hpp"
#include "core/result.hpp"
#include "pkg/oci.hpp"
#include "pkg/tar.hpp"

namespace airlock::pkg {

inline constexpr std::string_view kLayoutFile = "oci-layout";
inline constexpr std::string_view kLayoutIndex = "index.json";
// JSON documents (indexes, manifests, configs, pipeline, baseline) larger than this are refused.
inline constexpr std::uint64_t kMaxJsonBlob = 16ULL << 20;

std::string BlobPath(const Digest& d);

// A readable stretch of an open file.
struct FileRange {
  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

// Reads exactly count bytes at `at` within the range into out (retrying short reads). kIo naming
// `where` when the read fails, kCorrupt when the file ends first.
[[nodiscard]] Status ReadRange(const FileRange& r, std::uint64_t at, char* out, std::size_t count,
                               const std::filesystem::path& where);

class LayoutReader {
 public:
  // Opens a layout directory, or a tar file holding one. kNotFound / kCorrupt with the reason.
  [[nodiscard]] static Result<std::unique_ptr<LayoutReader>> Open(
      const std::filesystem::path& path);
  virtual ~LayoutReader() = default;

  const std::filesystem::path& path() const { return path_; }
  bool is_archive() const { return is_archive_; }

  // The byte range of a file in the layout; kNotFound if absent. Valid while the reader lives.
  [[nodiscard]] virtual Result<FileRange> Locate(std::string_view rel) = 0;
  // Every regular file in the layout, relative, sorted.
  virtual std::vector<std::string> List() const = 0;

  [[nodiscard]] Result<std::string> ReadFile(std::string_view rel, std::uint64_t max_size);
  // Reads a blob after checking its size, then its digest. kCorrupt naming the blob on mismatch.
  [[nodiscard]] Result<std::string> ReadBlob(const Descriptor& d,
                                             std::uint64_t max_size = kMaxJsonBlob);
  // Streams a blob through SHA-256 and checks size and digest, reporting bytes done.
  [[nodiscard]] Status VerifyBlob(const Descriptor& d,
                                  const std::function<void(std::uint64_t)>& progress = {});
  // The byte range of a blob; kCorrupt when the layout lacks it (a package missing a blob its
  // documents name is broken, not merely incomplete).
  [[nodiscard]] Result<FileRange> LocateBlob(const Descriptor& d);
  // The top-level index.json.
  [[nodiscard]] Result<Index> ReadIndex();

 protected:
  LayoutReader(std::filesystem::path path, bool archive)
      : path_(std::move(path)), is_archive_(archive) {}

 private:
  std::filesystem::path path_;
  bool is_archive_;
};

class LayoutWriter {
 public:
  LayoutWriter();
  void AddBytes(std::string rel, std::string data);
  // Adds a blob from memory under blobs/sha256/<hex>.
  void AddBlob(const Descriptor& d, std::string data);
  // size bytes of fd at offset; fd must stay open until Write*.
  void AddRange(std::string rel, FileRange range);
  // A file to move into place (directory output) or to copy (tar output). For a directory it
  // must be on the same filesystem as the output; it is fsync'ed before it is moved.
  void AddMovable(std::string rel, std::filesystem::path file);
  // Every file of reader's layout, as ranges of its open files; reader must outlive Write*.
  [[nodiscard]] Status AddAll(LayoutReader& reader);
  void SetIndex(const Index& index);
  bool Has(std::string_view rel) const { return entries_.contains(std::string(rel)); }

  // Writes a new layout directory: into a sibling staging directory, then renamed into place.
  // Refuses to replace an existing path unless replace is set.
  [[nodiscard]] Status WriteDirectory(const std::filesystem::path& dir, bool replace) const;
  // Adds the entries to an existing layout directory: new files first, index.json last, each
  // written atomically, so a reader sees the old layout or the new one.
  [[nodiscard]] Status UpdateDirectory(const std::filesystem::path& dir) const;
  // Writes a tar of the layout atomically (entries sorted, deterministic).
  [[nodiscard]] Status WriteTar(const std::filesystem::path& file, bool replace) const;

 private:
  struct Movable {
    std::filesystem::path file;
  };
  using Source = std::variant<std::string, FileRange, Movable>;
  Status WriteEntry(const std::filesystem::path& target, const Source& src) const;
  std::map<std::string, Source> entries_;
};

}  // namespace airlock::pkg
