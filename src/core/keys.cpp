#include "core/keys.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/digest.hpp"
#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/openssl_util.hpp"
#include "core/pkcs11.hpp"

namespace airlock {
namespace {

using ossl::Bio;
using ossl::MdCtx;
using ossl::Pkey;

Result<std::string> RawPublic(EVP_PKEY* k) {
  std::size_t len = 32;
  std::string raw(32, '\0');
  if (EVP_PKEY_get_raw_public_key(k, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1 ||
      len != 32) {
    return Fail(ErrorCode::kInvalidArgument, "not an Ed25519 key: " + ossl::LastError());
  }
  return raw;
}

}  // namespace

PublicKey::PublicKey(std::string raw) : raw_(std::move(raw)), id_(Sha256Of(raw_).hex()) {}

Result<PublicKey> PublicKey::FromRaw(std::string_view raw) {
  if (raw.size() != 32) {
    return Fail(ErrorCode::kInvalidArgument,
                "an Ed25519 public key is 32 bytes, got " + std::to_string(raw.size()));
  }
  return PublicKey(std::string(raw));
}

Result<PublicKey> PublicKey::FromPem(std::string_view pem) {
  Bio bio = ossl::ReadBio(pem);
  Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    Bio bio2 = ossl::ReadBio(pem);
    key.reset(PEM_read_bio_PrivateKey(bio2.get(), nullptr, nullptr, nullptr));
  }
  if (!key) {
    return Fail(ErrorCode::kInvalidArgument, "not a PEM key: " + ossl::LastError());
  }
  if (EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519) {
    return Fail(ErrorCode::kUnsupported, "key is not Ed25519 (only Ed25519 keys are supported)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string raw, RawPublic(key.get()));
  return PublicKey(std::move(raw));
}

Result<PublicKey> PublicKey::Load(const std::filesystem::path& path) {
  if (pkcs11::IsUri(path.native())) {
    return pkcs11::OpenPublicKey(path.native(), pkcs11::Environment::FromProcess());
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadFile(path, 64 * 1024));
  return WithContext(FromPem(pem), "key file " + path.string());
}

std::string PublicKey::ToPem() const {
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                       reinterpret_cast<const unsigned char*>(raw_.data()), 32));
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key.get());
  return ossl::BioText(bio.get());
}

bool PublicKey::Verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != 64) {
    return false;
  }
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                       reinterpret_cast<const unsigned char*>(raw_.data()), 32));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  return rc == 1;
}

Result<PrivateKey> PrivateKey::Generate() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) {
    return Fail(ErrorCode::kInternal, "cannot generate an Ed25519 key: " + ossl::LastError());
  }
  std::string seed(32, '\0');
  std::size_t len = 32;
  EVP_PKEY_get_raw_private_key(key.get(), reinterpret_cast<unsigned char*>(seed.data()), &len);
  AIRLOCK_ASSIGN_OR_RETURN(std::string raw, RawPublic(key.get()));
  return PrivateKey(std::move(seed), nullptr, PublicKey::FromRaw(raw).value());
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  Bio bio = ossl::ReadBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument,
                "not a PEM private key (a .pub file holds only the public half)");
  }
  if (EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519) {
    return Fail(ErrorCode::kUnsupported, "key is not Ed25519 (only Ed25519 keys are supported)");
  }
  std::string seed(32, '\0');
  std::size_t len = 32;
  if (EVP_PKEY_get_raw_private_key(key.get(), reinterpret_cast<unsigned char*>(seed.data()),
                                   &len) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "cannot read private key: " + ossl::LastError());
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string raw, RawPublic(key.get()));
  return PrivateKey(std::move(seed), nullptr, PublicKey::FromRaw(raw).value());
}

Result<PrivateKey> PrivateKey::Load(const std::filesystem::path& path) {
  if (pkcs11::IsUri(path.native())) {
    return pkcs11::OpenKey(path.native(), pkcs11::Environment::FromProcess());
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadFile(path, 64 * 1024));
  return WithContext(FromPem(pem), "key file " + path.string());
}

PrivateKey PrivateKey::FromSigner(std::shared_ptr<const ExternalSigner> signer, PublicKey pub) {
  return PrivateKey("", std::move(signer), std::move(pub));
}

Result<std::string> PrivateKey::Sign(std::string_view message) const {
  if (signer_) {
    return signer_->Sign(message);
  }
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(seed_.data()), 32));
  MdCtx ctx(EVP_MD_CTX_new());
  std::string sig(64, '\0');
  std::size_t len = 64;
  if (!key || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    std::abort();  // Signing with a valid in-memory key cannot fail short of memory exhaustion.
  }
  return sig;
}

Result<std::string> PrivateKey::ToPem() const {
  if (signer_) {
    return Fail(ErrorCode::kUnsupported, "the private key " + signer_->Where() +
                                             " lives in its token and cannot be exported");
  }
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(seed_.data()), 32));
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return ossl::BioText(bio.get());
}

Status PrivateKey::Save(const std::filesystem::path& private_path,
                        const std::filesystem::path& public_path) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ToPem());  // refuses a key held in a token
  for (const auto& p : {private_path, public_path}) {
    if (std::filesystem::exists(p)) {
      return Fail(ErrorCode::kAlreadyExists,
                  p.string() + " already exists; choose another name or remove it first");
    }
  }
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(private_path, pem, 0600));
  return WriteFileAtomic(public_path, public_.ToPem(), 0644);
}

}  // namespace airlock
