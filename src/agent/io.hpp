#pragma once
// The agent's pipeline inputs and outputs: sources that produce inputs, sinks that take results,
// and the Route that joins them through a pipeline handler (docs/pipeline-io.md).
//
//   source (folder, MQTT topic) ──input──▶ handler (pre-processing, model, post-processing)
//                                                 │ result (JSON)
//                                                 ▼
//                                   every sink (MQTT topic, webhook, JSONL file)
//
// Sources and sinks are built from JSON objects (the agent's YAML config read as JSON), each with
// a "type". A Route owns its sources and sinks; Start starts one thread per source, and Stop (or
// the destructor) stops and joins them: after it returns no handler or sink call is running.
// A failing sink never stops a source: the failure is counted and logged, and the other sinks
// still get the result. Delivery is at least once: a crash between the handler and moving the
// input file away runs that input again after a restart.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"

namespace airlock::net {
class MqttClient;
}  // namespace airlock::net

namespace airlock::agent {

// One input to a pipeline.
struct SourceInput {
  std::string bytes;
  std::string content_type;  // "image/jpeg", …; empty when unknown (the handler sniffs)
  std::string name;          // the file name, or the MQTT topic it came on
};

// Runs a pipeline on one input. Called from source threads, possibly several at once (one per
// source), so it must be thread-safe. An error means the input is bad or the model failed; the
// folder source then moves the input to failed/ with the error's text.
using PipelineHandler = std::function<Result<nlohmann::json>(const SourceInput&)>;

// What sources and sinks may use from the agent. The pointers are not owned and must outlive
// every Route made with them.
struct IoContext {
  net::MqttClient* mqtt = nullptr;  // the agent's broker connection; null when none is configured
  const Clock* clock = nullptr;     // for result timestamps; null means the system clock
};

// ---- Sinks ----------------------------------------------------------------------------------

// Takes pipeline results somewhere. Implementations are thread-safe: sources deliver
// concurrently.
class Sink {
 public:
  virtual ~Sink() = default;
  // Delivers one result; blocks at most for the sink's own timeout. Errors are kIo (unreachable,
  // refused, full) or kInvalidArgument (a result the sink can never take, e.g. larger than
  // max_bytes).
  [[nodiscard]] virtual Status Deliver(const nlohmann::json& result) = 0;
  // "mqtt:TOPIC", "webhook:URL", "jsonl:PATH", for logs and metrics.
  virtual std::string Describe() const = 0;
};

// Builds a sink from its config object:
//   {"type": "mqtt", "topic": T, "qos": 0|1 (1), "retain": bool (false)}
//   {"type": "webhook", "url": "http://…", "timeout": "5s", "attempts": 3,
//    "headers": {"Authorization": "Bearer …"}}
//   {"type": "jsonl", "path": P, "max_bytes": N (0: no limit), "when_full": "rotate"|"refuse",
//    "keep": 1, "fsync": false}
// Fails with kInvalidArgument naming the bad field (unknown fields included), or when an mqtt
// sink is configured and the context has no MQTT client.
[[nodiscard]] Result<std::unique_ptr<Sink>> MakeSink(const nlohmann::json& config,
                                                     const IoContext& context);

// ---- Sources --------------------------------------------------------------------------------

// Feeds inputs to a processor. Start begins (on threads of its own); Stop ends and joins, and
// after it returns the processor is not running and will not be called again. Start at most once.
class Source {
 public:
  // Runs the pipeline on one input and delivers the result; the status is the handler's.
  using Processor = std::function<Status(const SourceInput&)>;

  virtual ~Source() = default;
  [[nodiscard]] virtual Status Start(Processor processor) = 0;
  virtual void Stop() = 0;
  virtual std::string Describe() const = 0;
  // Inputs the source had to drop (an MQTT source whose queue was full).
  virtual std::uint64_t dropped() const { return 0; }
};

// Builds a source from its config object:
//   {"type": "folder", "path": DIR, "pattern": "*.jpg" ("*"), "done": "processed"|"delete",
//    "settle": "2s", "rescan": "5s", "max_bytes": 67108864}
//   {"type": "mqtt", "topic": FILTER, "qos": 0|1 (1), "max_queue": 64}
[[nodiscard]] Result<std::unique_ptr<Source>> MakeSource(const nlohmann::json& config,
                                                         const IoContext& context);

// ---- Route ----------------------------------------------------------------------------------

struct RouteCounters {
  std::uint64_t processed = 0;          // inputs the handler turned into a result
  std::uint64_t failed = 0;             // inputs the handler refused (or threw on)
  std::uint64_t delivered = 0;          // (result, sink) deliveries that succeeded
  std::uint64_t delivery_failures = 0;  // (result, sink) deliveries that failed
  std::uint64_t dropped = 0;            // inputs sources dropped (queue full)
};

struct SinkCounters {
  std::string sink;  // Describe()
  std::uint64_t delivered = 0;
  std::uint64_t failures = 0;
};

// Sources → handler → sinks. Thread-safe counters; Start/Stop from one thread.
//
// Each result that is a JSON object gets, when it does not already have them, "id" (random,
// 32 hex digits: receivers are idempotent on it), "timestamp" (RFC 3339, UTC) and "input" (the
// input's name), so a result is traceable to its input wherever it lands.
class Route {
 public:
  // config: {"name": N, "sources": [...], "sinks": [...]}; other keys are left to the caller
  // (the pipeline's model and steps). Builds everything, starts nothing.
  [[nodiscard]] static Result<std::unique_ptr<Route>> Create(const nlohmann::json& config,
                                                             PipelineHandler handler,
                                                             const IoContext& context);
  ~Route();
  Route(const Route&) = delete;
  Route& operator=(const Route&) = delete;

  // Starts every source; on a failure stops those already started and returns it.
  [[nodiscard]] Status Start();
  // Stops and joins every source. Idempotent.
  void Stop();

  const std::string& name() const { return name_; }
  RouteCounters counters() const;
  std::vector<SinkCounters> sink_counters() const;

  // Runs one input through the handler and every sink (what sources call). Thread-safe.
  Status Process(const SourceInput& input);

 private:
  struct SinkSlot {
    std::unique_ptr<Sink> sink;
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failures{0};
  };
  Route(std::string name, PipelineHandler handler, const IoContext& context);
  void Annotate(nlohmann::json& result, const SourceInput& input);

  std::string name_;
  PipelineHandler handler_;
  IoContext context_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<std::unique_ptr<SinkSlot>> sinks_;
  bool started_ = false;
  std::atomic<std::uint64_t> processed_{0}, failed_{0}, delivered_{0}, delivery_failures_{0};
};

// The content type a file name suggests ("x.jpg" → "image/jpeg"), or "" when it suggests none.
std::string ContentTypeForName(const std::string& name);

}  // namespace airlock::agent
