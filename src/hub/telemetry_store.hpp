#pragma once
// TelemetryStore: the monitoring data the gateways forward to the hub (docs/monitoring.md), in
// the hub's database (SQLite or PostgreSQL, over store::SqlDatabase): every record once, by id,
// with the columns the monitor view filters on; each sender's latest outbox counters; and drift
// alerts as events.
//
// Ingest stores a batch in one transaction: a record whose id is stored already is a duplicate
// (counted, not stored again), a record that does not parse is rejected (counted, named in the
// answer, not stored: sending it again would not help). Either way the gateway may forget it.
//
// Thread-safe: every method is one transaction.

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "monitor/batch.hpp"
#include "monitor/telemetry.hpp"
#include "store/sql.hpp"

namespace airlock::hub {

// A drift alert as the hub keeps it: an event naming where it happened.
struct DriftAlert {
  std::string id;  // the record's
  std::string site;  // the gateway that forwarded it
  std::string device;
  std::string model;
  std::string version;
  std::string feature;
  std::optional<double> psi;
  std::int64_t at_ms = 0;     // the end of the interval that reached it
  std::int64_t received = 0;  // Unix seconds

  nlohmann::json ToJson() const;
};

struct IngestResult {
  std::size_t stored = 0;
  std::size_t duplicates = 0;
  std::vector<std::pair<std::string, std::string>> rejected;  // id, why
  std::vector<DriftAlert> alerts;  // the new ones stored

  nlohmann::json ToJson() const;
};

struct TelemetryQuery {
  std::string model;
  std::string site;    // "" for every site
  std::string device;  // "" for every device
  std::int64_t since_ms = 0;
};

// One capture as stored: the record's id, the site it came from, and its JSON (agent/capture.hpp).
struct StoredCapture {
  std::string id;
  std::string site;
  std::int64_t at_ms = 0;
  std::string payload;
};

// A sender's outbox counters as it last reported them.
struct SourceCounters {
  std::string site;
  std::string source;  // the gateway itself, or a device
  monitor::OutboxCounters counters;
  std::int64_t updated = 0;  // Unix seconds
};

class TelemetryStore {
 public:
  // Applies the "telemetry" migrations db lacks. db must outlive the store.
  [[nodiscard]] static Result<std::unique_ptr<TelemetryStore>> Open(store::SqlDatabase& db,
                                                                    std::int64_t now);

  // Stores the batch that the gateway `site` sent (see above); now in Unix seconds.
  [[nodiscard]] Result<IngestResult> Ingest(const std::string& site,
                                            const monitor::TelemetryBatch& batch, std::int64_t now);

  // The metrics reports matching q, oldest first: the newest limit of them when there are more.
  [[nodiscard]] Result<std::vector<monitor::IntervalReport>> Reports(const TelemetryQuery& q,
                                                                     std::size_t limit = 200000);
  // Drift alerts matching q (model may be ""), newest first.
  [[nodiscard]] Result<std::vector<DriftAlert>> Alerts(const TelemetryQuery& q,
                                                       std::size_t limit = 100);
  // Captures matching q (model required), oldest first, after (at_ms, id) when after_id is set;
  // at most limit.
  [[nodiscard]] Result<std::vector<StoredCapture>> Captures(const TelemetryQuery& q,
                                                            std::int64_t after_ms,
                                                            const std::string& after_id,
                                                            std::size_t limit);
  // Every sender's latest counters (of q's site when set).
  [[nodiscard]] Result<std::vector<SourceCounters>> Sources(const std::string& site);

  // Since the hub started: records stored, duplicates dropped, records rejected.
  std::uint64_t stored() const { return stored_.load(); }
  std::uint64_t duplicates() const { return duplicates_.load(); }
  std::uint64_t rejected() const { return rejected_.load(); }

 private:
  explicit TelemetryStore(store::SqlDatabase& db) : db_(db) {}
  store::SqlDatabase& db_;
  std::atomic<std::uint64_t> stored_{0}, duplicates_{0}, rejected_{0};
};

}  // namespace airlock::hub
