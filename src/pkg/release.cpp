#include "pkg/release.hpp"

#include <set>

#include "core/fs.hpp"
#include "core/text.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace fs = std::filesystem;

Result<SignResult> SignPackage(const fs::path& path, const std::vector<PrivateKey>& keys,
                               const SignOptions& options) {
  if (keys.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no signing key given (--key)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto reader, LayoutReader::Open(path));
  AIRLOCK_ASSIGN_OR_RETURN(Package pkg, LoadPackage(*reader, options.ref));
  AIRLOCK_ASSIGN_OR_RETURN(auto existing, FindRelease(*reader, pkg.index_descriptor));

  SignResult result;
  if (existing && !options.counter) {
    // Co-signing: sign only a release that describes this very package, in every field that
    // identifies it, so that a signer who inspected the package signs what they saw.
    AIRLOCK_ASSIGN_OR_RETURN(trust::Release stored, trust::Release::FromJson(existing->body()));
    if (stored.index_digest != pkg.index_descriptor.digest ||
        stored.index_size != pkg.index_descriptor.size || stored.model != pkg.name() ||
        stored.version != pkg.version() || stored.platforms != pkg.PlatformNames()) {
      return Fail(ErrorCode::kVerification,
                  "the release stored in " + path.string() + " does not describe this package (" +
                      stored.model + " " + stored.version + ", index " +
                      stored.index_digest.ToString() + "); refusing to co-sign it");
    }
    if (options.expires_given) {
      return Fail(ErrorCode::kInvalidArgument,
                  "co-signing keeps the release's expiry (" + FormatRfc3339(stored.expires) +
                      "); to change it, make a new release with --counter");
    }
    result.document = std::move(*existing);
    result.added_to_existing = true;
  } else {
    if (!options.counter) {
      return Fail(ErrorCode::kInvalidArgument,
                  "a new release needs a release counter (--counter N, higher than the last "
                  "release of " +
                      pkg.name() + ")");
    }
    trust::Release release;
    release.model = pkg.name();
    release.version = pkg.version();
    release.release_counter = *options.counter;
    release.index_digest = pkg.index_descriptor.digest;
    release.index_size = pkg.index_descriptor.size;
    release.index_media_type = pkg.index_descriptor.media_type;
    release.platforms = pkg.PlatformNames();
    release.created = options.created;
    release.expires = options.expires;
    if (release.expires <= release.created) {
      return Fail(ErrorCode::kInvalidArgument, "the release would expire before it is created");
    }
    result.document = trust::SignedDocument::Wrap(release.ToJson());
  }
  for (const auto& key : keys) {
    AIRLOCK_RETURN_IF_ERROR(result.document.Sign(key));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string doc_bytes, result.document.Serialize());
  ReleaseReferrer ref = MakeReleaseReferrer(pkg.index_descriptor, doc_bytes);

  AIRLOCK_ASSIGN_OR_RETURN(Index top, reader->ReadIndex());
  // Drop earlier release referrers of this index; keep everything else.
  std::vector<Descriptor> kept;
  for (auto& d : top.manifests) {
    bool old_release = false;
    if (d.artifact_type == media::kRelease) {
      auto mbytes = reader->ReadBlob(d);
      if (mbytes) {
        auto m = nlohmann::json::parse(*mbytes, nullptr, false);
        old_release =
            !m.is_discarded() && m.contains("subject") &&
            trust::StringOr(m["subject"], "digest") == pkg.index_descriptor.digest.ToString();
      }
    }
    if (!old_release) {
      kept.push_back(std::move(d));
    }
  }
  top.manifests = std::move(kept);
  Descriptor entry = ref.manifest_descriptor;
  entry.annotations[std::string(annotation::kModel)] = pkg.name();
  top.manifests.push_back(entry);

  LayoutWriter writer;
  if (reader->is_archive()) {
    AIRLOCK_RETURN_IF_ERROR(writer.AddAll(*reader));
  }
  writer.AddBlob(ref.document_descriptor, ref.document_bytes);
  writer.AddBlob(ref.config_descriptor, ref.config_bytes);
  writer.AddBlob(ref.manifest_descriptor, ref.manifest_bytes);
  writer.SetIndex(top);
  if (reader->is_archive()) {
    RemoveStaleTemporaries(path);
    AIRLOCK_RETURN_IF_ERROR(writer.WriteTar(path, /*replace=*/true));
  } else {
    AIRLOCK_RETURN_IF_ERROR(writer.UpdateDirectory(path));
  }
  return result;
}

Result<VerifyResult> VerifyPackage(const fs::path& path, const trust::SignedDocument& root_doc,
                                   const VerifyOptions& options) {
  auto say = [&](const std::string& s) {
    if (options.say) {
      options.say(s);
    }
  };
  VerifyResult result;
  AIRLOCK_ASSIGN_OR_RETURN(result.root,
                           WithContext(trust::VerifyRoot(root_doc, options.now), "root"));
  say("root version " + std::to_string(result.root.version) +
      " is signed by its own keys and valid until " + FormatRfc3339(result.root.expires));

  AIRLOCK_ASSIGN_OR_RETURN(auto reader, LayoutReader::Open(path));
  // The package the layout names (by --ref, or its only one): what inspect shows and run loads.
  AIRLOCK_ASSIGN_OR_RETURN(Descriptor named, FindModelIndex(*reader, options.ref));
  trust::SignedDocument release_doc;
  if (options.release_file) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text,
                             ReadFile(*options.release_file, trust::kMaxDocumentSize));
    AIRLOCK_ASSIGN_OR_RETURN(release_doc, WithContext(trust::SignedDocument::Parse(text),
                                                      options.release_file->string()));
  } else {
    // Nothing in the layout is trusted before the release is: only the index's digest is used,
    // to find the release that names it.
    AIRLOCK_ASSIGN_OR_RETURN(auto found, FindRelease(*reader, named));
    if (!found) {
      return Fail(ErrorCode::kVerification,
                  path.string() + " holds no release document: sign it first (airlock sign)");
    }
    release_doc = std::move(*found);
  }
  AIRLOCK_ASSIGN_OR_RETURN(result.release,
                           WithContext(trust::VerifyRelease(release_doc, result.root, options.now,
                                                            options.trusted_counter),
                                       "release"));
  const trust::Release& rel = result.release;
  say("release " + rel.model + " " + rel.version + " (counter " +
      std::to_string(rel.release_counter) +
      ") carries enough publisher signatures and is valid until " + FormatRfc3339(rel.expires));

  // Mix-and-match: the release must sign the package the layout names, not some other index
  // that happens to be stored in it.
  if (rel.index_digest != named.digest || rel.index_size != named.size) {
    return Fail(ErrorCode::kVerification,
                "the release signs index " + rel.index_digest.ToString() + ", but " +
                    path.string() + " names index " + named.digest.ToString() +
                    (options.ref.empty() ? std::string() : " for " + options.ref));
  }
  // From here on the release is the authority: load the index it names, by digest and size.
  Descriptor index;
  index.media_type = rel.index_media_type;
  index.digest = rel.index_digest;
  index.size = rel.index_size;
  auto pkg = LoadPackage(*reader, index);
  if (!pkg) {
    return Fail(std::move(pkg.error()).WithContext("the package index the release signs"));
  }
  result.package = std::move(*pkg);
  const Package& p = result.package;
  if (p.name() != rel.model || p.version() != rel.version) {
    return Fail(ErrorCode::kVerification, "the package says " + p.name() + " " + p.version() +
                                              ", the release says " + rel.model + " " +
                                              rel.version);
  }
  std::set<std::string> signed_platforms(rel.platforms.begin(), rel.platforms.end());
  for (const auto& name : p.PlatformNames()) {
    if (!signed_platforms.contains(name)) {
      return Fail(ErrorCode::kVerification,
                  "platform " + name + " is in the package but not in the release");
    }
  }
  if (options.platform) {
    if (!signed_platforms.contains(*options.platform)) {
      return Fail(ErrorCode::kVerification,
                  "the release is for " + Join(rel.platforms) + ", not " + *options.platform);
    }
    AIRLOCK_RETURN_IF_ERROR(p.Select(*options.platform).map([](auto) {}));
  }
  say("index " + index.digest.ToString() + " matches the release; checking every blob");
  AIRLOCK_RETURN_IF_ERROR(VerifyLayers(
      *reader, p,
      [&](const Descriptor& d) {
        ++result.blobs_checked;
        say("  " + d.digest.ToString().substr(0, 19) + "  " + std::to_string(d.size) + " bytes  " +
            d.Annotation(annotation::kFilepath));
      },
      [&](const Descriptor& d, std::uint64_t done) {
        if (options.progress) {
          options.progress("checking " + d.Annotation(annotation::kFilepath), done, d.size);
        }
      }));
  return result;
}

}  // namespace airlock::pkg
