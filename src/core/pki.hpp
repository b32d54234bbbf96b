#pragma once
// X.509 for device identities (OpenSSL 3): the P-256 key a device makes for itself, the
// certificate signing request it sends at enrollment, and the certificate authority a gateway
// signs them with (docs/rollout.md, "Enrollment").
//
// P-256 rather than Ed25519 (which the trust documents use): these keys become TLS client
// certificates, and P-256 is what every broker's and every client's TLS stack accepts.

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock::pki {

// A new P-256 private key as PKCS#8 PEM. Handle with care: never log it.
[[nodiscard]] Result<std::string> MakeKey();

// A PEM certificate signing request for key_pem (a P-256 PKCS#8 PEM key), subject CN=common_name,
// signed by that key (the proof that the requester holds it).
[[nodiscard]] Result<std::string> MakeCsr(std::string_view key_pem, std::string_view common_name);

struct IssuedCertificate {
  std::string pem;
  std::string serial;  // lowercase hex, 32 digits (128 random bits)
  TimePoint not_before;
  TimePoint not_after;
};

// A new key and the certificate a CA issued for it (CertificateAuthority::MakeLeaf).
struct KeyAndCertificate {
  std::string key_pem;
  IssuedCertificate certificate;
};

// Writes STEM.key (0600) first, then STEM.pem: a certificate without its key would be worse than
// neither.
[[nodiscard]] Status WriteKeyAndCertificate(const KeyAndCertificate& leaf,
                                            const std::filesystem::path& stem);

// A certificate authority: a P-256 key and its self-signed certificate (10 years, CA:TRUE,
// keyCertSign), kept in DIR/ca.key (0600) and DIR/ca.pem, made at the first Open.
class CertificateAuthority {
 public:
  // Loads DIR/ca.key and DIR/ca.pem, or makes both when neither exists (subject CN=common_name).
  // kCorrupt when one exists without the other or they do not parse or do not belong together.
  [[nodiscard]] static Result<CertificateAuthority> Open(const std::filesystem::path& dir,
                                                         std::string_view common_name,
                                                         TimePoint now);

  const std::string& certificate_pem() const { return cert_pem_; }

  // Certifies the key in csr_pem for common_name (the CSR's own subject is ignored): a leaf
  // certificate (CA:FALSE, digitalSignature, clientAuth), valid from 5 minutes before now (clock
  // skew) for validity, with a random serial. kInvalidArgument, saying what is wrong, when the
  // CSR does not parse, its signature does not verify, or its key is not P-256.
  [[nodiscard]] Result<IssuedCertificate> Issue(std::string_view csr_pem,
                                                std::string_view common_name, TimePoint now,
                                                std::chrono::seconds validity) const;

  // A new P-256 key and its certificate, in one step (the key never leaves this process): a
  // server's for server_names when they are given (IssueServer), else a client's named
  // common_name (Issue).
  [[nodiscard]] Result<KeyAndCertificate> MakeLeaf(std::string_view common_name,
                                                   const std::vector<std::string>& server_names,
                                                   TimePoint now,
                                                   std::chrono::seconds validity) const;

  // The same for a server (a broker, an HTTPS listener): serverAuth instead of clientAuth, and
  // the names clients connect to as subjectAltNames (host names, IPv4 or IPv6 addresses).
  [[nodiscard]] Result<IssuedCertificate> IssueServer(std::string_view csr_pem,
                                                      std::string_view common_name,
                                                      const std::vector<std::string>& names,
                                                      TimePoint now,
                                                      std::chrono::seconds validity) const;

  // A certificate revocation list (PEM) signed by this CA, naming the certificates of
  // revoked_serials (hex, as IssuedCertificate::serial), issued at now and valid
  // for validity: what a TLS server (the factory broker's crlfile) refuses clients by.
  // kInvalidArgument for a serial that is not hex.
  [[nodiscard]] Result<std::string> RevocationList(const std::vector<std::string>& revoked_serials,
                                                   TimePoint now,
                                                   std::chrono::seconds validity) const;

 private:
  [[nodiscard]] Result<IssuedCertificate> IssueLeaf(std::string_view csr_pem,
                                                    std::string_view common_name,
                                                    const std::vector<std::string>& names,
                                                    TimePoint now, std::chrono::seconds validity,
                                                    bool server) const;
  CertificateAuthority(std::string key_pem, std::string cert_pem)
      : key_pem_(std::move(key_pem)), cert_pem_(std::move(cert_pem)) {}
  std::string key_pem_;
  std::string cert_pem_;
};

}  // namespace airlock::pki
