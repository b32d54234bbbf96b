#pragma once
// A managed device for tests (agent/device_client.hpp): the agent's store with an identity, a
// real Mosquitto, and a real Distribution registry standing in for the gateway's. The test signs
// the directives with the key the device pinned, as a gateway does, and watches dev/{dev}/state.
// Used by the device client's tests and by the attack suite (tests/attack/).

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_fixture.hpp"
#include "agent/device_client.hpp"
#include "agent/enrollment.hpp"
#include "core/fs.hpp"
#include "net/package_transfer.hpp"
#include "net/registry_client.hpp"
#include "pkg/package.hpp"
#include "support/mosquitto.hpp"
#include "support/registry.hpp"
#include "trust/directive.hpp"

namespace airlock::agent {

inline const std::string kDevice = "dev-00112233445566aa";
inline const std::string kRepository = "models/affine";

inline TimePoint WallNow() { return std::chrono::system_clock::now(); }

// Every line the process logs at info or above, from the first test on, for refusals that are
// only logged (a message that names no version the device can trust). Thread-safe (base_sink's
// mutex).
class CapturedLog final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // The one instance, added to the default logger the first time (and never removed: loggers
  // are not safe to change while other threads log).
  static CapturedLog& Get() {
    static std::shared_ptr<CapturedLog> log = [] {
      auto l = std::make_shared<CapturedLog>();
      spdlog::default_logger()->sinks().push_back(l);
      return l;
    }();
    return *log;
  }
  void Clear() {
    std::lock_guard lock(mutex_);
    lines_.clear();
  }
  // Whether a line holds both texts.
  bool Contains(const std::string& text, const std::string& also = "") {
    std::lock_guard lock(mutex_);
    for (const std::string& line : lines_) {
      if (line.find(text) != std::string::npos && line.find(also) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

// A release pushed to the registry.
struct Published {
  std::string version;
  std::uint64_t counter = 0;
  trust::SignedDocument doc;
  Digest id = Digest::FromHex(std::string(64, '0'));
  std::uint64_t size = 0;
  pkg::Package package;  // what was pushed: its index, manifests and layers
};

class DeviceFixture : public AgentFixture {
 protected:
  void SetUp() override {
    CapturedLog::Get().Clear();
    AgentFixture::SetUp();
    gateway_key_ = std::make_unique<PrivateKey>(PrivateKey::Generate().value());
    topics_ = delivery::DeviceTopics::Create().value();
    DeviceIdentity id;
    id.device_id = kDevice;
    id.gateway = GatewayUrl();
    id.mqtt_broker = broker_.url();
    id.mqtt_prefix = topics_->prefix();
    id.mqtt_username = kDevice;
    id.mqtt_password = "not-checked-by-this-broker";
    id.directive_key_pem = gateway_key_->public_key().ToPem();
    ASSERT_TRUE(MakeDirectories(IdentityDir(store_dir())));
    ASSERT_TRUE(WriteFileAtomic(IdentityDir(store_dir()) / "device.json", id.ToJson().dump()));
    PinRoot();

    net::MqttOptions o;
    o.broker_url = broker_.url();
    o.client_id = "gateway-under-test";
    observer_ = net::MqttClient::Create(o).value();
    ASSERT_TRUE(observer_->WaitConnected(std::chrono::seconds(10)));
    ASSERT_TRUE(observer_->Subscribe(Topic(delivery::DeviceTopicKind::kState), 1,
                                     [this](const net::MqttMessage& m) {
                                       auto j = delivery::ParsePayload(m.payload);
                                       auto s = j ? delivery::DeviceState::FromJson(*j)
                                                  : Result<delivery::DeviceState>(Fail(j.error()));
                                       ASSERT_TRUE(s) << s.error().ToString();
                                       std::lock_guard lock(mu_);
                                       EXPECT_GT(s->seq, last_seq_) << "seq must grow";
                                       last_seq_ = s->seq;
                                       state_ = *s;
                                     }));
    ASSERT_TRUE(observer_->Subscribe(Topic(delivery::DeviceTopicKind::kOnline), 1,
                                     [this](const net::MqttMessage& m) {
                                       std::lock_guard lock(mu_);
                                       online_ = m.payload;
                                     }));
  }

  void TearDown() override {
    client_.reset();
    AgentFixture::TearDown();
  }

  // Where the device reaches its gateway's registry.
  virtual std::string GatewayUrl() const { return "http://" + registry_.address(); }

  // Writes root_ as the root the device pinned at enrollment (read when the device starts).
  void PinRoot() {
    ASSERT_TRUE(WriteFileAtomic(IdentityDir(store_dir()) / "root.json", root_.Serialize().value()));
  }

  std::string Topic(delivery::DeviceTopicKind kind) const {
    return topics_->Topic(kind, kDevice).value();
  }

  // Packs, signs (at signed_at, by the publisher and then by each of cosigners_) and pushes a
  // version of the affine model.
  Published Push(const std::filesystem::path& project, const std::string& version,
                 std::uint64_t counter, bool validate = true, TimePoint signed_at = WallNow()) {
    auto spec = pkg::LoadPackSpec(project / "airlock.yaml");
    EXPECT_TRUE(spec) << spec.error().ToString();
    spec->version = version;
    return PushSpec(*spec, counter, validate, signed_at);
  }

  Published PushSpec(const pkg::PackSpec& spec, std::uint64_t counter, bool validate = true,
                     TimePoint signed_at = WallNow()) {
    std::filesystem::path tar = PackAndSign(spec, counter, validate, signed_at);
    for (const PrivateKey* key : cosigners_) {
      auto cosigned = pkg::SignPackage(tar, {*key}, pkg::SignOptions{});
      EXPECT_TRUE(cosigned) << cosigned.error().ToString();
    }
    net::RegistryOptions options;
    options.registry = registry_.address();
    auto client = net::RegistryClient::Create(options).value();
    auto pushed = net::PushPackage(*client, kRepository, tar, {});
    EXPECT_TRUE(pushed) << pushed.error().ToString();
    auto reader = pkg::LayoutReader::Open(tar);
    EXPECT_TRUE(reader) << reader.error().ToString();
    auto package = pkg::LoadPackage(**reader, spec.version);
    EXPECT_TRUE(package) << package.error().ToString();
    auto release = pkg::FindRelease(**reader, package->index_descriptor);
    EXPECT_TRUE(release && *release) << (release ? "no release" : release.error().ToString());
    Published p;
    p.version = spec.version;
    p.counter = counter;
    p.doc = **release;
    p.id = trust::ReleaseId(p.doc).value();
    p.size = std::filesystem::file_size(tar);
    p.package = std::move(*package);
    return p;
  }

  // The production channel at version, listing releases (the first is current), signed by
  // channel_signers_ (the publisher when there are none).
  trust::SignedDocument Channel(std::uint64_t version, const std::vector<const Published*>& list,
                                TimePoint expires = WallNow() + std::chrono::hours(24 * 30)) {
    trust::Channel c;
    c.model = "affine";
    c.name = "production";
    c.version = version;
    c.expires = expires;
    for (const Published* p : list) {
      c.releases.push_back({p->version, p->counter, p->id});
    }
    auto doc = trust::SignedDocument::Wrap(c.ToJson());
    if (channel_signers_.empty()) {
      EXPECT_TRUE(doc.Sign(*publisher_));
    }
    for (const PrivateKey* key : channel_signers_) {
      EXPECT_TRUE(doc.Sign(*key));
    }
    return doc;
  }

  // A directive message of version naming target on the channel at channel_version.
  delivery::DirectiveMessage Directive(std::uint64_t version, const Published& target,
                                       std::uint64_t channel_version,
                                       const trust::SignedDocument& channel,
                                       const std::vector<const Published*>& carried,
                                       std::optional<trust::HealthLimits> health = {},
                                       const Published* shadow = nullptr) {
    trust::Directive d;
    d.device = kDevice;
    d.version = version;
    d.issued =
        std::chrono::time_point_cast<std::chrono::seconds>(WallNow()) - std::chrono::seconds(60);
    d.expires = d.issued + std::chrono::hours(24);
    trust::DirectiveModel m;
    m.model = "affine";
    m.release = target.id;
    m.channel = "production";
    m.channel_version = channel_version;
    m.health = health;
    d.models = {m};
    if (shadow != nullptr) {
      trust::DirectiveModel sm = m;
      sm.mode = trust::DirectiveMode::kShadow;
      sm.release = shadow->id;
      sm.health.reset();
      d.models.push_back(sm);
    }
    delivery::DirectiveMessage message;
    message.envelope = {"msg" + std::to_string(version),
                        std::chrono::time_point_cast<std::chrono::seconds>(WallNow())};
    message.directive = trust::SignDirective(d, *gateway_key_).value();
    message.channels = {channel};
    for (const Published* p : carried) {
      message.releases.push_back(p->doc);
      message.packages.push_back({p->id.ToString(), kRepository, p->size});
    }
    return message;
  }

  void Send(const delivery::DirectiveMessage& message) { Send(message.ToJson().dump()); }
  void Send(const std::string& payload) {
    ASSERT_TRUE(observer_->Publish(Topic(delivery::DeviceTopicKind::kDirective), payload,
                                   {.qos = 1, .retained = true, .content_type = ""}));
  }

  // A message the device must refuse without reporting it, because it names no version the
  // device can trust (unreadable, or not signed by its gateway for it: a version read from it
  // would be anyone's to choose): waits until the device logs the refusal with why, and checks
  // that state/device.json (what it trusts, the refusal it reports) is unchanged.
  void ExpectRefusedUnreported(const std::string& payload, const std::string& why) {
    const std::string before = ReadFile(store_dir() / "state/device.json").value_or("");
    Send(payload);
    ASSERT_TRUE(airlock::testing::WaitUntil(
        [&] { return CapturedLog::Get().Contains("refused directive 0: ", why); },
        std::chrono::seconds(30)))
        << "expected the device to log the refusal for \"" << why << "\"";
    CapturedLog::Get().Clear();
    EXPECT_EQ(ReadFile(store_dir() / "state/device.json").value_or(""), before);
  }

  // Starts the repository (loading the versions the journals pin) and the device client, with
  // the options configure sets (the test's defaults otherwise).
  void StartDevice(BackendDecorator decorate = {},
                   const std::function<void(DeviceClientOptions&)>& configure = {}) {
    AgentConfig config;
    StartServer(config, std::move(decorate), [this](ModelRepository& repo) {
      ASSERT_TRUE(DeviceClient::PrepareRepository(store_dir(), repo));
    });
    DeviceClientOptions options;
    options.store = store_dir();
    options.platform = HostPlatform();
    options.health_interval = std::chrono::milliseconds(100);
    options.shadow_report_interval = std::chrono::milliseconds(200);
    if (configure) {
      configure(options);
    }
    auto identity = LoadIdentity(store_dir());
    ASSERT_TRUE(identity) << identity.error().ToString();
    auto c = DeviceClient::Start(options, *identity, *repo_);
    ASSERT_TRUE(c) << c.error().ToString();
    client_ = std::move(*c);
  }

  void StopDevice() {
    client_.reset();
    StopServer();
  }

  std::optional<delivery::DeviceState> State() {
    std::lock_guard lock(mu_);
    return state_;
  }

  // Waits until the device reports the model in phase with active_version.
  bool WaitForModel(const std::string& phase, const std::string& active,
                    std::chrono::seconds timeout = std::chrono::seconds(60)) {
    return airlock::testing::WaitUntil(
        [&] {
          auto s = State();
          return s && !s->models.empty() && s->models[0].phase == phase &&
                 s->models[0].active_version == active;
        },
        timeout);
  }

  std::string Served() {
    auto v = repo_->Find("affine");
    return v ? (*v)->version : "none";
  }

  std::string Dump() {
    auto s = State();
    return s ? s->ToJson().dump(2) : "no state";
  }

  airlock::testing::MosquittoBroker broker_;
  airlock::testing::DistributionRegistry registry_;
  std::unique_ptr<PrivateKey> gateway_key_;
  // Keys that sign each pushed release after the publisher, and that sign channel documents.
  std::vector<const PrivateKey*> cosigners_;
  std::vector<const PrivateKey*> channel_signers_;
  std::optional<delivery::DeviceTopics> topics_;
  std::unique_ptr<net::MqttClient> observer_;
  std::unique_ptr<DeviceClient> client_;
  std::mutex mu_;
  std::optional<delivery::DeviceState> state_;
  std::uint64_t last_seq_ = 0;
  std::string online_;
};

}  // namespace airlock::agent
