#include "delivery/device_protocol.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/keys.hpp"

namespace airlock::delivery {
namespace {

using nlohmann::json;
using std::chrono::seconds;

TimePoint TestNow() { return TimePoint(seconds(1795341600)); }  // 2026-11-22T10:00:00Z
const std::string kDevice = "dev-5e0c2b7a9d1f4e36";
const std::string kRelease = "sha256:" + std::string(64, 'a');

trust::SignedDocument SignedOf(json body) {
  auto doc = trust::SignedDocument::Wrap(std::move(body));
  EXPECT_TRUE(doc.Sign(PrivateKey::Generate().value()));
  return doc;
}

DirectiveMessage MakeDirective() {
  DirectiveMessage m;
  m.envelope = {"b1d2", TestNow()};
  m.directive = SignedOf({{"_type", "directive"}, {"device", kDevice}, {"version", 3}});
  m.channels = {SignedOf({{"_type", "channel"}, {"model", "m"}, {"version", 2}})};
  m.releases = {SignedOf({{"_type", "release"}, {"model", "m"}, {"version", "1.0"}})};
  m.packages = {{kRelease, "models/m", 123456}};
  return m;
}

DeviceState MakeState() {
  DeviceState s;
  s.envelope = {"a9f0", TestNow()};
  s.device = kDevice;
  s.seq = 1795341600123;
  s.platform = "linux/amd64";
  s.directive_version = 3;
  s.refused_version = 4;
  s.refused = ReportError{"verification", "directive version 4 is signed by another key"};
  ModelReport m;
  m.model = "visual-inspection";
  m.phase = "warming-up";
  m.active_version = "1.0.0";
  m.active_release = kRelease;
  m.target_version = "1.1.0";
  m.target_release = "sha256:" + std::string(64, 'b');
  m.installed = {"1.0.0", "1.1.0"};
  m.shadow = ShadowReport{"1.2.0", "sha256:" + std::string(64, 'c'), 200, 197};
  s.models = {m};
  ModelReport idle;
  idle.model = "vibration";
  idle.phase = "idle";
  idle.error = ReportError{"samples-mismatch", "sample 2 differs"};
  s.models.push_back(idle);
  return s;
}

TEST(DeviceTopics, BuildsAndParsesTheTopicsOfADevice) {
  auto topics = DeviceTopics::Create("site-a/airlock/v1").value();
  EXPECT_EQ(topics.Topic(DeviceTopicKind::kDirective, kDevice).value(),
            "site-a/airlock/v1/dev/" + kDevice + "/directive");
  for (auto kind : {DeviceTopicKind::kDirective, DeviceTopicKind::kState, DeviceTopicKind::kOnline,
                    DeviceTopicKind::kTelemetry, DeviceTopicKind::kTelemetryAck}) {
    auto parsed = topics.Parse(topics.Topic(kind, kDevice).value());
    ASSERT_TRUE(parsed) << parsed.error().message();
    EXPECT_EQ(*parsed, (DeviceTopicAddress{kind, kDevice}));
  }
  EXPECT_EQ(topics.GatewaySubscriptions(),
            (std::vector<std::string>{"site-a/airlock/v1/dev/+/state",
                                      "site-a/airlock/v1/dev/+/online"}));
  EXPECT_EQ(topics.TelemetrySubscription(), "site-a/airlock/v1/dev/+/telemetry");
  EXPECT_EQ(topics.Topic(DeviceTopicKind::kTelemetryAck, kDevice).value(),
            "site-a/airlock/v1/dev/" + kDevice + "/telemetry-ack");
}

TEST(DeviceTopics, RefusesWhatIsNotADeviceTopic) {
  auto topics = DeviceTopics::Create().value();
  EXPECT_FALSE(topics.Topic(DeviceTopicKind::kState, "dev-../x"));
  EXPECT_FALSE(topics.Topic(DeviceTopicKind::kState, "dev-5E0C2B7A9D1F4E36"));
  for (const std::string& t : std::vector<std::string>{"other/v1/dev/" + kDevice + "/state", "airlock/v1/dev/" + kDevice,
        "airlock/v1/dev/+/state", "airlock/v1/dev/" + kDevice + "/state/x",
        "airlock/v1/dev/" + kDevice + "/logs", "airlock/v1/dev/dev-1234/state"}) {
    EXPECT_FALSE(topics.Parse(t)) << t;
  }
}

TEST(DirectiveMessage, RoundTripsWithItsDocuments) {
  DirectiveMessage m = MakeDirective();
  auto back = DirectiveMessage::FromJson(ParsePayload(m.ToJson().dump()).value());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->ToJson(), m.ToJson());
  EXPECT_EQ(back->directive.signatures().size(), 1u);
  EXPECT_EQ(back->packages, m.packages);
  ASSERT_NE(back->PackageOf(kRelease), nullptr);
  EXPECT_EQ(back->PackageOf(kRelease)->repository, "models/m");
  EXPECT_EQ(back->PackageOf("sha256:" + std::string(64, 'f')), nullptr);
}

TEST(DirectiveMessage, CarriesRootRotationsOnlyWhenThereAreSome) {
  DirectiveMessage m = MakeDirective();
  EXPECT_FALSE(m.ToJson().contains("roots"));  // the wire form of gateways before rotations
  m.roots = {SignedOf({{"_type", "root"}, {"version", 2}}),
             SignedOf({{"_type", "root"}, {"version", 3}})};
  auto back = DirectiveMessage::FromJson(ParsePayload(m.ToJson().dump()).value());
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->roots.size(), 2u);
  EXPECT_EQ(back->roots[1].body()["version"], 3);
  EXPECT_EQ(back->ToJson(), m.ToJson());
  json bad = m.ToJson();
  bad["roots"] = bad["channels"];
  auto r = DirectiveMessage::FromJson(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("\"roots\" holds a \"channel\" document"),
            std::string::npos)
      << r.error().message();
}

TEST(DirectiveMessage, RefusesDocumentsOfTheWrongKindOrShape) {
  json j = MakeDirective().ToJson();
  auto refused = [](json bad, const std::string& text) {
    auto r = DirectiveMessage::FromJson(bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find(text), std::string::npos) << r.error().message();
  };
  json b = j;
  b["directive"] = j["channels"][0];
  refused(b, "\"directive\" is a \"channel\" document");
  b = j;
  b["channels"] = j["releases"];
  refused(b, "\"channels\" holds a \"release\" document");
  b = j;
  b["releases"] = json::array({"text"});
  refused(b, "\"releases\" must hold signed documents");
  b = j;
  b.erase("directive");
  refused(b, "\"directive\" must be the signed directive");
  b = j;
  b["type"] = "device.state";
  refused(b, "\"type\" must be \"device.directive\"");
  b = j;
  b["packages"][0]["repository"] = "../etc";
  refused(b, "\"repository\" must be 1-255 of [a-z0-9._-] components joined by /");
  b = j;
  b["packages"].push_back(j["packages"][0]);
  refused(b, "names release " + kRelease + " twice");
  b = j;
  b["packages"][0].erase("size");
  refused(b, "\"size\" must be a non-negative integer");
}

TEST(DeviceState, RoundTrips) {
  DeviceState s = MakeState();
  auto back = DeviceState::FromJson(ParsePayload(s.ToJson().dump()).value());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->ToJson(), s.ToJson());
  EXPECT_EQ(back->models, s.models);
  EXPECT_EQ(back->refused, s.refused);
}

TEST(DeviceState, RefusesMalformedReportsNamingTheField) {
  json j = MakeState().ToJson();
  auto refused = [](json bad, const std::string& field) {
    auto r = DeviceState::FromJson(bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("\"" + field + "\""), std::string::npos)
        << r.error().message();
  };
  json b = j;
  b["device"] = "dev-zz";
  refused(b, "device");
  b = j;
  b["models"].push_back(j["models"][0]);
  refused(b, "models");
  b = j;
  b["models"][0]["phase"] = "Active";
  refused(b, "phase");
  b = j;
  b["models"][0]["active_release"] = "sha256:abc";
  refused(b, "active_release");
  b = j;
  b["models"][0]["shadow"]["agreed"] = 201;
  refused(b, "agreed");
  b = j;
  b["models"][0]["error"] = {{"code", "x"}, {"message", "bell \x07"}};
  refused(b, "message");
  b = j;
  b.erase("refused");
  refused(b, "refused");
  b = j;
  b["seq"] = -1;
  refused(b, "seq");
  b = j;
  b["platform"] = "amd64";
  refused(b, "platform");
}

TEST(DeviceOnline, IsTrueOrFalseAndNothingElse) {
  EXPECT_TRUE(ParseOnline(kOnlinePayload).value());
  EXPECT_FALSE(ParseOnline(kOfflinePayload).value());
  EXPECT_FALSE(ParseOnline("1"));
  EXPECT_FALSE(ParseOnline(" true"));
}

}  // namespace
}  // namespace airlock::delivery
