#include "net/registry_client.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/daemon.hpp"
#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::net {
namespace fs = std::filesystem;

namespace {

// Answers that are not blobs (tag lists, referrers, tokens, error documents) are small.
constexpr std::uint64_t kMaxDocument = 4ULL << 20;
constexpr std::uint64_t kMaxErrorBody = 64 * 1024;
constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

bool IsAlnumLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository name: [a-z0-9]+ joined by ".", "_", "__" or "-"s.
bool IsRepositoryComponent(std::string_view c) {
  if (c.empty() || !IsAlnumLower(c.front()) || !IsAlnumLower(c.back())) {
    return false;
  }
  for (std::size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (IsAlnumLower(ch) || ch == '-') {
      continue;
    }
    if (ch == '.' || ch == '_') {
      bool double_underscore = ch == '_' && i + 1 < c.size() && c[i + 1] == '_';
      if (!IsAlnumLower(c[i + 1]) && !double_underscore) {
        return false;
      }
      if (double_underscore) {
        ++i;
      }
      continue;
    }
    return false;
  }
  return true;
}

bool IsValidRegistry(std::string_view r) {
  if (r.empty()) {
    return false;
  }
  std::string_view host = r;
  std::string_view port;
  if (r.front() == '[') {
    auto close = r.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    host = r.substr(0, close + 1);
    std::string_view rest = r.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return false;
      }
      port = rest.substr(1);
      if (port.empty()) {
        return false;
      }
    }
  } else {
    auto colon = r.find(':');
    if (colon != std::string_view::npos) {
      host = r.substr(0, colon);
      port = r.substr(colon + 1);
      if (port.empty()) {
        return false;
      }
    }
    if (host.empty()) {
      return false;
    }
    for (char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') {
        return false;
      }
    }
  }
  return std::all_of(port.begin(), port.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) &&
         port.size() <= 5;
}

std::string HostOf(std::string_view registry) {
  if (!registry.empty() && registry.front() == '[') {
    return std::string(registry.substr(0, registry.find(']') + 1));
  }
  return std::string(registry.substr(0, registry.find(':')));
}

// "https://host:port/path?q" → "https://host:port".
std::string OriginOf(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) {
    return {};
  }
  auto slash = url.find('/', scheme + 3);
  return std::string(url.substr(0, slash));
}

// A URL without its query, for messages: pre-signed URLs carry their signature there.
std::string WithoutQuery(std::string_view url) { return std::string(url.substr(0, url.find('?'))); }

// Parameters of a WWW-Authenticate challenge: Bearer realm="…",service="…",scope="…".
struct Challenge {
  std::string scheme;  // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;
};

Challenge ParseChallenge(std::string_view header) {
  Challenge c;
  header = Trim(header);
  auto space = header.find(' ');
  c.scheme = Lower(header.substr(0, space));
  if (space == std::string_view::npos) {
    return c;
  }
  std::string_view rest = header.substr(space + 1);
  std::size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ',' || rest[i] == ' ')) {
      ++i;
    }
    auto eq = rest.find('=', i);
    if (eq == std::string_view::npos) {
      break;
    }
    std::string key = Lower(Trim(rest.substr(i, eq - i)));
    i = eq + 1;
    std::string value;
    if (i < rest.size() && rest[i] == '"') {
      ++i;
      while (i < rest.size() && rest[i] != '"') {
        if (rest[i] == '\\' && i + 1 < rest.size()) {
          ++i;
        }
        value += rest[i++];
      }
      ++i;  // the closing quote
    } else {
      auto comma = rest.find(',', i);
      value = std::string(Trim(rest.substr(i, comma - i)));
      i = comma == std::string_view::npos ? rest.size() : comma;
    }
    c.params[key] = value;
  }
  return c;
}

std::vector<std::string> SplitSpaces(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    auto space = s.find(' ', i);
    std::string_view part = s.substr(i, space - i);
    if (!part.empty()) {
      out.emplace_back(part);
    }
    if (space == std::string_view::npos) {
      break;
    }
    i = space + 1;
  }
  return out;
}

std::string PullScope(std::string_view repo) { return "repository:" + std::string(repo) + ":pull"; }
std::string PushScope(std::string_view repo) {
  return "repository:" + std::string(repo) + ":pull,push";
}

void EnsureCurlInitialised() {
  // curl_global_init is not thread-safe in libcurl 7.88; once per process, before any handle.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Status WriteAllAt(int fd, std::string_view data, std::uint64_t offset, const fs::path& where) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError("cannot write", where));
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// References

bool IsValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) {
    return false;
  }
  auto ok = [](char c, bool first) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           (!first && (c == '.' || c == '-'));
  };
  for (std::size_t i = 0; i < tag.size(); ++i) {
    if (!ok(tag[i], i == 0)) {
      return false;
    }
  }
  return true;
}

bool IsLoopbackRegistry(std::string_view registry) { return IsLoopbackHost(HostOf(registry)); }

Result<RegistryReference> RegistryReference::Parse(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument,
                "bad registry reference \"" + std::string(text) + "\": " + why +
                    " (want REGISTRY/REPOSITORY[:TAG] or REGISTRY/REPOSITORY@sha256:…, e.g. "
                    "localhost:5000/models/affine:1.0.0)");
  };
  RegistryReference ref;
  std::string_view rest = text;
  auto at = rest.find('@');
  if (at != std::string_view::npos) {
    auto digest = Digest::Parse(rest.substr(at + 1));
    if (!digest) {
      return bad("the digest must be sha256: and 64 lowercase hex digits");
    }
    ref.digest = *digest;
    rest = rest.substr(0, at);
  }
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return bad("name the registry too");
  }
  ref.registry = std::string(rest.substr(0, slash));
  if (!IsValidRegistry(ref.registry)) {
    return bad("\"" + ref.registry + "\" is not a host[:port]");
  }
  rest = rest.substr(slash + 1);
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!IsValidTag(ref.tag)) {
      return bad("\"" + ref.tag + "\" is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]*)");
    }
  }
  ref.repository = std::string(rest);
  if (ref.repository.empty() || ref.repository.size() > 255) {
    return bad("the repository name is empty or too long");
  }
  std::size_t start = 0;
  while (true) {
    auto next = ref.repository.find('/', start);
    std::string_view part = std::string_view(ref.repository)
                                .substr(start, next == std::string::npos ? next : next - start);
    if (!IsRepositoryComponent(part)) {
      return bad("repository names are lowercase letters and digits, separated by . _ - and /");
    }
    if (next == std::string::npos) {
      break;
    }
    start = next + 1;
  }
  return ref;
}

std::string RegistryReference::Reference() const {
  if (!tag.empty()) {
    return tag;
  }
  return digest ? digest->ToString() : std::string();
}

std::string RegistryReference::ToString() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) {
    out += ":" + tag;
  }
  if (digest) {
    out += "@" + digest->ToString();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP over libcurl

struct registry_detail::CurlHandle {
  CURL* curl = nullptr;
  ~CurlHandle() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }
};

struct registry_detail::HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // of the last response; names lower
  std::string body;

  std::string Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) {
        return v;
      }
    }
    return {};
  }
  std::vector<std::string> Headers(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : headers) {
      if (k == name) {
        out.push_back(v);
      }
    }
    return out;
  }
  bool ok() const { return status >= 200 && status < 300; }
};

struct registry_detail::HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // A request body of body_size bytes, read through read(offset, out, n).
  bool has_body = false;
  std::uint64_t body_size = 0;
  std::function<Status(std::uint64_t offset, char* out, std::size_t n)> read;
  std::function<void(std::uint64_t sent)> on_sent;
  // The body of a 2xx answer goes to sink when set (an error aborts the transfer with it), else
  // into Response::body up to max_body bytes (more is refused as kCorrupt).
  std::function<Status(const HttpResponse&, std::string_view)> sink;
  std::uint64_t max_body = kMaxDocument;
  bool follow_redirects = false;
  // When the transfer must be over (kTimeout after it). Unset: a download's own, from max_body
  // (RegistryOptions::min_download_rate); DownloadBlob sets one for all attempts of a blob.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

namespace {

struct TransferState {
  registry_detail::HttpCall* call = nullptr;
  registry_detail::HttpResponse* response = nullptr;
  CURL* curl = nullptr;
  std::uint64_t sent = 0;
  std::optional<Error> failure;
  bool too_large = false;
};

}  // namespace

extern "C" {
static size_t AirlockOnHeader(char* data, size_t size, size_t count, void* user);
static size_t AirlockOnBody(char* data, size_t size, size_t count, void* user);
static size_t AirlockOnRead(char* out, size_t size, size_t count, void* user);
static int AirlockOnSeek(void* user, curl_off_t offset, int origin);
}

namespace {

size_t OnHeader(TransferState& st, std::string_view line) {
  if (line.starts_with("HTTP/")) {
    st.response->headers.clear();  // a new response (after 100 Continue, a redirect, …)
    return line.size();
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    st.response->headers.emplace_back(Lower(Trim(line.substr(0, colon))),
                                      std::string(Trim(line.substr(colon + 1))));
  }
  return line.size();
}

size_t OnBody(TransferState& st, std::string_view chunk) {
  long code = 0;
  curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 300 && code < 400) {
    return chunk.size();  // the body of a redirect that curl follows
  }
  bool success = code >= 200 && code < 300;
  if (success && st.call->sink) {
    st.response->status = code;
    Status s = st.call->sink(*st.response, chunk);
    if (!s) {
      st.failure = std::move(s).error();
      return 0;
    }
    return chunk.size();
  }
  std::string& body = st.response->body;
  std::uint64_t cap = success ? st.call->max_body : kMaxErrorBody;
  if (body.size() + chunk.size() > cap) {
    if (success) {
      st.too_large = true;
      return 0;
    }
    body.append(chunk.substr(0, cap - body.size()));  // enough of an error page to quote
    return chunk.size();
  }
  body.append(chunk);
  return chunk.size();
}

size_t OnRead(TransferState& st, char* out, std::size_t room) {
  std::uint64_t left = st.call->body_size - st.sent;
  std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(room, left));
  if (n == 0) {
    return 0;
  }
  Status s = st.call->read(st.sent, out, n);
  if (!s) {
    st.failure = std::move(s).error();
    return CURL_READFUNC_ABORT;
  }
  st.sent += n;
  if (st.call->on_sent) {
    st.call->on_sent(st.sent);
  }
  return n;
}

}  // namespace

extern "C" {
static size_t AirlockOnHeader(char* data, size_t size, size_t count, void* user) {
  return OnHeader(*static_cast<TransferState*>(user), std::string_view(data, size * count));
}
static size_t AirlockOnBody(char* data, size_t size, size_t count, void* user) {
  return OnBody(*static_cast<TransferState*>(user), std::string_view(data, size * count));
}
static size_t AirlockOnRead(char* out, size_t size, size_t count, void* user) {
  return OnRead(*static_cast<TransferState*>(user), out, size * count);
}
// curl rewinds the body when it must send it again (a redirect, an authentication round).
static int AirlockOnSeek(void* user, curl_off_t offset, int origin) {
  auto& st = *static_cast<TransferState*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::uint64_t>(offset) > st.call->body_size) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  st.sent = static_cast<std::uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}
}

namespace {

// The registry's own words: "CODE: message" from its JSON error document, else the start of
// its body.
std::string RegistrySays(const registry_detail::HttpResponse& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string out;
  if (!j.is_discarded() && j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) {
        continue;
      }
      if (!out.empty()) {
        out += "; ";
      }
      out += trust::StringOr(e, "code");
      std::string message = trust::StringOr(e, "message");
      if (!message.empty()) {
        out += ": " + message;
      }
      // A string detail says why (airlock-hub names the role a refusal needed); other registries
      // put objects there, which are left out.
      std::string detail = trust::StringOr(e, "detail");
      if (!detail.empty() && detail.size() <= 300) {
        out += " (" + detail + ")";
      }
    }
    return out;
  }
  std::string_view text = Trim(r.body);
  if (text.size() > 200) {
    text = text.substr(0, 200);
  }
  bool printable = std::all_of(text.begin(), text.end(), [](char c) {
    return std::isprint(static_cast<unsigned char>(c)) || c == '\n';
  });
  return printable ? std::string(text) : std::string();
}

}  // namespace

// An error for a registry answer that is not what the operation wanted, saying what to do.
static Error HttpError(const registry_detail::HttpResponse& r, const std::string& what,
                       bool have_credentials) {
  std::string says = RegistrySays(r);
  std::string detail = "HTTP " + std::to_string(r.status) + (says.empty() ? "" : ", " + says);
  switch (r.status) {
    case 401:
      return Error(ErrorCode::kInvalidArgument,
                   what + ": " +
                       (have_credentials ? "the registry refused the credentials (" + detail +
                                               "); check the user name and password or token"
                                         : "the registry wants credentials (" + detail +
                                               "); give --username and --password-stdin, or set "
                                               "AIRLOCK_REGISTRY_USER and "
                                               "AIRLOCK_REGISTRY_PASSWORD (or "
                                               "AIRLOCK_REGISTRY_TOKEN)"));
    case 403:
      return Error(ErrorCode::kInvalidArgument,
                   what + ": the registry does not allow this account to do that (" + detail +
                       "); ask its administrator for access to the repository");
    case 404:
      return Error(ErrorCode::kNotFound, what + ": not found (" + detail + ")");
    case 408:
    case 429:
      return Error(ErrorCode::kUnavailable,
                   what + ": the registry is busy (" + detail + "); try again later");
    default:
      break;
  }
  if (r.status >= 500) {
    return Error(ErrorCode::kUnavailable, what + ": the registry failed (" + detail +
                                              "); try again later, or look at "
                                              "the registry's log");
  }
  if (says.find("DIGEST_INVALID") != std::string::npos) {
    return Error(ErrorCode::kCorrupt,
                 what + ": the registry computed another digest for what was sent (" + detail +
                     "); the package is corrupt: check it with `airlock inspect`");
  }
  return Error(ErrorCode::kInvalidArgument, what + ": the registry refused it (" + detail + ")");
}

// ---------------------------------------------------------------------------------------------
// RegistryClient

Result<std::unique_ptr<RegistryClient>> RegistryClient::Create(RegistryOptions options) {
  if (!IsValidRegistry(options.registry)) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + options.registry + "\" is not a registry address (host[:port])");
  }
  if (options.max_attempts < 1 || options.chunk_size == 0) {
    return Fail(ErrorCode::kInvalidArgument, "max_attempts and chunk_size must be positive");
  }
  bool http = !options.https && (options.plain_http || IsLoopbackRegistry(options.registry));
  std::string base = (http ? "http://" : "https://") + options.registry;
  EnsureCurlInitialised();
  auto client =
      std::unique_ptr<RegistryClient>(new RegistryClient(std::move(options), std::move(base)));
  client->http_->curl = curl_easy_init();
  if (client->http_->curl == nullptr) {
    return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  }
  return client;
}

RegistryClient::RegistryClient(RegistryOptions options, std::string base_url)
    : options_(std::move(options)),
      base_url_(std::move(base_url)),
      http_(std::make_unique<Http>()) {}

RegistryClient::~RegistryClient() = default;

std::string RegistryClient::BlobUrl(std::string_view repo, const Digest& digest) const {
  return base_url_ + "/v2/" + std::string(repo) + "/blobs/" + digest.ToString();
}

std::string RegistryClient::ManifestUrl(std::string_view repo, std::string_view reference) const {
  return base_url_ + "/v2/" + std::string(repo) + "/manifests/" + std::string(reference);
}

std::string RegistryClient::ReferrersTag(const Digest& subject) {
  return "sha256-" + subject.hex();
}

void RegistryClient::Backoff(int attempt) const {
  std::this_thread::sleep_for(options_.retry_delay * attempt);
}

std::optional<std::chrono::steady_clock::time_point> RegistryClient::DownloadDeadline(
    std::uint64_t size) const {
  const std::uint64_t rate = options_.min_download_rate;
  if (rate == 0) {
    return std::nullopt;
  }
  // size / rate seconds, in milliseconds, without overflowing for any size.
  std::uint64_t ms = size / rate * 1000 + size % rate * 1000 / rate;
  ms = std::min<std::uint64_t>(ms, std::uint64_t{1} << 40);  // some 35 years: no deadline at all
  return std::chrono::steady_clock::now() + options_.download_grace + std::chrono::milliseconds(ms);
}

Result<registry_detail::HttpResponse> RegistryClient::Perform(Call& call) {
  CURL* c = http_->curl;
  curl_easy_reset(c);
  Response response;
  TransferState st;
  st.call = &call;
  st.response = &response;
  st.curl = c;
  char errbuf[CURL_ERROR_SIZE] = {};
  bool http_allowed = base_url_.starts_with("http://");
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout.count()));
  std::optional<std::chrono::steady_clock::time_point> deadline = call.deadline;
  if (!deadline && (call.method == "GET" || call.method == "HEAD")) {
    deadline = DownloadDeadline(call.max_body);
  }
  std::string where = call.method + " " + WithoutQuery(call.url);
  if (deadline) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Fail(ErrorCode::kTimeout, where + ": its deadline has passed");
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
  }
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  // Redirects (blob storage elsewhere) may not downgrade to http unless http is allowed.
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, http_allowed ? "http,https" : "https");
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (!options_.client_cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, options_.client_cert.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, options_.client_key.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, AirlockOnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, AirlockOnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  if (call.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (call.has_body) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, AirlockOnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &st);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, AirlockOnSeek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &st);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(call.body_size));
    if (call.method != "PUT") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
    }
  } else if (call.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
  } else if (call.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  if (call.follow_redirects) {
    // libcurl (>= 7.58) does not send our Authorization header to another host.
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  }
  curl_slist* headers = nullptr;
  for (const auto& h : call.headers) {
    headers = curl_slist_append(headers, h.c_str());
  }
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  // The handle keeps pointers to this frame's state; drop them before returning.
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);

  if (st.failure) {
    return Fail(std::move(*st.failure));
  }
  if (st.too_large) {
    return Fail(ErrorCode::kCorrupt, where + ": the answer is larger than the " +
                                         std::to_string(call.max_body) + " bytes expected");
  }
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_CONNECT:
        return Fail(ErrorCode::kUnavailable,
                    "cannot reach the " + options_.server_name + " at " + base_url_ + " (" + why +
                        "): is it running, and are the address and port right?");
      case CURLE_OPERATION_TIMEDOUT:
        // Ours, not the stall's: curl's clock for it, started a moment later, may end first.
        if (deadline &&
            std::chrono::steady_clock::now() + std::chrono::milliseconds(50) >= *deadline) {
          return Fail(ErrorCode::kTimeout,
                      where + ": not done by its deadline (" + why +
                          "): the server sends too slowly, or trickles on purpose");
        }
        return Fail(ErrorCode::kTimeout, where + ": timed out (" + why + ")");
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CACERT_BADFILE:
        return Fail(ErrorCode::kVerification,
                    "TLS with " + base_url_ + " failed (" + why +
                        "): give the registry's CA with --ca-file, or use --plain-http if it "
                        "serves plain http");
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_TOO_MANY_REDIRECTS:
        return Fail(ErrorCode::kUnsupported, where + ": " + why);
      default:
        return Fail(ErrorCode::kUnavailable, where + ": the transfer broke (" + why + ")");
    }
  }
  return response;
}

std::string RegistryClient::AuthorizationFor(const std::string& scope) const {
  if (!options_.credentials.token.empty()) {
    return "Bearer " + options_.credentials.token;
  }
  if (auto it = tokens_.find(scope); it != tokens_.end()) {
    return "Bearer " + it->second;
  }
  if (use_basic_) {
    return "Basic " +
           Base64Encode(options_.credentials.username + ":" + options_.credentials.password);
  }
  return {};
}

Status RegistryClient::AuthorizeFor(const Response& challenge_response, const std::string& scope) {
  const RegistryCredentials& creds = options_.credentials;
  bool have_credentials = !creds.username.empty() || !creds.token.empty();
  std::string header = challenge_response.Header("www-authenticate");
  Challenge challenge = ParseChallenge(header);
  if (!creds.token.empty() || challenge.scheme.empty()) {
    return Fail(
        HttpError(challenge_response, "authenticating with " + base_url_, have_credentials));
  }
  if (challenge.scheme == "basic") {
    if (creds.username.empty() || use_basic_) {
      return Fail(
          HttpError(challenge_response, "authenticating with " + base_url_, have_credentials));
    }
    use_basic_ = true;
    return {};
  }
  if (challenge.scheme != "bearer" || challenge.params["realm"].empty()) {
    return Fail(ErrorCode::kUnsupported,
                base_url_ + " asks for authentication scheme \"" + challenge.scheme +
                    "\", which airlock does not speak (it speaks Basic and Bearer)");
  }
  std::string realm = challenge.params["realm"];
  // The token service sees the password: it must be https unless the registry itself is allowed
  // plain http and the token service is on loopback, or plain http was asked for.
  bool realm_https = realm.starts_with("https://");
  std::string realm_origin = OriginOf(realm);
  bool realm_loopback = realm.starts_with("http://") && IsLoopbackRegistry(realm_origin.substr(7));
  if (!realm_https && !(realm.starts_with("http://") && (realm_loopback || options_.plain_http))) {
    return Fail(ErrorCode::kUnsupported,
                base_url_ + " sends credentials to the token service " + WithoutQuery(realm) +
                    ", which is not https; refusing (use --plain-http to allow it)");
  }
  std::vector<std::string> scopes = SplitSpaces(scope);
  for (const auto& s : SplitSpaces(challenge.params["scope"])) {
    if (std::find(scopes.begin(), scopes.end(), s) == scopes.end()) {
      scopes.push_back(s);
    }
  }
  auto escape = [this](const std::string& s) {
    char* e = curl_easy_escape(http_->curl, s.c_str(), static_cast<int>(s.size()));
    std::string out = e != nullptr ? e : "";
    curl_free(e);
    return out;
  };
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  url += "service=" + escape(challenge.params["service"]);
  for (const auto& s : scopes) {
    url += "&scope=" + escape(s);
  }
  Call call;
  call.url = url;
  call.max_body = kMaxDocument;
  if (!creds.username.empty()) {
    call.headers.push_back("Authorization: Basic " +
                           Base64Encode(creds.username + ":" + creds.password));
  }
  AIRLOCK_ASSIGN_OR_RETURN(Response r, Perform(call));
  if (!r.ok()) {
    return Fail(HttpError(r, "getting a token from " + WithoutQuery(realm), have_credentials));
  }
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string token;
  if (!j.is_discarded() && j.is_object()) {
    token = trust::StringOr(j, "token", trust::StringOr(j, "access_token"));
  }
  if (token.empty()) {
    return Fail(ErrorCode::kUnsupported,
                "the token service " + WithoutQuery(realm) + " answered without a token");
  }
  tokens_[scope] = std::move(token);
  return {};
}

Result<registry_detail::HttpResponse> RegistryClient::Send(Call& call, const std::string& scope) {
  const std::vector<std::string> base_headers = call.headers;
  for (int round = 0;; ++round) {
    call.headers = base_headers;
    std::string auth = AuthorizationFor(scope);
    if (!auth.empty()) {
      call.headers.push_back("Authorization: " + auth);
    }
    auto r = Perform(call);
    call.headers = base_headers;  // the credentials do not outlive the call
    if (!r || r->status != 401 || round > 0) {
      return r;
    }
    AIRLOCK_RETURN_IF_ERROR(AuthorizeFor(*r, scope));
  }
}

Result<HttpAnswer> RegistryClient::Request(std::string_view method, std::string_view path,
                                           std::string_view body, std::string_view content_type,
                                           std::uint64_t max_body) {
  Call call;
  call.method = std::string(method);
  call.url = base_url_ + std::string(path);
  call.max_body = max_body;
  if (!content_type.empty()) {
    call.headers.push_back("Content-Type: " + std::string(content_type));
    call.has_body = true;
    call.body_size = body.size();
    call.read = [body](std::uint64_t offset, char* out, std::size_t n) -> Status {
      std::copy_n(body.data() + offset, n, out);
      return {};
    };
  }
  call.headers.push_back("Accept: application/json");
  const RegistryCredentials& creds = options_.credentials;
  if (!creds.token.empty()) {
    call.headers.push_back("Authorization: Bearer " + creds.token);
  } else if (!creds.username.empty()) {
    call.headers.push_back("Authorization: Basic " +
                           Base64Encode(creds.username + ":" + creds.password));
  }
  auto r = Perform(call);
  call.headers.clear();  // the credentials do not outlive the call
  if (!r) {
    return Fail(std::move(r.error()));
  }
  return HttpAnswer{.status = r->status,
                    .content_type = r->Header("content-type"),
                    .body = std::move(r->body)};
}

Status RegistryClient::Ping() {
  Call call;
  call.url = base_url_ + "/v2/";
  AIRLOCK_ASSIGN_OR_RETURN(Response r, Send(call, ""));
  bool have_credentials =
      !options_.credentials.username.empty() || !options_.credentials.token.empty();
  if (!r.ok()) {
    if (r.status == 404) {
      return Fail(ErrorCode::kUnsupported, base_url_ +
                                               " does not serve the OCI distribution API "
                                               "(GET /v2/ answered 404): is it a registry?");
    }
    return Fail(HttpError(r, "GET " + base_url_ + "/v2/", have_credentials));
  }
  return {};
}

Result<std::optional<std::uint64_t>> RegistryClient::BlobSize(std::string_view repo,
                                                              const Digest& digest) {
  Call call;
  call.method = "HEAD";
  call.url = BlobUrl(repo, digest);
  call.follow_redirects = true;
  AIRLOCK_ASSIGN_OR_RETURN(Response r, Send(call, PullScope(repo)));
  if (r.status == 404) {
    return std::optional<std::uint64_t>();
  }
  if (!r.ok()) {
    return Fail(HttpError(r, "HEAD blob " + digest.ToString() + " in " + std::string(repo),
                          !options_.credentials.username.empty()));
  }
  std::string length = r.Header("content-length");
  std::uint64_t size = 0;
  try {
    size = std::stoull(length);
  } catch (const std::exception&) {
    return Fail(ErrorCode::kCorrupt, "the registry answered HEAD blob " + digest.ToString() +
                                         " without a Content-Length");
  }
  return std::optional<std::uint64_t>(size);
}

Result<std::string> RegistryClient::FetchBlob(std::string_view repo, const Digest& digest,
                                              std::uint64_t size) {
  std::string where = "blob " + digest.ToString() + " of " + std::string(repo);
  Call call;
  call.url = BlobUrl(repo, digest);
  call.follow_redirects = true;
  call.max_body = size;  // one byte more is refused
  auto r = Send(call, PullScope(repo));
  if (!r) {
    return Fail(std::move(r.error()).WithContext(where));
  }
  if (!r->ok()) {
    return Fail(HttpError(*r, where, !options_.credentials.username.empty()));
  }
  if (r->body.size() != size) {
    return Fail(ErrorCode::kCorrupt, where + ": the registry sent " +
                                         std::to_string(r->body.size()) + " bytes, expected " +
                                         std::to_string(size));
  }
  Digest got = Sha256Of(r->body);
  if (got != digest) {
    return Fail(
        ErrorCode::kCorrupt,
        where + " does not match its digest: the registry sent bytes hashing to " + got.ToString());
  }
  return std::move(r->body);
}

Status RegistryClient::DownloadBlob(std::string_view repo, const Digest& digest, std::uint64_t size,
                                    const fs::path& file, const TransferProgress& progress) {
  std::string where = "blob " + digest.ToString() + " of " + std::string(repo);
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return Fail(ErrnoError("cannot create", file));
  }
  struct RemoveUnlessKept {
    fs::path path;
    bool keep = false;
    ~RemoveUnlessKept() {
      if (!keep) {
        std::error_code ignored;
        fs::remove(path, ignored);
      }
    }
  } cleanup{file};

  auto hash = std::make_unique<Sha256>();
  std::uint64_t have = 0;
  auto restart = [&]() -> Status {
    if (::ftruncate(fd.get(), 0) != 0) {
      return Fail(ErrnoError("cannot truncate", file));
    }
    hash = std::make_unique<Sha256>();
    have = 0;
    return {};
  };
  std::optional<Error> last;
  // One deadline for the blob: resuming does not give a trickling server more time.
  const auto deadline = DownloadDeadline(size);
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (attempt > 1) {
      Backoff(attempt - 1);
      if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        break;
      }
    }
    Call call;
    call.url = BlobUrl(repo, digest);
    call.follow_redirects = true;
    call.deadline = deadline;
    if (have > 0) {
      call.headers.push_back("Range: bytes=" + std::to_string(have) + "-");
    }
    bool started = false;
    call.sink = [&](const Response& r, std::string_view chunk) -> Status {
      if (!started) {
        started = true;
        if (r.status == 206) {
          // "bytes START-END/TOTAL": it must continue where the file ends.
          std::string range = r.Header("content-range");
          std::uint64_t start = UINT64_MAX;
          std::uint64_t end = 0;
          std::uint64_t total = size;
          std::sscanf(range.c_str(), "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &start, &end,
                      &total);
          if (total != size) {
            return Fail(ErrorCode::kCorrupt, where + ": the registry says it is " +
                                                 std::to_string(total) + " bytes, expected " +
                                                 std::to_string(size));
          }
          if (start != have) {
            AIRLOCK_RETURN_IF_ERROR(restart());
            return Fail(ErrorCode::kUnavailable,
                        where + ": the registry resumed at another offset (" + range + ")");
          }
        } else {
          if (have > 0) {
            AIRLOCK_RETURN_IF_ERROR(restart());  // a whole answer: start again from zero
          }
          std::string length = r.Header("content-length");
          if (!length.empty() && length != std::to_string(size)) {
            return Fail(ErrorCode::kCorrupt, where + ": the registry serves " + length +
                                                 " bytes, expected " + std::to_string(size));
          }
        }
      }
      if (chunk.size() > size - have) {
        return Fail(ErrorCode::kCorrupt, where + ": the registry sent more than the expected " +
                                             std::to_string(size) + " bytes");
      }
      AIRLOCK_RETURN_IF_ERROR(WriteAllAt(fd.get(), chunk, have, file));
      hash->Update(chunk);
      have += chunk.size();
      if (progress) {
        progress(have, size);
      }
      return {};
    };
    auto r = Send(call, PullScope(repo));
    if (!r) {
      ErrorCode code = r.error().code();
      if (code != ErrorCode::kUnavailable && code != ErrorCode::kTimeout) {
        return Fail(std::move(r.error()));
      }
      last = std::move(r.error());
      continue;  // the network broke: resume from what we have
    }
    if (r->status == 416) {
      AIRLOCK_RETURN_IF_ERROR(restart());
      last = Error(ErrorCode::kUnavailable, where + ": the registry refused the Range (416)");
      continue;
    }
    if (!r->ok()) {
      Error e = HttpError(*r, where, !options_.credentials.username.empty());
      if (e.code() != ErrorCode::kUnavailable) {
        return Fail(std::move(e));
      }
      last = std::move(e);
      continue;
    }
    if (have < size) {
      last = Error(ErrorCode::kUnavailable, where + ": the transfer ended after " +
                                                std::to_string(have) + " of " +
                                                std::to_string(size) + " bytes");
      continue;
    }
    Digest got = hash->Finish();
    if (got != digest) {
      return Fail(ErrorCode::kCorrupt,
                  where + " does not match its digest: the registry sent bytes hashing to " +
                      got.ToString());
    }
    cleanup.keep = true;
    return {};
  }
  Error e = std::move(*last);
  if (deadline && std::chrono::steady_clock::now() >= *deadline) {
    return Fail(Error(ErrorCode::kTimeout, e.message())
                    .WithContext("gave up when its deadline passed (" + std::to_string(size) +
                                 " bytes at " + std::to_string(options_.min_download_rate) +
                                 " bytes a second, and " +
                                 std::to_string(options_.download_grace.count()) + " ms more)"));
  }
  return Fail(std::move(e).WithContext("gave up after " + std::to_string(options_.max_attempts) +
                                       " attempts"));
}

Result<BlobPushOutcome> RegistryClient::PushBlob(std::string_view repo, const Digest& digest,
                                                 const pkg::FileRange& range,
                                                 std::string_view mount_from,
                                                 const TransferProgress& progress) {
  std::string where = "the blob to upload, " + digest.ToString();
  auto read = [range, where](std::uint64_t offset, char* out, std::size_t n) -> Status {
    if (offset + n > range.size) {
      return Fail(ErrorCode::kInternal, "read past the blob");
    }
    return pkg::ReadRange(range, offset, out, n, where);
  };
  return Upload(repo, digest, range.size, read, mount_from, progress);
}

Result<BlobPushOutcome> RegistryClient::PushBlob(std::string_view repo, const Digest& digest,
                                                 std::string_view bytes,
                                                 std::string_view mount_from) {
  auto read = [bytes](std::uint64_t offset, char* out, std::size_t n) -> Status {
    if (offset + n > bytes.size()) {
      return Fail(ErrorCode::kInternal, "read past the blob");
    }
    std::copy_n(bytes.data() + offset, n, out);
    return {};
  };
  return Upload(repo, digest, bytes.size(), read, mount_from, {});
}

Result<BlobPushOutcome> RegistryClient::Upload(
    std::string_view repo, const Digest& digest, std::uint64_t size,
    const std::function<Status(std::uint64_t, char*, std::size_t)>& read,
    std::string_view mount_from, const TransferProgress& progress) {
  std::string where = "uploading blob " + digest.ToString() + " to " + std::string(repo);
  bool have_credentials = !options_.credentials.username.empty();
  std::string scope = PushScope(repo);
  if (!mount_from.empty() && mount_from != repo) {
    scope += " " + PullScope(mount_from);
  }
  {
    Call head;
    head.method = "HEAD";
    head.url = BlobUrl(repo, digest);
    head.follow_redirects = true;
    auto r = Send(head, scope);
    if (!r) {
      return Fail(std::move(r.error()).WithContext(where));
    }
    if (r->ok()) {
      std::string length = r->Header("content-length");
      if (!length.empty() && length != std::to_string(size)) {
        return Fail(ErrorCode::kCorrupt, where + ": the registry has this digest with " + length +
                                             " bytes, the package says " + std::to_string(size));
      }
      return BlobPushOutcome::kExisted;
    }
    if (r->status != 404) {
      return Fail(HttpError(*r, where, have_credentials));
    }
  }
  // Absolute upload locations must stay on the registry's origin (they carry our credentials).
  auto resolve = [this](const std::string& location) -> Result<std::string> {
    if (location.empty()) {
      return Fail(ErrorCode::kUnsupported, "the registry gave no upload Location");
    }
    if (location.starts_with("http://") || location.starts_with("https://")) {
      if (OriginOf(location) != base_url_) {
        return Fail(ErrorCode::kUnsupported, "the registry moved the upload to another origin (" +
                                                 OriginOf(location) +
                                                 "), which airlock does not send credentials to");
      }
      return location;
    }
    return base_url_ + (location.starts_with("/") ? "" : "/") + location;
  };
  auto with_query = [](const std::string& url, const std::string& query) {
    return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
  };
  std::optional<Error> last;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (attempt > 1) {
      Backoff(attempt - 1);
    }
    Call post;
    post.method = "POST";
    post.url = base_url_ + "/v2/" + std::string(repo) + "/blobs/uploads/";
    bool mounting = !mount_from.empty() && mount_from != repo;
    if (mounting) {
      post.url += "?mount=" + digest.ToString() + "&from=" + std::string(mount_from);
    }
    auto started = Send(post, scope);
    if (!started) {
      if (started.error().code() == ErrorCode::kUnavailable ||
          started.error().code() == ErrorCode::kTimeout) {
        last = std::move(started.error());
        continue;
      }
      return Fail(std::move(started.error()).WithContext(where));
    }
    if (mounting && started->status == 201) {
      return BlobPushOutcome::kMounted;
    }
    if (started->status != 202) {
      Error e = HttpError(*started, where, have_credentials);
      if (e.code() == ErrorCode::kUnavailable && started->status >= 500) {
        last = std::move(e);
        continue;
      }
      return Fail(std::move(e));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string location, resolve(started->Header("location")));

    // Chunks (PATCH) for a large blob; a broken chunk resumes from the offset the registry has.
    std::uint64_t offset = 0;
    bool broken = false;
    if (size > options_.chunk_size) {
      int chunk_failures = 0;
      while (offset < size) {
        std::uint64_t n = std::min(options_.chunk_size, size - offset);
        Call patch;
        patch.method = "PATCH";
        patch.url = location;
        patch.has_body = true;
        patch.body_size = n;
        std::uint64_t base = offset;
        patch.read = [&read, base](std::uint64_t at, char* out, std::size_t count) {
          return read(base + at, out, count);
        };
        if (progress) {
          patch.on_sent = [&progress, base, size](std::uint64_t sent) {
            progress(base + sent, size);
          };
        }
        patch.headers = {
            "Content-Type: application/octet-stream",
            "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + n - 1)};
        auto r = Send(patch, scope);
        if (r && r->status == 202) {
          AIRLOCK_ASSIGN_OR_RETURN(location, resolve(r->Header("location")));
          offset += n;
          continue;
        }
        if (r && r->status != 416) {
          return Fail(HttpError(*r, where, have_credentials));
        }
        if (!r && r.error().code() != ErrorCode::kUnavailable &&
            r.error().code() != ErrorCode::kTimeout) {
          return Fail(std::move(r.error()).WithContext(where));
        }
        if (++chunk_failures >= options_.max_attempts) {
          last = r ? Error(ErrorCode::kUnavailable, where + ": chunk refused (416)")
                   : std::move(r.error());
          broken = true;
          break;
        }
        // Ask the registry how much it has ("Range: 0-LAST") and go on from there.
        Backoff(chunk_failures);
        Call status;
        status.url = location;
        auto s = Send(status, scope);
        if (!s || s->status != 204) {
          last = s ? HttpError(*s, where, have_credentials) : std::move(s.error());
          broken = true;
          break;
        }
        std::uint64_t first = 0;
        std::uint64_t last_byte = 0;
        std::string range = s->Header("range");
        if (std::sscanf(range.c_str(), "%" SCNu64 "-%" SCNu64, &first, &last_byte) == 2) {
          offset = last_byte + 1;
        } else {
          offset = 0;
        }
        AIRLOCK_ASSIGN_OR_RETURN(
            location, resolve(s->Header("location").empty() ? location : s->Header("location")));
      }
      if (broken) {
        continue;  // a new upload session
      }
    }
    Call put;
    put.method = "PUT";
    put.url = with_query(location, "digest=" + digest.ToString());
    put.has_body = true;
    put.body_size = size - offset;
    std::uint64_t base = offset;
    put.read = [&read, base](std::uint64_t at, char* out, std::size_t count) {
      return read(base + at, out, count);
    };
    if (progress) {
      put.on_sent = [&progress, base, size](std::uint64_t sent) { progress(base + sent, size); };
    }
    put.headers = {"Content-Type: application/octet-stream"};
    auto r = Send(put, scope);
    if (!r) {
      if (r.error().code() == ErrorCode::kUnavailable || r.error().code() == ErrorCode::kTimeout) {
        last = std::move(r.error());
        continue;
      }
      return Fail(std::move(r.error()).WithContext(where));
    }
    if (r->status != 201) {
      Error e = HttpError(*r, where, have_credentials);
      if (e.code() == ErrorCode::kUnavailable && r->status >= 500) {
        last = std::move(e);
        continue;
      }
      return Fail(std::move(e));
    }
    std::string stored = r->Header("docker-content-digest");
    if (!stored.empty() && stored != digest.ToString()) {
      return Fail(ErrorCode::kCorrupt,
                  where + ": the registry stored it as " + stored + ", not as the digest sent");
    }
    return BlobPushOutcome::kUploaded;
  }
  Error e = std::move(*last);
  return Fail(std::move(e).WithContext(where + ", gave up after " +
                                       std::to_string(options_.max_attempts) + " attempts"));
}

Result<FetchedManifest> RegistryClient::FetchManifest(std::string_view repo,
                                                      std::string_view reference,
                                                      std::uint64_t max_size) {
  std::string where =
      std::string(repo) + (reference.starts_with("sha256:") ? "@" : ":") + std::string(reference);
  Call call;
  call.url = ManifestUrl(repo, reference);
  call.headers = {kManifestAccept};
  call.follow_redirects = true;
  call.max_body = max_size;
  auto r = Send(call, PullScope(repo));
  if (!r) {
    return Fail(std::move(r.error()).WithContext("fetching " + where));
  }
  if (!r->ok()) {
    Error e = HttpError(*r, "fetching " + where, !options_.credentials.username.empty());
    if (r->status == 404) {
      return Fail(ErrorCode::kNotFound, where + " is not in " + options_.registry + " (" +
                                            RegistrySays(*r) +
                                            "): check the repository name and the tag or digest");
    }
    return Fail(std::move(e));
  }
  FetchedManifest m{
      .media_type = r->Header("content-type"), .bytes = std::move(r->body), .digest = Sha256Of("")};
  m.digest = Sha256Of(m.bytes);
  if (auto wanted = Digest::Parse(reference); wanted && *wanted != m.digest) {
    return Fail(ErrorCode::kCorrupt, "the registry answered " + where +
                                         " with a document hashing to " + m.digest.ToString());
  }
  std::string announced = r->Header("docker-content-digest");
  if (!announced.empty() && announced != m.digest.ToString()) {
    return Fail(ErrorCode::kCorrupt, "the registry says " + where + " is " + announced +
                                         " but sent a document hashing to " + m.digest.ToString());
  }
  auto sep = m.media_type.find(';');
  m.media_type = std::string(Trim(std::string_view(m.media_type).substr(0, sep)));
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "text/plain") {
    auto j = nlohmann::json::parse(m.bytes, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      m.media_type = trust::StringOr(j, "mediaType", m.media_type);
    }
  }
  return m;
}

Result<PushedManifest> RegistryClient::PushManifest(std::string_view repo,
                                                    std::string_view reference,
                                                    std::string_view media_type,
                                                    std::string_view bytes) {
  std::string where = "pushing manifest " + std::string(repo) +
                      (reference.starts_with("sha256:") ? "@" : ":") + std::string(reference);
  Call call;
  call.method = "PUT";
  call.url = ManifestUrl(repo, reference);
  call.has_body = true;
  call.body_size = bytes.size();
  call.read = [bytes](std::uint64_t offset, char* out, std::size_t n) -> Status {
    std::copy_n(bytes.data() + offset, n, out);
    return {};
  };
  call.headers = {"Content-Type: " + std::string(media_type)};
  PushedManifest pushed{.digest = Sha256Of(bytes)};
  std::optional<Error> last;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (attempt > 1) {
      Backoff(attempt - 1);
    }
    auto r = Send(call, PushScope(repo));
    if (!r) {
      if (r.error().code() == ErrorCode::kUnavailable || r.error().code() == ErrorCode::kTimeout) {
        last = std::move(r.error());
        continue;
      }
      return Fail(std::move(r.error()).WithContext(where));
    }
    if (r->status != 201 && r->status != 200) {
      Error e = HttpError(*r, where, !options_.credentials.username.empty());
      if (r->status >= 500) {
        last = std::move(e);
        continue;
      }
      return Fail(std::move(e));
    }
    std::string stored = r->Header("docker-content-digest");
    if (!stored.empty() && stored != pushed.digest.ToString()) {
      return Fail(ErrorCode::kCorrupt, where + ": the registry stored it as " + stored + ", not " +
                                           pushed.digest.ToString());
    }
    pushed.subject_indexed = !r->Header("oci-subject").empty();
    return pushed;
  }
  Error e = std::move(*last);
  return Fail(std::move(e).WithContext(where));
}

Result<std::vector<std::string>> RegistryClient::ListTags(std::string_view repo) {
  std::vector<std::string> tags;
  std::string url = base_url_ + "/v2/" + std::string(repo) + "/tags/list?n=1000";
  for (int page = 0; page < 10000 && !url.empty(); ++page) {
    Call call;
    call.url = url;
    AIRLOCK_ASSIGN_OR_RETURN(Response r, Send(call, PullScope(repo)));
    if (!r.ok()) {
      return Fail(HttpError(r, "listing the tags of " + std::string(repo),
                            !options_.credentials.username.empty()));
    }
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json j, trust::ParseJson(r.body, kMaxDocument, "tag list"));
    if (j.is_object() && j.contains("tags") && j["tags"].is_array()) {
      for (const auto& t : j["tags"]) {
        if (t.is_string()) {
          tags.push_back(t.get<std::string>());
        }
      }
    }
    // Link: </v2/NAME/tags/list?n=…&last=…>; rel="next"
    url.clear();
    std::string link = r.Header("link");
    auto open = link.find('<');
    auto close = link.find('>');
    if (open != std::string::npos && close != std::string::npos && close > open &&
        link.find("rel=\"next\"") != std::string::npos) {
      std::string next = link.substr(open + 1, close - open - 1);
      if (next.starts_with("/")) {
        url = base_url_ + next;
      } else if (OriginOf(next) == base_url_) {
        url = next;
      }
    }
  }
  return tags;
}

Result<std::vector<pkg::Descriptor>> RegistryClient::ListReferrers(std::string_view repo,
                                                                   const Digest& subject,
                                                                   std::string_view artifact_type) {
  std::string where = "listing the referrers of " + subject.ToString() + " in " + std::string(repo);
  Call call;
  call.url = base_url_ + "/v2/" + std::string(repo) + "/referrers/" + subject.ToString();
  if (!artifact_type.empty()) {
    char* e =
        curl_easy_escape(http_->curl, artifact_type.data(), static_cast<int>(artifact_type.size()));
    call.url += "?artifactType=" + std::string(e != nullptr ? e : "");
    curl_free(e);
  }
  call.headers = {"Accept: application/vnd.oci.image.index.v1+json"};
  AIRLOCK_ASSIGN_OR_RETURN(Response r, Send(call, PullScope(repo)));
  std::string index_bytes;
  if (r.ok()) {
    index_bytes = std::move(r.body);
  } else if (r.status == 404) {
    // No referrers API: the referrers tag schema.
    auto fallback = FetchManifest(repo, ReferrersTag(subject), kMaxDocument);
    if (!fallback) {
      if (fallback.error().code() == ErrorCode::kNotFound) {
        return std::vector<pkg::Descriptor>();
      }
      return Fail(std::move(fallback.error()).WithContext(where));
    }
    index_bytes = std::move(fallback->bytes);
  } else {
    return Fail(HttpError(r, where, !options_.credentials.username.empty()));
  }
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json j,
                           trust::ParseJson(index_bytes, kMaxDocument, "referrers index"));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Index index, WithContext(pkg::Index::FromJson(j), where));
  std::vector<pkg::Descriptor> out;
  for (auto& d : index.manifests) {
    if (artifact_type.empty() || d.artifact_type == artifact_type) {
      out.push_back(std::move(d));
    }
  }
  return out;
}

Status RegistryClient::AddToReferrersTag(
    std::string_view repo, const Digest& subject, const pkg::Descriptor& referrer,
    const std::function<bool(const pkg::Descriptor&)>& replaces) {
  std::string tag = ReferrersTag(subject);
  pkg::Index index;
  auto existing = FetchManifest(repo, tag, kMaxDocument);
  if (existing) {
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json j,
                             trust::ParseJson(existing->bytes, kMaxDocument, "referrers index"));
    AIRLOCK_ASSIGN_OR_RETURN(index, WithContext(pkg::Index::FromJson(j), "referrers tag " + tag));
  } else if (existing.error().code() != ErrorCode::kNotFound) {
    return Fail(std::move(existing.error()));
  }
  std::vector<pkg::Descriptor> kept;
  for (auto& d : index.manifests) {
    if (d.digest != referrer.digest && !(replaces && replaces(d))) {
      kept.push_back(std::move(d));
    }
  }
  kept.push_back(referrer);
  index.manifests = std::move(kept);
  std::string bytes = pkg::ToBytes(index.ToJson());
  AIRLOCK_RETURN_IF_ERROR(
      PushManifest(repo, tag, pkg::media::kImageIndex, bytes).map([](const auto&) {}));
  return {};
}

}  // namespace airlock::net
