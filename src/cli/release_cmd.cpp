// airlock sign, airlock verify.

#include <cstdio>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "pkg/release.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::cli {

void AddSign(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "sign", "Sign a package: add a release document, or co-sign the one it has");
  struct Args {
    std::string package;
    std::vector<std::string> keys;
    std::optional<std::uint64_t> counter;
    std::string expires = "365d";
    bool expires_given = false;
    std::string ref;
    std::string output;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("package", a->package, "package directory or .tar")->required();
  cmd->add_option("-k,--key", a->keys, "private key to sign with; repeat for several")->required();
  cmd->add_option("--counter", a->counter,
                  "release counter: must grow with every release of the model. Without it, the "
                  "keys co-sign the release already in the package");
  auto* expires =
      cmd->add_option("--expires", a->expires, "how long a new release is valid (e.g. 365d)")
          ->capture_default_str();
  cmd->add_option("--ref", a->ref, "which package in the layout (its version tag)");
  cmd->add_option("-o,--output", a->output, "also write the release document to this file");
  cmd->callback([&ctx, &action, a, expires] {
    a->expires_given = expires->count() > 0;
    action = [&ctx, a]() -> int {
      auto run = [&]() -> Result<pkg::SignResult> {
        AIRLOCK_ASSIGN_OR_RETURN(auto keys, LoadPrivateKeys(a->keys));
        AIRLOCK_ASSIGN_OR_RETURN(TimePoint now, ctx.Now());
        AIRLOCK_ASSIGN_OR_RETURN(auto validity, ParseDuration(a->expires));
        pkg::SignOptions options;
        options.ref = a->ref;
        options.counter = a->counter;
        options.created = now;
        options.expires = now + validity;
        options.expires_given = a->expires_given;
        AIRLOCK_ASSIGN_OR_RETURN(pkg::SignResult result,
                                 pkg::SignPackage(a->package, keys, options));
        if (!a->output.empty()) {
          AIRLOCK_ASSIGN_OR_RETURN(std::string text, result.document.Serialize());
          AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(a->output, text));
        }
        return result;
      };
      auto r = run();
      if (!r) {
        return ReportError(r.error());
      }
      const auto& body = r->document.body();
      std::printf("%s %s %s: release counter %llu, %zu signature(s), expires %s\n",
                  r->added_to_existing ? "co-signed" : "signed", trust::StringOr(body, "model").c_str(),
                  trust::StringOr(body, "version").c_str(),
                  static_cast<unsigned long long>(trust::IntOr(body, "release_counter")),
                  r->document.signatures().size(), trust::StringOr(body, "expires").c_str());
      return kExitOk;
    };
  });
}

void AddVerify(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "verify",
      "Verify a package against a root: signatures, threshold, counter, expiry, every digest "
      "and size, platform. Exit code 3 when verification fails");
  struct Args {
    std::string package;
    std::string root;
    std::uint64_t trusted_counter = 0;
    std::string platform;
    std::string release;
    std::string ref;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("package", a->package, "package directory or .tar")->required();
  cmd->add_option("--root", a->root, "the root document to trust")->required();
  cmd->add_option("--trusted-counter", a->trusted_counter,
                  "refuse a release counter below this (the last one you trusted)");
  cmd->add_option("--platform", a->platform, "require a variant for this os/arch[/variant]");
  cmd->add_option("--release", a->release,
                  "a release document file (default: the one stored in the package)");
  cmd->add_option("--ref", a->ref, "which package in the layout (its version tag)");
  cmd->add_flag("--json", a->json, "print the verified release as JSON");
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto root_text = ReadFile(a->root, trust::kMaxDocumentSize);
      if (!root_text) {
        return ReportError(root_text.error());
      }
      auto root = trust::SignedDocument::Parse(*root_text);
      if (!root) {
        return ReportError(std::move(root.error()).WithContext(a->root), kExitVerification);
      }
      auto now = ctx.Now();
      if (!now) {
        return ReportError(now.error(), kExitUsage);
      }
      pkg::VerifyOptions options;
      options.ref = a->ref;
      options.now = *now;
      options.trusted_counter = a->trusted_counter;
      if (!a->platform.empty()) options.platform = a->platform;
      if (!a->release.empty()) options.release_file = a->release;
      options.say = [&ctx](const std::string& s) { ctx.Say(s); };
      options.progress = [&ctx](const std::string& label, std::uint64_t done, std::uint64_t total) {
        ctx.Progress(label, done, total);
      };
      auto r = pkg::VerifyPackage(a->package, *root, options);
      if (!r) {
        std::fprintf(stderr, "airlock: verification FAILED for %s\n", a->package.c_str());
        return ReportError(r.error(), ExitCodeFor(r.error()));
      }
      if (a->json) {
        nlohmann::json j = {{"verified", true},
                            {"release", r->release.ToJson()},
                            {"root_version", r->root.version},
                            {"blobs_checked", r->blobs_checked}};
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf("verified %s %s (release counter %llu, %zu blob(s) checked)\n",
                    r->release.model.c_str(), r->release.version.c_str(),
                    static_cast<unsigned long long>(r->release.release_counter), r->blobs_checked);
      }
      return kExitOk;
    };
  });
}

}  // namespace airlock::cli
