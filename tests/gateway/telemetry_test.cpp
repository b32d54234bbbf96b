// The gateway's telemetry relay in process: device batches handed in as the MQTT client would,
// the acknowledgements captured, and a real HTTP server on 127.0.0.1 standing in for the hub's
// POST /api/v1/gateways/NAME/telemetry. A good batch is stored, acknowledged and forwarded; a
// batch that is not the device's own is refused and nothing is acknowledged; while the hub fails
// or is away, records wait in the outbox and go once it answers again.

#include "gateway/telemetry.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "monitor/batch.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

namespace airlock::gateway {
namespace {

using airlock::testing::WaitUntil;
using monitor::OutboxRecord;
using monitor::Priority;
using monitor::TelemetryBatch;
using std::chrono::milliseconds;

constexpr char kDevA[] = "dev-00000000000000aa";
constexpr char kDevB[] = "dev-00000000000000bb";
constexpr char kUnknown[] = "dev-00000000000000cc";
constexpr char kCredential[] =
    "alk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// The hub's telemetry endpoint: answers each POST with status() and keeps what it was sent.
class FakeHub {
 public:
  // On a free port; Restart() binds the same one again.
  FakeHub() { Start(0); }
  ~FakeHub() { Stop(); }

  void Start(int port) {
    server_ = std::make_unique<httplib::Server>();
    server_->Post(R"(/api/v1/gateways/([^/]+)/telemetry)",
                  [this](const httplib::Request& req, httplib::Response& res) {
                    std::lock_guard lock(mu_);
                    Post p{.gateway = req.matches[1],
                           .authorization = req.get_header_value("Authorization"),
                           .body = req.body,
                           .status = status_};
                    posts_.push_back(p);
                    if (status_ != 200) {
                      res.status = status_;
                      res.set_content(R"({"errors":[{"code":"INTERNAL"}]})", "application/json");
                      return;
                    }
                    auto batch = TelemetryBatch::Parse(req.body);
                    if (!batch) {
                      res.status = 400;
                      return;
                    }
                    for (const auto& r : batch->records) {
                      stored_[r.id] = r;
                    }
                    res.set_content(nlohmann::json{{"stored", batch->records.size()},
                                                   {"duplicates", 0},
                                                   {"rejected", nlohmann::json::array()}}
                                        .dump(),
                                    "application/json");
                  });
    if (port == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
    } else {
      // The port was ours a moment ago; retry briefly in case the old socket lingers.
      WaitUntil([&] { return server_->bind_to_port("127.0.0.1", port); }, std::chrono::seconds(10),
                milliseconds(50));
      port_ = port;
    }
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    if (!WaitUntil([this] { return server_->is_running(); })) {
      ADD_FAILURE() << "the fake hub did not start";
    }
  }
  void Stop() {
    if (server_) {
      server_->stop();
    }
    if (thread_.joinable()) {
      thread_.join();
    }
    server_.reset();
  }
  void Restart() { Start(port_); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_status(int status) {
    std::lock_guard lock(mu_);
    status_ = status;
  }

  struct Post {
    std::string gateway, authorization, body;
    int status = 0;  // what it answered
  };
  std::vector<Post> posts() {
    std::lock_guard lock(mu_);
    return posts_;
  }
  // The records it took (answered 200 for), by id.
  std::map<std::string, OutboxRecord> stored() {
    std::lock_guard lock(mu_);
    return stored_;
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  int status_ = 200;
  std::vector<Post> posts_;
  std::map<std::string, OutboxRecord> stored_;
};

OutboxRecord Record(const std::string& id, Priority priority = Priority::kMetrics) {
  return OutboxRecord{.id = id,
                      .priority = priority,
                      .kind = priority == Priority::kAlert ? "alert" : "metrics",
                      .created_ms = 1764576000000,
                      .payload = R"({"schema":"airlock.telemetry.v1","id":")" + id + "\"}"};
}

// A device's batch: source and records as its reporter sends them.
std::string DeviceBatch(const std::string& source, const std::vector<OutboxRecord>& records) {
  TelemetryBatch b;
  b.source = source;
  b.records = records;
  b.outbox.records = records.size();
  return b.Serialize();
}

class TelemetryRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    topics_ = delivery::DeviceTopics::Create().value();
    enrolled_ = {kDevA, kDevB};
    hub_http_ = std::make_unique<HubHttp>(hub_.url(), kCredential);
    Start();
  }
  void TearDown() override { relay_.reset(); }

  void Start() {
    TelemetryRelayOptions options;
    options.outbox = tmp_ / "telemetry.db";
    options.gateway = "plant-1";
    options.forward_interval = milliseconds(50);
    options.max_backoff = milliseconds(200);
    auto relay = TelemetryRelay::Start(
        options, *topics_, *hub_http_,
        [this](const std::string& device) {
          std::lock_guard lock(mu_);
          return enrolled_.count(device) > 0;
        },
        [this](const std::string& device, const std::string& payload) -> Status {
          std::lock_guard lock(mu_);
          acks_.emplace_back(device, payload);
          return {};
        });
    ASSERT_TRUE(relay) << relay.error().ToString();
    relay_ = std::move(*relay);
  }

  std::string Topic(const std::string& device,
                    delivery::DeviceTopicKind kind = delivery::DeviceTopicKind::kTelemetry) {
    return topics_->Topic(kind, device).value();
  }
  void Send(const std::string& topic_device, const std::string& payload) {
    relay_->OnDeviceMessage(Topic(topic_device), payload);
  }

  std::vector<std::pair<std::string, std::string>> Acks() {
    std::lock_guard lock(mu_);
    return acks_;
  }
  // The ids acknowledged to device, in order.
  std::vector<std::string> AckedIds(const std::string& device) {
    std::vector<std::string> ids;
    for (const auto& [to, payload] : Acks()) {
      if (to == device) {
        auto parsed = monitor::ParseAck(payload);
        EXPECT_TRUE(parsed) << payload;
        if (parsed) {
          ids.insert(ids.end(), parsed->begin(), parsed->end());
        }
      }
    }
    return ids;
  }
  bool HubHolds(const std::vector<std::string>& ids) {
    auto stored = hub_.stored();
    for (const auto& id : ids) {
      if (!stored.count(id)) {
        return false;
      }
    }
    return true;
  }

  airlock::testing::TempDir tmp_;
  FakeHub hub_;
  std::optional<delivery::DeviceTopics> topics_;
  std::unique_ptr<HubHttp> hub_http_;
  std::mutex mu_;
  std::set<std::string> enrolled_;
  std::vector<std::pair<std::string, std::string>> acks_;
  std::unique_ptr<TelemetryRelay> relay_;  // last: stopped first
};

TEST_F(TelemetryRelayTest, AGoodBatchIsStoredAcknowledgedAndForwarded) {
  std::string a = std::string(kDevA) + "/";
  std::vector<OutboxRecord> records = {Record(a + "1"), Record(a + "2"),
                                       Record(a + "3", Priority::kAlert)};
  Send(kDevA, DeviceBatch(kDevA, records));

  ASSERT_TRUE(WaitUntil([&] { return !Acks().empty(); })) << "no acknowledgement";
  EXPECT_EQ(AckedIds(kDevA), (std::vector<std::string>{a + "1", a + "2", a + "3"}));
  ASSERT_TRUE(WaitUntil([&] {
    return HubHolds({a + "1", a + "2", a + "3"}) && relay_->outbox_stats().records == 0;
  })) << "forwarded: "
      << relay_->forwarded() << ", held: " << relay_->outbox_stats().records;
  EXPECT_EQ(relay_->forwarded(), 3u);
  EXPECT_EQ(relay_->refused_batches(), 0u);
  monitor::OutboxStats stats = relay_->outbox_stats();
  EXPECT_EQ(stats.accepted, 3u);
  EXPECT_EQ(stats.acked, 3u);
  EXPECT_TRUE(relay_->hub_reachable());

  // The hub got the records as the device sent them, in a batch from the gateway, with its
  // credential, on its own URL.
  auto stored = hub_.stored();
  for (const auto& r : records) {
    EXPECT_EQ(stored[r.id], r) << r.id;
  }
  auto posts = hub_.posts();
  ASSERT_FALSE(posts.empty());
  EXPECT_EQ(posts[0].gateway, "plant-1");
  EXPECT_EQ(posts[0].authorization, std::string("Bearer ") + kCredential);
  auto batch = TelemetryBatch::Parse(posts[0].body);
  ASSERT_TRUE(batch) << batch.error().ToString();
  EXPECT_EQ(batch->source, "plant-1");
  EXPECT_EQ(batch->site, "plant-1");
  EXPECT_EQ(batch->records.front().id, a + "3") << "alerts go first";

  // Two devices, one after the other: each gets its own ids back.
  std::string b = std::string(kDevB) + "/";
  Send(kDevB, DeviceBatch(kDevB, {Record(b + "1")}));
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "4")}));
  ASSERT_TRUE(WaitUntil([&] { return HubHolds({b + "1", a + "4"}); }));
  EXPECT_EQ(AckedIds(kDevB), (std::vector<std::string>{b + "1"}));
  EXPECT_EQ(AckedIds(kDevA).back(), a + "4");
  EXPECT_TRUE(WaitUntil([&] { return relay_->outbox_stats().records == 0; }));
}

TEST_F(TelemetryRelayTest, RefusesBatchesThatAreNotTheDevicesOwnAndAcknowledgesNothing) {
  std::string a = std::string(kDevA) + "/", b = std::string(kDevB) + "/";
  struct Case {
    const char* what;
    std::string topic;
    std::string payload;
  };
  std::vector<Case> cases = {
      {"dev-a's batch on dev-b's topic", Topic(kDevB), DeviceBatch(kDevA, {Record(a + "1")})},
      {"a source other than the topic's device", Topic(kDevA),
       DeviceBatch(kDevB, {Record(a + "1")})},
      {"a record id of another device", Topic(kDevA),
       DeviceBatch(kDevA, {Record(a + "1"), Record(b + "1")})},
      {"a record id without the device's slash", Topic(kDevA),
       DeviceBatch(kDevA, {Record(std::string(kDevA) + "1")})},
      {"a record id that only starts like the device's", Topic(kDevA),
       DeviceBatch(kDevA, {Record(std::string(kDevA) + "0/1")})},
      {"a device that is not enrolled", Topic(kUnknown),
       DeviceBatch(kUnknown, {Record(std::string(kUnknown) + "/1")})},
      {"another kind of topic", Topic(kDevA, delivery::DeviceTopicKind::kState),
       DeviceBatch(kDevA, {Record(a + "1")})},
      {"not JSON", Topic(kDevA), "{not json"},
      {"a schema that is not a string", Topic(kDevA), R"({"schema": 1, "source": "x"})"},
      {"an unknown priority", Topic(kDevA),
       [&] {
         auto j = nlohmann::json::parse(DeviceBatch(kDevA, {Record(a + "1")}));
         j["records"][0]["priority"] = "urgent";
         return j.dump();
       }()},
  };
  std::uint64_t refused = 0;
  for (const auto& k : cases) {
    SCOPED_TRACE(k.what);
    relay_->OnDeviceMessage(k.topic, k.payload);
    ++refused;
    ASSERT_TRUE(WaitUntil([&] { return relay_->refused_batches() == refused; }))
        << "refused: " << relay_->refused_batches();
    EXPECT_TRUE(Acks().empty());
    EXPECT_EQ(relay_->outbox_stats().accepted, 0u);
    EXPECT_EQ(relay_->outbox_stats().records, 0u);
  }
  EXPECT_TRUE(hub_.stored().empty());

  // A revoked device is refused too, from the moment the check says so.
  Send(kDevB, DeviceBatch(kDevB, {Record(b + "1")}));
  ASSERT_TRUE(WaitUntil([&] { return HubHolds({b + "1"}); }));
  {
    std::lock_guard lock(mu_);
    enrolled_.erase(kDevB);
  }
  Send(kDevB, DeviceBatch(kDevB, {Record(b + "2")}));
  ASSERT_TRUE(WaitUntil([&] { return relay_->refused_batches() == refused + 1; }));
  EXPECT_EQ(AckedIds(kDevB), (std::vector<std::string>{b + "1"}));

  // The next good batch goes through.
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "1")}));
  ASSERT_TRUE(WaitUntil([&] { return HubHolds({a + "1"}); }));
  EXPECT_EQ(AckedIds(kDevA), (std::vector<std::string>{a + "1"}));
  EXPECT_EQ(hub_.stored().size(), 2u);
  EXPECT_TRUE(WaitUntil([&] { return relay_->outbox_stats().records == 0; }));
}

TEST_F(TelemetryRelayTest, KeepsRecordsWhileTheHubFailsAndForwardsThemWhenItAnswers) {
  hub_.set_status(500);
  std::string a = std::string(kDevA) + "/";
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "1"), Record(a + "2")}));
  // Stored and acknowledged at once: the device may forget them while the hub fails.
  ASSERT_TRUE(WaitUntil([&] { return AckedIds(kDevA).size() == 2; }));
  // Tried and retried; kept.
  ASSERT_TRUE(WaitUntil([&] { return hub_.posts().size() >= 2; }));
  EXPECT_FALSE(relay_->hub_reachable());
  EXPECT_EQ(relay_->outbox_stats().records, 2u);
  EXPECT_EQ(relay_->forwarded(), 0u);
  EXPECT_TRUE(hub_.stored().empty());
  // More arrive meanwhile, and wait with the others.
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "3")}));
  ASSERT_TRUE(WaitUntil([&] { return relay_->outbox_stats().records == 3; }));

  hub_.set_status(200);
  relay_->ForwardNow();
  ASSERT_TRUE(WaitUntil([&] {
    return HubHolds({a + "1", a + "2", a + "3"}) && relay_->outbox_stats().records == 0;
  })) << "held: "
      << relay_->outbox_stats().records;
  EXPECT_EQ(relay_->forwarded(), 3u);
  EXPECT_TRUE(WaitUntil([&] { return relay_->hub_reachable(); }));
  for (const auto& p : hub_.posts()) {
    if (p.status == 200) {
      // The counters of what the gateway held travel with the batch.
      auto batch = TelemetryBatch::Parse(p.body);
      ASSERT_TRUE(batch);
      EXPECT_EQ(batch->outbox.records, batch->records.size());
    }
  }
}

TEST_F(TelemetryRelayTest, KeepsRecordsWhileTheHubIsUnreachableAndForwardsThemWhenItIsBack) {
  hub_.Stop();
  std::string a = std::string(kDevA) + "/";
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "1"), Record(a + "2", Priority::kAlert)}));
  ASSERT_TRUE(WaitUntil([&] { return AckedIds(kDevA).size() == 2; }));
  ASSERT_TRUE(WaitUntil([&] { return !relay_->hub_reachable(); }));
  EXPECT_EQ(relay_->outbox_stats().records, 2u);
  EXPECT_EQ(relay_->forwarded(), 0u);

  hub_.Restart();
  relay_->ForwardNow();
  ASSERT_TRUE(WaitUntil([&] {
    return HubHolds({a + "1", a + "2"}) && relay_->outbox_stats().records == 0;
  })) << "held: "
      << relay_->outbox_stats().records;
  EXPECT_EQ(relay_->forwarded(), 2u);
  EXPECT_TRUE(WaitUntil([&] { return relay_->hub_reachable(); }));
}

// What the relay stored and acknowledged survives a restart of the gateway before the hub took
// it.
TEST_F(TelemetryRelayTest, RecordsStoredBeforeARestartAreForwardedAfterIt) {
  hub_.set_status(503);
  std::string a = std::string(kDevA) + "/";
  Send(kDevA, DeviceBatch(kDevA, {Record(a + "1")}));
  ASSERT_TRUE(WaitUntil([&] { return AckedIds(kDevA).size() == 1; }));
  ASSERT_TRUE(WaitUntil([&] { return !hub_.posts().empty(); }));
  relay_.reset();
  hub_.set_status(200);
  Start();
  ASSERT_NE(relay_, nullptr);
  relay_->ForwardNow();
  ASSERT_TRUE(
      WaitUntil([&] { return HubHolds({a + "1"}) && relay_->outbox_stats().records == 0; }));
}

}  // namespace
}  // namespace airlock::gateway
