// The agent's TelemetryReporter over a real ModelRepository serving the affine test model (its
// package has a baseline), with requests through agent::Execute and a fake publisher in place of
// the MQTT client: a metrics record per version and interval, removed once acknowledged; sent
// again when no acknowledgement comes, or when publishing failed; the last interval stored when
// the reporter stops; and a full disk that drops and counts records while inference goes on.

#include "agent/telemetry.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <mutex>

#include "agent/agent_fixture.hpp"
#include "monitor/batch.hpp"
#include "support/mosquitto.hpp"
#include "support/small_disk.hpp"
#include "support/tensors.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using airlock::testing::WaitUntil;
using monitor::OutboxRecord;
using monitor::TelemetryBatch;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kDevice[] = "dev-00000000000000aa";

// Stands in for the device client: keeps every batch it is handed; fails while failing is set.
class FakePublisher {
 public:
  TelemetryReporter::Publisher Publisher() {
    return [this](const std::string& text) -> Status {
      std::lock_guard lock(mu_);
      ++attempts_;
      if (failing_) {
        return Fail(ErrorCode::kUnavailable, "not connected");
      }
      auto batch = TelemetryBatch::Parse(text);
      EXPECT_TRUE(batch) << batch.error().ToString();
      if (batch) {
        batches_.push_back(std::move(*batch));
      }
      return {};
    };
  }
  void set_failing(bool failing) {
    std::lock_guard lock(mu_);
    failing_ = failing;
  }
  std::size_t attempts() {
    std::lock_guard lock(mu_);
    return attempts_;
  }
  std::vector<TelemetryBatch> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }
  // The first metrics record published with an id not in `except`, if any.
  std::optional<OutboxRecord> Metrics(const std::set<std::string>& except = {}) {
    for (const auto& b : batches()) {
      for (const auto& r : b.records) {
        if (r.kind == "metrics" && !except.count(r.id)) {
          return r;
        }
      }
    }
    return std::nullopt;
  }
  // How many published batches held the record id.
  std::size_t TimesSent(const std::string& id) {
    std::size_t n = 0;
    for (const auto& b : batches()) {
      for (const auto& r : b.records) {
        n += r.id == id ? 1 : 0;
      }
    }
    return n;
  }

 private:
  std::mutex mu_;
  bool failing_ = false;
  std::size_t attempts_ = 0;
  std::vector<TelemetryBatch> batches_;
};

monitor::IntervalReport ReportOf(const OutboxRecord& r) {
  auto j = nlohmann::json::parse(r.payload, nullptr, false);
  auto report = monitor::IntervalReport::FromJson(j);
  EXPECT_TRUE(report) << r.payload;
  return report ? *report : monitor::IntervalReport{};
}

std::vector<std::string> IdsOf(const TelemetryBatch& b) {
  std::vector<std::string> ids;
  for (const auto& r : b.records) {
    ids.push_back(r.id);
  }
  return ids;
}

class TelemetryReporterTest : public AgentFixture {
 protected:
  void SetUp() override {
    AgentFixture::SetUp();
    Install(affine_dir(), "1.0.0", 1);
    AgentConfig config;
    config.store = store_dir();
    config.telemetry.enabled = true;  // so that each ServedVersion gets its monitor
    repo_ = std::make_unique<ModelRepository>(store_dir(), Ort(), config, HostPlatform());
    ASSERT_TRUE(repo_->Load("affine"));
    auto served = repo_->Find("affine");
    ASSERT_TRUE(served) << served.error().ToString();
    served_ = *served;
    ASSERT_NE(served_->monitor, nullptr);
    fs::create_directories(tmp_ / "state");
  }
  void TearDown() override {
    reporter_.reset();  // before the repository it reads
    served_.reset();
    AgentFixture::TearDown();
  }

  TelemetryOptions Options(const fs::path& outbox) {
    TelemetryOptions o;
    o.outbox = outbox;
    o.device = kDevice;
    o.interval = std::chrono::hours(1);  // only CutNow and the destructor cut
    o.ack_timeout = seconds(10);
    return o;
  }
  void StartReporter(TelemetryOptions options, FakePublisher& publisher) {
    auto r = TelemetryReporter::Start(std::move(options), *repo_, publisher.Publisher());
    ASSERT_TRUE(r) << r.error().ToString();
    reporter_ = std::move(*r);
  }

  // n requests through the version's request path; returns how many were answered.
  int Requests(int n) {
    int answered = 0;
    for (int i = 0; i < n; ++i) {
      auto x =
          airlock::testing::Fp32("x", {1, 4}, {0.5f, 1.5f, 1.2f, 0.2f * static_cast<float>(i % 5)});
      auto out = Execute(*served_, {x}, std::chrono::steady_clock::now());
      answered += out ? 1 : 0;
    }
    return answered;
  }
  // One request the model cannot take (an input of the wrong shape): a failed request.
  void FailedRequest() {
    auto out = Execute(*served_, {airlock::testing::Fp32("x", {1, 3}, {1, 2, 3})},
                       std::chrono::steady_clock::now());
    EXPECT_FALSE(out);
  }

  fs::path outbox_path() const { return tmp_ / "state" / "telemetry.db"; }

  std::shared_ptr<ServedVersion> served_;
  std::unique_ptr<TelemetryReporter> reporter_;
};

TEST_F(TelemetryReporterTest, PublishesAMetricsRecordPerVersionAndForgetsItOnceAcknowledged) {
  FakePublisher publisher;
  StartReporter(Options(outbox_path()), publisher);
  ASSERT_EQ(Requests(12), 12);
  FailedRequest();
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return publisher.Metrics().has_value(); }))
      << "batches: " << publisher.batches().size();

  OutboxRecord record = *publisher.Metrics();
  EXPECT_TRUE(record.id.starts_with(std::string(kDevice) + "/")) << record.id;
  EXPECT_EQ(record.priority, monitor::Priority::kMetrics);
  monitor::IntervalReport report = ReportOf(record);
  EXPECT_EQ(report.device, kDevice);
  EXPECT_EQ(report.model, "affine");
  EXPECT_EQ(report.version, "1.0.0");
  EXPECT_EQ(report.counts.requests, 13u);
  EXPECT_EQ(report.counts.errors, 1u);
  EXPECT_FALSE(report.drift.empty()) << "the package's baseline names feature x";
  EXPECT_TRUE(nlohmann::json::parse(record.payload).contains("outbox"));

  TelemetryBatch batch = publisher.batches().front();
  EXPECT_EQ(batch.source, kDevice);
  EXPECT_EQ(batch.site, "");
  // Alerts (the predictions of 2x+1 lie outside the baseline's) travel ahead of the metrics.
  for (std::size_t i = 1; i < batch.records.size(); ++i) {
    EXPECT_GE(static_cast<int>(batch.records[i - 1].priority),
              static_cast<int>(batch.records[i].priority));
  }
  std::vector<std::string> ids = IdsOf(batch);
  EXPECT_EQ(reporter_->outbox_stats().records, ids.size());

  reporter_->OnAck(monitor::SerializeAck(ids));
  EXPECT_EQ(reporter_->outbox_stats().records, 0u);
  EXPECT_EQ(reporter_->outbox_stats().acked, ids.size());

  // A malformed acknowledgement is ignored; the next interval starts from zero.
  reporter_->OnAck("{not json");
  ASSERT_EQ(Requests(2), 2);
  std::set<std::string> seen(ids.begin(), ids.end());
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return publisher.Metrics(seen).has_value(); }));
  EXPECT_EQ(ReportOf(*publisher.Metrics(seen)).counts.requests, 2u);
}

TEST_F(TelemetryReporterTest, ABatchNeverAcknowledgedIsPublishedAgainAfterTheAckTimeout) {
  FakePublisher publisher;
  TelemetryOptions options = Options(outbox_path());
  options.ack_timeout = milliseconds(200);
  StartReporter(options, publisher);
  ASSERT_EQ(Requests(3), 3);
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return publisher.Metrics().has_value(); }));
  std::string id = publisher.Metrics()->id;
  ASSERT_TRUE(WaitUntil([&] { return publisher.TimesSent(id) >= 2; }, seconds(30)))
      << "sent " << publisher.TimesSent(id) << " time(s)";
  EXPECT_EQ(reporter_->outbox_stats().records, publisher.batches().front().records.size());

  // Acknowledged at last: gone.
  reporter_->OnAck(monitor::SerializeAck(IdsOf(publisher.batches().back())));
  EXPECT_EQ(reporter_->outbox_stats().records, 0u);
}

TEST_F(TelemetryReporterTest, APublisherThatFailsKeepsTheRecordsForLater) {
  FakePublisher publisher;
  publisher.set_failing(true);
  TelemetryOptions options = Options(outbox_path());
  options.ack_timeout = milliseconds(200);
  StartReporter(options, publisher);
  ASSERT_EQ(Requests(3), 3);
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return reporter_->outbox_stats().records >= 1; }));
  std::size_t attempts = publisher.attempts();
  ASSERT_TRUE(WaitUntil([&] { return publisher.attempts() > attempts; }, seconds(30)))
      << "not tried again";
  EXPECT_TRUE(publisher.batches().empty());
  EXPECT_GE(reporter_->outbox_stats().records, 1u);

  publisher.set_failing(false);
  reporter_->Wake();  // as after a reconnect
  ASSERT_TRUE(WaitUntil([&] { return publisher.Metrics().has_value(); }, seconds(30)));
  EXPECT_EQ(ReportOf(*publisher.Metrics()).counts.requests, 3u);
  reporter_->OnAck(monitor::SerializeAck(IdsOf(publisher.batches().front())));
  EXPECT_EQ(reporter_->outbox_stats().records, 0u);
}

TEST_F(TelemetryReporterTest, StoppingStoresTheLastIntervalForTheNextStartToPublish) {
  {
    FakePublisher first;
    first.set_failing(true);  // the gateway is away
    StartReporter(Options(outbox_path()), first);
    ASSERT_EQ(Requests(4), 4);
    reporter_.reset();  // no CutNow: the destructor closes the interval
    EXPECT_TRUE(first.batches().empty());
  }
  FakePublisher second;
  StartReporter(Options(outbox_path()), second);
  ASSERT_TRUE(WaitUntil([&] { return second.Metrics().has_value(); }))
      << "what the last run stored is published at start";
  monitor::IntervalReport report = ReportOf(*second.Metrics());
  EXPECT_EQ(report.counts.requests, 4u);
  EXPECT_EQ(report.version, "1.0.0");
  reporter_->OnAck(monitor::SerializeAck(IdsOf(second.batches().front())));
  EXPECT_EQ(reporter_->outbox_stats().records, 0u);
}

TEST_F(TelemetryReporterTest, AFullDiskDropsAndCountsRecordsWhileInferenceGoesOn) {
  fs::path disk = tmp_ / "disk";
  airlock::testing::SmallDisk small(disk, "2m");
  if (!small.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  FakePublisher publisher;  // never acknowledges: records pile up
  StartReporter(Options(disk / "telemetry.db"), publisher);
  ASSERT_EQ(Requests(3), 3);
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return reporter_->outbox_stats().accepted >= 1; }));

  ASSERT_TRUE(testing::FillDisk(disk / "filler"));
  // Keep serving and cutting intervals until the outbox has had to drop (each cut waits until
  // the outbox counted what it did with the interval).
  auto handled = [&] {
    auto s = reporter_->outbox_stats();
    return s.accepted + s.dropped[0] + s.dropped[1] + s.dropped[2];
  };
  auto dropped = [&] {
    auto s = reporter_->outbox_stats();
    return s.dropped[0] + s.dropped[1] + s.dropped[2];
  };
  bool full = false;
  for (int i = 0; i < 2000 && !full; ++i) {
    ASSERT_EQ(Requests(3), 3) << "inference stops on a full disk";
    auto before = handled();
    reporter_->CutNow();
    ASSERT_TRUE(WaitUntil([&] { return handled() > before; })) << "cut " << i;
    full = reporter_->outbox_stats().disk_full > 0 && dropped() > 0;
  }
  ASSERT_TRUE(full) << "the disk never filled";
  monitor::OutboxStats stats = reporter_->outbox_stats();
  EXPECT_GT(stats.dropped[static_cast<int>(monitor::Priority::kMetrics)] +
                stats.dropped[static_cast<int>(monitor::Priority::kAlert)],
            0u);
  EXPECT_GT(stats.dropped_bytes, 0u);
  // Room again: the next interval is stored, and published once what came before is
  // acknowledged (the oldest go first).
  fs::remove(disk / "filler");
  std::set<std::string> earlier;
  for (const auto& b : publisher.batches()) {
    for (const auto& r : b.records) {
      earlier.insert(r.id);
    }
  }
  std::uint64_t accepted = reporter_->outbox_stats().accepted;
  ASSERT_EQ(Requests(7), 7);
  reporter_->CutNow();
  ASSERT_TRUE(WaitUntil([&] { return reporter_->outbox_stats().accepted > accepted; }));
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto batches = publisher.batches();
        if (!batches.empty()) {
          reporter_->OnAck(monitor::SerializeAck(IdsOf(batches.back())));
        }
        return publisher.Metrics(earlier).has_value();
      },
      seconds(60), milliseconds(50)));
  EXPECT_EQ(ReportOf(*publisher.Metrics(earlier)).counts.requests, 7u);
  reporter_.reset();  // before the disk goes
}

}  // namespace
}  // namespace airlock::agent
