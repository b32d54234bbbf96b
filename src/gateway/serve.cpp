#include "gateway/serve.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "console/console.hpp"
#include "core/exit_codes.hpp"
#include "core/fs.hpp"
#include "delivery/protocol.hpp"
#include "gateway/approvals_api.hpp"
#include "gateway/broker_config.hpp"
#include "gateway/cache.hpp"
#include "gateway/delivery_service.hpp"
#include "gateway/devices_api.hpp"
#include "gateway/fleet_service.hpp"
#include "gateway/inventory.hpp"
#include "gateway/metrics.hpp"
#include "gateway/monitor_api.hpp"
#include "gateway/registry.hpp"
#include "gateway/rollouts_api.hpp"
#include "gateway/state_store.hpp"
#include "gateway/telemetry.hpp"
#include "monitor/batch.hpp"
#include "net/http_server.hpp"
#include "net/mqtt.hpp"
#include "trust/root_store.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;

int Report(const Error& e) {
  std::fprintf(stderr, "airlock-gateway: error: %s\n", e.ToString().c_str());
  return ExitCodeFor(e);
}

// The hub's reason from an OCI-shaped error body, else the body's start.
std::string HubReason(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
    const json& e = j["errors"][0];
    std::string detail = e.value("detail", "");
    return detail.empty() ? e.value("message", "") : detail;
  }
  return body.substr(0, 200);
}

// The root rotations the hub accepted and this gateway has not (GET /api/v1/roots), walked and
// kept like `airlock-gateway root update` does. Best effort: a hub that cannot be reached, or
// whose roots do not verify, leaves the gateway with the root it trusts (and says so).
void TakeHubRoots(HubHttp& hub, trust::TrustedRoot& trusted, const std::filesystem::path& dir,
                  TimePoint now) {
  auto reply = hub.Request("GET", "/api/v1/roots", "", "", /*with_credential=*/true);
  if (!reply) {
    spdlog::warn("could not ask the hub for root rotations ({}); trusting root version {}",
                 reply.error().ToString(), trusted.root.version);
    return;
  }
  if (reply->status != 200) {
    spdlog::info("the hub serves no root rotations (HTTP {}); trusting root version {}",
                 reply->status, trusted.root.version);
    return;
  }
  json body = json::parse(reply->body, nullptr, false);
  std::vector<trust::SignedDocument> docs;
  if (body.is_object() && body.contains("roots") && body["roots"].is_array()) {
    for (const json& doc : body["roots"]) {
      auto parsed = trust::SignedDocument::Parse(doc.dump());
      if (parsed) {
        docs.push_back(std::move(*parsed));
      }
    }
  }
  const std::int64_t before = trusted.root.version;
  auto update = trust::AcceptRootRotations(trusted, dir, docs, now);
  if (!update) {
    spdlog::error(
        "the hub's root rotations do not verify against root version {}: {}; still "
        "trusting it",
        before, update.error().ToString());
  } else if (!update->accepted.empty()) {
    spdlog::info("took root version {} from the hub (was {})", trusted.root.version, before);
  }
}

// The Ed25519 key at BASE.key (BASE.pub beside it), made on first use.
Result<PrivateKey> LoadOrMakeKey(const std::filesystem::path& base) {
  std::filesystem::path private_path = base;
  private_path += ".key";
  std::filesystem::path public_path = base;
  public_path += ".pub";
  std::error_code ec;
  if (std::filesystem::exists(private_path, ec)) {
    return PrivateKey::Load(private_path);
  }
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(base.parent_path()));
  AIRLOCK_ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::Generate());
  AIRLOCK_RETURN_IF_ERROR(key.Save(private_path, public_path));
  return key;
}

}  // namespace

std::filesystem::path CredentialPath(const GatewayConfig& config) {
  return config.data / "hub-credential";
}

Result<std::string> EnsureRegistered(const GatewayConfig& config, const std::string& token,
                                     HubHttp& hub) {
  std::filesystem::path path = CredentialPath(config);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string credential, ReadFile(path, 4096));
    while (!credential.empty() && (credential.back() == '\n' || credential.back() == '\r')) {
      credential.pop_back();
    }
    if (!credential.empty()) {
      return credential;
    }
  }
  if (token.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "this gateway is not registered with the hub yet (no " + path.string() +
                    "): start it once with --register-token TOKEN (or hub.register_token, or "
                    "AIRLOCK_GATEWAY_REGISTER_TOKEN); the hub's admin makes one with "
                    "POST /api/v1/gateways/tokens");
  }
  json body = {{"token", token}, {"name", config.name}, {"labels", config.labels}};
  AIRLOCK_ASSIGN_OR_RETURN(HttpReply reply,
                           hub.Request("POST", "/api/v1/gateways/register", body.dump(),
                                       "application/json", false, 1 << 16));
  if (reply.status == 401 || reply.status == 403) {
    return Fail(ErrorCode::kVerification,
                "the hub refused the registration: " + HubReason(reply.body));
  }
  if (reply.status == 409) {
    return Fail(ErrorCode::kAlreadyExists,
                "the hub refused to register " + config.name + ": " + HubReason(reply.body));
  }
  if (reply.status != 200 && reply.status != 201) {
    return Fail(ErrorCode::kUnavailable, "the hub answered " + std::to_string(reply.status) +
                                             " to the registration: " + HubReason(reply.body));
  }
  json answer = json::parse(reply.body, nullptr, false);
  if (!answer.is_object() || !answer.contains("credential") || !answer["credential"].is_string()) {
    return Fail(ErrorCode::kCorrupt, "the hub's answer to the registration has no credential");
  }
  std::string credential = answer["credential"].get<std::string>();
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(path, credential + "\n", 0600));
  spdlog::info("registered with the hub as {}; the credential is in {}", config.name,
               path.string());
  return credential;
}

int Serve(const GatewayConfig& config, const std::string& register_token, StopSignals& signals) {
  SystemClock clock;
  const net::HttpTls http_tls{
      .cert = config.http_tls_cert, .key = config.http_tls_key, .client_ca = {}};
  if (Status checked =
          net::CheckPlainHttp("the gateway", config.http_address, http_tls, config.http_allow_plain,
                              "http.tls_cert and http.tls_key");
      !checked) {
    return Report(checked.error());
  }
  for (auto [url, setting] : {std::pair{&config.mqtt_broker, "mqtt.broker"},
                              std::pair{&config.devices_mqtt_broker, "devices.mqtt_broker"}}) {
    if (Status checked = net::CheckPlainMqtt(*url, config.mqtt_allow_plain, setting); !checked) {
      return Report(checked.error());
    }
  }
  if (Status made = MakeDirectories(config.data); !made) {
    return Report(made.error());
  }
  ::chmod(config.data.c_str(), 0700);
  // The root the site was installed with, and the rotations accepted since
  // (`airlock-gateway root update`).
  auto trusted_root = trust::LoadTrustedRoot(config.root, config.roots_dir(), clock.Now());
  if (!trusted_root) {
    return Report(trusted_root.error());
  }
  const trust::Root* root = &trusted_root->root;
  HubHttp hub(config.hub_url, "");
  hub.set_ca_file(config.hub_ca_file.string());
  // The gateway's certificate for the hub (hub.cert_file, else its cloud broker's): read once
  // here, so that a file it cannot read stops it with the key named, not every request later.
  if (auto [cert, key] = config.hub_client_cert(); !cert.empty()) {
    const bool own = !config.hub_cert_file.empty();
    for (const auto& [file, setting] :
         {std::pair{cert, own ? "hub.cert_file" : "mqtt.cert_file (for the hub too)"},
          std::pair{key, own ? "hub.key_file" : "mqtt.key_file (for the hub too)"}}) {
      if (auto read = ReadFile(file, 1 << 20); !read) {
        return Report(read.error().WithContext(setting));
      }
    }
    hub.set_client_certificate(cert.string(), key.string());
  }
  auto credential = EnsureRegistered(config, register_token, hub);
  if (!credential) {
    return Report(credential.error());
  }
  hub.set_credential(*credential);
  TakeHubRoots(hub, *trusted_root, config.roots_dir(), clock.Now());

  CacheOptions cache_options;
  cache_options.max_bytes = config.cache_max_bytes;
  auto cache = GatewayCache::Open(config.cache_dir(), cache_options, clock);
  if (!cache) {
    return Report(cache.error());
  }
  auto store = GatewayStateStore::Open(config.data, clock.Now());
  if (!store) {
    return Report(store.error());
  }
  // The site's devices, for the hub's previews and console: at start, soon after a device changes
  // or reports, and every 30 s.
  InventoryReporter inventory(**store, hub, config.name, std::chrono::seconds(30));
  // What devices are enrolled with: the CA that certifies them, the key their directives are
  // signed with, and the root they pin (docs/rollout.md, "Enrollment").
  auto device_ca = OpenDeviceCa(config, clock.Now());
  if (!device_ca) {
    return Report(device_ca.error());
  }
  // The revoked devices' certificates, for the factory broker (rewritten on every revoke).
  if (Status crl = PublishDeviceCrl(*device_ca, **store, config, clock.Now()); !crl) {
    return Report(crl.error());
  }
  auto directive_key = LoadOrMakeKey(config.data / "devices" / "directive");
  if (!directive_key) {
    return Report(directive_key.error());
  }
  // Devices enroll with the newest root; the rotations reach the others in their directives.
  auto root_document = trusted_root->document.Serialize();
  if (!root_document) {
    return Report(root_document.error());
  }

  net::MqttOptions mqtt_options;
  mqtt_options.broker_url = config.mqtt_broker;
  mqtt_options.client_id = config.client_id();
  mqtt_options.version = net::MqttVersion::kV5;
  mqtt_options.persistent_session = true;
  if (config.mqtt_broker.starts_with("mqtts://")) {
    mqtt_options.tls = net::MqttTls{.ca_file = config.mqtt_ca_file.string(),
                                    .cert_file = config.mqtt_cert_file.string(),
                                    .key_file = config.mqtt_key_file.string(),
                                    .verify_hostname = true};
  }
  auto mqtt = net::MqttClient::Create(mqtt_options);
  if (!mqtt) {
    return Report(mqtt.error());
  }
  net::MqttClient* client = mqtt->get();
  DeliveryServiceOptions options{.gateway = config.name,
                                 .topic_prefix = config.mqtt_prefix,
                                 .policy = config.policy,
                                 .reserve_bytes = config.reserve_bytes,
                                 .data_dir = config.data,
                                 .progress_interval = std::chrono::seconds(10),
                                 .range_retries = 3};
  auto service = DeliveryService::Create(
      options, *root, **cache, **store, hub,
      [client](const std::string& topic, const std::string& payload) {
        return client->Publish(
            topic, payload,
            net::PublishOptions{.qos = 1, .retained = false, .content_type = "application/json"});
      },
      clock);
  if (!service) {
    return Report(service.error());
  }
  DeliveryService* svc = service->get();

  // The fleet service: its own connection to the factory broker the devices share (DESIGN §5.1),
  // and the fleet summary on the cloud broker.
  net::MqttOptions fleet_mqtt_options;
  fleet_mqtt_options.broker_url = config.factory_broker();
  fleet_mqtt_options.client_id = config.client_id() + "-fleet";
  // A clean session: every (re)connect subscribes anew, so the broker sends each device's
  // retained state and online flag, the latest of each, which is all the fleet needs (a
  // persistent session would get retained messages only for new subscriptions, and its queued
  // messages before the handlers are registered).
  fleet_mqtt_options.persistent_session = false;
  if (config.devices_mqtt_broker.starts_with("mqtts://")) {
    const auto& dir = config.devices_mqtt_tls_dir;
    fleet_mqtt_options.tls = net::MqttTls{.ca_file = (dir / "ca.pem").string(),
                                          .cert_file = (dir / "gateway.pem").string(),
                                          .key_file = (dir / "gateway.key").string(),
                                          .verify_hostname = true};
  } else if (config.devices_mqtt_broker.empty()) {
    fleet_mqtt_options.tls = mqtt_options.tls;  // one broker for the hub's side and the devices'
  }
  auto fleet_mqtt = net::MqttClient::Create(fleet_mqtt_options);
  if (!fleet_mqtt) {
    return Report(fleet_mqtt.error());
  }
  net::MqttClient* fleet_client = fleet_mqtt->get();
  auto publisher = [](net::MqttClient* c) {
    return [c](const std::string& topic, const std::string& payload, bool retained) {
      return c->Publish(
          topic, payload,
          net::PublishOptions{.qos = 1,
                              .retained = retained,
                              .content_type = payload.empty() ? "" : "application/json"});
    };
  };
  FleetServiceOptions fleet_options{
      .gateway = config.name,
      .device_prefix = config.factory_prefix(),
      .hub_prefix = config.mqtt_prefix,
      .directive_life = std::chrono::hours(24 * 30),
      .capture = config.capture,
      .root_rotations = trusted_root->rotations,
      .on_device_report = [&inventory](const std::string&) { inventory.Changed(); }};
  auto fleet = FleetService::Create(fleet_options, *root, **store, *directive_key,
                                    publisher(fleet_client), publisher(client), clock);
  if (!fleet) {
    return Report(fleet.error());
  }
  FleetService* fleet_svc = fleet->get();
  svc->SetRolloutApprovedHook(
      [fleet_svc](const DeliveryRecord& r) { fleet_svc->OnDeliveryApproved(r.id); });
  svc->SetCancelledHook([fleet_svc](const DeliveryRecord& r) {
    fleet_svc->OnDeploymentCancelled(r.deployment, r.message);
  });
  fleet_client->SetConnectionHandler([fleet_svc](bool connected) {
    if (connected) {
      fleet_svc->OnDevicesConnected();
    }
  });
  auto device_topics = delivery::DeviceTopics::Create(config.factory_prefix());
  if (!device_topics) {
    return Report(device_topics.error());
  }
  auto topics = delivery::Topics::Create(config.mqtt_prefix);
  auto filters = topics ? topics->GatewaySubscriptions(config.name)
                        : Result<std::vector<std::string>>(Fail(topics.error()));
  if (!filters) {
    return Report(filters.error());
  }
  // Resumed downloads report at once: give the broker a moment first (a status lost to a broker
  // that is down is not fatal: the hub re-grants a silent delivery, and is answered again).
  if (!client->WaitConnected(std::chrono::seconds(10))) {
    spdlog::warn("MQTT broker {} not reachable yet; retrying in the background",
                 config.mqtt_broker);
  }
  svc->Start();
  for (const std::string& filter : *filters) {
    Status subscribed = client->Subscribe(
        filter, 1, [svc](const net::MqttMessage& m) { svc->OnMessage(m.topic, m.payload); });
    if (!subscribed) {
      return Report(subscribed.error());
    }
  }
  fleet_svc->Start();
  // The hub's pause, resume and cancel of its deployments' rollouts here.
  auto command_topic = topics->Topic(delivery::TopicKind::kRolloutCommand, config.name);
  if (!command_topic) {
    return Report(command_topic.error());
  }
  if (Status subscribed = client->Subscribe(
          *command_topic, 1,
          [fleet_svc](const net::MqttMessage& m) { fleet_svc->OnHubCommand(m.topic, m.payload); });
      !subscribed) {
    return Report(subscribed.error());
  }
  for (const std::string& filter : device_topics->GatewaySubscriptions()) {
    Status subscribed = fleet_client->Subscribe(filter, 1, [fleet_svc](const net::MqttMessage& m) {
      fleet_svc->OnDeviceMessage(m.topic, m.payload);
    });
    if (!subscribed) {
      return Report(subscribed.error());
    }
  }

  // Monitoring: the devices' telemetry, stored here and forwarded to the hub; the last day of it
  // (at most kRecentReports reports) also kept in memory for the site's own view.
  constexpr std::chrono::hours kRecentAge{24};
  constexpr std::size_t kRecentReports = 20000;
  monitor::RecentTelemetry recent(kRecentAge, kRecentReports);
  GatewayStateStore* state = store->get();
  auto relay = TelemetryRelay::Start(
      TelemetryRelayOptions{.outbox = config.data / "telemetry.db",
                            .gateway = config.name,
                            .outbox_max = config.telemetry_outbox_max,
                            .batch_records = 500,
                            .batch_bytes = 1ULL << 20,
                            .forward_interval = std::chrono::seconds(2),
                            .max_backoff = std::chrono::seconds(60),
                            .max_queued = 1000,
                            .recent = &recent},
      *device_topics, hub,
      [state](const std::string& device) {
        auto d = state->Device(device);
        return d && !d->revoked_at;
      },
      [publish = publisher(fleet_client), device_topics = *device_topics](
          const std::string& device, const std::string& payload) -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(
            std::string topic,
            device_topics.Topic(delivery::DeviceTopicKind::kTelemetryAck, device));
        return publish(topic, payload, /*retained=*/false);
      });
  if (!relay) {
    return Report(relay.error());
  }
  TelemetryRelay* relay_ptr = relay->get();
  if (Status subscribed = fleet_client->Subscribe(device_topics->TelemetrySubscription(), 1,
                                                  [relay_ptr](const net::MqttMessage& m) {
                                                    relay_ptr->OnDeviceMessage(m.topic, m.payload);
                                                  });
      !subscribed) {
    return Report(subscribed.error());
  }

  RegistryOptions registry_options;
  registry_options.address = config.http_address;
  registry_options.port = config.http_port;
  registry_options.tls_cert = config.http_tls_cert;
  registry_options.tls_key = config.http_tls_key;
  ReadAuthorizer device_only;
  if (!config.http_tls_cert.empty()) {
    // Over HTTPS, /v2/ is for enrolled devices, known by the certificate they enrolled with.
    registry_options.client_ca = DeviceCaDir(config) / "ca.pem";
    device_only = [state](const ReadRequest& r) { return AuthorizeDevicePull(*state, r); };
  }
  ApprovalsContext approvals{.store = store->get(),
                             .service = svc,
                             .cache = cache->get(),
                             .root = root,
                             .hub_url = config.hub_url,
                             .imports_dir = config.data / "imports"};
  DevicesContext devices{
      .store = store->get(),
      .ca = &*device_ca,
      .directive_key = &*directive_key,
      .root_document = *root_document,
      .mqtt_broker = config.factory_broker(),
      .mqtt_prefix = config.factory_prefix(),
      .certificate_validity = std::chrono::hours(24 * 365),
      .clock = &clock,
      .on_change = [fleet_svc, &device_ca, &store, &config, &clock,
                    &inventory](const std::string& device) {
        fleet_svc->OnDeviceChanged(device);
        inventory.Changed();
        auto record = (*store)->Device(device);
        if (record && record->revoked_at) {
          Status crl = PublishDeviceCrl(*device_ca, **store, config, clock.Now());
          if (!crl) {
            spdlog::error("the revocation list was not rewritten: {}", crl.error().ToString());
          }
          Status cut = DisconnectDevice(*device_ca, config, device, clock.Now());
          if (!cut) {
            spdlog::warn(
                "revoked {} stays connected to the factory broker "
                "until its next connection: {}",
                device, cut.error().ToString());
          }
        }
      }};
  RolloutsContext rollouts{.store = store->get(), .fleet = fleet_svc};
  // Outlives the registry (declared before it): its handler and counters are the server's.
  GatewayMetrics metrics({.store = store->get(),
                          .cache = cache->get(),
                          .deliveries = svc,
                          .fleet = fleet_svc,
                          .hub_mqtt = client,
                          .devices_mqtt = fleet_client});
  metrics.AddMetricsAppender([relay_ptr](prometheus::MetricsText& out) {
    using prometheus::MetricType;
    monitor::AppendOutboxMetrics(out, relay_ptr->outbox_stats());
    out.Family("airlock_telemetry_forwarded_total", MetricType::kCounter,
               "Telemetry records the hub stored")
        .Sample(relay_ptr->forwarded());
    out.Family("airlock_telemetry_refused_batches_total", MetricType::kCounter,
               "Device telemetry batches refused (unknown device, foreign ids, malformed, queue "
               "full)")
        .Sample(relay_ptr->refused_batches());
    out.Family("airlock_telemetry_intake_queue_depth", MetricType::kGauge,
               "Device telemetry batches waiting to be stored")
        .Sample(relay_ptr->queued());
    out.Family("airlock_telemetry_hub_reachable", MetricType::kGauge,
               "Whether the hub took the last telemetry batch (1) or not (0)")
        .Sample(relay_ptr->hub_reachable() ? 1 : 0);
  });
  auto registry = DeviceRegistry::Start(
      **cache, registry_options, device_only,
      [&approvals, &devices, &rollouts, &metrics, &recent](httplib::Server& s) {
        InstallWhoAmI(s, approvals.store);
        InstallApprovalsApi(s, approvals);
        InstallDevicesApi(s, devices);
        InstallRolloutsApi(s, rollouts);
        InstallMonitorApi(s, {.store = approvals.store, .recent = &recent, .kept = kRecentAge});
        metrics.Install(s);
        console::Mount(s, console::App::kGateway);
      });
  if (!registry) {
    return Report(registry.error());
  }
  std::printf(
      "airlock-gateway: %s serving on %s://%s:%d (devices: /v2/, operators: /api/v1/); "
      "MQTT %s as %s\n",
      config.name.c_str(), config.http_tls_cert.empty() ? "http" : "https",
      config.http_address.c_str(), (*registry)->port(), config.mqtt_broker.c_str(),
      config.client_id().c_str());
  std::fflush(stdout);

  signals.Wait();
  (*registry)->Stop();
  fleet_svc->Stop();    // before the clients it publishes with go
  fleet_mqtt->reset();  // no telemetry arrives after this
  relay->reset();
  mqtt->reset();  // no handler runs after this
  svc->Stop();
  return kExitOk;
}

}  // namespace airlock::gateway
