#pragma once
// HubHttp: the gateway's HTTP requests to its hub (libcurl): registration, the manifests of a
// delivery (with the gateway's credential), and blob downloads from pre-signed URLs with
// `Range: bytes=OFFSET-` resume, streamed to a sink so that a blob never sits in memory.
//
// Paths are joined to the hub's base URL ("https://hub.example.com" + "/v2/…"): a path from the
// network (a grant URL) can never name another host. https uses the system's CA store (or
// set_ca_file), and presents the gateway's client certificate when it has one
// (set_client_certificate): on every request, registration and pre-signed URLs included.
//
// Thread-safe: each call uses a libcurl handle of its own. Every call blocks until the hub
// answers, the transfer stalls for stall_timeout, or *cancel turns true.

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace airlock::gateway {

struct HttpReply {
  long status = 0;
  std::string body;  // at most max_body bytes
};

// Receives the answer's status before its first bytes (once), then each piece of its body.
// Returning false from either stops the transfer (Fetch then returns kUnavailable "stopped").
struct FetchSink {
  std::function<bool(long status)> on_status;
  std::function<bool(std::string_view bytes)> on_bytes;
};

class HubHttp {
 public:
  HubHttp(std::string base_url, std::string credential,
          std::chrono::seconds stall_timeout = std::chrono::seconds(60));

  const std::string& base_url() const { return base_url_; }
  void set_credential(std::string credential) { credential_ = std::move(credential); }
  // For an https hub: the CA its certificate chains to ("" = the system's CAs).
  void set_ca_file(std::string ca_file) { ca_file_ = std::move(ca_file); }
  // For an https hub: the gateway's client certificate (PEM, CN = its name) and its key, which
  // the hub may take instead of, or require beside, the credential (docs/hub.md, "Gateways'
  // certificates"). "" = none. A file that does not load fails each request (kUnavailable).
  void set_client_certificate(std::string cert_file, std::string key_file) {
    cert_file_ = std::move(cert_file);
    key_file_ = std::move(key_file);
  }

  // One request; every HTTP status is returned, only transport failures are errors
  // (kUnavailable, naming the URL without its query). The credential goes as a bearer token
  // when with_credential is set.
  [[nodiscard]] Result<HttpReply> Request(std::string_view method, std::string_view path,
                                          std::string_view body, std::string_view content_type,
                                          bool with_credential, std::size_t max_body = 4 << 20,
                                          std::string_view accept = {});

  // GETs path from offset (a Range header when offset > 0) into sink. Returns the HTTP status.
  // kUnavailable when the transfer breaks or stalls (the sink has what arrived), or when cancel
  // or the sink stopped it.
  [[nodiscard]] Result<long> Fetch(std::string_view path, std::uint64_t offset,
                                   bool with_credential, const FetchSink& sink,
                                   const std::atomic<bool>* cancel = nullptr);

 private:
  std::string base_url_;
  std::string credential_;
  std::string ca_file_;
  std::string cert_file_;
  std::string key_file_;
  std::chrono::seconds stall_timeout_;
};

}  // namespace airlock::gateway
