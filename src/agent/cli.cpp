#include "agent/cli.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "agent/model_store.hpp"
#include "core/exit_codes.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "trust/documents.hpp"

namespace airlock::agent {
namespace {

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-agent: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"airlock-agent: runs verified model packages on an edge device."};
  app.name("airlock-agent");
  app.require_subcommand(1);
  std::string store_dir = "/var/lib/airlock-agent";
  app.add_option("--store", store_dir, "the model store directory")->capture_default_str();
  std::string now_text;
  app.add_option("--now", now_text, "judge expiry at this RFC 3339 time instead of the clock");

  auto* install = app.add_subcommand(
      "install", "Verify a package against the root and add it to the store (refusing rollbacks)");
  std::string package, root_file, platform = HostPlatform();
  install->add_option("package", package, "package directory or .tar")->required();
  install->add_option("--root", root_file, "the root document to trust")->required();
  install->add_option("--platform", platform, "the platform this device needs")
      ->capture_default_str();
  auto* list = app.add_subcommand("list", "List the installed models");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  SetupLogging("warn");
  TimePoint now = SystemClock().Now();
  if (!now_text.empty()) {
    auto t = ParseRfc3339(now_text);
    if (!t) {
      Report(t.error());
      return kExitUsage;
    }
    now = *t;
  }
  auto store = ModelStore::Open(store_dir);
  if (!store) {
    return Report(store.error());
  }
  if (*install) {
    auto text = ReadFile(root_file, trust::kMaxDocumentSize);
    if (!text) {
      return Report(text.error());
    }
    auto root = trust::SignedDocument::Parse(*text);
    if (!root) {
      return Report(std::move(root.error()).WithContext(root_file));
    }
    auto m = store->Install(package, *root, now, platform);
    if (!m) {
      return Report(m.error());
    }
    std::printf("installed %s %s (release counter %llu) in %s\n", m->name.c_str(),
                m->version.c_str(), static_cast<unsigned long long>(m->release_counter),
                m->path.c_str());
    return 0;
  }
  if (*list) {
    auto models = store->List();
    if (!models) {
      return Report(models.error());
    }
    for (const auto& m : *models) {
      std::printf("%-24s %-12s counter %-4llu %s\n", m.name.c_str(), m.version.c_str(),
                  static_cast<unsigned long long>(m.release_counter), m.index_digest.c_str());
    }
    return 0;
  }
  return kExitUsage;
}

}  // namespace airlock::agent
