#pragma once
// Sampled capture (docs/monitoring.md, "Captures"): the share of requests the site's policy
// (trust::CapturePolicy, in the gateway's signed directive) lets a device keep, written to a
// bounded ring on its disk, STORE/captures/, and — when the policy says upload — handed on as
// telemetry records of kind "capture" (lowest priority), which the gateway forwards to the hub.
//
// One capture is one JSON file (schema airlock.capture.v1): the model and version, the time, the
// request's input as it arrived when it came through a pipeline (a picture's bytes, base64), and
// its input and output tensors (name, datatype, shape, little-endian bytes in base64), as the
// policy's inputs/outputs say. Files are written whole (temporary file, then rename); when the
// ring holds more than max_bytes the oldest files go first.
//
// The request path only decides (Sample) and queues (Offer); a worker thread writes. The queue is
// bounded: a capture that does not fit is dropped and counted, never a request delayed. And the
// device keeps at most max_per_second captures a second (the agent's
// telemetry.capture_max_per_second, 20 by default): a share of a fast model's requests would
// otherwise be thousands a second, whose writing takes the CPU the requests need and whose files
// fill the ring in minutes. What the cap skips is counted apart (limited).
//
// Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "runtime/tensor.hpp"
#include "trust/directive.hpp"

namespace airlock::agent {

inline constexpr std::string_view kCaptureSchema = "airlock.capture.v1";

// The raw input of a pipeline request, when there was one.
struct RawInput {
  std::string bytes;
  std::string content_type;
};

class CaptureRing {
 public:
  static constexpr std::size_t kMaxQueued = 16;
  static constexpr double kDefaultMaxPerSecond = 20;
  // A capture to upload (its JSON and time); called on the worker thread.
  using Uploader = std::function<void(const std::string& payload, std::int64_t at_ms)>;

  // Opens (creating) dir, counts what it holds and trims it to the policy's max_bytes.
  [[nodiscard]] static Result<std::unique_ptr<CaptureRing>> Open(std::filesystem::path dir,
                                                                 std::string device,
                                                                 trust::CapturePolicy policy,
                                                                 Uploader upload,
                                                                 double max_per_second = kDefaultMaxPerSecond);
  ~CaptureRing();  // writes what is queued, then stops
  CaptureRing(const CaptureRing&) = delete;
  CaptureRing& operator=(const CaptureRing&) = delete;

  // Whether the next request is to be captured: one in 1/rate, spread evenly, unless the queue is
  // full (dropped) or this second's captures are used up (limited).
  bool Sample();
  // Queues one capture; never blocks.
  void Offer(const std::string& model, const std::string& version, std::optional<RawInput> raw,
             std::vector<runtime::Tensor> inputs, std::vector<runtime::Tensor> outputs);

  const trust::CapturePolicy& policy() const { return policy_; }
  double max_per_second() const { return max_per_second_; }
  std::uint64_t captured() const { return captured_.load(); }  // written to the ring
  std::uint64_t dropped() const { return dropped_.load(); }    // queue full, or a write failed
  std::uint64_t limited() const { return limited_.load(); }    // over max_per_second
  std::uint64_t held_bytes() const;
  std::size_t held_files() const;
  // Blocks until nothing is queued or being written (tests).
  void Drain();

 private:
  struct Work {
    std::string model, version;
    std::optional<RawInput> raw;
    std::vector<runtime::Tensor> inputs, outputs;
    std::int64_t at_ms = 0;
  };
  CaptureRing(std::filesystem::path dir, std::string device, trust::CapturePolicy policy,
              Uploader upload, double max_per_second);
  void Loop();
  void Write(Work& w);

  const std::filesystem::path dir_;
  const std::string device_;
  const trust::CapturePolicy policy_;
  const Uploader upload_;
  std::atomic<std::uint64_t> offered_{0};
  std::atomic<std::uint64_t> captured_{0}, dropped_{0}, limited_{0};
  const double max_per_second_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  std::map<std::string, std::uint64_t> files_;  // name (sorts by time) → size
  std::uint64_t bytes_ = 0;
  std::uint64_t seq_ = 0;
  double tokens_;  // captures allowed now: refills at max_per_second_, up to that many
  std::chrono::steady_clock::time_point refilled_;
  std::thread worker_;
};

// The JSON of one capture (see above); tensors of type BYTES are left out.
nlohmann::json CaptureJson(const std::string& device, const std::string& model,
                           const std::string& version, std::int64_t at_ms,
                           const std::optional<RawInput>& raw,
                           const std::vector<runtime::Tensor>& inputs,
                           const std::vector<runtime::Tensor>& outputs);

}  // namespace airlock::agent
