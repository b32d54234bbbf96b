#include "trust/directive.hpp"

#include <gtest/gtest.h>

#include <tuple>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::seconds;

const std::string kDevice = "dev-5e0c2b7a9d1f4e36";
const std::string kModel = "defect-detector";
const std::string kPlatform = "linux/arm64/v8";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class DirectiveTest : public TrustFixture {
 protected:
  PrivateKey gateway_key = PrivateKey::Generate().value();
  PrivateKey other_gateway_key = PrivateKey::Generate().value();
  Root root = MakeRoot(2, 2);

  // The current release of the model (1.4.0, counter 5) and the one before (1.3.2, counter 4).
  Release current = MakeRelease(5);
  Release previous = OlderRelease();
  SignedDocument current_doc = SignedByPublishers(current.ToJson());
  SignedDocument previous_doc = SignedByPublishers(previous.ToJson());

  static Release OlderRelease() {
    Release r = MakeRelease(4);
    r.version = "1.3.2";
    r.index_digest = Sha256Of("index for 1.3.2");
    return r;
  }

  SignedDocument SignedByPublishers(const json& body) const {
    return Reparse(SignedBy(body, {&publisher_keys[0], &publisher_keys[1]}));
  }

  static Digest IdOf(const SignedDocument& doc) { return ReleaseId(doc).value(); }

  // The production channel of the model at version, listing current then previous.
  Channel MakeChannel(std::uint64_t version) const {
    Channel c;
    c.model = kModel;
    c.name = "production";
    c.version = version;
    c.expires = TestNow() + hours(24 * 30);
    c.releases.push_back({current.version, current.release_counter, IdOf(current_doc)});
    c.releases.push_back({previous.version, previous.release_counter, IdOf(previous_doc)});
    return c;
  }
  SignedDocument ChannelDoc(std::uint64_t version) const {
    return SignedByPublishers(MakeChannel(version).ToJson());
  }

  // Version 7 for kDevice: the model active on production (with health limits) and shadowed on
  // staging, and a second model active without limits.
  Directive MakeDirective(std::uint64_t version = 7) const {
    Directive d;
    d.device = kDevice;
    d.version = version;
    d.issued = TestNow() - hours(1);
    d.expires = TestNow() + hours(24 * 7);
    DirectiveModel active;
    active.model = kModel;
    active.mode = DirectiveMode::kActive;
    active.release = IdOf(current_doc);
    active.channel = "production";
    active.channel_version = 3;
    active.health = HealthLimits{seconds(300), 0.05, 250};
    DirectiveModel shadow;
    shadow.model = kModel;
    shadow.mode = DirectiveMode::kShadow;
    shadow.release = Sha256Of("a staging release");
    shadow.channel = "staging";
    shadow.channel_version = 9;
    DirectiveModel other;
    other.model = "line-counter";
    other.mode = DirectiveMode::kActive;
    other.release = Sha256Of("a line-counter release");
    other.channel = "production";
    other.channel_version = 1;
    d.models = {active, shadow, other};
    return d;
  }

  // Signed by the gateway and passed through the wire.
  SignedDocument Signed(const Directive& d) const {
    auto doc = SignDirective(d, gateway_key);
    EXPECT_TRUE(doc) << doc.error().ToString();
    return Reparse(*doc);
  }

  Result<Directive> Verify(const SignedDocument& doc, std::uint64_t trusted = 0,
                           TimePoint now = TestNow()) const {
    return VerifyDirective(doc, gateway_key.public_key(), kDevice, trusted, now);
  }

  // The active entry of MakeDirective, naming release_doc in channel version channel_version.
  DirectiveModel Entry(const SignedDocument& release_doc, std::uint64_t channel_version = 3) const {
    DirectiveModel e = MakeDirective().models[0];
    e.release = IdOf(release_doc);
    e.channel_version = channel_version;
    return e;
  }

  Result<CheckedRelease> Check(const DirectiveModel& entry, const SignedDocument& channel_doc,
                               const SignedDocument& release_doc, std::uint64_t trusted_channel = 2,
                               std::string_view platform = kPlatform) const {
    return CheckDirectiveModel(entry, channel_doc, release_doc, root, TestNow(), trusted_channel,
                               platform);
  }
};

// Expects r to be refused with code, its message holding part.
template <typename T>
void ExpectRefused(const Result<T>& r, ErrorCode code, const std::string& part) {
  ASSERT_FALSE(r) << "accepted; wanted a refusal mentioning \"" << part << "\"";
  EXPECT_EQ(r.error().code(), code) << r.error().ToString();
  EXPECT_TRUE(Contains(r.error().message(), part))
      << "\"" << r.error().message() << "\" does not mention \"" << part << "\"";
}

// ---- the document ----

TEST_F(DirectiveTest, ModeNamesRoundTrip) {
  for (DirectiveMode mode : {DirectiveMode::kActive, DirectiveMode::kShadow}) {
    EXPECT_EQ(ParseDirectiveMode(DirectiveModeName(mode)), mode);
  }
  EXPECT_EQ(std::string(DirectiveModeName(DirectiveMode::kShadow)), "shadow");
  EXPECT_FALSE(ParseDirectiveMode("Active"));
  EXPECT_FALSE(ParseDirectiveMode(""));
}

TEST_F(DirectiveTest, HealthDefaultsAreTheGatewaysDefaults) {
  HealthLimits h;
  EXPECT_EQ(h.window, std::chrono::minutes(5));
  EXPECT_EQ(h.max_error_rate, 0.05);
  EXPECT_EQ(h.max_p99_ms, 250);
}

TEST_F(DirectiveTest, WireFormIsTheOneInTheDesign) {
  json body = MakeDirective().ToJson();
  EXPECT_EQ(body["_type"], "directive");
  EXPECT_EQ(body["spec_version"], 1);
  EXPECT_EQ(body["device"], kDevice);
  EXPECT_EQ(body["version"], 7);
  EXPECT_EQ(body["issued"], "2026-11-22T09:00:00Z");
  EXPECT_EQ(body["expires"], "2026-11-29T10:00:00Z");
  ASSERT_EQ(body["models"].size(), 3u);
  const json& active = body["models"][0];
  EXPECT_EQ(active["model"], kModel);
  EXPECT_EQ(active["mode"], "active");
  EXPECT_EQ(active["release"], IdOf(current_doc).ToString());
  EXPECT_EQ(active["channel"], json({{"name", "production"}, {"version", 3}}));
  EXPECT_EQ(active["health"],
            json({{"window", "5m"}, {"max_error_rate", "0.05"}, {"max_p99_ms", 250}}));
  EXPECT_EQ(body["models"][1]["mode"], "shadow");
  EXPECT_FALSE(body["models"][1].contains("health"));
  // Nothing in it is a float, so it has a canonical form and can be signed.
  EXPECT_TRUE(SignedDocument::Wrap(body).SignedBytes());
}

TEST_F(DirectiveTest, RoundTripsThroughJsonExactly) {
  Directive d = MakeDirective();
  auto back = Directive::FromJson(d.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, d);
  EXPECT_EQ(back->ToJson(), d.ToJson());
  ASSERT_TRUE(back->models[0].health);
  EXPECT_EQ(back->models[0].health->window, seconds(300));
  EXPECT_FALSE(back->models[1].health);
}

TEST_F(DirectiveTest, ACapturePolicyRoundTripsAndIsCheckedFieldByField) {
  Directive d = MakeDirective();
  EXPECT_FALSE(d.ToJson().contains("capture"));  // none: nothing is captured
  d.capture = CapturePolicy{.rate = 0.015, .max_bytes = 64ULL << 20, .inputs = true,
                            .outputs = false, .upload = true};
  json body = d.ToJson();
  EXPECT_EQ(body["capture"], json({{"rate", "0.015"},
                                   {"max_bytes", 64ULL << 20},
                                   {"inputs", true},
                                   {"outputs", false},
                                   {"upload", true}}));
  auto back = Directive::FromJson(body);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, d);
  for (auto [field, value, says] :
       {std::tuple<const char*, json, const char*>{"rate", "1.5", "capture.rate"},
        {"rate", 0.5, "capture.rate"},
        {"max_bytes", 1024, "\"capture.max_bytes\" must be at least"},
        {"upload", "yes", "\"capture.upload\" must be true or false"}}) {
    json bad = body;
    bad["capture"][field] = value;
    auto refused = Directive::FromJson(bad);
    ASSERT_FALSE(refused) << field;
    EXPECT_NE(refused.error().message().find(says), std::string::npos)
        << refused.error().message();
  }
  json not_object = body;
  not_object["capture"] = json::array();
  EXPECT_FALSE(Directive::FromJson(not_object));
}

TEST_F(DirectiveTest, HealthLimitsAtTheirBoundsRoundTrip) {
  for (HealthLimits h :
       {HealthLimits{seconds(1), 0.0, 1}, HealthLimits{hours(24 * 30), 1.0, 3'600'000},
        HealthLimits{seconds(5400), 0.000001, 17}, HealthLimits{seconds(90061), 0.123457, 999}}) {
    Directive d = MakeDirective();
    d.models[0].health = h;
    auto back = Directive::FromJson(d.ToJson());
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(*back, d) << d.ToJson()["models"][0]["health"].dump();
  }
  Directive d = MakeDirective();
  d.models[0].health = HealthLimits{seconds(5400), 0.000001, 17};
  EXPECT_EQ(d.ToJson()["models"][0]["health"],
            json({{"window", "1h30m"}, {"max_error_rate", "0.000001"}, {"max_p99_ms", 17}}));
}

TEST_F(DirectiveTest, AcceptsEveryWrittenFormOfARate) {
  for (const auto& [text, value] :
       std::vector<std::pair<std::string, double>>{{"0", 0.0},
                                                   {"1", 1.0},
                                                   {"0.5", 0.5},
                                                   {"0.05", 0.05},
                                                   {"0.050000", 0.05},
                                                   {"1.0", 1.0},
                                                   {"1.000000", 1.0},
                                                   {"0.999999", 0.999999}}) {
    json body = MakeDirective().ToJson();
    body["models"][0]["health"]["max_error_rate"] = text;
    auto d = Directive::FromJson(body);
    ASSERT_TRUE(d) << text << ": " << d.error().ToString();
    EXPECT_EQ(d->models[0].health->max_error_rate, value) << text;
  }
}

TEST_F(DirectiveTest, AnEmptyListOfModelsIsValid) {
  Directive d = MakeDirective();
  d.models.clear();
  auto back = Directive::FromJson(d.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_TRUE(back->models.empty());
  auto verified = Verify(Signed(d));
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_TRUE(verified->models.empty());
}

TEST_F(DirectiveTest, SixtyFourModelsAreTheMost) {
  Directive d = MakeDirective();
  d.models.clear();
  for (int i = 0; i < 64; ++i) {
    DirectiveModel m = MakeDirective().models[2];
    m.model = "model-" + std::to_string(i);
    d.models.push_back(m);
  }
  EXPECT_TRUE(Directive::FromJson(d.ToJson()));
  json body = d.ToJson();
  json extra = body["models"][0];
  extra["model"] = "model-64";
  body["models"].push_back(extra);
  ExpectRefused(Directive::FromJson(body), ErrorCode::kCorrupt, "\"models\" must hold at most 64");
}

// Each malformed body is refused with kCorrupt naming the field.
TEST_F(DirectiveTest, RefusesMalformedBodiesNamingTheField) {
  struct Case {
    std::string name;
    std::function<void(json&)> change;
    std::string field;  // what the message must hold
  };
  json shadow_first_body = MakeDirective().ToJson();
  std::vector<Case> cases = {
      {"device not a string", [](json& b) { b["device"] = 5; }, "\"device\" must be a string"},
      {"device missing", [](json& b) { b.erase("device"); }, "\"device\""},
      {"device short", [](json& b) { b["device"] = "dev-5e0c2b7a"; }, "\"device\" must be"},
      {"device uppercase", [](json& b) { b["device"] = "dev-5E0C2B7A9D1F4E36"; }, "\"device\""},
      {"device other prefix", [](json& b) { b["device"] = "gw-05e0c2b7a9d1f4e36"; }, "\"device\""},
      {"version 0", [](json& b) { b["version"] = 0; }, "\"version\" must be at least 1"},
      {"version negative", [](json& b) { b["version"] = -7; }, "\"version\""},
      {"version a string", [](json& b) { b["version"] = "7"; }, "\"version\""},
      {"issued missing", [](json& b) { b.erase("issued"); }, "\"issued\""},
      {"issued not a time", [](json& b) { b["issued"] = "yesterday"; }, "\"issued\""},
      {"expires not a time", [](json& b) { b["expires"] = 1795341600; }, "\"expires\""},
      {"expires equal to issued", [](json& b) { b["expires"] = b["issued"]; }, "\"expires\""},
      {"expires before issued", [](json& b) { b["expires"] = "2026-11-01T00:00:00Z"; },
       "\"expires\" must be after"},
      {"models missing", [](json& b) { b.erase("models"); }, "\"models\" must be an array"},
      {"models an object", [](json& b) { b["models"] = json::object(); }, "\"models\""},
      {"entry not an object", [](json& b) { b["models"][2] = "line-counter"; }, "\"models[2]\""},
      {"model missing", [](json& b) { b["models"][2].erase("model"); }, "\"models[2].model\""},
      {"model uppercase", [](json& b) { b["models"][2]["model"] = "Line-Counter"; },
       "\"models[2].model\""},
      {"model with a path", [](json& b) { b["models"][2]["model"] = "../etc"; },
       "\"models[2].model\""},
      {"model too long", [](json& b) { b["models"][2]["model"] = std::string(129, 'm'); },
       "\"models[2].model\""},
      {"mode unknown", [](json& b) { b["models"][2]["mode"] = "standby"; }, "\"models[2].mode\""},
      {"mode missing", [](json& b) { b["models"][2].erase("mode"); }, "\"models[2].mode\""},
      {"release short", [](json& b) { b["models"][2]["release"] = "sha256:abc"; },
       "\"models[2].release\""},
      {"release another algorithm",
       [](json& b) { b["models"][2]["release"] = "md5:" + std::string(32, 'a'); },
       "\"models[2].release\""},
      {"channel a string", [](json& b) { b["models"][2]["channel"] = "production"; },
       "\"models[2].channel\""},
      {"channel name bad", [](json& b) { b["models"][2]["channel"]["name"] = "../prod"; },
       "\"models[2].channel.name\""},
      {"channel name missing", [](json& b) { b["models"][2]["channel"].erase("name"); },
       "\"models[2].channel.name\""},
      {"channel version 0", [](json& b) { b["models"][2]["channel"]["version"] = 0; },
       "\"models[2].channel.version\" must be at least 1"},
      {"channel version missing", [](json& b) { b["models"][2]["channel"].erase("version"); },
       "\"models[2].channel.version\""},
      {"health not an object", [](json& b) { b["models"][0]["health"] = "strict"; },
       "\"models[0].health\""},
      {"health window missing", [](json& b) { b["models"][0]["health"].erase("window"); },
       "\"models[0].health.window\""},
      {"health window without unit", [](json& b) { b["models"][0]["health"]["window"] = "300"; },
       "\"models[0].health.window\""},
      {"health window zero", [](json& b) { b["models"][0]["health"]["window"] = "0s"; },
       "\"models[0].health.window\""},
      {"health window not whole seconds",
       [](json& b) { b["models"][0]["health"]["window"] = "1500ms"; },
       "\"models[0].health.window\" must be whole seconds"},
      {"health window too long", [](json& b) { b["models"][0]["health"]["window"] = "31d"; },
       "\"models[0].health.window\""},
      {"health window a number", [](json& b) { b["models"][0]["health"]["window"] = 300; },
       "\"models[0].health.window\""},
      {"error rate a number", [](json& b) { b["models"][0]["health"]["max_error_rate"] = 5; },
       "\"models[0].health.max_error_rate\""},
      {"error rate above 1", [](json& b) { b["models"][0]["health"]["max_error_rate"] = "1.5"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate 1.000001",
       [](json& b) { b["models"][0]["health"]["max_error_rate"] = "1.000001"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate negative", [](json& b) { b["models"][0]["health"]["max_error_rate"] = "-0.1"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate without leading digit",
       [](json& b) { b["models"][0]["health"]["max_error_rate"] = ".05"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate finer than a millionth",
       [](json& b) { b["models"][0]["health"]["max_error_rate"] = "0.0000001"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate as a percentage",
       [](json& b) { b["models"][0]["health"]["max_error_rate"] = "5%"; },
       "\"models[0].health.max_error_rate\""},
      {"error rate with a trailing point",
       [](json& b) { b["models"][0]["health"]["max_error_rate"] = "0."; },
       "\"models[0].health.max_error_rate\""},
      {"p99 zero", [](json& b) { b["models"][0]["health"]["max_p99_ms"] = 0; },
       "\"models[0].health.max_p99_ms\" must be at least 1"},
      {"p99 above an hour", [](json& b) { b["models"][0]["health"]["max_p99_ms"] = 3'600'001; },
       "\"models[0].health.max_p99_ms\" must be at most"},
      {"p99 a string", [](json& b) { b["models"][0]["health"]["max_p99_ms"] = "250"; },
       "\"models[0].health.max_p99_ms\""},
      {"health on a shadow", [](json& b) { b["models"][1]["health"] = b["models"][0]["health"]; },
       "\"models[1].health\" is only for active entries"},
      {"two active entries for a model", [](json& b) { b["models"][1]["mode"] = "active"; },
       "\"models[1].mode\" is a second active"},
      {"two shadow entries for a model",
       [](json& b) {
         json again = b["models"][1];
         b["models"].push_back(again);
       },
       "\"models[3].mode\" is a second shadow"},
      {"a shadow without an active entry", [](json& b) { b["models"].erase(0); },
       "shadow entry for defect-detector but no active"},
  };
  for (const Case& c : cases) {
    json body = MakeDirective().ToJson();
    c.change(body);
    SCOPED_TRACE(c.name);
    ExpectRefused(Directive::FromJson(body), ErrorCode::kCorrupt, c.field);
  }
}

TEST_F(DirectiveTest, AShadowListedBeforeItsActiveEntryIsFine) {
  Directive d = MakeDirective();
  std::swap(d.models[0], d.models[1]);
  auto back = Directive::FromJson(d.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, d);
}

TEST_F(DirectiveTest, RefusesOtherDocumentsAndSpecVersions) {
  ExpectRefused(Directive::FromJson(current.ToJson()), ErrorCode::kVerification, "not a directive");
  json body = MakeDirective().ToJson();
  body["spec_version"] = 2;
  ExpectRefused(Directive::FromJson(body), ErrorCode::kUnsupported, "spec_version");
  ExpectRefused(Directive::FromJson(json::array()), ErrorCode::kCorrupt, "want a JSON object");
}

TEST_F(DirectiveTest, IgnoresUnknownFields) {
  json body = MakeDirective().ToJson();
  body["note"] = "from a newer gateway";
  body["models"][0]["labels"] = {{"line", "3"}};
  auto d = Directive::FromJson(body);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(*d, MakeDirective());
}

// ---- signing ----

TEST_F(DirectiveTest, SignsOnlyWhatItsAgentsWouldAccept) {
  Directive bad_device = MakeDirective();
  bad_device.device = "dev-1";
  ExpectRefused(SignDirective(bad_device, gateway_key), ErrorCode::kInvalidArgument, "\"device\"");

  Directive fine_rate = MakeDirective();
  fine_rate.models[0].health->max_error_rate = 0.1234567;
  ExpectRefused(SignDirective(fine_rate, gateway_key), ErrorCode::kInvalidArgument,
                "does not survive its wire form");

  Directive fractional_p99 = MakeDirective();
  fractional_p99.models[0].health->max_p99_ms = 250.5;
  ExpectRefused(SignDirective(fractional_p99, gateway_key), ErrorCode::kInvalidArgument,
                "max_p99_ms");

  Directive nan_rate = MakeDirective();
  nan_rate.models[0].health->max_error_rate = std::nan("");
  ExpectRefused(SignDirective(nan_rate, gateway_key), ErrorCode::kInvalidArgument,
                "max_error_rate");

  Directive negative_window = MakeDirective();
  negative_window.models[0].health->window = seconds(-5);
  ExpectRefused(SignDirective(negative_window, gateway_key), ErrorCode::kInvalidArgument, "window");

  Directive subsecond = MakeDirective();
  subsecond.issued += std::chrono::milliseconds(500);
  ExpectRefused(SignDirective(subsecond, gateway_key), ErrorCode::kInvalidArgument,
                "times are whole seconds");
}

TEST_F(DirectiveTest, SignedDirectiveVerifies) {
  Directive d = MakeDirective();
  SignedDocument doc = Signed(d);
  EXPECT_EQ(doc.type(), "directive");
  ASSERT_EQ(doc.signatures().size(), 1u);
  EXPECT_EQ(doc.signatures()[0].keyid, gateway_key.id());
  auto verified = Verify(doc);
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_EQ(*verified, d);
}

// ---- VerifyDirective's refusals ----

TEST_F(DirectiveTest, RefusesADocumentThatIsNotADirective) {
  SignedDocument release = SignedBy(current.ToJson(), {&gateway_key});
  ExpectRefused(Verify(release), ErrorCode::kVerification, "\"release\" document, not a directive");
}

TEST_F(DirectiveTest, RefusesAnUnsignedDirective) {
  SignedDocument doc = Reparse(SignedDocument::Wrap(MakeDirective().ToJson()));
  ExpectRefused(Verify(doc), ErrorCode::kVerification, "directive is not signed");
}

TEST_F(DirectiveTest, RefusesADirectiveSignedByAnotherKeyAndSaysWhichKey) {
  auto doc = SignDirective(MakeDirective(), other_gateway_key);
  ASSERT_TRUE(doc);
  auto r = Verify(Reparse(*doc));
  ExpectRefused(r, ErrorCode::kVerification,
                "signed by key " + other_gateway_key.id().substr(0, 12));
  EXPECT_TRUE(Contains(r.error().message(), gateway_key.id().substr(0, 12))) << r.error().message();
}

TEST_F(DirectiveTest, AcceptsASecondSignatureByAnotherKey) {
  // During a key rotation the old and the new key both sign.
  SignedDocument doc = Signed(MakeDirective());
  ASSERT_TRUE(doc.Sign(other_gateway_key));
  auto r = Verify(Reparse(doc));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->version, 7u);
}

TEST_F(DirectiveTest, RefusesABodyChangedAfterSigning) {
  json j = AsJson(Signed(MakeDirective()));
  j["signed"]["models"][0]["release"] = IdOf(previous_doc).ToString();
  auto doc = FromJson(j);
  ASSERT_TRUE(doc);
  ExpectRefused(Verify(*doc), ErrorCode::kVerification, "changed after it was signed");
}

TEST_F(DirectiveTest, AForgedSignatureClaimingThePinnedKeyDoesNotHideTheGoodOne) {
  json j = AsJson(Signed(MakeDirective()));
  json good = j["signatures"][0];
  json forged = good;
  forged["sig"] = AsJson(Signed(MakeDirective(8)))["signatures"][0]["sig"];
  j["signatures"] = json::array({forged, good});
  auto doc = FromJson(j);
  ASSERT_TRUE(doc);
  EXPECT_TRUE(Verify(*doc));
  j["signatures"] = json::array({forged});
  ExpectRefused(Verify(FromJson(j).value()), ErrorCode::kVerification, "does not verify");
}

TEST_F(DirectiveTest, ASignedButMalformedBodyIsCorrupt) {
  // Only a gateway that bypasses SignDirective makes one.
  json body = MakeDirective().ToJson();
  body["version"] = 0;
  SignedDocument doc = Reparse(SignedBy(body, {&gateway_key}));
  ExpectRefused(Verify(doc), ErrorCode::kCorrupt, "\"version\"");
}

TEST_F(DirectiveTest, RefusesADirectiveForAnotherDevice) {
  Directive d = MakeDirective();
  d.device = "dev-00000000000000ff";
  auto r = Verify(Signed(d));
  ExpectRefused(r, ErrorCode::kVerification, "for device dev-00000000000000ff, not this device");
  EXPECT_TRUE(Contains(r.error().message(), kDevice));
}

TEST_F(DirectiveTest, RefusesAnOlderVersionAcceptsTheSameAndNewer) {
  auto older = Verify(Signed(MakeDirective(3)), /*trusted=*/5);
  ASSERT_FALSE(older);
  EXPECT_EQ(older.error().code(), ErrorCode::kVerification);
  EXPECT_EQ(older.error().message(), "rollback: directive version 3 is older than the trusted 5");
  auto same = Verify(Signed(MakeDirective(5)), 5);
  ASSERT_TRUE(same) << same.error().ToString();
  EXPECT_EQ(same->version, 5u);
  auto newer = Verify(Signed(MakeDirective(6)), 5);
  ASSERT_TRUE(newer) << newer.error().ToString();
  EXPECT_EQ(newer->version, 6u);
}

TEST_F(DirectiveTest, RefusesAnExpiredDirective) {
  Directive d = MakeDirective();
  SignedDocument doc = Signed(d);
  EXPECT_TRUE(Verify(doc, 0, d.expires - seconds(1)));
  ExpectRefused(Verify(doc, 0, d.expires), ErrorCode::kVerification,
                "directive version 7 expired at 2026-11-29T10:00:00Z");
  ExpectRefused(Verify(doc, 0, d.expires + hours(24)), ErrorCode::kVerification, "expired");
}

TEST_F(DirectiveTest, DoesNotJudgeIssuedAgainstTheDevicesClock) {
  // A device whose clock lags its gateway's still applies a fresh directive.
  Directive d = MakeDirective();
  d.issued = TestNow() + hours(2);
  auto r = Verify(Signed(d));
  EXPECT_TRUE(r) << r.error().ToString();
}

// An agent's loop over what arrives on its directive topic: the trusted version moves only on
// success, so a refusal changes nothing and the next good directive still applies.
TEST_F(DirectiveTest, RefusalsLeaveTheTrustedVersionAndTheNextGoodDirectiveApplies) {
  std::uint64_t trusted = 0;
  auto receive = [&](const SignedDocument& doc) {
    auto r = Verify(doc, trusted);
    if (r) {
      trusted = r->version;
    }
    return r.has_value();
  };
  EXPECT_TRUE(receive(Signed(MakeDirective(4))));
  EXPECT_EQ(trusted, 4u);
  auto forged = SignDirective(MakeDirective(9), other_gateway_key);
  ASSERT_TRUE(forged);
  EXPECT_FALSE(receive(*forged));
  EXPECT_FALSE(receive(Signed(MakeDirective(3))));
  json tampered = AsJson(Signed(MakeDirective(5)));
  tampered["signed"]["version"] = 50;
  EXPECT_FALSE(receive(FromJson(tampered).value()));
  EXPECT_EQ(trusted, 4u);
  EXPECT_TRUE(receive(Signed(MakeDirective(4))));  // the retained message again, after a reconnect
  EXPECT_TRUE(receive(Signed(MakeDirective(5))));
  EXPECT_EQ(trusted, 5u);
}

// ---- CheckDirectiveModel ----

TEST_F(DirectiveTest, ChecksAnEntryAgainstItsChannelAndRelease) {
  auto r = Check(Entry(current_doc), ChannelDoc(3), current_doc);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->channel.version, 3u);
  EXPECT_EQ(r->channel.name, "production");
  EXPECT_EQ(r->release.version, "1.4.0");
  EXPECT_EQ(r->release.release_counter, 5u);
}

TEST_F(DirectiveTest, AcceptsARollbackTargetTheChannelStillLists) {
  // The device runs 1.4.0 (counter 5); the directive sends it back to 1.3.2 (counter 4), which the
  // channel lists as an allowed rollback target.
  auto r = Check(Entry(previous_doc), ChannelDoc(3), previous_doc);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->release.version, "1.3.2");
  EXPECT_EQ(r->release.release_counter, 4u);
}

TEST_F(DirectiveTest, AcceptsAFleetRollbackWhoseCurrentReleaseIsTheOlderOne) {
  Channel c = MakeChannel(4);
  std::swap(c.releases[0], c.releases[1]);
  auto r = Check(Entry(previous_doc, 4), SignedByPublishers(c.ToJson()), previous_doc,
                 /*trusted_channel=*/3);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->release.release_counter, 4u);
}

TEST_F(DirectiveTest, RefusesAReleaseTheChannelDoesNotList) {
  Release newer = MakeRelease(6);
  newer.version = "1.5.0";
  newer.index_digest = Sha256Of("index for 1.5.0");
  SignedDocument newer_doc = SignedByPublishers(newer.ToJson());
  auto r = Check(Entry(newer_doc), ChannelDoc(3), newer_doc);
  ExpectRefused(r, ErrorCode::kVerification,
                "release " + IdOf(newer_doc).ToString() + " is not listed in channel version 3");
  EXPECT_TRUE(Contains(r.error().message(), "model defect-detector, channel production:"));
  EXPECT_TRUE(Contains(r.error().message(), "mix-and-match"));
}

TEST_F(DirectiveTest, RefusesAReleaseDocumentOtherThanTheEntrys) {
  auto r = Check(Entry(current_doc), ChannelDoc(3), previous_doc);
  ExpectRefused(r, ErrorCode::kVerification,
                "served release " + IdOf(previous_doc).ToString() + " instead of the directive's " +
                    IdOf(current_doc).ToString());
}

TEST_F(DirectiveTest, RefusesTheChannelOfAnotherModelOrName) {
  Channel other_model = MakeChannel(3);
  other_model.model = "line-counter";
  ExpectRefused(Check(Entry(current_doc), SignedByPublishers(other_model.ToJson()), current_doc),
                ErrorCode::kVerification, "channel production of line-counter instead");
  Channel staging = MakeChannel(3);
  staging.name = "staging";
  // A lower version than the trusted production one: the refusal is about the name, not that.
  ExpectRefused(Check(Entry(current_doc), SignedByPublishers(staging.ToJson()), current_doc, 50),
                ErrorCode::kVerification, "channel staging of defect-detector instead");
}

TEST_F(DirectiveTest, RefusesAChannelOlderThanTheEntryNames) {
  ExpectRefused(Check(Entry(current_doc, 4), ChannelDoc(3), current_doc), ErrorCode::kVerification,
                "channel version 3, older than the version 4 the directive names");
}

TEST_F(DirectiveTest, AcceptsAChannelNewerThanTheEntryNames) {
  auto r = Check(Entry(current_doc, 3), ChannelDoc(5), current_doc);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->channel.version, 5u);
}

TEST_F(DirectiveTest, RefusesAChannelOlderThanTheTrustedOneAcceptsTheSame) {
  auto r = Check(Entry(current_doc, 3), ChannelDoc(3), current_doc, /*trusted_channel=*/4);
  ExpectRefused(r, ErrorCode::kVerification, "not above the trusted version 4");
  EXPECT_TRUE(Contains(r.error().message(), "model defect-detector, channel production:"));
  auto same = Check(Entry(current_doc, 3), ChannelDoc(3), current_doc, /*trusted_channel=*/3);
  EXPECT_TRUE(same) << same.error().ToString();
}

TEST_F(DirectiveTest, RefusesAnExpiredChannel) {
  Channel c = MakeChannel(3);
  c.expires = TestNow();
  ExpectRefused(Check(Entry(current_doc), SignedByPublishers(c.ToJson()), current_doc),
                ErrorCode::kVerification, "expired at");
}

TEST_F(DirectiveTest, RefusesAChannelUnderItsThreshold) {
  SignedDocument one = Reparse(SignedBy(MakeChannel(3).ToJson(), {&publisher_keys[0]}));
  ExpectRefused(Check(Entry(current_doc), one, current_doc), ErrorCode::kVerification,
                "1 valid publisher signature(s), needs 2");
}

TEST_F(DirectiveTest, RefusesAReleaseUnderThreshold) {
  SignedDocument one = Reparse(SignedBy(current.ToJson(), {&publisher_keys[0]}));
  // Co-signing does not change a release's id, so the channel still lists it.
  ASSERT_EQ(IdOf(one), IdOf(current_doc));
  auto r = Check(Entry(one), ChannelDoc(3), one);
  ExpectRefused(r, ErrorCode::kVerification, "1 valid publisher signature(s), needs 2");
  EXPECT_TRUE(Contains(r.error().message(), "model defect-detector, channel production:"));
}

TEST_F(DirectiveTest, RefusesAnExpiredRelease) {
  Release old = OlderRelease();
  old.expires = TestNow() - seconds(1);
  SignedDocument old_doc = SignedByPublishers(old.ToJson());
  Channel c = MakeChannel(3);
  c.releases[1].release = IdOf(old_doc);
  ExpectRefused(Check(Entry(old_doc), SignedByPublishers(c.ToJson()), old_doc),
                ErrorCode::kVerification, "release defect-detector 1.3.2 expired at");
}

TEST_F(DirectiveTest, RefusesAReleaseOfAnotherModelListedInTheChannel) {
  Release stray = MakeRelease(5);
  stray.model = "line-counter";
  SignedDocument stray_doc = SignedByPublishers(stray.ToJson());
  Channel c = MakeChannel(3);
  c.releases[0].release = IdOf(stray_doc);
  ExpectRefused(Check(Entry(stray_doc), SignedByPublishers(c.ToJson()), stray_doc),
                ErrorCode::kVerification, "is of model line-counter");
}

TEST_F(DirectiveTest, RefusesAChannelWhoseEntryDisagreesWithTheRelease) {
  Channel c = MakeChannel(3);
  c.releases[0].release_counter = 9;
  ExpectRefused(Check(Entry(current_doc), SignedByPublishers(c.ToJson()), current_doc),
                ErrorCode::kVerification, "as version 1.4.0 (counter 9), but the release is");
}

TEST_F(DirectiveTest, RefusesAReleaseWithoutTheDevicesPlatform) {
  auto r = Check(Entry(current_doc), ChannelDoc(3), current_doc, 2, "linux/riscv64");
  ExpectRefused(r, ErrorCode::kVerification,
                "no variant for this device's platform linux/riscv64 (it has linux/amd64, "
                "linux/arm64/v8)");
  // Platforms match exactly: arm64/v8 is not arm64.
  ExpectRefused(Check(Entry(current_doc), ChannelDoc(3), current_doc, 2, "linux/arm64"),
                ErrorCode::kVerification, "no variant");
  EXPECT_TRUE(Check(Entry(current_doc), ChannelDoc(3), current_doc, 2, "linux/amd64"));
}

TEST_F(DirectiveTest, RefusesAMalformedChannelDocumentNamingTheEntry) {
  auto r = Check(Entry(current_doc), current_doc, current_doc);
  ExpectRefused(r, ErrorCode::kVerification, "model defect-detector, channel production: ");
  EXPECT_TRUE(Contains(r.error().message(), "not a channel document"));
}

// Like VerifyDirective, a refusal changes nothing: the caller's trusted channel version moves only
// on success, and the next good document is accepted.
TEST_F(DirectiveTest, AChannelRefusalLeavesTheNextGoodCheckWorking) {
  std::uint64_t trusted_channel = 3;
  auto check = [&](const SignedDocument& channel, const SignedDocument& release) {
    auto r = Check(Entry(release), channel, release, trusted_channel);
    if (r) {
      trusted_channel = r->channel.version;
    }
    return r.has_value();
  };
  EXPECT_TRUE(check(ChannelDoc(4), current_doc));
  EXPECT_EQ(trusted_channel, 4u);
  EXPECT_FALSE(check(ChannelDoc(3), current_doc));  // a replayed older channel
  SignedDocument under = Reparse(SignedBy(current.ToJson(), {&publisher_keys[2]}));
  EXPECT_FALSE(check(ChannelDoc(5), under));  // a good channel, a release under threshold
  EXPECT_EQ(trusted_channel, 4u);
  EXPECT_TRUE(check(ChannelDoc(5), previous_doc));
  EXPECT_EQ(trusted_channel, 5u);
}

}  // namespace
}  // namespace airlock::trust
