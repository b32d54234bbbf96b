#include "net/webhook.hpp"

#include <httplib.h>

#include <charconv>
#include <thread>

namespace airlock::net {

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.starts_with("https://")) {
    return Fail(ErrorCode::kUnsupported, "https webhooks are not supported yet: " +
                                             std::string(url));
  }
  if (!url.starts_with(kScheme)) {
    return Fail(ErrorCode::kInvalidArgument,
                "webhook URL must start with http://: '" + std::string(url) + "'");
  }
  std::string_view rest = url.substr(kScheme.size());
  auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (out.target.front() == '?') {
    out.target.insert(0, "/");
  }
  if (authority.find('@') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "webhook URL must not carry credentials (use headers): '" + std::string(url) + "'");
  }
  auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    auto digits = authority.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out.port);
    if (ec != std::errc() || end != digits.data() + digits.size() || out.port <= 0 ||
        out.port > 65535) {
      return Fail(ErrorCode::kInvalidArgument, "bad port in webhook URL '" + std::string(url) + "'");
    }
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no host in webhook URL '" + std::string(url) + "'");
  }
  out.host = std::string(authority);
  return out;
}

Result<std::unique_ptr<WebhookClient>> WebhookClient::Create(WebhookOptions options) {
  AIRLOCK_ASSIGN_OR_RETURN(HttpUrl url, ParseHttpUrl(options.url));
  if (options.attempts < 1 || options.timeout.count() <= 0 || options.retry_delay.count() < 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "webhook needs attempts >= 1, a positive timeout and a non-negative retry delay");
  }
  return std::unique_ptr<WebhookClient>(new WebhookClient(std::move(options), std::move(url)));
}

Status WebhookClient::Post(std::string_view body) const {
  httplib::Headers headers;
  for (const auto& [name, value] : options_.headers) {
    headers.emplace(name, value);
  }
  auto delay = options_.retry_delay;
  std::string last_error;
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    if (attempt > 1) {
      std::this_thread::sleep_for(delay);
      delay *= 2;
    }
    httplib::Client client(url_.host, url_.port);
    client.set_connection_timeout(options_.timeout);
    client.set_read_timeout(options_.timeout);
    client.set_write_timeout(options_.timeout);
    client.set_keep_alive(false);
    auto res = client.Post(url_.target, headers, std::string(body), "application/json");
    if (!res) {
      last_error = httplib::to_string(res.error());
      continue;
    }
    int status = res->status;
    if (status >= 200 && status < 300) {
      return {};
    }
    std::string snippet = res->body.substr(0, 200);
    last_error = "HTTP " + std::to_string(status) + (snippet.empty() ? "" : ": " + snippet);
    bool retryable = status == 408 || status == 429 || status >= 500;
    if (!retryable) {
      break;
    }
  }
  return Fail(ErrorCode::kIo, "POST " + options_.url + ": " + last_error);
}

}  // namespace airlock::net
