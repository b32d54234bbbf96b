#pragma once
// TelemetryReporter: an enrolled agent's monitoring reports (docs/monitoring.md).
//
// Every interval it closes the interval of each served version's monitor (monitor/telemetry.hpp)
// and stores what it measured in the outbox (STORE/state/telemetry.db, monitor/outbox.hpp): one
// record of kind "metrics" per version, and one of kind "alert" for each feature whose drift
// reached the alert level in that interval. A version that stopped serving is closed one last
// time and then forgotten. A sender publishes the outbox's records, alerts first, in batches
// (monitor/batch.hpp); the gateway acknowledges the ids it stored, and only then are they
// removed. A batch not acknowledged within ack_timeout is sent again: delivery is at least once,
// and the receivers drop duplicates by id.
//
// What is stored before a kill survives it; what a clean stop has measured is stored before the
// reporter goes. When the outbox is full or the disk is, the outbox drops by its policy and
// counts it; the reporter logs it once per change and the counters travel with every batch.
//
// Thread-safe: OnAck from any thread (the MQTT client's); one worker thread does the rest.

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "agent/model_repository.hpp"
#include "core/result.hpp"
#include "monitor/outbox.hpp"

namespace airlock::agent {

struct TelemetryOptions {
  std::filesystem::path outbox;  // the database file
  std::string device;
  std::chrono::milliseconds interval{60000};
  std::chrono::milliseconds ack_timeout{10000};
  std::uint64_t outbox_max = 64ULL << 20;
  std::size_t batch_records = 100;
  std::uint64_t batch_bytes = 256ULL << 10;
};

class TelemetryReporter {
 public:
  // Sends one serialized batch (the device client publishes it on dev/{dev}/telemetry); an error
  // (not connected) means try again later.
  using Publisher = std::function<Status(const std::string& batch)>;

  // Opens the outbox and starts the worker. kIo when the outbox cannot be opened.
  [[nodiscard]] static Result<std::unique_ptr<TelemetryReporter>> Start(TelemetryOptions options,
                                                                        ModelRepository& repo,
                                                                        Publisher publish);
  // Closes every interval into the outbox, then stops (nothing measured is lost).
  ~TelemetryReporter();
  TelemetryReporter(const TelemetryReporter&) = delete;
  TelemetryReporter& operator=(const TelemetryReporter&) = delete;

  // The gateway's acknowledgement (monitor::ParseAck); malformed ones are logged and ignored.
  void OnAck(std::string_view payload);
  // Closes the intervals now and sends at once (tests; the interval timer goes on).
  void CutNow();
  // Wakes the sender (after a reconnect).
  void Wake();
  // Stores a capture to upload (agent/capture.hpp), as a record of kind "capture" at the lowest
  // priority; the bounds of the outbox may drop it (counted).
  void AppendCapture(const std::string& payload, std::int64_t at_ms);

  monitor::OutboxStats outbox_stats() const { return outbox_->Stats(); }

 private:
  TelemetryReporter(TelemetryOptions options, ModelRepository& repo, Publisher publish);
  void Loop();
  void Cut();
  void Send();

  const TelemetryOptions options_;
  ModelRepository& repo_;
  const Publisher publish_;
  std::unique_ptr<monitor::Outbox> outbox_;

  // Worker only.
  std::map<std::string, std::shared_ptr<monitor::VersionMonitor>> monitors_;  // "model\nversion"
  std::chrono::steady_clock::time_point next_cut_;
  std::uint64_t logged_drops_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool cut_now_ = false;
  bool send_now_ = false;
  std::set<std::string> in_flight_;  // ids of the batch waiting for its ack
  std::chrono::steady_clock::time_point sent_at_{};
  std::thread worker_;
};

}  // namespace airlock::agent
