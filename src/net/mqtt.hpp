#pragma once
// MqttClient: one connection to an MQTT broker, over Eclipse Paho C++ (which runs on Paho C).
//
// The client speaks MQTT v5 by default and falls back to 3.1.1 when the broker refuses v5 (or
// speaks 3.1.1 only when told to). It keeps itself connected: a connection thread makes the first
// connection and every reconnection after a loss, with exponential backoff between
// min_retry and max_retry, and re-subscribes every registered topic filter after each connect.
// Messages are not buffered while disconnected: Publish fails at once with kIo, and the caller
// decides (count it, keep it in an outbox). Durable queueing belongs to the agent's outbox.
//
// Thread-safe: every method may be called from any thread, except that a message handler must
// not call Unsubscribe or destroy the client (it would wait for itself), and must not block for
// long — handlers run one at a time on Paho's receive thread, so a handler that publishes at QoS 1
// and waits for the acknowledgement would wait for itself too (until the publish timeout). Hand
// the message to your own thread instead (the agent's MQTT source does).
//
// No Paho exception escapes: every failure is a Result. The destructor disconnects (bounded by
// disconnect_timeout) and joins the connection thread; no handler runs after it returns.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.hpp"

namespace mqtt {
class async_client;
}  // namespace mqtt

namespace airlock::net {

enum class MqttVersion {
  kAuto,  // v5, and 3.1.1 when the broker refuses v5
  kV5,    // v5 only
  kV311,  // 3.1.1 only
};

// The message the broker publishes for us when the connection drops without a DISCONNECT.
struct MqttWill {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retained = true;
};

// MQTT over TLS (a broker URL mqtts://host:port, port 8883 by default). The broker's certificate
// must chain to ca_file (the system's trusted certificates when empty) and, with verify_hostname,
// name the host of the URL. With cert_file and key_file the client presents its certificate: a
// device's from its enrollment, a gateway's its own (docs/security.md).
struct MqttTls {
  std::string ca_file;           // PEM bundle the broker's certificate must chain to
  std::string cert_file;         // the device's client certificate (PEM)
  std::string key_file;          // its private key (PEM)
  bool verify_hostname = true;
};

struct MqttOptions {
  // "tcp://host:port" or "mqtt://host:port" (the same thing); port defaults to 1883.
  std::string broker_url;
  // Must be unique on the broker; a second connection with the same id takes the first one over.
  std::string client_id;
  MqttVersion version = MqttVersion::kAuto;
  std::string username;  // empty: none
  std::string password;  // only sent with a username
  std::optional<MqttWill> will;
  std::optional<MqttTls> tls;
  // Keep the session (subscriptions, QoS 1 messages queued by the broker) across reconnects: v5
  // clean_start=false with session_expiry, 3.1.1 clean_session=false.
  bool persistent_session = false;
  std::chrono::seconds session_expiry{24 * 3600};
  std::chrono::seconds keep_alive{30};
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds min_retry{500};
  std::chrono::milliseconds max_retry{30000};
  // How long Publish (QoS 1: until PUBACK), Subscribe and Unsubscribe wait for the broker.
  std::chrono::milliseconds operation_timeout{10000};
  std::chrono::milliseconds disconnect_timeout{2000};
};

struct MqttMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retained = false;
  std::string content_type;  // the v5 Content Type property; empty when absent or 3.1.1
};

struct PublishOptions {
  int qos = 1;  // 0 or 1 (2 is refused: nothing in Airlock needs it)
  bool retained = false;
  std::string content_type;  // sent as the v5 Content Type property when non-empty
};

// Called for each message whose topic matches the filter it was registered with.
using MqttHandler = std::function<void(const MqttMessage&)>;

// Plain MQTT is for loopback, as plain HTTP is: kInvalidArgument, naming setting and what to do,
// for a tcp:// or mqtt:// broker on another host unless allow_plain. Warns (loudly) when allowed.
[[nodiscard]] Status CheckPlainMqtt(const std::string& broker_url, bool allow_plain,
                                    std::string_view setting);

// Whether `topic` matches the subscription `filter` (MQTT wildcards `+` and `#`; topics starting
// with `$` are not matched by a leading wildcard).
bool TopicMatches(std::string_view filter, std::string_view topic);

class MqttClient {
 public:
  // Validates the options and starts the connection thread, which connects in the background.
  // Fails with kInvalidArgument on a bad URL, client id or QoS, or TLS settings for a plain URL,
  // and kNotFound for a TLS file that does not exist.
  [[nodiscard]] static Result<std::unique_ptr<MqttClient>> Create(MqttOptions options);
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Blocks until connected or until timeout passes; true when connected.
  bool WaitConnected(std::chrono::milliseconds timeout) const;
  bool IsConnected() const;
  // The protocol of the current (or last) connection: kV5 or kV311, kAuto before the first.
  MqttVersion NegotiatedVersion() const;

  // Publishes one message. QoS 0 returns once the message is written to the socket; QoS 1 once
  // the broker acknowledged it. Fails with kIo when disconnected, refused or timed out (a QoS 1
  // message that timed out may still arrive: receivers are idempotent, DESIGN §5.1).
  [[nodiscard]] Status Publish(const std::string& topic, std::string_view payload,
                               const PublishOptions& options = {});

  // Registers handler for filter and subscribes. When connected, waits for the broker's answer
  // and fails (registering nothing) if it refuses; when disconnected, succeeds and subscribes on
  // connect. Every registered filter is subscribed again after each reconnect. One handler per
  // filter: subscribing the same filter again replaces the handler and the QoS.
  [[nodiscard]] Status Subscribe(const std::string& filter, int qos, MqttHandler handler);
  // Removes the filter's handler and unsubscribes. After it returns the handler is not running
  // and will not be called again. Unknown filters are not an error.
  [[nodiscard]] Status Unsubscribe(const std::string& filter);

  // Called with true after each successful connect (after re-subscribing) and with false when the
  // connection is lost. Runs on the connection thread; may call Publish. Set before relying on it.
  void SetConnectionHandler(std::function<void(bool connected)> handler);

  struct Counters {
    std::uint64_t connects = 0;        // successful connects, the first one included
    std::uint64_t connection_lost = 0;
    std::uint64_t published = 0;
    std::uint64_t publish_failures = 0;
    std::uint64_t received = 0;
  };
  Counters counters() const;

 private:
  struct Subscription {
    std::string filter;
    int qos;
    std::shared_ptr<MqttHandler> handler;
  };

  struct Gate;

  explicit MqttClient(MqttOptions options, std::string server_uri);
  std::shared_ptr<mqtt::async_client> CurrentClient(MqttVersion* version = nullptr) const;
  Status MakeClient(MqttVersion version);
  void ConnectionLoop();
  // protocol_refused: the broker answered and refused this protocol version.
  Status ConnectOnce(MqttVersion version, bool* protocol_refused);
  Status SubscribeNow(const std::string& filter, int qos);
  void Dispatch(const MqttMessage& message);
  void OnConnectionLost();

  const MqttOptions options_;
  const std::string server_uri_;
  // Paho's callbacks reach the client through the gate, which the destructor closes.
  const std::shared_ptr<Gate> gate_;
  // Replaced only by the connection thread while disconnected (version fallback).
  mutable std::mutex client_mu_;  // guards client_ (the pointer, not the object), client_version_
  std::shared_ptr<mqtt::async_client> client_;
  MqttVersion client_version_ = MqttVersion::kAuto;  // what client_ was created for

  mutable std::mutex state_mu_;
  mutable std::condition_variable state_cv_;
  bool stopping_ = false;
  bool connected_ = false;
  bool lost_ = false;  // set by Paho's connection-lost callback, consumed by the loop
  MqttVersion negotiated_ = MqttVersion::kAuto;
  std::function<void(bool)> connection_handler_;

  std::mutex subs_mu_;  // guards subs_
  std::vector<Subscription> subs_;

  std::atomic<std::uint64_t> connects_{0}, lost_count_{0}, published_{0}, publish_failures_{0},
      received_{0};
  std::thread thread_;
};

}  // namespace airlock::net
