#include "agent/model_store.hpp"

#include <sys/utsname.h>

#include <algorithm>

#include "core/fs.hpp"
#include "pkg/layout.hpp"
#include "pkg/release.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::agent {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::uint64_t kMaxState = 1 << 20;

Result<json> ReadState(const fs::path& dir) {
  fs::path file = dir / "state.json";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return json{{"models", json::object()}};
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(file, kMaxState));
  AIRLOCK_ASSIGN_OR_RETURN(json state, trust::ParseJson(text, kMaxState, file.string()));
  if (!state.is_object() || !state.contains("models") || !state["models"].is_object()) {
    return Fail(ErrorCode::kCorrupt, file.string() + " is not a model store state file");
  }
  return state;
}

Result<InstalledModel> Describe(const fs::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(path));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Descriptor index, pkg::FindModelIndex(*reader, ""));
  AIRLOCK_ASSIGN_OR_RETURN(auto release, pkg::FindRelease(*reader, index));
  if (!release) {
    return Fail(ErrorCode::kCorrupt, path.string() + " holds no release document");
  }
  AIRLOCK_ASSIGN_OR_RETURN(trust::Release r, trust::Release::FromJson(release->body()));
  return InstalledModel{r.model, r.version, r.release_counter, r.index_digest.ToString(), path};
}

}  // namespace

std::string HostPlatform() {
  utsname u{};
  ::uname(&u);
  std::string machine = u.machine;
  std::string arch = machine == "x86_64"            ? "amd64"
                     : machine == "aarch64"         ? "arm64"
                     : machine.starts_with("armv7") ? "arm"
                                                    : machine;
  return "linux/" + arch;
}

Result<ModelStore> ModelStore::Open(const fs::path& dir) {
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir / "models"));
  AIRLOCK_RETURN_IF_ERROR(ReadState(dir).map([](auto) {}));
  return ModelStore(dir);
}

Result<std::uint64_t> ModelStore::TrustedCounter(const std::string& model) const {
  AIRLOCK_ASSIGN_OR_RETURN(json state, ReadState(dir_));
  return static_cast<std::uint64_t>(trust::IntOr(state["models"], model, 0));
}

Result<InstalledModel> ModelStore::Install(const fs::path& package,
                                           const trust::SignedDocument& root, TimePoint now,
                                           const std::string& platform,
                                           const InstallOptions& install) {
  // 1. Copy the package into the store's staging area, so that what is verified is what stays.
  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(package));
  AIRLOCK_ASSIGN_OR_RETURN(
      TempDirectory staging,
      TempDirectory::Create(dir_ / (TemporaryPrefix(dir_ / "install", "staging") + "XXXXXX")));
  fs::path copy = staging.path() / "package";
  pkg::LayoutWriter writer;
  AIRLOCK_RETURN_IF_ERROR(writer.AddAll(*reader));
  AIRLOCK_RETURN_IF_ERROR(writer.WriteDirectory(copy, /*replace=*/false));

  // 2. Verify the copy, against the counter this store already trusts for the model.
  pkg::VerifyOptions options;
  options.now = now;
  options.platform = platform;
  if (install.approved_release) {
    options.release_file = staging.path() / "release.json";
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, install.approved_release->Serialize());
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(*options.release_file, text));
  }
  AIRLOCK_ASSIGN_OR_RETURN(pkg::VerifyResult verified,
                           WithContext(pkg::VerifyPackage(copy, root, options), package.string()));
  const trust::Release& rel = verified.release;
  // The counter is looked up by the model name the signed release gives, never by anything
  // unsigned in the layout.
  AIRLOCK_ASSIGN_OR_RETURN(json state, ReadState(dir_));
  auto trusted = static_cast<std::uint64_t>(trust::IntOr(state["models"], rel.model, 0));
  if (rel.release_counter < trusted && !install.approved_release) {
    return Fail(ErrorCode::kVerification,
                package.string() + ": release counter " + std::to_string(rel.release_counter) +
                    " of " + rel.model + " is below the " + std::to_string(trusted) +
                    " this device already trusts (a rollback)");
  }

  // 3. Move it into place, unless that version is there already. Name and version become path
  //    components: signed or not, they may not climb out of the store.
  for (const std::string& part : {rel.model, rel.version}) {
    if (part.empty() || part == "." || part == ".." || part.find('/') != std::string::npos ||
        part.starts_with(".")) {
      return Fail(ErrorCode::kVerification,
                  package.string() + ": \"" + part + "\" cannot name a model or version");
    }
  }

  fs::path target = dir_ / "models" / rel.model / rel.version;
  std::error_code ec;
  if (fs::exists(target, ec)) {
    AIRLOCK_ASSIGN_OR_RETURN(InstalledModel existing, Describe(target));
    if (existing.index_digest != rel.index_digest.ToString()) {
      return Fail(ErrorCode::kAlreadyExists,
                  rel.model + " " + rel.version + " is installed with another index (" +
                      existing.index_digest + "); versions are immutable");
    }
  } else {
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
    fs::rename(copy, target, ec);
    if (ec) {
      return Fail(ErrorCode::kIo,
                  "cannot move the package into " + target.string() + ": " + ec.message());
    }
    AIRLOCK_RETURN_IF_ERROR(SyncDirectory(target.parent_path()));
  }

  // 4. Remember the counter: never lower than before.
  state["models"][rel.model] = std::max(trusted, rel.release_counter);
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(dir_ / "state.json", state.dump(2) + "\n"));
  return InstalledModel{rel.model, rel.version, rel.release_counter, rel.index_digest.ToString(),
                        target};
}

Result<std::vector<InstalledModel>> ModelStore::List() const {
  std::vector<InstalledModel> out;
  std::error_code ec;
  for (const auto& model : fs::directory_iterator(dir_ / "models", ec)) {
    for (const auto& version : fs::directory_iterator(model.path(), ec)) {
      AIRLOCK_ASSIGN_OR_RETURN(InstalledModel m, Describe(version.path()));
      out.push_back(std::move(m));
    }
  }
  std::sort(out.begin(), out.end(), [](const InstalledModel& a, const InstalledModel& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
  return out;
}

}  // namespace airlock::agent
