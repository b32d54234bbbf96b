#include "hub/server.hpp"

#include <httplib.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "console/console.hpp"
#include "core/daemon.hpp"
#include "core/log.hpp"
#include "hub/api_support.hpp"
#include "hub/metrics.hpp"
#include "hub/oci_rules.hpp"
#include "hub/registry_api.hpp"
#include "hub/telemetry_api.hpp"
#include "net/http_server.hpp"
#include "store/postgres_metadata_store.hpp"
#include "store/sql_auth_store.hpp"
#include "store/sqlite_metadata_store.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

constexpr const char* kJson = kJsonType;
constexpr std::size_t kMaxTagsPage = 10000;
constexpr std::size_t kReadPiece = 1 << 20;
constexpr std::uint64_t kMaxApiBody = 8 << 20;  // the largest /api/v1/ body (an inventory)

std::string RangeHeader(std::uint64_t size) {
  return "0-" + std::to_string(size == 0 ? 0 : size - 1);
}

std::string BlobLocation(const std::string& name, const Digest& digest) {
  return "/v2/" + name + "/blobs/" + digest.ToString();
}

std::string UploadLocation(const std::string& name, const std::string& id) {
  return "/v2/" + name + "/blobs/uploads/" + id;
}

// Reads the body of a request whose handler owns a content reader, in pieces of up to kReadPiece.
// httplib hands the body over in pieces of its receive buffer (4 KiB in Debian's build); gathering
// them first makes one write (and one hash update) per MiB instead of one per 4 KiB, which was a
// third of the hub's system calls on a big push (bench/README.md, section 4). Whatever arrived
// before the body was cut off is still handed on, so a chunked upload resumes where it stopped.
store::ChunkSource BodySource(const httplib::ContentReader* reader) {
  return [reader](const std::function<Status(std::string_view)>& sink) -> Status {
    if (reader == nullptr) {
      return {};
    }
    std::string pending;
    pending.reserve(kReadPiece);
    Status inner;
    bool read = (*reader)([&](const char* data, std::size_t n) {
      pending.append(data, n);
      if (pending.size() >= kReadPiece) {
        inner = sink(pending);
        pending.clear();
      }
      return static_cast<bool>(inner);
    });
    if (inner && !pending.empty()) {
      inner = sink(pending);
    }
    if (!inner) {
      return inner;
    }
    if (!read) {
      return Fail(ErrorCode::kIo, "the request body could not be read (cut off, or too large)");
    }
    return {};
  };
}

bool HasBody(const httplib::Request& req) {
  return req.get_header_value("Transfer-Encoding") == "chunked" ||
         req.get_header_value<std::uint64_t>("Content-Length") > 0;
}

}  // namespace

const char* ActionName(Action action) {
  switch (action) {
    case Action::kPull:
      return "pull";
    case Action::kPush:
      return "push";
    case Action::kDelete:
      return "delete";
  }
  return "?";
}

Permission PermissionFor(Action action) {
  switch (action) {
    case Action::kPull:
      return Permission::kPull;
    case Action::kPush:
      return Permission::kPush;
    case Action::kDelete:
      return Permission::kDelete;
  }
  return Permission::kDelete;
}

struct HubServer::Impl final : ApiGate {
  Impl(HubConfig c, store::BlobStore& b, store::MetadataStore& m, AccessControl& a,
       store::RegistryStore& r, std::optional<trust::TrustedRoot> root,
       DeploymentObserver* deployments)
      : config(std::move(c)),
        blobs(b),
        meta(m),
        access(a),
        registry_store(r),
        registry(*this, a, r, m, b, root, deployments) {}

  HubConfig config;
  store::BlobStore& blobs;
  store::MetadataStore& meta;
  AccessControl& access;
  store::RegistryStore& registry_store;
  RegistryApi registry;
  std::unique_ptr<TelemetryApi> telemetry;  // when the hub keeps telemetry (SetTelemetry)
  std::unique_ptr<httplib::Server> server;
  net::ServeLoop loop;
  net::HttpCounters http;
  std::mutex appenders_mu;
  std::vector<prometheus::MetricsAppender> appenders;
  // Publishing a blob into a repository and removing it from the last one hold the digest's
  // lock (BlobStore::LockDigest, which other hubs on the same data directory honour too), so a
  // delete never removes the bytes of a blob that a push, here or on another hub, is linking.

  // ---- common checks ----

  // The hub's URL as clients see it: auth.public_url, else http(s)://<Host>.
  std::string BaseUrl(const httplib::Request& req) const {
    if (!config.auth.public_url.empty()) {
      return config.auth.public_url;
    }
    std::string host = req.get_header_value("Host");
    if (host.empty() || host.find_first_of("\"\r\n /") != std::string::npos) {
      host = config.http.address + ":" + std::to_string(config.http.port);
    }
    return (config.http.tls_cert.empty() ? "http://" : "https://") + host;
  }

  // An audit entry for what who did to target.
  void Audit(const httplib::Request& req, const httplib::Response& res, const Principal& who,
             std::string action, std::string target, std::string reason = "") override {
    store::AuditEntry e;
    e.token_name = who.name;
    e.role = who.anonymous ? "" : RoleName(who.role);
    e.action = std::move(action);
    e.target = std::move(target);
    e.result = std::to_string(res.status);
    if (reason.empty() && res.status >= 400) {
      auto body = json::parse(res.body, nullptr, false);
      if (body.is_object() && body.contains("errors") && body["errors"].is_array() &&
          !body["errors"].empty()) {
        reason = body["errors"][0].value("detail", body["errors"][0].value("code", ""));
      }
    }
    e.reason = std::move(reason);
    e.remote = req.remote_addr;
    access.Record(std::move(e));
  }

  // Sends the 401 or 403 of a refused decision, and audits it unless it is the anonymous probe
  // that every client makes before it authenticates (the token flow starts with one).
  void Refuse(const httplib::Request& req, httplib::Response& res, const AccessDecision& d,
              std::string_view action, std::string_view target, std::string_view scope) {
    if (d.status == 401) {
      std::string challenge =
          "Bearer realm=\"" + BaseUrl(req) + "/v2/token\",service=\"airlock-hub\"";
      if (!scope.empty()) {
        challenge += ",scope=\"" + std::string(scope) + "\"";
      }
      res.set_header("WWW-Authenticate", challenge);
      SendError(res, 401, "UNAUTHORIZED", "authentication required", d.reason);
    } else {
      SendError(res, 403, "DENIED", "requested access to the resource is denied", d.reason);
    }
    if (d.status == 403 || d.had_credentials) {
      Audit(req, res, d.who, "refused " + std::string(action), std::string(target), d.reason);
    }
  }

  // Whether the request may do action on repository; sends the refusal when not. who receives
  // the caller.
  bool Allowed(const httplib::Request& req, httplib::Response& res, Action action,
               std::string_view repository, Principal* who = nullptr) {
    AccessDecision d = access.Decide(req.get_header_value("Authorization"), PermissionFor(action),
                                     net::VerifiedClientOf(req).name);
    if (who != nullptr) {
      *who = d.who;
    }
    if (d.allowed()) {
      return true;
    }
    std::string scope;
    if (!repository.empty()) {
      scope = "repository:" + std::string(repository) + ":" +
              (action == Action::kPull   ? "pull"
               : action == Action::kPush ? "pull,push"
                                         : "delete");
    }
    Refuse(req, res, d, ActionName(action), repository.empty() ? "/v2/" : repository, scope);
    return false;
  }

  bool ValidName(httplib::Response& res, const std::string& name) {
    if (IsRepositoryName(name)) {
      return true;
    }
    SendError(res, 400, "NAME_INVALID", "invalid repository name",
              "\"" + name.substr(0, 300) +
                  "\" is not a repository name (lowercase letters and digits, separated by '.', "
                  "'_', '__', '-' or '/', at most 255 characters)");
    return false;
  }

  // kNotFound from a repository-scoped lookup: NAME_UNKNOWN when the repository itself does not
  // exist, else the given code.
  void SendUnknown(httplib::Response& res, const std::string& name, std::string_view code,
                   std::string_view message, const Error& e) {
    if (e.code() != ErrorCode::kNotFound) {
      return SendInternal(res, e);
    }
    auto exists = meta.RepositoryExists(name);
    if (!exists) {
      return SendInternal(res, exists.error());
    }
    if (!*exists) {
      return SendError(res, 404, "NAME_UNKNOWN", "repository name not known to registry",
                       "no repository " + name);
    }
    SendError(res, 404, code, message, e.message());
  }

  Result<Digest> DigestParam(httplib::Response& res, const std::string& text) {
    auto d = Digest::Parse(text);
    if (!d) {
      SendError(res, 400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                d.error().message());
    }
    return d;
  }

  // ---- manifests ----

  // A tag or a digest. nullopt after sending the error.
  struct Reference {
    std::optional<Digest> digest;
    std::string tag;
  };
  std::optional<Reference> ReadReference(httplib::Response& res, const std::string& ref,
                                         bool for_push) {
    if (ref.find(':') != std::string::npos) {
      auto d = DigestParam(res, ref);
      if (!d) {
        return std::nullopt;
      }
      return Reference{*d, ""};
    }
    if (!IsTag(ref)) {
      if (for_push) {
        SendError(res, 400, "MANIFEST_INVALID", "manifest invalid",
                  "\"" + ref.substr(0, 200) +
                      "\" is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) nor a digest");
      } else {
        SendError(res, 404, "MANIFEST_UNKNOWN", "manifest unknown",
                  "\"" + ref.substr(0, 200) + "\" is neither a tag nor a digest");
      }
      return std::nullopt;
    }
    return Reference{std::nullopt, ref};
  }

  void GetManifest(httplib::Response& res, const std::string& name, const std::string& ref) {
    auto r = ReadReference(res, ref, false);
    if (!r) {
      return;
    }
    if (!r->digest) {
      auto resolved = meta.ResolveTag(name, r->tag);
      if (!resolved) {
        return SendUnknown(res, name, "MANIFEST_UNKNOWN", "manifest unknown", resolved.error());
      }
      r->digest = *resolved;
    }
    const Digest& digest = *r->digest;
    auto m = meta.GetManifest(name, digest);
    if (!m) {
      return SendUnknown(res, name, "MANIFEST_UNKNOWN", "manifest unknown", m.error());
    }
    res.status = 200;
    res.set_header("Docker-Content-Digest", digest.ToString());
    res.set_header("Etag", "\"" + digest.ToString() + "\"");
    // For HEAD, httplib sends the Content-Length of this body but not the body.
    res.set_content(std::move(m->bytes), m->media_type);
  }

  void PutManifest(const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader* reader, const std::string& name,
                   const std::string& ref, const Principal& who) {
    auto r = ReadReference(res, ref, true);
    if (!r) {
      return;
    }
    // Read at most the cap; a little more is drained so that the refusal reaches the client on
    // an intact connection, a lot more is cut off.
    std::uint64_t declared = req.get_header_value<std::uint64_t>("Content-Length");
    if (declared > 2 * kMaxManifestSize) {
      res.set_header("Connection", "close");
      return SendError(res, 413, "MANIFEST_INVALID", "manifest invalid",
                       "the manifest is " + std::to_string(declared) +
                           " bytes; the hub takes manifests up to " +
                           std::to_string(kMaxManifestSize));
    }
    std::string body;
    std::uint64_t total = 0;
    if (reader != nullptr) {
      (*reader)([&](const char* data, std::size_t n) {
        total += n;
        if (total <= kMaxManifestSize) {
          body.append(data, n);
        }
        return total <= 2 * kMaxManifestSize;
      });
    } else {
      body = req.body;
      total = body.size();
    }
    if (total > kMaxManifestSize) {
      return SendError(
          res, 413, "MANIFEST_INVALID", "manifest invalid",
          "the manifest is over the limit of " + std::to_string(kMaxManifestSize) + " bytes");
    }
    if (res.status >= 400) {
      return;  // httplib refused the body
    }
    auto pushed = ReadPushedManifest(body, req.get_header_value("Content-Type"));
    if (!pushed) {
      return SendError(res, 400, "MANIFEST_INVALID", "manifest invalid", pushed.error().message());
    }
    store::ManifestRecord record;
    record.digest = Sha256Of(body);
    if (r->digest && *r->digest != record.digest) {
      return SendError(
          res, 400, "DIGEST_INVALID", "provided digest did not match uploaded content",
          "the manifest hashes to " + record.digest.ToString() + ", not " + r->digest->ToString());
    }
    record.media_type = pushed->media_type;
    record.artifact_type = pushed->artifact_type;
    record.subject = pushed->subject;
    record.size = body.size();
    record.annotations_json = pushed->annotations_json;
    // What it means for the model registry: a version, a release (which must verify).
    auto effect = registry.InspectManifest(who, name, body, record.digest);
    if (!effect) {
      if (effect.error().code() == ErrorCode::kAlreadyExists) {
        return SendError(res, 409, "DENIED", "the manifest conflicts with the registry",
                         effect.error().message());
      }
      if (effect.error().code() == ErrorCode::kVerification) {
        return SendError(res, 400, "MANIFEST_INVALID", "manifest invalid",
                         effect.error().message());
      }
      return SendInternal(res, effect.error());
    }
    record.bytes = std::move(body);
    std::optional<std::string_view> tag;
    if (!r->digest) {
      tag = r->tag;
    }
    Status put = meta.PutManifest(name, record, pushed->references, tag);
    if (!put) {
      if (put.error().code() == ErrorCode::kNotFound) {
        return SendError(res, 400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry",
                         put.error().message());
      }
      if (put.error().code() == ErrorCode::kInvalidArgument) {
        return SendError(res, 400, "MANIFEST_INVALID", "manifest invalid", put.error().message());
      }
      return SendInternal(res, put.error());
    }
    spdlog::info("pushed manifest {}@{}{}", name, record.digest.ToString(),
                 tag ? " as " + std::string(*tag) : std::string());
    registry.ApplyManifest(*effect);
    res.status = 201;
    res.set_header("Location", "/v2/" + name + "/manifests/" + record.digest.ToString());
    res.set_header("Docker-Content-Digest", record.digest.ToString());
    if (record.subject) {
      res.set_header("OCI-Subject", record.subject->ToString());
    }
  }

  void DeleteManifest(httplib::Response& res, const std::string& name, const std::string& ref) {
    auto r = ReadReference(res, ref, false);
    if (!r) {
      return;
    }
    Status s = r->digest ? meta.DeleteManifest(name, *r->digest) : meta.DeleteTag(name, r->tag);
    if (!s) {
      return SendUnknown(res, name, "MANIFEST_UNKNOWN", "manifest unknown", s.error());
    }
    spdlog::info("deleted {} {}@{}", r->digest ? "manifest" : "tag", name, ref);
    res.status = 202;
  }

  // ---- blobs ----

  void GetBlob(const httplib::Request& req, httplib::Response& res, const std::string& name,
               const std::string& ref) {
    auto digest = DigestParam(res, ref);
    if (!digest) {
      return;
    }
    auto linked = meta.LinkedBlob(name, *digest);
    if (!linked && linked.error().code() == ErrorCode::kNotFound) {
      // A manifest of the repository is a blob too, as in Distribution: a delivery grant lists
      // the index and manifests beside the configs and layers, each with a blob URL.
      if (auto manifest = meta.GetManifest(name, *digest)) {
        res.status = 200;
        res.set_header("Docker-Content-Digest", digest->ToString());
        res.set_content(manifest->bytes, manifest->media_type.empty()
                                             ? std::string("application/octet-stream")
                                             : manifest->media_type);
        return;
      }
    }
    if (!linked) {
      return SendUnknown(res, name, "BLOB_UNKNOWN", "blob unknown to registry", linked.error());
    }
    auto file = blobs.OpenBlob(*digest);
    if (!file) {
      if (file.error().code() == ErrorCode::kNotFound) {
        spdlog::error("blob {} is linked to {} but its file is missing", digest->ToString(), name);
        return SendError(res, 404, "BLOB_UNKNOWN", "blob unknown to registry",
                         file.error().message());
      }
      return SendInternal(res, file.error());
    }
    net::SendBlobFile(req, res, digest->ToString(), file->fd, file->size);
  }

  void DeleteBlob(httplib::Response& res, const std::string& name, const std::string& ref) {
    auto digest = DigestParam(res, ref);
    if (!digest) {
      return;
    }
    auto lock = blobs.LockDigest(*digest);
    if (!lock) {
      return SendInternal(res, lock.error());
    }
    auto still_linked = meta.UnlinkBlob(name, *digest);
    if (!still_linked) {
      return SendUnknown(res, name, "BLOB_UNKNOWN", "blob unknown to registry",
                         still_linked.error());
    }
    if (!*still_linked) {
      Status removed = blobs.Remove(*digest);
      if (!removed && removed.error().code() != ErrorCode::kNotFound) {
        spdlog::warn("{}", removed.error().ToString());
      }
    }
    spdlog::info("deleted blob {}@{}", name, digest->ToString());
    res.status = 202;
  }

  // Links a finished (or mounted) blob into the repository.
  Status Publish(const std::string& name, const Digest& digest, std::uint64_t size) {
    return meta.LinkBlob(name, digest, size);
  }

  // ---- uploads ----

  // The error of a failed append or finish, in the spec's terms.
  void SendUploadError(httplib::Response& res, const std::string& name, const std::string& id,
                       const Error& e) {
    switch (e.code()) {
      case ErrorCode::kMismatch: {
        auto size = blobs.UploadSize(id);
        res.set_header("Location", UploadLocation(name, id));
        res.set_header("Range", RangeHeader(size.value_or(0)));
        return SendError(res, 416, "BLOB_UPLOAD_INVALID", "blob upload invalid", e.message());
      }
      case ErrorCode::kInvalidArgument:
        return SendError(res, 413, "SIZE_INVALID", "provided length did not match content length",
                         e.message());
      case ErrorCode::kCorrupt:
        return SendError(res, 400, "DIGEST_INVALID",
                         "provided digest did not match uploaded content", e.message());
      case ErrorCode::kNotFound:
        return SendError(res, 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                         e.message());
      case ErrorCode::kUnavailable:
        return SendError(res, 409, "BLOB_UPLOAD_INVALID", "blob upload invalid", e.message());
      default:
        if (res.status == 413) {
          return SendError(res, 413, "SIZE_INVALID", "provided length did not match content length",
                           "the blob is over the hub's limit of " +
                               std::to_string(config.oci.max_blob_size) + " bytes");
        }
        return SendInternal(res, e);
    }
  }

  void SendUploadState(httplib::Response& res, const std::string& name, const std::string& id,
                       std::uint64_t size, int status) {
    res.status = status;
    res.set_header("Location", UploadLocation(name, id));
    res.set_header("Range", RangeHeader(size));
    res.set_header("Docker-Upload-UUID", id);
  }

  // Finishes a session as digest and publishes it into name: 201, or the error.
  void Finish(httplib::Response& res, const std::string& name, const std::string& id,
              const Digest& digest) {
    auto lock = blobs.LockDigest(digest);
    if (!lock) {
      return SendInternal(res, lock.error());
    }
    auto done = blobs.FinishUpload(id, digest);
    if (!done) {
      return SendUploadError(res, name, id, done.error());
    }
    Status linked = Publish(name, digest, done->size);
    if (!linked) {
      return SendInternal(res, linked.error());
    }
    spdlog::info("pushed blob {}@{} ({} bytes)", name, digest.ToString(), done->size);
    res.status = 201;
    res.set_header("Location", BlobLocation(name, digest));
    res.set_header("Docker-Content-Digest", digest.ToString());
  }

  // POST /v2/<name>/blobs/uploads/[?digest=…|?mount=…&from=…]
  void StartUpload(const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader* reader, const std::string& name) {
    if (req.has_param("mount")) {
      auto digest = DigestParam(res, req.get_param_value("mount"));
      if (!digest) {
        return;
      }
      std::string from = req.get_param_value("from");
      if (!from.empty() && IsRepositoryName(from) && Allowed(req, res, Action::kPull, from)) {
        auto lock = blobs.LockDigest(*digest);
        if (!lock) {
          return SendInternal(res, lock.error());
        }
        auto linked = meta.LinkedBlob(from, *digest);
        auto size = linked ? blobs.Size(*digest) : Result<std::uint64_t>(Fail(linked.error()));
        if (size) {
          Status s = Publish(name, *digest, *size);
          if (!s) {
            return SendInternal(res, s.error());
          }
          spdlog::info("mounted blob {} from {} into {}", digest->ToString(), from, name);
          res.status = 201;
          res.set_header("Location", BlobLocation(name, *digest));
          res.set_header("Docker-Content-Digest", digest->ToString());
          return;
        }
      } else if (res.status >= 400) {
        return;  // refused access to `from`
      }
      // Not mountable: an ordinary upload session instead (202), as the spec says.
    }
    auto id = blobs.StartUpload(name);
    if (!id) {
      return SendInternal(res, id.error());
    }
    std::uint64_t size = 0;
    if (HasBody(req) || req.has_param("digest")) {
      auto appended =
          blobs.AppendUpload(*id, std::nullopt, BodySource(reader), config.oci.max_blob_size);
      if (!appended) {
        SendUploadError(res, name, *id, appended.error());
        (void)blobs.CancelUpload(*id);
        return;
      }
      size = *appended;
    }
    if (req.has_param("digest")) {  // monolithic: the whole blob in this request
      auto digest = DigestParam(res, req.get_param_value("digest"));
      if (!digest) {
        (void)blobs.CancelUpload(*id);
        return;
      }
      return Finish(res, name, *id, *digest);
    }
    SendUploadState(res, name, *id, size, 202);
  }

  // The session of a request, checked to belong to name. nullopt after sending the error.
  bool SessionOf(httplib::Response& res, const std::string& name, const std::string& id) {
    auto owner = blobs.UploadRepository(id);
    if (!owner || *owner != name) {
      SendError(res, 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                "no upload " + id.substr(0, 64) + " in repository " + name);
      return false;
    }
    return true;
  }

  // Appends the request body to a session, honouring Content-Range. false after sending an error.
  bool AppendBody(const httplib::Request& req, httplib::Response& res,
                  const httplib::ContentReader* reader, const std::string& name,
                  const std::string& id, std::uint64_t* size) {
    std::optional<std::uint64_t> offset;
    if (req.has_header("Content-Range")) {
      auto range = ParseContentRange(req.get_header_value("Content-Range"));
      if (!range) {
        SendError(res, 400, "BLOB_UPLOAD_INVALID", "blob upload invalid", range.error().message());
        return false;
      }
      if (req.has_header("Content-Length") &&
          req.get_header_value<std::uint64_t>("Content-Length") != range->end - range->start + 1) {
        SendError(res, 400, "BLOB_UPLOAD_INVALID", "blob upload invalid",
                  "Content-Range " + req.get_header_value("Content-Range") + " announces " +
                      std::to_string(range->end - range->start + 1) +
                      " bytes but Content-Length is " + req.get_header_value("Content-Length"));
        return false;
      }
      offset = range->start;
    }
    auto appended = blobs.AppendUpload(id, offset, BodySource(reader), config.oci.max_blob_size);
    if (!appended) {
      SendUploadError(res, name, id, appended.error());
      return false;
    }
    *size = *appended;
    return true;
  }

  // PATCH /v2/<name>/blobs/uploads/<id>
  void PatchUpload(const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader* reader, const std::string& name,
                   const std::string& id) {
    if (!SessionOf(res, name, id)) {
      return;
    }
    std::uint64_t size = 0;
    if (AppendBody(req, res, reader, name, id, &size)) {
      SendUploadState(res, name, id, size, 202);
    }
  }

  // PUT /v2/<name>/blobs/uploads/<id>?digest=…
  void PutUpload(const httplib::Request& req, httplib::Response& res,
                 const httplib::ContentReader* reader, const std::string& name,
                 const std::string& id) {
    if (!SessionOf(res, name, id)) {
      return;
    }
    if (!req.has_param("digest")) {
      return SendError(res, 400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                       "finishing an upload needs ?digest=sha256:…");
    }
    auto digest = DigestParam(res, req.get_param_value("digest"));
    if (!digest) {
      return;
    }
    if (HasBody(req)) {
      std::uint64_t size = 0;
      if (!AppendBody(req, res, reader, name, id, &size)) {
        return;
      }
    }
    Finish(res, name, id, *digest);
  }

  void UploadStatus(httplib::Response& res, const std::string& name, const std::string& id) {
    if (!SessionOf(res, name, id)) {
      return;
    }
    auto size = blobs.UploadSize(id);
    if (!size) {
      return SendUploadError(res, name, id, size.error());
    }
    SendUploadState(res, name, id, *size, 204);
  }

  void CancelUpload(httplib::Response& res, const std::string& name, const std::string& id) {
    if (!SessionOf(res, name, id)) {
      return;
    }
    Status s = blobs.CancelUpload(id);
    if (!s) {
      return SendUploadError(res, name, id, s.error());
    }
    res.status = 204;
  }

  // ---- tags and referrers ----

  void ListTags(const httplib::Request& req, httplib::Response& res, const std::string& name) {
    std::size_t limit = SIZE_MAX;
    if (req.has_param("n")) {
      std::string n = req.get_param_value("n");
      char* end = nullptr;
      errno = 0;
      unsigned long long v = std::strtoull(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || errno != 0 || n[0] == '-') {
        return SendError(res, 400, "PAGINATION_NUMBER_INVALID",
                         "invalid number of results requested",
                         "n must be a non-negative integer, not \"" + n.substr(0, 50) + "\"");
      }
      limit = static_cast<std::size_t>(std::min<unsigned long long>(v, kMaxTagsPage));
    }
    std::string last = req.get_param_value("last");
    // One more than asked, to know whether there is a next page.
    auto tags = meta.ListTags(name, last, limit == SIZE_MAX ? limit : limit + 1);
    if (!tags) {
      return SendUnknown(res, name, "NAME_UNKNOWN", "repository name not known to registry",
                         tags.error());
    }
    if (limit != SIZE_MAX && tags->size() > limit) {
      tags->resize(limit);
      if (limit > 0) {  // n=0 asks for nothing, and gets no next page either
        res.set_header("Link", "</v2/" + name + "/tags/list?n=" + std::to_string(limit) +
                                   "&last=" + tags->back() + ">; rel=\"next\"");
      }
    }
    res.status = 200;
    res.set_content(json{{"name", name}, {"tags", *tags}}.dump(), kJson);
  }

  void Referrers(const httplib::Request& req, httplib::Response& res, const std::string& name,
                 const std::string& ref) {
    auto subject = DigestParam(res, ref);
    if (!subject) {
      return;
    }
    std::string artifact_type = req.get_param_value("artifactType");
    auto found = meta.Referrers(name, *subject, artifact_type);
    if (!found) {
      return SendInternal(res, found.error());
    }
    json manifests = json::array();
    for (const auto& m : *found) {
      json d = {{"mediaType", m.media_type}, {"digest", m.digest.ToString()}, {"size", m.size}};
      if (!m.artifact_type.empty()) {
        d["artifactType"] = m.artifact_type;
      }
      if (!m.annotations_json.empty()) {
        d["annotations"] = json::parse(m.annotations_json, nullptr, false);
      }
      manifests.push_back(std::move(d));
    }
    if (!artifact_type.empty()) {
      res.set_header("OCI-Filters-Applied", "artifactType");
    }
    res.status = 200;
    res.set_content(
        json{{"schemaVersion", 2}, {"mediaType", media::kOciIndex}, {"manifests", manifests}}
            .dump(),
        std::string(media::kOciIndex));
  }

  // ---- tokens, audit, pre-signed URLs ----

  // GET /v2/token: the Docker token flow. Basic (user:token) or Bearer credentials in, a
  // short-lived session token out. The scope asked for is not narrowed: the role decides.
  void IssueToken(const httplib::Request& req, httplib::Response& res) {
    if (req.method != "GET" && req.method != "HEAD") {
      return SendError(res, 405, "UNSUPPORTED", "the operation is unsupported",
                       "the token endpoint takes GET");
    }
    AccessDecision d =
        access.Authenticate(req.get_header_value("Authorization"), net::VerifiedClientOf(req).name);
    if (!d.allowed()) {
      res.set_header("WWW-Authenticate", "Basic realm=\"airlock-hub\"");
      SendError(res, 401, "UNAUTHORIZED", "authentication required",
                d.reason + " (give the token as the password of Basic credentials)");
      if (d.had_credentials) {
        Audit(req, res, d.who, "refused token exchange", "/v2/token", d.reason);
      }
      return;
    }
    std::string token = access.IssueSessionToken(d.who);
    res.status = 200;
    res.set_content(
        json{{"token", token},
             {"access_token", token},
             {"expires_in", access.options().session_ttl.count()},
             {"issued_at", FormatRfc3339(TimePoint(std::chrono::seconds(access.Now())))}}
            .dump(),
        kJson);
  }

  // Whether an /api/v1/ request may do p; sends the refusal when not.
  bool ApiAllowed(const httplib::Request& req, httplib::Response& res, Permission p,
                  Principal* who) override {
    AccessDecision d =
        access.Decide(req.get_header_value("Authorization"), p, net::VerifiedClientOf(req).name);
    *who = d.who;
    if (d.allowed()) {
      return true;
    }
    Refuse(req, res, d, PermissionName(p), req.path.substr(0, 300), "");
    return false;
  }

  static json TokenJson(const store::TokenRecord& t, std::int64_t now) {
    auto time = [](std::optional<std::int64_t> v) {
      return v ? json(FormatRfc3339(TimePoint(std::chrono::seconds(*v)))) : json(nullptr);
    };
    std::string state = t.revoked_at                             ? "revoked"
                        : (t.expires_at && *t.expires_at <= now) ? "expired"
                                                                 : "active";
    return {{"name", t.name},
            {"role", t.role},
            {"created_by", t.created_by},
            {"created_at", time(t.created_at)},
            {"expires_at", time(t.expires_at)},
            {"revoked_at", time(t.revoked_at)},
            {"state", state}};
  }

  // POST /api/v1/tokens {"name", "role", "expires_in": "90d"} (admin)
  void CreateToken(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kManageTokens, &who)) {
      return;
    }
    auto body = JsonBody(req, res);
    if (!body) {
      return;
    }
    std::string name = body->value("name", ""), role_name = body->value("role", "");
    auto role = ParseRole(role_name);
    std::optional<std::chrono::seconds> ttl;
    std::string problem;
    if (!role) {
      problem = "role must be viewer, publisher, release-manager, admin or metrics";
    } else if (body->contains("expires_in") && !(*body)["expires_in"].is_null()) {
      auto d = (*body)["expires_in"].is_string()
                   ? ParseDuration((*body)["expires_in"].get<std::string>())
                   : Result<std::chrono::milliseconds>(Fail(ErrorCode::kInvalidArgument, ""));
      if (!d) {
        problem = "expires_in must be a duration such as \"90d\" or \"12h\"";
      } else {
        ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
      }
    }
    Result<MintedToken> minted =
        problem.empty()
            ? access.CreateToken(name, *role, who.name.empty() ? "anonymous" : who.name, ttl)
            : Result<MintedToken>(Fail(ErrorCode::kInvalidArgument, problem));
    if (!minted) {
      if (minted.error().code() == ErrorCode::kAlreadyExists) {
        SendError(res, 409, "TOKEN_EXISTS", "token name in use", minted.error().message());
      } else if (minted.error().code() == ErrorCode::kInvalidArgument) {
        SendError(res, 400, "INVALID_REQUEST", "invalid request", minted.error().message());
      } else {
        SendInternal(res, minted.error());
      }
    } else {
      res.status = 201;
      json out = TokenJson(minted->record, access.Now());
      out["token"] = minted->token;
      res.set_content(out.dump(), kJson);
    }
    Audit(req, res, who, "token.create", name.substr(0, 64) + " (" + role_name.substr(0, 20) + ")");
  }

  // GET /api/v1/whoami (any token): the token's name and role, for the console to offer only
  // what the role may do. Anonymous access (when the hub allows it) is answered as such.
  void WhoAmI(const httplib::Request& req, httplib::Response& res) {
    AccessDecision d = access.Authenticate(req.get_header_value("Authorization"));
    if (!d.allowed()) {
      return Refuse(req, res, d, "whoami", req.path, "");
    }
    res.status = 200;
    res.set_content(
        json{{"name", d.who.name}, {"role", RoleName(d.who.role)}, {"anonymous", d.who.anonymous}}
            .dump(),
        kJson);
  }

  // GET /api/v1/tokens (admin)
  void ListTokens(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kManageTokens, &who)) {
      return;
    }
    auto tokens = access.store().ListTokens();
    if (!tokens) {
      return SendInternal(res, tokens.error());
    }
    json out = json::array();
    for (const auto& t : *tokens) {
      out.push_back(TokenJson(t, access.Now()));
    }
    res.status = 200;
    res.set_content(json{{"tokens", out}}.dump(), kJson);
  }

  // DELETE /api/v1/tokens/NAME (admin): revokes.
  void RevokeToken(const httplib::Request& req, httplib::Response& res, const std::string& name) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kManageTokens, &who)) {
      return;
    }
    Status s = access.store().RevokeToken(name, access.Now());
    if (!s) {
      if (s.error().code() == ErrorCode::kNotFound) {
        SendError(res, 404, "TOKEN_UNKNOWN", "token unknown", s.error().message());
      } else {
        SendInternal(res, s.error());
      }
    } else {
      res.status = 204;
    }
    Audit(req, res, who, "token.revoke", name.substr(0, 64));
  }

  // GET /api/v1/audit?limit=N&before=ID (admin): newest first.
  void ListAudit(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kReadAudit, &who)) {
      return;
    }
    std::int64_t limit = 100, before = 0;
    try {
      if (req.has_param("limit")) {
        limit = std::stoll(req.get_param_value("limit"));
      }
      if (req.has_param("before")) {
        before = std::stoll(req.get_param_value("before"));
      }
    } catch (const std::exception&) {
      limit = -1;
    }
    if (limit < 1 || limit > 1000 || before < 0) {
      return SendError(res, 400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested",
                       "limit must be 1 to 1000 and before a non-negative entry id");
    }
    auto entries = access.store().ListAudit(before, static_cast<std::size_t>(limit));
    if (!entries) {
      return SendInternal(res, entries.error());
    }
    json out = json::array();
    for (const auto& e : *entries) {
      out.push_back({{"id", e.id},
                     {"time", FormatRfc3339(TimePoint(std::chrono::seconds(e.at)))},
                     {"token", e.token_name},
                     {"role", e.role},
                     {"action", e.action},
                     {"target", e.target},
                     {"result", e.result},
                     {"reason", e.reason},
                     {"remote", e.remote}});
    }
    json page = {{"entries", out}};
    if (static_cast<std::int64_t>(entries->size()) == limit) {
      page["next"] = "/api/v1/audit?limit=" + std::to_string(limit) +
                     "&before=" + std::to_string(entries->back().id);
      res.set_header("Link", "<" + page["next"].get<std::string>() + ">; rel=\"next\"");
    }
    res.status = 200;
    res.set_content(page.dump(), kJson);
  }

  // POST /api/v1/presign {"repository", "digest", "ttl": seconds} (publisher)
  void Presign(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kPresign, &who)) {
      return;
    }
    auto body = JsonBody(req, res);
    if (!body) {
      return;
    }
    std::string name = body->value("repository", ""), digest_text = body->value("digest", "");
    std::int64_t ttl = 3600;
    if (body->contains("ttl")) {
      ttl = (*body)["ttl"].is_number_integer() ? (*body)["ttl"].get<std::int64_t>() : -1;
    }
    auto digest = Digest::Parse(digest_text);
    if (!ValidName(res, name)) {
    } else if (!digest) {
      SendError(res, 400, "DIGEST_INVALID", "invalid digest", digest.error().message());
    } else if (auto linked = meta.LinkedBlob(name, *digest); !linked) {
      SendUnknown(res, name, "BLOB_UNKNOWN", "blob unknown to registry", linked.error());
    } else {
      std::int64_t expires = 0;
      auto path = access.PresignBlob(name, digest->ToString(), std::chrono::seconds(ttl), &expires);
      if (!path) {
        SendError(res, 400, "INVALID_REQUEST", "invalid request", path.error().message());
      } else {
        res.status = 200;
        res.set_content(
            json{{"url", BaseUrl(req) + *path},
                 {"expires", expires},
                 {"expires_at", FormatRfc3339(TimePoint(std::chrono::seconds(expires)))}}
                .dump(),
            kJson);
      }
    }
    Audit(req, res, who, "presign", name.substr(0, 256) + "@" + digest_text.substr(0, 80));
  }

  // ---- dispatch ----

  // Handles one request under /v2/. reader is null when httplib already read the (empty) body.
  void Dispatch(const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader* reader) {
    // httplib would cut any response body (an error, a manifest) to the Range header's ranges;
    // only a blob is served by range, and GetBlob puts the checked range back.
    const_cast<httplib::Request&>(req).ranges.clear();
    if (req.path == "/v2/token") {
      return IssueToken(req, res);
    }
    if (req.path == "/v2/" || req.path == "/v2") {
      if (Allowed(req, res, Action::kPull, "")) {
        res.status = 200;
        res.set_content("{}", kJson);
      }
      return;
    }
    auto route = ParseV2Route(req.path);
    if (!route) {
      return SendError(res, 404, "NAME_UNKNOWN", "repository name not known to registry",
                       "no such endpoint: " + req.path.substr(0, 300));
    }
    if (!ValidName(res, route->name)) {
      return;
    }
    const std::string& m = req.method;
    bool read = m == "GET" || m == "HEAD";
    Action action = read ? Action::kPull : m == "DELETE" ? Action::kDelete : Action::kPush;
    if (route->kind == V2Route::Kind::kBlob && read &&
        (req.has_param("sig") || req.has_param("expires"))) {
      // A pre-signed URL stands instead of credentials, for this blob only.
      Status ok = access.CheckPresigned(m, req.path, req.get_param_value("expires"),
                                        req.get_param_value("sig"));
      if (!ok) {
        SendError(res, 403, "DENIED", "requested access to the resource is denied",
                  ok.error().message());
        Audit(req, res, Principal{"", Role::kViewer, true}, "refused presigned pull",
              route->name + "@" + route->reference.substr(0, 80), ok.error().message());
        return;
      }
      return GetBlob(req, res, route->name, route->reference);
    }
    Principal who;
    if (!Allowed(req, res, action, route->name, &who)) {
      return;
    }
    Route(req, res, reader, *route, read, who);
    if (!read) {
      AuditMutation(req, res, who, *route);
    }
  }

  // Audits what changed the registry (or tried to): finished uploads, mounts, manifests,
  // deletes. Chunks and session starts are not mutations of what clients can see.
  void AuditMutation(const httplib::Request& req, const httplib::Response& res,
                     const Principal& who, const V2Route& route) {
    const std::string& m = req.method;
    std::string target = route.name;
    std::string action;
    switch (route.kind) {
      case V2Route::Kind::kManifest:
        target += (route.reference.find(':') != std::string::npos ? "@" : ":") +
                  route.reference.substr(0, 200);
        if (m == "PUT") {
          action = "manifest.put";
        } else if (m == "DELETE") {
          action =
              route.reference.find(':') != std::string::npos ? "manifest.delete" : "tag.delete";
        }
        break;
      case V2Route::Kind::kBlob:
        if (m == "DELETE") {
          action = "blob.delete";
          target += "@" + route.reference.substr(0, 80);
        }
        break;
      case V2Route::Kind::kUploads:
        if ((m == "PUT" && !route.reference.empty()) ||
            (m == "POST" && route.reference.empty() && req.has_param("digest"))) {
          action = "blob.push";
          target += "@" + req.get_param_value("digest").substr(0, 80);
        } else if (m == "POST" && req.has_param("mount") && res.status == 201) {
          action = "blob.mount";
          target += "@" + req.get_param_value("mount").substr(0, 80) + " from " +
                    req.get_param_value("from").substr(0, 256);
        }
        break;
      default:
        break;
    }
    if (!action.empty()) {
      Audit(req, res, who, action, target);
    }
  }

  void Route(const httplib::Request& req, httplib::Response& res,
             const httplib::ContentReader* reader, const V2Route& route, bool read,
             const Principal& who) {
    const std::string& m = req.method;
    const std::string& name = route.name;
    const std::string& ref = route.reference;
    switch (route.kind) {
      case V2Route::Kind::kManifest:
        if (read) {
          return GetManifest(res, name, ref);
        }
        if (m == "PUT") {
          return PutManifest(req, res, reader, name, ref, who);
        }
        if (m == "DELETE") {
          return DeleteManifest(res, name, ref);
        }
        break;
      case V2Route::Kind::kBlob:
        if (read) {
          return GetBlob(req, res, name, ref);
        }
        if (m == "DELETE") {
          return DeleteBlob(res, name, ref);
        }
        break;
      case V2Route::Kind::kUploads:
        if (ref.empty()) {
          if (m == "POST") {
            return StartUpload(req, res, reader, name);
          }
          break;
        }
        if (m == "PATCH") {
          return PatchUpload(req, res, reader, name, ref);
        }
        if (m == "PUT") {
          return PutUpload(req, res, reader, name, ref);
        }
        if (m == "GET") {
          return UploadStatus(res, name, ref);
        }
        if (m == "DELETE") {
          return CancelUpload(res, name, ref);
        }
        break;
      case V2Route::Kind::kTags:
        if (read) {
          return ListTags(req, res, name);
        }
        break;
      case V2Route::Kind::kReferrers:
        if (read) {
          return Referrers(req, res, name, ref);
        }
        break;
    }
    SendError(res, 405, "UNSUPPORTED", "the operation is unsupported",
              m + " is not allowed on " + req.path.substr(0, 300));
  }

  // GET /metrics (hub/metrics.hpp).
  void Metrics(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!ApiAllowed(req, res, Permission::kReadMetrics, &who)) {
      return;
    }
    using prometheus::MetricType;
    prometheus::MetricsText out;
    http.AppendMetrics(out, "hub");
    // A database that cannot be read fails the scrape (Prometheus's `up` goes to 0) rather than
    // leaving the deployment and delivery counts out of an answer that looks whole.
    if (Status counted = AppendRegistryMetrics(out, registry_store); !counted) {
      return SendInternal(res, counted.error());
    }
    std::vector<prometheus::MetricsAppender> hooks;
    {
      std::lock_guard lock(appenders_mu);
      hooks = appenders;
    }
    for (const auto& hook : hooks) {
      hook(out);
    }
    res.status = 200;
    res.set_content(out.Text(), prometheus::kMetricsContentType);
  }

  void Routes() {
    auto& s = *server;
    s.Get("/metrics",
          [this](const httplib::Request& req, httplib::Response& res) { Metrics(req, res); });
    const std::string all = R"(/v2(/.*)?)";
    auto plain = [this](const httplib::Request& req, httplib::Response& res) {
      Dispatch(req, res, nullptr);
    };
    auto streamed = [this](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) { Dispatch(req, res, &reader); };
    s.Post("/api/v1/tokens",
           [this](const httplib::Request& req, httplib::Response& res) { CreateToken(req, res); });
    s.Get("/api/v1/tokens",
          [this](const httplib::Request& req, httplib::Response& res) { ListTokens(req, res); });
    s.Delete(R"(/api/v1/tokens/([^/]+))",
             [this](const httplib::Request& req, httplib::Response& res) {
               RevokeToken(req, res, req.matches[1]);
             });
    s.Get("/api/v1/whoami",
          [this](const httplib::Request& req, httplib::Response& res) { WhoAmI(req, res); });
    s.Get("/api/v1/audit",
          [this](const httplib::Request& req, httplib::Response& res) { ListAudit(req, res); });
    s.Post("/api/v1/presign",
           [this](const httplib::Request& req, httplib::Response& res) { Presign(req, res); });
    registry.Routes(s);
    console::Mount(s, console::App::kHub);
    if (telemetry) {
      telemetry->Routes(s);
    }
    s.Get(all, plain);
    s.Delete(all, plain);
    s.Post(all, streamed);
    s.Put(all, streamed);
    s.Patch(all, streamed);
  }
};

HubServer::HubServer(HubConfig config, store::BlobStore& blobs, store::MetadataStore& metadata,
                     AccessControl& access, store::RegistryStore& registry,
                     std::optional<trust::TrustedRoot> root, DeploymentObserver* deployments)
    : impl_(std::make_unique<Impl>(std::move(config), blobs, metadata, access, registry,
                                   std::move(root), deployments)) {}

HubServer::~HubServer() = default;

void HubServer::SetTelemetry(store::RegistryStore& registry, TelemetryStore& store) {
  impl_->telemetry = std::make_unique<TelemetryApi>(*impl_, registry, store);
}

void HubServer::AddMetricsAppender(prometheus::MetricsAppender appender) {
  std::lock_guard lock(impl_->appenders_mu);
  impl_->appenders.push_back(std::move(appender));
}

Status HubServer::Bind() {
  const HubConfig& config = impl_->config;
  AIRLOCK_ASSIGN_OR_RETURN(impl_->server,
                           net::MakeHttpServer({.cert = config.http.tls_cert,
                                                .key = config.http.tls_key,
                                                .client_ca = config.http.client_ca}));
  auto& s = *impl_->server;
  int threads = config.http.threads;
  s.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(1000000);
  s.set_payload_max_length(static_cast<std::size_t>(config.oci.max_blob_size));
  s.set_read_timeout(60);
  s.set_write_timeout(60);
  s.set_default_headers({{"Docker-Distribution-API-Version", "registry/2.0"}});
  s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
  });
  impl_->http.Count(s);
  std::uint64_t max_blob = config.oci.max_blob_size;
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [max_blob](const httplib::Request& req, httplib::Response& res) {
        // Our own errors carry a body already; 416 and HEAD answers carry none on purpose.
        if (!res.body.empty() || res.status == 416 || req.method == "HEAD") {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        if (res.status == 413) {
          SendError(res, 413, "SIZE_INVALID", "provided length did not match content length",
                    "the request body is larger than the hub's limit of " +
                        std::to_string(max_blob) + " bytes");
        } else if (res.status == 404) {
          SendError(res, 404, "NAME_UNKNOWN", "repository name not known to registry",
                    "no such endpoint: " + req.method + " " + req.path.substr(0, 300));
        } else {
          SendError(res, res.status, "UNSUPPORTED", "malformed request",
                    "malformed HTTP request (a POST or PUT without a body needs "
                    "Content-Length: 0)");
        }
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = net::InternalErrorMessage(ep);
        spdlog::error("{}", what);
        SendError(res, 500, "UNKNOWN", "internal error", what);
      });
  // /api/v1/ bodies are read whole into memory (the /v2/ uploads stream): cap them before httplib
  // reads them, so an endless or huge body costs nothing.
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!req.path.starts_with("/api/")) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos) {
      res.set_header("Connection", "close");
      SendError(res, 411, "INVALID_REQUEST", "length required",
                "/api/v1/ requests need a Content-Length (no chunked bodies)");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.get_header_value<std::uint64_t>("Content-Length") > kMaxApiBody) {
      res.set_header("Connection", "close");
      SendError(res, 413, "INVALID_REQUEST", "request too large",
                "/api/v1/ request bodies are limited to " + std::to_string(kMaxApiBody) + " bytes");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  impl_->Routes();
  AIRLOCK_ASSIGN_OR_RETURN(port_, net::BindHttpServer(s, config.http.address, config.http.port));
  return {};
}

void HubServer::Serve() { impl_->loop.Serve(*impl_->server); }

void HubServer::Stop() {
  if (impl_->server) {
    impl_->loop.Stop(*impl_->server);
  }
}

Result<std::unique_ptr<store::MetadataStore>> OpenMetadataStore(const HubConfig& config,
                                                                int max_connections) {
  if (config.db.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(auto s, store::SqliteMetadataStore::Open(config.data / "metadata.db"));
    return std::unique_ptr<store::MetadataStore>(std::move(s));
  }
  if (!config.db.starts_with("postgres://") && !config.db.starts_with("postgresql://")) {
    return Fail(ErrorCode::kInvalidArgument,
                "db: expected postgres://user:password@host:port/database, got " +
                    store::RedactedPostgresUri(config.db));
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto s, store::PostgresMetadataStore::Open(config.db, max_connections));
  return std::unique_ptr<store::MetadataStore>(std::move(s));
}

Result<std::unique_ptr<HubAccess>> HubAccess::Open(const HubConfig& config, const Clock& clock) {
  std::unique_ptr<HubAccess> out(new HubAccess());
  // As many connections as requests served at once, so no request waits for one.
  AIRLOCK_ASSIGN_OR_RETURN(out->metadata_, OpenMetadataStore(config, config.http.threads));
  std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch()).count();
  AIRLOCK_ASSIGN_OR_RETURN(out->store_, store::SqlAuthStore::Open(out->metadata_->sql(), now));
  AIRLOCK_ASSIGN_OR_RETURN(std::string secret, LoadOrCreateHubSecret(config.data));
  AccessControl::Options options;
  options.enabled = config.auth.enabled;
  options.anonymous_pull = config.auth.anonymous_pull;
  options.session_ttl = std::chrono::seconds(config.auth.session_ttl);
  options.max_presign_ttl = std::chrono::seconds(config.auth.max_presign_ttl);
  options.gateway_auth = config.http.effective_gateway_auth();
  out->access_ = std::make_unique<AccessControl>(*out->store_, std::move(secret), clock, options);
  return out;
}

Result<std::unique_ptr<Hub>> Hub::Open(HubConfig config, const Clock* clock) {
  AIRLOCK_RETURN_IF_ERROR(CheckHttpConfig(config));
  const net::HttpTls tls{
      .cert = config.http.tls_cert, .key = config.http.tls_key, .client_ca = config.http.client_ca};
  AIRLOCK_RETURN_IF_ERROR(net::CheckPlainHttp("the hub", config.http.address, tls,
                                              config.http.allow_plain,
                                              "http.tls_cert and http.tls_key"));
  if (!config.auth.enabled && !IsLoopbackHost(config.http.address)) {
    return Fail(ErrorCode::kInvalidArgument,
                "auth.enabled is false but the hub would listen on " + config.http.address +
                    ": running without tokens is allowed on loopback only");
  }
  std::unique_ptr<Hub> hub(new Hub());
  // Only hubs whose metadata is in PostgreSQL may share a data directory: with SQLite in it, two
  // hubs on one directory would each have their own metadata over one set of blobs.
  store::BlobStore::Options store_options;
  store_options.sharing = config.db.empty() ? store::Sharing::kExclusive : store::Sharing::kShared;
  auto blobs = store::BlobStore::Open(config.data, store_options);
  if (!blobs) {
    return Fail(std::move(blobs.error()).WithContext("while opening the hub's data directory"));
  }
  hub->blobs_ = std::move(*blobs);
  const Clock& time = clock != nullptr ? *clock : hub->system_clock_;
  AIRLOCK_ASSIGN_OR_RETURN(hub->access_, HubAccess::Open(config, time));
  std::int64_t now = hub->access().Now();
  AIRLOCK_ASSIGN_OR_RETURN(hub->registry_, store::RegistryStore::Open(hub->metadata().sql(), now));
  AIRLOCK_ASSIGN_OR_RETURN(hub->telemetry_, TelemetryStore::Open(hub->metadata().sql(), now));
  // A gateway's certificate names it; the registry knows its credential.
  hub->access().SetGatewayLookup(
      [registry = hub->registry_.get()](std::string_view name) -> Result<std::string> {
        AIRLOCK_ASSIGN_OR_RETURN(store::GatewayRecord g, registry->GetGateway(name));
        return g.token_name;
      });
  std::optional<trust::TrustedRoot> root;
  if (!config.root.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(root, LoadHubRoot(config.root, HubRootsDir(config.data), time.Now()));
  }
  if (!config.mqtt.broker.empty()) {
    AIRLOCK_RETURN_IF_ERROR(
        net::CheckPlainMqtt(config.mqtt.broker, config.mqtt.allow_plain, "mqtt.broker"));
    net::MqttOptions mqtt;
    mqtt.broker_url = config.mqtt.broker;
    mqtt.client_id = config.mqtt.client_id.empty() ? DefaultMqttClientId() : config.mqtt.client_id;
    mqtt.version = net::MqttVersion::kV5;
    mqtt.username = config.mqtt.username;
    mqtt.password = config.mqtt.password;
    if (!config.mqtt.tls_dir.empty()) {
      const auto& dir = config.mqtt.tls_dir;
      mqtt.tls = net::MqttTls{.ca_file = (dir / "ca.pem").string(),
                              .cert_file = (dir / "hub.pem").string(),
                              .key_file = (dir / "hub.key").string(),
                              .verify_hostname = true};
    }
    // The broker keeps the hub's subscriptions and the gateways' QoS 1 messages while the hub
    // is away (a restart, an upgrade).
    mqtt.persistent_session = true;
    auto client = net::MqttClient::Create(std::move(mqtt));
    if (!client) {
      return Fail(std::move(client.error()).WithContext("mqtt.broker"));
    }
    hub->mqtt_ = std::move(*client);
    DeliveryOrchestrator::Options options;
    options.prefix = config.mqtt.prefix;
    options.policy = config.delivery;
    AIRLOCK_ASSIGN_OR_RETURN(
        hub->orchestrator_,
        DeliveryOrchestrator::Create(std::move(options), *hub->mqtt_, *hub->registry_,
                                     hub->metadata(), hub->access(), time));
    AIRLOCK_RETURN_IF_ERROR(hub->orchestrator_->Start());
  }
  hub->server_ = std::make_unique<HubServer>(std::move(config), *hub->blobs_, hub->metadata(),
                                             hub->access_->access(), *hub->registry_,
                                             std::move(root), hub->orchestrator_.get());
  hub->server_->SetTelemetry(*hub->registry_, *hub->telemetry_);
  hub->server_->AddMetricsAppender(
      [telemetry = hub->telemetry_.get()](prometheus::MetricsText& out) {
        using prometheus::MetricType;
        out.Family("airlock_hub_telemetry_records_total", MetricType::kCounter,
                   "Telemetry records the gateways forwarded, by outcome");
        out.Sample({{"outcome", "stored"}}, telemetry->stored());
        out.Sample({{"outcome", "duplicate"}}, telemetry->duplicates());
        out.Sample({{"outcome", "rejected"}}, telemetry->rejected());
      });
  if (hub->orchestrator_) {
    // The server goes before the orchestrator and the connection (members in reverse).
    hub->server_->AddMetricsAppender([orchestrator = hub->orchestrator_.get(),
                                      mqtt = hub->mqtt_.get(),
                                      now = &time](prometheus::MetricsText& out) {
      AppendOrchestratorMetrics(out, *orchestrator, *mqtt, now->Now());
    });
  }
  return hub;
}

}  // namespace airlock::hub
