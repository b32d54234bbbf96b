#include "agent/telemetry.hpp"

#include "core/log.hpp"
#include "core/time.hpp"
#include "monitor/batch.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;
using std::chrono::steady_clock;

std::uint64_t TotalDropped(const monitor::OutboxStats& s) {
  return s.dropped[0] + s.dropped[1] + s.dropped[2];
}

}  // namespace

TelemetryReporter::TelemetryReporter(TelemetryOptions options, ModelRepository& repo,
                                     Publisher publish)
    : options_(std::move(options)), repo_(repo), publish_(std::move(publish)) {}

Result<std::unique_ptr<TelemetryReporter>> TelemetryReporter::Start(TelemetryOptions options,
                                                                    ModelRepository& repo,
                                                                    Publisher publish) {
  std::unique_ptr<TelemetryReporter> r(
      new TelemetryReporter(std::move(options), repo, std::move(publish)));
  AIRLOCK_ASSIGN_OR_RETURN(
      r->outbox_,
      monitor::Outbox::Open(r->options_.outbox, r->options_.device + "/",
                            monitor::OutboxLimits{.max_bytes = r->options_.outbox_max,
                                                  .max_records = 200000}));
  r->logged_drops_ = TotalDropped(r->outbox_->Stats());
  r->next_cut_ = steady_clock::now() + r->options_.interval;
  r->send_now_ = true;  // what an earlier run left
  r->worker_ = std::thread([self = r.get()] { self->Loop(); });
  return r;
}

TelemetryReporter::~TelemetryReporter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable()) {
    worker_.join();
  }
}

void TelemetryReporter::OnAck(std::string_view payload) {
  auto ids = monitor::ParseAck(payload);
  if (!ids) {
    spdlog::warn("telemetry: ignoring an acknowledgement: {}", ids.error().ToString());
    return;
  }
  if (auto removed = outbox_->Ack(*ids); !removed) {
    spdlog::error("telemetry: {}", removed.error().ToString());
    return;
  }
  std::lock_guard lock(mu_);
  bool ours = false;
  for (const auto& id : *ids) {
    ours = in_flight_.erase(id) > 0 || ours;
  }
  if (ours && in_flight_.empty()) {
    send_now_ = true;  // the next batch at once
    cv_.notify_all();
  }
}

void TelemetryReporter::CutNow() {
  std::lock_guard lock(mu_);
  cut_now_ = true;
  cv_.notify_all();
}

void TelemetryReporter::Wake() {
  std::lock_guard lock(mu_);
  in_flight_.clear();  // a batch sent before the link dropped may be lost: send it again
  send_now_ = true;
  cv_.notify_all();
}

void TelemetryReporter::AppendCapture(const std::string& payload, std::int64_t at_ms) {
  auto stored = outbox_->Append(monitor::Priority::kCapture, "capture", payload, at_ms);
  if (!stored) {
    spdlog::error("telemetry: {}", stored.error().ToString());
  }
}

void TelemetryReporter::Loop() {
  std::unique_lock lock(mu_);
  while (true) {
    auto resend_at = sent_at_ + options_.ack_timeout;
    auto wake = std::min(next_cut_, steady_clock::now() + std::chrono::seconds(1));
    if (!in_flight_.empty()) {
      wake = std::min(wake, resend_at);
    }
    cv_.wait_until(lock, wake, [this] { return stopping_ || cut_now_ || send_now_; });
    bool stopping = stopping_;
    bool cut = std::exchange(cut_now_, false) || stopping || steady_clock::now() >= next_cut_;
    bool send = std::exchange(send_now_, false) || cut || in_flight_.empty() ||
                steady_clock::now() >= sent_at_ + options_.ack_timeout;
    lock.unlock();
    if (cut) {
      Cut();
      next_cut_ = steady_clock::now() + options_.interval;
    }
    if (stopping) {
      return;
    }
    if (send) {
      Send();
    }
    lock.lock();
  }
}

void TelemetryReporter::Cut() {
  std::int64_t now = UnixMillis(std::chrono::system_clock::now());
  std::map<std::string, std::shared_ptr<monitor::VersionMonitor>> serving;
  for (const auto& v : repo_.Ready()) {
    if (v->monitor) {
      serving[v->name + "\n" + v->version] = v->monitor;
    }
  }
  for (const auto& [key, m] : serving) {
    monitors_.emplace(key, m);  // a version loaded since the last cut
  }
  for (auto it = monitors_.begin(); it != monitors_.end();) {
    monitor::IntervalReport report = it->second->Cut(now);
    report.device = options_.device;
    json body = report.ToJson();
    body["outbox"] = monitor::OutboxCounters::Of(outbox_->Stats()).ToJson();  // travels upstream
    auto stored =
        outbox_->Append(monitor::Priority::kMetrics, "metrics", body.dump(), report.end_ms);
    if (!stored) {
      spdlog::error("telemetry: {}", stored.error().ToString());
    }
    for (const auto& feature : report.new_alerts) {
      json alert = {{"schema", monitor::kTelemetrySchema},
                    {"device", report.device},
                    {"model", report.model},
                    {"version", report.version},
                    {"feature", feature},
                    {"start_ms", report.start_ms},
                    {"end_ms", report.end_ms}};
      for (const auto& d : report.drift) {
        if (d.feature == feature && d.psi) {
          alert["psi"] = *d.psi;
        }
      }
      spdlog::warn("{} {}: drift alert on {} (PSI {})", report.model, report.version, feature,
                   alert.value("psi", 0.0));
      auto raised = outbox_->Append(monitor::Priority::kAlert, "alert", alert.dump(), report.end_ms);
      if (!raised) {
        spdlog::error("telemetry: {}", raised.error().ToString());
      }
    }
    it = serving.count(it->first) ? std::next(it) : monitors_.erase(it);
  }
  monitor::OutboxStats stats = outbox_->Stats();
  if (std::uint64_t dropped = TotalDropped(stats); dropped != logged_drops_) {
    spdlog::warn(
        "telemetry degraded: {} record(s) dropped so far (alerts {}, metrics {}, captures {}; "
        "{} write(s) met a full disk); inference goes on",
        dropped, stats.dropped[2], stats.dropped[1], stats.dropped[0], stats.disk_full);
    logged_drops_ = dropped;
  }
}

void TelemetryReporter::Send() {
  auto records = outbox_->Peek(options_.batch_records, options_.batch_bytes);
  if (!records) {
    spdlog::error("telemetry: {}", records.error().ToString());
    return;
  }
  if (records->empty()) {
    return;
  }
  monitor::TelemetryBatch batch;
  batch.source = options_.device;
  batch.records = std::move(*records);
  batch.outbox = monitor::OutboxCounters::Of(outbox_->Stats());
  std::set<std::string> ids;
  for (const auto& r : batch.records) {
    ids.insert(r.id);
  }
  {
    std::lock_guard lock(mu_);
    in_flight_ = ids;
    sent_at_ = steady_clock::now();
  }
  if (auto sent = publish_(batch.Serialize()); !sent) {
    spdlog::debug("telemetry: not sent: {}", sent.error().ToString());
    std::lock_guard lock(mu_);
    sent_at_ = steady_clock::now() - options_.ack_timeout + std::chrono::seconds(1);
  }
}

}  // namespace airlock::agent
