#include "cli/cli.hpp"

#include <unistd.h>

#include <cstdio>

#include "cli/common.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

namespace airlock::cli {

Result<TimePoint> Context::Now() const {
  if (now_override.empty()) {
    return SystemClock().Now();
  }
  return WithContext(ParseRfc3339(now_override), "--now");
}

Result<runtime::OnnxRuntime*> Context::Ort() {
  if (!ort_) {
    AIRLOCK_ASSIGN_OR_RETURN(ort_, runtime::OnnxRuntime::Create());
  }
  return ort_.get();
}

void Context::Say(const std::string& line) const {
  if (!quiet) {
    std::fprintf(stderr, "  %s\n", line.c_str());
  }
}

void Context::Progress(const std::string& label, std::uint64_t done, std::uint64_t total) {
  if (quiet || total < (64ULL << 20) || !::isatty(STDERR_FILENO)) {
    return;
  }
  int percent = static_cast<int>(done * 100 / total);
  if (percent == last_percent_) {
    return;
  }
  last_percent_ = percent;
  std::fprintf(stderr, "\r  %s %3d%% (%s of %s)%s", label.c_str(), percent,
               HumanBytes(done).c_str(), HumanBytes(total).c_str(), done >= total ? "\n" : "");
  if (done >= total) {
    last_percent_ = -1;
  }
}

int ReportError(const Error& e, int code) {
  std::fprintf(stderr, "airlock: error: %s\n", e.ToString().c_str());
  return code;
}

Result<std::vector<PrivateKey>> LoadPrivateKeys(const std::vector<std::string>& paths) {
  std::vector<PrivateKey> keys;
  for (const auto& p : paths) {
    AIRLOCK_ASSIGN_OR_RETURN(PrivateKey k, PrivateKey::Load(p));
    keys.push_back(std::move(k));
  }
  return keys;
}

std::string HumanBytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "airlock: package, sign and verify ONNX models for delivery to factory devices.\n"
      "Start with `airlock init` in a folder with your model, then `airlock pack`."};
  app.name("airlock");
  app.require_subcommand(1);
  app.set_version_flag("--version", "airlock 0.1.0");
  Context ctx;
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_flag("-q,--quiet", ctx.quiet, "print only results and errors");
  app.add_option("--now", ctx.now_override,
                 "judge expiry at this RFC 3339 time instead of the clock");
  Action action;
  AddKeygen(app, ctx, action);
  AddRoot(app, ctx, action);
  AddInit(app, ctx, action);
  AddPack(app, ctx, action);
  AddInspect(app, ctx, action);
  AddSign(app, ctx, action);
  AddVerify(app, ctx, action);
  AddRun(app, ctx, action);
  AddPush(app, ctx, action);
  AddPull(app, ctx, action);
  AddLogin(app, ctx, action);
  AddModels(app, ctx, action);
  AddVersions(app, ctx, action);
  AddPromote(app, ctx, action);
  AddDeploy(app, ctx, action);
  AddDeployments(app, ctx, action);
  AddStatus(app, ctx, action);
  AddGateways(app, ctx, action);
  AddMonitor(app, ctx, action);
  AddCaptures(app, ctx, action);
  AddCa(app, ctx, action);
  AddBundle(app, ctx, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  SetupLogging(log_level);
  if (!action) {
    return kExitUsage;
  }
  try {
    return action();
  } catch (const std::exception& e) {
    // Libraries convert their exceptions to errors; this is the net under a missed one.
    std::fprintf(stderr, "airlock: internal error: %s (please report it)\n", e.what());
    return kExitFailure;
  }
}

}  // namespace airlock::cli
