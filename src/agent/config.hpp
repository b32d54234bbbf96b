#pragma once
// The agent's configuration: a YAML file (docs/agent.md lists every key), or the defaults.
//
// Every key is optional; an unknown key is refused with its path ("http.prot: unknown key"), so a
// typo never silently falls back to a default. Plain values; thread-compatible.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "runtime/onnx_runtime.hpp"

namespace airlock::agent {

// Which installed versions of a model serve.
struct VersionPolicy {
  enum class Kind {
    kLatest,    // the `latest` highest release counters
    kSpecific,  // exactly the versions listed
    kAll,       // every installed version
  };
  Kind kind = Kind::kLatest;
  std::size_t latest = 1;
  std::vector<std::string> versions;
};

struct DynamicBatching {
  std::int64_t max_batch_size = 8;                // rows per execution, across requests
  std::chrono::microseconds max_queue_delay{2000};  // how long the first request may wait
};

struct ModelConfig {
  VersionPolicy versions;
  runtime::SessionConfig session;
  int instances = 1;           // executions of one version at once
  std::size_t max_queue = 64;  // requests waiting beyond those; more get 503
  std::chrono::milliseconds timeout{30000};  // from arrival to the end of execution
  bool warmup = true;          // run the package's samples before ready; a mismatch fails the load
  std::optional<DynamicBatching> batching;
  // Pipeline inputs and results (sources and sinks); kept as given, read by the pipeline runner.
  nlohmann::json io = nlohmann::json::object();
};

struct HttpConfig {
  std::string address = "127.0.0.1";
  int port = 8000;
  int threads = 16;  // connections served at once; a keep-alive connection holds one
  std::uint64_t max_request_size = 64ULL << 20;
  std::filesystem::path api_key_file;  // set: every request but /v2/health/* needs the key
  std::filesystem::path tls_cert;      // both set: HTTPS
  std::filesystem::path tls_key;
  bool allow_plain = false;  // plain HTTP on an address other than loopback (not recommended)
};

// Monitoring (docs/monitoring.md): what the agent measures of each served version and how often
// it reports it to its gateway.
struct TelemetryConfig {
  bool enabled = true;
  std::chrono::milliseconds interval{60000};
  std::size_t sample_per_request = 256;  // values of each feature read from one request
  double monitor_budget = 0.005;  // share of serving time spent observing requests (see monitor)
  std::uint64_t outbox_max = 64ULL << 20;  // bytes of telemetry kept while the gateway is away
  double capture_max_per_second = 20;      // captures kept at most, whatever the site's rate
};

struct AgentConfig {
  std::filesystem::path store = "/var/lib/airlock-agent";
  TelemetryConfig telemetry;
  HttpConfig http;
  runtime::RuntimeOptions runtime;
  // all: every installed model loads at start; explicit: only those in `load`, and what the
  // repository API loads later.
  enum class ModelControl { kAll, kExplicit };
  ModelControl model_control = ModelControl::kAll;
  std::vector<std::string> load;
  ModelConfig defaults;
  std::map<std::string, ModelConfig> models;  // overrides of defaults, by model name
  struct Mqtt {
    std::string broker;     // tcp://host:1883; empty: no MQTT (routes may not use it)
    std::string client_id;  // default airlock-agent-HOSTNAME
    std::string username;
    std::string password;   // read from password_file
  } mqtt;

  // The settings for one model: its overrides over the defaults.
  const ModelConfig& For(const std::string& model) const;
};

// Parses a configuration document (YAML already read into JSON). origin names it in errors.
[[nodiscard]] Result<AgentConfig> ParseAgentConfig(const nlohmann::json& doc,
                                                   std::string_view origin);
[[nodiscard]] Result<AgentConfig> LoadAgentConfig(const std::filesystem::path& path);

// "64MiB", "512KiB", "1GiB", "1000" (bytes).
[[nodiscard]] Result<std::uint64_t> ParseByteSize(const nlohmann::json& value);

}  // namespace airlock::agent
