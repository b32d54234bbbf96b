#pragma once
// SHA-256 digests in the OCI form "sha256:<64 lowercase hex>".
//
// Sha256 hashes a stream incrementally (OpenSSL EVP, which uses the CPU's SHA extensions when it
// has them). Not thread-safe per object; distinct objects are independent.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

// A validated content digest. Only sha256 is accepted (as the OCI spec requires of registries).
class Digest {
 public:
  // Parses "sha256:<64 lowercase hex>"; kInvalidArgument otherwise.
  [[nodiscard]] static Result<Digest> Parse(std::string_view text);
  static Digest FromHex(std::string hex) { return Digest(std::move(hex)); }

  const std::string& hex() const { return hex_; }
  std::string ToString() const { return "sha256:" + hex_; }
  bool operator==(const Digest&) const = default;
  auto operator<=>(const Digest&) const = default;

 private:
  explicit Digest(std::string hex) : hex_(std::move(hex)) {}
  std::string hex_;
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // The digest of everything passed to Update; the object may not be updated afterwards.
  Digest Finish();
  // Raw 32 bytes, for key ids.
  std::string FinishRaw();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Digest Sha256Of(std::string_view data);

// The digest and size of a file, read in large chunks. Blocks on the disk.
struct FileDigest {
  Digest digest;
  std::uint64_t size = 0;
};
// progress, if set, is called with the bytes hashed so far after every chunk.
using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;
[[nodiscard]] Result<FileDigest> HashFile(const std::filesystem::path& path,
                                          const ProgressFn& progress = {});
// Copies from into a new file to (which must not exist), hashing the bytes as they are written,
// so the digest is that of the copy even if from changes meanwhile. Does not fsync.
[[nodiscard]] Result<FileDigest> HashCopy(const std::filesystem::path& from,
                                          const std::filesystem::path& to,
                                          const ProgressFn& progress = {});

}  // namespace airlock
