#include "hub/telemetry_store.hpp"

#include "trust/canonical_json.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;
using store::SqlParam;
using store::SqlRows;
using store::SqlSession;

const store::SqlMigration kTelemetryMigrations[] = {
    {1, "telemetry records and their senders' outbox counters",
     R"sql(
CREATE TABLE telemetry_records (
  id          TEXT PRIMARY KEY,
  site        TEXT NOT NULL,
  device      TEXT NOT NULL,
  model       TEXT NOT NULL,
  version     TEXT NOT NULL,
  kind        TEXT NOT NULL,
  end_ms      BIGINT NOT NULL,
  payload     TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX telemetry_records_by_model ON telemetry_records (model, kind, end_ms);
CREATE INDEX telemetry_records_by_kind ON telemetry_records (kind, end_ms);
CREATE TABLE telemetry_sources (
  site       TEXT NOT NULL,
  source     TEXT NOT NULL,
  counters   TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (site, source)
))sql"},
};

// The columns of a record, from its payload.
struct Columns {
  std::string device, model, version;
  std::int64_t end_ms = 0;
  std::optional<monitor::OutboxCounters> outbox;  // a device's, carried by its metrics
  std::optional<DriftAlert> alert;
};

Result<Columns> Read(const monitor::OutboxRecord& r) {
  AIRLOCK_ASSIGN_OR_RETURN(json j, trust::ParseJson(r.payload, monitor::kMaxBatchBytes, "record " + r.id));
  Columns c;
  if (r.kind == "metrics") {
    AIRLOCK_ASSIGN_OR_RETURN(monitor::IntervalReport report, monitor::IntervalReport::FromJson(j));
    c.device = report.device;
    c.model = report.model;
    c.version = report.version;
    c.end_ms = report.end_ms;
    if (j.contains("outbox")) {
      AIRLOCK_ASSIGN_OR_RETURN(c.outbox, monitor::OutboxCounters::FromJson(j["outbox"]));
    }
    return c;
  }
  if (r.kind == "alert") {
    AIRLOCK_ASSIGN_OR_RETURN(monitor::AlertReport a,
                             monitor::AlertReport::FromJson(j, r.created_ms));
    c.device = a.device;
    c.model = a.model;
    c.version = a.version;
    c.end_ms = a.end_ms;
    c.alert = DriftAlert{.id = r.id,
                         .site = "",  // the batch's, set when it is stored
                         .device = a.device,
                         .model = a.model,
                         .version = a.version,
                         .feature = std::move(a.feature),
                         .psi = a.psi,
                         .at_ms = a.end_ms,
                         .received = 0};
    return c;
  }
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the payload is not a JSON object");
  }
  try {
    c.device = j.at("device").get<std::string>();
    c.model = j.at("model").get<std::string>();
    c.version = j.at("version").get<std::string>();
    c.end_ms = j.value("end_ms", r.created_ms);
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("record payload: ") + e.what());
  }
  return c;
}

Status PutCounters(SqlSession& s, const std::string& site, const std::string& source,
                   const monitor::OutboxCounters& c, std::int64_t now) {
  AIRLOCK_RETURN_IF_ERROR(
      s.Query("INSERT INTO telemetry_sources (site, source, counters, updated_at) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (site, source) DO UPDATE SET counters = excluded.counters, "
              "updated_at = excluded.updated_at",
              {site, source, c.ToJson().dump(), now}));
  return {};
}

// WHERE clauses for q over telemetry_records, kind given.
std::string Where(const TelemetryQuery& q, const std::string& kind, std::vector<SqlParam>& p) {
  std::string w = " WHERE kind = ? AND end_ms >= ?";
  p = {kind, q.since_ms};
  if (!q.model.empty()) {
    w += " AND model = ?";
    p.emplace_back(q.model);
  }
  if (!q.site.empty()) {
    w += " AND site = ?";
    p.emplace_back(q.site);
  }
  if (!q.device.empty()) {
    w += " AND device = ?";
    p.emplace_back(q.device);
  }
  return w;
}

}  // namespace

json DriftAlert::ToJson() const {
  return {{"id", id},
          {"event", "drift.alert"},
          {"site", site},
          {"device", device},
          {"model", model},
          {"version", version},
          {"feature", feature},
          {"psi", psi ? json(*psi) : json(nullptr)},
          {"at_ms", at_ms},
          {"received", received}};
}

json IngestResult::ToJson() const {
  json rejected_json = json::array();
  for (const auto& [id, why] : rejected) {
    rejected_json.push_back({{"id", id}, {"error", why}});
  }
  return {{"stored", stored}, {"duplicates", duplicates}, {"rejected", std::move(rejected_json)}};
}

Result<std::unique_ptr<TelemetryStore>> TelemetryStore::Open(store::SqlDatabase& db,
                                                             std::int64_t now) {
  AIRLOCK_RETURN_IF_ERROR(store::MigrateComponent(db, "telemetry", kTelemetryMigrations, now));
  return std::unique_ptr<TelemetryStore>(new TelemetryStore(db));
}

Result<IngestResult> TelemetryStore::Ingest(const std::string& site,
                                            const monitor::TelemetryBatch& batch,
                                            std::int64_t now) {
  IngestResult result;
  Status done = db_.Transact([&](SqlSession& s) -> Status {
    result = IngestResult{};
    for (const auto& r : batch.records) {
      auto columns = Read(r);
      if (!columns) {
        result.rejected.emplace_back(r.id, columns.error().ToString());
        continue;
      }
      AIRLOCK_ASSIGN_OR_RETURN(
          SqlRows inserted,
          s.Query("INSERT INTO telemetry_records (id, site, device, model, version, kind, end_ms, "
                  "payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (id) DO NOTHING",
                  {r.id, site, columns->device, columns->model, columns->version, r.kind,
                   columns->end_ms, r.payload, now}));
      if (inserted.affected == 0) {
        ++result.duplicates;
        continue;
      }
      ++result.stored;
      if (columns->outbox) {
        AIRLOCK_RETURN_IF_ERROR(PutCounters(s, site, columns->device, *columns->outbox, now));
      }
      if (columns->alert) {
        columns->alert->site = site;
        columns->alert->received = now;
        result.alerts.push_back(std::move(*columns->alert));
      }
    }
    return PutCounters(s, site, batch.source, batch.outbox, now);
  });
  if (!done) {
    return Fail(done.error());
  }
  stored_ += result.stored;
  duplicates_ += result.duplicates;
  rejected_ += result.rejected.size();
  return result;
}

Result<std::vector<monitor::IntervalReport>> TelemetryStore::Reports(const TelemetryQuery& q,
                                                                     std::size_t limit) {
  std::vector<SqlParam> params;
  // The newest, when there are more than limit: they matter most in a window.
  std::string sql = "SELECT payload FROM telemetry_records" + Where(q, "metrics", params) +
                    " ORDER BY end_ms DESC, id DESC LIMIT " + std::to_string(limit);
  AIRLOCK_ASSIGN_OR_RETURN(auto payloads,
                           store::SqlQueryAll<std::string>(
                               db_, sql, params,
                               [](const SqlRows& rows, std::size_t i) { return rows.Text(i, 0); }));
  std::vector<monitor::IntervalReport> out;
  for (auto it = payloads.rbegin(); it != payloads.rend(); ++it) {
    const std::string& text = *it;
    json j = json::parse(text, nullptr, false);
    if (auto report = monitor::IntervalReport::FromJson(j)) {
      out.push_back(std::move(*report));
    }
  }
  return out;
}

Result<std::vector<DriftAlert>> TelemetryStore::Alerts(const TelemetryQuery& q,
                                                       std::size_t limit) {
  std::vector<SqlParam> params;
  std::string sql = "SELECT id, site, payload, received_at FROM telemetry_records" +
                    Where(q, "alert", params) + " ORDER BY end_ms DESC, id LIMIT " +
                    std::to_string(limit);
  AIRLOCK_ASSIGN_OR_RETURN(
      auto rows, store::SqlQueryAll<std::optional<DriftAlert>>(
                     db_, sql, params, [](const SqlRows& r, std::size_t i) {
                       monitor::OutboxRecord rec{.id = r.Text(i, 0),
                                                 .priority = monitor::Priority::kAlert,
                                                 .kind = "alert",
                                                 .created_ms = 0,
                                                 .payload = r.Text(i, 2)};
                       auto c = Read(rec);
                       if (!c || !c->alert) {
                         return std::optional<DriftAlert>();
                       }
                       c->alert->site = r.Text(i, 1);
                       c->alert->received = r.Int(i, 3);
                       return c->alert;
                     }));
  std::vector<DriftAlert> out;
  for (auto& a : rows) {
    if (a) {
      out.push_back(std::move(*a));
    }
  }
  return out;
}

Result<std::vector<StoredCapture>> TelemetryStore::Captures(const TelemetryQuery& q,
                                                            std::int64_t after_ms,
                                                            const std::string& after_id,
                                                            std::size_t limit) {
  std::vector<SqlParam> params;
  std::string sql = "SELECT id, site, end_ms, payload FROM telemetry_records" +
                    Where(q, "capture", params);
  if (!after_id.empty()) {
    sql += " AND (end_ms > ? OR (end_ms = ? AND id > ?))";
    params.insert(params.end(), {after_ms, after_ms, after_id});
  }
  sql += " ORDER BY end_ms, id LIMIT " + std::to_string(limit);
  return store::SqlQueryAll<StoredCapture>(db_, sql, params, [](const SqlRows& r, std::size_t i) {
    return StoredCapture{.id = r.Text(i, 0),
                         .site = r.Text(i, 1),
                         .at_ms = r.Int(i, 2),
                         .payload = r.Text(i, 3)};
  });
}

Result<std::vector<SourceCounters>> TelemetryStore::Sources(const std::string& site) {
  std::string sql = "SELECT site, source, counters, updated_at FROM telemetry_sources";
  std::vector<SqlParam> params;
  if (!site.empty()) {
    sql += " WHERE site = ?";
    params.emplace_back(site);
  }
  sql += " ORDER BY site, source";
  return store::SqlQueryAll<SourceCounters>(
      db_, sql, params, [](const SqlRows& r, std::size_t i) {
        SourceCounters c;
        c.site = r.Text(i, 0);
        c.source = r.Text(i, 1);
        json j = json::parse(r.Text(i, 2), nullptr, false);
        if (auto parsed = monitor::OutboxCounters::FromJson(j)) {
          c.counters = *parsed;
        }
        c.updated = r.Int(i, 3);
        return c;
      });
}

}  // namespace airlock::hub
