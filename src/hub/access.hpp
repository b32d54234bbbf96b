#pragma once
// Access control of the hub: tokens with roles, the short-lived session tokens of the Docker token
// flow, pre-signed blob URLs, and the audit log. docs/hub.md ("Tokens and roles") is the user's
// side of it.
//
// - An access token is "alk_" + 64 hex digits (32 random bytes). Only its SHA-256 is stored: a
//   token has 256 bits of entropy, so the hash cannot be inverted by guessing, and a slow,
//   salted password hash (which protects low-entropy passwords) would buy nothing while making
//   the lookup by hash impossible.
// - A session token (GET /v2/token) is "ahs1." + base64(claims) + "." + hex HMAC-SHA256 over
//   "airlock-session\n" + base64(claims), with the hub secret; claims name the access token and
//   an expiry. Each use checks the access token again, so revoking it ends its sessions too.
// - A pre-signed URL carries expires (Unix seconds) and sig = hex HMAC-SHA256 over
//   "GET\n" + path + "\n" + expires. The two signed forms cannot be confused: one starts with
//   "airlock-session\n", the other with a method.
// - A gateway may prove who it is with a client certificate (CN = its registered name) that TLS
//   verified against the hub's http.client_ca; GatewayAuth says whether it must, may, or does
//   not (docs/hub.md, "Gateways' certificates"). A certificate alone authenticates as the
//   gateway's credential; a gateway credential with a certificate of another name is refused.
//
// AccessControl is thread-safe; its methods block on the AuthStore.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"
#include "store/auth_store.hpp"

namespace airlock::hub {

// From kViewer on ordered: each role may do everything the one before it may. kGateway and
// kMetrics are apart, and sort below kViewer so that no ordered check ever admits them: kGateway
// is the credential a gateway receives when it registers, which may pull and report its own
// inventory, nothing else; kMetrics is for a monitoring system, which may read GET /metrics and
// nothing else (no pull, no registry), so that the credential a Prometheus server keeps in its
// configuration gives nobody the models.
enum class Role { kMetrics, kGateway, kViewer, kPublisher, kReleaseManager, kAdmin };
const char* RoleName(Role role);
// The roles an admin may give a token: metrics, viewer … admin; never "gateway".
std::optional<Role> ParseRole(std::string_view name);
// Any role a stored token may have, "gateway" included.
std::optional<Role> ParseStoredRole(std::string_view name);

enum class Permission {
  kPull,             // GET/HEAD manifests, blobs, tags, referrers
  kPush,             // blob uploads and mounts, manifest PUTs (which may move a tag)
  kDelete,           // DELETE manifests, tags, blobs
  kPresign,          // POST /api/v1/presign
  kManageTokens,     // /api/v1/tokens
  kReadAudit,        // /api/v1/audit
  kReadRegistry,     // GET /api/v1/models…, deployments, gateways
  kPublishRelease,   // POST /api/v1/models/M/releases
  kPromote,          // PUT /api/v1/models/M/channels/C
  kDeploy,           // POST /api/v1/deployments, …/cancel
  kManageGateways,   // POST /api/v1/gateways/tokens
  kReportInventory,  // PUT /api/v1/gateways/G/inventory (the gateway itself, or an admin)
  kReportTelemetry,  // POST /api/v1/gateways/G/telemetry (the gateway itself, or an admin)
  kReadCaptures,     // GET /api/v1/captures: data from the shop floor (publisher and up)
  kReadMetrics,      // GET /metrics (viewer and up, and the metrics role)
};
const char* PermissionName(Permission p);
// The least role that has p (docs/hub.md has the table).
Role LeastRoleFor(Permission p);

// How gateways prove who they are to the hub (http.gateway_auth; docs/decisions.md, "The gateway
// authenticates to the hub with its certificate").
enum class GatewayAuth {
  kToken,        // "token": the credential from its registration; no certificate is asked for
  kCertificate,  // "certificate": its client certificate, with or without the credential; a
                 // credential alone is refused (401), and so is a registration without one
  kEither,       // "either": the credential, the certificate, or both (while gateways move over)
};
const char* GatewayAuthName(GatewayAuth mode);
std::optional<GatewayAuth> ParseGatewayAuth(std::string_view name);

// The name of the credential token of the gateway registered as `gateway`; kNotFound when no
// gateway has that name. Called on the request's thread; must be thread-safe.
using GatewayCredentialLookup = std::function<Result<std::string>(std::string_view gateway)>;

// Who a request is.
struct Principal {
  std::string name;  // the token's name; "" for anonymous
  Role role = Role::kViewer;
  bool anonymous = false;
};

// The outcome of a check: allowed (status 0), 401 (who are you?) or 403 (not allowed).
struct AccessDecision {
  int status = 0;
  std::string reason;  // why not; sent to the client
  Principal who;       // when known (also for a 403)
  bool had_credentials = false;
  bool allowed() const { return status == 0; }
};

// Whether a role may do p: LeastRoleFor for the ordered roles; pull, inventory and telemetry
// reports for a gateway; reading /metrics for the metrics role.
bool RoleMay(Role role, Permission p);

// n random bytes from the system's generator, lowercase hex.
[[nodiscard]] Result<std::string> RandomHex(std::size_t n);
// 1–64 of [A-Za-z0-9._-]: token names, gateway names.
bool IsTokenName(std::string_view name);

// The SHA-256 of a token, lowercase hex (what the database keeps).
std::string HashToken(std::string_view token);
// HMAC-SHA256(key, message), lowercase hex.
std::string HmacSha256Hex(std::string_view key, std::string_view message);
// Compares without leaking where the first difference is (only the lengths).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// The hub's signing key: DATA/hub.secret, 32 random bytes in hex, created with mode 0600 the
// first time (atomically, so two processes creating it agree on one). kVerification when the file
// is readable by others than its owner.
[[nodiscard]] Result<std::string> LoadOrCreateHubSecret(const std::filesystem::path& data);

struct MintedToken {
  std::string token;  // shown once, never stored
  store::TokenRecord record;
};

class AccessControl {
 public:
  struct Options {
    bool enabled = true;          // false: every request is allowed (loopback only, checked by Hub)
    bool anonymous_pull = false;  // requests without credentials may pull
    std::chrono::seconds session_ttl{300};
    std::chrono::seconds max_presign_ttl{7 * 24 * 3600};
    // kCertificate and kEither need SetGatewayLookup (without it no certificate authenticates).
    GatewayAuth gateway_auth = GatewayAuth::kToken;
  };
  // store and clock must outlive this.
  AccessControl(store::AuthStore& store, std::string secret, const Clock& clock, Options options);

  const Options& options() const { return options_; }
  store::AuthStore& store() { return store_; }
  std::int64_t Now() const;

  // Creates a token in the store. kInvalidArgument for a bad name (1–64 of [A-Za-z0-9._-]) or a
  // ttl that is not positive; kAlreadyExists for a taken name.
  [[nodiscard]] Result<MintedToken> CreateToken(std::string_view name, Role role,
                                                std::string_view created_by,
                                                std::optional<std::chrono::seconds> ttl);

  // How certificates name gateways (RegistryStore::GetGateway); call before the first request.
  void SetGatewayLookup(GatewayCredentialLookup lookup) { gateway_lookup_ = std::move(lookup); }

  // Who the request is, and whether it may do p. authorization: the Authorization header
  // ("Bearer <access or session token>" or "Basic base64(user:token)", the user being ignored).
  // client_name: the CN of the client certificate TLS verified ("" when none). Without an
  // Authorization header, a certificate naming a registered gateway is that gateway (unless
  // gateway_auth is kToken). A gateway's credential needs a certificate of the same gateway
  // when one is presented (else 403) and, with kCertificate, always (else 401). Every other
  // token ignores certificates.
  AccessDecision Decide(std::string_view authorization, Permission p,
                        std::string_view client_name = {});
  // Only who: status 401 when the credentials are missing or bad, 403 for a gateway credential
  // with another gateway's certificate.
  AccessDecision Authenticate(std::string_view authorization, std::string_view client_name = {});

  // Whether gateway `name` may register over a connection whose verified client certificate
  // names client_name ("" when none): with kCertificate it must name the gateway (401 without
  // one); with kEither it must when there is one (403 when it names another).
  AccessDecision CheckRegistration(std::string_view name, std::string_view client_name) const;

  // A session token for who, valid for options().session_ttl.
  std::string IssueSessionToken(const Principal& who);

  // "/v2/REPO/blobs/DIGEST?expires=E&sig=S", valid until now + ttl (ttl capped:
  // kInvalidArgument when over max_presign_ttl or not positive). Returns the path and query.
  [[nodiscard]] Result<std::string> PresignBlob(std::string_view repository,
                                                std::string_view digest, std::chrono::seconds ttl,
                                                std::int64_t* expires);
  // Checks a pre-signed request: kVerification with the reason when the signature does not match
  // method, path and expires, or when it expired.
  [[nodiscard]] Status CheckPresigned(std::string_view method, std::string_view path,
                                      std::string_view expires, std::string_view sig) const;

  // Appends to the audit log; a failure is logged (the request it records has happened).
  void Record(store::AuditEntry entry);

 private:
  // Who the Authorization header is (Authenticate without the certificate's part).
  AccessDecision FromAuthorization(std::string_view authorization);
  AccessDecision FromAccessToken(std::string_view token);
  AccessDecision FromSessionToken(std::string_view token);
  // Whether the stored token may be used now; the reason when not.
  std::optional<std::string> Unusable(const store::TokenRecord& t) const;
  // The identity a usable stored token gives, or 401 with why it is not usable.
  AccessDecision Admit(const store::TokenRecord& t) const;
  // The name of gateway's credential token (kNotFound without a lookup).
  Result<std::string> GatewayCredential(std::string_view gateway) const;
  // The gateway credential the certificate names (401 when it names no registered gateway).
  AccessDecision FromCertificate(std::string_view client_name);
  // d authenticated a gateway's credential: the certificate must agree (see Decide).
  void CheckGatewayCertificate(AccessDecision& d, std::string_view client_name);

  store::AuthStore& store_;
  std::string secret_;
  const Clock& clock_;
  Options options_;
  GatewayCredentialLookup gateway_lookup_;
};

}  // namespace airlock::hub
