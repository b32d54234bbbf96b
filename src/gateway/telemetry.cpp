#include "gateway/telemetry.hpp"

#include "core/log.hpp"
#include "core/time.hpp"
#include "monitor/batch.hpp"

namespace airlock::gateway {
namespace {

using std::chrono::steady_clock;

}  // namespace

TelemetryRelay::TelemetryRelay(TelemetryRelayOptions options, delivery::DeviceTopics topics,
                               HubHttp& hub, DeviceCheck may_send, AckSender ack)
    : options_(std::move(options)),
      topics_(std::move(topics)),
      hub_(hub),
      may_send_(std::move(may_send)),
      ack_(std::move(ack)) {}

Result<std::unique_ptr<TelemetryRelay>> TelemetryRelay::Start(TelemetryRelayOptions options,
                                                              delivery::DeviceTopics topics,
                                                              HubHttp& hub, DeviceCheck may_send,
                                                              AckSender ack) {
  std::unique_ptr<TelemetryRelay> r(new TelemetryRelay(std::move(options), std::move(topics), hub,
                                                       std::move(may_send), std::move(ack)));
  AIRLOCK_ASSIGN_OR_RETURN(
      r->outbox_, monitor::Outbox::Open(r->options_.outbox, r->options_.gateway + "/",
                                        monitor::OutboxLimits{.max_bytes = r->options_.outbox_max,
                                                              .max_records = 1000000}));
  r->intake_ = std::thread([self = r.get()] { self->IntakeLoop(); });
  r->forwarder_ = std::thread([self = r.get()] { self->ForwardLoop(); });
  return r;
}

TelemetryRelay::~TelemetryRelay() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  intake_cv_.notify_all();
  forward_cv_.notify_all();
  if (intake_.joinable()) {
    intake_.join();
  }
  if (forwarder_.joinable()) {
    forwarder_.join();
  }
}

std::size_t TelemetryRelay::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void TelemetryRelay::OnDeviceMessage(const std::string& topic, const std::string& payload) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= options_.max_queued) {
    ++refused_;
    return;  // not acknowledged: the device sends it again
  }
  queue_.emplace_back(topic, payload);
  intake_cv_.notify_one();
}

void TelemetryRelay::ForwardNow() {
  std::lock_guard lock(mu_);
  forward_now_ = true;
  forward_cv_.notify_all();
}

void TelemetryRelay::IntakeLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    intake_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    auto [topic, payload] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    Intake(topic, payload);
    lock.lock();
  }
}

void TelemetryRelay::Intake(const std::string& topic, const std::string& payload) {
  auto refuse = [&](const std::string& why) {
    ++refused_;
    spdlog::warn("telemetry on {}: refused: {}", topic.substr(0, 200), why);
  };
  auto address = topics_.Parse(topic);
  if (!address || address->kind != delivery::DeviceTopicKind::kTelemetry) {
    return refuse(address ? "not a telemetry topic" : address.error().message());
  }
  const std::string& device = address->device;
  if (!may_send_(device)) {
    return refuse("no enrolled, unrevoked device " + device);
  }
  auto batch = monitor::TelemetryBatch::Parse(payload);
  if (!batch) {
    return refuse(batch.error().ToString());
  }
  if (batch->source != device) {
    return refuse("a batch from " + device + " says it comes from " + batch->source.substr(0, 64));
  }
  std::string own = device + "/";
  std::vector<std::string> ids;
  for (const auto& r : batch->records) {
    if (r.id.compare(0, own.size(), own) != 0) {
      return refuse("record id " + r.id.substr(0, 64) + " is not " + device + "'s");
    }
    ids.push_back(r.id);
  }
  auto stored = outbox_->Put(batch->records);
  if (!stored) {
    // Not stored (a database failure): not acknowledged, so the device keeps the records.
    spdlog::error("telemetry from {}: {}", device, stored.error().ToString());
    return;
  }
  if (options_.recent != nullptr) {
    options_.recent->Add(batch->records, UnixMillis(std::chrono::system_clock::now()));
  }
  if (auto sent = ack_(device, monitor::SerializeAck(ids)); !sent) {
    spdlog::debug("telemetry ack to {}: {}", device, sent.error().ToString());
  }
  if (hub_reachable_) {
    ForwardNow();  // while the hub is away, the forwarder keeps its backoff
  }
}

void TelemetryRelay::ForwardLoop() {
  auto backoff = options_.forward_interval;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    forward_cv_.wait_for(lock, backoff, [this] { return stopping_ || forward_now_; });
    if (stopping_) {
      return;
    }
    forward_now_ = false;
    lock.unlock();
    bool ok = true;
    // Drain: batch after batch while the hub takes them.
    while (ok) {
      auto held = outbox_->Stats().records;
      if (held == 0) {
        break;
      }
      ok = Forward();
      std::lock_guard stop(mu_);
      if (stopping_) {
        return;
      }
    }
    if (ok) {
      backoff = options_.forward_interval;
      if (!hub_reachable_.exchange(true)) {
        spdlog::info("telemetry: the hub answers again; {} record(s) held",
                     outbox_->Stats().records);
      }
    } else {
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    lock.lock();
  }
}

bool TelemetryRelay::Forward() {
  auto records = outbox_->Peek(options_.batch_records, options_.batch_bytes);
  if (!records) {
    spdlog::error("telemetry: {}", records.error().ToString());
    return false;
  }
  if (records->empty()) {
    return true;
  }
  monitor::TelemetryBatch batch;
  batch.source = options_.gateway;
  batch.site = options_.gateway;
  batch.records = std::move(*records);
  batch.outbox = monitor::OutboxCounters::Of(outbox_->Stats());
  auto reply = hub_.Request("POST", "/api/v1/gateways/" + options_.gateway + "/telemetry",
                            batch.Serialize(), "application/json", true, 1 << 20);
  auto fail = [&](const std::string& why) {
    if (hub_reachable_.exchange(false)) {
      spdlog::warn("telemetry: the hub did not take a batch ({}); {} record(s) held, retrying", why,
                   outbox_->Stats().records);
    }
    return false;
  };
  if (!reply) {
    return fail(reply.error().ToString());
  }
  if (reply->status != 200) {
    return fail("HTTP " + std::to_string(reply->status) + ": " + reply->body.substr(0, 300));
  }
  std::vector<std::string> ids;
  for (const auto& r : batch.records) {
    ids.push_back(r.id);
  }
  auto removed = outbox_->Ack(ids);
  if (!removed) {
    spdlog::error("telemetry: {}", removed.error().ToString());
    return false;
  }
  forwarded_ += ids.size();
  return true;
}

}  // namespace airlock::gateway
