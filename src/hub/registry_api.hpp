#pragma once
// The hub's registry REST API under /api/v1/ (issue 4; docs/hub-api.md is the reference with
// curl examples): models and versions with lineage, releases verified against the hub's root,
// channels with threshold-signed promotion (a proposal below the threshold waits for more
// approvers' signatures), deployments with their history, gateways registering with a one-time
// token and reporting their inventory.
//
// It also watches the OCI side: a pushed package index (artifactType of a model, annotations
// ai.airlock.model and org.opencontainers.image.version) becomes a model version, with its
// lineage annotations and who pushed it; a pushed release referrer becomes the version's release
// once it verifies against the root (a release that does not verify is refused, as is re-pushing
// a released version with other bytes).
//
// Thread-safe: handlers run on the server's threads; all state is in the stores.

#include <httplib.h>

#include <optional>
#include <string>
#include <string_view>

#include "core/digest.hpp"
#include "core/result.hpp"
#include "hub/access.hpp"
#include "hub/api_support.hpp"
#include "hub/orchestrator.hpp"
#include "store/blob_store.hpp"
#include "store/metadata_store.hpp"
#include "store/registry_store.hpp"
#include "trust/documents.hpp"
#include "trust/root_store.hpp"

namespace airlock::hub {

class RegistryApi {
 public:
  // Everything must outlive the API. root: the verified root, or nullopt (releases and channel
  // documents are then refused with a 409 that says how to configure one).
  // deployments: told of created and cancelled deployments (the delivery orchestrator); null
  // when the hub runs none.
  RegistryApi(ApiGate& gate, AccessControl& access, store::RegistryStore& registry,
              store::MetadataStore& meta, store::BlobStore& blobs, std::optional<trust::TrustedRoot> root,
              DeploymentObserver* deployments = nullptr);

  void Routes(httplib::Server& server);

  // What a manifest pushed over OCI means for the registry, decided before it is stored.
  struct ManifestEffect {
    std::optional<store::ModelVersionRecord> version;
    std::optional<store::ReleaseRecord> release;
  };
  // kAlreadyExists (409) for a released version pushed with another index; kVerification (a 400)
  // for a release referrer that does not verify.
  [[nodiscard]] Result<ManifestEffect> InspectManifest(const Principal& who,
                                                       std::string_view repository,
                                                       std::string_view bytes,
                                                       const Digest& digest);
  // Records the effect once the manifest is stored. Failures are logged (the push happened).
  void ApplyManifest(const ManifestEffect& effect);

 private:
  struct Handlers;
  // A release document checked against the root (publisher threshold, expiry, model) as the
  // record to store. kUnsupported without a root; kVerification / kCorrupt otherwise.
  Result<store::ReleaseRecord> CheckRelease(const Principal& who, const trust::SignedDocument& doc,
                                            std::string_view model);
  // The description in the model config of an index's first variant; "" when unreadable.
  std::string DescriptionOf(std::string_view repository, const nlohmann::json& index);

  ApiGate& gate_;
  AccessControl& access_;
  store::RegistryStore& registry_;
  store::MetadataStore& meta_;
  store::BlobStore& blobs_;
  std::optional<trust::TrustedRoot> root_;
  std::vector<trust::SignedDocument> root_chain_;  // what GET /api/v1/roots serves
  DeploymentObserver* deployments_;
};

// The root the hub trusts: the document at path (its own threshold) walked through the rotations
// in the directory rotations (`airlock-hub root update`), the newest unexpired at now.
[[nodiscard]] Result<trust::TrustedRoot> LoadHubRoot(const std::filesystem::path& path,
                                                     const std::filesystem::path& rotations,
                                                     TimePoint now);
// The rotations directory of a hub whose data directory is data.
inline std::filesystem::path HubRootsDir(const std::filesystem::path& data) {
  return data / "roots";
}

}  // namespace airlock::hub
