#include "delivery/state_machine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace airlock::delivery {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

// 2026-11-22T10:00:00Z.
TimePoint T0() { return TimePoint(seconds(1795341600)); }

const std::string kId = "dlv-0123456789abcdef0123456789abcdef";
const std::string kDeployment = "dep-00112233aabbccdd";
const std::string kGateway = "plant-7";
constexpr std::uint64_t kPackage = 10'000;

using K = ActionKind;
using S = DeliveryState;

std::vector<ActionKind> Kinds(const std::vector<Action>& actions) {
  std::vector<ActionKind> out;
  for (const auto& a : actions) {
    out.push_back(a.kind);
  }
  return out;
}

std::string KindsText(const std::vector<ActionKind>& kinds) {
  std::string out = "[";
  for (auto k : kinds) {
    out += std::string(out.size() > 1 ? " " : "") + ActionKindName(k);
  }
  return out + "]";
}

// Drives one delivery through the machine, the way the orchestrator will: every step's record
// replaces the last, and the test's clock moves forward by hand.
class Driver {
 public:
  explicit Driver(Policy policy = {}) : policy_(policy) {
    Step s = StartDelivery(kId, kDeployment, kGateway, kPackage, {T0(), 0}, policy_);
    d_ = s.delivery;
    last_ = s;
  }
  Driver(Delivery d, Policy policy) : policy_(policy), d_(std::move(d)) {}

  Step& On(const Event& e, double jitter = 0) {
    last_ = Apply(d_, e, {now_, jitter}, policy_);
    d_ = last_.delivery;
    return last_;
  }
  // Moves the clock to when the delivery's timer is due and applies what is due then.
  Step& FireTimer(double jitter = 0) {
    now_ = NextWakeup(d_, policy_).value();
    auto e = DueEvent(d_, now_, policy_);
    EXPECT_TRUE(e.has_value()) << "nothing due at the wakeup time";
    return On(*e, jitter);
  }
  void Advance(seconds s) { now_ += s; }

  const Delivery& d() const { return d_; }
  TimePoint now() const { return now_; }
  const Policy& policy() const { return policy_; }

 private:
  Policy policy_;
  Delivery d_;
  Step last_;
  TimePoint now_ = T0();
};

// ---- fixtures: a delivery in each state, reached through the machine itself ----

std::map<std::string, Delivery> Fixtures() {
  std::map<std::string, Delivery> f;
  Policy p;
  auto at = [](const Delivery& d, seconds s) { return Inputs{d.updated_at + s, 0}; };
  auto deadline = [](const Delivery& d) { return Inputs{*d.deadline, 0}; };
  f["offered"] = StartDelivery(kId, kDeployment, kGateway, kPackage, {T0(), 0}, p).delivery;
  f["offered~retry"] = Apply(f["offered"], WaitTimedOut{}, deadline(f["offered"]), p).delivery;
  f["offered-held"] = Apply(f["offered"], GatewayHeld{}, at(f["offered"], seconds(5)), p).delivery;
  f["ready"] =
      Apply(f["offered"], GatewayReady{{"linux/arm64/v8"}}, at(f["offered"], seconds(5)), p)
          .delivery;
  f["ready~retry"] = Apply(f["ready"], WaitTimedOut{}, deadline(f["ready"]), p).delivery;
  // Short-lived URLs, so that their refresh comes before the fixtures' timeouts.
  f["granted"] =
      Apply(f["ready"], GrantPublished{1, T0() + minutes(6), 8'000}, at(f["ready"], seconds(1)), p)
          .delivery;
  f["granted~retry"] = Apply(f["granted"], WaitTimedOut{}, deadline(f["granted"]), p).delivery;
  f["downloading"] =
      Apply(f["granted"], GatewayProgress{1, 100, 8'000}, at(f["granted"], seconds(10)), p)
          .delivery;
  f["downloading~retry"] =
      Apply(f["downloading"], WaitTimedOut{}, deadline(f["downloading"]), p).delivery;
  f["available"] =
      Apply(f["downloading"], GatewayAvailable{1, 8'000}, at(f["downloading"], seconds(10)), p)
          .delivery;
  f["rejected"] = Apply(f["offered"], GatewayRejected{RejectReason::kInsufficientSpace, "full"},
                        at(f["offered"], seconds(5)), p)
                      .delivery;
  f["failed"] =
      Apply(f["downloading"], GatewayFailed{1, {FailureCode::kVerification, "bad signature"}},
            at(f["downloading"], seconds(10)), p)
          .delivery;
  f["cancelled"] =
      Apply(f["downloading"], CancelRequested{"operator"}, at(f["downloading"], seconds(10)), p)
          .delivery;
  return f;
}

// The events of the table, made for the fixture they are applied to: gateway messages carry the
// fixture's current attempt; timers come when they are due.
enum class E {
  kReady,
  kReject,
  kHeld,
  kProgress,
  kAvailable,
  kFailedRetryable,
  kFailedFatal,
  kFailedUrl,
  kGrantPublished,
  kTimeout,
  kRetry,
  kUrlsExpiring,
  kCancel,
};
constexpr E kAllEvents[] = {E::kReady,          E::kReject,      E::kHeld,
                            E::kProgress,       E::kAvailable,   E::kFailedRetryable,
                            E::kFailedFatal,    E::kFailedUrl,   E::kGrantPublished,
                            E::kTimeout,        E::kRetry,       E::kUrlsExpiring,
                            E::kCancel};

std::pair<Event, TimePoint> Make(E e, const Delivery& d, const Policy& p) {
  TimePoint soon = d.updated_at + seconds(10);
  std::uint32_t a = d.attempt;
  switch (e) {
    case E::kReady:
      return {GatewayReady{{"linux/arm64/v8"}}, soon};
    case E::kReject:
      return {GatewayRejected{RejectReason::kInsufficientSpace, "3 GB free"}, soon};
    case E::kHeld:
      return {GatewayHeld{}, soon};
    case E::kProgress:
      return {GatewayProgress{a, d.bytes_done + 500, 8'000}, soon};
    case E::kAvailable:
      return {GatewayAvailable{a, 8'000}, soon};
    case E::kFailedRetryable:
      return {GatewayFailed{a, {FailureCode::kNetwork, "connection reset"}}, soon};
    case E::kFailedFatal:
      return {GatewayFailed{a, {FailureCode::kVerification, "under threshold"}}, soon};
    case E::kFailedUrl:
      return {GatewayFailed{a, {FailureCode::kUrlExpired, "403 expired"}}, soon};
    case E::kGrantPublished:
      return {GrantPublished{a, soon + minutes(60), 8'000}, soon};
    case E::kTimeout:
    case E::kRetry:
      return {e == E::kTimeout ? Event(WaitTimedOut{}) : Event(RetryTimerFired{}),
              d.deadline.value_or(soon)};
    case E::kUrlsExpiring:
      return {UrlsExpiring{}, d.urls_expire_at ? *d.urls_expire_at - p.url_refresh_margin : soon};
    case E::kCancel:
      return {CancelRequested{"deployment cancelled"}, soon};
  }
  return {CancelRequested{}, soon};
}

struct Row {
  std::string from;
  E event;
  bool applied;
  DeliveryState to;
  Wait wait;
  std::vector<ActionKind> actions;
};

constexpr bool kApplied = true;
constexpr bool kIgnored = false;

// Short names for the table's columns.
constexpr Wait kNone = Wait::kNone;
constexpr Wait kReply = Wait::kReply;
constexpr Wait kRetry = Wait::kRetry;
const std::vector<ActionKind> kNothing = {};
const std::vector<ActionKind> kTimer = {K::kScheduleTimer};
const std::vector<ActionKind> kOfferTimer = {K::kPublishOffer, K::kScheduleTimer};
const std::vector<ActionKind> kGrantTimer = {K::kPublishGrant, K::kScheduleTimer};
const std::vector<ActionKind> kCancelMsg = {K::kPublishCancel};

// Every (non-final state, event) pair. "~retry" fixtures are the same state backing off after a
// failed wait. Ignored rows keep the state and wait of their fixture.
const std::vector<Row> kTable = {
    // offered: waiting for the gateway's answer.
    {"offered", E::kReady, kApplied, S::kReady, kReply, kGrantTimer},
    {"offered", E::kReject, kApplied, S::kRejected, kNone, kNothing},
    {"offered", E::kHeld, kApplied, S::kOffered, kReply, kTimer},
    {"offered", E::kProgress, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"offered", E::kFailedRetryable, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kFailedFatal, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kFailedUrl, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kGrantPublished, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kTimeout, kApplied, S::kOffered, kRetry, kTimer},
    {"offered", E::kRetry, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kUrlsExpiring, kIgnored, S::kOffered, kReply, kNothing},
    {"offered", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // offered, backing off before the next offer: a late answer is still welcome.
    {"offered~retry", E::kReady, kApplied, S::kReady, kReply, kGrantTimer},
    {"offered~retry", E::kReject, kApplied, S::kRejected, kNone, kNothing},
    {"offered~retry", E::kHeld, kApplied, S::kOffered, kRetry, kTimer},
    {"offered~retry", E::kProgress, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"offered~retry", E::kFailedRetryable, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kFailedFatal, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kFailedUrl, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kGrantPublished, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kTimeout, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kRetry, kApplied, S::kOffered, kReply, kOfferTimer},
    {"offered~retry", E::kUrlsExpiring, kIgnored, S::kOffered, kRetry, kNothing},
    {"offered~retry", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // offered and held for the site's operator: re-offered when the offer expires, never given up.
    {"offered-held", E::kReady, kApplied, S::kReady, kReply, kGrantTimer},
    {"offered-held", E::kReject, kApplied, S::kRejected, kNone, kNothing},
    {"offered-held", E::kHeld, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kProgress, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"offered-held", E::kFailedRetryable, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kFailedFatal, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kFailedUrl, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kGrantPublished, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kTimeout, kApplied, S::kOffered, kReply, kOfferTimer},
    {"offered-held", E::kRetry, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kUrlsExpiring, kIgnored, S::kOffered, kReply, kNothing},
    {"offered-held", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // ready: the hub owes the gateway a grant.
    {"ready", E::kReady, kIgnored, S::kReady, kReply, kNothing},
    {"ready", E::kReject, kApplied, S::kRejected, kNone, kNothing},
    {"ready", E::kHeld, kIgnored, S::kReady, kReply, kNothing},
    {"ready", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"ready", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"ready", E::kFailedRetryable, kApplied, S::kReady, kRetry, kTimer},
    {"ready", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"ready", E::kFailedUrl, kApplied, S::kGranted, kReply, kGrantTimer},
    {"ready", E::kGrantPublished, kApplied, S::kGranted, kReply, kTimer},
    {"ready", E::kTimeout, kApplied, S::kReady, kRetry, kTimer},
    {"ready", E::kRetry, kIgnored, S::kReady, kReply, kNothing},
    {"ready", E::kUrlsExpiring, kIgnored, S::kReady, kReply, kNothing},
    {"ready", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // ready, backing off because the hub did not publish its grant in time.
    {"ready~retry", E::kReady, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kReject, kApplied, S::kRejected, kNone, kNothing},
    {"ready~retry", E::kHeld, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"ready~retry", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"ready~retry", E::kFailedRetryable, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"ready~retry", E::kFailedUrl, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kGrantPublished, kApplied, S::kGranted, kReply, kTimer},
    {"ready~retry", E::kTimeout, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kRetry, kApplied, S::kReady, kReply, kGrantTimer},
    {"ready~retry", E::kUrlsExpiring, kIgnored, S::kReady, kRetry, kNothing},
    {"ready~retry", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // granted: waiting for the gateway's first status.
    {"granted", E::kReady, kIgnored, S::kGranted, kReply, kNothing},
    {"granted", E::kReject, kIgnored, S::kGranted, kReply, kNothing},
    {"granted", E::kHeld, kIgnored, S::kGranted, kReply, kNothing},
    {"granted", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"granted", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"granted", E::kFailedRetryable, kApplied, S::kGranted, kRetry, kTimer},
    {"granted", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"granted", E::kFailedUrl, kApplied, S::kGranted, kReply, kGrantTimer},
    {"granted", E::kGrantPublished, kApplied, S::kGranted, kReply, kTimer},
    {"granted", E::kTimeout, kApplied, S::kGranted, kRetry, kTimer},
    {"granted", E::kRetry, kIgnored, S::kGranted, kReply, kNothing},
    {"granted", E::kUrlsExpiring, kApplied, S::kGranted, kReply, kGrantTimer},
    {"granted", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // granted, backing off after no status came.
    {"granted~retry", E::kReady, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kReject, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kHeld, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"granted~retry", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"granted~retry", E::kFailedRetryable, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"granted~retry", E::kFailedUrl, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kGrantPublished, kApplied, S::kGranted, kRetry, kTimer},
    {"granted~retry", E::kTimeout, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kRetry, kApplied, S::kGranted, kReply, kGrantTimer},
    {"granted~retry", E::kUrlsExpiring, kIgnored, S::kGranted, kRetry, kNothing},
    {"granted~retry", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // downloading: waiting for more progress or the result.
    {"downloading", E::kReady, kIgnored, S::kDownloading, kReply, kNothing},
    {"downloading", E::kReject, kIgnored, S::kDownloading, kReply, kNothing},
    {"downloading", E::kHeld, kIgnored, S::kDownloading, kReply, kNothing},
    {"downloading", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"downloading", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"downloading", E::kFailedRetryable, kApplied, S::kDownloading, kRetry, kTimer},
    {"downloading", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"downloading", E::kFailedUrl, kApplied, S::kGranted, kReply, kGrantTimer},
    {"downloading", E::kGrantPublished, kApplied, S::kDownloading, kReply, kTimer},
    {"downloading", E::kTimeout, kApplied, S::kDownloading, kRetry, kTimer},
    {"downloading", E::kRetry, kIgnored, S::kDownloading, kReply, kNothing},
    {"downloading", E::kUrlsExpiring, kApplied, S::kDownloading, kReply, kGrantTimer},
    {"downloading", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
    // downloading, backing off after the progress stopped.
    {"downloading~retry", E::kReady, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kReject, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kHeld, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kProgress, kApplied, S::kDownloading, kReply, kTimer},
    {"downloading~retry", E::kAvailable, kApplied, S::kAvailable, kNone, kNothing},
    {"downloading~retry", E::kFailedRetryable, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kFailedFatal, kApplied, S::kFailed, kNone, kNothing},
    {"downloading~retry", E::kFailedUrl, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kGrantPublished, kApplied, S::kDownloading, kRetry, kTimer},
    {"downloading~retry", E::kTimeout, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kRetry, kApplied, S::kGranted, kReply, kGrantTimer},
    {"downloading~retry", E::kUrlsExpiring, kIgnored, S::kDownloading, kRetry, kNothing},
    {"downloading~retry", E::kCancel, kApplied, S::kCancelled, kNone, kCancelMsg},
};

const char* EName(E e) {
  static constexpr const char* kNames[] = {
      "ready",      "reject",          "held",    "progress", "available",     "failed-retryable",
      "failed-fatal", "failed-url",    "grant-published", "timeout", "retry", "urls-expiring",
      "cancel"};
  return kNames[static_cast<int>(e)];
}

void CheckRow(const Row& row, const Delivery& from, const Policy& p) {
  SCOPED_TRACE(row.from + " + " + EName(row.event));
  auto [event, now] = Make(row.event, from, p);
  Step step = Apply(from, event, {now, 0}, p);
  EXPECT_EQ(step.applied, row.applied) << step.note;
  EXPECT_FALSE(step.note.empty());
  EXPECT_EQ(DeliveryStateName(step.delivery.state), std::string(DeliveryStateName(row.to)));
  EXPECT_EQ(WaitName(step.delivery.wait), std::string(WaitName(row.wait)));
  EXPECT_EQ(KindsText(Kinds(step.actions)), KindsText(row.actions));
  if (!row.applied) {
    EXPECT_EQ(step.delivery, from) << "an ignored event changed the record";
    return;
  }
  EXPECT_EQ(step.delivery.updated_at, now);
  EXPECT_EQ(step.delivery.deadline.has_value(), row.wait != Wait::kNone);
  // A non-final step always says when to look again, and that time is the machine's own.
  if (!IsFinal(step.delivery.state)) {
    ASSERT_FALSE(step.actions.empty());
    EXPECT_EQ(step.actions.back().kind, ActionKind::kScheduleTimer);
    EXPECT_EQ(step.actions.back().at, NextWakeup(step.delivery, p));
    // Never a pointless timer: when it fires, something is due. (It may lie in the past, when
    // the grant's URLs are already within their refresh margin: then it fires at once.)
    EXPECT_TRUE(DueEvent(step.delivery, std::max(step.actions.back().at, now), p).has_value());
    EXPECT_FALSE(DueEvent(step.delivery, step.actions.back().at - seconds(1), p).has_value());
  }
  // A persisted step reads back as it was written.
  auto back = Delivery::FromJson(step.delivery.ToJson());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, step.delivery);
}

TEST(StateMachineTableTest, EveryEventInEveryWaitingState) {
  Policy p;
  auto fixtures = Fixtures();
  std::map<std::string, int> rows_per_fixture;
  for (const Row& row : kTable) {
    ASSERT_TRUE(fixtures.contains(row.from)) << row.from;
    CheckRow(row, fixtures.at(row.from), p);
    rows_per_fixture[row.from] += 1;
  }
  // The table is complete: every event for each of the nine waiting fixtures.
  EXPECT_EQ(rows_per_fixture.size(), 9u);
  for (const auto& [from, n] : rows_per_fixture) {
    EXPECT_EQ(n, static_cast<int>(std::size(kAllEvents))) << from;
  }
}

TEST(StateMachineTableTest, FinalStatesAbsorbEveryEvent) {
  Policy p;
  auto fixtures = Fixtures();
  for (const char* name : {"available", "rejected", "failed", "cancelled"}) {
    const Delivery& from = fixtures.at(name);
    ASSERT_TRUE(IsFinal(from.state));
    for (E e : kAllEvents) {
      CheckRow({name, e, kIgnored, from.state, Wait::kNone, {}}, from, p);
    }
    EXPECT_FALSE(NextWakeup(from, p));
    EXPECT_FALSE(DueEvent(from, T0() + std::chrono::hours(1000), p));
    EXPECT_TRUE(ResumeActions(from, T0(), p).empty());
  }
}

TEST(StateMachineTableTest, FixturesHaveTheExpectedShape) {
  auto f = Fixtures();
  EXPECT_EQ(f["offered"].offers, 1u);
  EXPECT_EQ(f["offered"].attempt, 0u);
  EXPECT_EQ(f["offered~retry"].retries, 1u);
  EXPECT_EQ(f["ready"].attempt, 1u);
  EXPECT_EQ(f["ready"].platforms, std::vector<std::string>{"linux/arm64/v8"});
  EXPECT_EQ(f["granted"].urls_expire_at, T0() + minutes(6));
  EXPECT_EQ(f["granted"].bytes_total, 8'000u);
  EXPECT_EQ(f["downloading"].bytes_done, 100u);
  EXPECT_EQ(f["rejected"].last_error, (DeliveryError{"insufficient-space", "full"}));
  EXPECT_EQ(f["failed"].last_error, (DeliveryError{"verification", "bad signature"}));
  EXPECT_EQ(f["cancelled"].last_error, (DeliveryError{"cancelled", "operator"}));
  EXPECT_EQ(f["available"].bytes_done, 8'000u);
}

// ---- scenarios ----

TEST(StateMachineScenarioTest, HappyPath) {
  Driver dr;
  EXPECT_EQ(dr.d().state, S::kOffered);
  EXPECT_EQ(dr.d().bytes_total, kPackage);

  dr.Advance(seconds(3));
  Step s = dr.On(GatewayReady{{"linux/amd64"}});
  ASSERT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishGrant, K::kScheduleTimer}));
  EXPECT_EQ(s.actions[0].attempt, 1u);
  EXPECT_EQ(s.actions[0].at, dr.now() + dr.policy().url_ttl);

  s = dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  EXPECT_EQ(dr.d().state, S::kGranted);
  EXPECT_EQ(dr.d().bytes_total, 6'000u);

  for (std::uint64_t done : {0u, 2'000u, 4'000u}) {
    dr.Advance(seconds(20));
    s = dr.On(GatewayProgress{1, done, 6'000});
    EXPECT_TRUE(s.applied) << s.note;
    EXPECT_EQ(dr.d().state, S::kDownloading);
    EXPECT_EQ(dr.d().bytes_done, done);
    EXPECT_EQ(dr.d().deadline, dr.now() + dr.policy().progress_timeout);
  }
  dr.Advance(seconds(20));
  s = dr.On(GatewayAvailable{1, 6'000});
  EXPECT_EQ(dr.d().state, S::kAvailable);
  EXPECT_EQ(dr.d().bytes_done, 6'000u);
  EXPECT_TRUE(s.actions.empty());
  EXPECT_FALSE(dr.d().last_error);
}

TEST(StateMachineScenarioTest, GatewayRejectsForDiskSpace) {
  Driver dr;
  dr.Advance(seconds(2));
  Step s = dr.On(GatewayRejected{RejectReason::kInsufficientSpace, "needs 10 kB, 2 kB free"});
  EXPECT_EQ(dr.d().state, S::kRejected);
  EXPECT_EQ(dr.d().last_error, (DeliveryError{"insufficient-space", "needs 10 kB, 2 kB free"}));
  EXPECT_TRUE(s.actions.empty());
  // The same reject again (QoS 1) and a late ready change nothing.
  Delivery before = dr.d();
  EXPECT_FALSE(dr.On(GatewayRejected{RejectReason::kInsufficientSpace, "again"}).applied);
  EXPECT_FALSE(dr.On(GatewayReady{{"linux/amd64"}}).applied);
  EXPECT_EQ(dr.d(), before);
}

TEST(StateMachineScenarioTest, SilentGatewayIsReofferedWithBackoffThenGivenUp) {
  Policy p;
  p.max_retries = 3;
  Driver dr(p);
  // offer 1 … timeout, back off 30 s, offer 2 … timeout, 60 s, offer 3 … timeout, 120 s, offer 4
  // … timeout: the fourth failure exceeds three retries.
  std::vector<seconds> expected_backoff = {seconds(30), seconds(60), seconds(120)};
  for (std::size_t i = 0; i < expected_backoff.size(); ++i) {
    TimePoint offered_at = dr.now();
    EXPECT_EQ(dr.d().deadline, offered_at + p.offer_timeout);
    Step s = dr.FireTimer();
    EXPECT_EQ(Kinds(s.actions), std::vector<ActionKind>{K::kScheduleTimer});
    EXPECT_EQ(dr.d().wait, Wait::kRetry);
    EXPECT_EQ(dr.d().retries, i + 1);
    EXPECT_EQ(dr.d().last_error->code, "timeout");
    EXPECT_EQ(*dr.d().deadline - dr.now(), expected_backoff[i]);
    s = dr.FireTimer();
    ASSERT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishOffer, K::kScheduleTimer}));
    EXPECT_EQ(s.actions[0].at, dr.now() + p.offer_timeout);  // the new offer's expiry
    EXPECT_EQ(dr.d().offers, i + 2);
  }
  Step s = dr.FireTimer();
  EXPECT_EQ(dr.d().state, S::kFailed);
  EXPECT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishCancel, K::kGiveUp}));
  EXPECT_NE(s.actions[1].reason.find("gave up after 3 retries"), std::string::npos)
      << s.actions[1].reason;
  EXPECT_EQ(dr.d().last_error->code, "timeout");
  EXPECT_FALSE(NextWakeup(dr.d(), p));
  // The gateway finally answers: too late.
  EXPECT_FALSE(dr.On(GatewayReady{{"linux/amd64"}}).applied);
}

TEST(StateMachineScenarioTest, AHeldOfferIsReofferedForAsLongAsTheOperatorTakes) {
  Policy p;
  p.max_retries = 2;
  Driver dr(p);
  dr.Advance(seconds(3));
  Step s = dr.On(GatewayHeld{});
  ASSERT_TRUE(s.applied) << s.note;
  EXPECT_TRUE(dr.d().held);
  // Far more offer timeouts than max_retries: each is a fresh offer, none a failure.
  for (int i = 0; i < 10; ++i) {
    s = dr.FireTimer();
    ASSERT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishOffer, K::kScheduleTimer}))
        << s.note;
    EXPECT_EQ(dr.d().state, S::kOffered);
    EXPECT_EQ(dr.d().retries, 0u);
    EXPECT_FALSE(dr.d().last_error);
    // The gateway answers each re-offer with held again: a repeat.
    dr.Advance(seconds(1));
    EXPECT_FALSE(dr.On(GatewayHeld{}).applied);
  }
  EXPECT_EQ(dr.d().offers, 11u);
  // The record says so across a restart.
  auto reread = Delivery::FromJson(dr.d().ToJson());
  ASSERT_TRUE(reread) << reread.error().ToString();
  EXPECT_TRUE(reread->held);
  // The operator approves: ready, and the delivery goes on as any other.
  s = dr.On(GatewayReady{{"linux/amd64"}});
  ASSERT_TRUE(s.applied);
  EXPECT_EQ(dr.d().state, S::kReady);
  EXPECT_FALSE(dr.d().held);
}

TEST(StateMachineScenarioTest, BackoffDoublesUpToTheCapAndJitterShortensIt) {
  Policy p;
  EXPECT_EQ(Backoff(1, 0, p), seconds(30));
  EXPECT_EQ(Backoff(2, 0, p), seconds(60));
  EXPECT_EQ(Backoff(6, 0, p), seconds(960));
  EXPECT_EQ(Backoff(7, 0, p), p.backoff_max);
  EXPECT_EQ(Backoff(4'000'000'000u, 0, p), p.backoff_max);
  EXPECT_EQ(Backoff(1, 0.5, p), seconds(23));  // 30 × (1 − 0.5 × 0.5) = 22.5, rounded up
  EXPECT_EQ(Backoff(1, 1, p), seconds(15));
  EXPECT_EQ(Backoff(1, -3, p), seconds(30));  // clamped
  EXPECT_EQ(Backoff(1, 7, p), seconds(15));
  p.backoff_initial = seconds(1);
  p.jitter_ratio = 1;
  EXPECT_EQ(Backoff(1, 1, p), seconds(1));  // never zero

  // The jitter the caller passes is what the machine uses.
  Driver dr;
  dr.FireTimer(0.5);
  EXPECT_EQ(*dr.d().deadline - dr.now(), seconds(23));
}

TEST(StateMachineScenarioTest, UrlsExpiringDuringDownloadAreRegranted) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  // Progress every 4 minutes keeps the download alive past the URLs' refresh point.
  std::uint64_t done = 0;
  while (dr.now() + minutes(4) < dr.d().urls_expire_at.value() - dr.policy().url_refresh_margin) {
    dr.Advance(minutes(4));
    done += 100;
    ASSERT_TRUE(dr.On(GatewayProgress{1, done, 6'000}).applied);
  }
  auto due = DueEvent(dr.d(), dr.now(), dr.policy());
  EXPECT_FALSE(due.has_value());
  Step s = dr.FireTimer();
  EXPECT_EQ(dr.now(), T0() + minutes(55));
  ASSERT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishGrant, K::kScheduleTimer}));
  EXPECT_EQ(s.actions[0].attempt, 2u);
  EXPECT_EQ(dr.d().attempt, 2u);
  EXPECT_EQ(dr.d().state, S::kDownloading);
  EXPECT_EQ(dr.d().retries, 0u);  // not a failure
  EXPECT_EQ(dr.d().urls_expire_at, dr.now() + minutes(60));
  dr.On(GrantPublished{2, dr.now() + minutes(59), 6'000});
  EXPECT_EQ(dr.d().urls_expire_at, dr.now() + minutes(59));
  // The gateway switches to the new grant and carries on from where it was.
  dr.Advance(seconds(30));
  EXPECT_TRUE(dr.On(GatewayProgress{2, done + 100, 6'000}).applied);
  // A late progress report of attempt 1 is stale now.
  EXPECT_FALSE(dr.On(GatewayProgress{1, done + 200, 6'000}).applied);
  EXPECT_TRUE(dr.On(GatewayAvailable{2, 6'000}).applied);
  EXPECT_EQ(dr.d().state, S::kAvailable);
}

TEST(StateMachineScenarioTest, GatewayReportsExpiredUrlsAndGetsANewGrantAtOnce) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.On(GatewayProgress{1, 10, 6'000});
  Step s = dr.On(GatewayFailed{1, {FailureCode::kUrlExpired, "hub said 403: expired"}});
  ASSERT_EQ(Kinds(s.actions), (std::vector<ActionKind>{K::kPublishGrant, K::kScheduleTimer}));
  EXPECT_EQ(s.actions[0].attempt, 2u);
  EXPECT_EQ(dr.d().state, S::kGranted);
  EXPECT_EQ(dr.d().retries, 1u);
  EXPECT_EQ(dr.d().last_error->code, "url-expired");
}

TEST(StateMachineScenarioTest, RetryableFailureBacksOffAndRegrants) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.On(GatewayProgress{1, 3'000, 6'000});
  dr.On(GatewayFailed{1, {FailureCode::kDigestMismatch, "sha256:… had other bytes"}});
  EXPECT_EQ(dr.d().wait, Wait::kRetry);
  // The same failure again (QoS 1) is not counted twice.
  EXPECT_FALSE(dr.On(GatewayFailed{1, {FailureCode::kDigestMismatch, "again"}}).applied);
  EXPECT_EQ(dr.d().retries, 1u);
  Step s = dr.FireTimer();
  EXPECT_EQ(dr.d().state, S::kGranted);
  EXPECT_EQ(s.actions[0].attempt, 2u);
  // The new attempt starts over (the bad blob was discarded): fewer bytes are fine now.
  EXPECT_TRUE(dr.On(GatewayProgress{2, 1'000, 6'000}).applied);
  EXPECT_EQ(dr.d().bytes_done, 1'000u);
  EXPECT_EQ(dr.d().retries, 0u);  // progress resets the count
  // …and a failure report of the old attempt arriving late is ignored.
  EXPECT_FALSE(dr.On(GatewayFailed{1, {FailureCode::kNetwork, "late"}}).applied);
}

TEST(StateMachineScenarioTest, CancelWhileDownloading) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.On(GatewayProgress{1, 3'000, 6'000});
  Step s = dr.On(CancelRequested{"deployment dep-00112233aabbccdd cancelled by alice"});
  EXPECT_EQ(dr.d().state, S::kCancelled);
  ASSERT_EQ(Kinds(s.actions), std::vector<ActionKind>{K::kPublishCancel});
  EXPECT_EQ(s.actions[0].reason, "deployment dep-00112233aabbccdd cancelled by alice");
  EXPECT_EQ(dr.d().bytes_done, 3'000u);  // what was reached stays visible
  // What the gateway was still sending, and a second cancel, change nothing.
  Delivery before = dr.d();
  EXPECT_FALSE(dr.On(GatewayProgress{1, 4'000, 6'000}).applied);
  EXPECT_FALSE(dr.On(GatewayAvailable{1, 6'000}).applied);
  EXPECT_FALSE(dr.On(CancelRequested{"again"}).applied);
  EXPECT_EQ(dr.d(), before);
}

TEST(StateMachineScenarioTest, DuplicateAvailableAfterAvailable) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  EXPECT_TRUE(dr.On(GatewayAvailable{1, 6'000}).applied);
  Delivery before = dr.d();
  dr.Advance(seconds(5));
  Step s = dr.On(GatewayAvailable{1, 6'000});
  EXPECT_FALSE(s.applied);
  EXPECT_NE(s.note.find("available"), std::string::npos) << s.note;
  EXPECT_EQ(dr.d(), before);
}

TEST(StateMachineScenarioTest, OutOfOrderProgressIsIgnored) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.Advance(seconds(10));
  dr.On(GatewayProgress{1, 4'000, 6'000});
  TimePoint deadline = *dr.d().deadline;
  dr.Advance(seconds(10));
  Step s = dr.On(GatewayProgress{1, 2'000, 6'000});  // sent earlier, arrived later
  EXPECT_FALSE(s.applied);
  EXPECT_EQ(dr.d().bytes_done, 4'000u);
  EXPECT_EQ(dr.d().deadline, deadline);  // stale news does not keep a stalled download alive
  EXPECT_FALSE(dr.On(GatewayProgress{1, 4'000, 6'000}).applied);  // a repeat
  EXPECT_FALSE(dr.On(GatewayProgress{1, 7'000, 6'000}).applied);  // beyond its own total
  EXPECT_TRUE(dr.On(GatewayProgress{1, 4'001, 6'000}).applied);
  // A grant confirmation that would put the total below what is done keeps the total.
  EXPECT_TRUE(dr.On(GrantPublished{1, dr.now() + minutes(60), 3'000}).applied);
  EXPECT_EQ(dr.d().bytes_total, 6'000u);
  EXPECT_TRUE(Delivery::FromJson(dr.d().ToJson()));
}

TEST(StateMachineScenarioTest, StalledDownloadTimesOutAndIsRetried) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.On(GatewayProgress{1, 100, 6'000});
  Step s = dr.FireTimer();
  EXPECT_EQ(dr.now(), T0() + dr.policy().progress_timeout);
  EXPECT_TRUE(s.applied);
  EXPECT_EQ(dr.d().wait, Wait::kRetry);
  EXPECT_EQ(dr.d().last_error->message, "the gateway reported no progress for 5m");
  // A timer that fires early, or twice, is stale.
  EXPECT_FALSE(dr.On(WaitTimedOut{}).applied);
  EXPECT_FALSE(dr.On(RetryTimerFired{}).applied);  // the backoff has not ended
  dr.FireTimer();
  EXPECT_EQ(dr.d().state, S::kGranted);
  EXPECT_EQ(dr.d().attempt, 2u);
}

TEST(StateMachineScenarioTest, AvailableBeforeAnyGrantWhenTheGatewayHasIt) {
  Driver dr;
  Step s = dr.On(GatewayAvailable{0, 6'000});
  EXPECT_TRUE(s.applied);
  EXPECT_EQ(dr.d().state, S::kAvailable);
  // But never from an attempt the hub did not grant.
  Driver other;
  EXPECT_FALSE(other.On(GatewayAvailable{3, 6'000}).applied);
}

TEST(StateMachineScenarioTest, RestartMidDownloadResumesFromTheRecord) {
  Driver dr;
  dr.On(GatewayReady{{"linux/amd64", "linux/arm64/v8"}});
  dr.On(GrantPublished{1, dr.now() + minutes(60), 6'000});
  dr.Advance(seconds(30));
  dr.On(GatewayProgress{1, 2'500, 6'000});

  // The hub stores the record and stops; a new hub reads it back.
  std::string stored = dr.d().ToJson().dump();
  auto parsed = ParsePayload(stored);
  ASSERT_TRUE(parsed);
  auto restored = Delivery::FromJson(*parsed);
  ASSERT_TRUE(restored) << restored.error().ToString();
  EXPECT_EQ(*restored, dr.d());

  TimePoint restart = dr.now() + seconds(40);
  auto resume = ResumeActions(*restored, restart, dr.policy());
  ASSERT_EQ(Kinds(resume), std::vector<ActionKind>{K::kScheduleTimer});
  EXPECT_EQ(resume[0].at, NextWakeup(*restored, dr.policy()));

  Driver after(*restored, dr.policy());
  after.Advance(seconds(70));
  EXPECT_TRUE(after.On(GatewayProgress{1, 5'000, 6'000}).applied);
  EXPECT_TRUE(after.On(GatewayAvailable{1, 6'000}).applied);
  EXPECT_EQ(after.d().state, S::kAvailable);
  EXPECT_EQ(after.d().platforms, (std::vector<std::string>{"linux/amd64", "linux/arm64/v8"}));
}

TEST(StateMachineScenarioTest, RestartRepublishesWhatMayHaveBeenLost) {
  Policy p;
  auto f = Fixtures();
  TimePoint now = T0() + minutes(1);
  EXPECT_EQ(Kinds(ResumeActions(f["offered"], now, p)),
            (std::vector<ActionKind>{K::kPublishOffer, K::kScheduleTimer}));
  auto ready = ResumeActions(f["ready"], now, p);
  ASSERT_EQ(Kinds(ready), (std::vector<ActionKind>{K::kPublishGrant, K::kScheduleTimer}));
  EXPECT_EQ(ready[0].attempt, 1u);  // the same attempt: the gateway may already have it
  EXPECT_EQ(Kinds(ResumeActions(f["granted"], now, p)), std::vector<ActionKind>{K::kScheduleTimer});
  EXPECT_EQ(Kinds(ResumeActions(f["offered~retry"], now, p)),
            std::vector<ActionKind>{K::kScheduleTimer});
}

TEST(StateMachineScenarioTest, DueEventSaysWhichTimerIsDue) {
  Policy p;
  auto f = Fixtures();
  const Delivery& d = f["downloading"];
  TimePoint refresh = *d.urls_expire_at - p.url_refresh_margin;
  ASSERT_LT(refresh, *d.deadline);
  EXPECT_EQ(NextWakeup(d, p), refresh);
  EXPECT_FALSE(DueEvent(d, refresh - seconds(1), p));
  auto due = DueEvent(d, refresh, p);
  ASSERT_TRUE(due);
  EXPECT_STREQ(EventName(*due), "urls-expiring");
  // When both are due, the wait's deadline wins: the retry it starts re-grants anyway.
  due = DueEvent(d, *d.deadline, p);
  ASSERT_TRUE(due);
  EXPECT_STREQ(EventName(*due), "wait-timed-out");
  const Delivery& backing_off = f["downloading~retry"];
  EXPECT_EQ(NextWakeup(backing_off, p), backing_off.deadline);
  auto retry = DueEvent(backing_off, *backing_off.deadline, p);
  ASSERT_TRUE(retry);
  EXPECT_STREQ(EventName(*retry), "retry-timer-fired");
}

// ---- the record ----

TEST(DeliveryRecordTest, RoundTripsAndRefusesMalformedFields) {
  auto f = Fixtures();
  for (const auto& [name, d] : f) {
    auto back = Delivery::FromJson(d.ToJson());
    ASSERT_TRUE(back) << name << ": " << back.error().ToString();
    EXPECT_EQ(*back, d) << name;
  }
  nlohmann::json good = f["downloading"].ToJson();
  std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> bad = {
      {"id", [](nlohmann::json& j) { j["id"] = "dlv-nothex!"; }},
      {"deployment", [](nlohmann::json& j) { j.erase("deployment"); }},
      {"gateway", [](nlohmann::json& j) { j["gateway"] = "a/b"; }},
      {"state", [](nlohmann::json& j) { j["state"] = "done"; }},
      {"wait", [](nlohmann::json& j) { j["wait"] = "forever"; }},
      {"wait", [](nlohmann::json& j) { j["state"] = "available"; }},  // a final state waits
      {"deadline", [](nlohmann::json& j) { j.erase("deadline"); }},
      {"deadline", [](nlohmann::json& j) { j["deadline"] = "soon"; }},
      {"attempt", [](nlohmann::json& j) { j["attempt"] = -1; }},
      {"attempt", [](nlohmann::json& j) { j["attempt"] = 4'294'967'296; }},
      {"bytes_done", [](nlohmann::json& j) { j["bytes_done"] = 9'000; }},
      {"platforms", [](nlohmann::json& j) { j["platforms"] = {"linux"}; }},
      {"last_error",
       [](nlohmann::json& j) {
         j["last_error"] = {{"code", "Bad Code"}, {"message", ""}};
       }},
      {"updated_at", [](nlohmann::json& j) { j.erase("updated_at"); }},
      {"held", [](nlohmann::json& j) { j["held"] = "yes"; }},
      {"held", [](nlohmann::json& j) { j["held"] = true; }},  // only an offer can be held
  };
  for (const auto& [field, mutate] : bad) {
    nlohmann::json j = good;
    mutate(j);
    auto r = Delivery::FromJson(j);
    ASSERT_FALSE(r) << field;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("\"" + field + "\""), std::string::npos)
        << r.error().ToString();
  }
}

TEST(DeliveryRecordTest, PolicyCheck) {
  EXPECT_TRUE(Policy{}.Check());
  Policy p;
  p.url_refresh_margin = p.url_ttl;
  EXPECT_EQ(p.Check().error().code(), ErrorCode::kInvalidArgument);
  p = {};
  p.offer_timeout = seconds(0);
  EXPECT_NE(p.Check().error().message().find("offer_timeout"), std::string::npos);
  p = {};
  p.jitter_ratio = 1.5;
  EXPECT_FALSE(p.Check());
  p = {};
  p.max_retries = 0;
  EXPECT_FALSE(p.Check());
  p = {};
  p.backoff_initial = p.backoff_max + seconds(1);
  EXPECT_FALSE(p.Check());
}

}  // namespace
}  // namespace airlock::delivery
