#include "delivery/state_machine.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

#include "core/name_table.hpp"
#include "core/record_json.hpp"
#include "core/text.hpp"

namespace airlock::delivery {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr std::pair<DeliveryState, const char*> kStates[] = {
    {DeliveryState::kOffered, "offered"},     {DeliveryState::kReady, "ready"},
    {DeliveryState::kGranted, "granted"},     {DeliveryState::kDownloading, "downloading"},
    {DeliveryState::kAvailable, "available"}, {DeliveryState::kRejected, "rejected"},
    {DeliveryState::kFailed, "failed"},       {DeliveryState::kCancelled, "cancelled"},
};

constexpr std::pair<Wait, const char*> kWaits[] = {
    {Wait::kNone, "none"}, {Wait::kReply, "reply"}, {Wait::kRetry, "retry"}};

TimePoint FloorSeconds(TimePoint t) { return std::chrono::floor<seconds>(t); }
TimePoint CeilSeconds(TimePoint t) { return std::chrono::ceil<seconds>(t); }

std::string Describe(seconds s) {
  auto n = s.count();
  if (n % 3600 == 0) {
    return std::to_string(n / 3600) + "h";
  }
  if (n % 60 == 0) {
    return std::to_string(n / 60) + "m";
  }
  return std::to_string(n) + "s";
}

// At most max bytes of s, cut before a UTF-8 continuation byte so that the result stays valid
// UTF-8 (nlohmann's dump throws on invalid UTF-8).
std::string Truncate(std::string_view s, std::size_t max) {
  if (s.size() <= max) {
    return std::string(s);
  }
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return std::string(s.substr(0, n));
}

bool Transferring(DeliveryState s) {
  return s == DeliveryState::kGranted || s == DeliveryState::kDownloading;
}

class Machine {
 public:
  Machine(const Delivery& d, const Inputs& in, const Policy& p) : in_(in), p_(p) {
    step_.delivery = d;
  }

  Step Ignore(std::string why) && {
    step_.applied = false;
    step_.actions.clear();
    step_.note = std::move(why);
    return std::move(step_);
  }

  // Finishes an applied step: stamps it and, unless it ended, schedules its next timer.
  Step Done(std::string note) && {
    Delivery& d = step_.delivery;
    d.updated_at = FloorSeconds(in_.now);
    step_.applied = true;
    step_.note = std::move(note);
    if (auto at = NextWakeup(d, p_)) {
      step_.actions.push_back(
          {.kind = ActionKind::kScheduleTimer, .attempt = 0, .at = *at, .reason = ""});
    }
    return std::move(step_);
  }

  Delivery& d() { return step_.delivery; }

  void WaitFor(Wait wait, seconds timeout) {
    d().wait = wait;
    d().deadline = CeilSeconds(in_.now + timeout);
  }

  void End(DeliveryState state, std::optional<DeliveryError> error) {
    d().state = state;
    d().wait = Wait::kNone;
    d().deadline.reset();
    d().held = false;
    if (error) {
      d().last_error = std::move(error);
    }
  }

  void PublishOffer() {
    d().offers += 1;
    WaitFor(Wait::kReply, p_.offer_timeout);
    step_.actions.push_back(
        {.kind = ActionKind::kPublishOffer, .attempt = 0, .at = *d().deadline, .reason = ""});
  }

  // A new grant (attempt + 1), its URLs valid for url_ttl; the record assumes that expiry until
  // GrantPublished says what the orchestrator really signed.
  void PublishGrant() {
    d().attempt += 1;
    TimePoint expires = CeilSeconds(in_.now + p_.url_ttl);
    if (Transferring(d().state)) {
      d().urls_expire_at = expires;
    }
    step_.actions.push_back(
        {.kind = ActionKind::kPublishGrant, .attempt = d().attempt, .at = expires, .reason = ""});
  }

  // A re-grant after a failure: back to granted, waiting for the new attempt's first status.
  void Regrant() {
    d().state = DeliveryState::kGranted;
    PublishGrant();
    WaitFor(Wait::kReply, p_.start_timeout);
  }

  // A failed wait or attempt: back off and try again, or give up after max_retries.
  Step Failure(DeliveryError error, bool immediate = false) && {
    d().retries += 1;
    if (d().retries > p_.max_retries) {
      std::string why =
          error.message + " (gave up after " + std::to_string(p_.max_retries) + " retries)";
      error.message = Truncate(why, kMaxTextLength);
      End(DeliveryState::kFailed, error);
      step_.actions.push_back(
          {.kind = ActionKind::kPublishCancel, .attempt = 0, .at = {}, .reason = error.message});
      step_.actions.push_back(
          {.kind = ActionKind::kGiveUp, .attempt = 0, .at = {}, .reason = error.message});
      return std::move(*this).Done("failed: " + why);
    }
    d().last_error = error;
    if (immediate) {
      Regrant();
      return std::move(*this).Done(error.message + "; re-granted at once (attempt " +
                                   std::to_string(d().attempt) + ")");
    }
    seconds delay = Backoff(d().retries, in_.jitter, p_);
    WaitFor(Wait::kRetry, delay);
    return std::move(*this).Done(error.message + "; retry " + std::to_string(d().retries) + " of " +
                                 std::to_string(p_.max_retries) + " in " + Describe(delay));
  }

  Step On(const GatewayReady& e) && {
    if (d().state != DeliveryState::kOffered) {
      return std::move(*this).Ignore("ready while " + std::string(DeliveryStateName(d().state)) +
                                     " (a repeat or a late answer)");
    }
    d().state = DeliveryState::kReady;
    d().held = false;
    d().platforms = e.platforms;
    d().retries = 0;
    d().last_error.reset();
    PublishGrant();
    WaitFor(Wait::kReply, p_.grant_timeout);
    return std::move(*this).Done("gateway ready for " + Join(e.platforms) + "; granting attempt " +
                                 std::to_string(d().attempt));
  }

  Step On(const GatewayRejected& e) && {
    if (d().state != DeliveryState::kOffered && d().state != DeliveryState::kReady) {
      return std::move(*this).Ignore("reject while " + std::string(DeliveryStateName(d().state)) +
                                     " (only an offer can be rejected)");
    }
    End(DeliveryState::kRejected, DeliveryError{RejectReasonName(e.reason), e.message});
    return std::move(*this).Done(std::string("rejected: ") + RejectReasonName(e.reason));
  }

  Step On(const GatewayHeld&) && {
    if (d().state != DeliveryState::kOffered) {
      return std::move(*this).Ignore("held while " + std::string(DeliveryStateName(d().state)) +
                                     " (only an offer can be held)");
    }
    if (d().held) {
      return std::move(*this).Ignore("held again (a repeat, or the answer to a re-offer)");
    }
    // A person decides now; however long they take is not a failure. A backoff under way (a
    // timed-out offer) still ends in the next offer.
    d().held = true;
    d().retries = 0;
    d().last_error.reset();
    return std::move(*this).Done("held for the site's operator");
  }

  Step On(const GatewayProgress& e) && {
    DeliveryState s = d().state;
    if (s != DeliveryState::kReady && !Transferring(s)) {
      return std::move(*this).Ignore("progress while " + std::string(DeliveryStateName(s)));
    }
    if (e.bytes_done > e.bytes_total) {
      return std::move(*this).Ignore("progress of " + std::to_string(e.bytes_done) +
                                     " bytes beyond its total of " + std::to_string(e.bytes_total));
    }
    if (e.attempt != d().attempt) {
      return std::move(*this).Ignore("progress of attempt " + std::to_string(e.attempt) +
                                     ", the current one is " + std::to_string(d().attempt));
    }
    // In ready the gateway can only have this attempt's grant if it was published: the
    // orchestrator's GrantPublished is still on its way. In granted the attempt is new, so its
    // first count replaces the old attempt's.
    if (s == DeliveryState::kDownloading && e.bytes_done <= d().bytes_done) {
      return std::move(*this).Ignore("progress " + std::to_string(e.bytes_done) +
                                     " bytes is not beyond " + std::to_string(d().bytes_done) +
                                     " (a repeat or out of order)");
    }
    d().state = DeliveryState::kDownloading;
    d().bytes_done = e.bytes_done;
    d().bytes_total = e.bytes_total;
    d().retries = 0;
    WaitFor(Wait::kReply, p_.progress_timeout);
    return std::move(*this).Done("downloading: " + std::to_string(e.bytes_done) + " of " +
                                 std::to_string(e.bytes_total) + " bytes");
  }

  Step On(const GatewayAvailable& e) && {
    if (IsFinal(d().state)) {
      return std::move(*this).Ignore("available while " +
                                     std::string(DeliveryStateName(d().state)));
    }
    if (e.attempt > d().attempt) {
      return std::move(*this).Ignore("available from attempt " + std::to_string(e.attempt) +
                                     ", which was never granted");
    }
    // Whichever grant (or none: a package the gateway already held) fetched the bytes, the
    // gateway has verified them; that is the result.
    d().bytes_done = e.bytes_total;
    d().bytes_total = e.bytes_total;
    End(DeliveryState::kAvailable, std::nullopt);
    d().last_error.reset();
    return std::move(*this).Done("available on the gateway");
  }

  Step On(const GatewayFailed& e) && {
    DeliveryState s = d().state;
    if (s != DeliveryState::kReady && !Transferring(s)) {
      return std::move(*this).Ignore("failure report while " + std::string(DeliveryStateName(s)));
    }
    if (e.attempt != d().attempt) {
      return std::move(*this).Ignore("failure of attempt " + std::to_string(e.attempt) +
                                     ", the current one is " + std::to_string(d().attempt));
    }
    DeliveryError error{FailureCodeName(e.error.code), e.error.message};
    // A failure another attempt would not change ends the delivery whatever the hub was doing.
    if (!IsRetryable(e.error.code)) {
      End(DeliveryState::kFailed, error);
      return std::move(*this).Done(std::string("failed on the gateway: ") +
                                   FailureCodeName(e.error.code));
    }
    if (d().wait == Wait::kRetry) {
      return std::move(*this).Ignore("failure of attempt " + std::to_string(e.attempt) +
                                     ", which is already being retried");
    }
    return std::move(*this).Failure(error, e.error.code == FailureCode::kUrlExpired);
  }

  Step On(const GrantPublished& e) && {
    DeliveryState s = d().state;
    if (s != DeliveryState::kReady && !Transferring(s)) {
      return std::move(*this).Ignore("grant published while " + std::string(DeliveryStateName(s)));
    }
    if (e.attempt != d().attempt) {
      return std::move(*this).Ignore("grant " + std::to_string(e.attempt) +
                                     " published, the current one is " +
                                     std::to_string(d().attempt));
    }
    d().urls_expire_at = CeilSeconds(e.url_expires);
    // The granted bytes replace the offer's total, unless the gateway already reported more.
    if (e.bytes_total > 0 && e.bytes_total >= d().bytes_done) {
      d().bytes_total = e.bytes_total;
    }
    if (s == DeliveryState::kReady) {
      d().state = DeliveryState::kGranted;
      WaitFor(Wait::kReply, p_.start_timeout);
    }
    return std::move(*this).Done("grant " + std::to_string(e.attempt) + " published, URLs until " +
                                 FormatRfc3339(*d().urls_expire_at));
  }

  Step On(const WaitTimedOut&) && {
    if (d().wait != Wait::kReply) {
      return std::move(*this).Ignore("timeout while not waiting for a reply");
    }
    if (in_.now < *d().deadline) {
      return std::move(*this).Ignore("timeout before the deadline " + FormatRfc3339(*d().deadline) +
                                     " (a stale timer)");
    }
    if (d().state == DeliveryState::kOffered && d().held) {
      // The offer expired while the operator looked: a fresh one, so that the gateway can answer
      // ready when they approve.
      PublishOffer();
      return std::move(*this).Done("re-offered while held for the site's operator (offer " +
                                   std::to_string(d().offers) + ")");
    }
    std::string what;
    switch (d().state) {
      case DeliveryState::kOffered:
        what = "the gateway did not answer the offer within " + Describe(p_.offer_timeout);
        break;
      case DeliveryState::kReady:
        what = "the hub did not publish a grant within " + Describe(p_.grant_timeout);
        break;
      case DeliveryState::kGranted:
        what = "the gateway sent no status within " + Describe(p_.start_timeout) + " of grant " +
               std::to_string(d().attempt);
        break;
      default:
        what = "the gateway reported no progress for " + Describe(p_.progress_timeout);
        break;
    }
    return std::move(*this).Failure(DeliveryError{"timeout", what});
  }

  Step On(const RetryTimerFired&) && {
    if (d().wait != Wait::kRetry) {
      return std::move(*this).Ignore("retry timer while not backing off");
    }
    if (in_.now < *d().deadline) {
      return std::move(*this).Ignore("retry timer before " + FormatRfc3339(*d().deadline) +
                                     " (a stale timer)");
    }
    switch (d().state) {
      case DeliveryState::kOffered:
        PublishOffer();
        return std::move(*this).Done("re-offered (offer " + std::to_string(d().offers) + ")");
      case DeliveryState::kReady:
        PublishGrant();
        WaitFor(Wait::kReply, p_.grant_timeout);
        break;
      default:
        Regrant();
        break;
    }
    return std::move(*this).Done("re-granted (attempt " + std::to_string(d().attempt) + ")");
  }

  Step On(const UrlsExpiring&) && {
    if (!Transferring(d().state) || d().wait != Wait::kReply || !d().urls_expire_at) {
      return std::move(*this).Ignore("URL refresh while " +
                                     std::string(DeliveryStateName(d().state)) +
                                     (d().wait == Wait::kRetry ? " and backing off" : ""));
    }
    if (in_.now < *d().urls_expire_at - p_.url_refresh_margin) {
      return std::move(*this).Ignore("URLs valid until " + FormatRfc3339(*d().urls_expire_at) +
                                     " need no refresh yet (a stale timer)");
    }
    // Not a failure: a long download simply outlives its URLs. The progress timeout bounds this.
    PublishGrant();
    return std::move(*this).Done("URLs expire at " + FormatRfc3339(*d().urls_expire_at) +
                                 "; re-granted (attempt " + std::to_string(d().attempt) + ")");
  }

  Step On(const CancelRequested& e) && {
    if (IsFinal(d().state)) {
      return std::move(*this).Ignore("cancel while " + std::string(DeliveryStateName(d().state)));
    }
    std::string reason = Truncate(e.reason, kMaxTextLength);
    End(DeliveryState::kCancelled, DeliveryError{"cancelled", reason});
    step_.actions.push_back(
        {.kind = ActionKind::kPublishCancel, .attempt = 0, .at = {}, .reason = reason});
    return std::move(*this).Done("cancelled: " + reason);
  }

 private:
  Inputs in_;
  const Policy& p_;
  Step step_;
};

bool ValidErrorCode(std::string_view code) {
  return !code.empty() && code.size() <= 64 && std::all_of(code.begin(), code.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

constexpr RecordReader kRecord("delivery record");

constexpr std::uint64_t kMaxCounter = std::numeric_limits<std::uint32_t>::max();

}  // namespace

const char* DeliveryStateName(DeliveryState state) { return NameOf(kStates, state); }
std::optional<DeliveryState> ParseDeliveryState(std::string_view name) {
  return FindName(kStates, name);
}
bool IsFinal(DeliveryState state) {
  return state == DeliveryState::kAvailable || state == DeliveryState::kRejected ||
         state == DeliveryState::kFailed || state == DeliveryState::kCancelled;
}
const char* WaitName(Wait wait) { return NameOf(kWaits, wait); }

const char* EventName(const Event& event) {
  static constexpr const char* kNames[] = {
      "gateway-ready",     "gateway-rejected", "gateway-held",   "gateway-progress",
      "gateway-available", "gateway-failed",   "grant-published", "wait-timed-out",
      "retry-timer-fired", "urls-expiring",    "cancel-requested"};
  static_assert(std::variant_size_v<Event> == std::size(kNames));
  return kNames[event.index()];
}

const char* ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kPublishOffer:
      return "publish-offer";
    case ActionKind::kPublishGrant:
      return "publish-grant";
    case ActionKind::kPublishCancel:
      return "publish-cancel";
    case ActionKind::kScheduleTimer:
      return "schedule-timer";
    case ActionKind::kGiveUp:
      return "give-up";
  }
  return "?";
}

Event EventFrom(const DeliveryReady& ready) { return GatewayReady{ready.platforms}; }

Event EventFrom(const DeliveryReject& reject) {
  return GatewayRejected{reject.reason, reject.message};
}

Event EventFrom(const DeliveryStatus& status) {
  switch (status.state) {
    case GatewayState::kAvailable:
      return GatewayAvailable{status.attempt, status.bytes_total};
    case GatewayState::kFailed:
      return GatewayFailed{status.attempt,
                           status.error.value_or(DeliveryFailure{FailureCode::kNetwork, ""})};
    case GatewayState::kHeld:
      return GatewayHeld{};
    case GatewayState::kDownloading:
      break;
  }
  return GatewayProgress{status.attempt, status.bytes_done, status.bytes_total};
}

Status Policy::Check() const {
  auto bad = [](std::string what) { return Fail(ErrorCode::kInvalidArgument, std::move(what)); };
  const std::pair<const char*, seconds> durations[] = {{"offer_timeout", offer_timeout},
                                                       {"grant_timeout", grant_timeout},
                                                       {"start_timeout", start_timeout},
                                                       {"progress_timeout", progress_timeout},
                                                       {"url_ttl", url_ttl},
                                                       {"url_refresh_margin", url_refresh_margin},
                                                       {"backoff_initial", backoff_initial},
                                                       {"backoff_max", backoff_max}};
  for (const auto& [name, value] : durations) {
    if (value.count() <= 0) {
      return bad(std::string("delivery policy: ") + name + " must be positive");
    }
  }
  if (url_refresh_margin >= url_ttl) {
    return bad("delivery policy: url_refresh_margin must be shorter than url_ttl");
  }
  if (backoff_initial > backoff_max) {
    return bad("delivery policy: backoff_initial must not exceed backoff_max");
  }
  if (!(jitter_ratio >= 0 && jitter_ratio <= 1)) {
    return bad("delivery policy: jitter_ratio must be within [0, 1]");
  }
  if (max_retries == 0) {
    return bad("delivery policy: max_retries must be at least 1");
  }
  return {};
}

seconds Backoff(std::uint32_t n, double jitter, const Policy& policy) {
  if (!(jitter >= 0)) {  // also NaN
    jitter = 0;
  }
  jitter = std::min(jitter, 1.0);
  // Double in floating point, so that a large n saturates at the cap instead of overflowing.
  double delay = static_cast<double>(policy.backoff_initial.count()) *
                 std::pow(2.0, static_cast<double>(std::max<std::uint32_t>(n, 1) - 1));
  delay = std::min(delay, static_cast<double>(policy.backoff_max.count()));
  delay *= 1.0 - policy.jitter_ratio * jitter;
  return seconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(delay))));
}

Step StartDelivery(std::string id, std::string deployment, std::string gateway,
                   std::uint64_t total_size, const Inputs& in, const Policy& policy) {
  assert(ValidDeliveryId(id) && ValidDeploymentId(deployment) && ValidGatewayName(gateway));
  assert(policy.Check().has_value());
  Delivery d;
  d.id = std::move(id);
  d.deployment = std::move(deployment);
  d.gateway = std::move(gateway);
  d.state = DeliveryState::kOffered;
  d.bytes_total = total_size;
  d.created_at = FloorSeconds(in.now);
  Machine m(d, in, policy);
  m.PublishOffer();
  return std::move(m).Done("offered to " + m.d().gateway);
}

Step Apply(const Delivery& delivery, const Event& event, const Inputs& in, const Policy& policy) {
  return std::visit([&](const auto& e) { return Machine(delivery, in, policy).On(e); }, event);
}

std::optional<TimePoint> NextWakeup(const Delivery& d, const Policy& policy) {
  if (IsFinal(d.state) || !d.deadline) {
    return std::nullopt;
  }
  TimePoint at = *d.deadline;
  if (Transferring(d.state) && d.wait == Wait::kReply && d.urls_expire_at) {
    at = std::min(at, *d.urls_expire_at - policy.url_refresh_margin);
  }
  return at;
}

std::optional<Event> DueEvent(const Delivery& d, TimePoint now, const Policy& policy) {
  if (IsFinal(d.state) || !d.deadline) {
    return std::nullopt;
  }
  if (now >= *d.deadline) {
    if (d.wait == Wait::kRetry) {
      return RetryTimerFired{};
    }
    return WaitTimedOut{};
  }
  if (Transferring(d.state) && d.wait == Wait::kReply && d.urls_expire_at &&
      now >= *d.urls_expire_at - policy.url_refresh_margin) {
    return UrlsExpiring{};
  }
  return std::nullopt;
}

std::vector<Action> ResumeActions(const Delivery& d, TimePoint now, const Policy& policy) {
  std::vector<Action> out;
  if (IsFinal(d.state)) {
    return out;
  }
  if (d.wait == Wait::kReply && d.state == DeliveryState::kOffered) {
    out.push_back(
        {.kind = ActionKind::kPublishOffer, .attempt = 0, .at = *d.deadline, .reason = ""});
  }
  if (d.wait == Wait::kReply && d.state == DeliveryState::kReady) {
    out.push_back({.kind = ActionKind::kPublishGrant,
                   .attempt = d.attempt,
                   .at = CeilSeconds(now + policy.url_ttl),
                   .reason = ""});
  }
  if (auto at = NextWakeup(d, policy)) {
    out.push_back({.kind = ActionKind::kScheduleTimer, .attempt = 0, .at = *at, .reason = ""});
  }
  return out;
}

json Delivery::ToJson() const {
  json j = {{"id", id},
            {"deployment", deployment},
            {"gateway", gateway},
            {"state", DeliveryStateName(state)},
            {"wait", WaitName(wait)},
            {"offers", offers},
            {"attempt", attempt},
            {"retries", retries},
            {"held", held},
            {"platforms", platforms},
            {"bytes_done", bytes_done},
            {"bytes_total", bytes_total},
            {"created_at", FormatRfc3339(created_at)},
            {"updated_at", FormatRfc3339(updated_at)}};
  if (deadline) {
    j["deadline"] = FormatRfc3339(*deadline);
  }
  if (urls_expire_at) {
    j["urls_expire_at"] = FormatRfc3339(*urls_expire_at);
  }
  if (last_error) {
    j["last_error"] = {{"code", last_error->code}, {"message", last_error->message}};
  }
  return j;
}

Result<Delivery> Delivery::FromJson(const json& j) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kCorrupt, "malformed delivery record: want a JSON object");
  }
  Delivery d;
  AIRLOCK_ASSIGN_OR_RETURN(d.id, kRecord.String(j, "id"));
  if (!ValidDeliveryId(d.id)) {
    return Fail(kRecord.Malformed("id", "must be \"dlv-\" and 8-64 lowercase hex digits"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(d.deployment, kRecord.String(j, "deployment"));
  if (!ValidDeploymentId(d.deployment)) {
    return Fail(kRecord.Malformed("deployment", "must be \"dep-\" and 8-64 lowercase hex digits"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(d.gateway, kRecord.String(j, "gateway"));
  if (!ValidGatewayName(d.gateway)) {
    return Fail(kRecord.Malformed("gateway", "must be a gateway name"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string state, kRecord.String(j, "state"));
  auto parsed_state = ParseDeliveryState(state);
  if (!parsed_state) {
    return Fail(kRecord.Malformed("state", "is not a delivery state"));
  }
  d.state = *parsed_state;
  AIRLOCK_ASSIGN_OR_RETURN(std::string wait, kRecord.String(j, "wait"));
  auto parsed_wait = FindName(kWaits, wait);
  if (!parsed_wait) {
    return Fail(kRecord.Malformed("wait", "must be none, reply or retry"));
  }
  d.wait = *parsed_wait;
  AIRLOCK_ASSIGN_OR_RETURN(d.deadline, kRecord.OptionalTime(j, "deadline"));
  if (IsFinal(d.state) != (d.wait == Wait::kNone)) {
    return Fail(kRecord.Malformed("wait", IsFinal(d.state) ? "must be none in a final state"
                                                   : "must not be none in a waiting state"));
  }
  if (d.deadline.has_value() != (d.wait != Wait::kNone)) {
    return Fail(kRecord.Malformed("deadline", "must be present exactly when there is a wait"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t offers, kRecord.Unsigned(j, "offers", kMaxCounter));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t attempt, kRecord.Unsigned(j, "attempt", kMaxCounter));
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t retries, kRecord.Unsigned(j, "retries", kMaxCounter));
  d.offers = static_cast<std::uint32_t>(offers);
  d.attempt = static_cast<std::uint32_t>(attempt);
  d.retries = static_cast<std::uint32_t>(retries);
  if (auto held = j.find("held"); held != j.end()) {  // absent in records from before it
    if (!held->is_boolean()) {
      return Fail(kRecord.Malformed("held", "must be true or false"));
    }
    d.held = held->get<bool>();
    if (d.held && d.state != DeliveryState::kOffered) {
      return Fail(kRecord.Malformed("held", "can be true only while offered"));
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(d.urls_expire_at, kRecord.OptionalTime(j, "urls_expire_at"));
  auto platforms = j.find("platforms");
  if (platforms == j.end() || !platforms->is_array() || platforms->size() > kMaxPlatforms) {
    return Fail(kRecord.Malformed("platforms", "must be an array of at most " +
                                           std::to_string(kMaxPlatforms) + " platforms"));
  }
  for (const json& p : *platforms) {
    if (!p.is_string() || !ValidPlatform(p.get<std::string>())) {
      return Fail(kRecord.Malformed("platforms", "must hold \"os/architecture[/variant]\" strings"));
    }
    d.platforms.push_back(p.get<std::string>());
  }
  AIRLOCK_ASSIGN_OR_RETURN(
      d.bytes_total, kRecord.Unsigned(j, "bytes_total", std::numeric_limits<std::uint64_t>::max()));
  AIRLOCK_ASSIGN_OR_RETURN(d.bytes_done, kRecord.Unsigned(j, "bytes_done", d.bytes_total));
  if (j.contains("last_error")) {
    const json& e = j["last_error"];
    if (!e.is_object()) {
      return Fail(kRecord.Malformed("last_error", "must be {\"code\", \"message\"}"));
    }
    DeliveryError error;
    AIRLOCK_ASSIGN_OR_RETURN(error.code, kRecord.String(e, "code"));
    AIRLOCK_ASSIGN_OR_RETURN(error.message, kRecord.String(e, "message"));
    if (!ValidErrorCode(error.code)) {
      return Fail(kRecord.Malformed("last_error", "code must be 1-64 of [a-z0-9-]"));
    }
    if (error.message.size() > kMaxTextLength) {
      return Fail(kRecord.Malformed("last_error",
                            "message is longer than " + std::to_string(kMaxTextLength) + " bytes"));
    }
    d.last_error = std::move(error);
  }
  AIRLOCK_ASSIGN_OR_RETURN(d.created_at, kRecord.Time(j, "created_at"));
  AIRLOCK_ASSIGN_OR_RETURN(d.updated_at, kRecord.Time(j, "updated_at"));
  return d;
}

}  // namespace airlock::delivery
