#include "gateway/inventory.hpp"

#include <spdlog/spdlog.h>

#include <map>

#include "core/time.hpp"

namespace airlock::gateway {

using nlohmann::json;

Result<json> InventoryOf(GatewayStateStore& store) {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<DeviceRecord> devices, store.Devices());
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<DeviceStateRecord> states, store.DeviceStates());
  std::map<std::string, const DeviceStateRecord*> reported;
  for (const DeviceStateRecord& s : states) {
    reported[s.device] = &s;
  }
  json list = json::array();
  for (const DeviceRecord& d : devices) {
    if (d.revoked_at) {
      continue;
    }
    json entry = {{"id", d.id},
                  {"labels", d.labels},
                  {"online", false},
                  {"last_seen", nullptr},
                  {"models", json::array()}};
    if (auto it = reported.find(d.id); it != reported.end()) {
      const DeviceStateRecord& s = *it->second;
      entry["online"] = s.online;
      entry["last_seen"] = s.last_seen ? json(FormatRfc3339(*s.last_seen)) : json(nullptr);
      entry["models"] = s.Models();
      if (s.state.is_object() && s.state.contains("platform") && s.state["platform"].is_string()) {
        entry["platform"] = s.state["platform"];
      }
    }
    list.push_back(std::move(entry));
  }
  return json{{"devices", std::move(list)}};
}

InventoryReporter::InventoryReporter(GatewayStateStore& store, HubHttp& hub, std::string gateway,
                                     std::chrono::milliseconds interval,
                                     std::chrono::milliseconds min_gap)
    : store_(store),
      hub_(hub),
      path_("/api/v1/gateways/" + gateway + "/inventory"),
      interval_(interval),
      min_gap_(min_gap),
      worker_([this] { Loop(); }) {}

InventoryReporter::~InventoryReporter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void InventoryReporter::Changed() {
  {
    std::lock_guard lock(mu_);
    changed_ = true;
  }
  cv_.notify_all();
}

std::uint64_t InventoryReporter::reported() const {
  std::lock_guard lock(mu_);
  return reported_;
}

void InventoryReporter::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, interval_, [this] { return stopping_ || changed_; });
    if (stopping_) {
      return;
    }
    changed_ = false;
    lock.unlock();
    Report();
    lock.lock();
    // Devices report often (each state, each online message): one inventory covers a burst.
    cv_.wait_for(lock, min_gap_, [this] { return stopping_; });
  }
}

void InventoryReporter::Report() {
  auto fail = [this](const std::string& why) {
    std::lock_guard lock(mu_);
    if (!failing_) {
      spdlog::warn("the device inventory did not reach the hub (tried again every {}): {}",
                   FormatDuration(interval_), why);
    }
    failing_ = true;
  };
  auto body = InventoryOf(store_);
  if (!body) {
    return fail(body.error().ToString());
  }
  auto reply = hub_.Request("PUT", path_, body->dump(), "application/json", true);
  if (!reply) {
    return fail(reply.error().ToString());
  }
  if (reply->status != 204 && reply->status != 200) {
    return fail("HTTP " + std::to_string(reply->status) + ": " + reply->body.substr(0, 300));
  }
  std::lock_guard lock(mu_);
  if (failing_) {
    spdlog::info("the device inventory reaches the hub again");
  }
  failing_ = false;
  ++reported_;
}

}  // namespace airlock::gateway
