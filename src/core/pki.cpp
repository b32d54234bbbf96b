#include "core/pki.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/openssl_util.hpp"

namespace airlock::pki {
namespace {

namespace fs = std::filesystem;
using ossl::Bio;
using ossl::Cert;
using ossl::Csr;
using ossl::Pkey;

constexpr auto kCaValidity = std::chrono::hours(24 * 3650);
constexpr auto kClockSkew = std::chrono::minutes(5);

Error SslFailure(std::string what) {
  return Error(ErrorCode::kInternal, std::move(what) + ": " + ossl::LastError());
}

std::int64_t Unix(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

bool IsP256(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") != 1) {
    return false;
  }
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &len) != 1) {
    return false;
  }
  std::string_view name(group, len);
  return name == "prime256v1" || name == "P-256";
}

Result<Pkey> ReadKey(std::string_view pem) {
  Bio bio = ossl::ReadBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument, "not a PEM private key");
  }
  if (!IsP256(key.get())) {
    return Fail(ErrorCode::kInvalidArgument, "not a P-256 key");
  }
  return key;
}

Result<Cert> ReadCert(std::string_view pem) {
  Bio bio = ossl::ReadBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument, "not a PEM certificate");
  }
  return cert;
}

Status SetName(X509_NAME* name, std::string_view common_name) {
  std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return Fail(SslFailure("cannot set the name CN=" + cn));
  }
  return {};
}

Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) {
    return Fail(SslFailure(std::string("cannot make the extension ") + value));
  }
  int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (added != 1) {
    return Fail(SslFailure(std::string("cannot add the extension ") + value));
  }
  return {};
}

// A certificate for key, named common_name, issued by issuer (itself when null) and signed with
// issuer_key; serial_hex receives its serial.
enum class CertKind { kCa, kClient, kServer };

// "DNS:name" or "IP:address" for each name, comma-separated (a subjectAltName's value).
std::string AltNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    bool ip = !n.empty() && (n.find(':') != std::string::npos ||
                             n.find_first_not_of("0123456789.") == std::string::npos);
    out += (out.empty() ? "" : ",") + std::string(ip ? "IP:" : "DNS:") + n;
  }
  return out;
}

Result<Cert> MakeCertificate(EVP_PKEY* key, std::string_view common_name, X509* issuer,
                             EVP_PKEY* issuer_key, TimePoint not_before, TimePoint not_after,
                             CertKind kind, const std::vector<std::string>& names,
                             std::string& serial_hex) {
  Cert cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) {
    return Fail(SslFailure("cannot make a certificate"));
  }
  std::string serial_bytes(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(serial_bytes.data()), 16) != 1) {
    return Fail(SslFailure("cannot draw a serial"));
  }
  serial_bytes[0] = static_cast<char>(serial_bytes[0] & 0x7f);  // a positive INTEGER
  serial_hex = HexEncode(serial_bytes);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(serial_bytes.data()),
                static_cast<int>(serial_bytes.size()), nullptr),
      &BN_free);
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return Fail(SslFailure("cannot set the serial"));
  }
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), Unix(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), Unix(not_after)) == nullptr) {
    return Fail(SslFailure("cannot set the validity"));
  }
  AIRLOCK_RETURN_IF_ERROR(SetName(X509_get_subject_name(cert.get()), common_name));
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return Fail(SslFailure("cannot set the issuer or the key"));
  }
  if (kind == CertKind::kCa) {
    AIRLOCK_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_basic_constraints,
                                         "critical,CA:TRUE,pathlen:0"));
    AIRLOCK_RETURN_IF_ERROR(
        AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    AIRLOCK_RETURN_IF_ERROR(
        AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    AIRLOCK_RETURN_IF_ERROR(
        AddExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    AIRLOCK_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_ext_key_usage,
                                         kind == CertKind::kServer ? "serverAuth" : "clientAuth"));
  }
  if (!names.empty()) {
    AIRLOCK_RETURN_IF_ERROR(
        AddExtension(cert.get(), signer, NID_subject_alt_name, AltNames(names).c_str()));
  }
  AIRLOCK_RETURN_IF_ERROR(
      AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash"));
  if (issuer != nullptr) {
    AIRLOCK_RETURN_IF_ERROR(
        AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) {
    return Fail(SslFailure("cannot sign the certificate"));
  }
  return cert;
}

Result<std::string> CertPem(X509* cert) {
  Bio out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), cert) != 1) {
    return Fail(SslFailure("cannot write the certificate"));
  }
  return ossl::BioText(out.get());
}

}  // namespace

Result<std::string> MakeKey() {
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) {
    return Fail(SslFailure("cannot make a P-256 key"));
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (!out ||
      PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Fail(SslFailure("cannot write the key"));
  }
  return ossl::BioText(out.get());
}

Result<std::string> MakeCsr(std::string_view key_pem, std::string_view common_name) {
  AIRLOCK_ASSIGN_OR_RETURN(Pkey key, ReadKey(key_pem));
  Csr csr(X509_REQ_new());
  if (!csr || X509_REQ_set_version(csr.get(), 0) != 1) {
    return Fail(SslFailure("cannot make a request"));
  }
  AIRLOCK_RETURN_IF_ERROR(SetName(X509_REQ_get_subject_name(csr.get()), common_name));
  if (X509_REQ_set_pubkey(csr.get(), key.get()) != 1 ||
      X509_REQ_sign(csr.get(), key.get(), EVP_sha256()) <= 0) {
    return Fail(SslFailure("cannot sign the request"));
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_REQ(out.get(), csr.get()) != 1) {
    return Fail(SslFailure("cannot write the request"));
  }
  return ossl::BioText(out.get());
}

Result<CertificateAuthority> CertificateAuthority::Open(const fs::path& dir,
                                                        std::string_view common_name,
                                                        TimePoint now) {
  fs::path key_path = dir / "ca.key";
  fs::path cert_path = dir / "ca.pem";
  std::error_code ec;
  bool have_key = fs::exists(key_path, ec);
  bool have_cert = fs::exists(cert_path, ec);
  if (!have_key && !have_cert) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string key_pem, MakeKey());
    AIRLOCK_ASSIGN_OR_RETURN(Pkey key, ReadKey(key_pem));
    std::string serial;
    AIRLOCK_ASSIGN_OR_RETURN(Cert cert, MakeCertificate(key.get(), common_name, nullptr, key.get(),
                                                        now - kClockSkew, now + kCaValidity,
                                                        CertKind::kCa, {}, serial));
    AIRLOCK_ASSIGN_OR_RETURN(std::string cert_pem, CertPem(cert.get()));
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
    // The key first: a crash between the two leaves a key without a certificate, refused below
    // rather than silently replaced (devices may already trust the certificate of that key).
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(key_path, key_pem, 0600));
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(cert_path, cert_pem, 0644));
    return CertificateAuthority(std::move(key_pem), std::move(cert_pem));
  }
  if (!have_key || !have_cert) {
    return Fail(ErrorCode::kCorrupt,
                "the device CA in " + dir.string() + " is incomplete: " +
                    (have_key ? cert_path : key_path).string() +
                    " is missing; restore it from a backup (devices trust the certificate)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string key_pem, ReadFile(key_path, 1 << 16));
  AIRLOCK_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(cert_path, 1 << 16));
  auto key = ReadKey(key_pem);
  auto cert = ReadCert(cert_pem);
  if (!key || !cert) {
    return Fail(ErrorCode::kCorrupt, "the device CA in " + dir.string() + " does not parse: " +
                                         (!key ? key.error().message() : cert.error().message()));
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return Fail(ErrorCode::kCorrupt, "the device CA's key in " + key_path.string() +
                                         " does not belong to its certificate " +
                                         cert_path.string());
  }
  return CertificateAuthority(std::move(key_pem), std::move(cert_pem));
}

Result<IssuedCertificate> CertificateAuthority::Issue(std::string_view csr_pem,
                                                      std::string_view common_name, TimePoint now,
                                                      std::chrono::seconds validity) const {
  return IssueLeaf(csr_pem, common_name, {}, now, validity, false);
}

Result<IssuedCertificate> CertificateAuthority::IssueServer(std::string_view csr_pem,
                                                            std::string_view common_name,
                                                            const std::vector<std::string>& names,
                                                            TimePoint now,
                                                            std::chrono::seconds validity) const {
  if (names.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "a server certificate needs the host names or addresses clients connect to");
  }
  return IssueLeaf(csr_pem, common_name, names, now, validity, true);
}

Result<IssuedCertificate> CertificateAuthority::IssueLeaf(std::string_view csr_pem,
                                                          std::string_view common_name,
                                                          const std::vector<std::string>& names,
                                                          TimePoint now,
                                                          std::chrono::seconds validity,
                                                          bool server) const {
  Bio bio = ossl::ReadBio(csr_pem);
  Csr csr(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!csr) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument, "the certificate request is not a PEM CSR");
  }
  EVP_PKEY* requested = X509_REQ_get0_pubkey(csr.get());
  if (requested == nullptr || X509_REQ_verify(csr.get(), requested) != 1) {
    ERR_clear_error();
    return Fail(ErrorCode::kInvalidArgument,
                "the certificate request's signature does not verify with its own key");
  }
  if (!IsP256(requested)) {
    return Fail(ErrorCode::kInvalidArgument, "the certificate request's key is not P-256");
  }
  AIRLOCK_ASSIGN_OR_RETURN(Pkey ca_key, ReadKey(key_pem_));
  AIRLOCK_ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(cert_pem_));
  IssuedCertificate out;
  out.not_before = now - kClockSkew;
  out.not_after = now + validity;
  AIRLOCK_ASSIGN_OR_RETURN(Cert cert,
                           MakeCertificate(requested, common_name, ca_cert.get(), ca_key.get(),
                                           out.not_before, out.not_after,
                                           server ? CertKind::kServer : CertKind::kClient, names,
                                           out.serial));
  AIRLOCK_ASSIGN_OR_RETURN(out.pem, CertPem(cert.get()));
  return out;
}

Result<std::string> CertificateAuthority::RevocationList(
    const std::vector<std::string>& revoked_serials, TimePoint now,
    std::chrono::seconds validity) const {
  AIRLOCK_ASSIGN_OR_RETURN(Pkey ca_key, ReadKey(key_pem_));
  AIRLOCK_ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(cert_pem_));
  std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(X509_CRL_new(), &X509_CRL_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> last(ASN1_TIME_new(), &ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next(ASN1_TIME_new(), &ASN1_TIME_free);
  if (!crl || !last || !next || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert.get())) != 1 ||
      ASN1_TIME_set(last.get(), Unix(now - kClockSkew)) == nullptr ||
      ASN1_TIME_set(next.get(), Unix(now + validity)) == nullptr ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return Fail(SslFailure("cannot make a revocation list"));
  }
  for (const std::string& hex : revoked_serials) {
    auto bytes = HexDecode(hex);
    if (!bytes || bytes->empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "certificate serial \"" + hex.substr(0, 80) + "\" is not hex");
    }
    std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
        BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes->data()),
                  static_cast<int>(bytes->size()), nullptr),
        &BN_free);
    std::unique_ptr<X509_REVOKED, decltype(&X509_REVOKED_free)> entry(X509_REVOKED_new(),
                                                                      &X509_REVOKED_free);
    ASN1_INTEGER* serial = bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr;
    bool ok = entry && serial != nullptr &&
              X509_REVOKED_set_serialNumber(entry.get(), serial) == 1 &&
              X509_REVOKED_set_revocationDate(entry.get(), last.get()) == 1;
    ASN1_INTEGER_free(serial);
    if (!ok || X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return Fail(SslFailure("cannot add a revoked certificate"));
    }
    entry.release();  // the list owns it now
  }
  if (X509_CRL_sort(crl.get()) != 1 || X509_CRL_sign(crl.get(), ca_key.get(), EVP_sha256()) <= 0) {
    return Fail(SslFailure("cannot sign the revocation list"));
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) {
    return Fail(SslFailure("cannot write the revocation list"));
  }
  return ossl::BioText(out.get());
}

Result<KeyAndCertificate> CertificateAuthority::MakeLeaf(
    std::string_view common_name, const std::vector<std::string>& server_names, TimePoint now,
    std::chrono::seconds validity) const {
  KeyAndCertificate out;
  AIRLOCK_ASSIGN_OR_RETURN(out.key_pem, MakeKey());
  AIRLOCK_ASSIGN_OR_RETURN(std::string csr, MakeCsr(out.key_pem, common_name));
  AIRLOCK_ASSIGN_OR_RETURN(out.certificate,
                           server_names.empty()
                               ? Issue(csr, common_name, now, validity)
                               : IssueServer(csr, common_name, server_names, now, validity));
  return out;
}

Status WriteKeyAndCertificate(const KeyAndCertificate& leaf, const std::filesystem::path& stem) {
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(stem.string() + ".key", leaf.key_pem, 0600));
  return WriteFileAtomic(stem.string() + ".pem", leaf.certificate.pem, 0644);
}

}  // namespace airlock::pki
