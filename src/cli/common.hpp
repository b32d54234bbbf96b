#pragma once
// Helpers shared by the `airlock` commands.

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "runtime/onnx_runtime.hpp"
#include "trust/documents.hpp"

namespace airlock::cli {

// A registered command sets this to run after parsing succeeds; it returns an exit code.
using Action = std::function<int()>;

// What every command shares: where "now" comes from, and ONNX Runtime on demand.
struct Context {
  std::string now_override;  // --now, RFC 3339, for reproducible checks
  bool quiet = false;

  Result<TimePoint> Now() const;
  Result<runtime::OnnxRuntime*> Ort();
  void Say(const std::string& line) const;
  // Prints "label  42% (420 MiB of 1.0 GiB)" in place on a terminal, for files of 64 MiB and
  // more; nothing when stderr is not a terminal or with --quiet.
  void Progress(const std::string& label, std::uint64_t done, std::uint64_t total);

 private:
  std::unique_ptr<runtime::OnnxRuntime> ort_;
  int last_percent_ = -1;
};

// Prints "airlock: error: …" and returns the exit code for the error.
int ReportError(const Error& e, int code = kExitFailure);

[[nodiscard]] Result<std::vector<PrivateKey>> LoadPrivateKeys(
    const std::vector<std::string>& paths);
std::string HumanBytes(std::uint64_t n);

// The token for a registry or hub (host[:port]): $AIRLOCK_REGISTRY_TOKEN, else the one
// `airlock login` saved for it, else "". Fails only on an unreadable credentials file.
[[nodiscard]] Result<std::string> RegistryToken(const std::string& registry);

void AddKeygen(CLI::App& app, Context& ctx, Action& action);
void AddRoot(CLI::App& app, Context& ctx, Action& action);
// `root rotate` and `root sign`, under the `root` command.
void AddRootRotation(CLI::App& root_cmd, Context& ctx, Action& action);
// Makes role of root the keys at paths (.pub or .key) with threshold; kInvalidArgument for a key
// given twice or a threshold outside 1..keys.
[[nodiscard]] Status SetRole(trust::Root& root, const std::string& role,
                             const std::vector<std::string>& paths, int threshold);
void AddInit(CLI::App& app, Context& ctx, Action& action);
void AddPack(CLI::App& app, Context& ctx, Action& action);
void AddInspect(CLI::App& app, Context& ctx, Action& action);
void AddSign(CLI::App& app, Context& ctx, Action& action);
void AddVerify(CLI::App& app, Context& ctx, Action& action);
void AddRun(CLI::App& app, Context& ctx, Action& action);
void AddPush(CLI::App& app, Context& ctx, Action& action);
void AddPull(CLI::App& app, Context& ctx, Action& action);
void AddLogin(CLI::App& app, Context& ctx, Action& action);
// The hub's registry API (hub_cmd.cpp): models, versions, promote, deploy, deployments, status,
// gateways.
void AddModels(CLI::App& app, Context& ctx, Action& action);
void AddVersions(CLI::App& app, Context& ctx, Action& action);
void AddPromote(CLI::App& app, Context& ctx, Action& action);
void AddDeploy(CLI::App& app, Context& ctx, Action& action);
void AddDeployments(CLI::App& app, Context& ctx, Action& action);
void AddStatus(CLI::App& app, Context& ctx, Action& action);
void AddGateways(CLI::App& app, Context& ctx, Action& action);
void AddMonitor(CLI::App& app, Context& ctx, Action& action);
void AddCaptures(CLI::App& app, Context& ctx, Action& action);
void AddCa(CLI::App& app, Context& ctx, Action& action);
// airlock bundle export (bundle_cmd.cpp).
void AddBundle(CLI::App& app, Context& ctx, Action& action);

}  // namespace airlock::cli
