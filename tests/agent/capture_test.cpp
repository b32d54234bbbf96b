#include "agent/capture.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <mutex>

#include "support/test_support.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

runtime::Tensor Floats(std::string name, std::size_t n) {
  runtime::Tensor t;
  t.name = std::move(name);
  t.shape = {static_cast<std::int64_t>(n)};
  std::vector<float> v(n, 0.5f);
  t.data.resize(n * sizeof(float));
  std::memcpy(t.data.data(), v.data(), t.data.size());
  return t;
}

trust::CapturePolicy Policy(double rate, std::uint64_t max_bytes, bool upload = false) {
  return trust::CapturePolicy{.rate = rate, .max_bytes = max_bytes, .inputs = true,
                              .outputs = true, .upload = upload};
}

TEST(CaptureRing, SamplesExactlyTheRateEvenlySpread) {
  testing::TempDir dir;
  auto ring = CaptureRing::Open(dir / "c", "dev-1", Policy(0.25, 1 << 20), {}).value();
  std::vector<int> taken;
  for (int i = 0; i < 12; ++i) {
    if (ring->Sample()) {
      taken.push_back(i);
    }
  }
  EXPECT_EQ(taken, (std::vector<int>{3, 7, 11}));
  auto none = CaptureRing::Open(dir / "d", "dev-1", Policy(0, 1 << 20), {}).value();
  EXPECT_FALSE(none->Sample());
}

TEST(CaptureRing, KeepsAtMostMaxPerSecondAndCountsWhatItSkips) {
  testing::TempDir dir;
  // Every request chosen, at most 5 a second: a burst of 1000 requests gets 5.
  auto ring = CaptureRing::Open(dir / "c", "dev-1", Policy(1, 1 << 20), {}, 5).value();
  int taken = 0;
  for (int i = 0; i < 1000; ++i) {
    taken += ring->Sample() ? 1 : 0;
  }
  // 5, and one more if the loop took over 200 ms.
  EXPECT_GE(taken, 5);
  EXPECT_LE(taken, 6);
  EXPECT_EQ(ring->limited(), 1000u - static_cast<std::uint64_t>(taken));
  EXPECT_EQ(ring->dropped(), 0u);
  EXPECT_FALSE(CaptureRing::Open(dir / "d", "dev-1", Policy(1, 1 << 20), {}, 0));
}

TEST(CaptureRing, RefusesBeforeTheCopyWhenItsQueueIsFull) {
  testing::TempDir dir;
  auto ring = CaptureRing::Open(dir / "c", "dev-1", Policy(1, 1 << 20), {}, 1e6).value();
  // The worker writes slower than this loop offers: once the queue is full, Sample says no and
  // counts a drop, so the request copies nothing for a capture that would not be kept.
  std::uint64_t offered = 0;
  for (int i = 0; i < 2000 && ring->dropped() == 0; ++i) {
    if (ring->Sample()) {
      ++offered;
      ring->Offer("m", "1", std::nullopt, {Floats("x", 20000)}, {});
    }
  }
  EXPECT_GT(ring->dropped(), 0u);
  ring->Drain();
  EXPECT_EQ(ring->captured(), offered);  // every capture Sample let through was kept
  EXPECT_EQ(ring->limited(), 0u);
}

TEST(CaptureRing, KeepsTheNewestWithinItsBoundAndUploadsWhatThePolicySays) {
  testing::TempDir dir;
  std::mutex mu;
  std::vector<json> uploaded;
  auto upload = [&](const std::string& payload, std::int64_t) {
    std::lock_guard lock(mu);
    uploaded.push_back(json::parse(payload));
  };
  // About 5.5 KB a capture (1000 floats in base64, twice): 1 MiB holds all ten.
  auto ring = CaptureRing::Open(dir / "c", "dev-1", Policy(1, 1 << 20, true), upload).value();
  for (int i = 0; i < 10; ++i) {
    ring->Offer("m", "1.0.0", RawInput{"\x89PNG....", "image/png"}, {Floats("x", 1000)},
                {Floats("y", 1000)});
    ring->Drain();
  }
  EXPECT_EQ(ring->captured(), 10u);
  EXPECT_EQ(ring->held_files(), 10u);
  ASSERT_EQ(uploaded.size(), 10u);
  const json& c = uploaded[0];
  EXPECT_EQ(c["schema"], "airlock.capture.v1");
  EXPECT_EQ(c["device"], "dev-1");
  EXPECT_EQ(c["model"], "m");
  EXPECT_EQ(c["raw"]["content_type"], "image/png");
  EXPECT_EQ(c["inputs"][0]["shape"], json({1000}));
  EXPECT_EQ(c["outputs"][0]["name"], "y");
  std::uint64_t one = ring->held_bytes() / 10;
  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(dir / "c")) {
    all.push_back(e.path().filename().string());
  }
  std::sort(all.begin(), all.end());  // the names sort by time
  ring.reset();

  // Reopened with room for three: the oldest go, the newest stay.
  auto small = CaptureRing::Open(dir / "c", "dev-1", Policy(1, 3 * one + one / 2), {}).value();
  EXPECT_EQ(small->held_files(), 3u);
  EXPECT_LE(small->held_bytes(), 3 * one + one / 2);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "c")) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, std::vector<std::string>(all.end() - 3, all.end()));
  small.reset();
  // Nothing uploaded without upload, and outputs left out when the policy says so.
  trust::CapturePolicy inputs_only = Policy(1, 1 << 20);
  inputs_only.outputs = false;
  auto quiet = CaptureRing::Open(dir / "q", "dev-1", inputs_only, upload).value();
  quiet->Offer("m", "1.0.0", std::nullopt, {Floats("x", 4)}, {Floats("y", 4)});
  quiet->Drain();
  EXPECT_EQ(uploaded.size(), 10u);
  auto kept = json::parse(
      testing::ReadAll(fs::directory_iterator(dir / "q")->path()));
  EXPECT_TRUE(kept["outputs"].empty());
  EXPECT_FALSE(kept.contains("raw"));
  EXPECT_EQ(kept["inputs"].size(), 1u);
}

TEST(CaptureRing, AWriteAKillInterruptedIsRemovedOnOpen) {
  testing::TempDir dir;
  fs::create_directories(dir / "c");
  testing::WriteAll(dir / "c" / ".000000000000001-000000.json.tmp", "{");
  auto ring = CaptureRing::Open(dir / "c", "dev-1", Policy(1, 1 << 20), {}).value();
  EXPECT_EQ(ring->held_files(), 0u);
  EXPECT_TRUE(fs::is_empty(dir / "c"));
}

}  // namespace
}  // namespace airlock::agent
