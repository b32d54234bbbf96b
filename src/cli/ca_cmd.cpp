// `airlock ca init` and `airlock ca issue`: a small certificate authority for the sites that have
// no PKI of their own (docs/security.md, "Certificates"): the hub's HTTPS, a cloud broker's, and
// client certificates. A site with a PKI uses its own certificates instead; Airlock only reads
// PEM files.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/common.hpp"
#include "cli/hub_common.hpp"
#include "core/fs.hpp"
#include "core/pki.hpp"
#include "core/time.hpp"

namespace airlock::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::hours kDefaultValidity{2 * 365 * 24};

Status Issue(const fs::path& ca_dir, const std::string& name, const std::vector<std::string>& hosts,
             const fs::path& out, int days, bool quiet) {
  if (!fs::exists(ca_dir / "ca.key") || !fs::exists(ca_dir / "ca.pem")) {
    return Fail(ErrorCode::kNotFound,
                "no CA in " + ca_dir.string() + ": make one with airlock ca init " +
                    ca_dir.string());
  }
  auto now = std::chrono::system_clock::now();
  AIRLOCK_ASSIGN_OR_RETURN(auto ca, pki::CertificateAuthority::Open(ca_dir, "", now));
  std::chrono::seconds validity =
      days > 0 ? std::chrono::seconds(std::chrono::hours(24) * days) : kDefaultValidity;
  fs::path key_path = out.string() + ".key";
  fs::path cert_path = out.string() + ".pem";
  if (fs::exists(key_path) || fs::exists(cert_path)) {
    return Fail(ErrorCode::kAlreadyExists,
                key_path.string() + " or " + cert_path.string() +
                    " exists: remove them first, or choose another --out");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto leaf, ca.MakeLeaf(name, hosts, now, validity));
  if (out.has_parent_path()) {
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(out.parent_path()));
  }
  AIRLOCK_RETURN_IF_ERROR(pki::WriteKeyAndCertificate(leaf, out));
  const pki::IssuedCertificate& issued = leaf.certificate;
  if (!quiet) {
    std::printf("%s certificate for %s, serial %s, valid until %s\n  %s\n  %s (0600)\n",
                hosts.empty() ? "client" : "server", name.c_str(), issued.serial.c_str(),
                FormatRfc3339(issued.not_after).c_str(), cert_path.c_str(), key_path.c_str());
  }
  return {};
}

}  // namespace

void AddCa(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "ca", "A certificate authority for HTTPS and MQTT over TLS, for sites without a PKI");
  cmd->require_subcommand(1);
  struct Args {
    std::string dir;
    std::string name = "Airlock CA";
    std::string leaf;
    std::vector<std::string> hosts;
    std::string out;
    int days = 0;
  };
  auto a = std::make_shared<Args>();
  auto* init = cmd->add_subcommand(
      "init", "Make a CA in DIR: ca.key (0600) and ca.pem (10 years); nothing is overwritten");
  init->add_option("dir", a->dir, "the CA's directory")->required();
  init->add_option("--name", a->name, "the CA's name (its certificate's CN)")
      ->capture_default_str();
  init->callback([&action, &ctx, a] {
    action = [a, &ctx]() -> int {
      return RunCommand([&]() -> Status {
        if (fs::exists(fs::path(a->dir) / "ca.key") || fs::exists(fs::path(a->dir) / "ca.pem")) {
          return Fail(ErrorCode::kAlreadyExists,
                      "a CA exists in " + a->dir + " already; it is kept as it is");
        }
        AIRLOCK_ASSIGN_OR_RETURN(
            auto ca, pki::CertificateAuthority::Open(a->dir, a->name,
                                                     std::chrono::system_clock::now()));
        if (!ctx.quiet) {
          std::printf("made CA \"%s\": %s/ca.pem, key %s/ca.key (0600)\n"
                      "issue a server certificate: airlock ca issue --ca %s --name hub.example "
                      "--host hub.example -o hub\n",
                      a->name.c_str(), a->dir.c_str(), a->dir.c_str(), a->dir.c_str());
        }
        return {};
      });
    };
  });
  auto* issue = cmd->add_subcommand(
      "issue", "Make a key and a certificate from the CA: a server's with --host, else a client's");
  issue->add_option("--ca", a->dir, "the CA's directory (airlock ca init)")->required();
  issue->add_option("--name", a->leaf, "the certificate's CN (a host, a gateway, a user)")
      ->required();
  issue->add_option("--host", a->hosts,
                    "a host name or address clients connect to (repeatable): a server "
                    "certificate");
  issue->add_option("-o,--out", a->out, "writes OUT.pem and OUT.key (0600)")->required();
  issue->add_option("--days", a->days, "validity in days (default 730)");
  issue->callback([&action, &ctx, a] {
    action = [a, &ctx]() -> int {
      return RunCommand(
          [&]() -> Status { return Issue(a->dir, a->leaf, a->hosts, a->out, a->days, ctx.quiet); });
    };
  });
}

}  // namespace airlock::cli
