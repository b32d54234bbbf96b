#pragma once
// A model package as read from a layout: the top index, one variant per platform, and the
// release document stored beside it (DESIGN §3, §4).
//
// LoadPackage reads and digest-checks the small documents (index, manifests, configs) and checks
// that every layer has a known media type and a safe file path; it does not read the large layers
// (VerifyLayers does). Thread-compatible.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "pkg/layout.hpp"
#include "pkg/oci.hpp"
#include "trust/documents.hpp"

namespace airlock::pkg {

struct Variant {
  Platform platform;
  Descriptor descriptor;  // of the manifest, from the index
  Manifest manifest;
  nlohmann::json config;  // the ModelPack config

  // The layers of one media type, in manifest order.
  std::vector<const Descriptor*> Layers(std::string_view media_type) const;
};

struct Package {
  std::string ref;  // the layout's ref name (the version)
  Descriptor index_descriptor;
  Index index;
  std::vector<Variant> variants;

  std::string name() const { return index.Annotation(annotation::kModel); }
  std::string version() const { return index.Annotation(annotation::kVersion); }
  std::vector<std::string> PlatformNames() const;
  // The variant for a platform ("linux/amd64"); the first variant when platform is empty.
  [[nodiscard]] Result<const Variant*> Select(std::string_view platform) const;
};

// Finds the model index in the layout: by ref name when given, else the only model index.
[[nodiscard]] Result<Descriptor> FindModelIndex(LayoutReader& reader, std::string_view ref);

// Loads the package whose index has exactly this descriptor (digest and size).
[[nodiscard]] Result<Package> LoadPackage(LayoutReader& reader, const Descriptor& index);
// FindModelIndex + LoadPackage.
[[nodiscard]] Result<Package> LoadPackage(LayoutReader& reader, std::string_view ref = {});

// Reads every layer of every variant (each distinct blob once) and checks size and digest.
// on_layer is called before each layer, progress with its bytes checked so far.
[[nodiscard]] Status VerifyLayers(
    LayoutReader& reader, const Package& pkg,
    const std::function<void(const Descriptor&)>& on_layer = {},
    const std::function<void(const Descriptor&, std::uint64_t done)>& progress = {});

inline constexpr std::uint64_t kMaxReleaseManifest = 64 * 1024;

// The release document stored in the layout as a referrer of a package index, if any: a
// referrer manifest with that subject whose document names that index too. Nothing here is
// verified; callers verify the document.
[[nodiscard]] Result<std::optional<trust::SignedDocument>> FindRelease(LayoutReader& reader,
                                                                       const Descriptor& index);

// Writes the variant's model files into dir under their package paths, checking each blob's
// size and digest on the way, and returns the path of the entry model (the first weight layer).
[[nodiscard]] Result<std::filesystem::path> MaterializeModel(LayoutReader& reader,
                                                             const Variant& variant,
                                                             const std::filesystem::path& dir);

// The manifest that stores a release document as a referrer of index (empty config, one layer).
struct ReleaseReferrer {
  Descriptor manifest_descriptor;
  std::string manifest_bytes;
  Descriptor document_descriptor;
  std::string document_bytes;
  Descriptor config_descriptor;
  std::string config_bytes;
};
ReleaseReferrer MakeReleaseReferrer(const Descriptor& index, std::string document);

}  // namespace airlock::pkg
