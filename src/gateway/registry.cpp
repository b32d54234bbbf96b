#include "gateway/registry.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/http_range.hpp"
#include "net/http_server.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr std::size_t kMaxTagsPage = 1000;

using net::SendError;

// A path under /v2/ split into its repository and what it addresses.
struct Route {
  enum class Kind { kManifest, kBlob, kTags, kReferrers };
  Kind kind;
  std::string name;
  std::string reference;
};

std::optional<Route> ParseRoute(std::string_view path) {
  if (!path.starts_with("/v2/")) {
    return std::nullopt;
  }
  std::string_view rest = path.substr(4);
  std::optional<Route> route;
  if (rest.ends_with("/tags/list")) {
    route = Route{Route::Kind::kTags, std::string(rest.substr(0, rest.size() - 10)), ""};
  } else {
    for (auto [marker, kind] :
         {std::pair{std::string_view("/manifests/"), Route::Kind::kManifest},
          std::pair{std::string_view("/blobs/"), Route::Kind::kBlob},
          std::pair{std::string_view("/referrers/"), Route::Kind::kReferrers}}) {
      std::size_t at = rest.rfind(marker);
      if (at != std::string_view::npos) {
        std::string_view reference = rest.substr(at + marker.size());
        if (!reference.empty() && reference.find('/') == std::string_view::npos) {
          route = Route{kind, std::string(rest.substr(0, at)), std::string(reference)};
          break;
        }
      }
    }
  }
  if (!route || !IsRepositoryName(route->name)) {
    return std::nullopt;
  }
  return route;
}

}  // namespace

struct DeviceRegistry::Impl {
  GatewayCache& cache;
  ReadAuthorizer authorize;
  net::ServeLoop loop;

  void Handle(const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/v2/" || req.path == "/v2") {
      res.set_content("{}", kJson);
      return;
    }
    auto route = ParseRoute(req.path);
    if (!route) {
      return SendError(res, 404, "NAME_INVALID", "invalid repository name or route",
                       "no such endpoint: " + req.path.substr(0, 300));
    }
    if (authorize) {
      std::string authorization = req.get_header_value("Authorization");
      const net::VerifiedClient client = net::VerifiedClientOf(req);
      Status allowed =
          authorize(ReadRequest{req.method, req.path, route->name, authorization, req.remote_addr,
                                client.name, client.serial});
      if (!allowed) {
        if (allowed.error().code() == ErrorCode::kVerification) {
          return SendError(res, 401, "UNAUTHORIZED", "authentication required",
                           allowed.error().message());
        }
        return SendError(res, 403, "DENIED", "requested access to the resource is denied",
                         allowed.error().message());
      }
    }
    switch (route->kind) {
      case Route::Kind::kManifest:
        return Manifest(res, *route);
      case Route::Kind::kBlob:
        return Blob(req, res, *route);
      case Route::Kind::kTags:
        return Tags(req, res, *route);
      case Route::Kind::kReferrers:
        return Referrers(req, res, *route);
    }
  }

  void Manifest(httplib::Response& res, const Route& route) {
    auto m = cache.GetManifest(route.name, route.reference);
    if (!m) {
      return NotFoundOr500(res, m.error(), "MANIFEST_UNKNOWN", "manifest unknown");
    }
    res.set_header("Docker-Content-Digest", m->digest.ToString());
    res.set_header("Etag", "\"" + m->digest.ToString() + "\"");
    res.set_content(std::move(m->bytes), m->media_type);
  }

  void Blob(const httplib::Request& req, httplib::Response& res, const Route& route) {
    auto digest = Digest::Parse(route.reference);
    if (!digest) {
      return SendError(res, 400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                       digest.error().message());
    }
    auto file = cache.OpenBlob(route.name, *digest);
    if (!file) {
      return NotFoundOr500(res, file.error(), "BLOB_UNKNOWN", "blob unknown to registry");
    }
    net::SendBlobFile(req, res, digest->ToString(), file->fd, file->size);
  }

  void Tags(const httplib::Request& req, httplib::Response& res, const Route& route) {
    auto tags = cache.Tags(route.name);
    if (!tags) {
      return NotFoundOr500(res, tags.error(), "NAME_UNKNOWN", "repository name not known");
    }
    if (tags->empty()) {
      return SendError(res, 404, "NAME_UNKNOWN", "repository name not known to registry",
                       "no package of " + route.name + " is in the gateway's cache");
    }
    std::size_t n = kMaxTagsPage;
    if (req.has_param("n")) {
      try {
        n = std::min<std::size_t>(std::stoul(req.get_param_value("n")), kMaxTagsPage);
      } catch (const std::exception&) {
        return SendError(res, 400, "PAGINATION_NUMBER_INVALID", "invalid number of results",
                         "n must be a number");
      }
    }
    std::string last = req.get_param_value("last");
    json list = json::array();
    for (const std::string& tag : *tags) {
      if (tag > last && list.size() < n) {
        list.push_back(tag);
      }
    }
    res.set_content(json{{"name", route.name}, {"tags", list}}.dump(), kJson);
  }

  void Referrers(const httplib::Request& req, httplib::Response& res, const Route& route) {
    auto subject = Digest::Parse(route.reference);
    if (!subject) {
      return SendError(res, 400, "DIGEST_INVALID", "invalid digest", subject.error().message());
    }
    std::string artifact_type = req.get_param_value("artifactType");
    auto referrers = cache.Referrers(route.name, *subject, artifact_type);
    if (!referrers) {
      return NotFoundOr500(res, referrers.error(), "NAME_UNKNOWN", "repository name not known");
    }
    json manifests = json::array();
    for (const Referrer& r : *referrers) {
      json d = {{"mediaType", r.media_type}, {"digest", r.digest.ToString()}, {"size", r.size}};
      if (!r.artifact_type.empty()) {
        d["artifactType"] = r.artifact_type;
      }
      if (!r.annotations_json.empty()) {
        d["annotations"] = json::parse(r.annotations_json, nullptr, false);
      }
      manifests.push_back(std::move(d));
    }
    if (!artifact_type.empty()) {
      res.set_header("OCI-Filters-Applied", "artifactType");
    }
    json index = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", manifests}};
    res.set_content(index.dump(), kOciIndex);
  }

  void RangeNotSatisfiable(const httplib::Request& req, httplib::Response& res) {
    auto route = ParseRoute(req.path);
    if (!route || route->kind != Route::Kind::kBlob) {
      return;
    }
    auto digest = Digest::Parse(route->reference);
    if (!digest) {
      return;
    }
    if (authorize) {
      std::string authorization = req.get_header_value("Authorization");
      const net::VerifiedClient client = net::VerifiedClientOf(req);
      if (!authorize(
              ReadRequest{req.method, req.path, route->name, authorization, req.remote_addr,
                          client.name, client.serial})) {
        return;  // the size is not for those who may not read the blob
      }
    }
    if (auto file = cache.OpenBlob(route->name, *digest)) {
      res.set_header("Content-Range", "bytes */" + std::to_string(file->size));
    }
  }

  static void NotFoundOr500(httplib::Response& res, const Error& e, std::string_view code,
                            std::string_view message) {
    if (e.code() == ErrorCode::kNotFound) {
      return SendError(res, 404, code, message, e.message());
    }
    spdlog::error("device registry: {}", e.ToString());
    SendError(res, 500, "UNKNOWN", "internal error", e.message());
  }
};

DeviceRegistry::DeviceRegistry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DeviceRegistry::~DeviceRegistry() { Stop(); }

Result<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Start(GatewayCache& cache,
                                                              RegistryOptions options,
                                                              ReadAuthorizer authorize,
                                                              std::function<void(httplib::Server&)>
                                                                  install_api) {
  std::unique_ptr<DeviceRegistry> out(
      new DeviceRegistry(std::make_unique<Impl>(cache, std::move(authorize))));
  AIRLOCK_ASSIGN_OR_RETURN(out->server_,
                           net::MakeHttpServer({.cert = options.tls_cert,
                                                .key = options.tls_key,
                                                .client_ca = options.client_ca}));
  httplib::Server& s = *out->server_;
  int threads = std::max(1, options.threads);
  s.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  s.set_tcp_nodelay(true);
  s.set_read_timeout(60);
  s.set_write_timeout(60);
  s.set_default_headers({{"Docker-Distribution-API-Version", "registry/2.0"}});
  // Refuse writes before httplib reads their bodies: a push of gigabytes costs nothing.
  bool api = static_cast<bool>(install_api);
  s.set_pre_routing_handler([api](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD" || (api && req.path.starts_with("/api/"))) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.set_header("Allow", "GET, HEAD");
    res.set_header("Connection", "close");
    SendError(res, 405, "UNSUPPORTED", "the operation is unsupported",
              "the gateway's registry is read-only: " + req.method + " is not allowed");
    return httplib::Server::HandlerResponse::Handled;
  });
  Impl* impl = out->impl_.get();
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [impl](const httplib::Request& req, httplib::Response& res) {
        if (res.status == 416 && !res.has_header("Content-Range")) {
          // httplib answers a Range header it cannot parse (bytes=5-2) with a bare 416 before
          // routing: name the blob's size, as a 416 should.
          impl->RangeNotSatisfiable(req, res);
        }
        // Our own errors carry a body already; 416 and HEAD answers carry none on purpose.
        if (!res.body.empty() || res.status == 416 || req.method == "HEAD") {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        SendError(res, res.status, "UNSUPPORTED", "malformed request",
                  "no such endpoint or a malformed request: " + req.path.substr(0, 300));
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = net::InternalErrorMessage(ep);
        spdlog::error("device registry: {}", what);
        SendError(res, 500, "UNKNOWN", "internal error", what);
      });
  s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("device registry: {} {} -> {}", req.method, req.path, res.status);
  });
  // httplib routes HEAD to the GET handlers (and sends no body).
  s.Get("/v2/.*",
        [impl](const httplib::Request& req, httplib::Response& res) { impl->Handle(req, res); });
  s.Get("/v2",
        [impl](const httplib::Request& req, httplib::Response& res) { impl->Handle(req, res); });
  if (install_api) {
    install_api(s);
  }
  AIRLOCK_ASSIGN_OR_RETURN(out->port_, net::BindHttpServer(s, options.address, options.port));
  out->thread_ = std::thread([r = out.get()] { r->impl_->loop.Serve(*r->server_); });
  return out;
}

void DeviceRegistry::Stop() {
  if (server_) {
    impl_->loop.Stop(*server_);
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace airlock::gateway
