// The agent's side of a managed device (agent/device_client.hpp) against a real Mosquitto and a
// real Distribution registry standing in for the gateway's (agent/device_fixture.hpp).
#include "agent/device_client.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "agent/device_fixture.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::hours;
using std::chrono::seconds;
using airlock::testing::WaitUntil;

class DeviceClientTest : public DeviceFixture {};

// The whole way: a directive brings 1.0.0 (pulled, verified, installed, validated, serving);
// the next 1.1.0 beside it, then a channel-approved rollback to 1.0.0 (already installed, below
// the store's release counter) serves 1.0.0 again. A restarted agent serves what it committed.
TEST_F(DeviceClientTest, DirectivesActivateUpgradeAndRollBackAndARestartKeepsTheCommit) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  Published v2 = Push(affine_dir(), "1.1.0", 2);
  StartDevice();
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(mu_);
    return online_ == "true";
  }));

  Send(Directive(1, v1, 1, Channel(1, {&v1}), {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();
  EXPECT_EQ(Served(), "1.0.0");
  EXPECT_EQ(State()->directive_version, 1u);
  EXPECT_EQ(State()->models[0].active_release, v1.id.ToString());

  // 1.1.0 shares its model weights with 1.0.0: the device copies them from its store instead of
  // fetching them again. (The registry's copy is damaged to prove it: fetched, they would fail.)
  {
    auto reader = pkg::LayoutReader::Open(tmp_ / "affine-1.1.0-2.tar").value();
    auto package = pkg::LoadPackage(*reader, "1.1.0").value();
    auto weights = package.variants[0].Layers(pkg::media::kModelWeight);
    ASSERT_FALSE(weights.empty());
    fs::path stored = registry_.BlobDataPath(weights[0]->digest.hex());
    std::string bytes = ReadFile(stored).value();
    bytes[bytes.size() / 2] ^= 0x5a;
    ASSERT_TRUE(WriteFileAtomic(stored, bytes));
  }
  auto channel2 = Channel(2, {&v2, &v1});
  Send(Directive(2, v2, 2, channel2, {&v2}));
  ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
  EXPECT_EQ(Served(), "1.1.0");
  EXPECT_EQ(State()->models[0].installed, (std::vector<std::string>{"1.0.0", "1.1.0"}));

  // Back to 1.0.0, which channel 2 still lists: no download, no counter floor.
  Send(Directive(3, v1, 2, channel2, {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();
  EXPECT_EQ(Served(), "1.0.0");
  EXPECT_EQ(State()->directive_version, 3u);

  // Restarted: 1.0.0 serves although 1.1.0 has the higher counter; the retained directive 3
  // changes nothing.
  StopDevice();
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(online_, "false");
  }
  StartDevice();
  EXPECT_EQ(Served(), "1.0.0");
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(mu_);
    return online_ == "true";
  }));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();
  EXPECT_EQ(Served(), "1.0.0");
}

// What a pull killed half-way had fetched (linked into state/downloads/fetched/) is used by the
// next attempt: here the weights, which the registry can no longer serve intact.
TEST_F(DeviceClientTest, ADownloadAfterAKillReusesTheBlobsItHadFetched) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  auto reader = pkg::LayoutReader::Open(tmp_ / "affine-1.0.0-1.tar").value();
  auto package = pkg::LoadPackage(*reader, "1.0.0").value();
  const Digest weights = package.variants[0].Layers(pkg::media::kModelWeight)[0]->digest;
  fs::path stored = registry_.BlobDataPath(weights.hex());
  std::string bytes = ReadFile(stored).value();
  fs::path fetched = store_dir() / "state/downloads/fetched";
  ASSERT_TRUE(MakeDirectories(fetched));
  ASSERT_TRUE(WriteFileAtomic(fetched / weights.hex(), bytes));  // as the killed pull left it
  bytes[bytes.size() / 2] ^= 0x5a;
  ASSERT_TRUE(WriteFileAtomic(stored, bytes));

  StartDevice();
  Send(Directive(1, v1, 1, Channel(1, {&v1}), {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();
  EXPECT_EQ(Served(), "1.0.0");
  EXPECT_FALSE(fs::exists(fetched));  // installed: nothing kept any more
}

// Every bad directive is refused and reported, the trusted state is unchanged (the version the
// device reports applied stays), and the next good one is applied.
TEST_F(DeviceClientTest, BadDirectivesAreRefusedAndTheNextGoodOneApplies) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  Published v2 = Push(affine_dir(), "1.1.0", 2);
  StartDevice();
  auto channel1 = Channel(1, {&v1});
  Send(Directive(5, v1, 1, channel1, {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();

  auto channel2 = Channel(2, {&v2, &v1});
  auto refused = [&](const delivery::DirectiveMessage& m, std::uint64_t version,
                     const std::string& why) {
    Send(m);
    EXPECT_TRUE(WaitUntil([&] {
      auto s = State();
      return s && s->refused_version == version && s->refused &&
             s->refused->message.find(why) != std::string::npos;
    })) << why << "\n" << Dump();
    auto s = State();
    EXPECT_EQ(s->directive_version, 5u);
    EXPECT_EQ(s->models[0].active_version, "1.0.0");
    EXPECT_EQ(Served(), "1.0.0");
  };

  // Signed by another gateway: it names no version this device can trust, so the refusal is
  // only logged (reported under the version it claims, a forged directive far ahead would make
  // every genuine one below it look refused).
  auto other = Directive(6, v2, 2, channel2, {&v2});
  PrivateKey stranger = PrivateKey::Generate().value();
  other.directive = trust::SignDirective(trust::Directive::FromJson(other.directive.body()).value(),
                                         stranger)
                        .value();
  ExpectRefusedUnreported(other.ToJson().dump(), "not by this device's gateway");
  // Older than the one applied.
  refused(Directive(4, v2, 2, channel2, {&v2}), 4, "older than the trusted 5");
  // Expired.
  auto expired = Directive(7, v2, 2, channel2, {&v2});
  auto body = trust::Directive::FromJson(expired.directive.body()).value();
  body.issued -= hours(48);
  body.expires = body.issued + hours(1);
  expired.directive = trust::SignDirective(body, *gateway_key_).value();
  refused(expired, 7, "expired");
  // A release the channel does not list (mix-and-match).
  refused(Directive(8, v2, 1, channel1, {&v2}), 8, "is not listed in channel version 1");
  // For another device: its version is that device's, so it is only logged too.
  auto elsewhere = Directive(9, v2, 2, channel2, {&v2});
  body = trust::Directive::FromJson(elsewhere.directive.body()).value();
  body.device = "dev-ffffffffffffffff";
  elsewhere.directive = trust::SignDirective(body, *gateway_key_).value();
  ExpectRefusedUnreported(elsewhere.ToJson().dump(), "dev-ffffffffffffffff");
  EXPECT_EQ(State()->directive_version, 5u);
  EXPECT_EQ(Served(), "1.0.0");
  // Not JSON at all: it names no version to refuse; the device logs it and goes on.
  Send(std::string("{not json"));

  // The next good directive applies.
  Send(Directive(10, v2, 2, channel2, {&v2}));
  ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
  EXPECT_EQ(State()->directive_version, 10u);
  EXPECT_FALSE(State()->refused);
  EXPECT_EQ(Served(), "1.1.0");

  // The applied directive read again once expired (a reconnect a month later) is no refusal:
  // expiry stops a directive from being applied, not from having been.
  auto old = Directive(10, v2, 2, channel2, {&v2});
  body = trust::Directive::FromJson(old.directive.body()).value();
  body.issued -= hours(48);
  body.expires = body.issued + hours(1);
  old.directive = trust::SignDirective(body, *gateway_key_).value();
  Send(old);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // a refusal is reported within ms
  EXPECT_FALSE(State()->refused) << Dump();
  EXPECT_EQ(State()->directive_version, 10u);
}

// A root rotation reaches the device in a directive (trust/root_store.hpp): one that does not
// verify refuses the directive and changes nothing; a good one is kept under the identity, judges
// the directive's channel, survives a restart, and — because it hands channel signing to a new
// release-manager key — makes the device forget its channel versions (fast-forward recovery), so
// the new key's channel at version 1 is taken although version 5 was trusted.
TEST_F(DeviceClientTest, ARootRotationInADirectiveIsWalkedKeptAndResetsTheChannelVersions) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  Published v2 = Push(affine_dir(), "1.1.0", 2);
  StartDevice();
  auto channel5 = Channel(5, {&v1});
  Send(Directive(5, v1, 5, channel5, {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();

  // Root version 2: a release-manager key now signs the channels.
  PrivateKey manager = PrivateKey::Generate().value();
  trust::Root next = trust::Root::FromJson(root_.body()).value();
  next.version = 2;
  next.keys.emplace(manager.id(), manager.public_key());
  next.roles["release-manager"] = {{manager.id()}, 1};
  trust::Channel by_manager = trust::Channel::FromJson(Channel(1, {&v2, &v1}).body()).value();
  auto manager_channel = trust::SignedDocument::Wrap(by_manager.ToJson());
  ASSERT_TRUE(manager_channel.Sign(manager));
  const fs::path kept = RootRotationsDir(store_dir()) / "2.root.json";

  // Signed by a stranger, not by the trusted root key: refused, and nothing changes.
  auto forged = trust::SignedDocument::Wrap(next.ToJson());
  ASSERT_TRUE(forged.Sign(PrivateKey::Generate().value()));
  auto message = Directive(6, v2, 1, manager_channel, {&v2});
  message.roots = {forged};
  Send(message);
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->refused_version == 6 && s->refused &&
           s->refused->message.find("root") != std::string::npos;
  })) << Dump();
  EXPECT_EQ(State()->directive_version, 5u);
  EXPECT_EQ(Served(), "1.0.0");
  EXPECT_FALSE(fs::exists(kept));

  // Without the rotation, the manager's channel is not one the device trusts.
  Send(Directive(7, v2, 1, manager_channel, {&v2}));
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->refused_version == 7;
  })) << Dump();
  EXPECT_EQ(Served(), "1.0.0");

  // Signed by the trusted root key: walked, kept, and the channel at version 1 is taken.
  auto rotation = trust::SignedDocument::Wrap(next.ToJson());
  ASSERT_TRUE(rotation.Sign(*publisher_));
  message = Directive(8, v2, 1, manager_channel, {&v2});
  message.roots = {rotation};
  Send(message);
  ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
  EXPECT_EQ(State()->directive_version, 8u);
  EXPECT_FALSE(State()->refused);
  EXPECT_TRUE(fs::exists(kept));

  // After a restart the device still trusts version 2: the old key's channels are refused now.
  StopDevice();
  StartDevice();
  ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
  Send(Directive(9, v1, 6, Channel(6, {&v1}), {&v1}));
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->refused_version == 9 && s->refused &&
           s->refused->message.find("release-manager") != std::string::npos;
  })) << Dump();
  EXPECT_EQ(Served(), "1.1.0");
}

// A version whose samples do not reproduce fails validation and the device rolls back to what
// served; a package too big for the disk fails before any byte is fetched.
TEST_F(DeviceClientTest, AFailedValidationRollsBackAndNoRoomFailsTheDownload) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  fs::copy(affine_dir(), tmp_ / "broken", fs::copy_options::recursive);
  airlock::testing::WriteNpy(tmp_ / "broken/samples/0/y.npy",
                             airlock::testing::Fp32("y", {1, 4}, {9, 9, 9, 9}));
  Published broken = Push(tmp_ / "broken", "2.0.0", 2, /*validate=*/false);
  StartDevice();
  Send(Directive(1, v1, 1, Channel(1, {&v1}), {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();

  auto channel2 = Channel(2, {&broken, &v1});
  Send(Directive(2, broken, 2, channel2, {&broken}));
  ASSERT_TRUE(WaitForModel("rolled-back", "1.0.0")) << Dump();
  ASSERT_TRUE(State()->models[0].error);
  EXPECT_EQ(State()->models[0].error->code, "samples-mismatch");
  EXPECT_EQ(Served(), "1.0.0");

  Published v3 = Push(affine_dir(), "1.2.0", 3);
  auto huge = Directive(3, v3, 3, Channel(3, {&v3, &v1}), {&v3});
  huge.packages[0].size = 1ULL << 60;
  Send(huge);
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->directive_version == 3 && s->models[0].error &&
           s->models[0].error->code == "no-space";
  })) << Dump();
  EXPECT_EQ(Served(), "1.0.0");
  EXPECT_FALSE(fs::exists(store_dir() / "state/downloads" / v3.id.hex()));
  EXPECT_EQ(State()->models[0].installed, (std::vector<std::string>{"1.0.0", "2.0.0"}));
}

// Fails every run while `failing` is set.
class FlakyBackend final : public runtime::InferenceBackend {
 public:
  FlakyBackend(std::unique_ptr<runtime::InferenceBackend> inner, std::atomic<bool>& failing)
      : inner_(std::move(inner)), failing_(failing) {}
  const runtime::ModelSignature& signature() const override { return inner_->signature(); }
  Result<std::vector<runtime::Tensor>> Run(const std::vector<runtime::Tensor>& inputs) override {
    if (failing_) {
      return Fail(ErrorCode::kModel, "the test made this run fail");
    }
    return inner_->Run(inputs);
  }

 private:
  std::unique_ptr<runtime::InferenceBackend> inner_;
  std::atomic<bool>& failing_;
};

// The health window: a committed version whose requests fail beyond the directive's error rate
// is rolled back by the agent on its own, to the version it replaced.
TEST_F(DeviceClientTest, AVersionThatFailsItsHealthWindowRollsBackOnItsOwn) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  Published v2 = Push(affine_dir(), "1.1.0", 2);
  // Only the second backend loaded (1.1.0's) fails, and only while `failing` is set.
  std::atomic<bool> failing{false};
  std::atomic<bool> healthy{false};
  int loaded = 0;
  StartDevice([&](std::unique_ptr<runtime::InferenceBackend> b) {
    return std::make_unique<FlakyBackend>(std::move(b), ++loaded == 2 ? failing : healthy);
  });
  Send(Directive(1, v1, 1, Channel(1, {&v1}), {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();

  trust::HealthLimits health{seconds(600), 0.05, 1000};
  Send(Directive(2, v2, 2, Channel(2, {&v2, &v1}), {&v2}, health));
  ASSERT_TRUE(WaitForModel("active", "1.1.0")) << Dump();
  failing = true;
  json request = {{"inputs", {{{"name", "x"}, {"shape", {1, 4}}, {"datatype", "FP32"},
                               {"data", {1, 1, 1, 1}}}}}};
  auto c = Client();
  // Failing requests until the agent has seen enough of them (10) to judge and rolls back;
  // from then on 1.0.0 answers.
  int failed = 0;
  for (int i = 0; i < 200 && Served() == "1.1.0"; ++i) {
    failed += c->Post("/v2/models/affine/infer", request.dump(), "application/json")->status != 200;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(failed, 10);
  ASSERT_TRUE(WaitForModel("rolled-back", "1.0.0")) << Dump();
  ASSERT_TRUE(State()->models[0].error);
  EXPECT_EQ(State()->models[0].error->code, "health");
  EXPECT_EQ(Served(), "1.0.0");
  auto r = c->Post("/v2/models/affine/infer", request.dump(), "application/json");
  EXPECT_EQ(r->status, 200) << r->body;
}

// Shadow mode: a candidate runs beside the served version on the same requests, its agreement is
// reported, the answers stay the served version's; a directive without the shadow entry stops it.
TEST_F(DeviceClientTest, AShadowCandidateIsComparedOnLiveRequestsAndReported) {
  Published v1 = Push(affine_dir(), "1.0.0", 1);
  Published v2 = Push(affine_dir(), "1.1.0", 2);
  StartDevice();
  auto channel = Channel(2, {&v2, &v1});
  Send(Directive(1, v1, 2, channel, {&v1}));
  ASSERT_TRUE(WaitForModel("active", "1.0.0")) << Dump();

  Send(Directive(2, v1, 2, channel, {&v1, &v2}, std::nullopt, &v2));
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->directive_version == 2 && s->models[0].shadow;
  }, seconds(60))) << Dump();
  EXPECT_EQ(State()->models[0].shadow->version, "1.1.0");
  EXPECT_EQ(State()->models[0].installed, (std::vector<std::string>{"1.0.0", "1.1.0"}));

  json request = {{"inputs", {{{"name", "x"}, {"shape", {1, 4}}, {"datatype", "FP32"},
                               {"data", {1, 2, 3, 4}}}}}};
  auto c = Client();
  for (int i = 0; i < 12; ++i) {
    auto r = c->Post("/v2/models/affine/infer", request.dump(), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["model_version"], "1.0.0");
  }
  // Reported on its own (at most every shadow_report_interval).
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->models[0].shadow && s->models[0].shadow->compared == 12;
  })) << Dump();
  EXPECT_EQ(State()->models[0].shadow->agreed, 12u);
  EXPECT_EQ(State()->models[0].shadow->release, v2.id.ToString());

  Send(Directive(3, v1, 2, channel, {&v1}));
  ASSERT_TRUE(WaitUntil([&] {
    auto s = State();
    return s && s->directive_version == 3 && !s->models[0].shadow;
  })) << Dump();
  EXPECT_FALSE(repo_->Find("affine").value()->shadow.load());
  EXPECT_EQ(Served(), "1.0.0");
}

TEST(ShadowAgreement, SameClassOrCloseValuesAgreeOthersDoNot) {
  auto scores = [](std::vector<float> v) {
    return airlock::testing::Fp32("scores", {2, 3}, std::move(v));
  };
  EXPECT_TRUE(OutputsAgree({scores({0.1f, 0.7f, 0.2f, 0.5f, 0.3f, 0.2f})},
                           {scores({0.2f, 0.5f, 0.3f, 0.9f, 0.05f, 0.05f})}));  // same classes
  EXPECT_FALSE(OutputsAgree({scores({0.1f, 0.7f, 0.2f, 0.5f, 0.3f, 0.2f})},
                            {scores({0.1f, 0.7f, 0.2f, 0.3f, 0.5f, 0.2f})}));  // row 2 differs
  auto single = [](float x) { return airlock::testing::Fp32("y", {1, 1}, {x}); };
  EXPECT_TRUE(OutputsAgree({single(1.0f)}, {single(1.005f)}));
  EXPECT_FALSE(OutputsAgree({single(1.0f)}, {single(1.5f)}));
  EXPECT_FALSE(OutputsAgree({single(1.0f)}, {airlock::testing::Fp32("z", {1, 1}, {1.0f})}));
}

}  // namespace
}  // namespace airlock::agent
