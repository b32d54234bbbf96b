#pragma once
// What the daemons' cpp-httplib servers (the agent's, the hub's and the gateway's) share.
// Header-only, so that a server does not link airlock_net (and Paho) for it.

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>
#include <thread>

#include "core/daemon.hpp"
#include "core/fs.hpp"
#include "core/http_range.hpp"
#include "core/prometheus.hpp"
#include "core/result.hpp"

namespace airlock::net {

// Binds server to address:port, or to a free port when port is 0; returns the port bound.
// kIo naming the address when it cannot.
inline Result<int> BindHttpServer(httplib::Server& server, const std::string& address, int port) {
  int bound = port == 0 ? server.bind_to_any_port(address)
                        : (server.bind_to_port(address, port) ? port : -1);
  if (bound <= 0) {
    return Fail(ErrorCode::kIo, "cannot listen on " + address + ":" + std::to_string(port) +
                                    " (in use, or not an address of this machine?)");
  }
  return bound;
}

// A daemon's TLS (docs/security.md, "HTTPS").
struct HttpTls {
  std::filesystem::path cert;       // PEM chain; with key: HTTPS
  std::filesystem::path key;        // PEM private key
  std::filesystem::path client_ca;  // set: clients may present a certificate from this CA
  bool enabled() const { return !cert.empty(); }
};

// A server for tls: HTTPS (TLS 1.2 or later) when it has a certificate, else plain HTTP. With a
// client_ca, a client may present a certificate; one that does not chain to the CA ends the
// handshake, and VerifiedClientOf tells a handler whose it was. kInvalidArgument, naming the
// files, when they do not load or do not belong together.
inline Result<std::unique_ptr<httplib::Server>> MakeHttpServer(const HttpTls& tls) {
  if (!tls.enabled()) {
    return std::make_unique<httplib::Server>();
  }
  if (tls.key.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "a TLS certificate needs its key (tls_key)");
  }
  bool loaded = false;
  auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    loaded = SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) == 1 &&
             SSL_CTX_use_certificate_chain_file(&ctx, tls.cert.c_str()) == 1 &&
             SSL_CTX_use_PrivateKey_file(&ctx, tls.key.c_str(), SSL_FILETYPE_PEM) == 1 &&
             SSL_CTX_check_private_key(&ctx) == 1;
    if (loaded && !tls.client_ca.empty()) {
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca.c_str());
      loaded = names != nullptr &&
               SSL_CTX_load_verify_locations(&ctx, tls.client_ca.c_str(), nullptr) == 1;
      if (names != nullptr) {
        SSL_CTX_set_client_CA_list(&ctx, names);  // takes ownership
      }
      // Asked for, not required: the operator API on the same port takes tokens instead.
      SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
      // A client resuming its session (curl does, from one request to the next) is refused
      // with an internal error unless sessions belong to a context when peers are verified.
      static constexpr unsigned char kContext[] = "airlock";
      loaded = loaded && SSL_CTX_set_session_id_context(&ctx, kContext, sizeof kContext - 1) == 1;
    }
    ERR_clear_error();
    return loaded;
  });
  if (!loaded || !server->is_valid()) {
    return Fail(ErrorCode::kInvalidArgument,
                "cannot use the TLS certificate " + tls.cert.string() + " and key " +
                    tls.key.string() +
                    (tls.client_ca.empty() ? "" : " with client CA " + tls.client_ca.string()) +
                    " (unreadable, not PEM, or the key is not the certificate's)");
  }
  return std::unique_ptr<httplib::Server>(std::move(server));
}

// Who the client is by the certificate it presented and the server verified: its CN and serial
// (lowercase hex). Empty over plain HTTP or without a client certificate.
struct VerifiedClient {
  std::string name;
  std::string serial;
};
inline VerifiedClient VerifiedClientOf(const httplib::Request& req) {
  if (req.ssl == nullptr || SSL_get_verify_result(req.ssl) != X509_V_OK) {
    return {};
  }
  X509* cert = SSL_get0_peer_certificate(req.ssl);
  if (cert == nullptr) {
    return {};
  }
  char cn[256] = {};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  VerifiedClient out;
  if (n > 0) {
    out.name.assign(cn, static_cast<std::size_t>(n));
  }
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn != nullptr) {
    if (char* hex = BN_bn2hex(bn); hex != nullptr) {
      out.serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  for (char& c : out.serial) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Plain HTTP is for loopback: elsewhere requests, tokens and packages would cross the network in
// the clear. kInvalidArgument, saying what to do, for a plain server on another address unless
// allow_plain; allowed, it warns (loudly). tls_keys: the daemon's certificate settings, for the
// message.
inline Status CheckPlainHttp(std::string_view daemon, const std::string& address,
                             const HttpTls& tls, bool allow_plain, std::string_view tls_keys) {
  if (tls.enabled() || IsLoopbackHost(address)) {
    return {};
  }
  if (!allow_plain) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(daemon) + " would serve plain HTTP on " + address +
                    ": give it a certificate (" + std::string(tls_keys) +
                    "; `airlock ca` makes them), or set http.allow_plain: true to accept an "
                    "unencrypted network");
  }
  spdlog::warn("PLAIN HTTP on {} (http.allow_plain): {}'s requests and credentials cross the "
               "network unencrypted; give it a certificate (docs/security.md)",
               address, daemon);
  return {};
}

// Runs a bound server's accept loop and stops it, from any thread, at any moment. httplib 0.11's
// stop() does nothing until listen_after_bind() has marked the server running, so a stop that
// arrives between a thread's start and that moment would be lost and the loop would run forever
// (a hang seen in CI when a test stopped its hub right after starting it). Here a stop that comes
// first makes Serve() return at once, and one that comes while Serve() is entering the loop waits
// for the loop to be running, then ends it.
class ServeLoop {
 public:
  // Blocks until Stop().
  void Serve(httplib::Server& server) {
    serving_.store(true);
    if (!stop_requested_.load()) {
      server.listen_after_bind();
    }
    serving_.store(false);
  }
  void Stop(httplib::Server& server) {
    stop_requested_.store(true);
    while (serving_.load() && !server.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    server.stop();
  }

 private:
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> serving_{false};
};

// What a server answered, for its /metrics: every response, and those with a status of 400 or
// more. Counted in the server's post-routing handler, which httplib runs for every response it
// writes (routed or not: a 404, a refusal before routing, a parse error). Lock-free; it must
// outlive the server.
struct HttpCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> errors{0};

  // Installs the counting as server's post-routing handler (replacing any).
  void Count(httplib::Server& server) {
    server.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
      requests.fetch_add(1, std::memory_order_relaxed);
      if (res.status >= 400) {
        errors.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  // airlock_http_requests_total and airlock_http_errors_total; daemon names who answered.
  void AppendMetrics(prometheus::MetricsText& out, std::string_view daemon) const {
    out.Family("airlock_http_requests_total", prometheus::MetricType::kCounter,
               "HTTP responses the " + std::string(daemon) + " sent (before this one)");
    out.Sample(requests.load());
    out.Family("airlock_http_errors_total", prometheus::MetricType::kCounter,
               "HTTP responses with status >= 400 (refusals included)");
    out.Sample(errors.load());
  }
};

// "internal error: WHAT" for the exception ep holds, for a 500 answer.
inline std::string InternalErrorMessage(std::exception_ptr ep) {
  std::string what = "internal error";
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what += std::string(": ") + e.what();
  } catch (...) {
  }
  return what;
}

// Sends the OCI distribution spec's error body, {"errors":[{"code","message","detail"}]} (which
// the hub's /api/v1/ uses too): code one of the spec's error codes (or the server's own), message
// its short text, detail what exactly went wrong (left out when empty). Text that is not UTF-8 is
// replaced, never thrown on.
inline void SendError(httplib::Response& res, int status, std::string_view code,
                      std::string_view message, std::string_view detail = "") {
  res.status = status;
  nlohmann::json e = {{"code", code}, {"message", message}};
  if (!detail.empty()) {
    e["detail"] = detail;
  }
  res.set_content(nlohmann::json{{"errors", nlohmann::json::array({e})}}.dump(
                      -1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

// The detail (else the message) of the first error in a SendError body; the body's first 200
// bytes when it is not one. For clients that show a server's refusal to a person.
inline std::string ErrorDetail(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
      j["errors"][0].is_object()) {
    const auto& e = j["errors"][0];
    std::string d = e.contains("detail") && e["detail"].is_string() ? e["detail"].get<std::string>() : "";
    return d.empty() && e.contains("message") && e["message"].is_string()
               ? e["message"].get<std::string>()
               : d;
  }
  return body.substr(0, 200);
}

// Answers a GET or HEAD of an OCI blob from an open file of size bytes: Docker-Content-Digest,
// Accept-Ranges and Etag; 200 with the whole blob, 206 with a satisfiable Range, or 416 with
// `Content-Range: bytes */SIZE`. The bytes are streamed with pread in pieces of up to 1 MiB; a
// read that fails or comes up short (the file shrank) cuts the response short rather than
// sending anything else.
inline void SendBlobFile(const httplib::Request& req, httplib::Response& res,
                         const std::string& digest, std::shared_ptr<UniqueFd> fd,
                         std::uint64_t size) {
  constexpr char kOctetStream[] = "application/octet-stream";
  res.set_header("Docker-Content-Digest", digest);
  res.set_header("Accept-Ranges", "bytes");
  res.set_header("Etag", "\"" + digest + "\"");
  bool ranged = req.has_header("Range");
  if (ranged) {
    // httplib slices the content below by the ranges it parsed from the header, but neither
    // refuses a range past the end nor clamps one that runs over it (bytes=8-100 of 10 bytes
    // would announce 93). So the range is checked here and handed to httplib exactly; the
    // Request is httplib's own non-const object, passed to handlers as const.
    auto range = ParseRange(req.get_header_value("Range"), size);
    if (!range) {
      res.status = 416;
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      return;
    }
    const_cast<httplib::Request&>(req).ranges = {
        {static_cast<ssize_t>(range->offset),
         static_cast<ssize_t>(range->offset + range->length - 1)}};
  }
  res.status = ranged ? 206 : 200;
  if (size == 0) {
    res.set_content("", kOctetStream);
    return;
  }
  res.set_content_provider(
      static_cast<std::size_t>(size), kOctetStream,
      [fd](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
        std::string buffer(std::min<std::size_t>(length, 1 << 20), '\0');
        ssize_t n;
        do {
          n = ::pread(fd->get(), buffer.data(), buffer.size(), static_cast<off_t>(offset));
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
          return false;
        }
        return sink.write(buffer.data(), static_cast<std::size_t>(n));
      });
}

}  // namespace airlock::net
