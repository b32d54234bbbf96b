#include "monitor/batch.hpp"

#include "monitor/json_numbers.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::monitor {
namespace {

using nlohmann::json;

constexpr Priority kAllPriorities[] = {Priority::kCapture, Priority::kMetrics, Priority::kAlert};

tl::unexpected<Error> Bad(const std::string& what) {
  return Fail(ErrorCode::kInvalidArgument, "telemetry batch: " + what);
}

}  // namespace

OutboxCounters OutboxCounters::Of(const OutboxStats& s) {
  return OutboxCounters{.records = s.records,
                        .bytes = s.bytes,
                        .dropped = s.dropped,
                        .dropped_bytes = s.dropped_bytes,
                        .disk_full = s.disk_full};
}

json OutboxCounters::ToJson() const {
  json dropped_json = json::object();
  for (Priority p : kAllPriorities) {
    dropped_json[PriorityName(p)] = dropped[static_cast<std::size_t>(p)];
  }
  return {{"records", records},
          {"bytes", bytes},
          {"dropped", std::move(dropped_json)},
          {"dropped_bytes", dropped_bytes},
          {"disk_full", disk_full}};
}

Result<OutboxCounters> OutboxCounters::FromJson(const json& j) {
  OutboxCounters c;
  try {
    c.records = json_numbers::UnsignedOr(j, "records", 0);
    c.bytes = json_numbers::UnsignedOr(j, "bytes", 0);
    c.dropped_bytes = json_numbers::UnsignedOr(j, "dropped_bytes", 0);
    c.disk_full = json_numbers::UnsignedOr(j, "disk_full", 0);
    if (j.contains("dropped")) {
      const json& d = j.at("dropped");
      for (Priority p : kAllPriorities) {
        c.dropped[static_cast<std::size_t>(p)] =
            json_numbers::UnsignedOr(d, PriorityName(p), 0);
      }
    }
  } catch (const json::exception& e) {
    return Bad(std::string("outbox: ") + e.what());
  }
  return c;
}

std::string TelemetryBatch::Serialize() const {
  json records_json = json::array();
  for (const auto& r : records) {
    records_json.push_back({{"id", r.id},
                            {"priority", PriorityName(r.priority)},
                            {"kind", r.kind},
                            {"created_ms", r.created_ms},
                            {"payload", r.payload}});
  }
  json j = {{"schema", kBatchSchema},
            {"source", source},
            {"records", std::move(records_json)},
            {"outbox", outbox.ToJson()}};
  if (!site.empty()) {
    j["site"] = site;
  }
  return j.dump();
}

Result<TelemetryBatch> TelemetryBatch::Parse(std::string_view text) {
  AIRLOCK_ASSIGN_OR_RETURN(json j, trust::ParseJson(text, kMaxBatchBytes, "telemetry batch"));
  if (trust::StringOr(j, "schema") != kBatchSchema) {
    return Bad("want \"schema\": \"" + std::string(kBatchSchema) + "\"");
  }
  TelemetryBatch b;
  try {
    b.source = j.at("source").get<std::string>();
    b.site = j.value("site", "");
    for (const auto& r : j.at("records")) {
      OutboxRecord rec;
      rec.id = r.at("id").get<std::string>();
      std::string priority = r.at("priority").get<std::string>();
      bool known = false;
      for (Priority p : kAllPriorities) {
        if (priority == PriorityName(p)) {
          rec.priority = p;
          known = true;
        }
      }
      if (!known) {
        return Bad("record " + rec.id + ": unknown priority \"" + priority + "\"");
      }
      rec.kind = r.at("kind").get<std::string>();
      rec.created_ms = json_numbers::Integer(r.at("created_ms"));
      rec.payload = r.at("payload").get<std::string>();
      if (rec.id.empty() || rec.id.size() > 256) {
        return Bad("a record id must have 1 to 256 characters");
      }
      b.records.push_back(std::move(rec));
    }
    if (j.contains("outbox")) {
      AIRLOCK_ASSIGN_OR_RETURN(b.outbox, OutboxCounters::FromJson(j["outbox"]));
    }
  } catch (const json::exception& e) {
    return Bad(e.what());
  }
  if (b.source.empty()) {
    return Bad("\"source\" is empty");
  }
  return b;
}

std::string SerializeAck(const std::vector<std::string>& ids) { return json{{"ids", ids}}.dump(); }

Result<std::vector<std::string>> ParseAck(std::string_view text) {
  AIRLOCK_ASSIGN_OR_RETURN(json j, trust::ParseJson(text, kMaxBatchBytes, "telemetry ack"));
  try {
    return j.at("ids").get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("telemetry ack: ") + e.what());
  }
}

void AppendOutboxMetrics(prometheus::MetricsText& out, const OutboxStats& s) {
  using prometheus::MetricType;
  out.Family("airlock_telemetry_outbox_records", MetricType::kGauge,
             "Telemetry records held until the next tier stores them")
      .Sample(s.records);
  out.Family("airlock_telemetry_outbox_bytes", MetricType::kGauge,
             "Bytes of telemetry held (payloads and ids)")
      .Sample(s.bytes);
  out.Family("airlock_telemetry_outbox_accepted_total", MetricType::kCounter,
             "Telemetry records stored in the outbox")
      .Sample(s.accepted);
  out.Family("airlock_telemetry_outbox_acked_total", MetricType::kCounter,
             "Telemetry records the next tier stored and the outbox removed")
      .Sample(s.acked);
  out.Family("airlock_telemetry_outbox_duplicates_total", MetricType::kCounter,
             "Telemetry records received again and not stored twice")
      .Sample(s.duplicates);
  out.Family("airlock_telemetry_outbox_dropped_total", MetricType::kCounter,
             "Telemetry records dropped by the outbox's bounds or a full disk");
  for (Priority p : kAllPriorities) {
    out.Sample({{"priority", PriorityName(p)}}, s.dropped[static_cast<std::size_t>(p)]);
  }
  out.Family("airlock_telemetry_outbox_disk_full_total", MetricType::kCounter,
             "Outbox writes that met a full disk")
      .Sample(s.disk_full);
}

}  // namespace airlock::monitor
