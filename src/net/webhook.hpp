#pragma once
// WebhookClient: POSTs a JSON document to an http:// URL, with a timeout and bounded retries.
//
// Each Post makes its own connection (cpp-httplib's Client), so one WebhookClient may be used
// from several threads at once. A 2xx answer is success. Connection failures, timeouts, 408, 429
// and 5xx are retried up to `attempts` times in all, waiting retry_delay, then twice that, …
// between attempts; any other status fails at once. Post blocks for at most about
// attempts × (timeout × 3) + the retry delays (connect, write and read each have the timeout).
// https:// is refused with kUnsupported until the TLS settings (CA, client certificate) exist.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"

namespace airlock::net {

struct WebhookOptions {
  std::string url;  // http://host[:port][/path][?query]
  std::chrono::milliseconds timeout{5000};
  int attempts = 3;
  std::chrono::milliseconds retry_delay{500};
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. {"Authorization", "Bearer …"}
};

// The parts of an http:// URL that cpp-httplib takes separately.
struct HttpUrl {
  std::string host;
  int port = 80;
  std::string target;  // path and query, "/" when absent
};
[[nodiscard]] Result<HttpUrl> ParseHttpUrl(std::string_view url);

class WebhookClient {
 public:
  // Fails with kInvalidArgument on a malformed URL or option, kUnsupported for https.
  [[nodiscard]] static Result<std::unique_ptr<WebhookClient>> Create(WebhookOptions options);

  // POSTs body with Content-Type application/json. Fails with kIo, naming the URL and the last
  // attempt's error or HTTP status.
  [[nodiscard]] Status Post(std::string_view body) const;

  const WebhookOptions& options() const { return options_; }

 private:
  WebhookClient(WebhookOptions options, HttpUrl url)
      : options_(std::move(options)), url_(std::move(url)) {}
  WebhookOptions options_;
  HttpUrl url_;
};

}  // namespace airlock::net
