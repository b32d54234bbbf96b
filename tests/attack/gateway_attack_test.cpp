// The attacks the gateway must refuse (docs/security.md, "The attack suite"), at the level where
// it decides, in process over its real state (gateway.db, the cache) on a clock the test moves
// (gateway/fleet_fixture.hpp): an air-gapped bundle that climbs out of its tar, links, or carries
// what its root did not sign (DeliveryService::ImportBundle); device reports replayed
// (FleetService); a revoked device's certificate (AuthorizeDevicePull). Each test checks the
// refusal and its reason, that what the gateway serves and keeps is unchanged, and that the next
// good bundle, report or pull is taken.

#include <gtest/gtest.h>

#include <algorithm>

#include "core/fs.hpp"
#include "gateway/delivery_service.hpp"
#include "gateway/devices_api.hpp"
#include "gateway/fleet_fixture.hpp"
#include "gateway/hub_http.hpp"
#include "pkg/fixture.hpp"
#include "pkg/layout.hpp"
#include "pkg/pack.hpp"
#include "pkg/package.hpp"
#include "pkg/release.hpp"
#include "pkg/tar.hpp"
#include "support/hostile_tar.hpp"

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;
using airlock::testing::TarEnd;
using airlock::testing::TarEntry;
using airlock::testing::TarHeader;
using airlock::testing::WaitUntil;
using nlohmann::json;
using std::chrono::hours;
using std::chrono::seconds;

const std::string kDeployment = "dep-00000000000000a1";

class GatewayAttack : public FleetFixture {
 protected:
  void TearDown() override {
    delivery_.reset();
    cache_.reset();
  }

  // The gateway's delivery service over a cache of its own, for imports.
  void StartDeliveryService() {
    cache_ = GatewayCache::Open(
                 dir_.path() / "cache",
                 CacheOptions{.max_bytes = 1ULL << 30, .access_flush_interval = seconds(0)}, clock_)
                 .value();
    DeliveryServiceOptions options;
    options.gateway = "gw1";
    options.data_dir = dir_.path();
    auto root = trust::VerifyRoot(trust::SignedDocument::Parse(trust_.root_text).value(), Now());
    ASSERT_TRUE(root);
    auto service = DeliveryService::Create(
        options, *root, *cache_, *store_, hub_,
        [](const std::string&, const std::string&) -> Status { return {}; }, clock_);
    ASSERT_TRUE(service) << service.error().ToString();
    delivery_ = std::move(*service);
  }

  // The affine model packed and signed by signer, and a bundle of it for kDeployment as
  // `airlock bundle export` writes one (the layout, then airlock-bundle.json): its bytes.
  std::string Bundle(const PrivateKey& signer) {
    const fs::path project = dir_.path() / "affine";
    airlock::testing::WriteAffineProject(project);
    auto spec = pkg::LoadPackSpec(project / "airlock.yaml").value();
    pkg::PackOptions pack;
    pack.output = dir_.path() / "affine.tar";
    pack.force = true;
    pack.validate = false;
    auto packed = pkg::Pack(spec, pack, nullptr);
    EXPECT_TRUE(packed) << packed.error().ToString();
    pkg::SignOptions sign;
    sign.counter = 1;
    sign.created = Now() - hours(1);
    sign.expires = Now() + hours(24 * 30);
    EXPECT_TRUE(pkg::SignPackage(pack.output, {signer}, sign));
    auto reader = pkg::LayoutReader::Open(pack.output).value();
    auto package = pkg::LoadPackage(*reader).value();
    weights_ = package.variants[0].Layers(pkg::media::kModelWeight)[0]->digest;
    delivery::BundleManifest m;
    m.deployment_id = kDeployment;
    m.model = "affine";
    m.version = "1.0.0";
    m.repository = "models/affine";
    m.index_digest = package.index_descriptor.digest;
    m.index_size = package.index_descriptor.size;
    m.exported_at = Now();
    m.exported_from = "https://hub.example";
    pkg::LayoutWriter writer;
    EXPECT_TRUE(writer.AddAll(*reader));
    writer.AddBytes(delivery::kBundleManifestFile, m.ToJson().dump(2) + "\n");
    const fs::path bundle = dir_.path() / "bundle-made.tar";
    EXPECT_TRUE(writer.WriteTar(bundle, true));
    return ReadFile(bundle).value();
  }

  // bundle again, entry by entry: without the entry instead_of, with change applied to the
  // entry changed, and extra at the end.
  static std::string Rebuilt(const std::string& bundle, const std::string& instead_of,
                             const std::string& extra, const std::string& changed = "",
                             const std::function<void(std::string&)>& change = {}) {
    std::string out;
    const auto entries = pkg::IndexTar(bundle).value();
    for (const auto& [name, range] : entries) {
      std::string data = bundle.substr(range.offset, range.size);
      if (name == changed && change) {
        change(data);
      }
      if (name != instead_of) {
        out += TarEntry(name, data);
      }
    }
    return out + extra + TarEnd();
  }

  Result<DeliveryRecord> Import(const std::string& bytes) {
    const fs::path bundle = dir_.path() / "bundle.tar";
    EXPECT_TRUE(WriteFileAtomic(bundle, bytes));
    return delivery_->ImportBundle(bundle, "attack-test");
  }

  // What the gateway serves and keeps of deliveries: the cached packages and the records.
  std::pair<std::vector<std::string>, std::size_t> Served() {
    std::vector<std::string> packages;
    const std::vector<CachedPackage> cached = cache_->ListPackages().value();
    for (const CachedPackage& p : cached) {
      packages.push_back(p.ref.ToString() + (p.complete ? " complete" : " incomplete"));
    }
    return {packages, store_->List().value().size()};
  }

  std::string BlobPath() const { return "blobs/sha256/" + weights_.hex(); }

  HubHttp hub_{"http://127.0.0.1:9", "not-used-by-imports"};
  std::unique_ptr<GatewayCache> cache_;
  std::unique_ptr<DeliveryService> delivery_;
  Digest weights_ = Sha256Of("");
};

// An air-gapped bundle (`airlock-gateway import`) is read in place, never extracted: a tar entry
// that climbs out, an absolute path or a link refuses the whole bundle before anything of it is
// cached.
TEST_F(GatewayAttack, PathTraversalAndLinksInBundles) {
  StartDeliveryService();
  const std::string good = Bundle(trust_.publisher);
  const fs::path outside = dir_.path() / "outside";
  struct Case {
    const char* what;
    std::string bundle;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"a path that climbs out", Rebuilt(good, "", TarEntry("blobs/../../outside", "x")), "\"..\""},
      {"an absolute path", Rebuilt(good, "", TarEntry(outside.string(), "x")), "absolute"},
      {"a blob that is a symbolic link",
       Rebuilt(good, BlobPath(), TarHeader(BlobPath(), 0, '2', "/etc/passwd")), "symbolic link"},
      {"the bundle's manifest as a symbolic link",
       Rebuilt(good, delivery::kBundleManifestFile,
               TarHeader(delivery::kBundleManifestFile, 0, '2', "../../airlock-bundle.json")),
       "symbolic link"},
      {"a blob that is a hard link",
       Rebuilt(good, BlobPath(), TarHeader(BlobPath(), 0, '1', "index.json")), "hard link"},
  };
  const auto before = Served();
  ASSERT_TRUE(before.first.empty());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto refused = Import(c.bundle);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorrupt) << refused.error().ToString();
    EXPECT_NE(refused.error().ToString().find(c.why), std::string::npos)
        << refused.error().ToString();
    EXPECT_EQ(Served(), before);
    EXPECT_FALSE(fs::exists(outside));
  }
  auto imported = Import(good);
  ASSERT_TRUE(imported) << imported.error().ToString();
  EXPECT_EQ(imported->phase, DeliveryPhase::kAvailable);
  EXPECT_EQ(Served().first, (std::vector<std::string>{"models/affine:1.0.0 complete"}));
}

// A bundle whose bytes are not what the site's root vouches for: a blob changed on the way, or a
// release signed by a key the root does not name. Nothing of it is served.
TEST_F(GatewayAttack, TamperedOrUnsignedBundle) {
  StartDeliveryService();
  PrivateKey stranger = PrivateKey::Generate().value();
  const std::string forged = Bundle(stranger);
  const std::string good = Bundle(trust_.publisher);
  const std::string tampered = Rebuilt(good, "", "", BlobPath(), [](std::string& bytes) {
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  });
  const auto before = Served();

  auto unsigned_refused = Import(forged);
  ASSERT_FALSE(unsigned_refused);
  EXPECT_EQ(unsigned_refused.error().code(), ErrorCode::kVerification);
  EXPECT_NE(unsigned_refused.error().ToString().find(
                "the release does not verify against this gateway's root"),
            std::string::npos)
      << unsigned_refused.error().ToString();
  EXPECT_EQ(Served(), before);

  auto tampered_refused = Import(tampered);
  ASSERT_FALSE(tampered_refused);
  EXPECT_EQ(tampered_refused.error().code(), ErrorCode::kCorrupt)
      << tampered_refused.error().ToString();
  EXPECT_NE(tampered_refused.error().ToString().find(weights_.ToString()), std::string::npos)
      << tampered_refused.error().ToString();
  const std::vector<CachedPackage> cached = cache_->ListPackages().value();
  for (const CachedPackage& p : cached) {
    EXPECT_FALSE(p.complete) << p.ref.ToString() << " is served";
  }
  EXPECT_FALSE(cache_->HasBlob(weights_));
  EXPECT_EQ(store_->List().value().size(), before.second);

  auto imported = Import(good);
  ASSERT_TRUE(imported) << imported.error().ToString();
  EXPECT_EQ(Served().first, (std::vector<std::string>{"models/affine:1.0.0 complete"}));
}

// A device's state report, as the broker hands it to the gateway.
std::string StateReport(const std::string& device, std::uint64_t seq, std::uint64_t directive,
                        const std::string& phase, const std::string& active,
                        const std::string& release) {
  delivery::DeviceState s;
  s.envelope = {.message_id = "s" + std::to_string(seq), .sent_at = Now()};
  s.device = device;
  s.seq = seq;
  s.platform = "linux/amd64";
  s.directive_version = directive;
  delivery::ModelReport m;
  m.model = "vib";
  m.phase = phase;
  m.active_version = active;
  m.active_release = active.empty() ? "" : release;
  if (phase != "active") {
    m.target_version = "1.0.0";
    m.target_release = release;
  }
  if (phase == "failed") {
    m.error = delivery::ReportError{"download", "a report from long ago"};
  }
  s.models = {m};
  return s.ToJson().dump();
}

// Someone replays what a device said earlier (a QoS 1 repeat, a late copy, or on purpose): a
// report is taken only with a seq above the last one taken, so an old "failed" cannot fail the
// device in its rollout, and a repeat changes nothing; the device's next report is taken.
TEST_F(GatewayAttack, ReplayedDeviceReports) {
  std::string d = Enroll({});
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(d)->online; }));
  json plan = {{"selector", json::object()},
               {"strategy", {{"waves", json::array({"100%"})}, {"health_window", "1h"}}}};
  std::string release = Deliver(kDeployment, "vib", "1.0.0", plan);
  ASSERT_TRUE(WaitUntil([&] { return VersionOf(d) == 1; }));
  const std::string topic = "airlock/v1/dev/" + d + "/state";

  const std::string downloading = StateReport(d, 10, 1, "downloading", "", release);
  fleet_->OnDeviceMessage(topic, downloading);
  fleet_->OnDeviceMessage(topic, StateReport(d, 11, 1, "active", "1.0.0", release));
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDeployment, "running", "health-window", 1); }))
      << Fleet(kDeployment).dump();
  const DeviceStateRecord before = store_->DeviceState(d).value();
  const Rollout rollout_before = fleet_->Get(kDeployment).value();
  ASSERT_EQ(before.seq, 11u);

  const std::uint64_t handled = fleet_->handled();
  fleet_->OnDeviceMessage(topic, downloading);                                   // replayed
  fleet_->OnDeviceMessage(topic, StateReport(d, 11, 1, "failed", "", release));  // same seq
  fleet_->OnDeviceMessage(topic, StateReport(d, 9, 1, "failed", "", release));   // older
  ASSERT_TRUE(WaitUntil([&] { return fleet_->handled() >= handled + 3; }));
  const DeviceStateRecord after = store_->DeviceState(d).value();
  EXPECT_EQ(after.seq, before.seq);
  EXPECT_EQ(after.state, before.state);
  EXPECT_EQ(fleet_->Get(kDeployment).value(), rollout_before);
  EXPECT_TRUE(FleetSays(kDeployment, "running", "health-window", 1)) << Fleet(kDeployment).dump();

  // The device's next report is taken, and its health window ends on the clock.
  fleet_->OnDeviceMessage(topic, StateReport(d, 12, 1, "active", "1.0.0", release));
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(d)->seq == 12; }));
  clock_.Advance(hours(1) + seconds(1));
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDeployment, "complete", "done", 1); }))
      << Fleet(kDeployment).dump();
}

// A device revoked at the gateway: its certificate (still valid as far as TLS can tell) no longer
// reads packages, and its messages are dropped; the other devices go on.
TEST_F(GatewayAttack, RevokedDeviceCertificate) {
  std::string revoked = Enroll({});
  std::string other = Enroll({});
  auto pull = [&](const std::string& device, std::string_view serial) {
    return AuthorizeDevicePull(*store_, ReadRequest{.method = "GET",
                                                    .path = "/v2/models/vib/manifests/1.0.0",
                                                    .repository = "models/vib",
                                                    .authorization = "",
                                                    .remote_address = "127.0.0.1",
                                                    .client = device,
                                                    .client_serial = serial});
  };
  ASSERT_TRUE(pull(revoked, "01"));
  ASSERT_TRUE(WaitUntil([&] { return store_->DeviceState(revoked)->online; }));
  ASSERT_TRUE(store_->RevokeDevice(revoked, clock_.Now()));
  fleet_->OnDeviceChanged(revoked);
  const DeviceStateRecord before = store_->DeviceState(revoked).value();
  const DeviceRecord other_before = store_->Device(other).value();

  auto refused = pull(revoked, "01");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);  // 403
  EXPECT_EQ(refused.error().message(), revoked + " is revoked");
  // What it says is not taken either.
  const std::uint64_t handled = fleet_->handled();
  fleet_->OnDeviceMessage("airlock/v1/dev/" + revoked + "/state",
                          StateReport(revoked, 99, 0, "active", "6.6.6", Sha256Of("x").ToString()));
  ASSERT_TRUE(WaitUntil([&] { return fleet_->handled() > handled; }));
  EXPECT_EQ(store_->DeviceState(revoked)->seq, before.seq);
  EXPECT_EQ(store_->DeviceState(revoked)->state, before.state);
  // A certificate the other device was not last given is refused too.
  auto outdated = pull(other, "02");
  ASSERT_FALSE(outdated);
  EXPECT_NE(outdated.error().message().find("a certificate it was not last given"),
            std::string::npos);

  // The other device reads on, as enrolled.
  EXPECT_TRUE(pull(other, "01"));
  const DeviceRecord other_after = store_->Device(other).value();
  EXPECT_FALSE(other_after.revoked_at);
  EXPECT_EQ(other_after.cert_serial, other_before.cert_serial);
}

}  // namespace
}  // namespace airlock::gateway
