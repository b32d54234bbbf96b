// The attacks a device must refuse (DESIGN §4, docs/security.md "The attack suite"), each against
// a real agent (DeviceClient), a real broker and a real registry that the device reaches through
// an attacker: the refusal and its reason, what the device trusts unchanged, the next good update
// applied (attack/attack_fixture.hpp).

#include <gtest/gtest.h>

#include "agent/model_store.hpp"
#include "attack/attack_fixture.hpp"
#include "pkg/tar.hpp"
#include "support/hostile_tar.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::hours;
using std::chrono::seconds;
using Mode = NetworkAttacker::Mode;

// ---- the package: bytes that are not what the release signs ----

TEST_F(Attack, TamperedBlob) {
  SetUpDevice();
  attacker_.Attack(WeightsOf(v2_), Mode::kFlipAByte);
  ExpectPackageRefused(Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}), 2, "download",
                       "does not match its digest");
  EXPECT_GE(attacker_.attacked(), 1);
  ExpectNextGoodUpdate(3);
}

TEST_F(Attack, TamperedManifest) {
  SetUpDevice();
  attacker_.Attack(ManifestOf(v2_), Mode::kFlipAByte);
  ExpectPackageRefused(Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}), 2, "download",
                       "with a document hashing to");
  EXPECT_GE(attacker_.attacked(), 1);
  ExpectNextGoodUpdate(3);
}

TEST_F(Attack, TamperedIndex) {
  SetUpDevice();
  attacker_.Attack(IndexOf(v2_), Mode::kFlipAByte);
  ExpectPackageRefused(Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}), 2, "download",
                       "with a document hashing to");
  EXPECT_GE(attacker_.attacked(), 1);
  ExpectNextGoodUpdate(3);
}

// ---- the documents: changed after they were signed ----

TEST_F(Attack, TamperedRelease) {
  SetUpDevice();
  // Another platform added to 1.1.0's release, its signatures kept. Someone with the gateway's
  // and the release managers' keys, but no publisher's, lists it and directs the device to it.
  Published forged = WithRelease(
      v2_, Altered(v2_.doc, [](json& body) { body["platforms"].push_back("linux/riscv64"); }));
  ExpectDirectiveRefused(Directive(2, forged, 2, Channel(2, {&forged, &v1_}), {&forged}), 2,
                         "does not verify");
  // Someone on the network swaps the release in a good message: the directive names the one
  // the publishers signed, which the message no longer carries.
  auto swapped = Directive(3, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_});
  swapped.releases = {forged.doc};
  ExpectDirectiveRefused(swapped, 3, "carries no release document");
  ExpectNextGoodUpdate(4);
}

TEST_F(Attack, TamperedChannel) {
  SetUpDevice();
  // A channel that approves 1.1.0, moved on to version 9 after it was signed.
  auto channel = Altered(Channel(2, {&v2_, &v1_}), [](json& body) { body["version"] = 9; });
  ExpectDirectiveRefused(Directive(2, v2_, 9, channel, {&v2_}), 2,
                         "has 0 valid release-manager signature(s), needs 2");
  ExpectNextGoodUpdate(3);
}

// A directive changed after it was signed names no version the device can trust: it is refused
// and only logged. Reported under the version it claims, a refusal of one far ahead would stand
// over every genuine directive below it, and the gateway would read each as refused.
TEST_F(Attack, TamperedDirective) {
  SetUpDevice();
  auto message = Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_});
  message.directive = Altered(message.directive, [](json& body) { body["version"] = 1000; });
  ExpectRefusedUnreported(message, "the directive was changed after it was signed");
  ExpectNextGoodUpdate(2);
}

// ---- signatures: missing, too few, one key twice ----

TEST_F(Attack, UnsignedDocuments) {
  SetUpDevice();
  auto channel2 = Channel(2, {&v2_, &v1_});
  // A directive without signatures, and one signed by a key that is not the gateway's, each
  // claiming a version far ahead: refused, only logged (see TamperedDirective).
  auto unsigned_directive = Directive(1000, v2_, 2, channel2, {&v2_});
  unsigned_directive.directive = WithSignatures(unsigned_directive.directive, {});
  ExpectRefusedUnreported(unsigned_directive, "directive is not signed");
  auto stranger = Directive(1000, v2_, 2, channel2, {&v2_});
  stranger.directive =
      trust::SignDirective(trust::Directive::FromJson(stranger.directive.body()).value(),
                           PrivateKey::Generate().value())
          .value();
  ExpectRefusedUnreported(stranger, "not by this device's gateway");
  // A channel and a release without signatures, in directives the gateway signed.
  ExpectDirectiveRefused(Directive(2, v2_, 2, WithSignatures(channel2, {}), {&v2_}), 2,
                         "channel document has 0 valid release-manager signature(s), needs 2");
  // Dropping the signatures leaves the body, and so the release's id, as it was.
  Published bare = v2_;
  bare.doc = WithSignatures(v2_.doc, {});
  ExpectDirectiveRefused(Directive(3, bare, 2, channel2, {&bare}), 3,
                         "release document has 0 valid publisher signature(s), needs 2");
  ExpectNextGoodUpdate(4);
}

TEST_F(Attack, UnderThresholdDocuments) {
  SetUpDevice();
  Published one = v2_;
  one.doc = WithSignatures(v2_.doc, {publisher_->id()});
  ExpectDirectiveRefused(Directive(2, one, 2, Channel(2, {&v2_, &v1_}), {&one}), 2,
                         "release document has 1 valid publisher signature(s), needs 2");
  auto half = WithSignatures(Channel(2, {&v2_, &v1_}), {manager1_.id()});
  ExpectDirectiveRefused(Directive(3, v2_, 2, half, {&v2_}), 3,
                         "channel document has 1 valid release-manager signature(s), needs 2");
  ExpectNextGoodUpdate(4);
}

TEST_F(Attack, OneKeyCountedTwice) {
  SetUpDevice();
  Published twice = v2_;
  twice.doc = WithSignatures(v2_.doc, {publisher_->id(), publisher_->id()});
  ExpectDirectiveRefused(Directive(2, twice, 2, Channel(2, {&v2_, &v1_}), {&twice}), 2,
                         "signed more than once (counted once)");
  auto channel = WithSignatures(Channel(2, {&v2_, &v1_}), {manager1_.id(), manager1_.id()});
  ExpectDirectiveRefused(Directive(3, v2_, 2, channel, {&v2_}), 3,
                         "channel document has 1 valid release-manager signature(s), needs 2");
  ExpectNextGoodUpdate(4);
}

// ---- rollbacks ----

// The release counter guards the store against a manual install (`airlock-agent install`) of an
// older release; a managed device follows its channel instead (trust/directive.hpp: a rollback
// the channel's signers approve must install, so its installs carry no counter floor).
TEST_F(Attack, RollbackOfTheReleaseCounter) {
  fs::path v1 = PackProject(affine_dir(), "1.0.0", 1, true, WallNow());
  fs::path v2 = PackProject(other_dir(), "1.1.0", 2, true, WallNow());
  fs::path v3 = PackProject(affine_dir(), "1.2.0", 3, true, WallNow());
  for (const fs::path& p : {v1, v2, v3}) {
    ASSERT_TRUE(pkg::SignPackage(p, {publisher2_}, pkg::SignOptions{}));
  }
  auto store = ModelStore::Open(store_dir()).value();
  auto install = [&](const fs::path& package) {
    return store.Install(package, root_, WallNow(), HostPlatform());
  };
  ASSERT_TRUE(install(v2));
  const auto before = store.List().value();

  auto refused = install(v1);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kVerification);
  EXPECT_NE(refused.error().ToString().find(
                "release counter 1 of affine is below the 2 this device already trusts"),
            std::string::npos)
      << refused.error().ToString();
  auto after = store.List().value();
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(after[0].version, "1.1.0");
  EXPECT_EQ(store.TrustedCounter("affine").value(), 2u);
  EXPECT_FALSE(fs::exists(store_dir() / "models/affine/1.0.0"));

  auto next = install(v3);
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(store.TrustedCounter("affine").value(), 3u);
  EXPECT_EQ(store.List().value().size(), 2u);
}

TEST_F(Attack, RollbackOfTheChannelVersion) {
  SetUpDevice();
  // The device comes to trust channel version 2 (which still lists 1.0.0)…
  auto channel2 = Channel(2, {&v2_, &v1_});
  Send(Directive(2, v1_, 2, channel2, {&v1_}));
  ASSERT_TRUE(airlock::testing::WaitUntil([&] {
    return Trusted().channels["affine/production"] == 2;
  })) << Dump();
  // …and is then served channel version 1 again.
  ExpectDirectiveRefused(Directive(3, v1_, 1, channel1_, {&v1_}), 3,
                         "has version 1, not above the trusted version 2 (a rollback or a replay)");
  ExpectNextGoodUpdate(4);
}

TEST_F(Attack, RollbackOfTheDirectiveVersion) {
  SetUpDevice(/*first_directive=*/5);
  ExpectDirectiveRefused(Directive(4, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}), 4,
                         "rollback: directive version 4 is older than the trusted 5");
  ExpectNextGoodUpdate(6);
}

// ---- freeze: expired documents ----

// Each document's expiry is judged when the directive arrives, at one time taken then for the
// directive, its channels and its releases (DeviceClient::HandleDirective).
TEST_F(Attack, ExpiredDocuments) {
  SetUpDevice();
  auto channel2 = Channel(2, {&v2_, &v1_});
  auto old = Directive(2, v2_, 2, channel2, {&v2_});
  auto body = trust::Directive::FromJson(old.directive.body()).value();
  body.issued -= hours(48);
  body.expires = body.issued + hours(1);
  old.directive = trust::SignDirective(body, *gateway_key_).value();
  ExpectDirectiveRefused(old, 2, "expired at");

  ExpectDirectiveRefused(
      Directive(3, v2_, 2, Channel(2, {&v2_, &v1_}, WallNow() - hours(1)), {&v2_}), 3,
      "(version 2) expired at");

  // Signed 31 days ago: its 30 days are over.
  Published stale = Push(affine_dir(), "1.2.0", 3, true, WallNow() - hours(24 * 31));
  ExpectDirectiveRefused(Directive(4, stale, 2, Channel(2, {&stale, &v2_, &v1_}), {&stale}), 4,
                         "release affine 1.2.0 expired at");
  ExpectNextGoodUpdate(5, 3);
}

// Someone holds the download back until the release has expired: the directive was good when it
// arrived, but the package is checked again at install, at that time, and refused.
TEST_F(Attack, DownloadHeldUntilTheReleaseExpired) {
  SetUpDevice();
  // A release that expires in 8 s (releases live 30 days from their signing).
  const TimePoint expires = std::chrono::time_point_cast<seconds>(WallNow() + seconds(8));
  Published brief = Push(affine_dir(), "1.2.0", 3, true, expires - hours(24 * 30));
  attacker_.ReleaseWhen([expires] { return WallNow() > expires + seconds(1); });
  attacker_.Attack(IndexOf(brief), Mode::kHold);
  ExpectPackageRefused(Directive(2, brief, 2, Channel(2, {&brief, &v2_, &v1_}), {&brief}), 2,
                       "verification", "release affine 1.2.0 expired at");
  EXPECT_GE(attacker_.attacked(), 1);
  ExpectNextGoodUpdate(3, 3);
}

// ---- what the release is for ----

TEST_F(Attack, ReleaseNotInTheChannel) {
  SetUpDevice();
  // Mix-and-match: a release the channel never approved, with a genuine channel document.
  ExpectDirectiveRefused(Directive(2, v2_, 1, channel1_, {&v2_}), 2,
                         "is not listed in channel version 1 (withdrawn, or never approved: "
                         "mix-and-match)");
  // The document of another channel (staging lists 1.1.0), for the production the directive
  // names.
  trust::Channel staging;
  staging.model = "affine";
  staging.name = "staging";
  staging.version = 2;
  staging.expires = WallNow() + hours(24);
  staging.releases.push_back({v2_.version, v2_.counter, v2_.id});
  auto doc = trust::SignedDocument::Wrap(staging.ToJson());
  ASSERT_TRUE(doc.Sign(manager1_));
  ASSERT_TRUE(doc.Sign(manager2_));
  ExpectDirectiveRefused(Directive(3, v2_, 2, doc, {&v2_}), 3,
                         "carries no channel document production");
  ExpectNextGoodUpdate(4);
}

TEST_F(Attack, WrongPlatform) {
  SetUpDevice();
  auto spec = pkg::LoadPackSpec(affine_dir() / "airlock.yaml").value();
  spec.version = "1.2.0";
  spec.platforms.resize(1);
  spec.platforms[0].platform = pkg::Platform::Parse("linux/s390x").value();
  if (HostPlatform() == "linux/s390x") {
    spec.platforms[0].platform = pkg::Platform::Parse("linux/riscv64").value();
  }
  Published elsewhere = PushSpec(spec, 3, /*validate=*/false);
  ExpectDirectiveRefused(Directive(2, elsewhere, 2, Channel(2, {&elsewhere, &v1_}), {&elsewhere}),
                         2, "has no variant for this device's platform " + HostPlatform());
  ExpectNextGoodUpdate(3, 3);
}

// ---- endless data ----

TEST_F(Attack, EndlessData) {
  SetUpDevice();
  auto channel2 = Channel(2, {&v2_, &v1_});
  // A blob that never ends (no Content-Length): the device stops at the size the manifest signs.
  attacker_.Attack(WeightsOf(v2_), Mode::kEndless);
  ExpectPackageRefused(Directive(2, v2_, 2, channel2, {&v2_}), 2, "download",
                       "sent more than the expected");
  // A blob longer than it should be, and says so.
  attacker_.Attack(WeightsOf(v2_), Mode::kLongerBody);
  ExpectPackageRefused(Directive(3, v2_, 2, channel2, {&v2_}), 3, "download", "bytes, expected");
  // An index longer than the release signs: no more than its signed size is read.
  attacker_.Attack(IndexOf(v2_), Mode::kEndless);
  ExpectPackageRefused(
      Directive(4, v2_, 2, channel2, {&v2_}), 4, "download",
      "larger than the " + std::to_string(v2_.package.index_descriptor.size) + " bytes expected");
  EXPECT_GE(attacker_.attacked(), 3);
  ExpectNextGoodUpdate(5);
}

TEST_F(Attack, OversizedDocuments) {
  SetUpDevice();
  // A message over the size of any directive message: refused before it is parsed.
  std::string huge = Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}).ToJson().dump();
  huge.insert(huge.size() - 1, ",\"padding\":\"" + std::string(3 << 20, 'x') + "\"");
  ExpectRefusedUnreported(huge, "over its limit of " + std::to_string(delivery::kMaxMessageSize));
  // A release document over the size of any signed document, in a message that is not.
  auto message = Directive(3, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_});
  json j = message.ToJson();
  j["releases"][0]["signed"]["padding"] = std::string(trust::kMaxDocumentSize, 'x');
  ExpectRefusedUnreported(j.dump(), "over its limit of " + std::to_string(trust::kMaxDocumentSize));
  ExpectNextGoodUpdate(4);
}

// ---- a trickling registry ----

// The gateway's registry (or someone between) sends a byte now and then, never slow enough for a
// stall: the download's deadline ends it. The deadline here is 3 s plus the size at 64 KiB/s.
TEST_F(Attack, TricklingGatewayRegistry) {
  SetUpDevice(1, [](DeviceClientOptions& o) {
    o.download_min_rate = 64 << 10;
    o.download_grace = seconds(3);
  });
  attacker_.Attack(WeightsOf(v2_), Mode::kTrickle);
  ExpectPackageRefused(Directive(2, v2_, 2, Channel(2, {&v2_, &v1_}), {&v2_}), 2, "download",
                       "not done by its deadline");
  EXPECT_GE(attacker_.attacked(), 1);
  ExpectNextGoodUpdate(3);
}

// ---- tars ----

// A package tar (what `airlock-agent install` takes) with an entry that climbs out, or a link:
// refused before anything is read from it, the store as it was.
TEST_F(Attack, PathTraversalAndLinksInPackageTars) {
  fs::path good = PackProject(affine_dir(), "1.0.0", 1, true, WallNow());
  ASSERT_TRUE(pkg::SignPackage(good, {publisher2_}, pkg::SignOptions{}));
  const std::string bytes = ReadFile(good).value();
  auto entries = pkg::IndexTar(bytes).value();
  const std::string weights = "blobs/sha256/" + [&] {
    auto reader = pkg::LayoutReader::Open(good).value();
    auto package = pkg::LoadPackage(*reader).value();
    return package.variants[0].Layers(pkg::media::kModelWeight)[0]->digest.hex();
  }();
  // The package again, entry by entry, with hostile ones in place of or beside its own.
  auto hostile = [&](const std::string& instead_of, const std::string& extra) {
    std::string out;
    for (const auto& [name, range] : entries) {
      if (name != instead_of) {
        out += airlock::testing::TarEntry(name, bytes.substr(range.offset, range.size));
      }
    }
    return out + extra + airlock::testing::TarEnd();
  };
  fs::path outside = tmp_ / "outside";
  struct Case {
    const char* what;
    std::string archive;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"a path that climbs out",
       hostile("", airlock::testing::TarEntry("blobs/../../outside", "x")), "\"..\""},
      {"an absolute path", hostile("", airlock::testing::TarEntry(outside.string(), "x")),
       "absolute"},
      {"a symbolic link for a blob",
       hostile(weights, airlock::testing::TarHeader(weights, 0, '2', "/etc/passwd")),
       "symbolic link"},
      {"a hard link for a blob",
       hostile(weights, airlock::testing::TarHeader(weights, 0, '1', "index.json")), "hard link"},
  };
  auto store = ModelStore::Open(store_dir()).value();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    fs::path tar = tmp_ / "hostile.tar";
    ASSERT_TRUE(WriteFileAtomic(tar, c.archive));
    auto refused = store.Install(tar, root_, WallNow(), HostPlatform());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorrupt) << refused.error().ToString();
    EXPECT_NE(refused.error().ToString().find(c.why), std::string::npos)
        << refused.error().ToString();
    EXPECT_TRUE(store.List().value().empty());
    EXPECT_EQ(store.TrustedCounter("affine").value(), 0u);
    EXPECT_FALSE(fs::exists(outside));
  }
  auto installed = store.Install(good, root_, WallNow(), HostPlatform());
  ASSERT_TRUE(installed) << installed.error().ToString();
  EXPECT_EQ(store.List().value().size(), 1u);
}

}  // namespace
}  // namespace airlock::agent
