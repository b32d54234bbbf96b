#include "hub/server.hpp"

#include <httplib.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "hub/oci_rules.hpp"
#include "store/sqlite_metadata_store.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";
constexpr char kOctetStream[] = "application/octet-stream";
constexpr std::size_t kMaxTagsPage = 10000;
constexpr std::size_t kReadPiece = 1 << 20;

// Sends the spec's error body. code is one of the spec's error codes, message its short text,
// detail what exactly went wrong.
void SendError(httplib::Response& res, int status, std::string_view code, std::string_view message,
               std::string_view detail = "") {
  res.status = status;
  json e = {{"code", code}, {"message", message}};
  if (!detail.empty()) {
    e["detail"] = detail;
  }
  res.set_content(
      json{{"errors", json::array({e})}}.dump(-1, ' ', false, json::error_handler_t::replace),
      kJson);
}

// An unexpected failure of the hub's own storage: logged here, where it is handled.
void SendInternal(httplib::Response& res, const Error& e) {
  spdlog::error("{}", e.ToString());
  SendError(res, 500, "UNKNOWN", "internal error", e.ToString());
}

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

Authorizer AllowEveryone() {
  return [](std::string_view, Action, std::string_view) -> Status { return {}; };
}

struct HubServer::Impl {
  Impl(HubConfig c, store::BlobStore& b, store::MetadataStore& m, Authorizer a)
      : config(std::move(c)), blobs(b), meta(m), authorizer(std::move(a)) {}

  HubConfig config;
  store::BlobStore& blobs;
  store::MetadataStore& meta;
  Authorizer authorizer;
  std::unique_ptr<httplib::Server> server;
  // Publishing a blob into a repository and removing it from the last one are serialised per
  // digest, so a delete never removes the bytes of a blob that a push is linking at that moment.
  std::array<std::mutex, 64> digest_locks;

  std::mutex& LockFor(const Digest& d) {
    return digest_locks[static_cast<std::size_t>(std::stoul(d.hex().substr(0, 2), nullptr, 16)) %
                        digest_locks.size()];
  }

  // ---- common checks ----

  bool Allowed(const httplib::Request& req, httplib::Response& res, Action action,
               std::string_view repository) {
    Status s = authorizer(req.get_header_value("Authorization"), action, repository);
    if (s) {
      return true;
    }
    if (s.error().code() == ErrorCode::kVerification) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"airlock-hub\"");
      SendError(res, 401, "UNAUTHORIZED", "authentication required", s.error().ToString());
    } else {
      SendError(res, 403, "DENIED", "requested access to the resource is denied",
                s.error().ToString());
    }
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
                   const std::string& ref) {
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
    res.set_header("Docker-Content-Digest", digest->ToString());
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("Etag", "\"" + digest->ToString() + "\"");
    std::uint64_t size = file->size;
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
    std::shared_ptr<UniqueFd> fd = file->fd;
    res.set_content_provider(static_cast<std::size_t>(size), kOctetStream,
                             [fd](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                               std::string buffer(std::min(length, kReadPiece), '\0');
                               ssize_t n;
                               do {
                                 n = ::pread(fd->get(), buffer.data(), buffer.size(),
                                             static_cast<off_t>(offset));
                               } while (n < 0 && errno == EINTR);
                               if (n <= 0) {
                                 return false;  // the file shrank or failed: cut the response short
                               }
                               return sink.write(buffer.data(), static_cast<std::size_t>(n));
                             });
  }

  void DeleteBlob(httplib::Response& res, const std::string& name, const std::string& ref) {
    auto digest = DigestParam(res, ref);
    if (!digest) {
      return;
    }
    std::lock_guard lock(LockFor(*digest));
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
    std::lock_guard lock(LockFor(digest));
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
        std::lock_guard lock(LockFor(*digest));
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

  // ---- dispatch ----

  // Handles one request under /v2/. reader is null when httplib already read the (empty) body.
  void Dispatch(const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader* reader) {
    // httplib would cut any response body (an error, a manifest) to the Range header's ranges;
    // only a blob is served by range, and GetBlob puts the checked range back.
    const_cast<httplib::Request&>(req).ranges.clear();
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
    if (!Allowed(req, res, action, route->name)) {
      return;
    }
    const std::string& name = route->name;
    const std::string& ref = route->reference;
    switch (route->kind) {
      case V2Route::Kind::kManifest:
        if (read) {
          return GetManifest(res, name, ref);
        }
        if (m == "PUT") {
          return PutManifest(req, res, reader, name, ref);
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

  void Routes() {
    auto& s = *server;
    const std::string all = R"(/v2(/.*)?)";
    auto plain = [this](const httplib::Request& req, httplib::Response& res) {
      Dispatch(req, res, nullptr);
    };
    auto streamed = [this](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) { Dispatch(req, res, &reader); };
    s.Get(all, plain);
    s.Delete(all, plain);
    s.Post(all, streamed);
    s.Put(all, streamed);
    s.Patch(all, streamed);
  }
};

HubServer::HubServer(HubConfig config, store::BlobStore& blobs, store::MetadataStore& metadata,
                     Authorizer authorizer)
    : impl_(std::make_unique<Impl>(std::move(config), blobs, metadata, std::move(authorizer))) {}

HubServer::~HubServer() = default;

Status HubServer::Bind() {
  const HubConfig& config = impl_->config;
  impl_->server = std::make_unique<httplib::Server>();
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
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what += std::string(": ") + e.what();
        } catch (...) {
        }
        spdlog::error("{}", what);
        SendError(res, 500, "UNKNOWN", "internal error", what);
      });
  impl_->Routes();
  if (config.http.port == 0) {
    port_ = s.bind_to_any_port(config.http.address);
  } else {
    port_ = s.bind_to_port(config.http.address, config.http.port) ? config.http.port : -1;
  }
  if (port_ <= 0) {
    return Fail(ErrorCode::kIo, "cannot listen on " + config.http.address + ":" +
                                    std::to_string(config.http.port) +
                                    " (in use, or not an address of this machine?)");
  }
  return {};
}

void HubServer::Serve() { impl_->server->listen_after_bind(); }

void HubServer::Stop() {
  if (impl_->server) {
    impl_->server->stop();
  }
}

Result<std::unique_ptr<Hub>> Hub::Open(HubConfig config, Authorizer authorizer) {
  std::unique_ptr<Hub> hub(new Hub());
  auto blobs = store::BlobStore::Open(config.data);
  if (!blobs) {
    return Fail(std::move(blobs.error()).WithContext("while opening the hub's data directory"));
  }
  hub->blobs_ = std::move(*blobs);
  AIRLOCK_ASSIGN_OR_RETURN(hub->metadata_,
                           store::SqliteMetadataStore::Open(config.data / "metadata.db"));
  hub->server_ = std::make_unique<HubServer>(std::move(config), *hub->blobs_, *hub->metadata_,
                                             std::move(authorizer));
  return hub;
}

}  // namespace airlock::hub
