#pragma once
// airlock-gateway's command line, so far only what the cache and the device registry support
// (docs/gateway.md, "The cache and the registry for devices"): list, load, pin and unpin
// packages in a cache directory, and serve it read-only to devices. The delivery client, MQTT,
// approvals and `serve` come with the rest of issue 5.

namespace airlock::gateway {

// Parses argv, runs the command, returns the exit code (core/exit_codes.hpp).
int Main(int argc, char** argv);

}  // namespace airlock::gateway
