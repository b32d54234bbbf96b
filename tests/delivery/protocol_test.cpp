#include "delivery/protocol.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/keys.hpp"

namespace airlock::delivery {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// 2026-11-22T10:00:00Z.
TimePoint TestNow() { return TimePoint(seconds(1795341600)); }

const std::string kDelivery = "dlv-0123456789abcdef0123456789abcdef";
const std::string kDeployment = "dep-00112233aabbccdd";

Envelope MakeEnvelope(std::string id = "5f2c0a9e11d04b7c") { return {std::move(id), TestNow()}; }

trust::Release MakeReleaseBody() {
  trust::Release r;
  r.model = "defect-detector";
  r.version = "1.4.0";
  r.release_counter = 7;
  r.index_digest = Sha256Of("index");
  r.index_size = 1234;
  r.index_media_type = "application/vnd.oci.image.index.v1+json";
  r.platforms = {"linux/amd64", "linux/arm64/v8"};
  r.created = TestNow() - std::chrono::hours(1);
  r.expires = TestNow() + std::chrono::hours(24 * 90);
  return r;
}

struct Signed {
  PrivateKey key = PrivateKey::Generate().value();
  trust::SignedDocument doc = [this] {
    auto d = trust::SignedDocument::Wrap(MakeReleaseBody().ToJson());
    EXPECT_TRUE(d.Sign(key));
    return d;
  }();
};

DeliveryOffer MakeOffer(const trust::SignedDocument& release) {
  return DeliveryOffer{
      .envelope = MakeEnvelope(),
      .delivery_id = kDelivery,
      .deployment_id = kDeployment,
      .model = "defect-detector",
      .version = "1.4.0",
      .release = release,
      .total_size = 50'000'000,
      .platform_sizes = {{"linux/amd64", 30'000'000}, {"linux/arm64/v8", 20'001'234}},
      .expires = TestNow() + seconds(900),
      .channel = std::nullopt,
      .rollout = nullptr};
}

DeliveryReady MakeReady() {
  return DeliveryReady{.envelope = MakeEnvelope(),
                       .delivery_id = kDelivery,
                       .free_bytes = 80'000'000'000,
                       .platforms = {"linux/arm64/v8"}};
}

DeliveryReject MakeReject() {
  return DeliveryReject{.envelope = MakeEnvelope(),
                        .delivery_id = kDelivery,
                        .reason = RejectReason::kInsufficientSpace,
                        .message = "needs 20 GB, 3 GB free"};
}

DeliveryGrant MakeGrant() {
  return DeliveryGrant{
      .envelope = MakeEnvelope(),
      .delivery_id = kDelivery,
      .attempt = 2,
      .url_expires = TestNow() + seconds(3600),
      .blobs = {{.digest = Sha256Of("weights"),
                 .size = 20'000'000,
                 .media_type = "application/vnd.cncf.model.weight.v1.raw",
                 .url = "/v2/defect-detector/blobs/" + Sha256Of("weights").ToString() +
                        "?expires=1795345200&sig=ab12"},
                {.digest = Sha256Of("manifest"),
                 .size = 1234,
                 .media_type = "application/vnd.oci.image.manifest.v1+json",
                 .url = "/v2/defect-detector/blobs/" + Sha256Of("manifest").ToString() +
                        "?expires=1795345200&sig=cd34"}}};
}

DeliveryStatus MakeStatus() {
  return DeliveryStatus{.envelope = MakeEnvelope(),
                        .delivery_id = kDelivery,
                        .state = GatewayState::kDownloading,
                        .attempt = 2,
                        .bytes_done = 1'000'000,
                        .bytes_total = 20'001'234,
                        .error = std::nullopt};
}

DeliveryStatus MakeFailedStatus() {
  DeliveryStatus s = MakeStatus();
  s.state = GatewayState::kFailed;
  s.error = DeliveryFailure{FailureCode::kDigestMismatch, "blob sha256:… had other bytes"};
  return s;
}

DeliveryCancel MakeCancel() {
  return DeliveryCancel{.envelope = MakeEnvelope(),
                        .delivery_id = kDelivery,
                        .reason = "deployment cancelled by alice"};
}

// The payload as it travels: serialized to bytes and parsed back.
json OverTheWire(const json& j) { return ParsePayload(j.dump()).value(); }

// ---- round trips ----

TEST(ProtocolTest, OfferRoundTripKeepsTheReleaseVerifiable) {
  Signed release;
  DeliveryOffer offer = MakeOffer(release.doc);
  json j = offer.ToJson();
  EXPECT_EQ(j["type"], "delivery.offer");
  EXPECT_EQ(j["sent_at"], "2026-11-22T10:00:00Z");
  EXPECT_TRUE(j["release"].is_object());
  EXPECT_EQ(j["release"]["signed"]["model"], "defect-detector");

  auto back = DeliveryOffer::FromJson(OverTheWire(j));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->ToJson(), j);
  EXPECT_EQ(back->envelope, offer.envelope);
  EXPECT_EQ(back->platform_sizes, offer.platform_sizes);
  EXPECT_EQ(back->expires, offer.expires);

  // The gateway can verify the release it received against its pinned root.
  trust::Root root;
  root.expires = TestNow() + std::chrono::hours(24);
  root.keys.emplace(release.key.id(), release.key.public_key());
  root.roles.emplace(std::string(trust::kRolePublisher), trust::RoleSpec{{release.key.id()}, 1});
  auto verified = trust::VerifyRelease(back->release, root, TestNow(), 0);
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_EQ(verified->release_counter, 7u);
}

TEST(ProtocolTest, ReadyRejectGrantStatusCancelRoundTrip) {
  auto check = [](const json& j, auto parse) {
    auto back = parse(OverTheWire(j));
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(back->ToJson(), j);
  };
  check(MakeReady().ToJson(), DeliveryReady::FromJson);
  check(MakeReject().ToJson(), DeliveryReject::FromJson);
  check(MakeGrant().ToJson(), DeliveryGrant::FromJson);
  check(MakeStatus().ToJson(), DeliveryStatus::FromJson);
  check(MakeFailedStatus().ToJson(), DeliveryStatus::FromJson);
  check(MakeCancel().ToJson(), DeliveryCancel::FromJson);

  auto grant = DeliveryGrant::FromJson(MakeGrant().ToJson());
  ASSERT_TRUE(grant);
  EXPECT_EQ(grant->blobs, MakeGrant().blobs);
  EXPECT_EQ(grant->attempt, 2u);
  auto failed = DeliveryStatus::FromJson(MakeFailedStatus().ToJson());
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->error, MakeFailedStatus().error);
  auto reject = DeliveryReject::FromJson(MakeReject().ToJson());
  ASSERT_TRUE(reject);
  EXPECT_EQ(reject->reason, RejectReason::kInsufficientSpace);
  EXPECT_EQ(reject->ToJson()["reason"], "insufficient-space");
}

TEST(ProtocolTest, SizesAboveFourGibibytesAndUnknownFieldsAreKept) {
  DeliveryStatus s = MakeStatus();
  s.bytes_total = std::uint64_t{5} << 33;
  s.bytes_done = s.bytes_total - 1;
  json j = s.ToJson();
  j["from_a_newer_gateway"] = {{"x", 1}};
  auto back = DeliveryStatus::FromJson(OverTheWire(j));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->bytes_done, s.bytes_done);
  EXPECT_EQ(back->bytes_total, s.bytes_total);
}

TEST(ProtocolTest, AvailableWithoutAGrantIsAttemptZero) {
  DeliveryStatus s = MakeStatus();
  s.state = GatewayState::kAvailable;
  s.attempt = 0;
  s.bytes_done = s.bytes_total;
  auto back = DeliveryStatus::FromJson(s.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->attempt, 0u);
}

TEST(ProtocolTest, HeldIsAnAnswerToAnOfferWithoutAGrant) {
  DeliveryStatus s = MakeStatus();
  s.state = GatewayState::kHeld;
  s.attempt = 0;
  auto back = DeliveryStatus::FromJson(s.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->state, GatewayState::kHeld);
  s.attempt = 1;  // nothing is granted while an operator decides
  EXPECT_FALSE(DeliveryStatus::FromJson(s.ToJson()));
}

// ---- refusals ----

struct Mutation {
  std::string field;  // what the error must name
  std::function<void(json&)> apply;
};

void ExpectRefusals(const json& good, const std::function<Status(const json&)>& parse,
                    const std::vector<Mutation>& mutations) {
  ASSERT_TRUE(parse(good)) << parse(good).error().ToString();
  for (const auto& m : mutations) {
    json bad = good;
    m.apply(bad);
    Status s = parse(bad);
    ASSERT_FALSE(s) << "accepted a bad " << m.field << ": " << bad.dump().substr(0, 300);
    EXPECT_EQ(s.error().code(), ErrorCode::kCorrupt) << s.error().ToString();
    EXPECT_NE(s.error().message().find("\"" + m.field + "\""), std::string::npos)
        << "the error does not name " << m.field << ": " << s.error().ToString();
  }
  // The parser holds no state: the good message still parses after all those refusals.
  EXPECT_TRUE(parse(good));
}

template <typename T>
std::function<Status(const json&)> Parser() {
  return [](const json& j) -> Status {
    auto r = T::FromJson(j);
    if (!r) {
      return Fail(r.error());
    }
    return {};
  };
}

// Refusals every message shares.
std::vector<Mutation> CommonMutations() {
  return {
      {"type", [](json& j) { j.erase("type"); }},
      {"type", [](json& j) { j["type"] = "delivery.something-else"; }},
      {"message_id", [](json& j) { j.erase("message_id"); }},
      {"message_id", [](json& j) { j["message_id"] = ""; }},
      {"message_id", [](json& j) { j["message_id"] = std::string(65, 'a'); }},
      {"message_id", [](json& j) { j["message_id"] = "a/b"; }},
      {"message_id", [](json& j) { j["message_id"] = 12; }},
      {"sent_at", [](json& j) { j.erase("sent_at"); }},
      {"sent_at", [](json& j) { j["sent_at"] = "yesterday"; }},
      {"sent_at", [](json& j) { j["sent_at"] = 1795341600; }},
      {"delivery_id", [](json& j) { j.erase("delivery_id"); }},
      {"delivery_id", [](json& j) { j["delivery_id"] = "dlv-XYZ"; }},
      {"delivery_id", [](json& j) { j["delivery_id"] = "dlv-0123"; }},
      {"delivery_id", [](json& j) { j["delivery_id"] = "dep-0123456789abcdef"; }},
      {"delivery_id", [](json& j) { j["delivery_id"] = "dlv-" + std::string(65, 'a'); }},
      {"delivery_id", [](json& j) { j["delivery_id"] = "dlv-0123456789abcdef/../x"; }},
  };
}

std::vector<Mutation> With(std::vector<Mutation> more) {
  auto all = CommonMutations();
  all.insert(all.end(), more.begin(), more.end());
  return all;
}

TEST(ProtocolTest, OfferRefusesEveryMalformedField) {
  Signed release;
  Signed other;
  ExpectRefusals(
      MakeOffer(release.doc).ToJson(), Parser<DeliveryOffer>(),
      With({
          {"deployment_id", [](json& j) { j["deployment_id"] = "dep-"; }},
          {"deployment_id", [](json& j) { j.erase("deployment_id"); }},
          {"model", [](json& j) { j["model"] = "Defect Detector"; }},
          {"model", [](json& j) { j["model"] = "-lead"; }},
          {"model", [](json& j) { j["model"] = std::string(129, 'a'); }},
          {"version", [](json& j) { j["version"] = ".1"; }},
          {"version", [](json& j) { j["version"] = "1.0 beta"; }},
          {"total_size", [](json& j) { j["total_size"] = -1; }},
          {"total_size", [](json& j) { j["total_size"] = 1.5; }},
          {"total_size", [](json& j) { j["total_size"] = "50000000"; }},
          {"expires", [](json& j) { j["expires"] = "2026-13-01T00:00:00Z"; }},
          {"platform_sizes", [](json& j) { j["platform_sizes"] = json::object(); }},
          {"platform_sizes",
           [](json& j) {
             j["platform_sizes"] = json::array();
             for (int i = 0; i < 33; ++i) {
               j["platform_sizes"].push_back(
                   {{"platform", "linux/arch" + std::to_string(i)}, {"size", 1}});
             }
           }},
          {"platform_sizes", [](json& j) { j["platform_sizes"][1] = j["platform_sizes"][0]; }},
          {"platform", [](json& j) { j["platform_sizes"][0]["platform"] = "linux"; }},
          {"platform", [](json& j) { j["platform_sizes"][0]["platform"] = "Linux/AMD64"; }},
          {"platform", [](json& j) { j["platform_sizes"][0]["platform"] = "linux//v8"; }},
          {"size", [](json& j) { j["platform_sizes"][0]["size"] = 50'000'001; }},
          {"release", [](json& j) { j.erase("release"); }},
          {"release", [](json& j) { j["release"] = j["release"].dump(); }},
          {"release", [](json& j) { j["release"].erase("signatures"); }},
          {"release", [](json& j) { j["release"]["signatures"][0]["sig"] = "not base64!"; }},
          {"release", [](json& j) { j["release"]["signed"]["_type"] = "channel"; }},
          {"release", [](json& j) { j["release"]["signed"]["version"] = "1.3.0"; }},
          {"release",
           [&](json& j) {
             // A release of another model, signed and all: still not what is offered.
             json body = MakeReleaseBody().ToJson();
             body["model"] = "other-model";
             auto doc = trust::SignedDocument::Wrap(body);
             ASSERT_TRUE(doc.Sign(other.key));
             j["release"] = {{"signed", body},
                             {"signatures", json::parse(doc.Serialize().value())["signatures"]}};
           }},
      }));
}

TEST(ProtocolTest, ReadyRefusesEveryMalformedField) {
  ExpectRefusals(MakeReady().ToJson(), Parser<DeliveryReady>(),
                 With({
                     {"free_bytes", [](json& j) { j.erase("free_bytes"); }},
                     {"free_bytes", [](json& j) { j["free_bytes"] = -5; }},
                     {"platforms", [](json& j) { j["platforms"] = json::array(); }},
                     {"platforms", [](json& j) { j["platforms"] = "linux/amd64"; }},
                     {"platforms",
                      [](json& j) {
                        j["platforms"] = {"linux/amd64", 3};
                      }},
                     {"platforms", [](json& j) { j["platforms"] = {"linux/+"}; }},
                     {"platforms", [](json& j) { j["platforms"] = {"a/b/c/d"}; }},
                     {"platforms",
                      [](json& j) {
                        j["platforms"] = {"linux/amd64", "linux/amd64"};
                      }},
                 }));
}

TEST(ProtocolTest, RejectRefusesEveryMalformedField) {
  ExpectRefusals(MakeReject().ToJson(), Parser<DeliveryReject>(),
                 With({
                     {"reason", [](json& j) { j.erase("reason"); }},
                     {"reason", [](json& j) { j["reason"] = "disk"; }},
                     {"message", [](json& j) { j.erase("message"); }},
                     {"message", [](json& j) { j["message"] = std::string(1025, 'x'); }},
                     {"message", [](json& j) { j["message"] = "ok\x1b[2Jcleared"; }},
                 }));
}

TEST(ProtocolTest, GrantRefusesEveryMalformedField) {
  ExpectRefusals(
      MakeGrant().ToJson(), Parser<DeliveryGrant>(),
      With({
          {"attempt", [](json& j) { j["attempt"] = 0; }},
          {"attempt", [](json& j) { j["attempt"] = 4'294'967'297; }},
          {"url_expires", [](json& j) { j.erase("url_expires"); }},
          {"blobs", [](json& j) { j["blobs"] = json::array(); }},
          {"blobs", [](json& j) { j["blobs"][1] = j["blobs"][0]; }},
          {"blobs",
           [](json& j) {
             json many = json::array();
             for (int i = 0; i < 513; ++i) {
               json b = j["blobs"][0];
               b["digest"] = Sha256Of(std::to_string(i)).ToString();
               many.push_back(b);
             }
             j["blobs"] = many;
           }},
          {"digest", [](json& j) { j["blobs"][0]["digest"] = "sha256:abc"; }},
          {"digest", [](json& j) { j["blobs"][0]["digest"] = "md5:0123"; }},
          {"size", [](json& j) { j["blobs"][0]["size"] = -1; }},
          {"media_type", [](json& j) { j["blobs"][0]["media_type"] = ""; }},
          {"media_type", [](json& j) { j["blobs"][0]["media_type"] = "text/plain; x=1"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "https://evil.example/v2/x"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "//evil.example/v2/x"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "v2/x/blobs/y"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "/v2/../../etc/passwd"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "/v2/./x"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "/v2/x y"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "/\\evil.example"; }},
          {"url", [](json& j) { j["blobs"][0]["url"] = "/" + std::string(1024, 'a'); }},
      }));
}

TEST(ProtocolTest, StatusRefusesEveryMalformedField) {
  ExpectRefusals(MakeStatus().ToJson(), Parser<DeliveryStatus>(),
                 With({
                     {"state", [](json& j) { j["state"] = "done"; }},
                     {"attempt", [](json& j) { j["attempt"] = 0; }},
                     {"bytes_total", [](json& j) { j.erase("bytes_total"); }},
                     {"bytes_done", [](json& j) { j["bytes_done"] = 20'001'235; }},
                     {"bytes_done",
                      [](json& j) {
                        j["state"] = "available";  // available means every byte is there
                      }},
                     {"error",
                      [](json& j) {
                        j["error"] = {{"code", "network"}, {"message", ""}};
                      }},
                     {"error", [](json& j) { j["state"] = "failed"; }},
                 }));
  ExpectRefusals(MakeFailedStatus().ToJson(), Parser<DeliveryStatus>(),
                 {
                     {"code", [](json& j) { j["error"]["code"] = "oops"; }},
                     {"message", [](json& j) { j["error"]["message"] = std::string(2000, 'm'); }},
                     {"error", [](json& j) { j["error"] = "network"; }},
                 });
}

TEST(ProtocolTest, CancelRefusesEveryMalformedField) {
  ExpectRefusals(MakeCancel().ToJson(), Parser<DeliveryCancel>(),
                 With({
                     {"reason", [](json& j) { j.erase("reason"); }},
                     {"reason", [](json& j) { j["reason"] = json::array(); }},
                 }));
}

TEST(ProtocolTest, FleetReportRoundTripsAndRefusesWhatItCannotShow) {
  FleetReport r;
  r.envelope = MakeEnvelope();
  r.gateway = "plant-berlin";
  r.rollouts = {{{"deployment", "dep-5e0c2b7a9d1f4e36"}, {"state", "running"}, {"wave", 1}},
                {{"deployment", "dep-0000000000000001"}, {"state", "complete"}}};
  auto back = FleetReport::FromJson(OverTheWire(r.ToJson()));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  ExpectRefusals(r.ToJson(), Parser<FleetReport>(),
                 std::vector<Mutation>({
                     {"gateway", [](json& j) { j["gateway"] = "Not A Name"; }},
                     {"rollouts", [](json& j) { j["rollouts"] = json::object(); }},
                     {"deployment", [](json& j) { j["rollouts"][0].erase("deployment"); }},
                     {"deployment", [](json& j) { j["rollouts"][1]["deployment"] = "x"; }},
                     {"rollouts",
                      [](json& j) { j["rollouts"][1]["deployment"] = "dep-5e0c2b7a9d1f4e36"; }},
                 }));
}

TEST(ProtocolTest, RolloutCommandRoundTripsAndRefusesEveryMalformedField) {
  for (RolloutCommandKind kind :
       {RolloutCommandKind::kPause, RolloutCommandKind::kResume, RolloutCommandKind::kCancel}) {
    RolloutCommand c{.envelope = MakeEnvelope(),
                     .gateway = "plant-berlin",
                     .deployment_id = "dep-5e0c2b7a9d1f4e36",
                     .command = kind,
                     .reason = "paused by alice: line 3 is down for maintenance"};
    auto back = RolloutCommand::FromJson(OverTheWire(c.ToJson()));
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(back->ToJson(), c.ToJson());
    EXPECT_EQ(back->command, kind);
  }
  RolloutCommand c{.envelope = MakeEnvelope(),
                   .gateway = "plant-berlin",
                   .deployment_id = "dep-5e0c2b7a9d1f4e36",
                   .command = RolloutCommandKind::kPause,
                   .reason = ""};
  EXPECT_EQ(c.ToJson()["type"], "rollout.command");
  EXPECT_EQ(c.ToJson()["command"], "pause");
  // The envelope's refusals (not delivery_id: a command is about a deployment).
  std::vector<Mutation> mutations;
  for (Mutation& m : CommonMutations()) {
    if (m.field != "delivery_id") {
      mutations.push_back(std::move(m));
    }
  }
  for (Mutation m : std::vector<Mutation>{
           {"type", [](json& j) { j["type"] = "delivery.cancel"; }},
           {"gateway", [](json& j) { j.erase("gateway"); }},
           {"gateway", [](json& j) { j["gateway"] = "plant/7"; }},
           {"gateway", [](json& j) { j["gateway"] = ".."; }},
           {"deployment_id", [](json& j) { j.erase("deployment_id"); }},
           {"deployment_id", [](json& j) { j["deployment_id"] = "dlv-5e0c2b7a9d1f4e36"; }},
           {"deployment_id", [](json& j) { j["deployment_id"] = "dep-5E0C2B7A9D1F4E36"; }},
           {"command", [](json& j) { j.erase("command"); }},
           {"command", [](json& j) { j["command"] = "explode"; }},
           {"command", [](json& j) { j["command"] = "Pause"; }},
           {"command", [](json& j) { j["command"] = 1; }},
           {"reason", [](json& j) { j.erase("reason"); }},
           {"reason", [](json& j) { j["reason"] = std::string(2000, 'r'); }},
           {"reason", [](json& j) { j["reason"] = "line 1\x1b[2J"; }},
       }) {
    mutations.push_back(std::move(m));
  }
  ExpectRefusals(c.ToJson(), Parser<RolloutCommand>(), mutations);
}

BundleManifest MakeBundleManifest() {
  BundleManifest m;
  m.deployment_id = "dep-5e0c2b7a9d1f4e36";
  m.model = "defect-detector";
  m.version = "1.4.0";
  m.channel = "production";
  m.channel_version = 3;
  m.repository = "models/defect-detector";
  m.index_digest = Sha256Of("an index");
  m.index_size = 1234;
  m.exported_at = TimePoint(seconds(1795341600));
  m.exported_from = "https://hub.example.com";
  return m;
}

TEST(ProtocolTest, BundleManifestRoundTripsAndRefusesEveryMalformedField) {
  BundleManifest m = MakeBundleManifest();
  auto back = BundleManifest::FromJson(OverTheWire(m.ToJson()));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->ToJson(), m.ToJson());
  m.channel.clear();  // a bundle without a channel document
  EXPECT_TRUE(BundleManifest::FromJson(m.ToJson()));
  ExpectRefusals(
      MakeBundleManifest().ToJson(), Parser<BundleManifest>(),
      {
          {"type", [](json& j) { j["type"] = "delivery.offer"; }},
          {"bundle_version", [](json& j) { j.erase("bundle_version"); }},
          {"bundle_version", [](json& j) { j["bundle_version"] = "1"; }},
          {"deployment_id", [](json& j) { j["deployment_id"] = "dlv-0123456789abcdef"; }},
          {"model", [](json& j) { j["model"] = "../etc"; }},
          {"version", [](json& j) { j["version"] = "1 0"; }},
          {"channel", [](json& j) { j["channel"] = "Pro duction"; }},
          {"channel_version", [](json& j) { j["channel_version"] = -1; }},
          {"repository", [](json& j) { j["repository"] = "/models/x"; }},
          {"repository", [](json& j) { j["repository"] = "models//x"; }},
          {"repository", [](json& j) { j["repository"] = "Models/X"; }},
          {"index", [](json& j) { j.erase("index"); }},
          {"digest", [](json& j) { j["index"]["digest"] = "sha256:abc"; }},
          {"size", [](json& j) { j["index"]["size"] = 1ULL << 40; }},
          {"exported_at", [](json& j) { j["exported_at"] = "now"; }},
          {"exported_from", [](json& j) { j["exported_from"] = "a\x1b[2Jb"; }},
      });
  json newer = MakeBundleManifest().ToJson();
  newer["bundle_version"] = 2;
  auto refused = BundleManifest::FromJson(newer);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(refused.error().message().find("format version 2"), std::string::npos);
}

TEST(ProtocolTest, PayloadsThatAreNotObjectsOrTooLargeAreRefused) {
  EXPECT_EQ(DeliveryCancel::FromJson(json::array()).error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(DeliveryGrant::FromJson("grant").error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ParsePayload("{\"type\":").error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ParsePayload(R"({"type":"a","type":"b"})").error().code(), ErrorCode::kCorrupt);
  std::string huge =
      R"({"type":"delivery.cancel","pad":")" + std::string(kMaxMessageSize, 'x') + "\"}";
  auto parsed = ParsePayload(huge);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code(), ErrorCode::kCorrupt);
  EXPECT_TRUE(ParsePayload(MakeCancel().ToJson().dump()));
}

// ---- identifiers ----

TEST(ProtocolTest, Identifiers) {
  EXPECT_TRUE(ValidGatewayName("plant-7.line_2"));
  EXPECT_TRUE(ValidGatewayName(std::string(48, 'g')));
  EXPECT_FALSE(ValidGatewayName(std::string(49, 'g')));
  EXPECT_FALSE(ValidGatewayName(""));
  EXPECT_FALSE(ValidGatewayName(".."));
  EXPECT_FALSE(ValidGatewayName("."));
  EXPECT_FALSE(ValidGatewayName("a/b"));
  EXPECT_FALSE(ValidGatewayName("a+"));
  EXPECT_FALSE(ValidGatewayName("a#"));
  EXPECT_FALSE(ValidGatewayName("a b"));
  EXPECT_TRUE(ValidDeliveryId("dlv-0123abcd"));
  EXPECT_FALSE(ValidDeliveryId("dlv-0123ABCD"));
  EXPECT_FALSE(ValidDeliveryId("dlv-0123abc"));
  EXPECT_TRUE(ValidDeploymentId(kDeployment));
  EXPECT_TRUE(ValidModelName("defect-detector"));
  EXPECT_TRUE(ValidModelName("a.b_c-d"));
  EXPECT_FALSE(ValidModelName("a..b"));
  EXPECT_FALSE(ValidModelName("a-"));
  EXPECT_TRUE(ValidVersion("1.4.0-rc_1"));
  EXPECT_FALSE(ValidVersion("-1"));
  EXPECT_TRUE(ValidPlatform("linux/arm64/v8"));
  EXPECT_FALSE(ValidPlatform("linux/"));
}

// ---- topics ----

TEST(TopicsTest, NamesUnderTheDefaultPrefix) {
  auto t = Topics::Create().value();
  EXPECT_EQ(t.prefix(), "airlock/v1");
  EXPECT_EQ(t.Topic(TopicKind::kOffer, "plant-7").value(), "airlock/v1/gw/plant-7/delivery/offer");
  EXPECT_EQ(t.Topic(TopicKind::kFleet, "plant-7").value(), "airlock/v1/gw/plant-7/fleet");
  EXPECT_EQ(t.Topic(TopicKind::kRolloutCommand, "plant-7").value(),
            "airlock/v1/gw/plant-7/rollout/command");
  for (TopicKind kind : {TopicKind::kReady, TopicKind::kReject, TopicKind::kGrant,
                         TopicKind::kStatus, TopicKind::kCancel}) {
    EXPECT_EQ(t.Topic(kind, "plant-7", kDelivery).value(),
              "airlock/v1/gw/plant-7/delivery/" + kDelivery + "/" + TopicKindName(kind));
  }
}

TEST(TopicsTest, ParseIsTheInverseOfTopic) {
  auto t = Topics::Create("site-a/airlock/v1").value();
  for (TopicKind kind :
       {TopicKind::kOffer, TopicKind::kReady, TopicKind::kReject, TopicKind::kGrant,
        TopicKind::kStatus, TopicKind::kCancel, TopicKind::kFleet, TopicKind::kRolloutCommand}) {
    bool per_delivery = kind != TopicKind::kOffer && kind != TopicKind::kFleet &&
                        kind != TopicKind::kRolloutCommand;
    std::string id = per_delivery ? kDelivery : "";
    auto topic = t.Topic(kind, "gw.1", id);
    ASSERT_TRUE(topic) << topic.error().ToString();
    auto parsed = t.Parse(*topic);
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    EXPECT_EQ(*parsed, (TopicAddress{kind, "gw.1", id}));
  }
}

TEST(TopicsTest, BuildingRefusesBadNames) {
  auto t = Topics::Create().value();
  EXPECT_EQ(t.Topic(TopicKind::kOffer, "+").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(t.Topic(TopicKind::kOffer, "a/b"));
  EXPECT_FALSE(t.Topic(TopicKind::kOffer, ".."));
  EXPECT_FALSE(t.Topic(TopicKind::kOffer, "plant-7", kDelivery));  // offers carry it inside
  EXPECT_FALSE(t.Topic(TopicKind::kGrant, "plant-7"));
  EXPECT_FALSE(t.Topic(TopicKind::kRolloutCommand, "plant-7", kDelivery));
  EXPECT_FALSE(t.Topic(TopicKind::kRolloutCommand, "plant+7"));
  EXPECT_FALSE(t.Topic(TopicKind::kGrant, "plant-7", "dlv-#"));
  for (const char* bad :
       {"", "/", "airlock/", "/airlock", "a//b", "a/+/b", "a/#", "$SYS", "a/../b", "a b"}) {
    EXPECT_FALSE(Topics::Create(bad)) << bad;
  }
}

TEST(TopicsTest, ParseRefusesAnythingElse) {
  auto t = Topics::Create().value();
  const std::string base = "airlock/v1/gw/plant-7/delivery/";
  for (const std::string& bad : std::vector<std::string>{
           "",
           "airlock/v1",
           "airlock/v1/",
           "airlock/v2/gw/plant-7/delivery/offer",
           "xairlock/v1/gw/plant-7/delivery/offer",
           "airlock/v1/gw/+/delivery/offer",
           "airlock/v1/gw/#",
           base + "+/ready",
           base + kDelivery + "/#",
           "airlock/v1/gw//delivery/offer",
           "airlock/v1//gw/plant-7/delivery/offer",
           base + "offer/",
           base + kDelivery + "/ready/",
           base + kDelivery + "//ready",
           "airlock/v1/gw/../delivery/offer",
           "airlock/v1/gw/./fleet",
           "airlock/v1/gw/plant%2F7/fleet",
           base + "dlv-%2e%2e/ready",
           base + "../ready",
           base + kDelivery + "/offer",  // offers have no id level
           base + kDelivery + "/fleet",
           base + kDelivery + "/explode",
           base + kDelivery + "/ready/extra",
           base + "offer/extra",
           "airlock/v1/gw/plant-7/fleet/extra",
           "airlock/v1/gw/plant-7/rollout/command/extra",
           "airlock/v1/gw/plant-7/rollout/" + kDelivery + "/command",
           "airlock/v1/gw/plant-7/rollout",
           "airlock/v1/gw/plant-7/rollout/cancel",
           "airlock/v1/gw/plant-7/delivery/command",
           "airlock/v1/gw/plant-7/telemetry",
           "airlock/v1/dev/plant-7/delivery/offer",
           "airlock/v1/gw/plant-7",
           "airlock/v1/gw/" + std::string(49, 'g') + "/fleet",
           "airlock/v1/gw/plant-7/delivery/" + kDelivery + "/status" + std::string(600, 's'),
       }) {
    auto parsed = t.Parse(bad);
    EXPECT_FALSE(parsed) << "accepted \"" << bad << "\"";
    if (!parsed) {
      EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    }
  }
  EXPECT_TRUE(t.Parse(base + kDelivery + "/status"));
}

TEST(TopicsTest, SubscriptionsCoverWhatEachSideReceives) {
  auto t = Topics::Create().value();
  EXPECT_EQ(t.HubSubscriptions(),
            (std::vector<std::string>{
                "airlock/v1/gw/+/delivery/+/ready", "airlock/v1/gw/+/delivery/+/reject",
                "airlock/v1/gw/+/delivery/+/status", "airlock/v1/gw/+/fleet"}));
  EXPECT_EQ(t.GatewaySubscriptions("plant-7").value(),
            (std::vector<std::string>{"airlock/v1/gw/plant-7/delivery/offer",
                                      "airlock/v1/gw/plant-7/delivery/+/grant",
                                      "airlock/v1/gw/plant-7/delivery/+/cancel"}));
  EXPECT_FALSE(t.GatewaySubscriptions("#"));
}

}  // namespace
}  // namespace airlock::delivery
