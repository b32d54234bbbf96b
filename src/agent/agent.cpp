#include "agent/agent.hpp"

#include "monitor/batch.hpp"

#include <unistd.h>

#include "core/log.hpp"

namespace airlock::agent {

Result<std::unique_ptr<Agent>> Agent::Create(AgentConfig config, std::string platform) {
  std::unique_ptr<Agent> a(new Agent());
  auto identity = LoadIdentity(config.store);
  if (!identity && identity.error().code() != ErrorCode::kNotFound) {
    return Fail(identity.error());
  }
  // Telemetry goes to the gateway: an agent that no gateway manages measures nothing.
  config.telemetry.enabled = config.telemetry.enabled && identity.has_value();
  a->config_ = std::move(config);
  const AgentConfig& c = a->config_;
  AIRLOCK_ASSIGN_OR_RETURN(a->ort_, runtime::OnnxRuntime::Create(c.runtime));
  AIRLOCK_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(c.store));
  (void)store;
  a->repository_ = std::make_unique<ModelRepository>(c.store, *a->ort_, c, platform);
  a->server_ = std::make_unique<AgentServer>(*a->repository_, platform, a->ort_->Version());
  AIRLOCK_RETURN_IF_ERROR(a->server_->Bind());

  if (!c.mqtt.broker.empty()) {
    net::MqttOptions options;
    options.broker_url = c.mqtt.broker;
    options.client_id = c.mqtt.client_id;
    if (options.client_id.empty()) {
      char host[256] = {};
      gethostname(host, sizeof host - 1);
      options.client_id = "airlock-agent-" + std::string(host);
    }
    options.username = c.mqtt.username;
    options.password = c.mqtt.password;
    AIRLOCK_ASSIGN_OR_RETURN(a->mqtt_, net::MqttClient::Create(options));
  }
  IoContext context{a->mqtt_.get(), nullptr};
  ModelRepository* repo = a->repository_.get();
  for (const auto& [name, model] : c.models) {
    if (!model.io.contains("sources") && !model.io.contains("sinks")) {
      continue;
    }
    nlohmann::json route = {{"name", name},
                            {"sources", model.io.value("sources", nlohmann::json::array())},
                            {"sinks", model.io.value("sinks", nlohmann::json::array())}};
    auto handler = [repo, model_name = name](const SourceInput& in) -> Result<nlohmann::json> {
      AIRLOCK_ASSIGN_OR_RETURN(auto served, repo->Find(model_name));
      return Predict(*served, pipeline::Input{in.bytes, in.content_type, in.name});
    };
    auto r = Route::Create(route, handler, context);
    if (!r) {
      return Fail(std::move(r.error()).WithContext("models." + name));
    }
    a->routes_.push_back(std::move(*r));
  }

  if (identity) {
    AIRLOCK_RETURN_IF_ERROR(DeviceClient::PrepareRepository(c.store, *a->repository_));
  }
  a->load_errors_ = a->repository_->LoadAtStart();
  for (const auto& e : a->load_errors_) {
    spdlog::error("{}", e.ToString());
  }
  for (auto& r : a->routes_) {
    auto started = r->Start();
    if (!started) {
      return Fail(std::move(started.error()).WithContext("starting the sources of " + r->name()));
    }
  }
  if (identity) {
    DeviceClientOptions options;
    options.store = c.store;
    options.platform = platform;
    AIRLOCK_ASSIGN_OR_RETURN(a->device_,
                             DeviceClient::Start(options, std::move(*identity), *a->repository_));
  }
  Agent* self = a.get();
  a->server_->SetMetricsAppender([self](prometheus::MetricsText& out) {
    using prometheus::MetricType;
    auto family = [&](const char* name, const char* help, auto field) {
      out.Family(name, MetricType::kCounter, help);
      for (const auto& r : self->routes_) {
        out.Sample({{"model", r->name()}}, field(r->counters()));
      }
    };
    if (self->mqtt_) {
      out.Family("airlock_mqtt_connected", MetricType::kGauge,
                 "Connected to the MQTT broker (1) or not (0)");
      out.Sample(self->mqtt_->IsConnected() ? 1 : 0);
    }
    family("airlock_route_inputs_processed_total", "Source inputs turned into results",
           [](const RouteCounters& k) { return k.processed; });
    family("airlock_route_inputs_failed_total", "Source inputs the pipeline refused",
           [](const RouteCounters& k) { return k.failed; });
    family("airlock_route_inputs_dropped_total", "Source inputs dropped (queue full)",
           [](const RouteCounters& k) { return k.dropped; });
    family("airlock_route_deliveries_total", "Results delivered to a sink",
           [](const RouteCounters& k) { return k.delivered; });
    family("airlock_route_delivery_failures_total", "Results a sink failed to take",
           [](const RouteCounters& k) { return k.delivery_failures; });
    if (self->device_ && self->device_->telemetry()) {
      monitor::AppendOutboxMetrics(out, self->device_->telemetry()->outbox_stats());
    }
    if (auto ring = self->repository_->capture()) {
      out.Family("airlock_capture_captured_total", MetricType::kCounter,
                 "Requests captured into the ring on disk")
          .Sample(ring->captured());
      out.Family("airlock_capture_dropped_total", MetricType::kCounter,
                 "Captures dropped (queue full, or a write failed)")
          .Sample(ring->dropped());
      out.Family("airlock_capture_limited_total", MetricType::kCounter,
                 "Captures skipped over telemetry.capture_max_per_second")
          .Sample(ring->limited());
      out.Family("airlock_capture_ring_bytes", MetricType::kGauge,
                 "Bytes of captures held on disk")
          .Sample(ring->held_bytes());
    }
  });
  return a;
}

Agent::~Agent() {
  device_.reset();
  for (auto& r : routes_) {
    r->Stop();
  }
  Stop();
}

void Agent::Serve() { server_->Serve(); }

void Agent::Stop() { server_->Stop(); }

}  // namespace airlock::agent
