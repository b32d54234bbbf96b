#include "net/package_transfer.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/fs.hpp"
#include "pkg/layout.hpp"
#include "pkg/package.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::net {
namespace fs = std::filesystem;

namespace {

std::string Short(const Digest& d) { return d.ToString().substr(0, 19); }

std::string LabelOf(const pkg::Descriptor& d) {
  std::string path = d.Annotation(pkg::annotation::kFilepath);
  return path.empty() ? d.media_type : path;
}

// The release referrer manifests the layout stores for index, as FindRelease recognises them.
struct StoredReferrer {
  pkg::Descriptor descriptor;
  std::string bytes;
  pkg::Manifest manifest;
};

Result<std::optional<StoredReferrer>> FindReleaseReferrer(pkg::LayoutReader& reader,
                                                          const pkg::Descriptor& index) {
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Index top, reader.ReadIndex());
  for (const auto& d : top.manifests) {
    if (d.artifact_type != pkg::media::kRelease || d.size > pkg::kMaxReleaseManifest) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader.ReadBlob(d, pkg::kMaxReleaseManifest));
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json j,
                             trust::ParseJson(bytes, pkg::kMaxJsonBlob, "release manifest"));
    AIRLOCK_ASSIGN_OR_RETURN(pkg::Manifest m, pkg::Manifest::FromJson(j));
    if (!m.subject || m.subject->digest != index.digest || m.layers.size() != 1) {
      continue;
    }
    pkg::Descriptor descriptor = d;
    descriptor.annotations.clear();
    return std::optional<StoredReferrer>(
        StoredReferrer{descriptor, std::move(bytes), std::move(m)});
  }
  return std::optional<StoredReferrer>();
}

}  // namespace

Result<PushResult> PushPackage(RegistryClient& client, const std::string& repo,
                               const fs::path& path, const PushOptions& options) {
  auto say = [&](const std::string& s) {
    if (options.say) {
      options.say(s);
    }
  };
  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(path));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Package package, pkg::LoadPackage(*reader, options.ref));
  PushResult result;
  result.name = package.name();
  result.version = package.version();
  result.index = package.index_descriptor;
  result.index.annotations.clear();
  result.tag = options.tag.empty() ? package.version() : options.tag;
  if (!IsValidTag(result.tag)) {
    return Fail(ErrorCode::kInvalidArgument,
                "the package version \"" + result.tag +
                    "\" is not a valid registry tag; give a tag: REGISTRY/REPOSITORY:TAG");
  }
  AIRLOCK_RETURN_IF_ERROR(client.Ping());

  std::set<Digest> done;
  auto push_blob = [&](const pkg::Descriptor& d, std::string_view blob_bytes = {}) -> Status {
    if (!done.insert(d.digest).second) {
      return {};
    }
    std::string label = LabelOf(d);
    BlobPushOutcome outcome;
    if (!blob_bytes.empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(outcome,
                               client.PushBlob(repo, d.digest, blob_bytes, options.mount_from));
    } else {
      AIRLOCK_ASSIGN_OR_RETURN(pkg::FileRange range, reader->LocateBlob(d));
      if (range.size != d.size) {
        return Fail(ErrorCode::kCorrupt,
                    "blob " + d.digest.ToString() + " is " + std::to_string(range.size) +
                        " bytes, its descriptor says " + std::to_string(d.size));
      }
      TransferProgress progress;
      if (options.progress) {
        progress = [&](std::uint64_t n, std::uint64_t total) {
          options.progress("pushing " + label, n, total);
        };
      }
      AIRLOCK_ASSIGN_OR_RETURN(
          outcome, client.PushBlob(repo, d.digest, range, options.mount_from, progress));
    }
    const char* what = "";
    switch (outcome) {
      case BlobPushOutcome::kExisted:
        ++result.blobs_existing;
        what = "exists  ";
        break;
      case BlobPushOutcome::kMounted:
        ++result.blobs_mounted;
        what = "mounted ";
        break;
      case BlobPushOutcome::kUploaded:
        ++result.blobs_uploaded;
        result.bytes_uploaded += d.size;
        what = "uploaded";
        break;
    }
    say(std::string(what) + " " + Short(d.digest) + "  " + std::to_string(d.size) + " bytes  " +
        label);
    return {};
  };

  for (const auto& v : package.variants) {
    AIRLOCK_RETURN_IF_ERROR(push_blob(v.manifest.config));
    for (const auto& layer : v.manifest.layers) {
      AIRLOCK_RETURN_IF_ERROR(push_blob(layer));
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader->ReadBlob(v.descriptor));
    AIRLOCK_RETURN_IF_ERROR(
        client.PushManifest(repo, v.descriptor.digest.ToString(), pkg::media::kImageManifest, bytes)
            .map([](const auto&) {}));
    ++result.manifests;
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string index_bytes, reader->ReadBlob(package.index_descriptor));
  AIRLOCK_ASSIGN_OR_RETURN(
      PushedManifest pushed,
      client.PushManifest(repo, result.tag, pkg::media::kImageIndex, index_bytes));
  ++result.manifests;
  say("tagged   " + Short(pushed.digest) + "  " + repo + ":" + result.tag);

  AIRLOCK_ASSIGN_OR_RETURN(auto referrer, FindReleaseReferrer(*reader, package.index_descriptor));
  if (!referrer) {
    say("the package has no release document (airlock sign adds one); pushed without");
    return result;
  }
  const pkg::Manifest& m = referrer->manifest;
  AIRLOCK_ASSIGN_OR_RETURN(std::string config, reader->ReadBlob(m.config));
  AIRLOCK_RETURN_IF_ERROR(push_blob(m.config, config));
  AIRLOCK_ASSIGN_OR_RETURN(std::string document,
                           reader->ReadBlob(m.layers[0], trust::kMaxDocumentSize));
  AIRLOCK_RETURN_IF_ERROR(push_blob(m.layers[0], document));
  AIRLOCK_ASSIGN_OR_RETURN(PushedManifest release,
                           client.PushManifest(repo, referrer->descriptor.digest.ToString(),
                                               pkg::media::kImageManifest, referrer->bytes));
  result.release_manifest = release.digest;
  if (!release.subject_indexed) {
    // No referrers API: list it under the referrers tag, replacing older releases of this index.
    result.referrers_tag_used = true;
    pkg::Descriptor entry = referrer->descriptor;
    entry.artifact_type = std::string(pkg::media::kRelease);
    AIRLOCK_RETURN_IF_ERROR(client.AddToReferrersTag(
        repo, pushed.digest, entry,
        [](const pkg::Descriptor& d) { return d.artifact_type == pkg::media::kRelease; }));
  }
  say("release  " + Short(release.digest) + "  referrer of " + Short(pushed.digest) +
      (result.referrers_tag_used
           ? " (referrers tag " + RegistryClient::ReferrersTag(pushed.digest) + ")"
           : ""));
  return result;
}

Result<PullResult> PullPackage(RegistryClient& client, const std::string& repo,
                               const std::string& reference, const fs::path& output,
                               const PullOptions& options) {
  auto say = [&](const std::string& s) {
    if (options.say) {
      options.say(s);
    }
  };
  std::error_code ec;
  if (fs::exists(output, ec) && !options.replace) {
    return Fail(ErrorCode::kAlreadyExists,
                output.string() + " already exists (use --force to replace it)");
  }
  bool tar = output.extension() == ".tar";
  std::string where = repo + (reference.starts_with("sha256:") ? "@" : ":") + reference;
  AIRLOCK_RETURN_IF_ERROR(client.Ping());
  AIRLOCK_ASSIGN_OR_RETURN(
      FetchedManifest top,
      client.FetchManifest(
          repo, reference,
          std::min(options.index_size.value_or(pkg::kMaxJsonBlob), pkg::kMaxJsonBlob)));
  if (top.media_type != pkg::media::kImageIndex) {
    return Fail(ErrorCode::kUnsupported,
                where + " is a " + (top.media_type.empty() ? "document" : top.media_type) +
                    ", not an Airlock model package (an OCI image index of model manifests)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json index_json,
                           trust::ParseJson(top.bytes, pkg::kMaxJsonBlob, "package index"));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Index index, WithContext(pkg::Index::FromJson(index_json), where));
  PullResult result;
  result.name = index.Annotation(pkg::annotation::kModel);
  result.version = index.Annotation(pkg::annotation::kVersion);
  result.index.media_type = std::string(pkg::media::kImageIndex);
  result.index.digest = top.digest;
  result.index.size = top.bytes.size();
  say("index    " + Short(top.digest) + "  " + where +
      (result.name.empty() ? "" : " (" + result.name + " " + result.version + ")"));

  // Everything lands in a staging directory beside the output, removed whatever happens.
  fs::path parent = output.parent_path().empty() ? fs::path(".") : output.parent_path();
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(parent));
  RemoveStaleTemporaries(output);
  AIRLOCK_ASSIGN_OR_RETURN(
      TempDirectory staging,
      TempDirectory::Create(parent / (TemporaryPrefix(output, "pull") + "XXXXXX")));
  fs::path blob_dir = staging.path() / "blobs" / "sha256";
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(blob_dir));
  std::set<Digest> stored;
  auto store = [&](const Digest& d, std::string_view bytes) -> Status {
    stored.insert(d);
    return WriteFileAtomic(blob_dir / d.hex(), bytes);
  };
  AIRLOCK_RETURN_IF_ERROR(store(top.digest, top.bytes));

  std::vector<pkg::Descriptor> blobs;  // to download, each digest once
  std::set<Digest> wanted;
  auto want = [&](const pkg::Descriptor& d) {
    if (!stored.contains(d.digest) && wanted.insert(d.digest).second) {
      blobs.push_back(d);
    }
  };
  for (const auto& md : index.manifests) {
    if (md.media_type != pkg::media::kImageManifest) {
      return Fail(ErrorCode::kUnsupported, where + " lists a " + md.media_type +
                                               ", not a model manifest: not an Airlock package");
    }
    if (md.size > pkg::kMaxJsonBlob) {
      return Fail(ErrorCode::kCorrupt, "manifest " + md.digest.ToString() + " claims " +
                                           std::to_string(md.size) + " bytes, over the limit");
    }
    AIRLOCK_ASSIGN_OR_RETURN(FetchedManifest m,
                             client.FetchManifest(repo, md.digest.ToString(), md.size));
    if (m.bytes.size() != md.size) {
      return Fail(ErrorCode::kCorrupt, "manifest " + md.digest.ToString() + " is " +
                                           std::to_string(m.bytes.size()) +
                                           " bytes, the index says " + std::to_string(md.size));
    }
    AIRLOCK_RETURN_IF_ERROR(store(m.digest, m.bytes));
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json mj,
                             trust::ParseJson(m.bytes, pkg::kMaxJsonBlob, "manifest"));
    AIRLOCK_ASSIGN_OR_RETURN(
        pkg::Manifest manifest,
        WithContext(pkg::Manifest::FromJson(mj), "manifest " + md.digest.ToString()));
    want(manifest.config);
    for (const auto& layer : manifest.layers) {
      want(layer);
    }
  }

  // The release: the newest release referrer of the index (the registry lists the oldest first).
  std::optional<pkg::Descriptor> release_entry;
  AIRLOCK_ASSIGN_OR_RETURN(auto referrers,
                           client.ListReferrers(repo, top.digest, pkg::media::kRelease));
  result.releases_found = referrers.size();
  for (auto it = referrers.rbegin(); it != referrers.rend(); ++it) {
    if (it->media_type != pkg::media::kImageManifest || it->size > pkg::kMaxReleaseManifest) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(FetchedManifest m,
                             client.FetchManifest(repo, it->digest.ToString(), it->size));
    if (m.bytes.size() != it->size) {
      continue;
    }
    AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json mj,
                             trust::ParseJson(m.bytes, pkg::kMaxJsonBlob, "release manifest"));
    AIRLOCK_ASSIGN_OR_RETURN(pkg::Manifest manifest, pkg::Manifest::FromJson(mj));
    if (!manifest.subject || manifest.subject->digest != top.digest ||
        manifest.layers.size() != 1 || manifest.layers[0].size > trust::kMaxDocumentSize ||
        manifest.config.size > pkg::kMaxJsonBlob) {
      continue;
    }
    AIRLOCK_RETURN_IF_ERROR(store(m.digest, m.bytes));
    want(manifest.config);
    want(manifest.layers[0]);
    pkg::Descriptor entry;
    entry.media_type = std::string(pkg::media::kImageManifest);
    entry.digest = m.digest;
    entry.size = m.bytes.size();
    entry.artifact_type = std::string(pkg::media::kRelease);
    release_entry = entry;
    break;
  }
  if (!release_entry) {
    say("no release document in the registry for this index: the package is unsigned there");
  }

  // Free space first (DESIGN §5.2): the blobs, and for a tar the archive written from them.
  std::uint64_t total = 0;
  for (const auto& d : blobs) {
    total += d.size;
  }
  struct statvfs vfs {};
  if (::statvfs(staging.path().c_str(), &vfs) == 0) {
    std::uint64_t free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    std::uint64_t need = tar ? 2 * total : total;
    if (need > free_bytes) {
      return Fail(ErrorCode::kIo, "not enough free space in " + parent.string() +
                                      ": the pull "
                                      "needs " +
                                      std::to_string(need) + " bytes, " +
                                      std::to_string(free_bytes) + " are free");
    }
  }
  for (const auto& d : blobs) {
    std::string label = LabelOf(d);
    if (options.local_blob) {
      if (auto local = options.local_blob(d.digest)) {
        fs::path to = blob_dir / d.digest.hex();
        auto copied = HashCopy(*local, to);
        if (copied && copied->digest == d.digest && copied->size == d.size) {
          stored.insert(d.digest);
          ++result.reused;
          result.reused_bytes += d.size;
          say("reused   " + Short(d.digest) + "  " + std::to_string(d.size) + " bytes  " + label);
          continue;
        }
        fs::remove(to, ec);  // not the blob after all: fetch it
      }
    }
    TransferProgress progress;
    if (options.progress) {
      progress = [&](std::uint64_t n, std::uint64_t t) {
        options.progress("pulling " + label, n, t);
      };
    }
    AIRLOCK_RETURN_IF_ERROR(
        client.DownloadBlob(repo, d.digest, d.size, blob_dir / d.digest.hex(), progress));
    if (options.fetched) {
      options.fetched(d.digest, blob_dir / d.digest.hex());
    }
    stored.insert(d.digest);
    result.bytes += d.size;
    say("pulled   " + Short(d.digest) + "  " + std::to_string(d.size) + " bytes  " + label);
  }
  result.blobs = blobs.size() - result.reused;

  // index.json as `airlock pack` and `airlock sign` write it.
  pkg::Index layout_index;
  pkg::Descriptor entry = result.index;
  std::string ref_name = !result.version.empty()            ? result.version
                         : reference.starts_with("sha256:") ? std::string()
                                                            : reference;
  if (!ref_name.empty()) {
    entry.annotations[std::string(pkg::annotation::kRefName)] = ref_name;
  }
  if (!result.name.empty()) {
    entry.annotations[std::string(pkg::annotation::kModel)] = result.name;
  }
  layout_index.manifests.push_back(entry);
  if (release_entry) {
    if (!result.name.empty()) {
      release_entry->annotations[std::string(pkg::annotation::kModel)] = result.name;
    }
    layout_index.manifests.push_back(*release_entry);
  }
  AIRLOCK_RETURN_IF_ERROR(
      WriteFileAtomic(staging.path() / pkg::kLayoutFile, R"({"imageLayoutVersion":"1.0.0"})"));
  AIRLOCK_RETURN_IF_ERROR(
      WriteFileAtomic(staging.path() / pkg::kLayoutIndex, pkg::ToBytes(layout_index.ToJson())));

  // The documents must make a package that inspect accepts, and the release must name it.
  {
    AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(staging.path()));
    AIRLOCK_RETURN_IF_ERROR(
        WithContext(pkg::LoadPackage(*reader, entry), where).map([](const auto&) {}));
    if (release_entry) {
      AIRLOCK_ASSIGN_OR_RETURN(auto release, pkg::FindRelease(*reader, entry));
      if (!release) {
        say("the release referrer " + Short(release_entry->digest) +
            " does not name this index; left out");
        layout_index.manifests.pop_back();
        release_entry.reset();
      }
    }
  }
  if (release_entry) {
    result.release_manifest = release_entry->digest;
  }

  pkg::LayoutWriter writer;
  for (const auto& d : stored) {
    writer.AddMovable(pkg::BlobPath(d), blob_dir / d.hex());
  }
  writer.SetIndex(layout_index);
  if (tar) {
    AIRLOCK_RETURN_IF_ERROR(writer.WriteTar(output, options.replace));
  } else {
    AIRLOCK_RETURN_IF_ERROR(writer.WriteDirectory(output, options.replace));
  }
  return result;
}

}  // namespace airlock::net
