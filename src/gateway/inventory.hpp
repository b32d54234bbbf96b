#pragma once
// InventoryReporter: tells the hub which devices the site has (PUT /api/v1/gateways/NAME/inventory,
// docs/hub-api.md, "Gateways"), so that a deployment's preview can count the devices its selector
// reaches and the hub's console can list them. Each enrolled, unrevoked device goes with its
// labels, the platform and models it last reported, whether it is online and when it was last
// heard from. The report goes at start, soon after a device changes (Changed: at most one report
// every min_gap, however often devices report), and every interval (which also tells the hub the
// gateway is alive); a hub that does not answer gets the next one.
//
// Thread-safe: one worker thread; Changed only wakes it.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "gateway/hub_http.hpp"
#include "gateway/state_store.hpp"

namespace airlock::gateway {

// The inventory body: {"devices": [{"id", "labels", "platform", "online", "last_seen",
// "models": [{"model", "active_version", "phase"}]}]}, enrolled and unrevoked devices only.
[[nodiscard]] Result<nlohmann::json> InventoryOf(GatewayStateStore& store);

class InventoryReporter {
 public:
  // store and hub must outlive the reporter.
  InventoryReporter(GatewayStateStore& store, HubHttp& hub, std::string gateway,
                    std::chrono::milliseconds interval = std::chrono::seconds(60),
                    std::chrono::milliseconds min_gap = std::chrono::seconds(1));
  ~InventoryReporter();  // stops the worker
  InventoryReporter(const InventoryReporter&) = delete;
  InventoryReporter& operator=(const InventoryReporter&) = delete;

  // A device was enrolled, revoked, relabelled or reported a new state: report soon.
  void Changed();
  // Inventories the hub took.
  std::uint64_t reported() const;

 private:
  void Loop();
  void Report();

  GatewayStateStore& store_;
  HubHttp& hub_;
  const std::string path_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds min_gap_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool changed_ = true;  // the first report goes at once
  bool stopping_ = false;
  bool failing_ = false;  // the last report failed (logged once until one succeeds)
  std::uint64_t reported_ = 0;
  std::thread worker_;
};

}  // namespace airlock::gateway
