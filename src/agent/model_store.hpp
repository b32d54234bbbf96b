#pragma once
// The agent's model store: verified packages on disk, side by side (DESIGN §7).
//
//   STORE/models/NAME/VERSION/   an OCI layout holding exactly a package that verified
//   STORE/state.json             per model, the highest release counter ever trusted
//
// Install copies a package into a staging directory first and verifies the copy, so what is
// stored is what was verified; it then renames it into place and records the counter, both
// atomically. A later install of the same model with a lower counter is a rollback and is
// refused. Every refusal leaves the store as it was. Not thread-safe: one agent owns a store.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::agent {

struct InstalledModel {
  std::string name;
  std::string version;
  std::uint64_t release_counter = 0;
  std::string index_digest;
  std::filesystem::path path;
};

// How a package is installed. By default (a manual `airlock-agent install`) the store refuses a
// release counter below the one it trusts for the model.
struct InstallOptions {
  // A release a gateway's directive approved through a verified channel document
  // (trust::CheckDirectiveModel): the package is verified against exactly this release document,
  // and the counter floor is not applied, because the channel is what guards a managed device
  // against rollbacks, and a rollback the channel's signers allow must install.
  std::optional<trust::SignedDocument> approved_release;
};

class ModelStore {
 public:
  // Opens (creating if needed) the store at dir.
  [[nodiscard]] static Result<ModelStore> Open(const std::filesystem::path& dir);

  // Verifies package (a layout directory or .tar) against root at now, for platform, with the
  // model's trusted counter, and installs it. Installing the same release again is a no-op;
  // another package under an installed version is refused.
  [[nodiscard]] Result<InstalledModel> Install(const std::filesystem::path& package,
                                               const trust::SignedDocument& root, TimePoint now,
                                               const std::string& platform,
                                               const InstallOptions& install = {});

  // Installed models, sorted by name then version.
  [[nodiscard]] Result<std::vector<InstalledModel>> List() const;

  // The highest release counter trusted for a model (0 if none).
  [[nodiscard]] Result<std::uint64_t> TrustedCounter(const std::string& model) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  explicit ModelStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
};

// "linux/amd64" or "linux/arm64" for the machine this runs on.
std::string HostPlatform();

}  // namespace airlock::agent
