// airlock root rotate, airlock root sign: the next version of a root, and the signatures it
// gathers (docs/trust.md, "Rotating the root").

#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::cli {
namespace fs = std::filesystem;

Status SetRole(trust::Root& root, const std::string& role, const std::vector<std::string>& paths,
               int threshold) {
  trust::RoleSpec spec;
  spec.threshold = threshold;
  for (const auto& p : paths) {
    AIRLOCK_ASSIGN_OR_RETURN(PublicKey k, PublicKey::Load(p));
    if (std::find(spec.keyids.begin(), spec.keyids.end(), k.id()) != spec.keyids.end()) {
      return Fail(ErrorCode::kInvalidArgument, p + " is the same key as another " + role + " key");
    }
    spec.keyids.push_back(k.id());
    root.keys.emplace(k.id(), k);
  }
  if (threshold < 1 || static_cast<std::size_t>(threshold) > spec.keyids.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                "the " + role + " threshold must be between 1 and " +
                    std::to_string(spec.keyids.size()) + " (the number of its keys)");
  }
  root.roles[role] = spec;
  return {};
}

namespace {

Result<trust::SignedDocument> ReadDocument(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, trust::kMaxDocumentSize));
  return WithContext(trust::SignedDocument::Parse(text), path);
}

// Whether doc is a complete rotation of the root in from_path, said for a person.
void SayWhetherComplete(const Context& ctx, const std::string& from_path,
                        const trust::SignedDocument& doc, TimePoint now, const std::string& out) {
  auto from = ReadDocument(from_path);
  auto from_root = from ? trust::Root::FromJson(from->body()) : Result<trust::Root>(
                                                                    Fail(from.error()));
  if (!from_root) {
    ctx.Say("could not read " + from_path + " to check the rotation: " +
            from_root.error().ToString());
    return;
  }
  auto update = trust::UpdateRoot(*from_root, {doc}, now);
  if (update && !update->accepted.empty()) {
    ctx.Say("the rotation is complete: what trusts version " +
            std::to_string(from_root->version) + " accepts it; give it to the hub with " +
            "`airlock-hub root update " + out + "`");
  } else {
    ctx.Say("not yet a valid rotation of " + from_path + ": " +
            (update ? std::string("it is not the next version") : update.error().ToString()) +
            "; add signatures with `airlock root sign " + out + " --from " + from_path +
            " -k KEY`");
  }
}

}  // namespace

void AddRootRotation(CLI::App& root_cmd, Context& ctx, Action& action) {
  auto* rotate = root_cmd.add_subcommand(
      "rotate",
      "Write the next version of a root: other keys, thresholds or expiry. It is valid once "
      "signed by a threshold of the current root keys and of its own (`root sign` adds more)");
  struct Args {
    std::string from;
    std::vector<std::string> root_keys, publishers, release_managers, signers;
    std::optional<int> root_threshold, threshold, release_manager_threshold;
    std::string expires = "365d";
    std::string output;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  rotate->add_option("--from", a->from, "the root trusted now")->required();
  rotate->add_option("--root-key", a->root_keys,
                     "the new root role's keys (.pub or .key), replacing the current ones; "
                     "repeatable");
  rotate->add_option("--root-threshold", a->root_threshold, "root signatures a root needs");
  rotate->add_option("--publisher", a->publishers,
                     "the new publisher keys, replacing the current ones; repeatable");
  rotate->add_option("--threshold", a->threshold, "publisher signatures a release needs");
  rotate->add_option("--release-manager", a->release_managers,
                     "the new release-manager keys, replacing the current ones; repeatable");
  rotate->add_option("--release-manager-threshold", a->release_manager_threshold,
                     "release-manager signatures a channel document needs");
  rotate->add_option("--expires", a->expires, "how long the new root is valid")
      ->capture_default_str();
  rotate->add_option("-k,--key", a->signers,
                     "private key to sign with (current and new root keys); repeatable")
      ->required();
  rotate->add_option("-o,--output", a->output, "where to write the new root")->required();
  rotate->add_flag("-f,--force", a->force, "replace an existing output file");
  rotate->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto run = [&]() -> Status {
        if (fs::exists(a->output) && !a->force) {
          return Fail(ErrorCode::kAlreadyExists, a->output + " exists (use --force to replace it)");
        }
        AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument from_doc, ReadDocument(a->from));
        AIRLOCK_ASSIGN_OR_RETURN(trust::Root next,
                                 WithContext(trust::Root::FromJson(from_doc.body()), a->from));
        AIRLOCK_ASSIGN_OR_RETURN(auto signers, LoadPrivateKeys(a->signers));
        AIRLOCK_ASSIGN_OR_RETURN(TimePoint now, ctx.Now());
        AIRLOCK_ASSIGN_OR_RETURN(auto validity, ParseDuration(a->expires));
        next.version += 1;
        next.expires = now + validity;
        // Each role: the keys given replace its keys; a threshold alone keeps them.
        auto update_role = [&](std::string_view role, const std::vector<std::string>& paths,
                               std::optional<int> threshold) -> Status {
          const std::string name(role);
          auto it = next.roles.find(name);
          if (paths.empty()) {
            if (threshold && it == next.roles.end()) {
              return Fail(ErrorCode::kInvalidArgument,
                          "the root has no " + name + " role: give its keys too");
            }
            if (threshold) {
              it->second.threshold = *threshold;
              if (static_cast<std::size_t>(*threshold) > it->second.keyids.size() ||
                  *threshold < 1) {
                return Fail(ErrorCode::kInvalidArgument,
                            "the " + name + " threshold must be between 1 and " +
                                std::to_string(it->second.keyids.size()));
              }
            }
            return {};
          }
          int keep = it == next.roles.end() ? 1 : it->second.threshold;
          return SetRole(next, name, paths,
                         threshold.value_or(std::min<int>(keep, static_cast<int>(paths.size()))));
        };
        AIRLOCK_RETURN_IF_ERROR(update_role(trust::kRoleRoot, a->root_keys, a->root_threshold));
        AIRLOCK_RETURN_IF_ERROR(update_role(trust::kRolePublisher, a->publishers, a->threshold));
        AIRLOCK_RETURN_IF_ERROR(update_role(trust::kRoleReleaseManager, a->release_managers,
                                            a->release_manager_threshold));
        // Keys no role lists any more leave the root.
        std::erase_if(next.keys, [&](const auto& entry) {
          for (const auto& [role, spec] : next.roles) {
            if (std::find(spec.keyids.begin(), spec.keyids.end(), entry.first) !=
                spec.keyids.end()) {
              return false;
            }
          }
          return true;
        });
        trust::SignedDocument doc = trust::SignedDocument::Wrap(next.ToJson());
        for (const auto& k : signers) {
          AIRLOCK_RETURN_IF_ERROR(doc.Sign(k));
        }
        AIRLOCK_ASSIGN_OR_RETURN(std::string text, doc.Serialize());
        AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(a->output, text));
        ctx.Say("wrote " + a->output + ": root version " + std::to_string(next.version) +
                ", valid until " + FormatRfc3339(next.expires));
        SayWhetherComplete(ctx, a->from, doc, now, a->output);
        return {};
      };
      auto s = run();
      return s ? kExitOk : ReportError(s.error());
    };
  });

  auto* sign = root_cmd.add_subcommand(
      "sign", "Add signatures to a root document (a rotation signed by several key holders)");
  struct SignArgs {
    std::string file, from;
    std::vector<std::string> signers;
  };
  auto s_args = std::make_shared<SignArgs>();
  sign->add_option("file", s_args->file, "the root document; signed in place")->required();
  sign->add_option("-k,--key", s_args->signers, "private key to sign with; repeatable")
      ->required();
  sign->add_option("--from", s_args->from,
                   "the root trusted now: say whether the rotation is complete");
  sign->callback([&ctx, &action, s_args] {
    action = [&ctx, s_args]() -> int {
      auto run = [&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument doc, ReadDocument(s_args->file));
        if (doc.type() != "root") {
          return Fail(ErrorCode::kInvalidArgument,
                      s_args->file + " is a " + doc.type() + " document, not a root");
        }
        AIRLOCK_ASSIGN_OR_RETURN(auto signers, LoadPrivateKeys(s_args->signers));
        for (const auto& k : signers) {
          AIRLOCK_RETURN_IF_ERROR(doc.Sign(k));
        }
        AIRLOCK_ASSIGN_OR_RETURN(std::string text, doc.Serialize());
        AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(s_args->file, text));
        ctx.Say("signed " + s_args->file + ": " + std::to_string(doc.signatures().size()) +
                " signature(s)");
        if (!s_args->from.empty()) {
          AIRLOCK_ASSIGN_OR_RETURN(TimePoint now, ctx.Now());
          SayWhetherComplete(ctx, s_args->from, doc, now, s_args->file);
        }
        return {};
      };
      auto st = run();
      return st ? kExitOk : ReportError(st.error());
    };
  });
}

}  // namespace airlock::cli
