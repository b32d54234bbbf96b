// Device identities: a P-256 key and CSR made on the device, certified by the gateway's CA; the
// certificates checked by the openssl command, independently of the code that made them.

#include "core/pki.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/fs.hpp"
#include "support/test_support.hpp"

namespace airlock::pki {
namespace {

namespace fs = std::filesystem;
using airlock::testing::CommandResult;
using airlock::testing::ReadAll;
using airlock::testing::RunCommand;
using airlock::testing::TempDir;

TimePoint Now() { return TimePoint(std::chrono::seconds(1'796'000'000)); }  // 2026-11-30

TEST(Pki, TheCaCertifiesADevicesKeyAndOpensslAgrees) {
  TempDir dir;
  auto ca = CertificateAuthority::Open(dir / "ca", "airlock-gateway plant-1 devices",
                                       std::chrono::time_point_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now()));
  ASSERT_TRUE(ca) << ca.error().ToString();
  struct stat st {};
  ASSERT_EQ(::stat((dir / "ca" / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto key = MakeKey();
  ASSERT_TRUE(key) << key.error().ToString();
  auto csr = MakeCsr(*key, "whatever the device asks for");
  ASSERT_TRUE(csr) << csr.error().ToString();
  auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto cert = ca->Issue(*csr, "dev-0123456789abcdef", now, std::chrono::hours(24 * 365));
  ASSERT_TRUE(cert) << cert.error().ToString();
  EXPECT_EQ(cert->serial.size(), 32u);
  EXPECT_EQ(cert->not_after - now, std::chrono::hours(24 * 365));

  ASSERT_TRUE(WriteFileAtomic(dir / "device.pem", cert->pem));
  ASSERT_TRUE(WriteFileAtomic(dir / "device.key", *key, 0600));
  // The chain verifies, for TLS client use.
  CommandResult verified =
      RunCommand({"openssl", "verify", "-purpose", "sslclient", "-CAfile",
                  (dir / "ca" / "ca.pem").string(), (dir / "device.pem").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  // The subject is the id the gateway chose, not what the request said.
  CommandResult subject =
      RunCommand({"openssl", "x509", "-noout", "-subject", "-in", (dir / "device.pem").string()});
  EXPECT_NE(subject.out.find("CN = dev-0123456789abcdef"), std::string::npos) << subject.out;
  // The certificate is for the device's own key.
  CommandResult cert_key = RunCommand(
      {"openssl", "x509", "-noout", "-pubkey", "-in", (dir / "device.pem").string()});
  CommandResult own_key =
      RunCommand({"openssl", "pkey", "-pubout", "-in", (dir / "device.key").string()});
  EXPECT_EQ(cert_key.out, own_key.out);

  // Opened again: the same CA, not a new one.
  auto again = CertificateAuthority::Open(dir / "ca", "ignored", Now());
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->certificate_pem(), ca->certificate_pem());
}

// The revocation list the factory broker refuses revoked devices by (docs/security.md): openssl
// finds the revoked certificate revoked and the other one good.
TEST(Pki, ARevocationListNamesTheRevokedCertificatesAndOpensslAgrees) {
  TempDir dir;
  auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto ca = CertificateAuthority::Open(dir / "ca", "airlock-gateway plant-1 devices", now);
  ASSERT_TRUE(ca) << ca.error().ToString();
  auto kept = ca->MakeLeaf("dev-0000000000000001", {}, now, std::chrono::hours(24));
  auto revoked = ca->MakeLeaf("dev-0000000000000002", {}, now, std::chrono::hours(24));
  ASSERT_TRUE(kept && revoked);
  ASSERT_TRUE(WriteFileAtomic(dir / "kept.pem", kept->certificate.pem));
  ASSERT_TRUE(WriteFileAtomic(dir / "revoked.pem", revoked->certificate.pem));

  auto crl = ca->RevocationList({revoked->certificate.serial}, now, std::chrono::hours(24 * 30));
  ASSERT_TRUE(crl) << crl.error().ToString();
  ASSERT_TRUE(WriteFileAtomic(dir / "crl.pem", *crl));
  auto verify = [&](const char* cert) {
    return RunCommand({"openssl", "verify", "-crl_check", "-CAfile",
                       (dir / "ca" / "ca.pem").string(), "-CRLfile", (dir / "crl.pem").string(),
                       (dir / cert).string()});
  };
  CommandResult good = verify("kept.pem");
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  CommandResult bad = verify("revoked.pem");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE((bad.out + bad.err).find("certificate revoked"), std::string::npos)
      << bad.out << bad.err;

  // An empty list is a valid list; a serial that is not hex is refused.
  auto empty = ca->RevocationList({}, now, std::chrono::hours(24));
  ASSERT_TRUE(empty) << empty.error().ToString();
  ASSERT_TRUE(WriteFileAtomic(dir / "crl.pem", *empty));
  EXPECT_EQ(verify("revoked.pem").exit_code, 0);
  EXPECT_FALSE(ca->RevocationList({"not hex"}, now, std::chrono::hours(24)));
}

TEST(Pki, BadRequestsAreRefusedSayingWhy) {
  TempDir dir;
  auto ca = CertificateAuthority::Open(dir.path(), "ca", Now());
  ASSERT_TRUE(ca);
  auto refused = [&](std::string_view csr) {
    auto r = ca->Issue(csr, "dev-0000000000000001", Now(), std::chrono::hours(1));
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().ToString();
  };
  EXPECT_NE(refused("not a request").find("not a PEM CSR"), std::string::npos);
  // A request whose signature was altered: no proof that the requester holds the key.
  auto key = MakeKey();
  auto csr = MakeCsr(*key, "x");
  ASSERT_TRUE(csr);
  std::string tampered = *csr;
  std::size_t end = tampered.find("-----END");
  ASSERT_NE(end, std::string::npos);
  std::size_t at = end - 10;  // inside the signature's base64
  tampered[at] = tampered[at] == 'A' ? 'B' : 'A';
  std::string why = refused(tampered);
  EXPECT_TRUE(why.find("does not verify") != std::string::npos ||
              why.find("not a PEM CSR") != std::string::npos)
      << why;
  // Another kind of key (RSA) is refused.
  CommandResult rsa = RunCommand({"openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
                                  "-keyout", (dir / "rsa.key").string(), "-subj", "/CN=x", "-out",
                                  (dir / "rsa.csr").string()});
  ASSERT_EQ(rsa.exit_code, 0) << rsa.err;
  EXPECT_NE(refused(ReadAll(dir / "rsa.csr")).find("not P-256"), std::string::npos);
  EXPECT_FALSE(MakeCsr(ReadAll(dir / "rsa.key"), "x"));
}

TEST(Pki, AnIncompleteOrMismatchedCaIsNotReplaced) {
  TempDir dir;
  ASSERT_TRUE(CertificateAuthority::Open(dir / "a", "a", Now()));
  ASSERT_TRUE(CertificateAuthority::Open(dir / "b", "b", Now()));
  // A key without its certificate: refused, and nothing is made in its place.
  fs::remove(dir / "a" / "ca.pem");
  auto incomplete = CertificateAuthority::Open(dir / "a", "a", Now());
  ASSERT_FALSE(incomplete);
  EXPECT_EQ(incomplete.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(incomplete.error().message().find("ca.pem is missing"), std::string::npos)
      << incomplete.error().ToString();
  EXPECT_FALSE(fs::exists(dir / "a" / "ca.pem"));
  // b's certificate beside a's key.
  fs::copy_file(dir / "b" / "ca.pem", dir / "a" / "ca.pem");
  auto mismatched = CertificateAuthority::Open(dir / "a", "a", Now());
  ASSERT_FALSE(mismatched);
  EXPECT_NE(mismatched.error().message().find("does not belong"), std::string::npos)
      << mismatched.error().ToString();
}

}  // namespace
}  // namespace airlock::pki
