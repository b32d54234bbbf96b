#pragma once
// What the commands that talk to airlock-hub share (hub_cmd.cpp, bundle_cmd.cpp): where the hub
// is, its token, and how an error becomes an exit code.

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "core/result.hpp"
#include "net/hub_client.hpp"

namespace airlock::cli {

struct HubFlags {
  std::string hub;
  std::string ca_file;
  bool json = false;
};

// --hub (default $AIRLOCK_HUB, else http://127.0.0.1:7400), --ca-file and --json.
void AddHubFlags(CLI::App* cmd, HubFlags& f);

// A client for the hub the flags name, with $AIRLOCK_REGISTRY_TOKEN or the token `airlock login`
// saved for it.
[[nodiscard]] Result<std::unique_ptr<net::HubClient>> ConnectHub(const HubFlags& f);

// Runs body, turning its error into the message and exit code: local mistakes (bad flags or
// arguments) exit 2, a refusal for trust reasons 3, anything else 1.
int RunCommand(const std::function<Status()>& body);

}  // namespace airlock::cli
