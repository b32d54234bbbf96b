// Fuzzes what the hub reads from a manifest PUT: hub::ReadPushedManifest (the body, with the
// request's Content-Type taken from the input's first line), and the request path it arrives on
// (hub::ParseV2Route, then the reference as a tag or a digest, and the repository name).
//
// Properties: an accepted manifest has one of the four media types the hub serves, references
// blobs (a config first) if it is an image manifest and only manifests if it is an index, every
// digest is canonical, its annotations are a JSON object of strings, and it reads the same again
// with its own media type as the Content-Type. A parsed route rebuilds into the same path.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "hub/oci_rules.hpp"
#include "property.hpp"

namespace {

using airlock::Digest;
using namespace airlock::hub;

bool Canonical(const Digest& d) {
  auto again = Digest::Parse(d.ToString());
  return again && *again == d;
}

void CheckManifest(std::string_view content_type, std::string_view body) {
  auto m = ReadPushedManifest(body, content_type);
  if (!m) {
    return;
  }
  bool image = m->media_type == media::kOciManifest || m->media_type == media::kDockerManifest;
  bool index = m->media_type == media::kOciIndex || m->media_type == media::kDockerList;
  AIRLOCK_FUZZ_REQUIRE(image || index);
  if (image) {
    AIRLOCK_FUZZ_REQUIRE(!m->references.blobs.empty());
    AIRLOCK_FUZZ_REQUIRE(m->references.manifests.empty());
  } else {
    AIRLOCK_FUZZ_REQUIRE(m->references.blobs.empty());
  }
  for (const auto& b : m->references.blobs) {
    AIRLOCK_FUZZ_REQUIRE(Canonical(b.digest));
  }
  for (const auto& d : m->references.manifests) {
    AIRLOCK_FUZZ_REQUIRE(Canonical(d));
  }
  if (m->subject) {
    AIRLOCK_FUZZ_REQUIRE(Canonical(*m->subject));
  }
  if (!m->annotations_json.empty()) {
    auto a = nlohmann::json::parse(m->annotations_json, nullptr, false);
    AIRLOCK_FUZZ_REQUIRE(!a.is_discarded() && a.is_object());
    for (const auto& [key, value] : a.items()) {
      AIRLOCK_FUZZ_REQUIRE(value.is_string());
    }
  }
  auto again = ReadPushedManifest(body, m->media_type);
  AIRLOCK_FUZZ_REQUIRE(again);
  AIRLOCK_FUZZ_REQUIRE(again->media_type == m->media_type);
  AIRLOCK_FUZZ_REQUIRE(again->artifact_type == m->artifact_type);
  AIRLOCK_FUZZ_REQUIRE(again->subject == m->subject);
  AIRLOCK_FUZZ_REQUIRE(again->annotations_json == m->annotations_json);
  AIRLOCK_FUZZ_REQUIRE(again->references.blobs.size() == m->references.blobs.size());
  AIRLOCK_FUZZ_REQUIRE(again->references.manifests == m->references.manifests);
}

void CheckRoute(std::string_view path) {
  auto route = ParseV2Route(path);
  if (!route) {
    return;
  }
  std::string rebuilt = "/v2/" + route->name;
  switch (route->kind) {
    case V2Route::Kind::kManifest:
      rebuilt += "/manifests/" + route->reference;
      break;
    case V2Route::Kind::kBlob:
      rebuilt += "/blobs/" + route->reference;
      break;
    case V2Route::Kind::kUploads:
      rebuilt += "/blobs/uploads/" + route->reference;
      break;
    case V2Route::Kind::kTags:
      AIRLOCK_FUZZ_REQUIRE(route->reference.empty());
      rebuilt += "/tags/list";
      break;
    case V2Route::Kind::kReferrers:
      rebuilt += "/referrers/" + route->reference;
      break;
  }
  AIRLOCK_FUZZ_REQUIRE(rebuilt == path);
  if (IsRepositoryName(route->name)) {
    AIRLOCK_FUZZ_REQUIRE(route->name.size() <= kMaxRepositoryName);
    AIRLOCK_FUZZ_REQUIRE(route->name.find("//") == std::string::npos);
    AIRLOCK_FUZZ_REQUIRE(route->name.front() != '/' && route->name.back() != '/');
  }
  if (IsTag(route->reference)) {
    AIRLOCK_FUZZ_REQUIRE(route->reference.size() <= 128);
    AIRLOCK_FUZZ_REQUIRE(route->reference.find('/') == std::string::npos);
  }
  if (auto d = Digest::Parse(route->reference)) {
    AIRLOCK_FUZZ_REQUIRE(d->ToString() == route->reference);
  }
}

}  // namespace

// Input: "<Content-Type>\n<manifest body>"; without a newline, all of it is the body. The first
// line is also tried as a request path.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::size_t newline = text.find('\n');
  std::string_view content_type = newline == std::string_view::npos ? "" : text.substr(0, newline);
  std::string_view body = newline == std::string_view::npos ? text : text.substr(newline + 1);
  CheckManifest(content_type, body);
  CheckRoute(newline == std::string_view::npos ? text : content_type);
  return 0;
}
