// `airlock ca init` and `airlock ca issue` (issue 8; docs/security.md, "Certificates"): the
// certificates it makes serve and verify in a real TLS handshake. (In hub_test, which is built
// with httplib's TLS.)
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <thread>

#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;

fs::perms Mode(const fs::path& p) { return fs::status(p).permissions() & fs::perms::all; }

TEST(AirlockCa, InitIssuesCertificatesThatServeAndVerifyAndOverwritesNothing) {
  TempDir dir;
  fs::path ca = dir / "ca";
  auto made = RunAirlock({"ca", "init", ca.string(), "--name", "Test Plant CA"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(Mode(ca / "ca.key"), fs::perms::owner_read | fs::perms::owner_write);
  auto again = RunAirlock({"ca", "init", ca.string()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;

  auto server = RunAirlock({"ca", "issue", "--ca", ca.string(), "--name", "hub", "--host",
                            "127.0.0.1", "--host", "localhost", "-o", (dir / "hub").string()});
  ASSERT_EQ(server.exit_code, 0) << server.err;
  EXPECT_NE(server.out.find("server certificate for hub"), std::string::npos) << server.out;
  EXPECT_EQ(Mode(dir / "hub.key"), fs::perms::owner_read | fs::perms::owner_write);
  auto client = RunAirlock({"ca", "issue", "--ca", ca.string(), "--name", "operator-1", "-o",
                            (dir / "operator").string()});
  ASSERT_EQ(client.exit_code, 0) << client.err;
  auto overwrite = RunAirlock({"ca", "issue", "--ca", ca.string(), "--name", "hub", "--host",
                               "127.0.0.1", "-o", (dir / "hub").string()});
  EXPECT_NE(overwrite.exit_code, 0);
  auto no_ca = RunAirlock({"ca", "issue", "--ca", (dir / "none").string(), "--name", "x", "-o",
                           (dir / "x").string()});
  EXPECT_NE(no_ca.exit_code, 0);
  EXPECT_NE(no_ca.err.find("airlock ca init"), std::string::npos) << no_ca.err;

  // The server certificate serves HTTPS that a client trusting the CA accepts, for its host.
  httplib::SSLServer https((dir / "hub.pem").c_str(), (dir / "hub.key").c_str());
  ASSERT_TRUE(https.is_valid());
  https.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  int port = https.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { https.listen_after_bind(); });
  httplib::SSLClient trusting("127.0.0.1", port);
  trusting.set_ca_cert_path((ca / "ca.pem").c_str());
  trusting.enable_server_certificate_verification(true);
  auto r = trusting.Get("/");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->body, "ok");
  // A client certificate is no server's.
  httplib::SSLServer wrong((dir / "operator.pem").c_str(), (dir / "operator.key").c_str());
  wrong.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  int wrong_port = wrong.bind_to_any_port("127.0.0.1");
  std::thread wrong_serving([&] { wrong.listen_after_bind(); });
  httplib::SSLClient checking("127.0.0.1", wrong_port);
  checking.set_ca_cert_path((ca / "ca.pem").c_str());
  checking.enable_server_certificate_verification(true);
  EXPECT_FALSE(checking.Get("/"));
  https.stop();
  wrong.stop();
  serving.join();
  wrong_serving.join();
}

}  // namespace
}  // namespace airlock::testing
