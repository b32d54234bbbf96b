// MqttClient against a real Mosquitto broker on 127.0.0.1.
#include "net/mqtt.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "support/mosquitto.hpp"

namespace airlock::net {
namespace {
using namespace std::chrono_literals;
using airlock::testing::MosquittoBroker;
using airlock::testing::WaitUntil;

// Collects the messages a handler receives, for assertions from the test thread.
class Inbox {
 public:
  MqttHandler Handler() {
    return [this](const MqttMessage& m) {
      std::lock_guard lk(mu_);
      messages_.push_back(m);
    };
  }
  std::size_t size() {
    std::lock_guard lk(mu_);
    return messages_.size();
  }
  bool WaitFor(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    return WaitUntil([&] { return size() >= n; }, timeout);
  }
  MqttMessage at(std::size_t i) {
    std::lock_guard lk(mu_);
    return messages_.at(i);
  }

 private:
  std::mutex mu_;
  std::vector<MqttMessage> messages_;
};

PublishOptions Qos(int qos, bool retained = false, std::string content_type = "") {
  PublishOptions o;
  o.qos = qos;
  o.retained = retained;
  o.content_type = std::move(content_type);
  return o;
}

MqttOptions Options(const std::string& url, const std::string& id) {
  MqttOptions o;
  o.broker_url = url;
  o.client_id = id;
  o.min_retry = 50ms;
  o.max_retry = 500ms;
  o.connect_timeout = 2s;
  o.operation_timeout = 5s;
  return o;
}

std::unique_ptr<MqttClient> Connected(const MqttOptions& options) {
  auto client = MqttClient::Create(options);
  EXPECT_TRUE(client) << client.error().ToString();
  if (!client) {
    return nullptr;
  }
  EXPECT_TRUE((*client)->WaitConnected(10s)) << options.client_id << " did not connect";
  return std::move(*client);
}

TEST(TopicMatches, FollowsTheMqttWildcardRules) {
  struct Case {
    const char* filter;
    const char* topic;
    bool match;
  };
  const Case cases[] = {
      {"a/b", "a/b", true},       {"a/b", "a/c", false},       {"a/+", "a/b", true},
      {"a/+", "a/b/c", false},    {"a/#", "a/b/c", true},      {"a/#", "a", true},
      {"#", "a/b", true},         {"+/b", "a/b", true},        {"+", "a/b", false},
      {"a/+/c", "a/x/c", true},   {"a/+/c", "a/x/d", false},   {"#", "$SYS/x", false},
      {"+/x", "$SYS/x", false},   {"$SYS/#", "$SYS/x", true},  {"a/b/", "a/b/", true},
      {"a/+", "a/", true},        {"a/b", "a/b/c", false},     {"a/b/c", "a/b", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(TopicMatches(c.filter, c.topic), c.match) << c.filter << " vs " << c.topic;
  }
}

TEST(MqttClient, RefusesBadOptions) {
  auto o = Options("http://127.0.0.1:1", "x");
  auto r = MqttClient::Create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);

  o = Options("mqtt://127.0.0.1:99999", "x");
  EXPECT_FALSE(MqttClient::Create(o));

  o = Options("tcp://127.0.0.1:1883", "");
  EXPECT_FALSE(MqttClient::Create(o));

  // TLS settings with a plain URL: a mistake, not a silent downgrade.
  o = Options("tcp://127.0.0.1:1883", "x");
  o.tls = MqttTls{};
  r = MqttClient::Create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("use mqtts://"), std::string::npos);

  o = Options("mqtts://127.0.0.1:8883", "x");
  o.tls = MqttTls{.ca_file = "/nonexistent/ca.pem", .cert_file = "", .key_file = "",
                  .verify_hostname = true};
  r = MqttClient::Create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);

  o.tls = MqttTls{.ca_file = "", .cert_file = "/etc/hostname", .key_file = "",
                  .verify_hostname = true};
  EXPECT_FALSE(MqttClient::Create(o));  // a certificate without its key
}

TEST(MqttClient, PublishSubscribeRoundTripAtQos0AndQos1) {
  MosquittoBroker broker;
  auto sub = Connected(Options(broker.url(), "sub"));
  auto pub = Connected(Options(broker.url(), "pub"));
  ASSERT_TRUE(sub && pub);
  EXPECT_EQ(sub->NegotiatedVersion(), MqttVersion::kV5);

  Inbox inbox;
  ASSERT_TRUE(sub->Subscribe("cell/+/images", 1, inbox.Handler()));
  ASSERT_TRUE(pub->Publish("cell/3/images", "zero", Qos(0)));
  std::string binary("\x00\xff\x01payload", 10);
  ASSERT_TRUE(pub->Publish("cell/4/images", binary, Qos(1, false, "image/jpeg")));
  ASSERT_TRUE(pub->Publish("other/topic", "ignored", Qos(1)));
  ASSERT_TRUE(inbox.WaitFor(2));

  // QoS 0 messages may in principle be lost, but not on loopback with an idle broker; the order
  // on one connection is kept.
  EXPECT_EQ(inbox.at(0).topic, "cell/3/images");
  EXPECT_EQ(inbox.at(0).payload, "zero");
  EXPECT_EQ(inbox.at(0).qos, 0);
  EXPECT_EQ(inbox.at(1).topic, "cell/4/images");
  EXPECT_EQ(inbox.at(1).payload, binary);
  EXPECT_EQ(inbox.at(1).qos, 1);
  EXPECT_EQ(inbox.at(1).content_type, "image/jpeg");
  EXPECT_FALSE(inbox.at(1).retained);
  EXPECT_EQ(pub->counters().published, 3u);

  // Nothing more arrives: the other topic does not match.
  ASSERT_TRUE(pub->Publish("cell/5/images", "marker", Qos(1)));
  ASSERT_TRUE(inbox.WaitFor(3));
  EXPECT_EQ(inbox.at(2).payload, "marker");
}

// Paho C leaves Nagle's algorithm on; a reply sent right after the PUBACK of the message it
// answers would then wait for the broker's delayed ACK (about 40 ms) at every step of a delivery.
TEST(MqttClient, TurnsOffNagleOnItsConnectionToTheBroker) {
  MosquittoBroker broker;
  auto client = Connected(Options(broker.url(), "nodelay"));
  ASSERT_TRUE(client);
  int to_broker = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::stoi(entry.path().filename().string());
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        peer.sin_family != AF_INET || ntohs(peer.sin_port) != broker.port()) {
      continue;
    }
    ++to_broker;
    int nodelay = 0;
    socklen_t size = sizeof(nodelay);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &size), 0);
    EXPECT_EQ(nodelay, 1) << "fd " << fd;
  }
  EXPECT_EQ(to_broker, 1);
}

TEST(MqttClient, RetainedMessageReachesALateSubscriber) {
  MosquittoBroker broker;
  auto pub = Connected(Options(broker.url(), "pub"));
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("dev/d1/online", "true", Qos(1, true)));

  auto sub = Connected(Options(broker.url(), "late"));
  ASSERT_TRUE(sub);
  Inbox inbox;
  ASSERT_TRUE(sub->Subscribe("dev/+/online", 1, inbox.Handler()));
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_EQ(inbox.at(0).payload, "true");
  EXPECT_TRUE(inbox.at(0).retained);
}

TEST(MqttClient, UnsubscribeStopsTheHandler) {
  MosquittoBroker broker;
  auto client = Connected(Options(broker.url(), "c"));
  ASSERT_TRUE(client);
  Inbox a, b;
  ASSERT_TRUE(client->Subscribe("t/a", 1, a.Handler()));
  ASSERT_TRUE(client->Subscribe("t/b", 1, b.Handler()));
  ASSERT_TRUE(client->Publish("t/a", "1"));
  ASSERT_TRUE(a.WaitFor(1));
  ASSERT_TRUE(client->Unsubscribe("t/a"));
  ASSERT_TRUE(client->Publish("t/a", "2"));
  ASSERT_TRUE(client->Publish("t/b", "3"));
  // t/b's message went out after t/a's on the same connection, so t/a's would be here by now.
  ASSERT_TRUE(b.WaitFor(1));
  EXPECT_EQ(a.size(), 1u);
  EXPECT_TRUE(client->Unsubscribe("never/subscribed"));
}

TEST(MqttClient, ReconnectsAndResubscribesAfterTheBrokerRestarts) {
  MosquittoBroker broker;
  auto sub = Connected(Options(broker.url(), "sub"));
  ASSERT_TRUE(sub);
  std::atomic<int> ups{0}, downs{0};
  sub->SetConnectionHandler([&](bool up) { (up ? ups : downs)++; });
  Inbox inbox;
  ASSERT_TRUE(sub->Subscribe("results/#", 1, inbox.Handler()));

  broker.Stop();
  ASSERT_TRUE(WaitUntil([&] { return !sub->IsConnected(); }));
  auto refused = sub->Publish("results/x", "while down");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kIo);

  broker.Start();  // same port; persistence is off, so the broker forgot every subscription
  ASSERT_TRUE(sub->WaitConnected(10s)) << broker.Log();
  auto pub = Connected(Options(broker.url(), "pub"));
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("results/x", "after restart"));
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_EQ(inbox.at(0).payload, "after restart");
  EXPECT_TRUE(WaitUntil([&] { return ups.load() == 1 && downs.load() == 1; }));
  EXPECT_EQ(sub->counters().connects, 2u);
  EXPECT_EQ(sub->counters().connection_lost, 1u);
}

TEST(MqttClient, ConnectsOnceTheBrokerComesUp) {
  int port = airlock::testing::FreePort();
  auto client = MqttClient::Create(Options("tcp://127.0.0.1:" + std::to_string(port), "early"));
  ASSERT_TRUE(client);
  Inbox inbox;
  // Registered while disconnected: subscribed on connect.
  ASSERT_TRUE((*client)->Subscribe("t", 1, inbox.Handler()));
  EXPECT_FALSE((*client)->IsConnected());
  airlock::testing::MosquittoOptions at_port;
  at_port.port = port;
  MosquittoBroker broker(at_port);
  ASSERT_TRUE((*client)->WaitConnected(10s));
  auto pub = Connected(Options(broker.url(), "pub"));
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("t", "hello"));
  ASSERT_TRUE(inbox.WaitFor(1));
  // A broker that was down is no reason to give up v5.
  EXPECT_EQ((*client)->NegotiatedVersion(), MqttVersion::kV5);
  EXPECT_EQ((*client)->counters().connection_lost, 0u) << broker.Log();
}

TEST(MqttClient, BrokerPublishesTheLastWillWhenTheConnectionBreaks) {
  MosquittoBroker broker;
  airlock::testing::TcpProxy proxy(broker.port());
  auto watcher = Connected(Options(broker.url(), "gateway"));
  ASSERT_TRUE(watcher);
  Inbox inbox;
  ASSERT_TRUE(watcher->Subscribe("dev/d1/online", 1, inbox.Handler()));

  auto options = Options(proxy.url(), "d1");
  options.will = MqttWill{.topic = "dev/d1/online", .payload = "false", .qos = 1, .retained = true};
  auto device = Connected(options);
  ASSERT_TRUE(device);
  // What the agent does: say "online" again after every reconnect. (The destructor joins the
  // connection thread before the client goes, so the raw pointer is safe in the handler.)
  device->SetConnectionHandler([d = device.get()](bool up) {
    if (up) {
      (void)d->Publish("dev/d1/online", "true", Qos(1, true));
    }
  });
  ASSERT_TRUE(device->Publish("dev/d1/online", "true", Qos(1, true)));
  ASSERT_TRUE(inbox.WaitFor(1));

  proxy.CutConnections();
  ASSERT_TRUE(inbox.WaitFor(2)) << broker.Log();
  EXPECT_EQ(inbox.at(1).payload, "false");
  // The device comes back through the proxy and says so again.
  ASSERT_TRUE(inbox.WaitFor(3)) << broker.Log();
  EXPECT_EQ(inbox.at(2).payload, "true");
  ASSERT_TRUE(watcher->Subscribe("dev/d1/marker", 1, inbox.Handler()));
  device.reset();  // a clean disconnect: no will, so the marker is the next message
  ASSERT_TRUE(watcher->Publish("dev/d1/marker", "m"));
  ASSERT_TRUE(inbox.WaitFor(4));
  EXPECT_EQ(inbox.at(3).topic, "dev/d1/marker");
}

TEST(MqttClient, UsernameAndPassword) {
  MosquittoBroker broker({.port = 0, .username = "agent", .password = "s3cret",
                          .listener_config = "", .acl_file = {}});
  auto options = Options(broker.url(), "good");
  options.username = "agent";
  options.password = "s3cret";
  auto good = Connected(options);
  ASSERT_TRUE(good);

  options.client_id = "bad";
  options.password = "wrong";
  auto bad = MqttClient::Create(options);
  ASSERT_TRUE(bad);
  EXPECT_FALSE((*bad)->WaitConnected(1500ms));
  EXPECT_EQ((*bad)->counters().connects, 0u);
}

TEST(MqttClient, SpeaksMqtt311WhenAsked) {
  MosquittoBroker broker;
  auto options = Options(broker.url(), "old");
  options.version = MqttVersion::kV311;
  auto old = Connected(options);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->NegotiatedVersion(), MqttVersion::kV311);
  Inbox inbox;
  ASSERT_TRUE(old->Subscribe("t", 1, inbox.Handler()));
  // A content type cannot travel over 3.1.1; it is dropped, not an error.
  ASSERT_TRUE(old->Publish("t", "x", Qos(1, false, "text/plain")));
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_EQ(inbox.at(0).payload, "x");
  EXPECT_EQ(inbox.at(0).content_type, "");
}

// A broker that only speaks MQTT 3.1.1, as old ones do: it answers a v5 CONNECT with the 3.1.1
// CONNACK "unacceptable protocol version" and accepts a 3.1.1 CONNECT. Just enough to connect.
class Mqtt311OnlyBroker {
 public:
  Mqtt311OnlyBroker() {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_, 8) != 0 ||
        ::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("fake broker: cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~Mqtt311OnlyBroker() {
    stop_ = true;
    thread_.join();
    for (int fd : open_) {
      ::close(fd);
    }
    ::close(listen_);
  }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::vector<int> levels() {
    std::lock_guard lk(mu_);
    return levels_;
  }

 private:
  static bool ReadExactly(int fd, unsigned char* p, std::size_t n) {
    while (n > 0) {
      ssize_t r = ::recv(fd, p, n, 0);
      if (r <= 0) {
        return false;
      }
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  void Run() {
    while (!stop_) {
      pollfd pfd{listen_, POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) {
        continue;
      }
      int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        continue;
      }
      timeval tv{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      unsigned char header = 0;
      std::size_t length = 0;
      unsigned char byte = 0;
      int shift = 0;
      bool ok = ReadExactly(fd, &header, 1);
      do {
        ok = ok && ReadExactly(fd, &byte, 1);
        length |= static_cast<std::size_t>(byte & 0x7f) << shift;
        shift += 7;
      } while (ok && (byte & 0x80) && shift < 28);
      std::vector<unsigned char> body(length);
      ok = ok && (header >> 4) == 1 && length > 7 && ReadExactly(fd, body.data(), length);
      if (!ok) {
        ::close(fd);
        continue;
      }
      int level = body[6];  // after the protocol name 00 04 'M' 'Q' 'T' 'T'
      {
        std::lock_guard lk(mu_);
        levels_.push_back(level);
      }
      const unsigned char accepted[] = {0x20, 0x02, 0x00, 0x00};
      const unsigned char refused[] = {0x20, 0x02, 0x00, 0x01};
      ::send(fd, level == 4 ? accepted : refused, 4, MSG_NOSIGNAL);
      if (level == 4) {
        open_.push_back(fd);  // kept open: the client stays connected
      } else {
        ::close(fd);
      }
    }
  }

  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<int> levels_;
  std::vector<int> open_;
  std::thread thread_;
};

TEST(MqttClient, FallsBackToMqtt311WhenTheBrokerRefusesV5) {
  Mqtt311OnlyBroker broker;
  auto client = MqttClient::Create(Options(broker.url(), "fallback"));
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->WaitConnected(10s));
  EXPECT_EQ((*client)->NegotiatedVersion(), MqttVersion::kV311);
  EXPECT_EQ(broker.levels(), (std::vector<int>{5, 4}));
}

TEST(MqttClient, DoesNotFallBackWhenToldToSpeakV5Only) {
  Mqtt311OnlyBroker broker;
  auto options = Options(broker.url(), "v5only");
  options.version = MqttVersion::kV5;
  auto client = MqttClient::Create(options);
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitUntil([&] { return broker.levels().size() >= 2; }));
  EXPECT_FALSE((*client)->IsConnected());
  for (int level : broker.levels()) {
    EXPECT_EQ(level, 5);
  }
}

TEST(MqttClient, InteroperatesWithMosquittoCommandLineClients) {
  MosquittoBroker broker;
  auto client = Connected(Options(broker.url(), "airlock"));
  ASSERT_TRUE(client);
  Inbox inbox;
  ASSERT_TRUE(client->Subscribe("in/#", 1, inbox.Handler()));
  auto pub = airlock::testing::RunCommand(
      {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-V", "mqttv5",
       "-q", "1", "-t", "in/img", "-m", "from mosquitto_pub", "-D", "publish", "content-type",
       "image/png"},
      {}, 30);
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_EQ(inbox.at(0).payload, "from mosquitto_pub");
  EXPECT_EQ(inbox.at(0).content_type, "image/png");

  ASSERT_TRUE(client->Publish("out/r", R"({"ok":true})", Qos(1, true)));
  auto sub = airlock::testing::RunCommand(
      {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-t", "out/#",
       "-C", "1", "-W", "10", "-F", "%t %p"},
      {}, 30);
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  EXPECT_EQ(sub.out, "out/r {\"ok\":true}\n");
}

}  // namespace
}  // namespace airlock::net

namespace airlock::net {
namespace {

TEST(CheckPlainMqtt, RefusesPlainMqttToAnotherHostUnlessAllowed) {
  auto refused = CheckPlainMqtt("tcp://10.1.2.3:1883", false, "mqtt.broker");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().ToString().find("mqtt.broker: tcp://10.1.2.3:1883"), std::string::npos)
      << refused.error().ToString();
  EXPECT_NE(refused.error().ToString().find("mqtt.allow_plain"), std::string::npos);
  EXPECT_FALSE(CheckPlainMqtt("mqtt://broker.example", false, "devices.mqtt_broker"));
  EXPECT_TRUE(CheckPlainMqtt("tcp://10.1.2.3:1883", true, "mqtt.broker"));
  EXPECT_TRUE(CheckPlainMqtt("tcp://127.0.0.1:1883", false, "mqtt.broker"));
  EXPECT_TRUE(CheckPlainMqtt("tcp://localhost", false, "mqtt.broker"));
  EXPECT_TRUE(CheckPlainMqtt("mqtts://broker.example:8883", false, "mqtt.broker"));
  EXPECT_TRUE(CheckPlainMqtt("", false, "devices.mqtt_broker"));  // not set: nothing to check
}

}  // namespace
}  // namespace airlock::net
