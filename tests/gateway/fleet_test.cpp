// The gateway's fleet service end to end: `airlock-gateway serve` as a process, a real Mosquitto,
// the fake hub delivering packages with their channel and rollout plan, and simulated devices —
// MQTT clients that enroll over the API and speak delivery::DeviceState (they run no model). The
// test plays each device's agent: it reads the retained directive, checks its signature against
// the directive key the device got at enrollment, and reports the phases an agent would.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "core/pki.hpp"
#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"
#include "gateway/gateway_fixture.hpp"
#include "gateway/serve_fixture.hpp"
#include "net/mqtt.hpp"
#include "support/mosquitto.hpp"
#include "support/promtool.hpp"
#include "support/test_support.hpp"
#include "trust/directive.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::CommandResult;
using airlock::testing::ReadAll;
using airlock::testing::RunCommand;
using airlock::testing::WaitUntil;
using airlock::testing::WriteAll;
constexpr auto kWait = std::chrono::seconds(30);
const std::string kPolicy = "  offers: auto\n  rollout_approval: auto\n";

// One device as the gateway sees it: its MQTT connection, the directives it received.
struct SimDevice {
  std::string id;
  std::map<std::string, std::string> labels;
  PublicKey directive_key = PrivateKey::Generate().value().public_key();
  std::unique_ptr<net::MqttClient> mqtt;
  std::mutex mu;
  std::vector<std::string> directives;  // every payload on dev/{id}/directive, in order
  std::uint64_t seq = 1'000;

  std::string Topic(const std::string& kind) const { return "airlock/v1/dev/" + id + "/" + kind; }
  std::optional<std::string> LastPayload() {
    std::lock_guard lock(mu);
    return directives.empty() ? std::nullopt : std::optional(directives.back());
  }
  // The latest directive, verified as an agent would (signature by the pinned key, device,
  // expiry); nullopt before one.
  std::optional<delivery::DirectiveMessage> Message() {
    auto payload = LastPayload();
    if (!payload || payload->empty()) {
      return std::nullopt;
    }
    auto message = delivery::DirectiveMessage::FromJson(json::parse(*payload));
    EXPECT_TRUE(message) << message.error().ToString();
    return message ? std::optional(*message) : std::nullopt;
  }
  std::optional<trust::Directive> Directive() {
    auto message = Message();
    if (!message) {
      return std::nullopt;
    }
    auto verified = trust::VerifyDirective(message->directive, directive_key, id, 0, Now());
    EXPECT_TRUE(verified) << verified.error().ToString();
    return verified ? std::optional(*verified) : std::nullopt;
  }
  std::uint64_t DirectiveVersion() {
    auto d = Directive();
    return d ? d->version : 0;
  }
  void Online(bool online) {
    ASSERT_TRUE(mqtt->Publish(Topic("online"), online ? "true" : "false",
                              {.qos = 1, .retained = true, .content_type = ""}));
  }
  // Reports phase on `active` for model vib, referring to the directive it holds now.
  void Report(const std::string& phase, const std::string& version, const std::string& release,
              std::optional<delivery::ReportError> error = std::nullopt,
              std::optional<std::uint64_t> with_seq = std::nullopt) {
    delivery::DeviceState s{
        .envelope = {.message_id = "s" + std::to_string(seq + 1), .sent_at = Now()},
        .device = id,
        .seq = with_seq ? *with_seq : ++seq,
        .platform = "linux/amd64",
        .directive_version = DirectiveVersion(),
        .refused_version = 0,
        .refused = std::nullopt,
        .models = {delivery::ModelReport{.model = "vib",
                                         .phase = phase,
                                         .active_version = version,
                                         .active_release = release,
                                         .target_version = "",
                                         .target_release = "",
                                         .installed = {},
                                         .shadow = std::nullopt,
                                         .error = std::move(error)}}};
    ASSERT_TRUE(mqtt->Publish(Topic("state"), s.ToJson().dump(),
                              {.qos = 1, .retained = true, .content_type = "application/json"}));
  }
};

// A version of model vib that the fake hub can deliver: its package, release and id.
struct Version {
  std::string version;
  TestPackage package;
  trust::SignedDocument release = trust::SignedDocument::Wrap(json::object());
  std::string id;  // the release id
};

class GatewayFleet : public GatewayProcessTest {
 protected:
  void SetUp() override {
    v09_ = MakeVersion("0.9.0", 1);
    v10_ = MakeVersion("1.0.0", 2);
    WriteAll(dir_ / "root.json", trust_.root_text);
    net::MqttOptions options;
    options.broker_url = broker_.url();
    options.client_id = "test-hub";
    auto hub = net::MqttClient::Create(options);
    ASSERT_TRUE(hub);
    hub_mqtt_ = std::move(*hub);
    ASSERT_TRUE(hub_mqtt_->WaitConnected(kWait));
    ASSERT_TRUE(hub_mqtt_->Subscribe("airlock/v1/gw/gw1/#", 1, [this](const net::MqttMessage& m) {
      std::lock_guard lock(mu_);
      if (m.topic.ends_with("/fleet")) {
        fleet_ = json::parse(m.payload, nullptr, false);
      } else if (m.topic.ends_with("/status")) {
        json j = json::parse(m.payload, nullptr, false);
        if (j.is_object() && j.value("state", "") == "available") {
          available_.insert(j.value("delivery_id", ""));
        }
      } else if (m.topic.ends_with("/ready")) {
        ready_.insert(json::parse(m.payload).value("delivery_id", ""));
      }
    }));
    StartGateway(Config(kPolicy));
    op_ = OperatorToken();
  }
  void TearDown() override {
    for (auto& d : devices_) {
      d->mqtt.reset();
    }
    GatewayProcessTest::TearDown();
  }

  Version MakeVersion(const std::string& version, std::uint64_t counter) {
    Version v;
    v.version = version;
    v.package =
        MakePackage("models/vib", version,
                    {R"({"format":"onnx","v":")" + version + "\"}", "weights of " + version});
    v.release = trust_.Release("vib", version, v.package, {"linux/amd64"}, counter);
    v.id = trust::ReleaseId(v.release).value().ToString();
    hub_.Add(v.package);
    return v;
  }

  httplib::Headers Auth() { return {{"Authorization", "Bearer " + op_}}; }

  // Enrolls a device with labels over the API and starts its connection to the broker (Connect
  // waits for them all: connecting takes a while, and the devices connect side by side).
  SimDevice& Enroll(std::map<std::string, std::string> labels) {
    auto api = Api();
    auto token = api.Post("/api/v1/devices/tokens", Auth(), json{{"labels", labels}}.dump(),
                          "application/json");
    EXPECT_TRUE(token && token->status == 201);
    auto key = pki::MakeKey().value();
    json request = {{"token", json::parse(token->body)["token"]},
                    {"csr", pki::MakeCsr(key, "sim").value()}};
    auto enrolled = api.Post("/api/v1/devices/enroll", request.dump(), "application/json");
    EXPECT_TRUE(enrolled && enrolled->status == 201) << (enrolled ? enrolled->body : "");
    json identity = json::parse(enrolled->body);
    auto device = std::make_unique<SimDevice>();
    device->id = identity["device_id"];
    device->labels = labels;
    device->directive_key =
        PublicKey::FromPem(identity["directive_key"].get<std::string>()).value();
    net::MqttOptions options;
    options.broker_url = broker_.url();
    options.client_id = device->id;
    options.will = net::MqttWill{
        .topic = device->Topic("online"), .payload = "false", .qos = 1, .retained = true};
    device->mqtt = net::MqttClient::Create(options).value();
    SimDevice* d = device.get();
    EXPECT_TRUE(device->mqtt->Subscribe(d->Topic("directive"), 1, [d](const net::MqttMessage& m) {
      std::lock_guard lock(d->mu);
      d->directives.push_back(m.payload);
    }));
    devices_.push_back(std::move(device));
    return *devices_.back();
  }

  // GET /api/v1/devices, by id.
  std::map<std::string, json> DeviceViews() {
    auto r = Api().Get("/api/v1/devices", Auth());
    std::map<std::string, json> out;
    if (r && r->status == 200) {
      json list = json::parse(r->body)["devices"];
      for (const json& d : list) {
        out[d["id"]] = d;
      }
    }
    return out;
  }
  // Waits until every device is connected, says it is online, and the gateway knows it.
  void Connect() {
    for (auto& d : devices_) {
      ASSERT_TRUE(d->mqtt->WaitConnected(kWait));
      d->Online(true);
    }
    ASSERT_TRUE(WaitUntil([&] { return AllOnline(); }, kWait)) << ReadAll(log_);
  }
  bool AllOnline() {
    auto views = DeviceViews();
    return std::all_of(devices_.begin(), devices_.end(), [&](const auto& d) {
      return views.contains(d->id) && views[d->id].value("online", false);
    });
  }

  // Offers and grants v for deployment as the hub would, with the channel document and the
  // deployment's rollout plan, and waits until the gateway has it available.
  void Deliver(const std::string& delivery_id, const std::string& deployment, const Version& v,
               const trust::SignedDocument& channel, const json& rollout) {
    std::uint64_t total = 0;
    for (const std::string& b : v.package.blobs) {
      total += b.size();
    }
    delivery::DeliveryOffer offer{.envelope = {.message_id = "o" + delivery_id, .sent_at = Now()},
                                  .delivery_id = delivery_id,
                                  .deployment_id = deployment,
                                  .model = "vib",
                                  .version = v.version,
                                  .release = v.release,
                                  .total_size = total,
                                  .platform_sizes = {{"linux/amd64", total}},
                                  .expires = Now() + std::chrono::hours(1),
                                  .channel = channel,
                                  .rollout = rollout};
    auto topics = delivery::Topics::Create().value();
    auto ready = [&] {
      std::lock_guard lock(mu_);
      return ready_.contains(delivery_id);
    };
    for (int i = 0; i < 10 && !ready(); ++i) {
      ASSERT_TRUE(hub_mqtt_->Publish(topics.Topic(delivery::TopicKind::kOffer, "gw1").value(),
                                     offer.ToJson().dump()));
      WaitUntil(ready, std::chrono::seconds(3));
    }
    ASSERT_TRUE(ready()) << ReadAll(log_);
    delivery::DeliveryGrant grant{.envelope = {.message_id = "g" + delivery_id, .sent_at = Now()},
                                  .delivery_id = delivery_id,
                                  .attempt = 1,
                                  .url_expires = Now() + std::chrono::hours(1),
                                  .blobs = {}};
    for (std::size_t i = 0; i + 2 < v.package.blobs.size(); ++i) {
      Digest d = Sha256Of(v.package.blobs[i]);
      grant.blobs.push_back({.digest = d,
                             .size = v.package.blobs[i].size(),
                             .media_type = "application/octet-stream",
                             .url = "/v2/models/vib/blobs/" + d.ToString() + "?expires=1&sig=ab"});
    }
    ASSERT_TRUE(
        hub_mqtt_->Publish(topics.Topic(delivery::TopicKind::kGrant, "gw1", delivery_id).value(),
                           grant.ToJson().dump()));
    ASSERT_TRUE(WaitUntil(
        [&] {
          std::lock_guard lock(mu_);
          return available_.contains(delivery_id);
        },
        kWait))
        << ReadAll(log_);
  }

  // Publishes the hub's rollout command for deployment on gw/{gateway}/rollout/command.
  void Command(const std::string& deployment, delivery::RolloutCommandKind kind,
               const std::string& message_id, TimePoint sent_at, const std::string& gateway = "gw1",
               const std::string& topic_gateway = "gw1") {
    delivery::RolloutCommand c{.envelope = {.message_id = message_id, .sent_at = sent_at},
                               .gateway = gateway,
                               .deployment_id = deployment,
                               .command = kind,
                               .reason = "by rm: line 3 is down"};
    SendCommandPayload(c.ToJson().dump(), topic_gateway);
  }
  void SendCommandPayload(const std::string& payload, const std::string& topic_gateway = "gw1") {
    auto topics = delivery::Topics::Create().value();
    ASSERT_TRUE(hub_mqtt_->Publish(
        topics.Topic(delivery::TopicKind::kRolloutCommand, topic_gateway).value(), payload));
  }
  // How often the gateway's log says it refused a rollout command.
  std::size_t Refusals() {
    std::string log = ReadAll(log_);
    std::size_t n = 0;
    for (std::size_t at = log.find("refused a rollout command"); at != std::string::npos;
         at = log.find("refused a rollout command", at + 1)) {
      ++n;
    }
    return n;
  }

  // The rollout of deployment in the latest gw/gw1/fleet message.
  json FleetRollout(const std::string& deployment) {
    std::lock_guard lock(mu_);
    if (fleet_.is_object() && fleet_.contains("rollouts")) {
      for (const json& r : fleet_["rollouts"]) {
        if (r.value("deployment", "") == deployment) {
          return r;
        }
      }
    }
    return nullptr;
  }
  bool FleetSays(const std::string& deployment, const std::string& state,
                 const std::string& status = "", std::size_t count = 0) {
    json r = FleetRollout(deployment);
    return r.is_object() && r["state"] == state &&
           (status.empty() || r["devices"][status].get<std::size_t>() == count);
  }

  // Two waves (a canary, then the rest), no health window, and extra's keys.
  static json Strategy(const json& extra = json::object()) {
    json s = {
        {"waves", json::array({"1", "100%"})}, {"health_window", "0s"}, {"max_in_flight", 10}};
    if (extra.is_object()) {
      s.update(extra);
    }
    return s;
  }

  std::string op_;
  Version v09_, v10_;
  std::unique_ptr<net::MqttClient> hub_mqtt_;
  std::mutex mu_;
  json fleet_;
  std::set<std::string> ready_, available_;
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

const std::string kDlv1 = "dlv-" + std::string(32, '1');
const std::string kDlv2 = "dlv-" + std::string(32, '2');
const std::string kDep1 = "dep-00000000000000a1";
const std::string kDep2 = "dep-00000000000000a2";

// The devices of this rollout, the canary first (ids sort as the gateway orders online devices).
std::vector<SimDevice*> Sorted(std::vector<SimDevice*> devices) {
  std::sort(devices.begin(), devices.end(),
            [](const SimDevice* a, const SimDevice* b) { return a->id < b->id; });
  return devices;
}

TEST_F(GatewayFleet, DirectsDevicesWaveByWaveAndReportsTheFleet) {
  auto d = Sorted({&Enroll({{"line", "3"}}), &Enroll({{"line", "3"}}), &Enroll({{"line", "3"}})});
  SimDevice& other = Enroll({{"line", "4"}});
  Connect();

  auto channel = trust_.Channel("vib", "production", 1, {v10_.release});
  Deliver(kDlv1, kDep1, v10_, channel,
          {{"selector", {{"line", "3"}}}, {"strategy", Strategy({{"failure_threshold", "2"}})}});
  // Wave 1, the canary: a directive signed by the gateway's key, with everything it rests on.
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "running", "directed", 1); }, kWait));
  EXPECT_EQ(FleetRollout(kDep1)["devices"]["pending"], 2);
  EXPECT_FALSE(d[1]->LastPayload());
  EXPECT_FALSE(d[2]->LastPayload());
  auto directive = *d[0]->Directive();
  EXPECT_EQ(directive.version, 1u);
  ASSERT_EQ(directive.models.size(), 1u);
  EXPECT_EQ(directive.models[0].model, "vib");
  EXPECT_EQ(directive.models[0].mode, trust::DirectiveMode::kActive);
  EXPECT_EQ(directive.models[0].release.ToString(), v10_.id);
  EXPECT_EQ(directive.models[0].channel, "production");
  EXPECT_EQ(directive.models[0].channel_version, 1u);
  EXPECT_FALSE(directive.models[0].health);  // a health window of 0s
  EXPECT_GE(directive.expires - directive.issued, std::chrono::hours(24 * 29));
  auto message = *d[0]->Message();
  ASSERT_EQ(message.channels.size(), 1u);
  ASSERT_EQ(message.releases.size(), 1u);
  EXPECT_EQ(trust::ReleaseId(message.releases[0]).value().ToString(), v10_.id);
  ASSERT_TRUE(message.PackageOf(v10_.id));
  EXPECT_EQ(message.PackageOf(v10_.id)->repository, "models/vib");
  // What the agent does with it: the channel and release check out against the root.
  auto root = trust::VerifyRoot(trust::SignedDocument::Parse(trust_.root_text).value(), Now());
  ASSERT_TRUE(root);
  EXPECT_TRUE(trust::CheckDirectiveModel(directive.models[0], message.channels[0],
                                         message.releases[0], *root, Now(), 0, "linux/amd64"));

  // The canary activates: wave 2 is directed; when they are active the rollout is complete.
  d[0]->Report("downloading", "", "");
  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return d[1]->Directive() && d[2]->Directive(); }, kWait))
      << ReadAll(log_);
  d[1]->Report("active", "1.0.0", v10_.id);
  d[2]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 3); }, kWait))
      << FleetRollout(kDep1).dump() << ReadAll(log_);
  EXPECT_EQ(FleetRollout(kDep1)["devices"]["total"], 3);
  EXPECT_EQ(FleetRollout(kDep1)["target"]["release"], v10_.id);
  // Down to each device, in a message the hub's parser takes.
  ASSERT_EQ(FleetRollout(kDep1)["device_status"].size(), 3u);
  EXPECT_EQ(FleetRollout(kDep1)["device_status"][0]["status"], "done");
  {
    std::lock_guard lock(mu_);
    auto parsed = delivery::FleetReport::FromJson(fleet_);
    EXPECT_TRUE(parsed) << parsed.error().ToString();
  }
  EXPECT_FALSE(other.LastPayload());  // not selected

  // The operator sees it over the API and the CLI, and each device's model.
  auto shown = Api().Get("/api/v1/rollouts/" + kDep1, Auth());
  ASSERT_TRUE(shown && shown->status == 200);
  json view = json::parse(shown->body);
  EXPECT_EQ(view["state"], "complete");
  ASSERT_EQ(view["by_device"].size(), 3u);
  EXPECT_EQ(view["by_device"][0]["id"], d[0]->id);
  EXPECT_EQ(view["by_device"][0]["wave"], 1);
  EXPECT_EQ(view["by_device"][2]["status"], "done");
  CommandResult ls = Cli(op_, {"rollouts", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(kDep1), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("complete"), std::string::npos) << ls.out;
  CommandResult show = Cli(op_, {"rollouts", "show", kDep1});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find(d[2]->id), std::string::npos) << show.out;
  auto views = DeviceViews();
  EXPECT_EQ(views[d[0]->id]["models"][0]["active_version"], "1.0.0");
  EXPECT_EQ(views[d[0]->id]["models"][0]["phase"], "active");
  CommandResult devices = Cli(op_, {"devices", "ls"});
  EXPECT_NE(devices.out.find("vib@1.0.0(active)"), std::string::npos) << devices.out;

  // A replayed state (an old seq) is dropped: the device's stored state does not change. What
  // the same device publishes next is handled after it, in order.
  d[0]->Report("failed", "", "", delivery::ReportError{"x", "replayed"}, 1'000);
  d[0]->Online(false);
  ASSERT_TRUE(WaitUntil([&] { return !DeviceViews()[d[0]->id].value("online", true); }, kWait));
  views = DeviceViews();
  EXPECT_EQ(views[d[0]->id]["models"][0]["phase"], "active");
  EXPECT_EQ(
      json::parse(Api().Get("/api/v1/rollouts/" + kDep1, Auth())->body)["by_device"][0]["status"],
      "done");
}

// What Prometheus scrapes from `airlock-gateway serve` in the middle of a rollout, with the token
// an operator makes for it: the delivery, the rollout and its devices, the enrolled devices, the
// cache, both broker connections; and a text promtool accepts without a lint problem.
TEST_F(GatewayFleet, TheMetricsShowTheDeliveryTheRolloutItsDevicesAndTheCache) {
  auto d = Sorted({&Enroll({{"line", "3"}}), &Enroll({{"line", "3"}}), &Enroll({{"line", "3"}})});
  Enroll({{"line", "4"}});
  Connect();
  Deliver(kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
          {{"selector", {{"line", "3"}}}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "running", "directed", 1); }, kWait))
      << ReadAll(log_);

  CommandResult made =
      RunCommand({AIRLOCK_GATEWAY_BINARY, "token", "create", "--name", "prometheus", "--role",
                  "metrics", "--config", (dir_ / "gateway.yaml").string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string token = made.out.substr(0, made.out.find('\n'));
  EXPECT_EQ(RunCommand({AIRLOCK_GATEWAY_BINARY, "token", "create", "--name", "x", "--role", "admin",
                        "--config", (dir_ / "gateway.yaml").string()})
                .exit_code,
            2);
  httplib::Headers prometheus = {{"Authorization", "Bearer " + token}};
  auto api = Api();
  EXPECT_EQ(api.Get("/metrics")->status, 401);
  EXPECT_EQ(api.Get("/api/v1/rollouts", prometheus)->status, 403);
  auto scraped = api.Get("/metrics", prometheus);
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200) << scraped->body;
  const std::string& text = scraped->body;
  std::uint64_t bytes = 0;
  for (const std::string& b : v10_.package.blobs) {
    bytes += b.size();
  }
  for (const std::string& line : {
           std::string("airlock_gateway_deliveries{state=\"available\"} 1\n"),
           std::string("airlock_gateway_deliveries{state=\"downloading\"} 0\n"),
           std::string("airlock_gateway_approvals_pending{kind=\"rollout\"} 0\n"),
           std::string("airlock_gateway_rollouts{state=\"running\"} 1\n"),
           std::string("airlock_gateway_rollouts{state=\"complete\"} 0\n"),
           // The canary is directed, the two others of line 3 wait for wave 2.
           std::string("airlock_gateway_rollout_devices{status=\"directed\"} 1\n"),
           std::string("airlock_gateway_rollout_devices{status=\"pending\"} 2\n"),
           std::string("airlock_gateway_rollout_devices{status=\"done\"} 0\n"),
           std::string("\nairlock_gateway_rollout_devices_offline 0\n"),
           std::string("airlock_gateway_devices{state=\"enrolled\"} 4\n"),
           std::string("\nairlock_gateway_devices_online 4\n"),
           "\nairlock_gateway_cache_bytes " + std::to_string(bytes) + "\n",
           "\nairlock_gateway_cache_blobs " + std::to_string(v10_.package.blobs.size()) + "\n",
           std::string("\nairlock_gateway_downloads_running 0\n"),
           std::string("airlock_mqtt_connected{connection=\"hub\"} 1\n"),
           std::string("airlock_mqtt_connected{connection=\"devices\"} 1\n"),
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  for (const char* family : {"airlock_gateway_delivery_queue_depth",
                             "airlock_gateway_fleet_queue_depth", "airlock_http_requests_total"}) {
    EXPECT_NE(text.find(std::string("\n") + family + " "), std::string::npos) << family;
  }
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(text));

  // The canary activates: done, and wave 2 directed.
  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string now = api.Get("/metrics", prometheus)->body;
        return now.find("airlock_gateway_rollout_devices{status=\"done\"} 1\n") !=
                   std::string::npos &&
               now.find("airlock_gateway_rollout_devices{status=\"directed\"} 2\n") !=
                   std::string::npos;
      },
      kWait))
      << api.Get("/metrics", prometheus)->body;
}

TEST_F(GatewayFleet, FailuresAtTheThresholdAbortAndDevicesGoBackToTheirPreviousRelease) {
  auto d = Sorted({&Enroll({}), &Enroll({}), &Enroll({})});
  Connect();
  // 0.9.0 everywhere first.
  Deliver(
      kDlv1, kDep1, v09_, trust_.Channel("vib", "production", 1, {v09_.release}),
      {{"selector", json::object()}, {"strategy", Strategy({{"waves", json::array({"100%"})}})}});
  ASSERT_TRUE(
      WaitUntil([&] { return d[0]->Directive() && d[1]->Directive() && d[2]->Directive(); }, kWait))
      << ReadAll(log_);
  for (SimDevice* s : d) {
    s->Report("active", "0.9.0", v09_.id);
  }
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 3); }, kWait));

  // 1.0.0, whose channel still lists 0.9.0 as the rollback target; two failures abort it.
  Deliver(kDlv2, kDep2, v10_, trust_.Channel("vib", "production", 2, {v10_.release, v09_.release}),
          {{"selector", json::object()},
           {"strategy", Strategy({{"waves", json::array({"100%"})},
                                  {"failure_threshold", "2"},
                                  {"health_window", "1h"}})}});
  auto directed_to = [](SimDevice* s, const std::string& release) {
    auto directive = s->Directive();
    return directive && directive->models.size() == 1 &&
           directive->models[0].release.ToString() == release;
  };
  ASSERT_TRUE(WaitUntil(
      [&] {
        return std::all_of(d.begin(), d.end(),
                           [&](SimDevice* s) { return directed_to(s, v10_.id); });
      },
      kWait))
      << ReadAll(log_);
  auto to_new = *d[0]->Directive();
  EXPECT_EQ(to_new.version, 2u);
  EXPECT_EQ(to_new.models[0].channel_version, 2u);
  ASSERT_TRUE(to_new.models[0].health);
  EXPECT_EQ(to_new.models[0].health->window, std::chrono::hours(1));

  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "running", "health-window", 1); }, kWait));
  d[1]->Report("rolled-back", "0.9.0", v09_.id,
               delivery::ReportError{"samples-mismatch", "sample 3 differs"});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "running", "failed", 1); }, kWait));
  d[2]->Report("failed", "0.9.0", v09_.id, delivery::ReportError{"load", "out of memory"});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "aborted", "failed", 2); }, kWait))
      << FleetRollout(kDep2).dump() << ReadAll(log_);
  json aborted = FleetRollout(kDep2);
  EXPECT_EQ(aborted["failures"], 2);
  EXPECT_NE(aborted["reason"].get<std::string>().find("out of memory"), std::string::npos)
      << aborted;
  // Every device is directed back to 0.9.0, named by the channel document that still lists it.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return std::all_of(d.begin(), d.end(),
                           [&](SimDevice* s) { return directed_to(s, v09_.id); });
      },
      kWait))
      << ReadAll(log_);
  auto back = *d[0]->Directive();
  EXPECT_EQ(back.version, 3u);
  EXPECT_EQ(back.models[0].channel_version, 2u);
  EXPECT_FALSE(back.models[0].health);
  EXPECT_EQ(d[0]->Message()->PackageOf(v09_.id)->repository, "models/vib");
  // The updated device goes back; the rollout follows it to rolled-back.
  d[0]->Report("active", "0.9.0", v09_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "aborted", "rolled-back", 1); }, kWait));
}

// The hub cancelling the delivery (its deployment was cancelled while the gateway already held
// the package) cancels the rollout too: nobody new is directed.
TEST_F(GatewayFleet, AHubCancelStopsTheRollout) {
  auto d = Sorted({&Enroll({}), &Enroll({})});
  Connect();
  Deliver(kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);
  delivery::DeliveryCancel cancel{.envelope = {.message_id = "c" + kDlv1, .sent_at = Now()},
                                  .delivery_id = kDlv1,
                                  .reason = "deployment cancelled by rm"};
  auto topics = delivery::Topics::Create().value();
  ASSERT_TRUE(hub_mqtt_->Publish(topics.Topic(delivery::TopicKind::kCancel, "gw1", kDlv1).value(),
                                 cancel.ToJson().dump()));
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "cancelled"); }, kWait)) << ReadAll(log_);
  EXPECT_NE(FleetRollout(kDep1)["reason"].get<std::string>().find("the hub"), std::string::npos)
      << FleetRollout(kDep1).dump();
  d[0]->Report("active", "1.0.0", v10_.id);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(d[1]->LastPayload());
}

TEST_F(GatewayFleet, PauseResumeAndCancelOverTheApi) {
  auto d = Sorted({&Enroll({}), &Enroll({}), &Enroll({})});
  Connect();
  Deliver(kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);

  auto api = Api();
  auto paused = api.Post("/api/v1/rollouts/" + kDep1 + "/pause", Auth(), "", "application/json");
  ASSERT_TRUE(paused);
  ASSERT_EQ(paused->status, 200) << paused->body;
  EXPECT_EQ(json::parse(paused->body)["state"], "paused");
  auto again = api.Post("/api/v1/rollouts/" + kDep1 + "/pause", Auth(), "", "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409) << again->body;
  // The canary carries on and is done; nobody new is directed while paused.
  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "paused", "done", 1); }, kWait));
  EXPECT_FALSE(d[1]->LastPayload());
  EXPECT_EQ(FleetRollout(kDep1)["devices"]["pending"], 2);

  CommandResult resumed = Cli(op_, {"rollouts", "resume", kDep1});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("running"), std::string::npos) << resumed.out;
  ASSERT_TRUE(WaitUntil([&] { return d[1]->Directive() && d[2]->Directive(); }, kWait));

  CommandResult cancelled = Cli(op_, {"rollouts", "cancel", kDep1});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "cancelled"); }, kWait));
  EXPECT_NE(FleetRollout(kDep1)["reason"].get<std::string>().find("olga"), std::string::npos);
  EXPECT_NE(Cli(op_, {"rollouts", "resume", kDep1}).exit_code, 0);
  // Reports change nothing now; unknown deployments and anonymous callers are refused.
  d[1]->Report("active", "1.0.0", v10_.id);
  auto unknown =
      api.Post("/api/v1/rollouts/dep-00000000ffffffff/pause", Auth(), "", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto anonymous = api.Get("/api/v1/rollouts");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
}

// The hub's pause (gw/gw1/rollout/command) holds the next wave, across a restart of the gateway;
// forged, malformed, repeated and older commands change nothing; its resume finishes the rollout.
TEST_F(GatewayFleet, TheHubsPauseHoldsTheNextWaveUntilItsResume) {
  using delivery::RolloutCommandKind;
  auto d = Sorted({&Enroll({}), &Enroll({}), &Enroll({})});
  Connect();
  Deliver(kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);

  TimePoint t0 = Now();
  Command(kDep1, RolloutCommandKind::kPause, "pause-1", t0);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "paused"); }, kWait)) << ReadAll(log_);
  EXPECT_NE(ReadAll(log_).find("by the hub (by rm: line 3 is down)"), std::string::npos);
  // The canary carries on to done; the next wave waits.
  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "paused", "done", 1); }, kWait));

  // Refused and logged: a resume addressed to another gateway, malformed JSON, a payload of the
  // wrong type, an unknown command. A resume older than the pause, and the pause again, are
  // dropped as stale and repeated.
  Command(kDep1, RolloutCommandKind::kResume, "forged-1", t0 + std::chrono::seconds(5), "gw2");
  SendCommandPayload("{\"type\": \"rollout.command\",");
  SendCommandPayload(json{{"type", "delivery.cancel"}, {"message_id", "x1"}}.dump());
  json unknown = delivery::RolloutCommand{.envelope = {.message_id = "odd-1", .sent_at = t0},
                                          .gateway = "gw1",
                                          .deployment_id = kDep1,
                                          .command = RolloutCommandKind::kResume,
                                          .reason = ""}
                     .ToJson();
  unknown["command"] = "resume-now";
  SendCommandPayload(unknown.dump());
  Command(kDep1, RolloutCommandKind::kResume, "stale-1", t0 - std::chrono::seconds(60));
  Command(kDep1, RolloutCommandKind::kPause, "pause-1", t0);
  ASSERT_TRUE(WaitUntil([&] { return Refusals() >= 4; }, kWait)) << ReadAll(log_);
  std::string log = ReadAll(log_);
  EXPECT_NE(log.find("addressed to gateway gw2"), std::string::npos) << log;
  EXPECT_NE(log.find("\"command\""), std::string::npos) << log;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(FleetSays(kDep1, "paused", "pending", 2));
  EXPECT_FALSE(d[1]->LastPayload());

  // Still paused after a restart.
  StopGateway(SIGKILL);
  std::filesystem::path first_log = log_;
  StartGateway(Config(kPolicy), "");
  ASSERT_TRUE(WaitUntil([&] { return ReadAll(log_).find("rollouts loaded") != std::string::npos; },
                        kWait))
      << ReadAll(log_);
  auto shown = Api().Get("/api/v1/rollouts/" + kDep1, Auth());
  ASSERT_TRUE(shown);
  EXPECT_EQ(json::parse(shown->body)["state"], "paused") << shown->body;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(d[1]->LastPayload());

  Command(kDep1, RolloutCommandKind::kResume, "resume-1", t0 + std::chrono::seconds(1));
  ASSERT_TRUE(WaitUntil([&] { return d[1]->Directive() && d[2]->Directive(); }, kWait))
      << ReadAll(first_log) << "\n---- restarted ----\n"
      << ReadAll(log_);
  d[1]->Report("active", "1.0.0", v10_.id);
  d[2]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 3); }, kWait))
      << ReadAll(log_);
}

// A pause (or cancel) from the hub that arrives before the package: the rollout starts paused
// (or cancelled) when the package is available, directing no one.
TEST_F(GatewayFleet, ARolloutThatTheHubPausedBeforeItStartedStartsPaused) {
  using delivery::RolloutCommandKind;
  auto d = Sorted({&Enroll({}), &Enroll({})});
  Connect();
  Command(kDep1, RolloutCommandKind::kPause, "pause-early", Now());
  Command(kDep2, RolloutCommandKind::kCancel, "cancel-early", Now());
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string log = ReadAll(log_);
        return log.find("pause of " + kDep1 + " is kept") != std::string::npos &&
               log.find("cancel of " + kDep2 + " is kept") != std::string::npos;
      },
      kWait))
      << ReadAll(log_);

  Deliver(kDlv1, kDep1, v09_, trust_.Channel("vib", "production", 1, {v09_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "paused", "pending", 2); }, kWait))
      << ReadAll(log_);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(d[0]->LastPayload());
  Command(kDep1, RolloutCommandKind::kResume, "resume-later", Now() + std::chrono::seconds(1));
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);

  // The cancelled deployment's rollout is made cancelled (it supersedes kDep1's, as any newer
  // deployment of the model does), and directs no one.
  Deliver(kDlv2, kDep2, v10_, trust_.Channel("vib", "production", 2, {v10_.release, v09_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep2, "cancelled"); }, kWait)) << ReadAll(log_);
  EXPECT_NE(FleetRollout(kDep2)["reason"].get<std::string>().find("the hub"), std::string::npos);
  EXPECT_EQ(d[1]->LastPayload(), std::nullopt);
}

TEST_F(GatewayFleet, AGatewayRestartedMidRolloutCarriesOn) {
  auto d = Sorted({&Enroll({}), &Enroll({}), &Enroll({})});
  Connect();
  Deliver(kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
          {{"selector", json::object()}, {"strategy", Strategy()}});
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive().has_value(); }, kWait)) << ReadAll(log_);

  // Killed; the canary activates meanwhile (its retained state waits on the broker).
  StopGateway(SIGKILL);
  std::filesystem::path first_log = log_;
  d[0]->Report("active", "1.0.0", v10_.id);
  StartGateway(Config(kPolicy), "");
  ASSERT_TRUE(WaitUntil([&] { return d[1]->Directive() && d[2]->Directive(); }, kWait))
      << ReadAll(first_log) << "\n---- restarted ----\n"
      << ReadAll(log_);
  d[1]->Report("active", "1.0.0", v10_.id);
  d[2]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 3); }, kWait))
      << ReadAll(log_);
  // One rollout, and no device was directed twice.
  for (SimDevice* s : d) {
    EXPECT_EQ(s->DirectiveVersion(), 1u) << s->id;
  }
  auto listed = Api().Get("/api/v1/rollouts", Auth());
  ASSERT_TRUE(listed);
  EXPECT_EQ(json::parse(listed->body)["rollouts"].size(), 1u);
}

TEST_F(GatewayFleet, ARevokedDeviceLosesItsDirectiveAndLeavesTheRollout) {
  auto d = Sorted({&Enroll({}), &Enroll({})});
  Connect();
  Deliver(
      kDlv1, kDep1, v10_, trust_.Channel("vib", "production", 1, {v10_.release}),
      {{"selector", json::object()}, {"strategy", Strategy({{"waves", json::array({"100%"})}})}});
  ASSERT_TRUE(WaitUntil([&] { return d[0]->Directive() && d[1]->Directive(); }, kWait))
      << ReadAll(log_);

  CommandResult revoked = Cli(op_, {"devices", "revoke", d[1]->id});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  // The empty retained message clears the directive on the broker.
  ASSERT_TRUE(WaitUntil([&] { return d[1]->LastPayload() == std::string(); }, kWait))
      << ReadAll(log_);
  ASSERT_TRUE(WaitUntil([&] { return FleetRollout(kDep1)["devices"]["total"] == 1; }, kWait));
  // A new subscriber finds no directive for it, and what it reports is ignored.
  {
    std::mutex mu;
    std::vector<std::string> got;
    net::MqttOptions options;
    options.broker_url = broker_.url();
    options.client_id = "late-reader";
    auto reader = net::MqttClient::Create(options).value();
    ASSERT_TRUE(reader->WaitConnected(kWait));
    auto keep = [&](const net::MqttMessage& m) {
      std::lock_guard lock(mu);
      got.push_back(m.topic);
    };
    // The broker sends a subscription's retained message before it answers the next one's: once
    // the other device's directive is here, the revoked one's would have come first.
    ASSERT_TRUE(reader->Subscribe(d[1]->Topic("directive"), 1, keep));
    ASSERT_TRUE(reader->Subscribe(d[0]->Topic("directive"), 1, keep));
    ASSERT_TRUE(WaitUntil([&] {
      std::lock_guard lock(mu);
      return !got.empty();
    }));
    std::lock_guard lock(mu);
    EXPECT_EQ(got, std::vector<std::string>{d[0]->Topic("directive")});
  }
  d[1]->Report("active", "1.0.0", v10_.id);
  d[0]->Report("active", "1.0.0", v10_.id);
  ASSERT_TRUE(WaitUntil([&] { return FleetSays(kDep1, "complete", "done", 1); }, kWait))
      << ReadAll(log_);
  EXPECT_EQ(DeviceViews()[d[1]->id]["models"].size(), 0u);
}

}  // namespace
}  // namespace airlock::gateway
