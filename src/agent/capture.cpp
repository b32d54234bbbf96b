#include "agent/capture.hpp"

#include <algorithm>
#include <cstdio>

#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json TensorsJson(const std::vector<runtime::Tensor>& tensors) {
  json out = json::array();
  for (const auto& t : tensors) {
    if (t.dtype == runtime::DataType::kBytes) {
      continue;
    }
    out.push_back({{"name", t.name},
                   {"datatype", std::string(runtime::DataTypeName(t.dtype))},
                   {"shape", t.shape},
                   {"data_b64", Base64Encode(t.data)}});
  }
  return out;
}

}  // namespace

json CaptureJson(const std::string& device, const std::string& model, const std::string& version,
                 std::int64_t at_ms, const std::optional<RawInput>& raw,
                 const std::vector<runtime::Tensor>& inputs,
                 const std::vector<runtime::Tensor>& outputs) {
  json j = {{"schema", kCaptureSchema}, {"device", device},          {"model", model},
            {"version", version},       {"end_ms", at_ms},           {"inputs", TensorsJson(inputs)},
            {"outputs", TensorsJson(outputs)}};
  if (raw) {
    j["raw"] = {{"content_type", raw->content_type}, {"data_b64", Base64Encode(raw->bytes)}};
  }
  return j;
}

CaptureRing::CaptureRing(fs::path dir, std::string device, trust::CapturePolicy policy,
                         Uploader upload, double max_per_second)
    : dir_(std::move(dir)),
      device_(std::move(device)),
      policy_(policy),
      upload_(std::move(upload)),
      max_per_second_(max_per_second),
      tokens_(std::max(1.0, max_per_second)),
      refilled_(std::chrono::steady_clock::now()) {}

Result<std::unique_ptr<CaptureRing>> CaptureRing::Open(fs::path dir, std::string device,
                                                       trust::CapturePolicy policy,
                                                       Uploader upload, double max_per_second) {
  if (!(max_per_second > 0)) {
    return Fail(ErrorCode::kInvalidArgument, "captures per second must be above 0");
  }
  std::unique_ptr<CaptureRing> r(new CaptureRing(std::move(dir), std::move(device), policy,
                                                 std::move(upload), max_per_second));
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(r->dir_));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(r->dir_, ec)) {
    std::string name = e.path().filename().string();
    if (e.path().extension() != ".json" || name.front() == '.') {
      fs::remove(e.path(), ec);  // a write a kill interrupted
      continue;
    }
    auto size = fs::file_size(e.path(), ec);
    r->files_[name] = ec ? 0 : size;
    r->bytes_ += ec ? 0 : size;
  }
  if (ec) {
    return Fail(ErrorCode::kIo, "cannot list " + r->dir_.string() + ": " + ec.message());
  }
  while (r->bytes_ > r->policy_.max_bytes && !r->files_.empty()) {
    auto oldest = r->files_.begin();
    fs::remove(r->dir_ / oldest->first, ec);
    r->bytes_ -= oldest->second;
    r->files_.erase(oldest);
  }
  r->worker_ = std::thread([self = r.get()] { self->Loop(); });
  return r;
}

CaptureRing::~CaptureRing() {
  Drain();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

bool CaptureRing::Sample() {
  if (policy_.rate <= 0) {
    return false;
  }
  // Request n is captured when floor(n · rate) moves on: exactly rate of them, evenly spread.
  std::uint64_t n = offered_.fetch_add(1, std::memory_order_relaxed);
  auto before = static_cast<std::uint64_t>(static_cast<double>(n) * policy_.rate);
  auto after = static_cast<std::uint64_t>(static_cast<double>(n + 1) * policy_.rate);
  if (after == before) {
    return false;
  }
  // Chosen; refused here rather than in Offer, before the request's tensors are copied for it.
  std::lock_guard lock(mu_);
  if (queue_.size() >= kMaxQueued || stopping_) {
    ++dropped_;
    return false;
  }
  auto now = std::chrono::steady_clock::now();
  tokens_ = std::min(std::max(1.0, max_per_second_),
                     tokens_ + std::chrono::duration<double>(now - refilled_).count() *
                                   max_per_second_);
  refilled_ = now;
  if (tokens_ < 1) {
    ++limited_;
    return false;
  }
  tokens_ -= 1;
  return true;
}

void CaptureRing::Offer(const std::string& model, const std::string& version,
                        std::optional<RawInput> raw, std::vector<runtime::Tensor> inputs,
                        std::vector<runtime::Tensor> outputs) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= kMaxQueued || stopping_) {
    ++dropped_;
    return;
  }
  Work w{.model = model,
         .version = version,
         .raw = policy_.inputs ? std::move(raw) : std::nullopt,
         .inputs = policy_.inputs ? std::move(inputs) : std::vector<runtime::Tensor>{},
         .outputs = policy_.outputs ? std::move(outputs) : std::vector<runtime::Tensor>{},
         .at_ms = UnixMillis(std::chrono::system_clock::now())};
  queue_.push_back(std::move(w));
  cv_.notify_all();
}

std::uint64_t CaptureRing::held_bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t CaptureRing::held_files() const {
  std::lock_guard lock(mu_);
  return files_.size();
}

void CaptureRing::Drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void CaptureRing::Loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stopping, and nothing left
    }
    Work w = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    Write(w);
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

void CaptureRing::Write(Work& w) {
  std::string payload =
      CaptureJson(device_, w.model, w.version, w.at_ms, w.raw, w.inputs, w.outputs).dump();
  char name[64];
  std::snprintf(name, sizeof name, "%015lld-%06llu.json", static_cast<long long>(w.at_ms),
                static_cast<unsigned long long>(seq_++ % 1000000));
  if (payload.size() > policy_.max_bytes) {
    ++dropped_;
    return;
  }
  if (auto written = WriteFileAtomic(dir_ / name, payload, 0600); !written) {
    ++dropped_;
    spdlog::warn("capture not kept: {}", written.error().ToString());
    return;
  }
  {
    std::lock_guard lock(mu_);
    files_[name] = payload.size();
    bytes_ += payload.size();
    std::error_code ec;
    while (bytes_ > policy_.max_bytes && files_.size() > 1) {
      auto oldest = files_.begin();
      fs::remove(dir_ / oldest->first, ec);
      bytes_ -= oldest->second;
      files_.erase(oldest);
    }
  }
  ++captured_;
  if (policy_.upload && upload_) {
    upload_(payload, w.at_ms);
  }
}

}  // namespace airlock::agent
