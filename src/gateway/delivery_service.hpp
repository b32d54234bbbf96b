#pragma once
// DeliveryService: the gateway's side of the delivery protocol (docs/delivery.md) and the
// operator's approvals (docs/gateway.md, "Approvals").
//
// Messages from the broker are handed to OnMessage, which only queues them: one worker thread
// of the service parses and handles them in order, so the MQTT receive thread never blocks.
//   offer  → (already held complete) status available, attempt 0; else the release is verified
//            against the pinned root, the offer's expiry, the site policy and the room checked:
//            reject with a reason, hold it for an operator, or answer ready.
//   grant  → the highest attempt wins; a download thread fetches the index and variant manifests,
//            declares and pins the package (owner: the delivery id), downloads each missing blob
//            with Range resume into the cache, completes it and reports available (progress at
//            least every progress_interval and after each blob; failures with the protocol's
//            codes).
//   cancel → the download stops, this delivery's pins and partial downloads go, nothing more is
//            sent for it.
// Every handler is idempotent: a repeated offer is answered as the first was, a stale or repeated
// grant is ignored, a cancel of an unknown delivery is a no-op. Each change is written to the
// GatewayStateStore before it is published, and Start() resumes the downloads that a previous
// process left running.
//
// Thread-safe: OnMessage, Decide and the getters may be called from any thread. The cache, store,
// hub connection and root must outlive the service; the destructor stops every thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/protocol.hpp"
#include "gateway/cache.hpp"
#include "gateway/config.hpp"
#include "gateway/hub_http.hpp"
#include "gateway/state_store.hpp"
#include "trust/documents.hpp"

namespace airlock::gateway {

struct DeliveryServiceOptions {
  std::string gateway;  // our name: topics are built and checked with it
  std::string topic_prefix = "airlock/v1";
  SitePolicy policy;
  std::uint64_t reserve_bytes = 0;  // free disk always left
  std::filesystem::path data_dir;   // where the free disk is measured
  std::chrono::seconds progress_interval{10};
  int range_retries = 3;  // local resumes of one blob before reporting "network"
};

// Publishes one message (QoS 1, not retained). A failure is logged and dropped: the hub's
// timers re-offer and re-grant, and the gateway answers again.
using Publisher = std::function<Status(const std::string& topic, const std::string& payload)>;

class DeliveryService {
 public:
  [[nodiscard]] static Result<std::unique_ptr<DeliveryService>> Create(
      DeliveryServiceOptions options, trust::Root root, GatewayCache& cache,
      GatewayStateStore& store, HubHttp& hub, Publisher publish, const Clock& clock);
  ~DeliveryService();
  DeliveryService(const DeliveryService&) = delete;
  DeliveryService& operator=(const DeliveryService&) = delete;

  // Starts the worker and resumes the downloads of records left downloading.
  void Start();
  // Stops every thread (downloads keep their bytes for the next start). Idempotent.
  void Stop();

  // Queues a received message; never blocks on I/O.
  void OnMessage(const std::string& topic, const std::string& payload);

  // An operator's decision on the delivery id: approve or reject a held offer, or the rollout
  // of a delivered package. kNotFound for an unknown id; kInvalidArgument (with what the
  // delivery is waiting for) when there is nothing to decide.
  [[nodiscard]] Result<DeliveryRecord> Decide(const std::string& id, bool approve,
                                              const std::string& by, const std::string& comment);

  // The air-gapped import (docs/air-gapped.md): reads the bundle `airlock bundle export` wrote,
  // verifies it as an offer and a download are verified (the release against the pinned root,
  // its expiry, the index against the release, the site policy and room, every blob against its
  // digest), loads it into the cache and records it as an available delivery of the bundle's
  // deployment, waiting for the operator's rollout approval unless the policy says auto. When
  // the hub later offers that deployment, the gateway answers available without downloading,
  // and the operator's decision carries over. Importing the same bundle again returns the
  // record. kVerification when the release does not verify; kInvalidArgument for what is not a
  // bundle or what the site policy refuses; kCorrupt for bytes that do not match.
  [[nodiscard]] Result<DeliveryRecord> ImportBundle(const std::filesystem::path& bundle,
                                                    const std::string& by);

  // hook is called with each record the service stores available and approved for rollout (the
  // download finished under an auto policy, an operator approved the rollout, an offer found the
  // package in the cache already, an import): the fleet service starts its rollout. It runs on
  // the thread that changed the record, under the service's lock, so it must only hand the record
  // over (FleetService::OnDeliveryApproved queues it). Set before Start; none by default.
  void SetRolloutApprovedHook(std::function<void(const DeliveryRecord&)> hook);
  // hook is called with each record the hub cancels (after it is stored cancelled, outside the
  // service's lock): the fleet service cancels the deployment's rollout. Set before Start.
  void SetCancelledHook(std::function<void(const DeliveryRecord&)> hook);

  // Messages handled so far (for tests and the status page).
  std::uint64_t handled() const { return handled_.load(); }
  // For /metrics: messages from the hub waiting for the worker, and downloads running now.
  std::size_t QueueDepth() const;
  std::uint64_t DownloadsRunning() const { return downloads_running_.load(); }

 private:
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> cancel;
    std::uint32_t attempt = 0;
  };

  DeliveryService(DeliveryServiceOptions options, trust::Root root, GatewayCache& cache,
                  GatewayStateStore& store, HubHttp& hub, Publisher publish, const Clock& clock,
                  delivery::Topics topics);

  void WorkerLoop();
  void Handle(const std::string& topic, const std::string& payload);
  void HandleOffer(const delivery::DeliveryOffer& offer);
  void HandleGrant(const delivery::DeliveryGrant& grant);
  void HandleCancel(const delivery::DeliveryCancel& cancel);
  void Resume();

  // Answers for a record (under mu_).
  void AnswerReady(const DeliveryRecord& r);
  void AnswerReject(const DeliveryRecord& r);
  void SendStatus(const DeliveryRecord& r, delivery::GatewayState state,
                  std::optional<delivery::DeliveryFailure> error = std::nullopt);
  void Publish(delivery::TopicKind kind, const std::string& id, const nlohmann::json& body);
  // Calls the rollout hook when r (as just stored) is available and approved.
  void AnnounceIfApproved(const DeliveryRecord& r);
  delivery::Envelope NewEnvelope();

  struct Refusal {
    delivery::RejectReason reason;
    std::string message;
  };
  // The site's say on a package of model offered for these platforms: the platforms it wants
  // (into platforms), the bytes they take (needed_for(platforms), into needed), and a refusal
  // when the policy (model, platforms, size) or the room (cache limit, free disk after the
  // reserve) does not allow it. Shared by offers and imports.
  std::optional<Refusal> CheckSite(
      const std::string& model, const std::vector<std::string>& offered,
      const std::function<std::uint64_t(const std::vector<std::string>&)>& needed_for,
      std::vector<std::string>& platforms, std::uint64_t& needed);

  // Copies an earlier decision on the same deployment and package (an import's) into r, so that
  // the operator is not asked twice.
  void InheritDecision(DeliveryRecord& r);

  std::uint64_t FreeBytes();

  void StartJob(const std::string& id, std::uint32_t attempt);
  void StopJob(const std::string& id);
  void RunDownload(std::string id, std::uint32_t attempt, std::shared_ptr<std::atomic<bool>> cancel);

  // Records the end of a download attempt (under mu_), if it is still the current one.
  void Finish(const std::string& id, std::uint32_t attempt,
              std::optional<delivery::DeliveryFailure> failure);
  void Progress(const std::string& id, std::uint32_t attempt, std::uint64_t done,
                std::uint64_t total);

  const DeliveryServiceOptions options_;
  const trust::Root root_;
  GatewayCache& cache_;
  GatewayStateStore& store_;
  HubHttp& hub_;
  const Publisher publish_;
  const Clock& clock_;
  const delivery::Topics topics_;
  std::function<void(const DeliveryRecord&)> rollout_approved_;
  std::function<void(const DeliveryRecord&)> cancelled_;

  std::mutex mu_;  // serialises every read-modify-write of a record, and its publishing

  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::pair<std::string, std::string>> queue_;
  bool stopping_ = false;
  std::thread worker_;

  std::map<std::string, Job> jobs_;  // touched only by the worker thread (and Stop after it)
  std::atomic<std::uint64_t> handled_{0};
  std::atomic<std::uint64_t> downloads_running_{0};  // RunDownload threads not yet returned
};

}  // namespace airlock::gateway
