#pragma once
// The attack suite's device (docs/security.md, "The attack suite"): a managed agent
// (agent/device_fixture.hpp: its store, a real Mosquitto, a real Distribution registry standing in
// for the gateway's) that reaches the registry only through a NetworkAttacker, under a root that
// asks two of two publishers for a release and two of two release managers for a channel.
//
// Each test brings the device to a first good state (1.0.0 serving), attacks it once or several
// times, and checks three things every time:
//   (a) the attack is refused, for the reason the test names (what the device reports on
//       dev/{dev}/state, or logs when a message names no version it can trust);
//   (b) what the device trusts is unchanged: the pinned root, the directive version and the
//       channel versions it trusts (state/device.json), and its models: what is installed, the
//       release counters of its store, the version that serves. A refusal of a package from a
//       directive that itself checked out changes the directive's versions (it was genuine) and
//       nothing of the models;
//   (c) the next good update is applied: 1.1.0 serves.

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "agent/device_fixture.hpp"
#include "attack/network_attacker.hpp"
#include "core/fs.hpp"

namespace airlock::agent {

using airlock::testing::NetworkAttacker;

// What the device trusts (see above), read from its store.
struct DeviceTrust {
  std::string root;                               // identity/root.json, as pinned
  std::uint64_t directive_version = 0;            // state/device.json
  std::map<std::string, std::uint64_t> channels;  // "MODEL/CHANNEL" → version
  std::vector<std::string> installed;             // "NAME VERSION INDEX-DIGEST"
  std::uint64_t counter = 0;                      // the store's release counter of affine
  std::string serving;                            // the version that answers, or "none"

  // The models alone: what a refused package must leave as it was.
  auto Models() const { return std::tie(installed, counter, serving); }
  bool operator==(const DeviceTrust&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const DeviceTrust& t) {
  os << "directive " << t.directive_version << ", channels {";
  for (const auto& [k, v] : t.channels) {
    os << " " << k << "=" << v;
  }
  os << " }, installed {";
  for (const auto& m : t.installed) {
    os << " " << m.substr(0, m.find(" sha256:"));
  }
  return os << " }, counter " << t.counter << ", serving " << t.serving << ", root of "
            << t.root.size() << " bytes";
}

class Attack : public DeviceFixture {
 protected:
  void SetUp() override {
    DeviceFixture::SetUp();
    // Two of two publishers sign a release, two of two release managers a channel.
    trust::Root root;
    root.expires = WallNow() + std::chrono::hours(24 * 365);
    for (const PrivateKey* k : {publisher_.get(), &publisher2_, &manager1_, &manager2_}) {
      root.keys.emplace(k->id(), k->public_key());
    }
    root.roles["root"] = {{publisher_->id()}, 1};
    root.roles["publisher"] = {{publisher_->id(), publisher2_.id()}, 2};
    root.roles["release-manager"] = {{manager1_.id(), manager2_.id()}, 2};
    root_ = trust::SignedDocument::Wrap(root.ToJson());
    ASSERT_TRUE(root_.Sign(*publisher_));
    PinRoot();
    cosigners_ = {&publisher2_};
    channel_signers_ = {&manager1_, &manager2_};
    // 1.1.0 from other weights (the same function, an older ONNX IR version): none of its
    // blobs but the samples is one 1.0.0 has, so the device must fetch them.
    std::filesystem::copy(affine_dir(), other_dir(), std::filesystem::copy_options::recursive);
    airlock::testing::WriteAffineModel(other_dir() / "model.onnx", 4, /*ir_version=*/7);
  }

  std::string GatewayUrl() const override { return "http://" + attacker_.address(); }

  std::filesystem::path other_dir() const { return tmp_ / "affine-other-weights"; }

  // Publishes 1.0.0 and 1.1.0, starts the device and brings it to 1.0.0 on channel version 1
  // with directive first_directive.
  void SetUpDevice(std::uint64_t first_directive = 1,
                   const std::function<void(DeviceClientOptions&)>& configure = {}) {
    v1_ = Push(affine_dir(), "1.0.0", 1);
    v2_ = Push(other_dir(), "1.1.0", 2);
    StartDevice({}, configure);
    channel1_ = Channel(1, {&v1_});
    Send(Directive(first_directive, v1_, 1, channel1_, {&v1_}));
    ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();
    ASSERT_EQ(Trusted().serving, "1.0.0");
  }

  DeviceTrust Trusted() {
    DeviceTrust t;
    t.root = ReadFile(IdentityDir(store_dir()) / "root.json").value_or("");
    if (auto text = ReadFile(store_dir() / "state/device.json")) {
      auto state = TrustedState::FromJson(nlohmann::json::parse(*text));
      EXPECT_TRUE(state) << state.error().ToString();
      if (state) {
        t.directive_version = state->directive_version;
        t.channels = state->channels;
      }
    }
    auto store = ModelStore::Open(store_dir());
    EXPECT_TRUE(store) << store.error().ToString();
    if (store) {
      for (const InstalledModel& m : store->List().value_or(std::vector<InstalledModel>{})) {
        t.installed.push_back(m.name + " " + m.version + " " + m.index_digest);
      }
      t.counter = store->TrustedCounter("affine").value_or(0);
    }
    t.serving = Served();
    return t;
  }

  // (a) and (b) for a directive the device must refuse as a whole: it reports the refusal of
  // version with a message holding why, and trusts what it trusted before.
  void ExpectDirectiveRefused(const delivery::DirectiveMessage& message, std::uint64_t version,
                              const std::string& why) {
    const DeviceTrust before = Trusted();
    Send(message);
    ASSERT_TRUE(airlock::testing::WaitUntil(
        [&] {
          auto s = State();
          return s && s->refused_version == version && s->refused &&
                 s->refused->message.find(why) != std::string::npos;
        },
        std::chrono::seconds(30)))
        << "expected the refusal of directive " << version << " for \"" << why << "\"\n"
        << Dump();
    EXPECT_EQ(Trusted(), before);
    EXPECT_EQ(State()->directive_version, before.directive_version);
  }

  // (a) and (b) for a message the device refuses without reporting it (DeviceFixture), and what
  // it trusts unchanged.
  void ExpectRefusedUnreported(const std::string& payload, const std::string& why) {
    const DeviceTrust before = Trusted();
    DeviceFixture::ExpectRefusedUnreported(payload, why);
    EXPECT_EQ(Trusted(), before);
  }
  void ExpectRefusedUnreported(const delivery::DirectiveMessage& message, const std::string& why) {
    ExpectRefusedUnreported(message.ToJson().dump(), why);
  }

  // (a) and (b) for a directive that checks out but whose package must not be installed: the
  // device takes the directive (version), fails the model's target with code and a message
  // holding why, goes back to what served, and its models are as they were.
  void ExpectPackageRefused(const delivery::DirectiveMessage& message, std::uint64_t version,
                            const std::string& code, const std::string& why) {
    const DeviceTrust before = Trusted();
    Send(message);
    ASSERT_TRUE(airlock::testing::WaitUntil(
        [&] {
          auto s = State();
          return s && s->directive_version == version && !s->models.empty() &&
                 s->models[0].phase == "rolled-back" && s->models[0].error &&
                 s->models[0].error->code == code &&
                 s->models[0].error->message.find(why) != std::string::npos;
        },
        std::chrono::seconds(60)))
        << "expected directive " << version << " to fail its package with " << code << " for \""
        << why << "\"\n"
        << Dump();
    const DeviceTrust after = Trusted();
    EXPECT_EQ(after.Models(), before.Models()) << "before: " << before << "\nafter: " << after;
    EXPECT_EQ(after.root, before.root);
    EXPECT_EQ(after.directive_version, version);
    EXPECT_EQ(State()->models[0].active_version, before.serving);
    // No package is left half-fetched (fetched/ keeps the blobs that checked out, for a retry).
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(store_dir() / "state/downloads", ec)) {
      if (e.is_directory()) {
        EXPECT_EQ(e.path().filename(), "fetched") << "a download was left behind: " << e.path();
      }
    }
  }

  // (c): directive version brings 1.1.0 on channel version channel; it serves, and the device
  // trusts both versions.
  void ExpectNextGoodUpdate(std::uint64_t version, std::uint64_t channel = 2) {
    attacker_.Honest();
    Send(Directive(version, v2_, channel, Channel(channel, {&v2_, &v1_}), {&v2_}));
    ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
    DeviceTrust t = Trusted();
    EXPECT_EQ(t.serving, "1.1.0");
    EXPECT_EQ(t.directive_version, version);
    EXPECT_EQ(t.channels["affine/production"], channel);
    EXPECT_EQ(t.counter, 2u);
    EXPECT_FALSE(State()->refused) << Dump();
  }

  // A copy of doc with its signed body changed by change, and its signatures as they were.
  static trust::SignedDocument Altered(const trust::SignedDocument& doc,
                                       const std::function<void(nlohmann::json&)>& change) {
    nlohmann::json whole = nlohmann::json::parse(doc.Serialize().value());
    change(whole["signed"]);
    return trust::SignedDocument::Parse(whole.dump()).value();
  }
  // A copy of doc with the signatures keep says to keep (in order, repeats allowed).
  static trust::SignedDocument WithSignatures(const trust::SignedDocument& doc,
                                              const std::vector<std::string>& keep) {
    nlohmann::json whole = nlohmann::json::parse(doc.Serialize().value());
    nlohmann::json sigs = nlohmann::json::array();
    for (const std::string& keyid : keep) {
      for (const nlohmann::json& s : whole["signatures"]) {
        if (s["keyid"] == keyid) {
          sigs.push_back(s);
        }
      }
    }
    whole["signatures"] = sigs;
    return trust::SignedDocument::Parse(whole.dump()).value();
  }
  // p with another release document (its id follows the document).
  static Published WithRelease(Published p, trust::SignedDocument doc) {
    p.doc = std::move(doc);
    p.id = trust::ReleaseId(p.doc).value();
    return p;
  }

  // Digests of what the device fetches for p.
  static Digest IndexOf(const Published& p) { return p.package.index_descriptor.digest; }
  static Digest ManifestOf(const Published& p) {
    return p.package.Select(HostPlatform()).value()->descriptor.digest;
  }
  static Digest WeightsOf(const Published& p) {
    return p.package.Select(HostPlatform()).value()->Layers(pkg::media::kModelWeight)[0]->digest;
  }

  PrivateKey publisher2_ = PrivateKey::Generate().value();
  PrivateKey manager1_ = PrivateKey::Generate().value();
  PrivateKey manager2_ = PrivateKey::Generate().value();
  NetworkAttacker attacker_{registry_.port()};
  Published v1_;
  Published v2_;
  trust::SignedDocument channel1_;
};

}  // namespace airlock::agent
