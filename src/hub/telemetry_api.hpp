#pragma once
// The hub's monitoring API (docs/hub-api.md "Monitoring"), over a TelemetryStore:
//   POST /api/v1/gateways/G/telemetry   a gateway forwards a batch (its own credential, or an
//                                        admin); answers what was stored, duplicated, rejected
//   GET  /api/v1/monitor/MODEL           per version: throughput, errors, latency percentiles,
//                                        prediction distribution, drift per feature, alerts, and
//                                        what senders had to drop (?site= &device= &since=)
//   GET  /api/v1/events                  drift alerts, newest first (?model= &site= &since=)
//   GET  /api/v1/captures?model=M        captured requests, oldest first, a page at a time
//                                        (?since= &site= &device= &after_ms= &after_id= &limit=)
// Reads need the viewer role; captures (data from the shop floor) the publisher role. A drift alert is logged when it arrives.
//
// Thread-safe; the store and the registry must outlive it.

#include <httplib.h>

#include "hub/api_support.hpp"
#include "hub/telemetry_store.hpp"
#include "store/registry_store.hpp"

namespace airlock::hub {

class TelemetryApi {
 public:
  TelemetryApi(ApiGate& gate, store::RegistryStore& registry, TelemetryStore& store)
      : gate_(gate), registry_(registry), store_(store) {}
  void Routes(httplib::Server& s);

 private:
  void Ingest(const httplib::Request& req, httplib::Response& res, const std::string& gateway);
  void Monitor(const httplib::Request& req, httplib::Response& res, const std::string& model);
  void Events(const httplib::Request& req, httplib::Response& res);
  void Captures(const httplib::Request& req, httplib::Response& res);
  // The caller may do p and ?since= reads: its Unix ms; nullopt after sending the 401/403/400.
  std::optional<std::int64_t> Read(const httplib::Request& req, httplib::Response& res,
                                   Permission p);

  ApiGate& gate_;
  store::RegistryStore& registry_;
  TelemetryStore& store_;
};

}  // namespace airlock::hub
