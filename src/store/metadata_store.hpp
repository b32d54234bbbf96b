#pragma once
// MetadataStore: what the hub knows about its OCI repositories — which manifests each holds (with
// their bytes), its tags, the referrers of each manifest (by `subject`), and which blobs each may
// serve (a blob is visible in a repository only once it was pushed or mounted there).
//
// One interface, two implementations (DESIGN §7): SQLite (SqliteMetadataStore, embedded, the
// default) and PostgreSQL (PostgresMetadataStore, for several hubs on one database). Both follow
// these rules: every method is one short transaction, checks that must hold with a write happen in
// the same call (PutManifest refuses a manifest whose blobs are not linked, atomically), nothing
// hands out cursors or connections, and names and digests are plain text.
//
// Implementations are thread-safe: any method may be called from any thread. Methods block on
// the database. Errors: kNotFound for what does not exist, kIo / kCorrupt for the database.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "store/sql.hpp"

namespace airlock::store {

struct ManifestRecord {
  Digest digest = Digest::FromHex(std::string(64, '0'));
  std::string media_type;
  // The manifest's artifactType, or for an image manifest without one its config's media type
  // (what the referrers API reports); may be empty.
  std::string artifact_type;
  std::optional<Digest> subject;
  std::uint64_t size = 0;
  std::string annotations_json;  // the manifest's "annotations" object as JSON, "" when none
  std::string bytes;             // empty when a listing did not ask for them
};

// What a new manifest refers to; PutManifest checks every one exists in the repository.
struct ManifestReferences {
  struct Blob {
    Digest digest;
    std::uint64_t size = 0;
  };
  std::vector<Blob> blobs;        // config and layers
  std::vector<Digest> manifests;  // an index's manifests
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // The database underneath, for the stores written once over SQL (SqlAuthStore, RegistryStore):
  // their tables live beside these ones. Valid as long as this store.
  virtual SqlDatabase& sql() = 0;

  // Whether the repository exists (it does from its first linked blob or manifest).
  [[nodiscard]] virtual Result<bool> RepositoryExists(std::string_view repository) = 0;

  // ---- blobs ----
  // Makes blob visible in repository (creating the repository). Idempotent.
  [[nodiscard]] virtual Status LinkBlob(std::string_view repository, const Digest& digest,
                                        std::uint64_t size) = 0;
  // The size of a blob linked to repository; kNotFound if it is not linked there.
  [[nodiscard]] virtual Result<std::uint64_t> LinkedBlob(std::string_view repository,
                                                         const Digest& digest) = 0;
  // Removes the link; kNotFound if there was none. Returns whether any repository still links
  // the blob (when none does, the caller may remove its bytes).
  [[nodiscard]] virtual Result<bool> UnlinkBlob(std::string_view repository,
                                                const Digest& digest) = 0;
  // Whether any repository links the blob: when none does, its bytes are garbage (the garbage
  // collector asks this for each stored blob, and again just before it removes one).
  [[nodiscard]] virtual Result<bool> IsBlobLinked(const Digest& digest) = 0;

  // ---- manifests and tags ----
  // Stores a manifest in repository and, when tag is set, points the tag at it — only if every
  // reference exists there: otherwise kNotFound naming the first missing one (a blob of another
  // size counts as missing: kInvalidArgument naming both sizes). Storing a manifest again is a
  // no-op apart from the tag.
  [[nodiscard]] virtual Status PutManifest(std::string_view repository,
                                           const ManifestRecord& manifest,
                                           const ManifestReferences& references,
                                           std::optional<std::string_view> tag) = 0;
  // With bytes. kNotFound if repository has no such manifest.
  [[nodiscard]] virtual Result<ManifestRecord> GetManifest(std::string_view repository,
                                                           const Digest& digest) = 0;
  // The digest a tag points at; kNotFound for an unknown tag.
  [[nodiscard]] virtual Result<Digest> ResolveTag(std::string_view repository,
                                                  std::string_view tag) = 0;
  // Tags in lexical (byte) order, those after `last` only, at most limit. kNotFound for an
  // unknown repository.
  [[nodiscard]] virtual Result<std::vector<std::string>> ListTags(std::string_view repository,
                                                                  std::string_view last,
                                                                  std::size_t limit) = 0;
  // Removes a manifest and every tag pointing at it; kNotFound if there is none.
  [[nodiscard]] virtual Status DeleteManifest(std::string_view repository,
                                              const Digest& digest) = 0;
  // Removes a tag (not the manifest); kNotFound if there is none.
  [[nodiscard]] virtual Status DeleteTag(std::string_view repository, std::string_view tag) = 0;
  // The manifests of repository whose subject is subject, without their bytes, in digest order;
  // only those of artifact_type when it is not empty.
  [[nodiscard]] virtual Result<std::vector<ManifestRecord>> Referrers(
      std::string_view repository, const Digest& subject, std::string_view artifact_type) = 0;
};

}  // namespace airlock::store
