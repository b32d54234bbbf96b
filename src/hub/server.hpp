#pragma once
// The hub's HTTP server: the OCI distribution API (spec v1.1) under /v2/ — pull, push (monolithic,
// chunked, cross-repository mount), tags, referrers, delete — over a BlobStore and a
// MetadataStore. docs/hub.md describes every route with curl examples.
//
// Errors are the spec's: {"errors":[{"code":"MANIFEST_UNKNOWN","message":…,"detail":…}]} with the
// spec's status codes. Blob bodies stream between the socket and the disk in both directions.
//
// Access control (hub/access.hpp): every /v2/ request is checked against the caller's role before
// anything happens (401 with a Bearer challenge naming GET /v2/token, or 403); a blob GET may
// instead carry a pre-signed expires/sig pair. /api/v1/tokens, /api/v1/audit and /api/v1/presign
// are the administrative routes. Mutations and refusals go to the audit log.
//
// GET /metrics is Prometheus text (core/prometheus.hpp; hub/metrics.hpp says what is in it): the
// HTTP responses the server sent, the registry's counts, and what the appenders add. It needs a
// token with role metrics, or viewer and up (docs/decisions.md, "Metrics").
// Bind, then Serve on one thread, Stop from any other. Thread-safe.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/prometheus.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "hub/access.hpp"
#include "hub/config.hpp"
#include "hub/orchestrator.hpp"
#include "hub/telemetry_store.hpp"
#include "net/mqtt.hpp"
#include "store/auth_store.hpp"
#include "store/blob_store.hpp"
#include "store/metadata_store.hpp"
#include "store/registry_store.hpp"
#include "trust/documents.hpp"
#include "trust/root_store.hpp"

namespace airlock::hub {

enum class Action {
  kPull,    // read manifests, blobs, tags, referrers (repository "" means the registry itself)
  kPush,    // upload blobs and manifests, mount into the repository
  kDelete,  // delete manifests, tags and blobs
};
const char* ActionName(Action action);

class HubServer {
 public:
  // blobs, metadata, access, registry and deployments must outlive the server. root: the
  // verified root that releases and channel documents are checked against, if the hub has one.
  // deployments: the delivery orchestrator, told of created and cancelled deployments; null when
  // the hub runs none.
  HubServer(HubConfig config, store::BlobStore& blobs, store::MetadataStore& metadata,
            AccessControl& access, store::RegistryStore& registry,
            std::optional<trust::TrustedRoot> root, DeploymentObserver* deployments = nullptr);
  ~HubServer();
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  // Serves the monitoring API (hub/telemetry_api.hpp) over store; call before Bind. Both must
  // outlive the server.
  void SetTelemetry(store::RegistryStore& registry, TelemetryStore& store);

  // appender is called on every GET /metrics, after the hub's own families and the appenders
  // added before it, on the server's thread (so it must be quick and thread-safe): the delivery
  // orchestrator's families, the telemetry outbox's sizes and drops. Any thread, any time.
  void AddMetricsAppender(prometheus::MetricsAppender appender);

  // Binds the configured address and port (port 0: a free one). kIo when that fails.
  [[nodiscard]] Status Bind();
  int port() const { return port_; }
  // Serves until Stop(). Blocks.
  void Serve();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// The metadata store a hub with this configuration uses: SQLite in DATA/metadata.db, or the
// PostgreSQL database config.db names, with a pool of up to max_connections (kInvalidArgument
// for another scheme).
[[nodiscard]] Result<std::unique_ptr<store::MetadataStore>> OpenMetadataStore(
    const HubConfig& config, int max_connections);

// The database part of a hub, without the server: its metadata database (SQLite in
// DATA/metadata.db, or the PostgreSQL database config.db names; migrated), the auth store in it,
// the hub secret (created if missing) and an AccessControl. Used by the hub and by the offline
// commands (`airlock-hub token`, `airlock-hub audit`), which may run while a hub serves the same
// directory or database.
class HubAccess {
 public:
  // clock must outlive the result.
  [[nodiscard]] static Result<std::unique_ptr<HubAccess>> Open(const HubConfig& config,
                                                               const Clock& clock);
  AccessControl& access() { return *access_; }
  store::AuthStore& store() { return *store_; }
  store::MetadataStore& metadata() { return *metadata_; }

 private:
  HubAccess() = default;
  std::unique_ptr<store::MetadataStore> metadata_;
  std::unique_ptr<store::AuthStore> store_;
  std::unique_ptr<AccessControl> access_;
};

// A whole hub on one data directory: its blob store (DATA/), its databases and access control
// (HubAccess), its server, and — when config.mqtt.broker is set — its MQTT connection and
// delivery orchestrator, started here (the connection is made in the background). Opening
// sweeps what a killed hub left of its uploads. kInvalidArgument when auth.enabled is false and
// the address is not loopback, or for a bad mqtt section.
class Hub {
 public:
  // clock: where expiry is judged (null: the system clock); it must outlive the hub.
  [[nodiscard]] static Result<std::unique_ptr<Hub>> Open(HubConfig config,
                                                         const Clock* clock = nullptr);
  HubServer& server() { return *server_; }
  store::BlobStore& blobs() { return *blobs_; }
  store::MetadataStore& metadata() { return access_->metadata(); }
  store::RegistryStore& registry() { return *registry_; }
  TelemetryStore& telemetry() { return *telemetry_; }
  AccessControl& access() { return access_->access(); }
  // Null when the hub has no broker configured.
  DeliveryOrchestrator* orchestrator() { return orchestrator_.get(); }
  net::MqttClient* mqtt() { return mqtt_.get(); }

 private:
  Hub() = default;
  SystemClock system_clock_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<HubAccess> access_;
  std::unique_ptr<store::RegistryStore> registry_;
  std::unique_ptr<TelemetryStore> telemetry_;
  // Destroyed in reverse: the server, then the orchestrator (which unsubscribes), then the
  // connection.
  std::unique_ptr<net::MqttClient> mqtt_;
  std::unique_ptr<DeliveryOrchestrator> orchestrator_;
  std::unique_ptr<HubServer> server_;
};

}  // namespace airlock::hub
