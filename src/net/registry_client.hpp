#pragma once
// RegistryClient: a client of the OCI distribution API (distribution-spec 1.1) over libcurl, for
// any OCI registry (Distribution, Harbor, Zot, ECR, ACR) and for airlock-hub's /v2/ endpoint.
//
// What it does: ping /v2/, HEAD/GET blobs and manifests, blob uploads (POST, then one PUT, or
// PATCH chunks for large blobs; blobs the registry already has are skipped after a HEAD, and a
// cross-repository mount is tried first when a source repository is known), manifest and index
// PUTs with their Content-Type, tag lists, and referrers (the referrers API, falling back to the
// referrers tag schema `sha256-<hex>` when the registry answers 404).
//
// Downloads stream to a file, resume with Range after a broken connection, never accept more
// bytes than the caller's expected size, restart from zero on 200 or 416, and check size and
// digest at the end; with RegistryOptions::min_download_rate each has a deadline too.
// Everything read is verified against the digest it was asked for.
//
// Authentication: anonymous; HTTP Basic; the bearer-token flow (`WWW-Authenticate: Bearer
// realm=…,service=…,scope=…` → GET realm with Basic credentials → token), tokens cached per
// scope; or a fixed bearer token. Credentials are never logged nor put in error messages.
// Transport: https with the system's CA store (or ca_file) and full verification; plain http
// only for a loopback registry (localhost, 127.0.0.0/8, [::1]) unless https is set, or with
// plain_http set.
//
// A client holds one libcurl handle (connections are reused) and is not thread-safe; use one per
// thread. Every call blocks until the registry answers or the transfer fails.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "pkg/layout.hpp"
#include "pkg/oci.hpp"

namespace airlock::net {

namespace registry_detail {
struct CurlHandle;
struct HttpCall;
struct HttpResponse;
}  // namespace registry_detail

// "registry/repository[:tag]" or "registry/repository@sha256:…". The registry (host[:port]) is
// always explicit: there is no default registry.
struct RegistryReference {
  std::string registry;    // host[:port]
  std::string repository;  // lowercase path components, e.g. "models/affine"
  std::string tag;         // empty when absent
  std::optional<Digest> digest;

  // Fails with kInvalidArgument, saying which part is wrong and what a good one looks like.
  [[nodiscard]] static Result<RegistryReference> Parse(std::string_view text);
  // The tag, else the digest, else "".
  std::string Reference() const;
  std::string ToString() const;
};

// Whether a tag is valid in the distribution spec: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
bool IsValidTag(std::string_view tag);
// Whether host[:port] names this machine (localhost, 127.0.0.0/8, [::1]).
bool IsLoopbackRegistry(std::string_view registry);

struct RegistryCredentials {
  std::string username;  // Basic, and for the token endpoint of the bearer flow
  std::string password;
  std::string token;  // a bearer token sent as is (takes precedence)
};

struct RegistryOptions {
  std::string registry;     // host[:port]
  bool plain_http = false;  // http:// for a registry that is not on loopback
  bool https = false;       // https:// even for a registry on loopback
  RegistryCredentials credentials;
  std::string ca_file;  // PEM bundle to verify the registry with instead of the system's
  std::string client_cert;  // with client_key: the client's certificate for TLS (PEM)
  std::string client_key;
  std::chrono::seconds connect_timeout{30};
  // A transfer that moves no byte for this long is abandoned (and a download resumed).
  std::chrono::seconds stall_timeout{60};
  // With min_download_rate set, every download (each GET and HEAD, a blob's resumed attempts
  // together) must end within download_grace plus its size (a blob's, else the most the answer
  // may hold) at min_download_rate bytes a second, or it fails with kTimeout and is not tried
  // again. stall_timeout alone does not stop a server that trickles a byte now and then: this
  // does. 0: no deadline.
  std::uint64_t min_download_rate = 0;
  std::chrono::milliseconds download_grace{std::chrono::seconds(60)};
  // Attempts per blob transfer, the first included (a resumed download is a new attempt).
  int max_attempts = 5;
  // Pause before a retry, multiplied by the attempt number.
  std::chrono::milliseconds retry_delay{250};
  // Blobs larger than this are uploaded in PATCH chunks of this size.
  std::uint64_t chunk_size = 64ULL << 20;
  std::string user_agent = "airlock/0.1.0";
  // What the server is called in "cannot reach the … at URL" ("registry", "hub").
  std::string server_name = "registry";
};

// Bytes done of a total; called from inside the transfer, often.
using TransferProgress = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct FetchedManifest {
  std::string media_type;  // the Content-Type, else the document's mediaType
  std::string bytes;
  Digest digest;  // of bytes (checked against the request and the registry's header)
};

enum class BlobPushOutcome {
  kExisted,   // the registry had it (HEAD), nothing sent
  kMounted,   // cross-repository mount
  kUploaded,  // sent
};

// Any answer to RegistryClient::Request: the status is the caller's to judge.
struct HttpAnswer {
  long status = 0;
  std::string content_type;
  std::string body;  // a 2xx body up to the max_body asked for; the start of any other
};

struct PushedManifest {
  Digest digest;
  // The registry answered with OCI-Subject: it indexes referrers itself (referrers API).
  bool subject_indexed = false;
};

class RegistryClient {
 public:
  // kInvalidArgument for an unusable registry name or option; kUnsupported when http:// would be
  // needed for a non-loopback registry without plain_http.
  [[nodiscard]] static Result<std::unique_ptr<RegistryClient>> Create(RegistryOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // "https://host:port" or "http://…".
  const std::string& base_url() const { return base_url_; }

  // GET /v2/: whether this is an OCI registry and the credentials (if any) are accepted.
  [[nodiscard]] Status Ping();

  // HEAD a blob: its size, or nullopt when the repository does not have it.
  [[nodiscard]] Result<std::optional<std::uint64_t>> BlobSize(std::string_view repo,
                                                              const Digest& digest);

  // GETs a blob of known size into memory (small documents). kCorrupt on a size or digest
  // mismatch; kNotFound when the registry does not have it.
  [[nodiscard]] Result<std::string> FetchBlob(std::string_view repo, const Digest& digest,
                                              std::uint64_t size);

  // GETs a blob into file (created or truncated), resuming with Range after a broken connection,
  // and checks size and digest. On failure the file is removed. kCorrupt when the registry sends
  // other bytes than the digest names or more than size; kNotFound; kUnavailable / kTimeout when
  // the network fails more than max_attempts times; kTimeout when the blob's deadline passes
  // (RegistryOptions::min_download_rate).
  [[nodiscard]] Status DownloadBlob(std::string_view repo, const Digest& digest, std::uint64_t size,
                                    const std::filesystem::path& file,
                                    const TransferProgress& progress = {});

  // Uploads size bytes of range (an open file) as the blob digest, unless the repository has it
  // already; tries a cross-repository mount from mount_from first when it is not empty.
  [[nodiscard]] Result<BlobPushOutcome> PushBlob(std::string_view repo, const Digest& digest,
                                                 const pkg::FileRange& range,
                                                 std::string_view mount_from = {},
                                                 const TransferProgress& progress = {});
  // The same from memory.
  [[nodiscard]] Result<BlobPushOutcome> PushBlob(std::string_view repo, const Digest& digest,
                                                 std::string_view bytes,
                                                 std::string_view mount_from = {});

  // GETs a manifest or index by tag or digest (at most max_size bytes), accepting the OCI and
  // Docker manifest and index types. kNotFound for an unknown repository, tag or digest;
  // kCorrupt when the bytes do not match the digest asked for or announced.
  [[nodiscard]] Result<FetchedManifest> FetchManifest(std::string_view repo,
                                                      std::string_view reference,
                                                      std::uint64_t max_size = 4ULL << 20);

  // PUTs a manifest or index under a tag or its digest, with media_type as Content-Type.
  [[nodiscard]] Result<PushedManifest> PushManifest(std::string_view repo,
                                                    std::string_view reference,
                                                    std::string_view media_type,
                                                    std::string_view bytes);

  // Every tag of the repository (following Link pagination). kNotFound for an unknown repository.
  [[nodiscard]] Result<std::vector<std::string>> ListTags(std::string_view repo);

  // The referrers of a manifest, filtered by artifact_type when it is not empty: from the
  // referrers API, or when the registry answers 404 there, from the referrers tag
  // `sha256-<hex>`. Empty when there are none.
  [[nodiscard]] Result<std::vector<pkg::Descriptor>> ListReferrers(
      std::string_view repo, const Digest& subject, std::string_view artifact_type = {});

  // For registries without the referrers API: adds referrer to the index under the referrers tag
  // of subject, dropping the entries for which replaces() is true (and any earlier entry for
  // the same digest).
  [[nodiscard]] Status AddToReferrersTag(
      std::string_view repo, const Digest& subject, const pkg::Descriptor& referrer,
      const std::function<bool(const pkg::Descriptor&)>& replaces = {});

  // One request to base_url() + path (which starts with "/" and may carry a query) with the
  // client's credentials (the bearer token, else Basic when a user name is set), and body sent
  // as content_type when content_type is not empty. For JSON APIs beside /v2/ (airlock-hub's
  // /api/v1/): no redirect is followed, no challenge answered, and every HTTP status is returned;
  // only transport failures (unreachable, timeout, TLS, an answer over max_body) are errors.
  [[nodiscard]] Result<HttpAnswer> Request(std::string_view method, std::string_view path,
                                           std::string_view body = {},
                                           std::string_view content_type = {},
                                           std::uint64_t max_body = 4ULL << 20);

  // The referrers tag of a subject in the fallback schema: "sha256-<hex>".
  static std::string ReferrersTag(const Digest& subject);

 private:
  using Http = registry_detail::CurlHandle;
  using Call = registry_detail::HttpCall;
  using Response = registry_detail::HttpResponse;
  RegistryClient(RegistryOptions options, std::string base_url);

  // Performs call, answering an authentication challenge once (bearer token or Basic).
  // scope: "repository:NAME:pull" or "…:pull,push".
  Result<Response> Send(Call& call, const std::string& scope);
  Result<Response> Perform(Call& call);
  // When a download of size bytes begun now must end (min_download_rate); none without a rate.
  std::optional<std::chrono::steady_clock::time_point> DownloadDeadline(std::uint64_t size) const;
  Status AuthorizeFor(const Response& challenge, const std::string& scope);
  std::string AuthorizationFor(const std::string& scope) const;
  std::string BlobUrl(std::string_view repo, const Digest& digest) const;
  std::string ManifestUrl(std::string_view repo, std::string_view reference) const;
  Result<BlobPushOutcome> Upload(
      std::string_view repo, const Digest& digest, std::uint64_t size,
      const std::function<Status(std::uint64_t offset, char* out, std::size_t n)>& read,
      std::string_view mount_from, const TransferProgress& progress);
  void Backoff(int attempt) const;

  RegistryOptions options_;
  std::string base_url_;
  std::unique_ptr<Http> http_;
  bool use_basic_ = false;                     // the registry asked for Basic credentials
  std::map<std::string, std::string> tokens_;  // bearer tokens by scope
};

}  // namespace airlock::net
