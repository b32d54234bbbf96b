// Fuzzes the trust documents a device checks before it installs anything (DESIGN §4): the
// gateway's directive (trust::VerifyDirective) and the channel (trust::VerifyChannel).
// The first byte picks the mode:
//   - even: the rest is a whole signed document, as received (envelope, signatures, body);
//   - odd: the rest is a body, which the target signs with its own key before verifying it, so
//     that every mutated body reaches the checks behind the signature.
//
// Property: what verifies writes back (ToJson) into a body that FromJson reads back the same.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/keys.hpp"
#include "property.hpp"
#include "trust/directive.hpp"
#include "trust/documents.hpp"

namespace {

namespace trust = airlock::trust;

// A key made for this process: the directive's pinned key, and the channel's signing role.
const airlock::PrivateKey& Key() {
  static const airlock::PrivateKey key = [] {
    auto k = airlock::PrivateKey::Generate();
    AIRLOCK_FUZZ_REQUIRE(k);
    return *k;
  }();
  return key;
}

const trust::Root& KeyRoot() {
  static const trust::Root root = [] {
    trust::Root r;
    const auto& pub = Key().public_key();
    r.keys.emplace(pub.id(), pub);
    r.roles.emplace(trust::kRoleRoot, trust::RoleSpec{{pub.id()}, 1});
    r.roles.emplace(trust::kRolePublisher, trust::RoleSpec{{pub.id()}, 1});
    r.roles.emplace(trust::kRoleReleaseManager, trust::RoleSpec{{pub.id()}, 1});
    return r;
  }();
  return root;
}

void Check(const trust::SignedDocument& doc) {
  const airlock::TimePoint epoch{};
  std::string device = "cam-1";
  if (doc.body().is_object()) {
    auto it = doc.body().find("device");
    if (it != doc.body().end() && it->is_string()) {
      device = it->get<std::string>();
    }
  }
  if (auto directive = trust::VerifyDirective(doc, Key().public_key(), device, 0, epoch)) {
    auto again = trust::Directive::FromJson(directive->ToJson());
    AIRLOCK_FUZZ_REQUIRE(again && *again == *directive);
  }
  if (auto channel = trust::VerifyChannel(doc, KeyRoot(), epoch, 0)) {
    const auto written = channel->ToJson();
    auto again = trust::Channel::FromJson(written);
    AIRLOCK_FUZZ_REQUIRE(again && again->ToJson() == written);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    if (auto doc = trust::SignedDocument::Parse(rest)) {
      Check(*doc);
    }
    return 0;
  }
  auto body = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("_type")) {
    return 0;
  }
  auto doc = trust::SignedDocument::Wrap(std::move(body));
  if (!doc.Sign(Key())) {
    return 0;  // no canonical form (a float, invalid UTF-8)
  }
  Check(doc);
  return 0;
}
