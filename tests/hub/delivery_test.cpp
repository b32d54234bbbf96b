// The hub's delivery orchestrator end to end, on SQLite and on PostgreSQL: a real Mosquitto, the
// hub in-process (with the fixture's clock, which the tests move to run timers), and a gateway
// scripted here over net::MqttClient. The gateway downloads every granted URL from the hub over
// HTTP and checks it against the grant's digests and sizes.

#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>

#include "core/fs.hpp"
#include "delivery/protocol.hpp"
#include "hub_fixture.hpp"
#include "net/mqtt.hpp"
#include "support/mosquitto.hpp"
#include "support/promtool.hpp"
#include "trust/documents.hpp"

namespace airlock::hub {
namespace {

using delivery::TopicKind;
using nlohmann::json;
using airlock::testing::WaitUntil;

constexpr auto kLong = std::chrono::seconds(30);

// A gateway as the test scripts it: it records what the hub sends it and publishes what the test
// tells it to.
class FakeGateway {
 public:
  FakeGateway(std::string name, const std::string& broker)
      : name_(std::move(name)), topics_(*delivery::Topics::Create()) {
    net::MqttOptions options;
    options.broker_url = broker;
    options.client_id = "fake-" + name_;
    options.version = net::MqttVersion::kV5;
    options.persistent_session = true;
    client_ = std::move(*net::MqttClient::Create(options));
    EXPECT_TRUE(client_->WaitConnected(kLong));
    std::vector<std::string> filters = topics_.GatewaySubscriptions(name_).value();
    filters.push_back(topics_.Topic(TopicKind::kRolloutCommand, name_).value());
    for (const auto& filter : filters) {
      EXPECT_TRUE(client_->Subscribe(filter, 1, [this](const net::MqttMessage& m) {
        auto address = topics_.Parse(m.topic);
        std::lock_guard lock(mu_);
        if (address) {
          received_.push_back({address->kind, json::parse(m.payload, nullptr, false)});
        }
      }));
    }
  }

  // The payloads of kind received so far.
  std::vector<json> Received(TopicKind kind) {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& [k, payload] : received_) {
      if (k == kind) {
        out.push_back(payload);
      }
    }
    return out;
  }
  // Waits for the n-th (1-based) message of kind and returns it; null after the deadline.
  json WaitFor(TopicKind kind, std::size_t n = 1) {
    json out;
    WaitUntil(
        [&] {
          auto all = Received(kind);
          if (all.size() >= n) {
            out = all[n - 1];
            return true;
          }
          return false;
        },
        kLong);
    return out;
  }

  // Publishes payload on this gateway's topic of kind for delivery id.
  void Send(TopicKind kind, const std::string& id, const json& payload,
            const std::string& as_gateway = "") {
    auto topic = topics_.Topic(kind, as_gateway.empty() ? name_ : as_gateway, id);
    ASSERT_TRUE(topic);
    ASSERT_TRUE(client_->Publish(*topic, payload.dump()));
  }

  static delivery::Envelope Envelope() {
    static std::atomic<int> counter{0};
    return {.message_id = "m-" + std::to_string(++counter) + "-" +
                          std::to_string(::getpid()),
            .sent_at = std::chrono::time_point_cast<std::chrono::seconds>(
                std::chrono::system_clock::now())};
  }
  static json Ready(const std::string& id, std::vector<std::string> platforms) {
    return delivery::DeliveryReady{.envelope = Envelope(),
                                   .delivery_id = id,
                                   .free_bytes = 1ULL << 30,
                                   .platforms = std::move(platforms)}
        .ToJson();
  }
  static json Status(const std::string& id, delivery::GatewayState state, std::uint32_t attempt,
                     std::uint64_t done, std::uint64_t total,
                     std::optional<delivery::DeliveryFailure> error = std::nullopt) {
    return delivery::DeliveryStatus{.envelope = Envelope(),
                                    .delivery_id = id,
                                    .state = state,
                                    .attempt = attempt,
                                    .bytes_done = done,
                                    .bytes_total = total,
                                    .error = std::move(error)}
        .ToJson();
  }

 private:
  std::string name_;
  delivery::Topics topics_;
  std::mutex mu_;
  std::vector<std::pair<TopicKind, json>> received_;
  std::unique_ptr<net::MqttClient> client_;  // last: no handler runs once it is gone
};

std::vector<PrivateKey> Keys(int n) {
  std::vector<PrivateKey> keys;
  for (int i = 0; i < n; ++i) {
    keys.push_back(PrivateKey::Generate().value());
  }
  return keys;
}

class DeliveryTest : public HubFixture {
 protected:
  std::vector<PrivateKey> root_keys_ = Keys(1), publishers_ = Keys(1), managers_ = Keys(1);
  trust::Root root_;
  airlock::testing::MosquittoBroker broker_;
  delivery::Policy policy_;  // what Configure gives the hub

  void Configure(HubConfig& config) override {
    config.mqtt.broker = broker_.url();
    config.mqtt.client_id = "hub-under-test";
    config.delivery = policy_;
  }

  void SetUp() override {
    root_.version = 1;
    root_.expires = clock_.Now() + std::chrono::hours(24 * 365);
    auto role = [&](std::string_view name, const std::vector<PrivateKey>& keys) {
      trust::RoleSpec spec;
      for (const auto& k : keys) {
        root_.keys.emplace(k.id(), k.public_key());
        spec.keyids.push_back(k.id());
      }
      spec.threshold = 1;
      root_.roles.emplace(std::string(name), spec);
    };
    role(trust::kRoleRoot, root_keys_);
    role(trust::kRolePublisher, publishers_);
    role(trust::kRoleReleaseManager, managers_);
    auto doc = trust::SignedDocument::Wrap(root_.ToJson());
    ASSERT_TRUE(doc.Sign(root_keys_[0]));
    root_path_ = dir_ / "root.json";
    ASSERT_TRUE(WriteFileAtomic(root_path_, doc.Serialize().value()));
    HubFixture::SetUp();
    ASSERT_TRUE(hub_->orchestrator() != nullptr);
    ASSERT_TRUE(hub_->mqtt()->WaitConnected(kLong));
  }

  // Pushes version 1.0.0 of "demo" for linux/amd64 and linux/arm64/v8, releases it and promotes
  // it to production; registers the gateways. Returns the package's blobs by platform.
  void Publish(const std::vector<std::string>& gateways) {
    auto variant = [&](const std::string& arch) {
      std::string config = json{{"descriptor", {{"name", "demo"}, {"version", "1.0.0"}}},
                                 {"config", {{"format", "onnx"}}},
                                 {"arch", arch}}
                               .dump();
      std::string layer = "weights for " + arch + std::string(1000, 'w');
      std::string m =
          PushImage("models/demo", "variant-" + arch, config, {layer},
                    {{"artifactType", "application/vnd.cncf.model.manifest.v1+json"}});
      blobs_[arch] = {Sha256Of(m).ToString(), Sha256Of(config).ToString(),
                      Sha256Of(layer).ToString()};
      sizes_[arch] = m.size() + config.size() + layer.size();
      return m;
    };
    std::string amd = variant("amd64"), arm = variant("arm64");
    json index = {{"schemaVersion", 2},
                  {"mediaType", kIndexType},
                  {"artifactType", "application/vnd.cncf.model.manifest.v1+json"},
                  {"manifests", json::array({Describe(kManifestType, amd),
                                             Describe(kManifestType, arm)})},
                  {"annotations",
                   {{"ai.airlock.model", "demo"}, {"org.opencontainers.image.version", "1.0.0"}}}};
    index["manifests"][0]["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
    index["manifests"][1]["platform"] = {
        {"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}};
    std::string bytes = index.dump();
    index_digest_ = Sha256Of(bytes).ToString();
    index_size_ = bytes.size();
    auto r = PutManifest("models/demo", "1.0.0", bytes, kIndexType);
    ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no response");

    trust::Release rel;
    rel.model = "demo";
    rel.version = "1.0.0";
    rel.release_counter = 1;
    rel.index_digest = Sha256Of(bytes);
    rel.index_size = bytes.size();
    rel.index_media_type = kIndexType;
    rel.platforms = {"linux/amd64", "linux/arm64/v8"};
    rel.created = clock_.Now();
    rel.expires = clock_.Now() + std::chrono::hours(24 * 90);
    auto release = trust::SignedDocument::Wrap(rel.ToJson());
    ASSERT_TRUE(release.Sign(publishers_[0]));
    r = c().Post("/api/v1/models/demo/releases", release.Serialize().value(), "application/json");
    ASSERT_EQ(r->status, 201) << r->body;
    std::string release_id = json::parse(r->body)["release"]["id"];

    trust::Channel ch;
    ch.model = "demo";
    ch.name = "production";
    ch.version = 1;
    ch.expires = clock_.Now() + std::chrono::hours(24 * 30);
    ch.releases.push_back({"1.0.0", 1, *Digest::Parse(release_id)});
    auto channel = trust::SignedDocument::Wrap(ch.ToJson());
    ASSERT_TRUE(channel.Sign(managers_[0]));
    r = c().Put("/api/v1/models/demo/channels/production", channel.Serialize().value(),
                "application/json");
    ASSERT_EQ(r->status, 200) << r->body;

    for (const auto& g : gateways) {
      auto token = c().Post("/api/v1/gateways/tokens", R"({"expires_in":"1h"})",
                            "application/json");
      ASSERT_EQ(token->status, 201) << token->body;
      json request = {{"token", json::parse(token->body)["token"]}, {"name", g}};
      auto registered = c().Post("/api/v1/gateways/register", request.dump(), "application/json");
      ASSERT_EQ(registered->status, 201) << registered->body;
    }
  }

  // Creates a deployment of production to gateways; returns its id.
  std::string Deploy(const std::vector<std::string>& gateways) {
    json body = {{"model", "demo"}, {"channel", "production"}, {"gateways", gateways}};
    auto r = c().Post("/api/v1/deployments", body.dump(), "application/json");
    EXPECT_EQ(r->status, 201) << r->body;
    return json::parse(r->body).value("id", "");
  }

  json Deployment(const std::string& id) {
    auto r = c().Get("/api/v1/deployments/" + id);
    EXPECT_TRUE(r && r->status == 200);
    return r ? json::parse(r->body) : json();
  }
  // The delivery of gateway in the deployment (null when there is none).
  json DeliveryOf(const std::string& id, const std::string& gateway) {
    json deployment = Deployment(id);
    for (const auto& d : deployment["deliveries"]) {
      if (d["gateway"] == gateway) {
        return d;
      }
    }
    return nullptr;
  }
  bool WaitForDelivery(const std::string& id, const std::string& gateway,
                       const std::string& state) {
    return WaitUntil([&] { return DeliveryOf(id, gateway).value("state", "") == state; }, kLong,
                     std::chrono::milliseconds(50));
  }
  bool WaitForDeployment(const std::string& id, const std::string& state) {
    return WaitUntil([&] { return Deployment(id).value("state", "") == state; }, kLong,
                     std::chrono::milliseconds(50));
  }

  // Downloads every blob of grant from the hub as the gateway would (relative URLs joined to
  // the hub's address, no credentials) and checks digests and sizes; returns the bytes fetched.
  std::uint64_t Download(const json& grant) {
    httplib::Client http("127.0.0.1", port());
    std::uint64_t total = 0;
    for (const auto& b : grant["blobs"]) {
      std::string url = b["url"];
      EXPECT_TRUE(url.starts_with("/v2/models/demo/blobs/")) << url;
      auto r = http.Get(url);
      EXPECT_TRUE(r && r->status == 200) << url << " " << (r ? r->body : "no response");
      if (!r) {
        continue;
      }
      EXPECT_EQ(Sha256Of(r->body).ToString(), b["digest"]);
      EXPECT_EQ(r->body.size(), b["size"].get<std::uint64_t>());
      total += r->body.size();
    }
    return total;
  }

  // Moves the hub's clock and has the orchestrator look at its timers.
  void Advance(std::chrono::seconds d) {
    clock_.Advance(d);
    hub_->orchestrator()->Wake();
  }

  std::map<std::string, std::vector<std::string>> blobs_;  // arch → manifest, config, layer
  std::map<std::string, std::uint64_t> sizes_;             // arch → their bytes
  std::string index_digest_;
  std::uint64_t index_size_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Backends, DeliveryTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

// gw/{gw}/fleet: a registered gateway's report of its device rollouts shows in the deployment;
// a report under another gateway's name, or malformed, is refused; the latest replaces the last.
TEST_P(DeliveryTest, AGatewaysFleetReportShowsInTheDeployment) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  ASSERT_FALSE(dep.empty());
  auto report = [&](const std::string& gateway, const std::string& state) {
    delivery::FleetReport r;
    r.envelope = FakeGateway::Envelope();
    r.gateway = gateway;
    r.rollouts = {{{"deployment", dep}, {"state", state}, {"devices", {{"total", 3}}}},
                  {{"deployment", "dep-0000000000000001"}, {"state", "complete"}}};
    return r.ToJson();
  };
  gw.Send(TopicKind::kFleet, "", report("plant-a", "running"));
  ASSERT_TRUE(WaitUntil([&] { return !Deployment(dep)["fleet"].empty(); }, kLong));
  json fleet = Deployment(dep)["fleet"];
  ASSERT_EQ(fleet.size(), 1u) << fleet.dump();
  EXPECT_EQ(fleet[0]["gateway"], "plant-a");
  EXPECT_EQ(fleet[0]["state"], "running");
  EXPECT_EQ(fleet[0]["devices"]["total"], 3);

  gw.Send(TopicKind::kFleet, "", report("plant-b", "aborted"));  // names another gateway
  gw.Send(TopicKind::kFleet, "", report("plant-a", "aborted"), "plant-z");  // not registered
  gw.Send(TopicKind::kFleet, "", json{{"type", "gateway.fleet"}});
  gw.Send(TopicKind::kFleet, "", report("plant-a", "complete"));
  ASSERT_TRUE(WaitUntil([&] { return Deployment(dep)["fleet"][0]["state"] == "complete"; },
                        kLong));
  EXPECT_EQ(Deployment(dep)["fleet"].size(), 1u);
}

TEST_P(DeliveryTest, OfferReadyGrantDownloadAvailableCompletesTheDeployment) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  ASSERT_FALSE(dep.empty());

  // The offer: the release verifies against the root, and the sizes are the package's.
  json offer_json = gw.WaitFor(TopicKind::kOffer);
  auto offer = delivery::DeliveryOffer::FromJson(offer_json);
  ASSERT_TRUE(offer) << offer.error().ToString() << offer_json.dump();
  EXPECT_EQ(offer->deployment_id, dep);
  EXPECT_EQ(offer->model, "demo");
  EXPECT_EQ(offer->version, "1.0.0");
  auto verified = trust::VerifyRelease(offer->release, root_, clock_.Now(), 0);
  ASSERT_TRUE(verified) << verified.error().ToString();
  EXPECT_EQ(verified->index_digest.ToString(), index_digest_);
  EXPECT_EQ(offer->total_size, index_size_ + sizes_["amd64"] + sizes_["arm64"]);
  ASSERT_EQ(offer->platform_sizes.size(), 2u);
  EXPECT_EQ(offer->platform_sizes[1].platform, "linux/arm64/v8");
  EXPECT_EQ(offer->platform_sizes[1].size, index_size_ + sizes_["arm64"]);
  const std::string id = offer->delivery_id;
  json shown = DeliveryOf(dep, "plant-a");
  EXPECT_EQ(shown["state"], "offered");
  EXPECT_EQ(shown["delivery_id"], id);
  EXPECT_EQ(Deployment(dep)["state"], "pending");

  // Ready for arm64 only: the grant names exactly the index and arm64's blobs.
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/arm64/v8"}));
  json grant_json = gw.WaitFor(TopicKind::kGrant);
  auto grant = delivery::DeliveryGrant::FromJson(grant_json);
  ASSERT_TRUE(grant) << grant.error().ToString();
  EXPECT_EQ(grant->attempt, 1u);
  std::set<std::string> granted;
  for (const auto& b : grant->blobs) {
    granted.insert(b.digest.ToString());
  }
  std::set<std::string> wanted(blobs_["arm64"].begin(), blobs_["arm64"].end());
  wanted.insert(index_digest_);
  EXPECT_EQ(granted, wanted);
  EXPECT_EQ(grant->url_expires, std::chrono::time_point_cast<std::chrono::seconds>(
                                    clock_.Now() + policy_.url_ttl));
  std::uint64_t fetched = Download(grant_json);
  EXPECT_EQ(fetched, index_size_ + sizes_["arm64"]);
  ASSERT_TRUE(WaitForDeployment(dep, "delivering"));
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["state"], "granted");
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["bytes_total"], fetched);

  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kDownloading, 1, fetched / 2, fetched));
  ASSERT_TRUE(WaitUntil([&] { return DeliveryOf(dep, "plant-a")["bytes_done"] == fetched / 2; },
                        kLong));
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["state"], "downloading");
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 1, fetched, fetched));
  ASSERT_TRUE(WaitForDeployment(dep, "complete"));
  json d = DeliveryOf(dep, "plant-a");
  EXPECT_EQ(d["state"], "available");
  EXPECT_EQ(d["bytes_done"], fetched);
  EXPECT_EQ(d["bytes_total"], fetched);
  EXPECT_EQ(d["attempt"], 1);
  EXPECT_EQ(d["retries"], 0);
  EXPECT_EQ(d["platforms"], json({"linux/arm64/v8"}));
  // The history tells the story.
  std::string story;
  json history = Deployment(dep)["history"];
  for (const auto& e : history) {
    story += e["action"].get<std::string>() + ":" + e["detail"].get<std::string>() + "\n";
  }
  EXPECT_NE(story.find("plant-a: offered → ready"), std::string::npos) << story;
  EXPECT_NE(story.find("plant-a: downloading → available"), std::string::npos) << story;
  EXPECT_NE(story.find("complete:1 available"), std::string::npos) << story;
  // The listing of deliveries says the same.
  auto list = json::parse(c().Get("/api/v1/deliveries?deployment=" + dep)->body);
  ASSERT_EQ(list["deliveries"].size(), 1u);
  EXPECT_EQ(list["deliveries"][0]["state"], "available");
  EXPECT_EQ(c().Get("/api/v1/deliveries?deployment=dep-00000000")->status, 404);
}

// GET /metrics after a delivery went to plant-a and another waits for plant-b, with a fleet
// report from plant-a: each number where a dashboard would look, the hook's family, and a text
// promtool accepts without a single lint problem.
TEST_P(DeliveryTest, TheMetricsCountDeliveriesDeploymentsAndEachGatewaysFleet) {
  Publish({"plant-a", "plant-b"});
  FakeGateway a("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a", "plant-b"});
  ASSERT_FALSE(dep.empty());
  std::string id = a.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  a.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  std::uint64_t fetched = Download(a.WaitFor(TopicKind::kGrant));
  a.Send(TopicKind::kStatus, id,
         FakeGateway::Status(id, delivery::GatewayState::kAvailable, 1, fetched, fetched));
  ASSERT_TRUE(WaitForDelivery(dep, "plant-a", "available"));
  ASSERT_EQ(DeliveryOf(dep, "plant-b")["state"], "offered");

  // plant-a's rollouts: the deployment's, running (two devices pending, one in its health
  // window), and an older one complete, whose devices are not counted.
  delivery::FleetReport report;
  report.envelope = FakeGateway::Envelope();
  report.envelope.sent_at = clock_.Now() - std::chrono::seconds(30);
  report.gateway = "plant-a";
  report.rollouts = {
      {{"deployment", dep},
       {"state", "running"},
       {"devices", {{"total", 3}, {"offline", 0}, {"pending", 2}, {"health-window", 1}}}},
      {{"deployment", "dep-0000000000000001"},
       {"state", "complete"},
       {"devices", {{"total", 5}, {"done", 5}}}}};
  a.Send(TopicKind::kFleet, "", report.ToJson());
  ASSERT_TRUE(WaitUntil([&] { return !Deployment(dep)["fleet"].empty(); }, kLong));

  // The hook other parts of the hub (the telemetry outbox) add their families with.
  hub_->server().AddMetricsAppender([](prometheus::MetricsText& out) {
    out.Family("airlock_test_outbox_dropped_total", prometheus::MetricType::kCounter,
               "Records a test outbox dropped");
    out.Sample({{"outbox", "telemetry"}}, 3);
  });
  ASSERT_EQ(c().Get("/no/such/route")->status, 404);
  auto scraped = c().Get("/metrics");
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200) << scraped->body;
  const std::string& text = scraped->body;
  for (const char* line : {
           "airlock_hub_deliveries{state=\"available\"} 1\n",
           "airlock_hub_deliveries{state=\"offered\"} 1\n",
           "airlock_hub_deliveries{state=\"failed\"} 0\n",
           "airlock_hub_deployments{state=\"delivering\"} 1\n",
           "airlock_hub_deployments{state=\"complete\"} 0\n",
           "\nairlock_hub_gateways 2\n",
           "airlock_hub_gateway_deliveries{gateway=\"plant-a\",state=\"offered\"} 0\n",
           "airlock_hub_gateway_deliveries{gateway=\"plant-b\",state=\"offered\"} 1\n",
           "airlock_hub_gateway_deliveries{gateway=\"plant-b\",state=\"downloading\"} 0\n",
           "airlock_hub_fleet_rollouts{gateway=\"plant-a\",state=\"running\"} 1\n",
           "airlock_hub_fleet_rollouts{gateway=\"plant-a\",state=\"complete\"} 1\n",
           "airlock_hub_fleet_rollouts{gateway=\"plant-a\",state=\"aborted\"} 0\n",
           "airlock_hub_fleet_devices{gateway=\"plant-a\",status=\"pending\"} 2\n",
           "airlock_hub_fleet_devices{gateway=\"plant-a\",status=\"health-window\"} 1\n",
           "airlock_hub_fleet_devices{gateway=\"plant-a\",status=\"done\"} 0\n",
           "airlock_hub_fleet_report_age_seconds{gateway=\"plant-a\"} 30\n",
           "\nairlock_mqtt_connected 1\n",
           "\nairlock_hub_orchestrator_queue_depth 0\n",
           "\nairlock_hub_orchestrator_dropped_total 0\n",
           "airlock_test_outbox_dropped_total{outbox=\"telemetry\"} 3\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  // plant-b sent no report: no fleet series of its own.
  EXPECT_EQ(text.find("airlock_hub_fleet_rollouts{gateway=\"plant-b\""), std::string::npos);
  // Every request so far was answered, the 404 among the errors.
  auto counter = [&](const std::string& name) {
    auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + name.size() + 2));
  };
  EXPECT_GT(counter("airlock_http_requests_total"), 10);
  EXPECT_GE(counter("airlock_http_errors_total"), 1);
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(text));
}

TEST_P(DeliveryTest, ARejectFailsTheDeploymentWithItsReason) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  std::string id = gw.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  ASSERT_FALSE(id.empty());
  gw.Send(TopicKind::kReject, id,
          delivery::DeliveryReject{.envelope = FakeGateway::Envelope(),
                                   .delivery_id = id,
                                   .reason = delivery::RejectReason::kInsufficientSpace,
                                   .message = "needs 3 kB, 1 kB free"}
              .ToJson());
  ASSERT_TRUE(WaitForDeployment(dep, "failed"));
  json d = DeliveryOf(dep, "plant-a");
  EXPECT_EQ(d["state"], "rejected");
  EXPECT_EQ(d["last_error"]["code"], "insufficient-space");
  EXPECT_EQ(d["last_error"]["message"], "needs 3 kB, 1 kB free");
  // A ready after the reject changes nothing.
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  Deploy({"plant-a"});  // the next good operation still works
  ASSERT_FALSE(gw.WaitFor(TopicKind::kOffer, 2).is_null());
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["state"], "rejected");
  EXPECT_TRUE(gw.Received(TopicKind::kGrant).empty());
}

TEST_P(DeliveryTest, RepeatedLateAndForeignMessagesAreIgnored) {
  Publish({"plant-a", "plant-b"});
  FakeGateway a("plant-a", broker_.url());
  FakeGateway b("plant-b", broker_.url());
  std::string dep = Deploy({"plant-a", "plant-b"});
  std::string id_a = a.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  std::string id_b = b.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  ASSERT_FALSE(id_a.empty());
  ASSERT_FALSE(id_b.empty());

  // plant-b answers for plant-a's delivery on its own topics: refused. Progress before any
  // grant: ignored. Then plant-b's own ready, which the hub handles after those (one worker).
  b.Send(TopicKind::kReady, id_a, FakeGateway::Ready(id_a, {"linux/amd64"}));
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kDownloading, 1, 5, 10));
  b.Send(TopicKind::kReady, id_b, FakeGateway::Ready(id_b, {"linux/amd64"}));
  ASSERT_FALSE(b.WaitFor(TopicKind::kGrant).is_null());
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["state"], "offered");
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["attempt"], 0);

  // The same ready twice (one message id), and a second ready: one grant.
  json ready = FakeGateway::Ready(id_a, {"linux/amd64"});
  a.Send(TopicKind::kReady, id_a, ready);
  a.Send(TopicKind::kReady, id_a, ready);
  a.Send(TopicKind::kReady, id_a, FakeGateway::Ready(id_a, {"linux/amd64"}));
  json grant = a.WaitFor(TopicKind::kGrant);
  std::uint64_t total = 0;
  for (const auto& blob : grant["blobs"]) {
    total += blob["size"].get<std::uint64_t>();
  }
  // Progress, then older progress and a status of an attempt that never was: ignored.
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kDownloading, 1, 100, total));
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kDownloading, 1, 50, total));
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kFailed, 7, 50, total,
                             delivery::DeliveryFailure{delivery::FailureCode::kNetwork, "x"}));
  // A malformed payload, and one whose delivery_id is not the topic's.
  a.Send(TopicKind::kStatus, id_a, json{{"type", "delivery.status"}});
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_b, delivery::GatewayState::kFailed, 1, 0, 1,
                             delivery::DeliveryFailure{delivery::FailureCode::kVerification, "x"}));
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kDownloading, 1, 200, total));
  ASSERT_TRUE(WaitUntil([&] { return DeliveryOf(dep, "plant-a")["bytes_done"] == 200; }, kLong));
  json d = DeliveryOf(dep, "plant-a");
  EXPECT_EQ(d["state"], "downloading");
  EXPECT_EQ(d["attempt"], 1);
  EXPECT_EQ(d["retries"], 0);
  EXPECT_EQ(a.Received(TopicKind::kGrant).size(), 1u);
  EXPECT_EQ(DeliveryOf(dep, "plant-b")["state"], "granted");

  // Both finish; the deployment completes.
  a.Send(TopicKind::kStatus, id_a,
         FakeGateway::Status(id_a, delivery::GatewayState::kAvailable, 1, total, total));
  EXPECT_TRUE(WaitForDelivery(dep, "plant-a", "available"));
  EXPECT_EQ(Deployment(dep)["state"], "delivering");
  b.Send(TopicKind::kStatus, id_b,
         FakeGateway::Status(id_b, delivery::GatewayState::kAvailable, 1, total, total));
  EXPECT_TRUE(WaitForDeployment(dep, "complete"));
}

TEST_P(DeliveryTest, CancellingTheDeploymentCancelsItsDeliveries) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  std::string id = gw.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  ASSERT_FALSE(gw.WaitFor(TopicKind::kGrant).is_null());
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kDownloading, 1, 10, 100));
  ASSERT_TRUE(WaitForDelivery(dep, "plant-a", "downloading"));

  auto r = c().Post("/api/v1/deployments/" + dep + "/cancel", R"({"reason":"wrong model"})",
                    "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  json cancel = gw.WaitFor(TopicKind::kCancel);
  ASSERT_FALSE(cancel.is_null());
  EXPECT_EQ(cancel["delivery_id"], id);
  EXPECT_NE(cancel["reason"].get<std::string>().find("wrong model"), std::string::npos);
  ASSERT_TRUE(WaitForDelivery(dep, "plant-a", "cancelled"));
  EXPECT_EQ(Deployment(dep)["state"], "cancelled");
  // A late status does not bring it back.
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 1, 100, 100));
  Deploy({"plant-a"});
  ASSERT_FALSE(gw.WaitFor(TopicKind::kOffer, 2).is_null());
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["state"], "cancelled");
  EXPECT_EQ(Deployment(dep)["state"], "cancelled");
}

TEST_P(DeliveryTest, ARestartedHubResumesEveryDeliveryWhereItWas) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  json first = gw.WaitFor(TopicKind::kOffer);
  std::string id = first.value("delivery_id", "");
  ASSERT_FALSE(id.empty());

  // Restarted while offered: the offer is published again, for the same delivery.
  StopHub();
  StartHub();
  json again = gw.WaitFor(TopicKind::kOffer, 2);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again["delivery_id"], id);
  EXPECT_NE(again["message_id"], first["message_id"]);
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  json grant = gw.WaitFor(TopicKind::kGrant);
  ASSERT_FALSE(grant.is_null());
  std::uint64_t total = Download(grant);

  // Down while the gateway finishes: the broker keeps its status for the hub's session.
  ASSERT_TRUE(WaitForDelivery(dep, "plant-a", "granted"));
  StopHub();
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 1, total, total));
  StartHub();
  ASSERT_TRUE(WaitForDeployment(dep, "complete"));
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["bytes_done"], total);
  // The grant's URLs still work after the restart (the hub's secret is in its data directory).
  EXPECT_EQ(Download(grant), total);
}

// ---- pause, resume, cancel: the deployment's flag, its history, and the gateways' commands ----

// POST path with an optional body; the status and the parsed answer.
std::pair<int, json> PostJson(httplib::Client& c, const std::string& path, const json& body) {
  auto r = c.Post(path, body.is_null() ? std::string() : body.dump(), "application/json");
  if (!r) {
    return {0, nullptr};
  }
  return {r->status, json::parse(r->body, nullptr, false)};
}

std::string DetailOf(const json& error) {
  return error.contains("errors") ? error["errors"][0].value("detail", "") : "";
}

TEST_P(DeliveryTest, PauseAndResumeAreRecordedAndSentToEveryGatewayOfTheDeployment) {
  Publish({"plant-a", "plant-b"});
  FakeGateway a("plant-a", broker_.url()), b("plant-b", broker_.url());
  std::string dep = Deploy({"plant-a", "plant-b"});
  ASSERT_FALSE(a.WaitFor(TopicKind::kOffer).is_null());

  auto [status, paused] = PostJson(c(), "/api/v1/deployments/" + dep + "/pause",
                                   {{"reason", "line 3 is down for maintenance"}});
  ASSERT_EQ(status, 200) << paused.dump();
  EXPECT_EQ(paused["paused"], true);
  EXPECT_EQ(paused["state"], "pending");  // the state follows the deliveries; paused is a flag
  EXPECT_EQ(paused["history"].back()["action"], "paused");
  EXPECT_EQ(paused["history"].back()["detail"], "line 3 is down for maintenance");
  EXPECT_EQ(Deployment(dep)["paused"], true);
  for (FakeGateway* gw : {&a, &b}) {
    json command = gw->WaitFor(TopicKind::kRolloutCommand);
    ASSERT_FALSE(command.is_null());
    auto parsed = delivery::RolloutCommand::FromJson(command);
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    EXPECT_EQ(parsed->command, delivery::RolloutCommandKind::kPause);
    EXPECT_EQ(parsed->deployment_id, dep);
    EXPECT_NE(parsed->reason.find("line 3 is down for maintenance"), std::string::npos);
  }
  EXPECT_EQ(a.WaitFor(TopicKind::kRolloutCommand)["gateway"], "plant-a");
  EXPECT_EQ(b.WaitFor(TopicKind::kRolloutCommand)["gateway"], "plant-b");

  // Paused twice: a 409 saying so, and nothing changes or is sent.
  auto [twice, twice_error] = PostJson(c(), "/api/v1/deployments/" + dep + "/pause", nullptr);
  EXPECT_EQ(twice, 409);
  EXPECT_NE(DetailOf(twice_error).find("is paused already"), std::string::npos)
      << twice_error.dump();
  // A body that is not {"reason"} is a 400; an unknown deployment a 404.
  EXPECT_EQ(PostJson(c(), "/api/v1/deployments/" + dep + "/resume", json::array()).first, 400);
  auto [unknown, unknown_error] =
      PostJson(c(), "/api/v1/deployments/dep-00000000000000ff/pause", nullptr);
  EXPECT_EQ(unknown, 404);
  EXPECT_EQ(unknown_error["errors"][0]["code"], "DEPLOYMENT_UNKNOWN");

  auto [resumed_status, resumed] = PostJson(c(), "/api/v1/deployments/" + dep + "/resume", nullptr);
  ASSERT_EQ(resumed_status, 200) << resumed.dump();
  EXPECT_EQ(resumed["paused"], false);
  EXPECT_EQ(resumed["history"].back()["action"], "resumed");
  json second = a.WaitFor(TopicKind::kRolloutCommand, 2);
  EXPECT_EQ(second["command"], "resume");
  EXPECT_NE(second["message_id"], a.WaitFor(TopicKind::kRolloutCommand, 1)["message_id"]);
  auto [again, again_error] = PostJson(c(), "/api/v1/deployments/" + dep + "/resume", nullptr);
  EXPECT_EQ(again, 409);
  EXPECT_NE(DetailOf(again_error).find("is not paused"), std::string::npos);
  EXPECT_EQ(a.Received(TopicKind::kRolloutCommand).size(), 2u);

  // Cancelled: the gateways are told to cancel their rollouts; it has ended for pause and resume.
  ASSERT_EQ(PostJson(c(), "/api/v1/deployments/" + dep + "/cancel", {{"reason", "wrong model"}})
                .first,
            200);
  json cancel = b.WaitFor(TopicKind::kRolloutCommand, 3);
  EXPECT_EQ(cancel["command"], "cancel");
  EXPECT_NE(cancel.value("reason", "").find("wrong model"), std::string::npos);
  for (const char* verb : {"pause", "resume"}) {
    auto [ended, ended_error] =
        PostJson(c(), "/api/v1/deployments/" + dep + "/" + std::string(verb), nullptr);
    EXPECT_EQ(ended, 409) << verb;
    EXPECT_NE(DetailOf(ended_error).find("has ended"), std::string::npos) << ended_error.dump();
  }
  EXPECT_EQ(Deployment(dep)["state"], "cancelled");
}

TEST_P(DeliveryTest, APauseSurvivesAHubRestartAndIsSentAgainAsTheSameMessage) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  ASSERT_EQ(PostJson(c(), "/api/v1/deployments/" + dep + "/pause", nullptr).first, 200);
  json first = gw.WaitFor(TopicKind::kRolloutCommand);
  ASSERT_EQ(first["command"], "pause");

  StopHub();
  StartHub();
  EXPECT_EQ(Deployment(dep)["paused"], true);
  // Sent again on the new connection, as the same message: a gateway that has it drops it.
  json again = gw.WaitFor(TopicKind::kRolloutCommand, 2);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again, first);
  // The next change is a new message.
  ASSERT_EQ(PostJson(c(), "/api/v1/deployments/" + dep + "/resume", nullptr).first, 200);
  json resume = gw.WaitFor(TopicKind::kRolloutCommand, 3);
  EXPECT_EQ(resume["command"], "resume");
}

// A complete deployment is delivered; its rollouts may still run, so it can still be paused and
// cancelled, until every gateway reports its rollout finished.
TEST_P(DeliveryTest, ADeliveredDeploymentIsPausedAndCancelledUntilItsRolloutsFinish) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  json offer = gw.WaitFor(TopicKind::kOffer);
  std::string id = offer.value("delivery_id", "");
  std::uint64_t total = offer.value("total_size", std::uint64_t{0});
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 0, total, total));
  ASSERT_TRUE(WaitForDeployment(dep, "complete"));
  auto fleet = [&](const std::string& state) {
    delivery::FleetReport r{.envelope = FakeGateway::Envelope(),
                            .gateway = "plant-a",
                            .rollouts = {{{"deployment", dep}, {"state", state}}}};
    gw.Send(TopicKind::kFleet, "", r.ToJson());
    ASSERT_TRUE(WaitUntil([&] { return Deployment(dep)["fleet"][0]["state"] == state; }, kLong));
  };
  fleet("running");
  ASSERT_EQ(PostJson(c(), "/api/v1/deployments/" + dep + "/pause", nullptr).first, 200);
  EXPECT_EQ(gw.WaitFor(TopicKind::kRolloutCommand)["command"], "pause");
  EXPECT_EQ(Deployment(dep)["state"], "complete");

  auto [cancelled, body] = PostJson(c(), "/api/v1/deployments/" + dep + "/cancel", nullptr);
  ASSERT_EQ(cancelled, 200) << body.dump();
  EXPECT_EQ(body["state"], "cancelled");
  EXPECT_EQ(gw.WaitFor(TopicKind::kRolloutCommand, 2)["command"], "cancel");

  // Another deployment whose rollout finished: it has ended.
  std::string next = Deploy({"plant-a"});
  json offer2 = gw.WaitFor(TopicKind::kOffer, 2);
  std::string id2 = offer2.value("delivery_id", "");
  gw.Send(TopicKind::kStatus, id2,
          FakeGateway::Status(id2, delivery::GatewayState::kAvailable, 0, total, total));
  ASSERT_TRUE(WaitForDeployment(next, "complete"));
  delivery::FleetReport done{.envelope = FakeGateway::Envelope(),
                             .gateway = "plant-a",
                             .rollouts = {{{"deployment", next}, {"state", "complete"}}}};
  gw.Send(TopicKind::kFleet, "", done.ToJson());
  ASSERT_TRUE(WaitUntil([&] { return Deployment(next)["fleet"][0]["state"] == "complete"; },
                        kLong));
  auto [ended, ended_error] = PostJson(c(), "/api/v1/deployments/" + next + "/pause", nullptr);
  EXPECT_EQ(ended, 409);
  EXPECT_NE(DetailOf(ended_error).find("every gateway's rollout of it finished"),
            std::string::npos)
      << ended_error.dump();
  EXPECT_EQ(PostJson(c(), "/api/v1/deployments/" + next + "/cancel", nullptr).first, 409);
}

// ---- the preview ----

TEST_P(DeliveryTest, APreviewCountsTheInventorysSelectedDevicesAndSizesTheWaves) {
  Publish({"plant-a", "plant-b"});
  json devices = json::array();
  auto device = [&](const std::string& id, const std::string& line, const std::string& platform) {
    json d = {{"id", id}, {"labels", {{"line", line}}}};
    if (!platform.empty()) {
      d["platform"] = platform;
    }
    devices.push_back(d);
  };
  device("cam-1", "3", "linux/arm64");     // the release has linux/arm64/v8: served
  device("cam-2", "3", "linux/arm64");
  device("cam-3", "3", "linux/arm64/v8");
  device("cam-4", "3", "linux/amd64");
  device("cam-5", "3", "linux/riscv64");   // the release lacks it
  device("cam-6", "4", "linux/amd64");     // not selected
  device("cam-7", "4", "");
  auto put = c().Put("/api/v1/gateways/plant-a/inventory", json{{"devices", devices}}.dump(),
                     "application/json");
  ASSERT_EQ(put->status, 204) << put->body;

  json request = {{"model", "demo"},
                  {"channel", "production"},
                  {"gateways", {"plant-a", "plant-b"}},
                  {"selector", {{"line", "3"}}},
                  {"strategy", {{"waves", {"1", "50%", "100%"}}}}};
  auto [status, p] = PostJson(c(), "/api/v1/deployments/preview", request);
  ASSERT_EQ(status, 200) << p.dump();
  EXPECT_EQ(p["release"]["version"], "1.0.0");
  EXPECT_EQ(p["channel_version"], 1);
  EXPECT_EQ(p["release"]["platforms"], json({"linux/amd64", "linux/arm64/v8"}));
  ASSERT_EQ(p["gateways"].size(), 2u);
  json a = p["gateways"][0];
  EXPECT_EQ(a["gateway"], "plant-a");
  EXPECT_EQ(a["inventory_devices"], 7);
  EXPECT_EQ(a["devices"], 5);
  EXPECT_EQ(a["platforms"],
            json({{"linux/amd64", 1}, {"linux/arm64", 2}, {"linux/arm64/v8", 1},
                  {"linux/riscv64", 1}}));
  EXPECT_EQ(a["unsupported"], 1);
  EXPECT_EQ(a["waves"], json({1, 2, 2}));  // 1, then 50% of 5 rounded up (3), then all
  EXPECT_EQ(a["failure_limit"], 1);        // 10% of 5, rounded up
  json b = p["gateways"][1];
  EXPECT_EQ(b["devices"], 0);               // it never reported an inventory
  EXPECT_TRUE(b["inventory_reported_at"].is_null());
  EXPECT_EQ(b["waves"], json({0, 0, 0}));
  EXPECT_EQ(p["totals"]["devices"], 5);
  EXPECT_EQ(p["totals"]["unsupported"], 1);
  EXPECT_EQ(p["totals"]["waves"], json({1, 2, 2}));
  // Nothing was created.
  auto list = c().Get("/api/v1/deployments");
  EXPECT_EQ(json::parse(list->body)["deployments"].size(), 0u);

  // The same errors as create.
  request["gateways"] = {"plant-zz"};
  auto [unknown, unknown_error] = PostJson(c(), "/api/v1/deployments/preview", request);
  EXPECT_EQ(unknown, 422);
  EXPECT_NE(DetailOf(unknown_error).find("not registered with the hub: plant-zz"),
            std::string::npos);
  request["gateways"] = {"plant-a"};
  request["strategy"] = {{"waves", {"0"}}};
  EXPECT_EQ(PostJson(c(), "/api/v1/deployments/preview", request).first, 400);
  EXPECT_EQ(PostJson(c(), "/api/v1/deployments/preview", {{"model", "demo"}}).first, 400);
}

class ShortDeliveryTest : public DeliveryTest {
 protected:
  void SetUp() override {
    policy_.offer_timeout = std::chrono::seconds(10);
    policy_.start_timeout = std::chrono::seconds(10);
    policy_.progress_timeout = std::chrono::seconds(10);
    policy_.url_ttl = std::chrono::seconds(120);
    policy_.url_refresh_margin = std::chrono::seconds(60);
    policy_.backoff_initial = std::chrono::seconds(5);
    policy_.backoff_max = std::chrono::seconds(5);
    policy_.max_retries = 2;
    DeliveryTest::SetUp();
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, ShortDeliveryTest, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(ShortDeliveryTest, UrlsAreGrantedAgainBeforeTheyExpire) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  std::string id = gw.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  json first = gw.WaitFor(TopicKind::kGrant);
  ASSERT_FALSE(first.is_null());
  std::uint64_t total = Download(first);
  // Progress every few seconds keeps the download alive while time passes.
  for (int i = 1; i <= 7; ++i) {
    gw.Send(TopicKind::kStatus, id,
            FakeGateway::Status(id, delivery::GatewayState::kDownloading, 1,
                                static_cast<std::uint64_t>(i), total));
    ASSERT_TRUE(
        WaitUntil([&] { return DeliveryOf(dep, "plant-a")["bytes_done"] == i; }, kLong));
    Advance(std::chrono::seconds(9));
  }
  // 63 s after the grant: within the refresh margin of its expiry, so attempt 2 comes.
  json second = gw.WaitFor(TopicKind::kGrant, 2);
  ASSERT_FALSE(second.is_null());
  EXPECT_EQ(second["attempt"], 2);
  EXPECT_GT(second["url_expires"].get<std::string>(), first["url_expires"].get<std::string>());
  EXPECT_EQ(Download(second), total);
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 2, total, total));
  ASSERT_TRUE(WaitForDeployment(dep, "complete"));
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["attempt"], 2);
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["retries"], 0);
  // Past the first grant's expiry its URLs are refused; the second's still work.
  Advance(std::chrono::seconds(60));
  httplib::Client http("127.0.0.1", port());
  auto expired = http.Get(first["blobs"][0]["url"].get<std::string>());
  ASSERT_TRUE(expired);
  EXPECT_GE(expired->status, 400);
  EXPECT_EQ(Download(second), total);
}

TEST_P(ShortDeliveryTest, ASilentGatewayIsOfferedAgainThenGivenUp) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  std::string id = gw.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  ASSERT_FALSE(id.empty());
  // offer_timeout 10 s, then a 5 s backoff (at most: jitter shortens it), then offer again.
  for (std::size_t offer = 2; offer <= 3; ++offer) {
    Advance(std::chrono::seconds(11));
    ASSERT_TRUE(WaitUntil([&] { return DeliveryOf(dep, "plant-a")["wait"] == "retry"; }, kLong));
    EXPECT_EQ(DeliveryOf(dep, "plant-a")["last_error"]["code"], "timeout");
    Advance(std::chrono::seconds(6));
    json again = gw.WaitFor(TopicKind::kOffer, offer);
    ASSERT_FALSE(again.is_null()) << "offer " << offer;
    EXPECT_EQ(again["delivery_id"], id);
  }
  // The third timeout is one more than max_retries (2): failed, and the gateway is told.
  Advance(std::chrono::seconds(11));
  ASSERT_TRUE(WaitForDeployment(dep, "failed"));
  json d = DeliveryOf(dep, "plant-a");
  EXPECT_EQ(d["state"], "failed");
  EXPECT_EQ(d["offers"], 3);
  EXPECT_EQ(gw.WaitFor(TopicKind::kCancel)["delivery_id"], id);
}

TEST_P(ShortDeliveryTest, AFailedDownloadIsGrantedAgainAfterABackoff) {
  Publish({"plant-a"});
  FakeGateway gw("plant-a", broker_.url());
  std::string dep = Deploy({"plant-a"});
  std::string id = gw.WaitFor(TopicKind::kOffer).value("delivery_id", "");
  gw.Send(TopicKind::kReady, id, FakeGateway::Ready(id, {"linux/amd64"}));
  json first = gw.WaitFor(TopicKind::kGrant);
  ASSERT_FALSE(first.is_null());
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kFailed, 1, 0, 100,
                              delivery::DeliveryFailure{delivery::FailureCode::kNetwork,
                                                        "connection reset"}));
  ASSERT_TRUE(WaitUntil([&] { return DeliveryOf(dep, "plant-a")["retries"] == 1; }, kLong));
  EXPECT_EQ(DeliveryOf(dep, "plant-a")["last_error"]["message"], "connection reset");
  Advance(std::chrono::seconds(6));
  json second = gw.WaitFor(TopicKind::kGrant, 2);
  ASSERT_FALSE(second.is_null());
  EXPECT_EQ(second["attempt"], 2);
  std::uint64_t total = Download(second);
  // An expired URL is granted again at once.
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kFailed, 2, 0, total,
                              delivery::DeliveryFailure{delivery::FailureCode::kUrlExpired,
                                                        "401"}));
  json third = gw.WaitFor(TopicKind::kGrant, 3);
  ASSERT_FALSE(third.is_null());
  EXPECT_EQ(third["attempt"], 3);
  gw.Send(TopicKind::kStatus, id,
          FakeGateway::Status(id, delivery::GatewayState::kAvailable, 3, total, total));
  ASSERT_TRUE(WaitForDeployment(dep, "complete"));
}

}  // namespace
}  // namespace airlock::hub
