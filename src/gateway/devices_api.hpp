#pragma once
// Devices over HTTP (docs/rollout.md, "Enrollment"), on the gateway's one HTTP server:
//
//   POST /api/v1/devices/tokens        operator: {"labels": {…}, "expires_in": "24h"} → a
//                                      one-time enrollment token {"token", "expires_at", "labels"}
//   GET  /api/v1/devices               operator: every enrolled device, with what it last
//                                      reported (online, last_seen, models: phase and version)
//   POST /api/v1/devices/ID/revoke     operator: the device is refused from now on
//   POST /api/v1/devices/ID/labels     operator: {"set": {k: v}, "remove": [k]}
//   POST /api/v1/devices/enroll        a device: {"token", "csr", "labels"} → its identity
//
// The operator routes need `Authorization: Bearer alkop_…` (as the approvals do); enroll is
// authenticated by the one-time token in its body. Errors have the OCI shape.

#include <chrono>
#include <functional>
#include <string>

#include "core/keys.hpp"
#include "core/pki.hpp"
#include "core/time.hpp"
#include "gateway/registry.hpp"
#include "gateway/state_store.hpp"

namespace httplib {
class Server;
}

namespace airlock::gateway {

struct DevicesContext {
  GatewayStateStore* store = nullptr;
  const pki::CertificateAuthority* ca = nullptr;
  const PrivateKey* directive_key = nullptr;  // its public half goes to every device
  std::string root_document;                  // the signed root the gateway pins, as JSON text
  std::string mqtt_broker;
  std::string mqtt_prefix;
  std::chrono::seconds certificate_validity = std::chrono::hours(24 * 365);
  const Clock* clock = nullptr;
  // Told the id of each device that enrolled, was relabelled or revoked (the fleet service's
  // OnDeviceChanged); none: nobody is told.
  std::function<void(const std::string& device)> on_change;
};

void InstallDevicesApi(httplib::Server& server, DevicesContext context);

// Whether a pull from the device registry comes from an enrolled device: a client certificate
// the gateway's device CA issued (checked by TLS), whose CN is a device that is not revoked and
// whose serial is the one that device was last given. kVerification (401) without a
// certificate, kInvalidArgument (403) for a revoked device or an outdated certificate.
[[nodiscard]] Status AuthorizeDevicePull(GatewayStateStore& store, const ReadRequest& request);

// Whether key=value is a label a device may carry: a key of 1-63 of [A-Za-z0-9._/-] starting
// with a letter or digit, a value of 0-63 of [A-Za-z0-9._-].
bool ValidLabel(std::string_view key, std::string_view value);

}  // namespace airlock::gateway
