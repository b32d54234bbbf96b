#pragma once
// The agent's HTTP API: the Open Inference Protocol as Triton serves it (/v2/...), Prometheus
// metrics (/metrics), the agent's status (/api/v1/status) and the pipeline endpoint
// (/api/v1/models/{m}/predict). docs/agent-api.md describes every route with curl examples.
//
// Errors are Triton's: a JSON body {"error": "..."} with 400 (bad request), 404 (unknown model
// or version), 503 (queue full, not ready, timed out) or 500. The server binds to the configured
// address (127.0.0.1 by default); with an API key configured every route except /v2/health/*
// needs "Authorization: Bearer KEY". Bind, then Serve on one thread, Stop from any other.

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/config.hpp"
#include "agent/model_repository.hpp"
#include "core/prometheus.hpp"
#include "core/result.hpp"

namespace airlock::agent {

// Adds families to every /metrics answer (the pipelines' routes, the MQTT connection).
using MetricsAppender = prometheus::MetricsAppender;

class AgentServer {
 public:
  AgentServer(ModelRepository& repository, std::string platform, std::string runtime_version);
  ~AgentServer();
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  // appender is called on each GET /metrics, after the agent's own families, on the server's
  // thread. Set before Serve.
  void SetMetricsAppender(MetricsAppender appender);

  // Binds the configured address and port (port 0: a free one). kIo when the port is taken,
  // kInvalidArgument for an unreadable API key or TLS files.
  [[nodiscard]] Status Bind();
  int port() const { return port_; }
  // Serves until Stop(). Blocks.
  void Serve();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// The Prometheus families of the repository's statistics (Triton's metric names plus Airlock's
// own), into out; the second form returns the exposition.
void RenderMetrics(const ModelRepository& repository, prometheus::MetricsText& out);
std::string RenderMetrics(const ModelRepository& repository);

}  // namespace airlock::agent
