#include "trust/root_store.hpp"

#include <algorithm>
#include <string>

#include "core/fs.hpp"

namespace airlock::trust {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSuffix = ".root.json";

Result<SignedDocument> ReadRoot(const fs::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, kMaxDocumentSize));
  return WithContext(SignedDocument::Parse(text), path.string());
}

}  // namespace

Result<TrustedRoot> LoadTrustedRoot(const fs::path& pinned, const fs::path& dir, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(SignedDocument pinned_doc, ReadRoot(pinned));
  auto pinned_root = WithContext(Root::FromJson(pinned_doc.body()), pinned.string());
  if (!pinned_root) {
    return Fail(std::move(pinned_root.error()));
  }
  AIRLOCK_RETURN_IF_ERROR(WithContext(CheckThreshold(pinned_doc, *pinned_root, kRoleRoot),
                                      "the pinned root " + pinned.string()));
  std::vector<SignedDocument> rotations;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name.ends_with(kSuffix)) {
        files.push_back(entry.path());
      }
    }
    if (ec) {
      return Fail(ErrnoError("listing", dir));
    }
    for (const fs::path& file : files) {
      AIRLOCK_ASSIGN_OR_RETURN(SignedDocument doc, ReadRoot(file));
      rotations.push_back(std::move(doc));
    }
  }
  auto update = UpdateRoot(*pinned_root, rotations, now);
  if (!update) {
    return Fail(std::move(update.error())
                    .WithContext("the root pinned in " + pinned.string() +
                                 (rotations.empty() ? std::string()
                                                    : " and its rotations in " + dir.string())));
  }
  TrustedRoot trusted{.root = std::move(update->root),
                      .document = update->accepted.empty() ? pinned_doc : update->accepted.back(),
                      .rotations = std::move(update->accepted)};
  return trusted;
}

Result<RootUpdate> AcceptRootRotations(TrustedRoot& current, const fs::path& dir,
                                       const std::vector<SignedDocument>& docs, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(RootUpdate update, UpdateRoot(current.root, docs, now));
  if (update.accepted.empty()) {
    return update;
  }
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
  for (const SignedDocument& doc : update.accepted) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, doc.Serialize());
    std::string version = std::to_string(doc.body().value("version", std::int64_t{0}));
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir / (version + std::string(kSuffix)), text));
  }
  current.root = update.root;
  current.document = update.accepted.back();
  current.rotations.insert(current.rotations.end(), update.accepted.begin(),
                           update.accepted.end());
  return update;
}

Result<std::string> RootCommand(const fs::path& pinned, const fs::path& dir,
                                const std::vector<std::string>& files, TimePoint now,
                                std::string_view restart) {
  AIRLOCK_ASSIGN_OR_RETURN(TrustedRoot trusted, LoadTrustedRoot(pinned, dir, now));
  const std::string before = std::to_string(trusted.root.version);
  if (files.empty()) {
    std::string out = "root version " + before + ", expires " +
                      FormatRfc3339(trusted.root.expires) + ", " +
                      std::to_string(trusted.rotations.size()) + " rotation(s) since " +
                      pinned.string() + "\n";
    for (const auto& [role, spec] : trusted.root.roles) {
      out += "  " + role + ": " + std::to_string(spec.threshold) + " of " +
             std::to_string(spec.keyids.size()) + " key(s)\n";
    }
    return out;
  }
  std::vector<SignedDocument> docs;
  for (const std::string& file : files) {
    AIRLOCK_ASSIGN_OR_RETURN(SignedDocument doc, ReadRoot(file));
    docs.push_back(std::move(doc));
  }
  AIRLOCK_ASSIGN_OR_RETURN(RootUpdate update, AcceptRootRotations(trusted, dir, docs, now));
  if (update.accepted.empty()) {
    return "root version " + before + " is already trusted: nothing to do\n";
  }
  std::string out = "trusted root version " + std::to_string(trusted.root.version) + " (was " +
                    before + "), kept in " + dir.string() + "\n";
  if (!update.rotated_roles.empty()) {
    std::string roles;
    for (const auto& r : update.rotated_roles) {
      roles += (roles.empty() ? "" : ", ") + r;
    }
    out += "keys removed from: " + roles +
           (update.channel_keys_rotated
                ? " (the devices will forget the channel versions they trust)"
                : "") +
           "\n";
  }
  return out + std::string(restart) + "\n";
}

}  // namespace airlock::trust
