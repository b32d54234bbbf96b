#pragma once
// Certificates for tests of TLS: a CA made in a directory, and leaf certificates from it.

#include <filesystem>
#include <string>
#include <vector>

#include "core/fs.hpp"
#include "core/pki.hpp"

#include <gtest/gtest.h>

namespace airlock::testing {

struct TestCertificate {
  std::filesystem::path ca;    // the CA's certificate (PEM)
  std::filesystem::path cert;  // the leaf's
  std::filesystem::path key;   // its key (0600)
};

// A CA in dir/ca (made at the first call) and a leaf named `name` in dir: a server certificate
// for names when names is not empty, else a client certificate with CN name.
inline TestCertificate MakeTestCertificate(const std::filesystem::path& dir, const std::string& name,
                                           const std::vector<std::string>& names = {}) {
  auto now = std::chrono::system_clock::now();
  auto ca = pki::CertificateAuthority::Open(dir / "ca", "test CA", now).value();
  TestCertificate out{dir / "ca" / "ca.pem", dir / (name + ".pem"), dir / (name + ".key")};
  auto leaf = ca.MakeLeaf(name, names, now, std::chrono::hours(24)).value();
  EXPECT_TRUE(pki::WriteKeyAndCertificate(leaf, dir / name));
  return out;
}

}  // namespace airlock::testing
