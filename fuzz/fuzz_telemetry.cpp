// Fuzzes the telemetry a gateway takes from its devices (MQTT dev/{dev}/telemetry) and the hub
// from its gateways (POST /api/v1/telemetry): monitor::TelemetryBatch::Parse, the acknowledgement
// (ParseAck), and the records' bodies (IntervalReport::FromJson). The first byte picks the
// parser; the rest is its input.
//
// Property: an accepted batch serializes into one that parses back equal.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "monitor/batch.hpp"
#include "monitor/telemetry.hpp"
#include "property.hpp"

namespace monitor = airlock::monitor;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto batch = monitor::TelemetryBatch::Parse(rest);
      if (batch) {
        auto again = monitor::TelemetryBatch::Parse(batch->Serialize());
        AIRLOCK_FUZZ_REQUIRE(again);
        AIRLOCK_FUZZ_REQUIRE(again->source == batch->source && again->site == batch->site &&
                             again->records == batch->records);
        AIRLOCK_FUZZ_REQUIRE(again->outbox.ToJson() == batch->outbox.ToJson());
      }
      break;
    }
    case 1: {
      auto ids = monitor::ParseAck(rest);
      if (ids) {
        auto again = monitor::ParseAck(monitor::SerializeAck(*ids));
        AIRLOCK_FUZZ_REQUIRE(again && *again == *ids);
      }
      break;
    }
    default: {
      auto j = nlohmann::json::parse(rest, nullptr, /*allow_exceptions=*/false);
      if (auto report = monitor::IntervalReport::FromJson(j)) {
        (void)report->ToJson();
      }
      if (auto baseline = monitor::Baseline::FromJson(j)) {
        (void)baseline;
      }
      break;
    }
  }
  return 0;
}
