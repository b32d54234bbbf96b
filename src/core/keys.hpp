#pragma once
// Ed25519 keys and signatures (OpenSSL 3).
//
// A key is identified by its key id: the lowercase hex SHA-256 of the raw 32-byte public key.
// Private keys are stored as PKCS#8 PEM files with mode 0600, public keys as SubjectPublicKeyInfo
// PEM. A private key may instead live in a PKCS#11 token (core/pkcs11.hpp): then PrivateKey holds
// only a handle to it, signs through the token, and cannot be exported.
//
// Objects are immutable after construction and safe to share between threads; copies of a
// token-held key share one session with the token (signing through it is serialised).

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
  // From a PEM file, or the public key of a PKCS#11 token key when spec is a "pkcs11:" URI (see
  // core/pkcs11.hpp; logs in to the token only when a PIN is given).
  [[nodiscard]] static Result<PublicKey> Load(const std::filesystem::path& spec);

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

// A private key that lives outside this process (in a PKCS#11 token) and signs there.
// Implementations are thread-safe.
class ExternalSigner {
 public:
  virtual ~ExternalSigner() = default;
  // The 64-byte Ed25519 signature of message, made by the device; blocks until it answers. Fails
  // when the device does (removed, session lost).
  [[nodiscard]] virtual Result<std::string> Sign(std::string_view message) const = 0;
  // Where the key is, for messages: e.g. its PKCS#11 URI without any PIN.
  virtual std::string Where() const = 0;
};

class PrivateKey {
 public:
  [[nodiscard]] static Result<PrivateKey> Generate();
  [[nodiscard]] static Result<PrivateKey> FromPem(std::string_view pem);
  // From a PEM file, or a key in a PKCS#11 token when spec is a "pkcs11:" URI
  // (core/pkcs11.hpp): then the token is opened and logged in to here, and stays open as long as
  // a copy of the key lives.
  [[nodiscard]] static Result<PrivateKey> Load(const std::filesystem::path& spec);
  // A key whose private half stays in signer; pub is its public half.
  static PrivateKey FromSigner(std::shared_ptr<const ExternalSigner> signer, PublicKey pub);

  const PublicKey& public_key() const { return public_; }
  const std::string& id() const { return public_.id(); }
  // False when the private half lives in a token: it cannot be written out.
  bool exportable() const { return signer_ == nullptr; }
  // The 64-byte signature. A key in memory always succeeds; a token key fails when the token
  // does.
  [[nodiscard]] Result<std::string> Sign(std::string_view message) const;
  // PKCS#8 PEM. Handle with care: never log it. Refuses (kUnsupported) a key held in a token.
  [[nodiscard]] Result<std::string> ToPem() const;

  // Writes name.key (0600) and name.pub (0644) atomically; refuses to overwrite either, and
  // refuses a key held in a token (there is nothing to write; keep its public half with
  // PublicKey::ToPem).
  [[nodiscard]] Status Save(const std::filesystem::path& private_path,
                            const std::filesystem::path& public_path) const;

 private:
  PrivateKey(std::string seed, std::shared_ptr<const ExternalSigner> signer, PublicKey pub)
      : seed_(std::move(seed)), signer_(std::move(signer)), public_(std::move(pub)) {}
  std::string seed_;                              // the raw 32-byte private key; empty in a token
  std::shared_ptr<const ExternalSigner> signer_;  // set only for a key held in a token
  PublicKey public_;
};

}  // namespace airlock
