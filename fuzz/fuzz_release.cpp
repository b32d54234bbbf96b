// Fuzzes the signed documents a device receives: trust::SignedDocument::Parse, then the body as
// a root (Root::FromJson, VerifyRoot: self-signed) and as a release (Release::FromJson,
// VerifyRelease against a fixed root whose publisher key signed the seed release in
// corpus/fuzz_release/, so the signature check runs to the end on it).
//
// Property: an accepted document that serializes (no floats) parses back to the same body and
// signatures.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/encoding.hpp"
#include "core/keys.hpp"
#include "property.hpp"
#include "trust/documents.hpp"

namespace {

using airlock::trust::Root;
using airlock::trust::SignedDocument;

// The public half of the throwaway key that signed corpus/fuzz_release/release.json
// (scripts/fuzz-corpus made it and printed this; the private half was not kept).
constexpr std::string_view kPublisherKeyHex =
    "3a89a582b3e1101a583f29730c109a26e220258148961854b121a13b42135829";

const Root& PublisherRoot() {
  static const Root root = [] {
    auto raw = airlock::HexDecode(kPublisherKeyHex);
    AIRLOCK_FUZZ_REQUIRE(raw);
    auto key = airlock::PublicKey::FromRaw(*raw);
    AIRLOCK_FUZZ_REQUIRE(key);
    Root r;
    r.keys.emplace(key->id(), *key);
    r.roles.emplace(airlock::trust::kRoleRoot, airlock::trust::RoleSpec{{key->id()}, 1});
    r.roles.emplace(airlock::trust::kRolePublisher, airlock::trust::RoleSpec{{key->id()}, 1});
    return r;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = SignedDocument::Parse(text);
  if (!doc) {
    return 0;
  }
  (void)doc->type();
  if (auto serialized = doc->Serialize()) {
    auto again = SignedDocument::Parse(*serialized);
    AIRLOCK_FUZZ_REQUIRE(again);
    AIRLOCK_FUZZ_REQUIRE(again->body() == doc->body());
    AIRLOCK_FUZZ_REQUIRE(again->signatures().size() == doc->signatures().size());
    for (std::size_t i = 0; i < doc->signatures().size(); ++i) {
      AIRLOCK_FUZZ_REQUIRE(again->signatures()[i].keyid == doc->signatures()[i].keyid &&
                           again->signatures()[i].sig == doc->signatures()[i].sig);
    }
  }
  const airlock::TimePoint epoch{};
  if (auto root = Root::FromJson(doc->body())) {
    (void)airlock::trust::VerifyRoot(*doc, epoch);
    (void)root->ToJson();
  }
  if (auto release = airlock::trust::Release::FromJson(doc->body())) {
    (void)release->ToJson();
    (void)airlock::trust::VerifyRelease(*doc, PublisherRoot(), epoch, 0);
  }
  return 0;
}
