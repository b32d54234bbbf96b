#include "monitor/recent.hpp"

#include <algorithm>

#include "monitor/batch.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::monitor {

using nlohmann::json;

json RecentAlert::ToJson() const {
  return {{"id", id},           {"device", device},   {"model", model},
          {"version", version}, {"feature", feature}, {"psi", psi ? json(*psi) : json(nullptr)},
          {"at_ms", at_ms}};
}

RecentTelemetry::RecentTelemetry(std::chrono::milliseconds max_age, std::size_t max_reports)
    : max_age_ms_(max_age.count()), max_reports_(std::max<std::size_t>(1, max_reports)) {}

void RecentTelemetry::Add(const std::vector<OutboxRecord>& records, std::int64_t now_ms) {
  std::vector<IntervalReport> reports;
  std::vector<RecentAlert> alerts;
  for (const OutboxRecord& r : records) {
    if (r.kind != "metrics" && r.kind != "alert") {
      continue;
    }
    // Bounded in size and depth, as the hub reads them: a device's payload is not trusted here.
    auto j = trust::ParseJson(r.payload, kMaxBatchBytes, "record " + r.id);
    if (!j) {
      continue;
    }
    if (r.kind == "metrics") {
      if (auto report = IntervalReport::FromJson(*j)) {
        reports.push_back(std::move(*report));
      }
    } else if (auto alert = AlertReport::FromJson(*j, r.created_ms)) {
      alerts.push_back(RecentAlert{.id = r.id,
                                   .device = std::move(alert->device),
                                   .model = std::move(alert->model),
                                   .version = std::move(alert->version),
                                   .feature = std::move(alert->feature),
                                   .psi = alert->psi,
                                   .at_ms = alert->end_ms});
    }
  }
  std::lock_guard lock(mu_);
  reports_.insert(reports_.end(), std::make_move_iterator(reports.begin()),
                  std::make_move_iterator(reports.end()));
  alerts_.insert(alerts_.end(), std::make_move_iterator(alerts.begin()),
                 std::make_move_iterator(alerts.end()));
  Trim(now_ms);
}

void RecentTelemetry::Trim(std::int64_t now_ms) {
  const std::int64_t oldest = now_ms - max_age_ms_;
  while (!reports_.empty() &&
         (reports_.size() > max_reports_ || reports_.front().end_ms < oldest)) {
    reports_.pop_front();
  }
  while (!alerts_.empty() && (alerts_.size() > max_reports_ || alerts_.front().at_ms < oldest)) {
    alerts_.pop_front();
  }
}

std::vector<IntervalReport> RecentTelemetry::Reports(const std::string& model,
                                                     const std::string& device,
                                                     std::int64_t since_ms) const {
  std::lock_guard lock(mu_);
  std::vector<IntervalReport> out;
  for (const IntervalReport& r : reports_) {
    if (r.model == model && r.end_ms >= since_ms && (device.empty() || r.device == device)) {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<RecentAlert> RecentTelemetry::Alerts(const std::string& model,
                                                 const std::string& device,
                                                 std::int64_t since_ms) const {
  std::lock_guard lock(mu_);
  std::vector<RecentAlert> out;
  for (auto it = alerts_.rbegin(); it != alerts_.rend(); ++it) {
    if (it->model == model && it->at_ms >= since_ms && (device.empty() || it->device == device)) {
      out.push_back(*it);
    }
  }
  return out;
}

std::set<std::string> RecentTelemetry::Models() const {
  std::lock_guard lock(mu_);
  std::set<std::string> out;
  for (const IntervalReport& r : reports_) {
    out.insert(r.model);
  }
  for (const RecentAlert& a : alerts_) {
    out.insert(a.model);
  }
  return out;
}

}  // namespace airlock::monitor
