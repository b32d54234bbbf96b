#pragma once
// DeviceRegistry: the gateway's read-only OCI distribution endpoint (v1.1 pull, tags and
// referrers) over its GatewayCache, from which the factory's devices pull their packages
// (DESIGN §5.2: "read-only OCI distribution under /v2/ for its devices").
//
// Routes (docs/gateway.md, "The cache and the registry for devices"):
//   GET/HEAD /v2/                              200 {} (the API version check)
//   GET/HEAD /v2/NAME/manifests/TAG|DIGEST     the manifest, with its media type and
//                                              Docker-Content-Digest
//   GET/HEAD /v2/NAME/blobs/DIGEST             the blob; one Range (206) or 416
//   GET      /v2/NAME/tags/list                {"name", "tags"} (n and last page it)
//   GET      /v2/NAME/referrers/DIGEST         an image index of the referrers (artifactType
//                                              filters it), e.g. the signed release
//   any other method                           405 {"errors":[{"code":"UNSUPPORTED",…}]}
// Only complete packages are visible (GatewayCache's rule). Errors carry the OCI error body.
//
// Who may read is decided by a ReadAuthorizer, called before every /v2/NAME/… route: device
// authentication (client certificates issued at enrollment, issue 8) plugs in there. Until then
// the default lets everyone read, so the registry binds to loopback unless told otherwise.
//
// Thread-safe: Start serves on a pool of threads of its own; Stop (or the destructor) waits for
// them. The cache must outlive the registry.

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "core/result.hpp"
#include "gateway/cache.hpp"

namespace httplib {
class Server;
}

namespace airlock::gateway {

struct RegistryOptions {
  std::string address = "127.0.0.1";
  int port = 7500;                    // DESIGN §5.0; 0 picks a free port
  int threads = 8;
  // HTTPS when set; with client_ca, devices present the certificate they enrolled with
  // (ReadRequest::client).
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  std::filesystem::path client_ca;
};

// What a ReadAuthorizer sees of a request.
struct ReadRequest {
  std::string_view method;
  std::string_view path;
  std::string_view repository;
  std::string_view authorization;  // the Authorization header, "" when absent
  std::string_view remote_address;
  std::string_view client;         // the verified client certificate's CN; "" when none
  std::string_view client_serial;  // its serial (hex)
};
// OK lets the request through. kVerification answers 401 UNAUTHORIZED (who are you?); any other
// error 403 DENIED (you may not read this). The error's message is the answer's detail.
using ReadAuthorizer = std::function<Status(const ReadRequest&)>;

class DeviceRegistry {
 public:
  // Binds address:port and starts serving. kIo when the address cannot be bound.
  // install_api, when set, adds routes under /api/ to the same server (the operator's API,
  // which makes its own authorization); /v2/ stays read-only either way.
  [[nodiscard]] static Result<std::unique_ptr<DeviceRegistry>> Start(
      GatewayCache& cache, RegistryOptions options, ReadAuthorizer authorize = {},
      std::function<void(httplib::Server&)> install_api = {});
  ~DeviceRegistry();
  DeviceRegistry(const DeviceRegistry&) = delete;
  DeviceRegistry& operator=(const DeviceRegistry&) = delete;

  // The port bound (the chosen one when options.port was 0).
  int port() const { return port_; }
  // Stops accepting, finishes the requests in flight, and returns. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit DeviceRegistry(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace airlock::gateway
