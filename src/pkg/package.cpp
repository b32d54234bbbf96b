#include "pkg/package.hpp"

#include <unistd.h>

#include <cerrno>
#include <set>

#include "core/fs.hpp"
#include "core/text.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {

std::vector<const Descriptor*> Variant::Layers(std::string_view media_type) const {
  std::vector<const Descriptor*> out;
  for (const auto& l : manifest.layers) {
    if (l.media_type == media_type) {
      out.push_back(&l);
    }
  }
  return out;
}

std::vector<std::string> Package::PlatformNames() const {
  std::vector<std::string> out;
  for (const auto& v : variants) {
    out.push_back(v.platform.ToString());
  }
  return out;
}

Result<const Variant*> Package::Select(std::string_view platform) const {
  if (platform.empty()) {
    return &variants.front();
  }
  for (const auto& v : variants) {
    if (v.platform.ToString() == platform) {
      return &v;
    }
  }
  return Fail(ErrorCode::kVerification,
              "package " + name() + " " + version() + " has no variant for platform " +
                  std::string(platform) + " (it has " + Join(PlatformNames()) + ")");
}

Result<Descriptor> FindModelIndex(LayoutReader& reader, std::string_view ref) {
  AIRLOCK_ASSIGN_OR_RETURN(Index top, reader.ReadIndex());
  std::vector<const Descriptor*> candidates;
  for (const auto& d : top.manifests) {
    if (d.media_type != media::kImageIndex) {
      continue;
    }
    if (ref.empty() || d.Annotation(annotation::kRefName) == ref) {
      candidates.push_back(&d);
    }
  }
  if (candidates.empty()) {
    return Fail(ErrorCode::kNotFound,
                reader.path().string() + " holds no model package" +
                    (ref.empty() ? std::string() : " tagged \"" + std::string(ref) + "\""));
  }
  if (candidates.size() > 1) {
    return Fail(ErrorCode::kInvalidArgument,
                reader.path().string() + " holds several packages; name one with --ref");
  }
  return *candidates.front();
}

Result<Package> LoadPackage(LayoutReader& reader, const Descriptor& index_desc) {
  Package pkg;
  pkg.index_descriptor = index_desc;
  pkg.ref = index_desc.Annotation(annotation::kRefName);
  if (index_desc.media_type != media::kImageIndex) {
    return Fail(ErrorCode::kUnsupported,
                "a package's top must be an image index, not " + index_desc.media_type);
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string index_bytes, reader.ReadBlob(index_desc));
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json index_json,
                           trust::ParseJson(index_bytes, kMaxJsonBlob, "package index"));
  AIRLOCK_ASSIGN_OR_RETURN(pkg.index, Index::FromJson(index_json));
  if (pkg.index.manifests.empty()) {
    return Fail(ErrorCode::kCorrupt, "package index lists no platform variants");
  }
  for (const auto& md : pkg.index.manifests) {
    std::string where = "manifest " + md.digest.ToString();
    if (md.media_type != media::kImageManifest) {
      return Fail(ErrorCode::kUnsupported, where + " has unknown media type " + md.media_type);
    }
    if (!md.platform) {
      return Fail(ErrorCode::kCorrupt, where + " has no platform in the package index");
    }
    Variant v;
    v.platform = *md.platform;
    v.descriptor = md;
    AIRLOCK_ASSIGN_OR_RETURN(std::string mbytes, reader.ReadBlob(md));
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json mjson, trust::ParseJson(mbytes, kMaxJsonBlob, where));
    AIRLOCK_ASSIGN_OR_RETURN(v.manifest, WithContext(Manifest::FromJson(mjson), where));
    if (v.manifest.config.media_type != media::kModelConfig) {
      return Fail(ErrorCode::kUnsupported, where + " has config media type " +
                                               v.manifest.config.media_type + ", want " +
                                               std::string(media::kModelConfig));
    }
    for (const auto& layer : v.manifest.layers) {
      if (!IsKnownLayerType(layer.media_type)) {
        return Fail(ErrorCode::kUnsupported,
                    where + " has a layer of unknown media type " + layer.media_type);
      }
      std::string filepath = layer.Annotation(annotation::kFilepath);
      if (filepath.empty()) {
        return Fail(ErrorCode::kCorrupt, where + ": layer " + layer.digest.ToString() + " has no " +
                                             std::string(annotation::kFilepath));
      }
      auto checked = CheckRelativePath(filepath);
      if (!checked) {
        return Fail(ErrorCode::kCorrupt, where + ": layer file path: " + checked.error().message());
      }
    }
    if (v.Layers(media::kModelWeight).empty()) {
      return Fail(ErrorCode::kCorrupt, where + " has no model weight layer");
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string cbytes, reader.ReadBlob(v.manifest.config));
    AIRLOCK_ASSIGN_OR_RETURN(v.config, trust::ParseJson(cbytes, kMaxJsonBlob, "model config"));
    pkg.variants.push_back(std::move(v));
  }
  return pkg;
}

Result<Package> LoadPackage(LayoutReader& reader, std::string_view ref) {
  AIRLOCK_ASSIGN_OR_RETURN(Descriptor index, FindModelIndex(reader, ref));
  return LoadPackage(reader, index);
}

Status VerifyLayers(LayoutReader& reader, const Package& pkg,
                    const std::function<void(const Descriptor&)>& on_layer,
                    const std::function<void(const Descriptor&, std::uint64_t done)>& progress) {
  std::set<Digest> done;
  for (const auto& v : pkg.variants) {
    for (const auto& layer : v.manifest.layers) {
      if (!done.insert(layer.digest).second) {
        continue;
      }
      if (on_layer) {
        on_layer(layer);
      }
      std::function<void(std::uint64_t)> on_bytes;
      if (progress) {
        on_bytes = [&](std::uint64_t done_bytes) { progress(layer, done_bytes); };
      }
      AIRLOCK_RETURN_IF_ERROR(WithContext(reader.VerifyBlob(layer, on_bytes),
                                          "layer " + layer.Annotation(annotation::kFilepath)));
    }
  }
  return {};
}

ReleaseReferrer MakeReleaseReferrer(const Descriptor& index, std::string document) {
  ReleaseReferrer r;
  r.document_bytes = std::move(document);
  r.document_descriptor = DescribeBytes(media::kRelease, r.document_bytes);
  r.document_descriptor.annotations[std::string(annotation::kFilepath)] = "release.json";
  r.config_bytes = "{}";
  r.config_descriptor = DescribeBytes(media::kEmpty, r.config_bytes);
  Manifest m;
  m.artifact_type = std::string(media::kRelease);
  m.config = r.config_descriptor;
  m.layers.push_back(r.document_descriptor);
  Descriptor subject = index;
  subject.annotations.clear();
  subject.platform.reset();
  m.subject = subject;
  r.manifest_bytes = ToBytes(m.ToJson());
  r.manifest_descriptor = DescribeBytes(media::kImageManifest, r.manifest_bytes);
  r.manifest_descriptor.artifact_type = std::string(media::kRelease);
  return r;
}

Result<std::optional<trust::SignedDocument>> FindRelease(LayoutReader& reader,
                                                         const Descriptor& index) {
  AIRLOCK_ASSIGN_OR_RETURN(Index top, reader.ReadIndex());
  std::set<Digest> seen;
  for (const auto& d : top.manifests) {
    // A release manifest is a few hundred bytes; anything else is not read (nor read twice).
    if (d.artifact_type != media::kRelease || d.size > kMaxReleaseManifest ||
        !seen.insert(d.digest).second) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string mbytes, reader.ReadBlob(d, kMaxReleaseManifest));
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json mjson,
                             trust::ParseJson(mbytes, kMaxJsonBlob, "release manifest"));
    AIRLOCK_ASSIGN_OR_RETURN(Manifest m, Manifest::FromJson(mjson));
    if (!m.subject || m.subject->digest != index.digest || m.layers.size() != 1) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string doc,
                             reader.ReadBlob(m.layers[0], trust::kMaxDocumentSize));
    AIRLOCK_ASSIGN_OR_RETURN(trust::SignedDocument signed_doc, trust::SignedDocument::Parse(doc));
    // The document must itself name the index it is stored beside.
    const auto& body = signed_doc.body();
    if (!body.contains("index") || !body["index"].is_object() ||
        !body["index"].contains("digest") || body["index"]["digest"] != index.digest.ToString()) {
      continue;
    }
    return std::optional<trust::SignedDocument>(std::move(signed_doc));
  }
  return std::optional<trust::SignedDocument>();
}

Result<std::filesystem::path> MaterializeModel(LayoutReader& reader, const Variant& variant,
                                               const std::filesystem::path& dir) {
  std::filesystem::path entry;
  for (const Descriptor* layer : variant.Layers(media::kModelWeight)) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string rel,
                             CheckRelativePath(layer->Annotation(annotation::kFilepath)));
    std::filesystem::path target = dir / rel;
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
    AIRLOCK_ASSIGN_OR_RETURN(FileRange range, reader.LocateBlob(*layer));
    if (range.size != layer->size) {
      return Fail(ErrorCode::kCorrupt,
                  "blob " + layer->digest.ToString() + " is " + std::to_string(range.size) +
                      " bytes, its descriptor says " + std::to_string(layer->size));
    }
    AIRLOCK_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(target));
    Sha256 h;
    std::string buf(1 << 20, '\0');
    for (std::uint64_t done = 0; done < range.size;) {
      std::size_t want = std::min<std::uint64_t>(buf.size(), range.size - done);
      ssize_t n = ::pread(range.fd, buf.data(), want, static_cast<off_t>(range.offset + done));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return Fail(ErrorCode::kCorrupt, "blob " + layer->digest.ToString() + " ended early");
      }
      std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
      h.Update(chunk);
      AIRLOCK_RETURN_IF_ERROR(out.Write(chunk));
      done += static_cast<std::uint64_t>(n);
    }
    if (h.Finish() != layer->digest) {
      return Fail(ErrorCode::kCorrupt,
                  "blob " + layer->digest.ToString() + " (" + rel + ") does not match its digest");
    }
    AIRLOCK_RETURN_IF_ERROR(out.Commit());
    if (entry.empty()) {
      entry = target;
    }
  }
  return entry;
}

}  // namespace airlock::pkg
