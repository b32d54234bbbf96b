#include "hub/access.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/digest.hpp"
#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

constexpr char kTokenPrefix[] = "alk_";
constexpr char kSessionPrefix[] = "ahs1.";

Result<std::string> RandomBytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return Fail(ErrorCode::kInternal, "the system's random number generator failed");
  }
  return out;
}

AccessDecision Unauthorized(std::string reason, bool had_credentials) {
  AccessDecision d;
  d.status = 401;
  d.reason = std::move(reason);
  d.had_credentials = had_credentials;
  return d;
}

}  // namespace

bool IsTokenName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

Result<std::string> RandomHex(std::size_t n) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, RandomBytes(n));
  return HexEncode(bytes);
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kMetrics:
      return "metrics";
    case Role::kGateway:
      return "gateway";
    case Role::kViewer:
      return "viewer";
    case Role::kPublisher:
      return "publisher";
    case Role::kReleaseManager:
      return "release-manager";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r :
       {Role::kMetrics, Role::kViewer, Role::kPublisher, Role::kReleaseManager, Role::kAdmin}) {
    if (name == RoleName(r)) {
      return r;
    }
  }
  return std::nullopt;
}

std::optional<Role> ParseStoredRole(std::string_view name) {
  return name == RoleName(Role::kGateway) ? std::optional<Role>(Role::kGateway) : ParseRole(name);
}

bool RoleMay(Role role, Permission p) {
  if (role == Role::kGateway) {
    return p == Permission::kPull || p == Permission::kReportInventory ||
           p == Permission::kReportTelemetry;
  }
  if (role == Role::kMetrics) {
    return p == Permission::kReadMetrics;
  }
  return role >= LeastRoleFor(p);
}

const char* PermissionName(Permission p) {
  switch (p) {
    case Permission::kPull:
      return "pull";
    case Permission::kPush:
      return "push";
    case Permission::kDelete:
      return "delete";
    case Permission::kPresign:
      return "presign";
    case Permission::kManageTokens:
      return "manage tokens";
    case Permission::kReadAudit:
      return "read the audit log";
    case Permission::kReadRegistry:
      return "read the registry";
    case Permission::kPublishRelease:
      return "publish releases";
    case Permission::kPromote:
      return "promote releases in channels";
    case Permission::kDeploy:
      return "create and cancel deployments";
    case Permission::kManageGateways:
      return "issue gateway registration tokens";
    case Permission::kReportInventory:
      return "report a gateway's inventory";
    case Permission::kReportTelemetry:
      return "forward a gateway's telemetry";
    case Permission::kReadCaptures:
      return "read captured requests";
    case Permission::kReadMetrics:
      return "read the metrics";
  }
  return "?";
}

Role LeastRoleFor(Permission p) {
  switch (p) {
    case Permission::kPull:
    case Permission::kReadRegistry:
    case Permission::kReadMetrics:
      return Role::kViewer;
    case Permission::kPush:
    case Permission::kPresign:
    case Permission::kPublishRelease:
    case Permission::kReadCaptures:
      return Role::kPublisher;
    case Permission::kDelete:
    case Permission::kPromote:
    case Permission::kDeploy:
      return Role::kReleaseManager;
    case Permission::kManageTokens:
    case Permission::kReadAudit:
    case Permission::kManageGateways:
    case Permission::kReportInventory:
    case Permission::kReportTelemetry:
      return Role::kAdmin;
  }
  return Role::kAdmin;
}

const char* GatewayAuthName(GatewayAuth mode) {
  switch (mode) {
    case GatewayAuth::kToken:
      return "token";
    case GatewayAuth::kCertificate:
      return "certificate";
    case GatewayAuth::kEither:
      return "either";
  }
  return "?";
}

std::optional<GatewayAuth> ParseGatewayAuth(std::string_view name) {
  for (GatewayAuth m : {GatewayAuth::kToken, GatewayAuth::kCertificate, GatewayAuth::kEither}) {
    if (name == GatewayAuthName(m)) {
      return m;
    }
  }
  return std::nullopt;
}

std::string HashToken(std::string_view token) { return Sha256Of(token).hex(); }

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &n);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(out), n));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> LoadOrCreateHubSecret(const std::filesystem::path& data) {
  std::filesystem::path path = data / "hub.secret";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return Fail(ErrnoError("cannot stat", path));
    }
    // Written to a temporary file, then linked into place: link fails if another process won
    // the race, and then its secret is the one read below.
    AIRLOCK_ASSIGN_OR_RETURN(std::string key, RandomBytes(32));
    std::filesystem::path temp = data / (".hub.secret.new-" + std::to_string(::getpid()));
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(temp, HexEncode(key) + "\n", 0600));
    if (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
      Error e = ErrnoError("cannot create", path);
      ::unlink(temp.c_str());
      return Fail(std::move(e));
    }
    ::unlink(temp.c_str());
    AIRLOCK_RETURN_IF_ERROR(SyncDirectory(data));
    if (::stat(path.c_str(), &st) != 0) {
      return Fail(ErrnoError("cannot stat", path));
    }
  }
  if ((st.st_mode & 077) != 0) {
    return Fail(ErrorCode::kVerification,
                path.string() +
                    " is readable by other users; chmod 600 it (anyone who reads it "
                    "can sign URLs and session tokens)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1024));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  auto key = HexDecode(text);
  if (!key || key->size() < 32) {
    return Fail(ErrorCode::kCorrupt,
                path.string() + " does not hold a key of 32 hex-encoded bytes");
  }
  return *key;
}

AccessControl::AccessControl(store::AuthStore& store, std::string secret, const Clock& clock,
                             Options options)
    : store_(store), secret_(std::move(secret)), clock_(clock), options_(options) {}

std::int64_t AccessControl::Now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
}

Result<MintedToken> AccessControl::CreateToken(std::string_view name, Role role,
                                               std::string_view created_by,
                                               std::optional<std::chrono::seconds> ttl) {
  if (!IsTokenName(name)) {
    return Fail(ErrorCode::kInvalidArgument,
                "a token name is 1 to 64 letters, digits, '.', '_' or '-', not \"" +
                    std::string(name.substr(0, 80)) + "\"");
  }
  if (ttl && ttl->count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "a token's lifetime must be positive");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string random, RandomBytes(32));
  MintedToken minted;
  minted.token = kTokenPrefix + HexEncode(random);
  store::TokenRecord& r = minted.record;
  r.name = name;
  r.role = RoleName(role);
  r.hash = HashToken(minted.token);
  r.created_by = created_by;
  r.created_at = Now();
  if (ttl) {
    r.expires_at = r.created_at + ttl->count();
  }
  AIRLOCK_RETURN_IF_ERROR(store_.CreateToken(r));
  return minted;
}

std::optional<std::string> AccessControl::Unusable(const store::TokenRecord& t) const {
  if (t.revoked_at) {
    return "the token " + t.name + " was revoked";
  }
  if (t.expires_at && *t.expires_at <= Now()) {
    return "the token " + t.name + " expired at " +
           FormatRfc3339(TimePoint(std::chrono::seconds(*t.expires_at)));
  }
  if (!ParseStoredRole(t.role)) {
    return "the token " + t.name + " has an unknown role " + t.role;
  }
  return std::nullopt;
}

AccessDecision AccessControl::Admit(const store::TokenRecord& t) const {
  if (auto why = Unusable(t)) {
    return Unauthorized(*why, true);
  }
  AccessDecision d;
  d.had_credentials = true;
  d.who = {t.name, *ParseStoredRole(t.role), false};
  return d;
}

AccessDecision AccessControl::FromAccessToken(std::string_view token) {
  auto found = store_.TokenByHash(HashToken(token));
  if (!found) {
    if (found.error().code() != ErrorCode::kNotFound) {
      spdlog::error("{}", found.error().ToString());
    }
    return Unauthorized("the token is not known to this hub", true);
  }
  return Admit(*found);
}

AccessDecision AccessControl::FromSessionToken(std::string_view token) {
  std::string_view rest = token.substr(std::size(kSessionPrefix) - 1);
  auto dot = rest.find('.');
  if (dot == std::string_view::npos) {
    return Unauthorized("a malformed session token", true);
  }
  std::string_view payload = rest.substr(0, dot), sig = rest.substr(dot + 1);
  if (!ConstantTimeEquals(HmacSha256Hex(secret_, "airlock-session\n" + std::string(payload)),
                          sig)) {
    return Unauthorized("the session token's signature does not match (not issued by this hub)",
                        true);
  }
  auto decoded = Base64Decode(payload);
  json claims = decoded ? json::parse(*decoded, nullptr, false) : json();
  if (!claims.is_object() || !claims.contains("sub") || !claims["sub"].is_string() ||
      !claims.contains("exp") || !claims["exp"].is_number_integer()) {
    return Unauthorized("a malformed session token", true);
  }
  if (claims["exp"].get<std::int64_t>() <= Now()) {
    return Unauthorized("the session token expired; get a new one from /v2/token", true);
  }
  auto found = store_.TokenByName(claims["sub"].get<std::string>());
  if (!found) {
    return Unauthorized("the session token's access token no longer exists", true);
  }
  return Admit(*found);
}

Result<std::string> AccessControl::GatewayCredential(std::string_view gateway) const {
  if (!gateway_lookup_) {
    return Fail(ErrorCode::kNotFound, "this hub looks up no gateways");
  }
  return gateway_lookup_(gateway);
}

AccessDecision AccessControl::FromCertificate(std::string_view client_name) {
  auto credential = GatewayCredential(client_name);
  if (!credential) {
    if (credential.error().code() != ErrorCode::kNotFound) {
      spdlog::error("{}", credential.error().ToString());
    }
    // Not audited, like any request without credentials (a client's first probe is one).
    return Unauthorized(
        "no credentials: send Authorization: Bearer <token> (the client "
        "certificate names " +
            std::string(client_name) + ", which is not a registered gateway)",
        false);
  }
  auto found = store_.TokenByName(*credential);
  if (!found) {
    return Unauthorized("the credential of gateway " + std::string(client_name) +
                            " no longer exists; register the gateway again",
                        true);
  }
  AccessDecision d = Admit(*found);
  if (d.allowed() && d.who.role != Role::kGateway) {
    return Unauthorized(
        "the credential of gateway " + std::string(client_name) + " is not a gateway's", true);
  }
  return d;
}

void AccessControl::CheckGatewayCertificate(AccessDecision& d, std::string_view client_name) {
  if (options_.gateway_auth == GatewayAuth::kToken) {
    return;
  }
  if (client_name.empty()) {
    if (options_.gateway_auth == GatewayAuth::kCertificate) {
      d.status = 401;
      d.reason = "the gateway credential " + d.who.name +
                 " came without the gateway's client certificate, and this hub takes gateways "
                 "by their certificates (http.gateway_auth: certificate): give the gateway "
                 "hub.cert_file and hub.key_file, a certificate from the hub's http.client_ca "
                 "whose CN is its name";
    }
    return;
  }
  auto credential = GatewayCredential(client_name);
  if (!credential && credential.error().code() != ErrorCode::kNotFound) {
    spdlog::error("{}", credential.error().ToString());
    d.status = 401;
    d.reason = "the hub could not check the client certificate; try again";
    return;
  }
  if (!credential || *credential != d.who.name) {
    d.status = 403;
    d.reason = "the client certificate names " + std::string(client_name) +
               ", and the credential " + d.who.name + " is not that gateway's";
  }
}

AccessDecision AccessControl::CheckRegistration(std::string_view name,
                                                std::string_view client_name) const {
  AccessDecision d;
  d.had_credentials = true;
  if (options_.gateway_auth == GatewayAuth::kToken) {
    return d;
  }
  if (client_name.empty()) {
    if (options_.gateway_auth == GatewayAuth::kCertificate) {
      d.status = 401;
      d.reason =
          "this hub takes gateways by their client certificates (http.gateway_auth: "
          "certificate): register with hub.cert_file and hub.key_file set in the "
          "gateway's configuration, a certificate from the hub's http.client_ca whose CN "
          "is " +
          std::string(name);
    }
    return d;
  }
  if (client_name != name) {
    d.status = 403;
    d.reason = "the client certificate names " + std::string(client_name) +
               ", not the gateway being registered (" + std::string(name) + ")";
  }
  return d;
}

AccessDecision AccessControl::Authenticate(std::string_view authorization,
                                           std::string_view client_name) {
  if (!options_.enabled) {
    AccessDecision d;
    d.who = {"", Role::kAdmin, true};
    return d;
  }
  if (authorization.empty() && !client_name.empty() &&
      options_.gateway_auth != GatewayAuth::kToken) {
    return FromCertificate(client_name);
  }
  AccessDecision d = FromAuthorization(authorization);
  if (d.allowed() && d.who.role == Role::kGateway) {
    CheckGatewayCertificate(d, client_name);
  }
  return d;
}

AccessDecision AccessControl::FromAuthorization(std::string_view authorization) {
  if (authorization.empty()) {
    return Unauthorized("no credentials: send Authorization: Bearer <token>", false);
  }
  auto space = authorization.find(' ');
  std::string scheme(authorization.substr(0, space));
  for (char& c : scheme) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string_view value =
      space == std::string_view::npos ? std::string_view() : authorization.substr(space + 1);
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  std::string token;
  if (scheme == "bearer") {
    token = value;
  } else if (scheme == "basic") {
    auto decoded = Base64Decode(value);
    auto colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return Unauthorized("malformed Basic credentials (expected base64 of user:token)", true);
    }
    token = decoded->substr(colon + 1);  // the user name is not checked: the token says who
  } else {
    return Unauthorized(
        "unsupported authorization scheme \"" + scheme.substr(0, 20) + "\" (use Bearer or Basic)",
        true);
  }
  if (token.starts_with(kTokenPrefix)) {
    return FromAccessToken(token);
  }
  if (token.starts_with(kSessionPrefix)) {
    return FromSessionToken(token);
  }
  return Unauthorized("not an airlock-hub token (they start with alk_ or ahs1.)", true);
}

AccessDecision AccessControl::Decide(std::string_view authorization, Permission p,
                                     std::string_view client_name) {
  if (authorization.empty() && options_.enabled && options_.anonymous_pull &&
      p == Permission::kPull) {
    AccessDecision d;
    d.who = {"", Role::kViewer, true};
    return d;
  }
  AccessDecision d = Authenticate(authorization, client_name);
  if (!d.allowed()) {
    return d;
  }
  Role needed = LeastRoleFor(p);
  if (!RoleMay(d.who.role, p)) {
    d.status = 403;
    d.reason = std::string("the token ") + d.who.name + " has role " + RoleName(d.who.role) + "; " +
               PermissionName(p) + " needs " + RoleName(needed) + " or higher";
  }
  return d;
}

std::string AccessControl::IssueSessionToken(const Principal& who) {
  std::int64_t now = Now();
  json claims = {{"sub", who.name},
                 {"role", RoleName(who.role)},
                 {"iat", now},
                 {"exp", now + options_.session_ttl.count()}};
  std::string payload = Base64Encode(claims.dump());
  return kSessionPrefix + payload + "." + HmacSha256Hex(secret_, "airlock-session\n" + payload);
}

Result<std::string> AccessControl::PresignBlob(std::string_view repository, std::string_view digest,
                                               std::chrono::seconds ttl, std::int64_t* expires) {
  if (ttl.count() <= 0 || ttl > options_.max_presign_ttl) {
    return Fail(
        ErrorCode::kInvalidArgument,
        "ttl must be from 1 to " + std::to_string(options_.max_presign_ttl.count()) + " seconds");
  }
  std::int64_t until = Now() + ttl.count();
  std::string path = "/v2/" + std::string(repository) + "/blobs/" + std::string(digest);
  std::string e = std::to_string(until);
  if (expires != nullptr) {
    *expires = until;
  }
  return path + "?expires=" + e + "&sig=" + HmacSha256Hex(secret_, "GET\n" + path + "\n" + e);
}

Status AccessControl::CheckPresigned(std::string_view method, std::string_view path,
                                     std::string_view expires, std::string_view sig) const {
  std::string expected = HmacSha256Hex(
      secret_, std::string(method) + "\n" + std::string(path) + "\n" + std::string(expires));
  if (!ConstantTimeEquals(expected, sig)) {
    return Fail(ErrorCode::kVerification,
                "the pre-signed URL's signature does not match its method, path and expiry");
  }
  std::int64_t until = 0;
  try {
    std::size_t used = 0;
    until = std::stoll(std::string(expires), &used);
    if (used != expires.size()) {
      until = 0;
    }
  } catch (const std::exception&) {
    until = 0;
  }
  if (until <= Now()) {
    return Fail(
        ErrorCode::kVerification,
        "the pre-signed URL expired at " + FormatRfc3339(TimePoint(std::chrono::seconds(until))));
  }
  return {};
}

void AccessControl::Record(store::AuditEntry entry) {
  if (entry.at == 0) {
    entry.at = Now();
  }
  auto appended = store_.AppendAudit(entry);
  if (!appended) {
    spdlog::error("audit log: {} ({} {} by {})", appended.error().ToString(), entry.action,
                  entry.target, entry.token_name);
  }
}

}  // namespace airlock::hub
