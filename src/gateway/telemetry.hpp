#pragma once
// TelemetryRelay: the gateway's part in monitoring (docs/monitoring.md). Devices publish batches
// of records on dev/{dev}/telemetry; the relay checks each batch (the sender is an enrolled,
// unrevoked device, every record id is the device's own), stores its records in the gateway's
// outbox (DATA/telemetry.db, monitor/outbox.hpp) and only then acknowledges their ids on
// dev/{dev}/telemetry-ack. A forwarder sends the outbox to the hub in batches
// (POST /api/v1/gateways/NAME/telemetry) and removes what the hub answered for. While the hub is
// away, records wait in the outbox within its bounds (the drop policy and its counters, which
// travel with the next batch), and the forwarder retries with backoff.
//
// Thread-safe: OnDeviceMessage from the MQTT receive thread (it only queues); two worker
// threads (intake, forwarder) do the rest.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.hpp"
#include "delivery/device_protocol.hpp"
#include "gateway/hub_http.hpp"
#include "monitor/outbox.hpp"
#include "monitor/recent.hpp"

namespace airlock::gateway {

struct TelemetryRelayOptions {
  std::filesystem::path outbox;  // the database file
  std::string gateway;           // the name the hub knows
  std::uint64_t outbox_max = 256ULL << 20;
  std::size_t batch_records = 500;
  std::uint64_t batch_bytes = 1ULL << 20;
  std::chrono::milliseconds forward_interval{2000};  // at most this long between batches
  std::chrono::milliseconds max_backoff{60000};      // while the hub does not answer
  std::size_t max_queued = 1000;  // device batches waiting for intake; more are dropped unacked
  // When set, what each stored batch holds is kept here too, for the site's own monitor view.
  monitor::RecentTelemetry* recent = nullptr;
};

class TelemetryRelay {
 public:
  // Whether a device may send telemetry (enrolled, not revoked).
  using DeviceCheck = std::function<bool(const std::string& device)>;
  // Publishes an acknowledgement to a device (on dev/{dev}/telemetry-ack).
  using AckSender = std::function<Status(const std::string& device, const std::string& payload)>;

  // hub must outlive the relay. kIo when the outbox cannot be opened.
  [[nodiscard]] static Result<std::unique_ptr<TelemetryRelay>> Start(TelemetryRelayOptions options,
                                                                     delivery::DeviceTopics topics,
                                                                     HubHttp& hub,
                                                                     DeviceCheck may_send,
                                                                     AckSender ack);
  ~TelemetryRelay();  // stops both workers; what is stored stays for the next start
  TelemetryRelay(const TelemetryRelay&) = delete;
  TelemetryRelay& operator=(const TelemetryRelay&) = delete;

  // A message on dev/+/telemetry: queued for intake (dropped, unacknowledged, when the queue is
  // full: the device sends it again).
  void OnDeviceMessage(const std::string& topic, const std::string& payload);
  // Forwards at once (tests).
  void ForwardNow();

  monitor::OutboxStats outbox_stats() const { return outbox_->Stats(); }
  std::uint64_t forwarded() const { return forwarded_.load(); }      // records the hub took
  std::uint64_t refused_batches() const { return refused_.load(); }  // device batches refused
  bool hub_reachable() const { return hub_reachable_.load(); }
  std::size_t queued() const;

 private:
  TelemetryRelay(TelemetryRelayOptions options, delivery::DeviceTopics topics, HubHttp& hub,
                 DeviceCheck may_send, AckSender ack);
  void IntakeLoop();
  void Intake(const std::string& topic, const std::string& payload);
  void ForwardLoop();
  // One batch to the hub; false when the hub did not take it.
  bool Forward();

  const TelemetryRelayOptions options_;
  const delivery::DeviceTopics topics_;
  HubHttp& hub_;
  const DeviceCheck may_send_;
  const AckSender ack_;
  std::unique_ptr<monitor::Outbox> outbox_;

  mutable std::mutex mu_;
  std::condition_variable intake_cv_, forward_cv_;
  std::deque<std::pair<std::string, std::string>> queue_;  // topic, payload
  bool stopping_ = false;
  bool forward_now_ = false;
  std::atomic<std::uint64_t> forwarded_{0}, refused_{0};
  std::atomic<bool> hub_reachable_{true};
  std::thread intake_, forwarder_;
};

}  // namespace airlock::gateway
