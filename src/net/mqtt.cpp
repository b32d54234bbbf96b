#include "net/mqtt.hpp"

#include <spdlog/spdlog.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mqtt/async_client.h>

#include "core/daemon.hpp"

namespace airlock::net {
namespace {

// Paho reports failures by throwing; this turns one into an Error naming the operation.
Error PahoError(std::string_view what, const std::exception& e) {
  std::string message = std::string(what) + ": ";
  if (const auto* me = dynamic_cast<const mqtt::exception*>(&e)) {
    message += me->get_message().empty() ? me->get_error_str() : me->get_message();
    if (me->get_reason_code() != 0) {
      message += " (reason " + std::to_string(me->get_reason_code()) + " " +
                 me->get_reason_code_str() + ")";
    } else if (me->get_return_code() != 0) {
      message += " (code " + std::to_string(me->get_return_code()) + ")";
    }
  } else {
    message += e.what();
  }
  return Error(ErrorCode::kIo, std::move(message));
}

// Paho refuses (throws) while a connect is in progress; the gate keeps late callbacks harmless.
void DisableCallbacks(mqtt::async_client& client) noexcept {
  try {
    client.disable_callbacks();
  } catch (const std::exception&) {
  }
}

const char* VersionName(MqttVersion v) {
  switch (v) {
    case MqttVersion::kV5:
      return "5";
    case MqttVersion::kV311:
      return "3.1.1";
    case MqttVersion::kAuto:
      break;
  }
  return "auto";
}

// "tcp://host:port" or "ssl://host:port" (Paho's names) for a broker URL; tls says which.
Result<std::string> ServerUri(const std::string& url, bool* tls) {
  std::string_view rest;
  *tls = false;
  for (std::string_view scheme : {"tcp://", "mqtt://", "ssl://", "mqtts://"}) {
    if (url.starts_with(scheme)) {
      rest = std::string_view(url).substr(scheme.size());
      *tls = scheme == "ssl://" || scheme == "mqtts://";
    }
  }
  if (rest.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "broker URL must look like mqtts://host:port (TLS) or mqtt://host:port: '" + url +
                    "'");
  }
  if (!rest.empty() && rest.back() == '/') {
    rest.remove_suffix(1);
  }
  std::string_view host = rest;
  int port = *tls ? 8883 : 1883;
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find(']') == std::string_view::npos) {
    host = rest.substr(0, colon);
    auto digits = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() || port <= 0 || port > 65535) {
      return Fail(ErrorCode::kInvalidArgument, "bad port in broker URL '" + url + "'");
    }
  }
  if (host.empty() || host.find('/') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "bad host in broker URL '" + url + "'");
  }
  return (*tls ? "ssl://" : "tcp://") + std::string(host) + ":" + std::to_string(port);
}

// Turns off Nagle's algorithm on this process's TCP connections to the broker of server_uri
// ("tcp://host:port"). Paho C 1.3 has no option for it and leaves it on; then a message sent
// right after another one (a reply after the PUBACK of the message it answers) waits for the
// broker's delayed ACK, about 40 ms on Linux, at every step of a delivery. Paho's socket is not
// exposed, so the sockets are found by their peer address. Best effort: failures are ignored.
void DisableNagle(const std::string& server_uri) {
  std::string_view rest = std::string_view(server_uri).substr(server_uri.find("://") + 3);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    return;
  }
  std::string host(rest.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port(rest.substr(colon + 1));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) {
    return;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    int fd = -1;
    std::string name = it->path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) {
      continue;
    }
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;  // not a connected socket
    }
    for (const addrinfo* a = addresses.get(); a != nullptr; a = a->ai_next) {
      if (a->ai_addrlen == peer_len && std::memcmp(a->ai_addr, &peer, peer_len) == 0) {
        int on = 1;
        (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        break;
      }
    }
  }
}

}  // namespace

bool TopicMatches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  while (true) {
    auto fslash = filter.find('/');
    auto flevel = filter.substr(0, fslash);
    if (flevel == "#") {
      return true;
    }
    auto tslash = topic.find('/');
    auto tlevel = topic.substr(0, tslash);
    if (flevel != "+" && flevel != tlevel) {
      return false;
    }
    if (fslash == std::string_view::npos || tslash == std::string_view::npos) {
      // "a/#" also matches "a": the filter's remaining level is a lone '#'.
      return fslash == std::string_view::npos && tslash == std::string_view::npos
                 ? true
                 : (tslash == std::string_view::npos && filter.substr(fslash + 1) == "#");
    }
    filter.remove_prefix(fslash + 1);
    topic.remove_prefix(tslash + 1);
  }
}

Status CheckPlainMqtt(const std::string& broker_url, bool allow_plain, std::string_view setting) {
  bool tls = false;
  auto uri = ServerUri(broker_url, &tls);
  if (!uri || tls) {
    return {};  // a bad URL is MqttClient::Create's to report
  }
  std::string_view rest = std::string_view(*uri).substr(std::string_view("tcp://").size());
  std::string host(rest.substr(0, rest.rfind(':')));
  if (IsLoopbackHost(host)) {
    return {};
  }
  if (!allow_plain) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(setting) + ": " + broker_url +
                    " is plain MQTT to another host: use mqtts:// (docs/security.md, \"The "
                    "brokers\"), or set mqtt.allow_plain: true to accept an unencrypted network");
  }
  spdlog::warn("PLAIN MQTT to {} ({}, mqtt.allow_plain): deliveries and credentials cross the "
               "network unencrypted",
               broker_url, setting);
  return {};
}

// Lets Paho's callbacks outlive the client safely: they hold the gate and check it is open.
struct MqttClient::Gate {
  std::mutex mu;
  MqttClient* owner = nullptr;  // null once the client is being destroyed
};

Result<std::unique_ptr<MqttClient>> MqttClient::Create(MqttOptions options) {
  bool tls = false;
  AIRLOCK_ASSIGN_OR_RETURN(std::string uri, ServerUri(options.broker_url, &tls));
  if (options.tls && !tls) {
    return Fail(ErrorCode::kInvalidArgument,
                "TLS settings are given but the broker URL " + options.broker_url +
                    " is plain MQTT: use mqtts://");
  }
  if (tls && !options.tls) {
    options.tls = MqttTls{};  // the system's trusted certificates, no client certificate
  }
  if (options.tls) {
    const MqttTls& t = *options.tls;
    if (t.cert_file.empty() != t.key_file.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "an MQTT client certificate needs both its certificate and its key file");
    }
    for (const std::string* f : {&t.ca_file, &t.cert_file, &t.key_file}) {
      std::error_code ec;
      if (!f->empty() && !std::filesystem::is_regular_file(*f, ec)) {
        return Fail(ErrorCode::kNotFound, "MQTT TLS file " + *f + " does not exist");
      }
    }
  }
  if (options.client_id.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "MQTT client id must not be empty");
  }
  if (options.will && (options.will->topic.empty() || options.will->qos < 0 ||
                       options.will->qos > 1)) {
    return Fail(ErrorCode::kInvalidArgument, "MQTT last will needs a topic and QoS 0 or 1");
  }
  if (options.min_retry.count() <= 0 || options.max_retry < options.min_retry) {
    return Fail(ErrorCode::kInvalidArgument, "MQTT retry intervals must be 0 < min <= max");
  }
  std::unique_ptr<MqttClient> client(new MqttClient(std::move(options), std::move(uri)));
  client->thread_ = std::thread([c = client.get()] { c->ConnectionLoop(); });
  return client;
}

MqttClient::MqttClient(MqttOptions options, std::string server_uri)
    : options_(std::move(options)),
      server_uri_(std::move(server_uri)),
      gate_(std::make_shared<Gate>()) {
  gate_->owner = this;
}

MqttClient::~MqttClient() {
  {
    std::lock_guard lk(state_mu_);
    stopping_ = true;
  }
  state_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  if (client_) {
    try {
      if (client_->is_connected()) {
        client_->disconnect(options_.disconnect_timeout)
            ->wait_for(options_.disconnect_timeout + std::chrono::seconds(1));
      }
    } catch (const std::exception& e) {
      spdlog::debug("mqtt {}: disconnect: {}", options_.client_id, e.what());
    }
    DisableCallbacks(*client_);
  }
  {
    // Waits for a callback in progress; later ones see no owner.
    std::lock_guard lk(gate_->mu);
    gate_->owner = nullptr;
  }
  std::lock_guard lk(client_mu_);
  client_.reset();
}

Status MqttClient::MakeClient(MqttVersion version) {
  std::shared_ptr<mqtt::async_client> fresh;
  try {
    mqtt::create_options create(version == MqttVersion::kV5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    fresh = std::make_shared<mqtt::async_client>(server_uri_, options_.client_id, create,
                                                 static_cast<mqtt::iclient_persistence*>(nullptr));
  } catch (const std::exception& e) {
    return Fail(PahoError("creating the MQTT client for " + server_uri_, e));
  }
  std::weak_ptr<Gate> gate = gate_;
  fresh->set_message_callback([gate](mqtt::const_message_ptr msg) {
    auto g = gate.lock();
    if (!g || !msg) {
      return;
    }
    std::lock_guard lk(g->mu);
    if (g->owner == nullptr) {
      return;
    }
    MqttMessage m;
    m.topic = msg->get_topic();
    m.payload = msg->get_payload_str();
    m.qos = msg->get_qos();
    m.retained = msg->is_retained();
    try {
      const auto& props = msg->get_properties();
      if (props.contains(mqtt::property::CONTENT_TYPE)) {
        m.content_type = mqtt::get<std::string>(props, mqtt::property::CONTENT_TYPE);
      }
    } catch (const std::exception&) {
      // A malformed property is ignored: the handler sniffs the content instead.
    }
    g->owner->Dispatch(m);
  });
  auto lost = [gate] {
    auto g = gate.lock();
    if (!g) {
      return;
    }
    std::lock_guard lk(g->mu);
    if (g->owner != nullptr) {
      g->owner->OnConnectionLost();
    }
  };
  fresh->set_connection_lost_handler([lost](const std::string&) { lost(); });
  fresh->set_disconnected_handler([lost](const mqtt::properties&, mqtt::ReasonCode) { lost(); });
  std::shared_ptr<mqtt::async_client> old;
  {
    std::lock_guard lk(client_mu_);
    old = std::move(client_);
    client_ = std::move(fresh);
    client_version_ = version;
  }
  if (old) {
    DisableCallbacks(*old);
  }
  return {};
}

Status MqttClient::ConnectOnce(MqttVersion version, bool* protocol_refused) {
  *protocol_refused = false;
  if (!client_ || client_version_ != version) {
    AIRLOCK_RETURN_IF_ERROR(MakeClient(version));
  }
  try {
    mqtt::connect_options opts;
    if (version == MqttVersion::kV5) {
      opts.set_mqtt_version(MQTTVERSION_5);
      opts.set_clean_start(!options_.persistent_session);
      if (options_.persistent_session) {
        opts.set_properties(mqtt::properties{mqtt::property(
            mqtt::property::SESSION_EXPIRY_INTERVAL,
            static_cast<int32_t>(options_.session_expiry.count()))});
      }
    } else {
      opts.set_mqtt_version(MQTTVERSION_3_1_1);
      opts.set_clean_session(!options_.persistent_session);
    }
    opts.set_keep_alive_interval(static_cast<int>(options_.keep_alive.count()));
    auto connect_seconds = std::max<long long>(
        1, std::chrono::ceil<std::chrono::seconds>(options_.connect_timeout).count());
    opts.set_connect_timeout(static_cast<int>(connect_seconds));
    opts.set_automatic_reconnect(false);  // the connection loop reconnects, see the header
    if (!options_.username.empty()) {
      opts.set_user_name(options_.username);
      if (!options_.password.empty()) {
        opts.set_password(options_.password);
      }
    }
    if (options_.tls) {
      const MqttTls& t = *options_.tls;
      mqtt::ssl_options ssl;
      if (!t.ca_file.empty()) {
        ssl.set_trust_store(t.ca_file);
      }
      if (!t.cert_file.empty()) {
        ssl.set_key_store(t.cert_file);
        ssl.set_private_key(t.key_file);
      }
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(t.verify_hostname);
      opts.set_ssl(std::move(ssl));
    }
    if (options_.will) {
      opts.set_will(mqtt::will_options(options_.will->topic, options_.will->payload,
                                       options_.will->qos, options_.will->retained));
    }
    auto token = client_->connect(opts);
    // Waits in slices so that the destructor does not wait for a slow connect.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(connect_seconds) +
                    std::chrono::seconds(2);
    while (!token->wait_for(std::chrono::milliseconds(100))) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return Fail(ErrorCode::kIo, "timed out connecting to " + server_uri_);
      }
      std::lock_guard lk(state_mu_);
      if (stopping_) {
        return Fail(ErrorCode::kIo, "stopped while connecting to " + server_uri_);
      }
    }
  } catch (const std::exception& e) {
    if (const auto* me = dynamic_cast<const mqtt::exception*>(&e)) {
      // The broker answered and refused the protocol: CONNACK 1 (3.1.1, "unacceptable protocol
      // version") or reason 0x84 (v5, "unsupported protocol version").
      // Paho reports a 3.1.1 CONNACK code as the return or the reason code, depending on the
      // protocol it sent; 1 is no valid v5 CONNACK reason, so either place means the same.
      *protocol_refused = me->get_return_code() == 1 || me->get_reason_code() == 1 ||
                          me->get_reason_code() == 0x84;
    }
    // Paho does not say why a TLS handshake failed (its error callback is not safe to use: it
    // keeps a pointer into options that do not outlive the connect), so say what to check.
    std::string hint =
        options_.tls ? "; over TLS, check that the broker's certificate chains to " +
                           (options_.tls->ca_file.empty() ? std::string("the system's CAs")
                                                          : options_.tls->ca_file) +
                           " and names the URL's host, and that the broker accepts this client's "
                           "certificate"
                     : "";
    Error error =
        PahoError("connecting to " + server_uri_ + " (MQTT " + VersionName(version) + ")", e);
    return Fail(Error(error.code(), error.message() + hint));
  }
  return {};
}

void MqttClient::ConnectionLoop() {
  auto backoff = options_.min_retry;
  // The version to try first: the last one that worked (v5 until then).
  MqttVersion preferred =
      options_.version == MqttVersion::kV311 ? MqttVersion::kV311 : MqttVersion::kV5;
  bool reported_failure = false;
  while (true) {
    {
      std::lock_guard lk(state_mu_);
      if (stopping_) {
        return;
      }
      lost_ = false;
    }
    bool refused = false;
    Status status = ConnectOnce(preferred, &refused);
    if (!status && refused && options_.version == MqttVersion::kAuto) {
      // A broker that only speaks 3.1.1 refuses the v5 CONNECT (and a broker upgraded to v5
      // after a fallback may refuse 3.1.1): try the other protocol before backing off. Only on a
      // refusal: a broker that is down says nothing about the protocols it speaks.
      MqttVersion other = preferred == MqttVersion::kV5 ? MqttVersion::kV311 : MqttVersion::kV5;
      bool ignored = false;
      if (ConnectOnce(other, &ignored)) {
        spdlog::info("mqtt {}: connected with MQTT {} ({} failed: {})", options_.client_id,
                     VersionName(other), VersionName(preferred), status.error().ToString());
        preferred = other;
        status = {};
      }
    }
    if (!status) {
      if (!reported_failure) {
        spdlog::warn("mqtt {}: {} (retrying)", options_.client_id, status.error().ToString());
        reported_failure = true;
      } else {
        spdlog::debug("mqtt {}: {}", options_.client_id, status.error().ToString());
      }
      std::unique_lock lk(state_mu_);
      state_cv_.wait_for(lk, backoff, [this] { return stopping_; });
      backoff = std::min(backoff * 2, options_.max_retry);
      continue;
    }
    reported_failure = false;
    backoff = options_.min_retry;
    connects_++;
    DisableNagle(server_uri_);
    // Subscribe() registers before checking the Paho connection, and the copy is taken after the
    // connect completed, so every filter is subscribed by one side or the other.
    std::vector<std::pair<std::string, int>> filters;
    {
      std::lock_guard lk(subs_mu_);
      for (const auto& s : subs_) {
        filters.emplace_back(s.filter, s.qos);
      }
    }
    for (const auto& [filter, qos] : filters) {
      if (auto st = SubscribeNow(filter, qos); !st) {
        spdlog::warn("mqtt {}: {}", options_.client_id, st.error().ToString());
      }
    }
    std::function<void(bool)> handler;
    {
      std::lock_guard lk(state_mu_);
      connected_ = true;
      negotiated_ = preferred;
      handler = connection_handler_;
    }
    state_cv_.notify_all();
    spdlog::debug("mqtt {}: connected to {} (MQTT {})", options_.client_id, server_uri_,
                  VersionName(preferred));
    if (handler) {
      handler(true);
    }
    // Paho reports a lost connection through a callback; polling is_connected as well covers a
    // loss it did not report. (Not under state_mu_: Paho's callbacks take it.)
    while (true) {
      {
        std::unique_lock lk(state_mu_);
        if (state_cv_.wait_for(lk, std::chrono::seconds(1),
                               [this] { return stopping_ || lost_; })) {
          break;
        }
      }
      if (!client_->is_connected()) {
        break;
      }
    }
    {
      std::lock_guard lk(state_mu_);
      connected_ = false;
      handler = connection_handler_;
      if (stopping_) {
        return;
      }
    }
    lost_count_++;
    spdlog::warn("mqtt {}: connection to {} lost (reconnecting)", options_.client_id,
                 server_uri_);
    if (handler) {
      handler(false);
    }
    std::unique_lock lk(state_mu_);
    state_cv_.wait_for(lk, options_.min_retry, [this] { return stopping_; });
  }
}

void MqttClient::OnConnectionLost() {
  {
    std::lock_guard lk(state_mu_);
    lost_ = true;
  }
  state_cv_.notify_all();
}

bool MqttClient::WaitConnected(std::chrono::milliseconds timeout) const {
  std::unique_lock lk(state_mu_);
  return state_cv_.wait_for(lk, timeout, [this] { return connected_ || stopping_; }) &&
         connected_;
}

bool MqttClient::IsConnected() const {
  std::lock_guard lk(state_mu_);
  return connected_;
}

MqttVersion MqttClient::NegotiatedVersion() const {
  std::lock_guard lk(state_mu_);
  return negotiated_;
}

void MqttClient::SetConnectionHandler(std::function<void(bool)> handler) {
  std::lock_guard lk(state_mu_);
  connection_handler_ = std::move(handler);
}

std::shared_ptr<mqtt::async_client> MqttClient::CurrentClient(MqttVersion* version) const {
  std::lock_guard lk(client_mu_);
  if (version != nullptr) {
    *version = client_version_;
  }
  return client_;
}

Status MqttClient::Publish(const std::string& topic, std::string_view payload,
                           const PublishOptions& options) {
  auto fail = [this](Error e) {
    publish_failures_++;
    return Fail(std::move(e));
  };
  if (options.qos < 0 || options.qos > 1) {
    return fail(Error(ErrorCode::kInvalidArgument, "MQTT QoS must be 0 or 1"));
  }
  if (topic.empty() || topic.find_first_of("+#") != std::string::npos) {
    return fail(Error(ErrorCode::kInvalidArgument, "bad MQTT topic to publish to: '" + topic + "'"));
  }
  MqttVersion version = MqttVersion::kAuto;
  auto client = CurrentClient(&version);
  if (!client || !client->is_connected()) {
    return fail(Error(ErrorCode::kIo, "not connected to " + server_uri_));
  }
  try {
    auto msg = mqtt::make_message(topic, payload.data(), payload.size(), options.qos,
                                  options.retained);
    if (!options.content_type.empty() && version == MqttVersion::kV5) {
      msg->set_properties(
          mqtt::properties{mqtt::property(mqtt::property::CONTENT_TYPE, options.content_type)});
    }
    auto token = client->publish(msg);
    if (!token->wait_for(options_.operation_timeout)) {
      return fail(Error(ErrorCode::kIo, "timed out publishing to " + topic));
    }
  } catch (const std::exception& e) {
    return fail(PahoError("publishing to " + topic, e));
  }
  published_++;
  return {};
}

Status MqttClient::SubscribeNow(const std::string& filter, int qos) {
  MqttVersion version = MqttVersion::kAuto;
  auto client = CurrentClient(&version);
  if (!client) {
    return Fail(ErrorCode::kIo, "not connected to " + server_uri_);
  }
  try {
    mqtt::token_ptr token;
    if (version == MqttVersion::kV5) {
      // Retained messages only for a new subscription, so a re-subscribe does not repeat them.
      token = client->subscribe(
          filter, qos,
          mqtt::subscribe_options(false, false, mqtt::subscribe_options::SEND_RETAINED_ON_NEW));
    } else {
      token = client->subscribe(filter, qos);
    }
    if (!token->wait_for(options_.operation_timeout)) {
      return Fail(ErrorCode::kIo, "timed out subscribing to " + filter);
    }
    auto response = token->get_subscribe_response();
    for (auto code : response.get_reason_codes()) {
      if (static_cast<int>(code) >= 0x80) {
        return Fail(ErrorCode::kIo, "broker refused the subscription to " + filter + " (reason " +
                                        std::to_string(static_cast<int>(code)) + ")");
      }
    }
  } catch (const std::exception& e) {
    return Fail(PahoError("subscribing to " + filter, e));
  }
  return {};
}

Status MqttClient::Subscribe(const std::string& filter, int qos, MqttHandler handler) {
  if (qos < 0 || qos > 1) {
    return Fail(ErrorCode::kInvalidArgument, "MQTT QoS must be 0 or 1");
  }
  if (filter.empty() || !handler) {
    return Fail(ErrorCode::kInvalidArgument, "MQTT subscription needs a filter and a handler");
  }
  auto shared = std::make_shared<MqttHandler>(std::move(handler));
  {
    std::lock_guard lk(subs_mu_);
    auto it = std::find_if(subs_.begin(), subs_.end(),
                           [&](const Subscription& s) { return s.filter == filter; });
    if (it != subs_.end()) {
      it->qos = qos;
      it->handler = shared;
    } else {
      subs_.push_back({filter, qos, shared});
    }
  }
  auto client = CurrentClient();
  if (!client || !client->is_connected()) {
    return {};  // the connection loop subscribes on connect
  }
  if (auto st = SubscribeNow(filter, qos); !st) {
    std::lock_guard lk(subs_mu_);
    std::erase_if(subs_, [&](const Subscription& s) { return s.handler == shared; });
    return st;
  }
  return {};
}

Status MqttClient::Unsubscribe(const std::string& filter) {
  bool known = false;
  {
    std::lock_guard lk(subs_mu_);
    known = std::erase_if(subs_, [&](const Subscription& s) { return s.filter == filter; }) > 0;
  }
  {
    std::lock_guard lk(gate_->mu);  // a dispatch in progress finishes first
  }
  auto client = CurrentClient();
  if (!known || !client || !client->is_connected()) {
    return {};
  }
  try {
    if (!client->unsubscribe(filter)->wait_for(options_.operation_timeout)) {
      return Fail(ErrorCode::kIo, "timed out unsubscribing from " + filter);
    }
  } catch (const std::exception& e) {
    return Fail(PahoError("unsubscribing from " + filter, e));
  }
  return {};
}

// Runs with gate_->mu held (see MakeClient).
void MqttClient::Dispatch(const MqttMessage& message) {
  received_++;
  std::vector<std::shared_ptr<MqttHandler>> handlers;
  {
    std::lock_guard lk(subs_mu_);
    for (const auto& s : subs_) {
      if (TopicMatches(s.filter, message.topic)) {
        handlers.push_back(s.handler);
      }
    }
  }
  for (const auto& h : handlers) {
    try {
      (*h)(message);
    } catch (const std::exception& e) {
      spdlog::error("mqtt {}: handler for {} threw: {}", options_.client_id, message.topic,
                    e.what());
    }
  }
}

MqttClient::Counters MqttClient::counters() const {
  return {connects_.load(), lost_count_.load(), published_.load(), publish_failures_.load(),
          received_.load()};
}

}  // namespace airlock::net
