#pragma once
// The hub's delivery state machine (DESIGN §6 "Delivery"), one per deployment × gateway, as a pure
// function: Apply(record, event, inputs, policy) returns the next record and the actions the
// orchestrator must perform. Nothing here reads a clock, draws a random number, publishes or
// stores anything; the caller passes the time and the jitter, persists the returned record, and
// then performs the actions (docs/delivery.md has the table of transitions).
//
//   offered ──ready──► ready ──grant published──► granted ──progress──► downloading
//      │                 │                           │                      │
//      └─reject─► rejected                           └──────available───────┴──► available
//   any non-final state ──cancel──► cancelled;  retries exhausted / fatal failure ──► failed
//
// Every wait has a deadline (Policy). When it passes, the machine backs off (exponentially, with
// the caller's jitter) and tries again: re-offer, or re-grant with attempt + 1; after
// Policy::max_retries consecutive failures without progress it gives up. Pre-signed URLs are
// re-granted before they expire while a download is running.
//
// Idempotent by construction: an event that does not apply to the current state (a QoS 1 repeat,
// a late or out-of-order message, a stale timer, anything after a final state) is ignored —
// Step::applied is false, the record is returned unchanged and Step::note says why. Apply never
// fails. Plain values and free functions; thread-compatible.

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "delivery/protocol.hpp"

namespace airlock::delivery {

enum class DeliveryState {
  kOffered,      // the offer is published; waiting for the gateway's ready or reject
  kReady,        // the gateway said ready; the hub owes it a grant (pre-signing its blobs' URLs)
  kGranted,      // the grant is published; waiting for the gateway's first status
  kDownloading,  // the gateway reports progress; waiting for more, or its result
  kAvailable,    // final: the gateway holds the verified package
  kRejected,     // final: the gateway refused the offer (last_error has its reason)
  kFailed,       // final: the gateway failed for good, or the hub gave up (last_error says why)
  kCancelled,    // final: cancelled on the hub (last_error has the reason)
};
const char* DeliveryStateName(DeliveryState state);  // "offered", "ready", …
std::optional<DeliveryState> ParseDeliveryState(std::string_view name);
bool IsFinal(DeliveryState state);

// What the delivery waits for until Delivery::deadline.
enum class Wait {
  kNone,   // nothing (final states)
  kReply,  // an answer: the gateway's (offered, granted, downloading) or the hub's own (ready)
  kRetry,  // the end of a backoff, after which the hub tries again
};
const char* WaitName(Wait wait);  // "none", "reply", "retry"

// Why a delivery is in trouble or over: a stable code and text for a person.
struct DeliveryError {
  // A RejectReason or FailureCode name, or "timeout" (a wait passed its deadline) or "cancelled".
  // 1-64 of [a-z0-9-].
  std::string code;
  std::string message;  // ≤ kMaxTextLength
  bool operator==(const DeliveryError&) const = default;
};

// The record the hub persists for one delivery; everything the machine needs, so that a hub
// restart resumes from it (ResumeActions). All times are whole seconds, so ToJson / FromJson
// round-trip exactly.
struct Delivery {
  std::string id;          // ValidDeliveryId
  std::string deployment;  // ValidDeploymentId
  std::string gateway;     // ValidGatewayName
  DeliveryState state = DeliveryState::kOffered;
  Wait wait = Wait::kNone;
  std::optional<TimePoint> deadline;  // present exactly when wait is not kNone
  std::uint32_t offers = 0;           // offers published
  std::uint32_t attempt = 0;          // grants issued; the latest grant's attempt number
  std::uint32_t retries = 0;  // consecutive failures since the last progress (the backoff's n)
  // The gateway holds the offer for its operator (a "held" status while offered). The hub then
  // re-offers every offer_timeout without counting failures, and never gives up on its own.
  bool held = false;
  std::optional<TimePoint> urls_expire_at;  // of the latest grant
  std::vector<std::string> platforms;       // what the gateway asked for in its ready
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;  // the offer's total, then what the grant covers
  std::optional<DeliveryError> last_error;
  TimePoint created_at;
  TimePoint updated_at;

  bool operator==(const Delivery&) const = default;

  nlohmann::json ToJson() const;
  // kCorrupt naming the field on anything malformed or inconsistent (a final state with a wait,
  // a deadline without one, bytes_done above bytes_total, …).
  [[nodiscard]] static Result<Delivery> FromJson(const nlohmann::json& j);
};

// Timeouts and retries. The defaults and why they are what they are: docs/delivery.md.
struct Policy {
  std::chrono::seconds offer_timeout{15 * 60};      // offered: the gateway may ask its operator
  std::chrono::seconds grant_timeout{60};           // ready: the hub's own pre-signing and publish
  std::chrono::seconds start_timeout{5 * 60};       // granted: until the gateway's first status
  std::chrono::seconds progress_timeout{5 * 60};    // downloading: longest time without new bytes
  std::chrono::seconds url_ttl{60 * 60};            // lifetime of pre-signed URLs
  std::chrono::seconds url_refresh_margin{5 * 60};  // re-grant this long before they expire
  std::chrono::seconds backoff_initial{30};         // first retry delay; doubles per retry
  std::chrono::seconds backoff_max{30 * 60};        // cap of the retry delay
  double jitter_ratio = 0.5;      // a delay d becomes d × (1 − jitter_ratio × jitter)
  std::uint32_t max_retries = 8;  // consecutive failures before giving up

  // kInvalidArgument naming the setting: non-positive durations, url_refresh_margin not below
  // url_ttl, backoff_initial above backoff_max, jitter_ratio outside [0, 1], max_retries 0.
  [[nodiscard]] Status Check() const;
};

// ---- events ----

struct GatewayReady {  // the gateway's ready
  std::vector<std::string> platforms;
};
struct GatewayRejected {  // the gateway's reject
  RejectReason reason = RejectReason::kOperator;
  std::string message;
};
struct GatewayProgress {  // a status "downloading"
  std::uint32_t attempt = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
};
struct GatewayHeld {};        // a status "held": the offer waits for the site's operator
struct GatewayAvailable {     // a status "available"
  std::uint32_t attempt = 0;  // 0: the gateway already held the package when offered
  std::uint64_t bytes_total = 0;
};
struct GatewayFailed {  // a status "failed"
  std::uint32_t attempt = 0;
  DeliveryFailure error;
};
// The orchestrator published the grant of a PublishGrant action: its real URL expiry and the
// bytes its blobs add up to (facts only the orchestrator knows: which blobs, signed until when).
struct GrantPublished {
  std::uint32_t attempt = 0;
  TimePoint url_expires;
  std::uint64_t bytes_total = 0;
};
struct WaitTimedOut {};     // the deadline of a kReply wait passed
struct RetryTimerFired {};  // the deadline of a kRetry wait passed
struct UrlsExpiring {};     // the grant's URLs expire within Policy::url_refresh_margin
struct CancelRequested {    // someone cancelled the deployment (or this delivery) on the hub
  std::string reason;
};

using Event =
    std::variant<GatewayReady, GatewayRejected, GatewayHeld, GatewayProgress, GatewayAvailable,
                 GatewayFailed, GrantPublished, WaitTimedOut, RetryTimerFired, UrlsExpiring,
                 CancelRequested>;
const char* EventName(const Event& event);  // "gateway-ready", "gateway-held", …

// The events of received messages (which the caller has matched to the delivery by topic and
// delivery_id, and de-duplicated by message_id if it wishes; repeats are harmless anyway).
Event EventFrom(const DeliveryReady& ready);
Event EventFrom(const DeliveryReject& reject);
Event EventFrom(const DeliveryStatus& status);

// ---- actions ----

enum class ActionKind {
  kPublishOffer,   // publish an offer; expires_at = the offer's "expires"
  kPublishGrant,   // pre-sign and publish a grant numbered attempt, its URLs valid until
                   // expires_at (the record's platforms say which blobs); then send GrantPublished
  kPublishCancel,  // publish a cancel with reason
  kScheduleTimer,  // call DueEvent at `at` (replaces any earlier timer of this delivery; an
                   // `at` already past means at once)
  kGiveUp,         // the hub stopped trying (retries exhausted); reason says why
};
const char* ActionKindName(ActionKind kind);

struct Action {
  ActionKind kind = ActionKind::kScheduleTimer;
  std::uint32_t attempt = 0;  // kPublishGrant
  TimePoint at;               // kPublishOffer / kPublishGrant: expiry; kScheduleTimer: when
  std::string reason;         // kPublishCancel, kGiveUp
  bool operator==(const Action&) const = default;
};

// The result of a transition.
struct Step {
  Delivery delivery;  // persist this before performing the actions
  std::vector<Action> actions;
  bool applied = false;  // false: the event was ignored and delivery is the input, unchanged
  std::string note;      // what happened, or why the event was ignored
};

// What Apply needs besides the record: the time, and a jitter in [0, 1) drawn by the caller
// (values outside are clamped), used only when a retry is scheduled.
struct Inputs {
  TimePoint now;
  double jitter = 0;
};

// A new delivery: offered, with its offer to publish and its timer. Preconditions (asserted): the
// identifiers are valid and policy.Check() passes.
Step StartDelivery(std::string id, std::string deployment, std::string gateway,
                   std::uint64_t total_size, const Inputs& in, const Policy& policy);

// The transition for event. Never fails: an event that does not apply is ignored (see above).
Step Apply(const Delivery& delivery, const Event& event, const Inputs& in, const Policy& policy);

// The timer event due at now, if any: WaitTimedOut or RetryTimerFired when the deadline passed,
// else UrlsExpiring when the grant's URLs are within the refresh margin of expiring.
std::optional<Event> DueEvent(const Delivery& delivery, TimePoint now, const Policy& policy);
// When DueEvent will next have something to say; nullopt for a final delivery.
std::optional<TimePoint> NextWakeup(const Delivery& delivery, const Policy& policy);

// What a restarted hub must do for a persisted delivery: publish again what may have been lost
// between persisting a step and performing its actions (the offer while offered, the grant while
// ready — receivers are idempotent), and schedule its timer. Nothing for a final delivery.
std::vector<Action> ResumeActions(const Delivery& delivery, TimePoint now, const Policy& policy);

// The retry delay after n consecutive failures (n ≥ 1): backoff_initial × 2^(n−1), capped at
// backoff_max, reduced by jitter_ratio × jitter, rounded up to whole seconds, at least 1 s.
std::chrono::seconds Backoff(std::uint32_t n, double jitter, const Policy& policy);

}  // namespace airlock::delivery
