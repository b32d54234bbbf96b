#pragma once
// RecentTelemetry: the last hours of what a site's devices reported, kept in memory so that the
// gateway can show its own site's monitoring (its console, GET /api/v1/monitor/M) with or without
// the hub. It forgets on restart: the records themselves travel on to the hub through the outbox,
// which is where they are kept (docs/monitoring.md).
//
// Bounded by age and by count: the oldest go first. Thread-safe.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "monitor/outbox.hpp"
#include "monitor/telemetry.hpp"

namespace airlock::monitor {

// A drift alert a device raised (an "alert" record).
struct RecentAlert {
  std::string id;  // the record's
  std::string device, model, version, feature;
  std::optional<double> psi;
  std::int64_t at_ms = 0;

  nlohmann::json ToJson() const;
};

class RecentTelemetry {
 public:
  RecentTelemetry(std::chrono::milliseconds max_age, std::size_t max_reports);

  // Keeps what records hold: "metrics" as interval reports, "alert" as alerts; captures and
  // records that do not parse are passed over (the hub judges them). now_ms ages out the old.
  void Add(const std::vector<OutboxRecord>& records, std::int64_t now_ms);

  // model's reports whose interval ended at or after since_ms, of one device or ("") all.
  std::vector<IntervalReport> Reports(const std::string& model, const std::string& device,
                                      std::int64_t since_ms) const;
  // model's alerts at or after since_ms, newest first.
  std::vector<RecentAlert> Alerts(const std::string& model, const std::string& device,
                                  std::int64_t since_ms) const;
  // Every model a report or an alert names.
  std::set<std::string> Models() const;

 private:
  void Trim(std::int64_t now_ms);

  const std::int64_t max_age_ms_;
  const std::size_t max_reports_;
  mutable std::mutex mu_;
  std::deque<IntervalReport> reports_;  // in arrival order
  std::deque<RecentAlert> alerts_;
};

}  // namespace airlock::monitor
