// airlock keygen, airlock root init (rotate and sign: root_cmd.cpp).

#include <cstdio>
#include <filesystem>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "core/pkcs11.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::cli {
namespace fs = std::filesystem;

void AddKeygen(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "keygen",
      "Make an Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub; with --pkcs11, the "
      "private key is made in a PKCS#11 token and only NAME.pub is written");
  auto name = std::make_shared<std::string>();
  auto token_uri = std::make_shared<std::string>();
  cmd->add_option("name", *name, "path and base name of the key files, e.g. keys/alice")
      ->required();
  cmd->add_option("--pkcs11", *token_uri,
                  "make the key in this PKCS#11 token, e.g. "
                  "'pkcs11:token=airlock;object=alice?module-path=/usr/lib/softhsm/libsofthsm2.so' "
                  "(the PIN from pin-source=file:PATH in the URI or AIRLOCK_PKCS11_PIN); prints "
                  "the key id and the URI to sign with (-k)");
  cmd->callback([&ctx, &action, name, token_uri] {
    action = [&ctx, name, token_uri] {
      fs::path priv = *name + ".key";
      fs::path pub = *name + ".pub";
      if (!token_uri->empty()) {
        auto run = [&]() -> Status {
          // Checked first: a key made in the token and then not written down would be lost.
          if (fs::exists(pub)) {
            return Fail(ErrorCode::kAlreadyExists,
                        pub.string() + " already exists; choose another name or remove it first");
          }
          if (!pub.parent_path().empty()) {
            AIRLOCK_RETURN_IF_ERROR(MakeDirectories(pub.parent_path()));
          }
          std::string uri;
          AIRLOCK_ASSIGN_OR_RETURN(
              PrivateKey key,
              pkcs11::GenerateKey(*token_uri, pkcs11::Environment::FromProcess(), &uri));
          AIRLOCK_RETURN_IF_ERROR(WithContext(WriteFileAtomic(pub, key.public_key().ToPem(), 0644),
                                              "made the key " + uri +
                                                  " in the token, but could not write its "
                                                  "public key"));
          ctx.Say("made the key in the token and wrote " + pub.string() + "; sign with -k '" + uri +
                  "'");
          std::printf("%s\n%s\n", key.id().c_str(), uri.c_str());
          return {};
        };
        auto s = run();
        return s ? kExitOk : ReportError(s.error());
      }
      auto key = PrivateKey::Generate();
      if (!key) {
        return ReportError(key.error());
      }
      if (!priv.parent_path().empty()) {
        if (auto s = MakeDirectories(priv.parent_path()); !s) {
          return ReportError(s.error());
        }
      }
      if (auto s = key->Save(priv, pub); !s) {
        return ReportError(s.error());
      }
      ctx.Say("wrote " + priv.string() + " (private, keep it secret) and " + pub.string());
      std::printf("%s\n", key->id().c_str());
      return kExitOk;
    };
  });
}

void AddRoot(CLI::App& app, Context& ctx, Action& action) {
  auto* root_cmd = app.add_subcommand("root", "Manage the root of trust");
  root_cmd->require_subcommand(1);
  auto* init = root_cmd->add_subcommand(
      "init", "Write a root document: which keys may publish releases, and how many must sign");
  struct Args {
    std::vector<std::string> root_keys;
    std::vector<std::string> publishers;
    std::vector<std::string> release_managers;
    int threshold = 1;
    int root_threshold = 1;
    int release_manager_threshold = 1;
    std::string expires = "365d";
    std::string output = "root.json";
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  init->add_option("--root-key", a->root_keys,
                   "private key that signs the root (repeat for several; they form the root role)")
      ->required();
  init->add_option("--publisher", a->publishers,
                   "publisher key (.pub or .key) allowed to sign releases; repeatable")
      ->required();
  init->add_option("--threshold", a->threshold, "publisher signatures a release needs")
      ->capture_default_str();
  init->add_option("--root-threshold", a->root_threshold, "root signatures a root needs")
      ->capture_default_str();
  init->add_option("--release-manager", a->release_managers,
                   "release-manager key allowed to sign channel documents; repeatable");
  init->add_option("--release-manager-threshold", a->release_manager_threshold,
                   "release-manager signatures a channel document needs")
      ->capture_default_str();
  init->add_option("--expires", a->expires, "how long the root is valid (e.g. 365d)")
      ->capture_default_str();
  init->add_option("-o,--output", a->output, "where to write the root")->capture_default_str();
  init->add_flag("-f,--force", a->force, "replace an existing output file");
  init->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto run = [&]() -> Status {
        if (fs::exists(a->output) && !a->force) {
          return Fail(ErrorCode::kAlreadyExists, a->output + " exists (use --force to replace it)");
        }
        AIRLOCK_ASSIGN_OR_RETURN(auto signers, LoadPrivateKeys(a->root_keys));
        AIRLOCK_ASSIGN_OR_RETURN(TimePoint now, ctx.Now());
        AIRLOCK_ASSIGN_OR_RETURN(auto validity, ParseDuration(a->expires));
        trust::Root root;
        root.version = 1;
        root.expires = now + validity;
        auto add_role = [&](const std::string& role, const std::vector<std::string>& paths,
                            int threshold) { return SetRole(root, role, paths, threshold); };
        AIRLOCK_RETURN_IF_ERROR(
            add_role(std::string(trust::kRoleRoot), a->root_keys, a->root_threshold));
        AIRLOCK_RETURN_IF_ERROR(
            add_role(std::string(trust::kRolePublisher), a->publishers, a->threshold));
        if (!a->release_managers.empty()) {
          AIRLOCK_RETURN_IF_ERROR(add_role(std::string(trust::kRoleReleaseManager),
                                           a->release_managers, a->release_manager_threshold));
        }
        trust::SignedDocument doc = trust::SignedDocument::Wrap(root.ToJson());
        for (const auto& k : signers) {
          AIRLOCK_RETURN_IF_ERROR(doc.Sign(k));
        }
        // Check what we made the way every verifier will.
        AIRLOCK_RETURN_IF_ERROR(trust::VerifyRoot(doc, now).map([](auto) {}));
        AIRLOCK_ASSIGN_OR_RETURN(std::string text, doc.Serialize());
        AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(a->output, text));
        ctx.Say("wrote " + a->output + ": " + std::to_string(a->publishers.size()) +
                " publisher key(s), threshold " + std::to_string(a->threshold) + ", valid until " +
                FormatRfc3339(root.expires));
        return {};
      };
      auto s = run();
      return s ? kExitOk : ReportError(s.error());
    };
  });
  AddRootRotation(*root_cmd, ctx, action);
}

}  // namespace airlock::cli
