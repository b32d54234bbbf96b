#pragma once
// The hub's HTTP server: the OCI distribution API (spec v1.1) under /v2/ — pull, push (monolithic,
// chunked, cross-repository mount), tags, referrers, delete — over a BlobStore and a
// MetadataStore. docs/hub.md describes every route with curl examples.
//
// Errors are the spec's: {"errors":[{"code":"MANIFEST_UNKNOWN","message":…,"detail":…}]} with the
// spec's status codes. Blob bodies stream between the socket and the disk in both directions.
//
// Access control is a hook: every /v2/ request asks the Authorizer for (action, repository) before
// doing anything; the default lets everyone do everything (the hub binds to 127.0.0.1 by default;
// tokens and roles are the next slice of issue 4). Bind, then Serve on one thread, Stop from any
// other. Thread-safe.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "hub/config.hpp"
#include "store/blob_store.hpp"
#include "store/metadata_store.hpp"

namespace airlock::hub {

enum class Action {
  kPull,    // read manifests, blobs, tags, referrers (repository "" means the registry itself)
  kPush,    // upload blobs and manifests, mount into the repository
  kDelete,  // delete manifests, tags and blobs
};
const char* ActionName(Action action);

// Decides whether a request may do action on repository. authorization is the request's
// Authorization header ("" when absent). Return kVerification for "who are you?" (401, with
// WWW-Authenticate) and any other error for "not allowed" (403 DENIED); the message is sent.
using Authorizer = std::function<Status(std::string_view authorization, Action action,
                                        std::string_view repository)>;
Authorizer AllowEveryone();

class HubServer {
 public:
  // blobs and metadata must outlive the server.
  HubServer(HubConfig config, store::BlobStore& blobs, store::MetadataStore& metadata,
            Authorizer authorizer = AllowEveryone());
  ~HubServer();
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

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

// A whole hub on one data directory: its blob store (DATA/), its metadata (SQLite in
// DATA/metadata.db, or the PostgreSQL database config.db names) and its server. Opening sweeps what
// a killed hub left of its uploads.
class Hub {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Hub>> Open(HubConfig config,
                                                         Authorizer authorizer = AllowEveryone());
  HubServer& server() { return *server_; }
  store::BlobStore& blobs() { return *blobs_; }
  store::MetadataStore& metadata() { return *metadata_; }

 private:
  Hub() = default;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<store::MetadataStore> metadata_;
  std::unique_ptr<HubServer> server_;
};

}  // namespace airlock::hub
