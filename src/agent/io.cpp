#include "agent/io.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "core/fs.hpp"
#include "core/log.hpp"
#include "net/mqtt.hpp"
#include "net/webhook.hpp"

namespace airlock::agent {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// ---- Config reading: every mistake names the field and the object it is in.

Error ConfigError(const std::string& where, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, where + ": " + what);
}

Status CheckKeys(const json& config, const std::string& where,
                 std::initializer_list<const char*> allowed) {
  for (const auto& item : config.items()) {
    const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture one
    if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) ==
        allowed.end()) {
      return Fail(ConfigError(where, "unknown field '" + key + "'"));
    }
  }
  return {};
}

Result<std::string> RequiredString(const json& config, const std::string& where, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_string() || it->get<std::string>().empty()) {
    return Fail(ConfigError(where, std::string("'") + key + "' must be a non-empty string"));
  }
  return it->get<std::string>();
}

Result<std::string> OptionalString(const json& config, const std::string& where, const char* key,
                                   std::string fallback) {
  auto it = config.find(key);
  if (it == config.end()) {
    return fallback;
  }
  if (!it->is_string()) {
    return Fail(ConfigError(where, std::string("'") + key + "' must be a string"));
  }
  return it->get<std::string>();
}

Result<std::int64_t> OptionalInt(const json& config, const std::string& where, const char* key,
                                 std::int64_t fallback, std::int64_t min, std::int64_t max) {
  auto it = config.find(key);
  if (it == config.end()) {
    return fallback;
  }
  if (!it->is_number_integer() || it->get<std::int64_t>() < min || it->get<std::int64_t>() > max) {
    return Fail(ConfigError(where, std::string("'") + key + "' must be an integer from " +
                                       std::to_string(min) + " to " + std::to_string(max)));
  }
  return it->get<std::int64_t>();
}

Result<bool> OptionalBool(const json& config, const std::string& where, const char* key,
                          bool fallback) {
  auto it = config.find(key);
  if (it == config.end()) {
    return fallback;
  }
  if (!it->is_boolean()) {
    return Fail(ConfigError(where, std::string("'") + key + "' must be true or false"));
  }
  return it->get<bool>();
}

// A duration: "500ms", "5s", "2m", "1h30m" (core ParseDuration), or a number of seconds.
Result<std::chrono::milliseconds> OptionalDuration(const json& config, const std::string& where,
                                                   const char* key,
                                                   std::chrono::milliseconds fallback) {
  auto it = config.find(key);
  if (it == config.end()) {
    return fallback;
  }
  auto bad = [&] {
    return Fail(ConfigError(
        where, std::string("'") + key + "' must be a positive duration like \"500ms\" or \"5s\""));
  };
  std::chrono::milliseconds value{0};
  if (it->is_number()) {
    double seconds = it->get<double>();
    if (!std::isfinite(seconds) || seconds > 1e9) {
      return bad();
    }
    value = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
  } else if (it->is_string()) {
    std::string text = it->get<std::string>();
    if (text.size() > 2 && text.ends_with("ms")) {
      std::int64_t ms = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 2, ms);
      if (ec != std::errc() || end != text.data() + text.size() - 2) {
        return bad();
      }
      value = std::chrono::milliseconds(ms);
    } else {
      auto d = ParseDuration(text);
      if (!d) {
        return bad();
      }
      value = *d;
    }
  } else {
    return bad();
  }
  if (value.count() <= 0) {
    return bad();
  }
  return value;
}

std::string Where(const json& config, const char* kind) {
  std::string type = config.is_object() && config.contains("type") && config["type"].is_string()
                         ? config["type"].get<std::string>()
                         : "?";
  return std::string(kind) + " '" + type + "'";
}

// ---- Sinks

class MqttSink final : public Sink {
 public:
  static constexpr std::chrono::seconds kConnectGrace{10};

  MqttSink(net::MqttClient* client, std::string topic, int qos, bool retain)
      : client_(client), topic_(std::move(topic)), qos_(qos), retain_(retain) {}

  Status Deliver(const json& result) override {
    std::string payload = result.dump(-1, ' ', false, json::error_handler_t::replace);
    // At start-up and across a short reconnect the result waits for the broker a little rather
    // than failing at once; past that it is a failed delivery (the durable outbox is issue 7's).
    if (!client_->IsConnected()) {
      client_->WaitConnected(kConnectGrace);
    }
    return client_->Publish(topic_, payload,
                            {.qos = qos_, .retained = retain_, .content_type = "application/json"});
  }
  std::string Describe() const override { return "mqtt:" + topic_; }

 private:
  net::MqttClient* client_;
  std::string topic_;
  int qos_;
  bool retain_;
};

class WebhookSink final : public Sink {
 public:
  explicit WebhookSink(std::unique_ptr<net::WebhookClient> client) : client_(std::move(client)) {}
  Status Deliver(const json& result) override {
    return client_->Post(result.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  std::string Describe() const override { return "webhook:" + client_->options().url; }

 private:
  std::unique_ptr<net::WebhookClient> client_;
};

// Appends one line per result. Each line goes out in a single write(2) on an O_APPEND
// descriptor, so a crash of the agent never leaves half a line (after a power cut without
// fsync the file may lose its tail, but what is there is whole lines, unless the filesystem
// itself tears the last block). A short write (disk full) is cut back off. One writer per file.
class JsonlSink final : public Sink {
 public:
  enum class WhenFull { kRotate, kRefuse };

  JsonlSink(fs::path path, std::uint64_t max_bytes, WhenFull when_full, int keep, bool sync)
      : path_(std::move(path)),
        max_bytes_(max_bytes),
        when_full_(when_full),
        keep_(keep),
        fsync_(sync) {}

  Status Deliver(const json& result) override {
    std::string line = result.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::lock_guard lk(mu_);
    if (max_bytes_ != 0 && line.size() > max_bytes_) {
      return Fail(ErrorCode::kInvalidArgument,
                  "result of " + std::to_string(line.size()) + " bytes is larger than max_bytes " +
                      std::to_string(max_bytes_) + " of " + path_.string());
    }
    AIRLOCK_RETURN_IF_ERROR(EnsureOpen());
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) {
      return Fail(ErrnoError("fstat", path_));
    }
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (max_bytes_ != 0 && size + line.size() > max_bytes_) {
      if (when_full_ == WhenFull::kRefuse) {
        return Fail(ErrorCode::kIo,
                    path_.string() + " is full (max_bytes " + std::to_string(max_bytes_) + ")");
      }
      AIRLOCK_RETURN_IF_ERROR(Rotate());
      size = 0;
    }
    ssize_t n = ::write(fd_.get(), line.data(), line.size());
    if (n != static_cast<ssize_t>(line.size())) {
      Error e = n < 0 ? ErrnoError("write", path_)
                      : Error(ErrorCode::kIo, "short write to " + path_.string());
      if (n > 0 && ::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
        spdlog::error("jsonl {}: cannot cut a partial line: {}", path_.string(),
                      std::strerror(errno));
      }
      return Fail(std::move(e));
    }
    if (fsync_ && ::fdatasync(fd_.get()) != 0) {
      return Fail(ErrnoError("fdatasync", path_));
    }
    return {};
  }

  std::string Describe() const override { return "jsonl:" + path_.string(); }

 private:
  Status EnsureOpen() {
    if (fd_.get() >= 0) {
      return {};
    }
    AIRLOCK_RETURN_IF_ERROR(
        MakeDirectories(path_.parent_path().empty() ? fs::path(".") : path_.parent_path()));
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return Fail(ErrnoError("open", path_));
    }
    fd_ = UniqueFd(fd);
    return {};
  }

  // results.jsonl → results.jsonl.1 → … → results.jsonl.KEEP (the oldest is dropped).
  Status Rotate() {
    auto numbered = [this](int i) { return fs::path(path_.string() + "." + std::to_string(i)); };
    for (int i = keep_; i >= 1; --i) {
      fs::path from = i == 1 ? path_ : numbered(i - 1);
      if (::rename(from.c_str(), numbered(i).c_str()) != 0 && errno != ENOENT) {
        return Fail(ErrnoError("rename", from));
      }
    }
    if (keep_ == 0 && ::unlink(path_.c_str()) != 0 && errno != ENOENT) {
      return Fail(ErrnoError("unlink", path_));
    }
    fd_ = UniqueFd();
    return EnsureOpen();
  }

  const fs::path path_;
  const std::uint64_t max_bytes_;
  const WhenFull when_full_;
  const int keep_;
  const bool fsync_;
  std::mutex mu_;
  UniqueFd fd_;
};

// ---- Sources

// Watches a directory: inotify (IN_CLOSE_WRITE, IN_MOVED_TO) says when a file is complete; a
// rescan every `rescan` (and at start) picks up what inotify missed — files there before the
// agent started, queue overflows — taking a file only once its mtime is `settle` old, so a file
// still being written is left alone. Processed files move to DIR/processed/ (or are deleted),
// failed ones to DIR/failed/ with NAME.error.txt beside them, so nothing is taken twice.
class FolderSource final : public Source {
 public:
  enum class Done { kMove, kDelete };

  FolderSource(fs::path dir, std::string pattern, Done done, std::chrono::milliseconds settle,
               std::chrono::milliseconds rescan, std::uint64_t max_bytes)
      : dir_(std::move(dir)),
        pattern_(std::move(pattern)),
        done_(done),
        settle_(settle),
        rescan_(rescan),
        max_bytes_(max_bytes) {}

  ~FolderSource() override { Stop(); }

  Status Start(Processor processor) override {
    processor_ = std::move(processor);
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir_));
    if (done_ == Done::kMove) {
      AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir_ / "processed"));
    }
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir_ / "failed"));
    int ifd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0) {
      return Fail(ErrnoError("inotify_init1", dir_));
    }
    inotify_ = UniqueFd(ifd);
    if (::inotify_add_watch(inotify_.get(), dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
      return Fail(ErrnoError("inotify_add_watch", dir_));
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      return Fail(ErrnoError("pipe", dir_));
    }
    wake_read_ = UniqueFd(pipe_fds[0]);
    wake_write_ = UniqueFd(pipe_fds[1]);
    thread_ = std::thread([this] { Run(); });
    return {};
  }

  void Stop() override {
    if (!thread_.joinable()) {
      return;
    }
    stop_ = true;
    [[maybe_unused]] auto n = ::write(wake_write_.get(), "x", 1);
    thread_.join();
  }

  std::string Describe() const override { return "folder:" + dir_.string(); }

 private:
  bool Wanted(const std::string& name) const {
    return !name.empty() && name.front() != '.' &&
           ::fnmatch(pattern_.c_str(), name.c_str(), FNM_PERIOD) == 0;
  }

  void Run() {
    auto next_scan = std::chrono::steady_clock::now();
    char buf[sizeof(inotify_event) * 64 + 4096]
        __attribute__((aligned(__alignof__(inotify_event))));
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      if (now >= next_scan) {
        auto wait = Scan();
        next_scan = std::chrono::steady_clock::now() + std::min(rescan_, wait);
        continue;
      }
      auto timeout = std::chrono::ceil<std::chrono::milliseconds>(next_scan - now).count();
      pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
      if (::poll(fds, 2, static_cast<int>(std::min<long long>(timeout, 60000))) <= 0) {
        continue;
      }
      if (!(fds[0].revents & POLLIN)) {
        continue;
      }
      ssize_t len;
      std::vector<std::string> ready;
      while ((len = ::read(inotify_.get(), buf, sizeof(buf))) > 0) {
        for (char* p = buf; p < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          if (ev->mask & IN_Q_OVERFLOW) {
            next_scan = std::chrono::steady_clock::now();
          } else if (ev->len > 0 && !(ev->mask & IN_ISDIR)) {
            ready.emplace_back(ev->name);
          }
          p += sizeof(inotify_event) + ev->len;
        }
      }
      for (const auto& name : ready) {
        if (stop_) {
          break;
        }
        if (Wanted(name)) {
          Take(name);
        }
      }
    }
  }

  // Takes every settled file; returns how soon a file that is not settled yet will be.
  std::chrono::milliseconds Scan() {
    std::chrono::milliseconds soonest = rescan_;
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) {
      spdlog::warn("folder source {}: cannot list: {}", dir_.string(), ec.message());
      return soonest;
    }
    std::sort(names.begin(), names.end());
    auto now = std::chrono::system_clock::now();
    for (const auto& name : names) {
      if (stop_) {
        break;
      }
      if (!Wanted(name)) {
        continue;
      }
      struct stat st {};
      if (::lstat((dir_ / name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      auto mtime = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::seconds(st.st_mtim.tv_sec) +
              std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
      auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - mtime);
      if (age < settle_) {
        soonest = std::min(soonest, settle_ - age + 10ms);
        continue;
      }
      Take(name);
    }
    return soonest;
  }

  void Take(const std::string& name) {
    fs::path path = dir_ / name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return;  // gone already (taken by the scan, or removed), or not a plain file
    }
    // A file we could not move away is not run again until it changes.
    auto stuck = stuck_.find(name);
    if (stuck != stuck_.end() && stuck->second == st.st_mtim.tv_sec + st.st_size) {
      return;
    }
    Status status;
    auto bytes = ReadFile(path, max_bytes_);
    if (!bytes) {
      if (bytes.error().code() == ErrorCode::kNotFound) {
        return;
      }
      status = Fail(std::move(bytes).error());
    } else {
      SourceInput input{std::move(*bytes), ContentTypeForName(name), name};
      status = processor_(input);
    }
    Status moved;
    if (status) {
      if (done_ == Done::kDelete) {
        moved = ::unlink(path.c_str()) == 0 ? Status{} : Fail(ErrnoError("unlink", path));
      } else {
        moved = MoveInto(path, dir_ / "processed", nullptr);
      }
    } else {
      moved = MoveInto(path, dir_ / "failed", &status.error());
    }
    if (!moved) {
      spdlog::error("folder source {}: {} (the file stays and is skipped until it changes)",
                    dir_.string(), moved.error().ToString());
      stuck_[name] = st.st_mtim.tv_sec + st.st_size;
    } else {
      stuck_.erase(name);
    }
  }

  // Renames path into dir under its own name (NAME.1.EXT, … if taken), after writing
  // NAME.error.txt there when error is given.
  Status MoveInto(const fs::path& path, const fs::path& dir, const Error* error) {
    AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
    std::string stem = path.stem().string();
    std::string ext = path.extension().string();
    fs::path target = dir / path.filename();
    auto exists = [](const fs::path& p) {
      std::error_code ec;
      return fs::symlink_status(p, ec).type() != fs::file_type::not_found;
    };
    for (int i = 1; exists(target) || (error && exists(target.string() + ".error.txt")); ++i) {
      target = dir / (stem + "." + std::to_string(i) + ext);
    }
    if (error != nullptr) {
      AIRLOCK_RETURN_IF_ERROR(
          WriteFileAtomic(target.string() + ".error.txt", error->ToString() + "\n"));
    }
    if (::rename(path.c_str(), target.c_str()) != 0) {
      return Fail(ErrnoError("rename", path));
    }
    // Durable before the next file: after a power cut the input is in one place, not both.
    AIRLOCK_RETURN_IF_ERROR(SyncDirectory(dir));
    return SyncDirectory(dir_);
  }

  const fs::path dir_;
  const std::string pattern_;
  const Done done_;
  const std::chrono::milliseconds settle_;
  const std::chrono::milliseconds rescan_;
  const std::uint64_t max_bytes_;
  Processor processor_;
  UniqueFd inotify_, wake_read_, wake_write_;
  std::atomic<bool> stop_{false};
  std::map<std::string, std::int64_t> stuck_;  // name → mtime + size when it got stuck
  std::thread thread_;
};

// Subscribes to a topic filter on the agent's MQTT client; each message is one input. Messages
// go through a bounded queue to a worker thread of the source's own, because MQTT handlers must
// not block (net/mqtt.hpp); when the queue is full the newest message is dropped and counted.
class MqttSource final : public Source {
 public:
  MqttSource(net::MqttClient* client, std::string filter, int qos, std::size_t max_queue)
      : client_(client), filter_(std::move(filter)), qos_(qos), max_queue_(max_queue) {}

  ~MqttSource() override { Stop(); }

  Status Start(Processor processor) override {
    processor_ = std::move(processor);
    worker_ = std::thread([this] { Run(); });
    auto st = client_->Subscribe(filter_, qos_, [this](const net::MqttMessage& m) {
      std::lock_guard lk(mu_);
      if (queue_.size() >= max_queue_) {
        dropped_++;
        return;
      }
      queue_.push_back({m.payload, m.content_type, m.topic});
      cv_.notify_one();
    });
    if (!st) {
      Stop();
      return st;
    }
    subscribed_ = true;
    return {};
  }

  void Stop() override {
    if (subscribed_) {
      if (auto st = client_->Unsubscribe(filter_); !st) {
        spdlog::debug("mqtt source {}: {}", filter_, st.error().ToString());
      }
      subscribed_ = false;
    }
    if (worker_.joinable()) {
      {
        std::lock_guard lk(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      worker_.join();
    }
  }

  std::string Describe() const override { return "mqtt:" + filter_; }
  std::uint64_t dropped() const override { return dropped_.load(); }

 private:
  void Run() {
    while (true) {
      SourceInput input;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
        if (stop_) {
          return;  // what is still queued was at-most-once anyway (it arrived, QoS acked)
        }
        input = std::move(queue_.front());
        queue_.pop_front();
      }
      (void)processor_(input);  // the Route counted and logged a failure
    }
  }

  net::MqttClient* client_;
  const std::string filter_;
  const int qos_;
  const std::size_t max_queue_;
  Processor processor_;
  bool subscribed_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SourceInput> queue_;
  bool stop_ = false;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread worker_;
};

std::string RandomId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = rng();
    for (int i = 0; i < 16; ++i) {
      id.push_back(kHex[(v >> (4 * i)) & 0xf]);
    }
  }
  return id;
}

}  // namespace

std::string ContentTypeForName(const std::string& name) {
  std::string ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::map<std::string, std::string> kTypes = {
      {".jpg", "image/jpeg"},        {".jpeg", "image/jpeg"},
      {".png", "image/png"},         {".json", "application/json"},
      {".npy", "application/x-npy"}, {".txt", "text/plain"},
      {".csv", "text/csv"},          {".bin", "application/octet-stream"},
  };
  auto it = kTypes.find(ext);
  return it == kTypes.end() ? "" : it->second;
}

Result<std::unique_ptr<Sink>> MakeSink(const json& config, const IoContext& context) {
  std::string where = Where(config, "sink");
  if (!config.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "a sink must be an object with a \"type\"");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string type, RequiredString(config, where, "type"));
  if (type == "mqtt") {
    AIRLOCK_RETURN_IF_ERROR(CheckKeys(config, where, {"type", "topic", "qos", "retain"}));
    AIRLOCK_ASSIGN_OR_RETURN(std::string topic, RequiredString(config, where, "topic"));
    if (topic.find_first_of("+#") != std::string::npos) {
      return Fail(ConfigError(where, "'topic' must not contain wildcards"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto qos, OptionalInt(config, where, "qos", 1, 0, 1));
    AIRLOCK_ASSIGN_OR_RETURN(bool retain, OptionalBool(config, where, "retain", false));
    if (context.mqtt == nullptr) {
      return Fail(ConfigError(where, "no MQTT broker is configured for the agent"));
    }
    return std::unique_ptr<Sink>(
        new MqttSink(context.mqtt, std::move(topic), static_cast<int>(qos), retain));
  }
  if (type == "webhook") {
    AIRLOCK_RETURN_IF_ERROR(
        CheckKeys(config, where, {"type", "url", "timeout", "attempts", "headers"}));
    net::WebhookOptions options;
    AIRLOCK_ASSIGN_OR_RETURN(options.url, RequiredString(config, where, "url"));
    AIRLOCK_ASSIGN_OR_RETURN(options.timeout, OptionalDuration(config, where, "timeout", 5s));
    AIRLOCK_ASSIGN_OR_RETURN(auto attempts, OptionalInt(config, where, "attempts", 3, 1, 10));
    options.attempts = static_cast<int>(attempts);
    if (auto h = config.find("headers"); h != config.end()) {
      if (!h->is_object()) {
        return Fail(ConfigError(where, "'headers' must be an object of strings"));
      }
      for (const auto& [name, value] : h->items()) {
        if (!value.is_string()) {
          return Fail(ConfigError(where, "header '" + name + "' must be a string"));
        }
        options.headers.emplace_back(name, value.get<std::string>());
      }
    }
    auto client = net::WebhookClient::Create(std::move(options));
    if (!client) {
      return Fail(ConfigError(where, client.error().message()));
    }
    return std::unique_ptr<Sink>(new WebhookSink(std::move(*client)));
  }
  if (type == "jsonl") {
    AIRLOCK_RETURN_IF_ERROR(
        CheckKeys(config, where, {"type", "path", "max_bytes", "when_full", "keep", "fsync"}));
    AIRLOCK_ASSIGN_OR_RETURN(std::string path, RequiredString(config, where, "path"));
    AIRLOCK_ASSIGN_OR_RETURN(auto max_bytes,
                             OptionalInt(config, where, "max_bytes", 0, 0, INT64_MAX));
    AIRLOCK_ASSIGN_OR_RETURN(std::string when_full,
                             OptionalString(config, where, "when_full", "rotate"));
    if (when_full != "rotate" && when_full != "refuse") {
      return Fail(ConfigError(where, "'when_full' must be \"rotate\" or \"refuse\""));
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto keep, OptionalInt(config, where, "keep", 1, 0, 100));
    AIRLOCK_ASSIGN_OR_RETURN(bool sync, OptionalBool(config, where, "fsync", false));
    return std::unique_ptr<Sink>(new JsonlSink(
        path, static_cast<std::uint64_t>(max_bytes),
        when_full == "rotate" ? JsonlSink::WhenFull::kRotate : JsonlSink::WhenFull::kRefuse,
        static_cast<int>(keep), sync));
  }
  return Fail(ConfigError(where, "unknown sink type (mqtt, webhook, jsonl)"));
}

Result<std::unique_ptr<Source>> MakeSource(const json& config, const IoContext& context) {
  std::string where = Where(config, "source");
  if (!config.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "a source must be an object with a \"type\"");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string type, RequiredString(config, where, "type"));
  if (type == "folder") {
    AIRLOCK_RETURN_IF_ERROR(CheckKeys(
        config, where, {"type", "path", "pattern", "done", "settle", "rescan", "max_bytes"}));
    AIRLOCK_ASSIGN_OR_RETURN(std::string path, RequiredString(config, where, "path"));
    AIRLOCK_ASSIGN_OR_RETURN(std::string pattern, OptionalString(config, where, "pattern", "*"));
    AIRLOCK_ASSIGN_OR_RETURN(std::string done, OptionalString(config, where, "done", "processed"));
    if (done != "processed" && done != "delete") {
      return Fail(ConfigError(where, "'done' must be \"processed\" or \"delete\""));
    }
    AIRLOCK_ASSIGN_OR_RETURN(auto settle, OptionalDuration(config, where, "settle", 2s));
    AIRLOCK_ASSIGN_OR_RETURN(auto rescan, OptionalDuration(config, where, "rescan", 5s));
    AIRLOCK_ASSIGN_OR_RETURN(auto max_bytes,
                             OptionalInt(config, where, "max_bytes", 64 << 20, 1, INT64_MAX));
    return std::unique_ptr<Source>(new FolderSource(
        path, pattern, done == "delete" ? FolderSource::Done::kDelete : FolderSource::Done::kMove,
        settle, rescan, static_cast<std::uint64_t>(max_bytes)));
  }
  if (type == "mqtt") {
    AIRLOCK_RETURN_IF_ERROR(CheckKeys(config, where, {"type", "topic", "qos", "max_queue"}));
    AIRLOCK_ASSIGN_OR_RETURN(std::string topic, RequiredString(config, where, "topic"));
    AIRLOCK_ASSIGN_OR_RETURN(auto qos, OptionalInt(config, where, "qos", 1, 0, 1));
    AIRLOCK_ASSIGN_OR_RETURN(auto max_queue,
                             OptionalInt(config, where, "max_queue", 64, 1, 1 << 20));
    if (context.mqtt == nullptr) {
      return Fail(ConfigError(where, "no MQTT broker is configured for the agent"));
    }
    return std::unique_ptr<Source>(new MqttSource(context.mqtt, std::move(topic),
                                                  static_cast<int>(qos),
                                                  static_cast<std::size_t>(max_queue)));
  }
  return Fail(ConfigError(where, "unknown source type (folder, mqtt)"));
}

Route::Route(std::string name, PipelineHandler handler, const IoContext& context)
    : name_(std::move(name)), handler_(std::move(handler)), context_(context) {}

Result<std::unique_ptr<Route>> Route::Create(const json& config, PipelineHandler handler,
                                             const IoContext& context) {
  if (!config.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "a route must be an object");
  }
  if (!handler) {
    return Fail(ErrorCode::kInvalidArgument, "a route needs a handler");
  }
  std::string name = "pipeline";
  if (auto n = config.find("name"); n != config.end()) {
    if (!n->is_string() || n->get<std::string>().empty()) {
      return Fail(ErrorCode::kInvalidArgument, "a route's 'name' must be a non-empty string");
    }
    name = n->get<std::string>();
  }
  std::unique_ptr<Route> route(new Route(name, std::move(handler), context));
  auto sources = config.find("sources");
  auto sinks = config.find("sinks");
  if (sources == config.end() || !sources->is_array() || sources->empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "route " + name + ": 'sources' must be a non-empty list");
  }
  if (sinks != config.end() && !sinks->is_array()) {
    return Fail(ErrorCode::kInvalidArgument, "route " + name + ": 'sinks' must be a list");
  }
  for (std::size_t i = 0; i < sources->size(); ++i) {
    auto source = MakeSource((*sources)[i], context);
    if (!source) {
      return Fail(std::move(source).error().WithContext("route " + name + ", source " +
                                                        std::to_string(i + 1)));
    }
    route->sources_.push_back(std::move(*source));
  }
  if (sinks != config.end()) {
    for (std::size_t i = 0; i < sinks->size(); ++i) {
      auto sink = MakeSink((*sinks)[i], context);
      if (!sink) {
        return Fail(std::move(sink).error().WithContext("route " + name + ", sink " +
                                                        std::to_string(i + 1)));
      }
      auto slot = std::make_unique<SinkSlot>();
      slot->sink = std::move(*sink);
      route->sinks_.push_back(std::move(slot));
    }
  }
  return route;
}

Route::~Route() { Stop(); }

Status Route::Start() {
  if (started_) {
    return Fail(ErrorCode::kInternal, "route " + name_ + " already started");
  }
  started_ = true;
  for (auto& source : sources_) {
    auto st = source->Start([this](const SourceInput& input) { return Process(input); });
    if (!st) {
      Stop();
      return Fail(std::move(st).error().WithContext("starting " + source->Describe() +
                                                    " of route " + name_));
    }
  }
  return {};
}

void Route::Stop() {
  for (auto& source : sources_) {
    source->Stop();
  }
}

void Route::Annotate(json& result, const SourceInput& input) {
  if (!result.is_object()) {
    return;
  }
  if (!result.contains("id")) {
    result["id"] = RandomId();
  }
  if (!result.contains("timestamp")) {
    SystemClock system;
    const Clock& clock = context_.clock != nullptr ? *context_.clock : system;
    result["timestamp"] = FormatRfc3339(clock.Now());
  }
  if (!result.contains("input")) {
    result["input"] = input.name;
  }
}

Status Route::Process(const SourceInput& input) {
  Result<json> result = Fail(ErrorCode::kInternal, "handler did not run");
  try {
    result = handler_(input);
  } catch (const std::exception& e) {
    result = Fail(ErrorCode::kInternal, std::string("pipeline threw: ") + e.what());
  }
  if (!result) {
    failed_++;
    spdlog::warn("route {}: {}: {}", name_, input.name, result.error().ToString());
    return Fail(std::move(result).error());
  }
  processed_++;
  Annotate(*result, input);
  for (auto& slot : sinks_) {
    Status st = Fail(ErrorCode::kInternal, "sink did not run");
    try {
      st = slot->sink->Deliver(*result);
    } catch (const std::exception& e) {
      st = Fail(ErrorCode::kInternal, std::string("sink threw: ") + e.what());
    }
    if (st) {
      slot->delivered++;
      delivered_++;
    } else {
      slot->failures++;
      delivery_failures_++;
      spdlog::warn("route {}: delivering the result of {} to {}: {}", name_, input.name,
                   slot->sink->Describe(), st.error().ToString());
    }
  }
  return {};
}

RouteCounters Route::counters() const {
  RouteCounters c;
  c.processed = processed_.load();
  c.failed = failed_.load();
  c.delivered = delivered_.load();
  c.delivery_failures = delivery_failures_.load();
  for (const auto& source : sources_) {
    c.dropped += source->dropped();
  }
  return c;
}

std::vector<SinkCounters> Route::sink_counters() const {
  std::vector<SinkCounters> out;
  for (const auto& slot : sinks_) {
    out.push_back({slot->sink->Describe(), slot->delivered.load(), slot->failures.load()});
  }
  return out;
}

}  // namespace airlock::agent
