#pragma once
// The whole agent as `airlock-agent serve` runs it: ONNX Runtime, the model repository, the HTTP
// server, the MQTT connection and the pipelines' sources and sinks, built from one AgentConfig.
//
// Create binds the port, loads what the configuration says (load failures are logged, the rest
// serve), connects to the broker in the background and starts every route. When the store holds
// an enrollment (`airlock-agent enroll`), the gateway manages the models its directives name
// (DeviceClient): they serve what their activation journals committed. Serve blocks until
// Stop (from any thread); destroying the agent stops the routes first, then the server.

#include <memory>
#include <string>
#include <vector>

#include "agent/config.hpp"
#include "agent/device_client.hpp"
#include "agent/http_api.hpp"
#include "agent/io.hpp"
#include "agent/model_repository.hpp"
#include "core/result.hpp"
#include "net/mqtt.hpp"
#include "runtime/onnx_runtime.hpp"

namespace airlock::agent {

class Agent {
 public:
  // kInvalidArgument for a configuration that cannot work (a route that needs MQTT without a
  // broker, a bad source or sink), kIo when the port is taken.
  [[nodiscard]] static Result<std::unique_ptr<Agent>> Create(AgentConfig config,
                                                             std::string platform);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  int port() const { return server_->port(); }
  // Errors of the models that failed to load at start.
  const std::vector<Error>& load_errors() const { return load_errors_; }
  ModelRepository& repository() { return *repository_; }
  // Routes by model name, for counters.
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

  void Serve();
  void Stop();

 private:
  Agent() = default;
  AgentConfig config_;
  std::unique_ptr<runtime::OnnxRuntime> ort_;
  std::unique_ptr<ModelRepository> repository_;
  std::unique_ptr<AgentServer> server_;
  std::unique_ptr<net::MqttClient> mqtt_;
  std::vector<std::unique_ptr<Route>> routes_;
  std::vector<Error> load_errors_;
  std::unique_ptr<DeviceClient> device_;  // when the store holds an enrollment
};

}  // namespace airlock::agent
