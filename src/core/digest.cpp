#include "core/digest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "core/encoding.hpp"
#include "core/fs.hpp"

namespace airlock {

Result<Digest> Digest::Parse(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return Fail(ErrorCode::kInvalidArgument,
                "unsupported digest \"" + std::string(text) + "\" (only sha256:<hex> is accepted)");
  }
  std::string_view hex = text.substr(kPrefix.size());
  bool ok = hex.size() == 64;
  for (char c : hex) {
    ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  }
  if (!ok) {
    return Fail(ErrorCode::kInvalidArgument, "malformed digest \"" + std::string(text) +
                                                 "\" (want sha256: and 64 lowercase hex)");
  }
  return Digest(std::string(hex));
}

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) {
    std::abort();  // Out of memory or a broken OpenSSL: nothing sensible to do.
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(std::string_view data) {
  EVP_DigestUpdate(state_->ctx, data.data(), data.size());
}

std::string Sha256::FinishRaw() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx, out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

Digest Sha256::Finish() { return Digest::FromHex(HexEncode(FinishRaw())); }

Digest Sha256Of(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

namespace {

// Reads path to the end, hashing, and writes every chunk to out_fd unless it is negative.
Result<FileDigest> HashStream(const std::filesystem::path& path, int out_fd,
                              const std::filesystem::path& out_path, const ProgressFn& progress) {
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, OpenForRead(path));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  struct stat st {};
  std::uint64_t total = ::fstat(fd.get(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  Sha256 h;
  std::vector<char> buf(1 << 20);
  std::uint64_t size = 0;
  while (true) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(ErrnoError("cannot read", path));
    }
    if (n == 0) {
      break;
    }
    h.Update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    for (ssize_t done = 0; out_fd >= 0 && done < n;) {
      ssize_t w = ::write(out_fd, buf.data() + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w < 0) {
        return Fail(ErrnoError("cannot write", out_path));
      }
      done += w;
    }
    size += static_cast<std::uint64_t>(n);
    if (progress) {
      progress(size, std::max(total, size));
    }
  }
  return FileDigest{h.Finish(), size};
}

}  // namespace

Result<FileDigest> HashFile(const std::filesystem::path& path, const ProgressFn& progress) {
  return HashStream(path, -1, {}, progress);
}

Result<FileDigest> HashCopy(const std::filesystem::path& from, const std::filesystem::path& to,
                            const ProgressFn& progress) {
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    return Fail(ErrnoError("cannot create", to));
  }
  UniqueFd guard(out);
  return HashStream(from, out, to, progress);
}

}  // namespace airlock
