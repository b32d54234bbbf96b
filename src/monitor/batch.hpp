#pragma once
// How telemetry records travel (docs/monitoring.md): a batch from a device to its gateway (MQTT,
// dev/{dev}/telemetry) or from a gateway to the hub (HTTP, POST /api/v1/telemetry), and the
// acknowledgement that names the ids the receiver stored. A batch also carries its sender's
// outbox counters, so that what a sender had to drop is known upstream.
//
//   {"schema": "airlock.telemetry-batch.v1", "source": "cam-1", "site": "plant-1",
//    "records": [{"id": "cam-1/17", "priority": "metrics", "kind": "metrics",
//                 "created_ms": 1764576000000, "payload": "{…}"}],
//    "outbox": {"records": 3, "bytes": 4096, "dropped": {"capture": 0, "metrics": 0, "alert": 0},
//               "dropped_bytes": 0, "disk_full": 0}}
//   {"ids": ["cam-1/17"]}
//
// Plain values; thread-compatible.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/prometheus.hpp"
#include "monitor/outbox.hpp"

namespace airlock::monitor {

inline constexpr std::string_view kBatchSchema = "airlock.telemetry-batch.v1";
// A batch larger than this is refused before it is parsed.
inline constexpr std::size_t kMaxBatchBytes = 4U << 20;

// What a sender reports of its outbox.
struct OutboxCounters {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
  std::array<std::uint64_t, 3> dropped{};  // by Priority
  std::uint64_t dropped_bytes = 0;
  std::uint64_t disk_full = 0;

  static OutboxCounters Of(const OutboxStats& s);
  nlohmann::json ToJson() const;
  [[nodiscard]] static Result<OutboxCounters> FromJson(const nlohmann::json& j);
};

struct TelemetryBatch {
  std::string source;  // the device, or the gateway
  std::string site;    // a gateway's site; "" from a device
  std::vector<OutboxRecord> records;
  OutboxCounters outbox;

  std::string Serialize() const;
  // kInvalidArgument (or kCorrupt for what is not JSON) naming what is wrong.
  [[nodiscard]] static Result<TelemetryBatch> Parse(std::string_view text);
};

std::string SerializeAck(const std::vector<std::string>& ids);

// An outbox's figures as Prometheus families: airlock_telemetry_outbox_records and _bytes
// (gauges), _accepted_total, _acked_total, _duplicates_total, _dropped_total{priority} and
// _disk_full_total (counters).
void AppendOutboxMetrics(prometheus::MetricsText& out, const OutboxStats& s);
[[nodiscard]] Result<std::vector<std::string>> ParseAck(std::string_view text);

}  // namespace airlock::monitor
