#pragma once
// `airlock-gateway serve`: registration with the hub, then the delivery client on MQTT and the
// HTTP server (device registry /v2/ and operator API /api/v1/), until a stop signal
// (docs/gateway.md, "Running the gateway").

#include <filesystem>
#include <string>

#include "core/daemon.hpp"
#include "core/result.hpp"
#include "gateway/config.hpp"
#include "gateway/hub_http.hpp"

namespace airlock::gateway {

// Where the credential the hub issued at registration is kept (0600).
std::filesystem::path CredentialPath(const GatewayConfig& config);

// The gateway's hub credential: read from the data directory, or, on the first start, obtained
// from the hub's POST /api/v1/gateways/register with the one-time token (then stored, 0600).
// kInvalidArgument when there is neither a credential nor a token; kVerification when the hub
// refuses the token (its reason included); kAlreadyExists when the name is taken.
[[nodiscard]] Result<std::string> EnsureRegistered(const GatewayConfig& config,
                                                   const std::string& token, HubHttp& hub);

// Runs the gateway until a stop signal; returns the exit code.
int Serve(const GatewayConfig& config, const std::string& register_token, StopSignals& signals);

}  // namespace airlock::gateway
