#pragma once
// Telemetry records as an agent stores them (agent/telemetry.cpp), for the tests of what reads
// them: the hub's telemetry store and API, the gateway's recent view.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "monitor/batch.hpp"
#include "monitor/drift.hpp"
#include "monitor/outbox.hpp"
#include "monitor/telemetry.hpp"

namespace airlock::testing {

using monitor::DriftLevel;
using monitor::OutboxCounters;
using monitor::OutboxRecord;
using monitor::Priority;
using nlohmann::json;

struct Metrics {
  std::string device = "dev-0000000000000a0a";
  std::string model = "visual-inspection";
  std::string version = "1.0.0";
  std::int64_t end_ms = 0;
  std::uint64_t requests = 10;
  std::uint64_t errors = 0;
  std::optional<double> psi;             // of image/channel0, when judged
  std::optional<OutboxCounters> outbox;  // the device's, as its reporter adds them

  Metrics& Device(std::string v) { return device = std::move(v), *this; }
  Metrics& Model(std::string v) { return model = std::move(v), *this; }
  Metrics& Version(std::string v) { return version = std::move(v), *this; }
  Metrics& End(std::int64_t v) { return end_ms = v, *this; }
  Metrics& Requests(std::uint64_t v) { return requests = v, *this; }
  Metrics& Errors(std::uint64_t v) { return errors = v, *this; }
  Metrics& Psi(double v) { return psi = v, *this; }
  Metrics& Outbox(OutboxCounters v) { return outbox = v, *this; }
};

// A metrics record as an agent stores it (agent/telemetry.cpp): an interval report with the
// device's outbox counters. Its latency: every request in (1, 2.5] ms.
inline OutboxRecord MetricsRecord(const std::string& id, const Metrics& m) {
  monitor::IntervalReport r;
  r.device = m.device;
  r.model = m.model;
  r.version = m.version;
  r.start_ms = m.end_ms - 60000;
  r.end_ms = m.end_ms;
  r.counts.requests = m.requests;
  r.counts.errors = m.errors;
  r.counts.latency_bounds_us = monitor::kLatencyBoundsUs;
  r.counts.latency_counts.assign(monitor::kLatencyBoundsUs.size() + 1, 0);
  r.counts.latency_counts[4] = m.requests;
  r.counts.latency_sum_us = m.requests * 2000;
  r.observed = m.requests;
  if (m.psi) {
    DriftLevel level = *m.psi > 0.25  ? DriftLevel::kAlert
                       : *m.psi > 0.1 ? DriftLevel::kWatch
                                      : DriftLevel::kOk;
    r.drift.push_back(monitor::FeatureDrift{.feature = "image/channel0",
                                            .values = 100,
                                            .psi = m.psi,
                                            .ks = std::nullopt,
                                            .level = level});
    r.level = level;
  }
  json body = r.ToJson();
  if (m.outbox) {
    body["outbox"] = m.outbox->ToJson();
  }
  return OutboxRecord{.id = id,
                      .priority = Priority::kMetrics,
                      .kind = "metrics",
                      .created_ms = m.end_ms,
                      .payload = body.dump()};
}

// An alert record as an agent stores it.
inline OutboxRecord AlertRecord(const std::string& id, const std::string& device,
                                const std::string& version, const std::string& feature,
                                std::optional<double> psi, std::int64_t end_ms,
                                const std::string& model = "visual-inspection") {
  json alert = {{"schema", monitor::kTelemetrySchema},
                {"device", device},
                {"model", model},
                {"version", version},
                {"feature", feature},
                {"start_ms", end_ms - 60000},
                {"end_ms", end_ms}};
  if (psi) {
    alert["psi"] = *psi;
  }
  return OutboxRecord{.id = id,
                      .priority = Priority::kAlert,
                      .kind = "alert",
                      .created_ms = end_ms,
                      .payload = alert.dump()};
}

}  // namespace airlock::testing
