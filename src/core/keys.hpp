#pragma once
// Ed25519 keys and signatures (OpenSSL 3).
//
// A key is identified by its key id: the lowercase hex SHA-256 of the raw 32-byte public key.
// Private keys are stored as PKCS#8 PEM files with mode 0600, public keys as SubjectPublicKeyInfo
// PEM. Objects are immutable after construction and safe to share between threads.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock {

class PublicKey {
 public:
  // From the raw 32 bytes.
  [[nodiscard]] static Result<PublicKey> FromRaw(std::string_view raw);
  // From a PEM public key, or the public half of a PEM private key.
  [[nodiscard]] static Result<PublicKey> FromPem(std::string_view pem);
  [[nodiscard]] static Result<PublicKey> Load(const std::filesystem::path& path);

  const std::string& raw() const { return raw_; }
  const std::string& id() const { return id_; }
  std::string ToPem() const;
  // True only when signature is a valid Ed25519 signature of message by this key.
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  explicit PublicKey(std::string raw);
  std::string raw_;
  std::string id_;
};

class PrivateKey {
 public:
  [[nodiscard]] static Result<PrivateKey> Generate();
  [[nodiscard]] static Result<PrivateKey> FromPem(std::string_view pem);
  [[nodiscard]] static Result<PrivateKey> Load(const std::filesystem::path& path);

  const PublicKey& public_key() const { return public_; }
  const std::string& id() const { return public_.id(); }
  // The 64-byte signature.
  std::string Sign(std::string_view message) const;
  // PKCS#8 PEM. Handle with care: never log it.
  std::string ToPem() const;

  // Writes name.key (0600) and name.pub (0644) atomically; refuses to overwrite either.
  [[nodiscard]] Status Save(const std::filesystem::path& private_path,
                            const std::filesystem::path& public_path) const;

 private:
  PrivateKey(std::string seed, PublicKey pub) : seed_(std::move(seed)), public_(std::move(pub)) {}
  std::string seed_;  // the raw 32-byte private key
  PublicKey public_;
};

}  // namespace airlock
