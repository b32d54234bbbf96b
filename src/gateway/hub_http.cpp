#include "gateway/hub_http.hpp"

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <vector>

namespace airlock::gateway {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// The URL without its query (pre-signed signatures stay out of messages and logs).
std::string ShownUrl(const std::string& url) { return url.substr(0, url.find('?')); }

struct Transfer {
  CURL* curl = nullptr;
  const FetchSink* sink = nullptr;
  std::string* body = nullptr;
  std::size_t max_body = 0;
  bool status_sent = false;
  bool stopped = false;
  bool overflow = false;
  const std::atomic<bool>* cancel = nullptr;
};

std::size_t OnWrite(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::size_t bytes = size * n;
  if (t->sink != nullptr) {
    if (!t->status_sent) {
      t->status_sent = true;
      long status = 0;
      curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
      if (t->sink->on_status && !t->sink->on_status(status)) {
        t->stopped = true;
        return 0;
      }
    }
    if (!t->sink->on_bytes(std::string_view(data, bytes))) {
      t->stopped = true;
      return 0;
    }
    return bytes;
  }
  if (t->body->size() + bytes > t->max_body) {
    t->overflow = true;
    return 0;
  }
  t->body->append(data, bytes);
  return bytes;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancel != nullptr && t->cancel->load()) {
    return 1;
  }
  return 0;
}

}  // namespace

HubHttp::HubHttp(std::string base_url, std::string credential, std::chrono::seconds stall_timeout)
    : base_url_(std::move(base_url)),
      credential_(std::move(credential)),
      stall_timeout_(stall_timeout) {
  GlobalInit();
  while (base_url_.ends_with("/")) {
    base_url_.pop_back();
  }
}

namespace {

struct Setup {
  std::unique_ptr<CURL, CurlDeleter> curl;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
};

// The TLS files of a HubHttp ("" = not set).
struct TlsFiles {
  const std::string& ca;
  const std::string& cert;
  const std::string& key;
};

Result<Setup> Prepare(const std::string& url, const std::vector<std::string>& headers,
                      std::chrono::seconds stall, const TlsFiles& tls, Transfer& t) {
  Setup s;
  s.curl.reset(curl_easy_init());
  if (!s.curl) {
    return Fail(ErrorCode::kInternal, "libcurl could not make a handle");
  }
  CURL* c = s.curl.get();
  t.curl = c;
  curl_slist* list = nullptr;
  for (const std::string& h : headers) {
    list = curl_slist_append(list, h.c_str());
  }
  s.headers.reset(list);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(stall.count()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "airlock-gateway/0.1.0");
  if (!tls.ca.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, tls.ca.c_str());
  }
  if (!tls.cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, tls.cert.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, tls.key.c_str());
  }
  // Larger reads than libcurl's 16 KiB: fewer system calls and callbacks for big blobs.
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  return s;
}

}  // namespace

Result<HttpReply> HubHttp::Request(std::string_view method, std::string_view path,
                                   std::string_view body, std::string_view content_type,
                                   bool with_credential, std::size_t max_body,
                                   std::string_view accept) {
  std::string url = base_url_ + std::string(path);
  std::vector<std::string> headers;
  if (with_credential && !credential_.empty()) {
    headers.push_back("Authorization: Bearer " + credential_);
  }
  if (!content_type.empty()) {
    headers.push_back("Content-Type: " + std::string(content_type));
  }
  if (!accept.empty()) {
    headers.push_back("Accept: " + std::string(accept));
  }
  HttpReply reply;
  Transfer t;
  t.body = &reply.body;
  t.max_body = max_body;
  AIRLOCK_ASSIGN_OR_RETURN(
      Setup s, Prepare(url, headers, stall_timeout_, {ca_file_, cert_file_, key_file_}, t));
  CURL* c = s.curl.get();
  std::string m(method);
  if (m == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (m != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  CURLcode rc = curl_easy_perform(c);
  if (t.overflow) {
    return Fail(ErrorCode::kCorrupt, "the hub's answer to " + m + " " + ShownUrl(url) +
                                         " is larger than " + std::to_string(max_body) + " bytes");
  }
  if (rc != CURLE_OK) {
    return Fail(ErrorCode::kUnavailable, "cannot reach the hub at " + ShownUrl(url) + ": " +
                                             curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

Result<long> HubHttp::Fetch(std::string_view path, std::uint64_t offset, bool with_credential,
                            const FetchSink& sink, const std::atomic<bool>* cancel) {
  std::string url = base_url_ + std::string(path);
  std::vector<std::string> headers;
  if (with_credential && !credential_.empty()) {
    headers.push_back("Authorization: Bearer " + credential_);
  }
  if (offset > 0) {
    headers.push_back("Range: bytes=" + std::to_string(offset) + "-");
  }
  Transfer t;
  t.sink = &sink;
  t.cancel = cancel;
  AIRLOCK_ASSIGN_OR_RETURN(
      Setup s, Prepare(url, headers, stall_timeout_, {ca_file_, cert_file_, key_file_}, t));
  CURLcode rc = curl_easy_perform(s.curl.get());
  long status = 0;
  curl_easy_getinfo(s.curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (t.stopped || (cancel != nullptr && cancel->load())) {
    return Fail(ErrorCode::kUnavailable, "stopped");
  }
  if (rc != CURLE_OK) {
    return Fail(ErrorCode::kUnavailable,
                "the transfer of " + ShownUrl(url) + " broke: " + curl_easy_strerror(rc));
  }
  if (!t.status_sent && sink.on_status && !sink.on_status(status)) {
    return Fail(ErrorCode::kUnavailable, "stopped");
  }
  return status;
}

}  // namespace airlock::gateway
