// The agent's serving, measured (issue 3): latency and throughput of ONNX Runtime called in
// process against the same model behind `airlock-agent serve` (HTTP with JSON tensors, and with
// Triton's binary tensor extension), the agent's memory and CPU when idle, and its memory over
// repeated load/unload cycles; and, when asked (--sections monitoring, issue 7), what the agent's
// monitoring adds to agent::Execute and agent::Predict in process. A benchmark, not a test: it
// prints figures and whether the issues' targets are met, and exits 1 only when something did not
// work (a failed request, a wrong answer, an agent that would not start). bench/README.md explains
// every figure.
//
// The packages are made here: a throwaway publisher key and root, the two examples and a
// generated ResNet-like CNN packed, signed and installed into a scratch store. The HTTP figures
// come from the real `airlock-agent serve` process on 127.0.0.1, driven by closed-loop clients in
// this process (one thread and one keep-alive httplib::Client each).

#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/capture.hpp"
#include "agent/model_repository.hpp"
#include "agent/model_store.hpp"
#include "agent/oip_codec.hpp"
#include "cnn_model.hpp"
#include "core/fs.hpp"
#include "core/keys.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "pkg/pack.hpp"
#include "pkg/release.hpp"
#include "runtime/npy.hpp"
#include "runtime/onnx_runtime.hpp"
#include "trust/documents.hpp"

namespace airlock::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::Tensor;
using Clock = std::chrono::steady_clock;

// Targets from issue 3: binary HTTP over in-process ONNX Runtime on the small models.
constexpr double kMaxOverheadUs = 25;
constexpr double kMinThroughputRatio = 0.95;
constexpr double kMaxIdleRssMiB = 20;
constexpr double kMaxCycleGrowth = 0.05;

struct Options {
  fs::path agent = AIRLOCK_AGENT_BINARY;
  fs::path examples = AIRLOCK_SOURCE_DIR "/examples";
  fs::path workdir = fs::temp_directory_path();
  double seconds = 3;
  double warmup = 0.5;
  std::vector<int> concurrency = {1, 2, 4, 8};
  std::vector<std::string> models = {"visual-inspection", "vibration-anomaly", "resnet-like"};
  std::vector<std::string> modes = {"ort", "json", "binary"};
  std::vector<std::string> sections = {"latency", "idle", "cycles"};
  double idle_seconds = 10;
  int cycles = 100;
  std::vector<std::string> cycle_models = {"visual-inspection", "resnet-like"};
  // The monitoring section (not run unless --sections names it).
  std::vector<int> monitor_concurrency = {1, 2};
  int monitor_rounds = 5;
  double monitor_seconds = 1;
  double monitor_warmup = 0.25;
  std::vector<std::string> monitor_paths = {"execute", "predict"};
  bool monitor_control = false;  // "on" with telemetry off too: an A/A run
};

bool Has(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_serve: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r) {
    Die(what + ": " + r.error().ToString());
  }
  return std::move(*r);
}

void Must(const Status& s, const std::string& what) {
  if (!s) {
    Die(what + ": " + s.error().ToString());
  }
}

void Write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) {
    Die("cannot write " + path.string());
  }
}

// ---- /proc ----

// A field of /proc/PID/status in KiB ("VmRSS", "VmHWM").
double StatusKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtod(line.c_str() + field.size() + 1, nullptr);
    }
  }
  Die("no " + field + " in /proc/" + std::to_string(pid) + "/status");
}

double RssMiB(pid_t pid) { return StatusKiB(pid, "VmRSS") / 1024; }

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) {
      utime = std::stoull(field);
    } else if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// ---- the agent as a process ----

// `airlock-agent serve` on a free port of 127.0.0.1, stopped (SIGTERM) when destroyed. It dies
// with this process too (PR_SET_PDEATHSIG), so an interrupted benchmark leaves no server behind.
class AgentProcess {
 public:
  AgentProcess(const fs::path& binary, const fs::path& config, const fs::path& store) {
    int fds[2];
    if (pipe(fds) != 0) {
      Die("pipe: " + std::string(std::strerror(errno)));
    }
    std::vector<std::string> args = {
        binary.string(), "--store", store.string(), "serve", "-c", config.string(),
        "--port",        "0",       "--log-level",  "warn"};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      Die("fork: " + std::string(std::strerror(errno)));
    }
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) {
        _exit(127);
      }
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    // It prints "airlock-agent: serving on http://127.0.0.1:PORT" once the models have loaded.
    std::string out;
    char buf[256];
    while (out.find('\n') == std::string::npos) {
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) {
        close(fds[0]);
        Stop();
        Die("airlock-agent exited before serving (see its messages above)");
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    auto colon = out.rfind(':');
    port_ = std::atoi(out.c_str() + colon + 1);
    if (port_ <= 0) {
      Stop();
      Die("cannot read the port from: " + out);
    }
  }
  ~AgentProcess() { Stop(); }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }

  std::unique_ptr<httplib::Client> Client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(120);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    return c;
  }

  void Stop() {
    if (pid_ <= 0) {
      return;
    }
    kill(pid_, SIGTERM);
    for (int i = 0; i < 1000; ++i) {  // 10 s
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = 0;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
};

// ---- packages ----

struct BenchModel {
  std::string name;
  fs::path project;              // holds airlock.yaml
  fs::path onnx;                 // the model file, for the in-process runs
  bool small = false;            // a target applies to it
  std::vector<Tensor> inputs;    // batch 1, deterministic values
  std::vector<Tensor> expected;  // what ONNX Runtime in process answers
  std::string json_body;         // the request with JSON tensors
  std::string binary_body;       // the request with binary tensors
  std::size_t binary_header_length = 0;
};

BenchModel NewModel(std::string name, fs::path project, fs::path onnx, bool small) {
  BenchModel m;
  m.name = std::move(name);
  m.project = std::move(project);
  m.onnx = std::move(onnx);
  m.small = small;
  return m;
}

// Makes a publisher key and a root, packs, signs and installs each project into the store.
void InstallAll(const std::vector<BenchModel>& models, const fs::path& work,
                const fs::path& store_dir, runtime::OnnxRuntime& ort) {
  auto key = Must(PrivateKey::Generate(), "key");
  TimePoint now = SystemClock().Now();
  trust::Root root;
  root.expires = now + std::chrono::hours(24 * 365);
  root.keys.emplace(key.id(), key.public_key());
  root.roles["root"] = {{key.id()}, 1};
  root.roles["publisher"] = {{key.id()}, 1};
  auto root_doc = trust::SignedDocument::Wrap(root.ToJson());
  Must(root_doc.Sign(key), "signing the root");
  auto store = Must(agent::ModelStore::Open(store_dir), "store");
  std::uint64_t counter = 0;
  for (const auto& m : models) {
    auto spec = Must(pkg::LoadPackSpec(m.project / "airlock.yaml"), m.name);
    pkg::PackOptions options;
    options.output = work / (m.name + ".tar");
    options.force = true;
    Must(pkg::Pack(spec, options, &ort), "packing " + m.name);
    pkg::SignOptions sign;
    sign.counter = ++counter;
    sign.created = now;
    sign.expires = now + std::chrono::hours(24 * 30);
    Must(pkg::SignPackage(options.output, {key}, sign), "signing " + m.name);
    Must(store.Install(options.output, root_doc, now, agent::HostPlatform()),
         "installing " + m.name);
  }
}

// Inputs of batch 1 with values in [0, 1), and both request bodies.
void PrepareRequests(BenchModel& m, runtime::InferenceBackend& backend) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  for (const auto& spec : backend.signature().inputs) {
    if (spec.dtype != runtime::DataType::kFp32) {
      Die(m.name + ": input " + spec.name + " is not FP32; the benchmark only makes FP32 inputs");
    }
    Tensor t;
    t.name = spec.name;
    t.dtype = spec.dtype;
    for (auto d : spec.shape) {
      t.shape.push_back(d < 0 ? 1 : d);
    }
    std::vector<float> values(static_cast<std::size_t>(t.ElementCount()));
    for (auto& v : values) {
      v = dist(rng);
    }
    t.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    m.inputs.push_back(std::move(t));
  }
  m.json_body = agent::EncodeInferRequest(m.inputs, {.binary_inputs = false}).body;
  auto binary =
      agent::EncodeInferRequest(m.inputs, {.binary_inputs = true, .binary_outputs = true});
  m.binary_body = std::move(binary.body);
  m.binary_header_length = binary.header_length.value_or(m.binary_body.size());
  m.expected = Must(backend.Run(m.inputs), m.name + ": in-process run");
}

// Checks one response of the agent against the in-process outputs (a wrong answer would make
// every figure meaningless).
void CheckResponse(const BenchModel& m, const httplib::Result& r, const std::string& mode) {
  if (!r || r->status != 200) {
    Die(m.name + " (" + mode +
        "): " + (r ? "HTTP " + std::to_string(r->status) + " " + r->body : "no response"));
  }
  std::optional<std::uint64_t> header_length;
  if (r->has_header("Inference-Header-Content-Length")) {
    header_length = std::stoull(r->get_header_value("Inference-Header-Content-Length"));
  }
  auto parsed =
      Must(agent::ParseInferResponse(r->body, header_length), m.name + " (" + mode + "): response");
  for (const auto& want : m.expected) {
    auto it = std::find_if(parsed.outputs.begin(), parsed.outputs.end(),
                           [&](const Tensor& t) { return t.name == want.name; });
    if (it == parsed.outputs.end()) {
      Die(m.name + " (" + mode + "): no output " + want.name);
    }
    Must(runtime::CompareTensors(want, *it, {1e-4, 1e-6}),
         m.name + " (" + mode + "): output " + want.name);
  }
}

// ---- closed-loop measurement ----

struct Point {
  std::string model;
  std::string mode;
  int concurrency = 0;
  std::vector<std::int64_t> latency_ns;  // requests that started and ended inside the window
  double seconds = 0;
  std::uint64_t errors = 0;
  // From the agent's statistics over the whole point (warm-up included), mean per request.
  double server_us = 0;  // handler: parse, queue, infer (Triton's "success" duration)
  double infer_us = 0;   // the backend alone (compute_infer)
  // CPU time (user + system) over the measured window per counted request: of the agent process,
  // and of this process (the clients, or the in-process ONNX Runtime calls).
  double agent_cpu_us = 0;
  double self_cpu_us = 0;

  double Percentile(double p) const {
    if (latency_ns.empty()) {
      return 0;
    }
    std::size_t i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(latency_ns.size())));
    return static_cast<double>(latency_ns[std::max<std::size_t>(i, 1) - 1]) / 1000.0;
  }
  double Throughput() const { return static_cast<double>(latency_ns.size()) / seconds; }
};

// One request; false when it failed.
using Request = std::function<bool()>;

// Runs n threads, each making its own request function and sending requests back to back: for
// `warmup` without recording, then for `duration`. Requests that started before the window or end
// after it are not counted.
Point RunClosedLoop(int n, double warmup, double duration,
                    const std::function<Request(int)>& make_request, pid_t agent_pid) {
  std::vector<std::vector<std::int64_t>> per_thread(static_cast<std::size_t>(n));
  std::atomic<std::uint64_t> errors{0};
  std::latch ready(n + 1), go(1);
  Clock::time_point start, end;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      Request request = make_request(i);
      auto& mine = per_thread[static_cast<std::size_t>(i)];
      mine.reserve(1 << 16);
      ready.count_down();
      go.wait();
      while (true) {
        auto t0 = Clock::now();
        bool ok = request();
        auto t1 = Clock::now();
        if (t0 >= start && t1 <= end) {
          if (ok) {
            mine.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
          } else {
            errors.fetch_add(1);
          }
        }
        if (t1 >= end) {
          break;
        }
      }
    });
  }
  ready.arrive_and_wait();
  auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  start = Clock::now() + seconds(warmup);
  end = start + seconds(duration);
  go.count_down();
  std::this_thread::sleep_until(start);
  double agent0 = CpuSeconds(agent_pid), self0 = CpuSeconds(getpid());
  std::this_thread::sleep_until(end);
  double agent1 = CpuSeconds(agent_pid), self1 = CpuSeconds(getpid());
  for (auto& t : threads) {
    t.join();
  }
  Point p;
  p.concurrency = n;
  p.seconds = duration;
  p.errors = errors.load();
  for (auto& v : per_thread) {
    p.latency_ns.insert(p.latency_ns.end(), v.begin(), v.end());
  }
  std::sort(p.latency_ns.begin(), p.latency_ns.end());
  if (!p.latency_ns.empty()) {
    double count = static_cast<double>(p.latency_ns.size());
    p.agent_cpu_us = (agent1 - agent0) / count * 1e6;
    p.self_cpu_us = (self1 - self0) / count * 1e6;
  }
  return p;
}

struct ServerStats {
  std::uint64_t count = 0;
  std::uint64_t success_ns = 0;
  std::uint64_t infer_ns = 0;
};

ServerStats FetchStats(const AgentProcess& agent, const std::string& model) {
  auto c = agent.Client();
  auto r = c->Get("/v2/models/" + model + "/stats");
  if (!r || r->status != 200) {
    Die("cannot read the statistics of " + model);
  }
  json s = json::parse(r->body)["model_stats"][0]["inference_stats"];
  return {s["success"]["count"].get<std::uint64_t>(), s["success"]["ns"].get<std::uint64_t>(),
          s["compute_infer"]["ns"].get<std::uint64_t>()};
}

void PrintPoint(const Point& p) {
  std::printf("| %-17s | %-6s | %2d | %8zu | %9.1f | %9.1f | %9.1f |", p.model.c_str(),
              p.mode.c_str(), p.concurrency, p.latency_ns.size(), p.Throughput(), p.Percentile(0.5),
              p.Percentile(0.99));
  if (p.mode == "ort" || p.mode == "live") {
    std::printf("         |         |");
  } else {
    std::printf(" %7.1f | %7.1f |", p.server_us, p.infer_us);
  }
  if (p.mode == "ort") {
    std::printf("         | %7.1f |\n", p.self_cpu_us);
  } else {
    std::printf(" %7.1f | %7.1f |\n", p.agent_cpu_us, p.self_cpu_us);
  }
  if (p.errors > 0) {
    std::printf("  (%llu failed requests in that point)\n",
                static_cast<unsigned long long>(p.errors));
  }
  std::fflush(stdout);
}

std::string AgentConfigYaml(const std::vector<std::string>& load, int instances) {
  std::string yaml = "model_control: explicit\nload: [";
  for (std::size_t i = 0; i < load.size(); ++i) {
    yaml += (i ? ", " : "") + load[i];
  }
  yaml += "]\n";
  if (instances > 0) {
    yaml += "defaults:\n  instances: " + std::to_string(instances) + "\n  max_queue: 1024\n";
  }
  return yaml;
}

bool RunLatency(const Options& o, std::vector<BenchModel>& models, runtime::OnnxRuntime& ort,
                const fs::path& work, const fs::path& store) {
  int max_c = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  std::vector<std::string> names;
  for (const auto& m : models) {
    names.push_back(m.name);
  }
  // As many executions at once as clients, so the agent runs what (a) runs: nothing queues.
  fs::path config = work / "latency.yaml";
  Write(config, AgentConfigYaml(names, max_c));
  AgentProcess agent(o.agent, config, store);
  std::printf(
      "\n== latency and throughput: %.1f s per point after %.1f s of warm-up; "
      "airlock-agent serve (pid %d, 127.0.0.1:%d) with instances: %d\n\n",
      o.seconds, o.warmup, agent.pid(), agent.port(), max_c);
  std::printf(
      "| model             | mode   |  c | requests |    req/s  |  p50 us   |  p99 us   "
      "| srv us  | inf us  | agt cpu | own cpu |\n");
  std::printf(
      "|-------------------|--------|---:|---------:|----------:|----------:|----------:"
      "|--------:|--------:|--------:|--------:|\n");
  std::fflush(stdout);

  bool ok = true;
  std::map<std::string, std::map<std::string, std::vector<Point>>> results;
  for (auto& m : models) {
    runtime::SessionConfig session;  // the agent's defaults: one intra-op thread, no spinning
    auto backend = Must(ort.Load(m.onnx, session), m.name + ": loading");
    PrepareRequests(m, *backend);
    {
      auto c = agent.Client();
      CheckResponse(m, c->Post("/v2/models/" + m.name + "/infer", m.json_body, "application/json"),
                    "json");
      httplib::Headers h = {
          {"Inference-Header-Content-Length", std::to_string(m.binary_header_length)}};
      CheckResponse(
          m,
          c->Post("/v2/models/" + m.name + "/infer", h, m.binary_body, "application/octet-stream"),
          "binary");
    }
    const std::string path = "/v2/models/" + m.name + "/infer";
    for (const auto& mode : o.modes) {
      for (int n : o.concurrency) {
        std::function<Request(int)> make;
        if (mode == "ort") {
          make = [&](int) -> Request { return [&] { return backend->Run(m.inputs).has_value(); }; };
        } else if (mode == "live") {
          // The HTTP floor: a GET the agent answers without a body or a model.
          make = [&](int) -> Request {
            std::shared_ptr<httplib::Client> c = agent.Client();
            return [c] {
              auto r = c->Get("/v2/health/live");
              return r && r->status == 200;
            };
          };
        } else {
          bool binary = mode == "binary";
          make = [&, binary](int) -> Request {
            std::shared_ptr<httplib::Client> c = agent.Client();
            httplib::Headers h;
            if (binary) {
              h.emplace("Inference-Header-Content-Length", std::to_string(m.binary_header_length));
            }
            const std::string& body = binary ? m.binary_body : m.json_body;
            const char* type = binary ? "application/octet-stream" : "application/json";
            return [c, h, &body, type, &path] {
              auto r = c->Post(path, h, body, type);
              return r && r->status == 200 && !r->body.empty();
            };
          };
        }
        ServerStats before;
        bool counted = mode == "json" || mode == "binary";  // by the model's statistics
        if (counted) {
          before = FetchStats(agent, m.name);
        }
        Point p = RunClosedLoop(n, o.warmup, o.seconds, make, agent.pid());
        p.model = m.name;
        p.mode = mode;
        if (counted) {
          ServerStats after = FetchStats(agent, m.name);
          double count = static_cast<double>(after.count - before.count);
          if (count > 0) {
            p.server_us = static_cast<double>(after.success_ns - before.success_ns) / count / 1e3;
            p.infer_us = static_cast<double>(after.infer_ns - before.infer_ns) / count / 1e3;
          }
        }
        ok = ok && p.errors == 0 && !p.latency_ns.empty();
        PrintPoint(p);
        results[m.name][mode].push_back(std::move(p));
      }
    }
  }

  std::printf("\n== targets (binary HTTP against in-process ONNX Runtime)\n");
  for (const auto& m : models) {
    auto& r = results[m.name];
    if (r["ort"].empty() || r["binary"].empty()) {
      continue;
    }
    auto at1 = [](const std::vector<Point>& v) -> const Point* {
      for (const auto& p : v) {
        if (p.concurrency == 1) {
          return &p;
        }
      }
      return nullptr;
    };
    auto best = [](const std::vector<Point>& v) {
      double b = 0;
      for (const auto& p : v) {
        b = std::max(b, p.Throughput());
      }
      return b;
    };
    const Point* a1 = at1(r["ort"]);
    const Point* c1 = at1(r["binary"]);
    double ratio = best(r["binary"]) / best(r["ort"]);
    std::printf("%-17s", m.name.c_str());
    if (a1 != nullptr && c1 != nullptr) {
      double overhead = c1->Percentile(0.5) - a1->Percentile(0.5);
      std::printf("  p50 overhead at c=1: %7.1f us", overhead);
      if (m.small) {
        std::printf(" (target <= %.0f: %s)", kMaxOverheadUs,
                    overhead <= kMaxOverheadUs ? "met" : "NOT met");
      }
    }
    std::printf("\n%-17s  throughput at saturation: %.0f/s vs %.0f/s = %.1f%%", "",
                best(r["binary"]), best(r["ort"]), ratio * 100);
    if (m.small) {
      std::printf(" (target >= %.0f%%: %s)", kMinThroughputRatio * 100,
                  ratio >= kMinThroughputRatio ? "met" : "NOT met");
    }
    std::printf("\n");
  }
  return ok;
}

// ---- memory and CPU ----

void RunIdle(const Options& o, const fs::path& work, const fs::path& store,
             const fs::path& empty_store) {
  std::printf("\n== idle: RSS after start, CPU over %.0f s with no requests\n\n", o.idle_seconds);
  std::printf("| agent                          | VmRSS MiB | VmHWM MiB | CPU s | CPU %% |\n");
  std::printf("|--------------------------------|----------:|----------:|------:|------:|\n");
  struct Case {
    const char* what;
    std::vector<std::string> load;
    fs::path store;
  };
  std::vector<Case> cases = {
      {"no model loaded", {}, empty_store},
      {"both examples loaded", {"visual-inspection", "vibration-anomaly"}, store}};
  for (const auto& c : cases) {
    fs::path config = work / "idle.yaml";
    Write(config, AgentConfigYaml(c.load, 0));
    AgentProcess agent(o.agent, config, c.store);
    // Let start-up settle (threads parking) before measuring.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    double rss = RssMiB(agent.pid());
    double hwm = StatusKiB(agent.pid(), "VmHWM") / 1024;
    double cpu0 = CpuSeconds(agent.pid());
    std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_seconds));
    double cpu = CpuSeconds(agent.pid()) - cpu0;
    std::printf("| %-30s | %9.1f | %9.1f | %5.2f | %5.2f |", c.what, rss, hwm, cpu,
                cpu / o.idle_seconds * 100);
    if (c.load.empty()) {
      std::printf("  RSS target <= %.0f MiB: %s", kMaxIdleRssMiB,
                  rss <= kMaxIdleRssMiB ? "met" : "NOT met");
    }
    std::printf("\n");
    std::fflush(stdout);
  }
}

bool RunCycles(const Options& o, const fs::path& work, const fs::path& store) {
  std::printf(
      "\n== %d load/unload cycles per model (POST /v2/repository/models/M/load, then "
      "/unload); RSS after the unload\n\n",
      o.cycles);
  std::printf(
      "| model             | loaded, 1st | after 1 | after 10 | after %d | max   | "
      "growth |\n",
      o.cycles);
  std::printf(
      "|-------------------|------------:|--------:|---------:|--------:|------:|-------:|"
      "\n");
  bool ok = true;
  fs::path config = work / "cycles.yaml";
  Write(config, AgentConfigYaml({}, 0));
  for (const auto& name : o.cycle_models) {
    AgentProcess agent(o.agent, config, store);
    auto c = agent.Client();
    double loaded = 0, first = 0, tenth = 0, last = 0, max = 0;
    for (int i = 1; i <= o.cycles; ++i) {
      auto r = c->Post("/v2/repository/models/" + name + "/load", "", "application/json");
      if (!r || r->status != 200) {
        std::printf("load of %s failed: %s\n", name.c_str(), r ? r->body.c_str() : "no response");
        ok = false;
        break;
      }
      if (i == 1) {
        loaded = RssMiB(agent.pid());
      }
      r = c->Post("/v2/repository/models/" + name + "/unload", "", "application/json");
      if (!r || r->status != 200) {
        std::printf("unload of %s failed: %s\n", name.c_str(), r ? r->body.c_str() : "no response");
        ok = false;
        break;
      }
      double rss = RssMiB(agent.pid());
      max = std::max(max, rss);
      if (i == 1) {
        first = rss;
      }
      if (i == 10) {
        tenth = rss;
      }
      last = rss;
    }
    double growth = first > 0 ? last / first - 1 : 0;
    std::printf(
        "| %-17s | %11.1f | %7.1f | %8.1f | %7.1f | %5.1f | %+5.1f%% |  target <= +%.0f%%: "
        "%s\n",
        name.c_str(), loaded, first, tenth, last, max, growth * 100, kMaxCycleGrowth * 100,
        growth <= kMaxCycleGrowth ? "met" : "NOT met");
    std::fflush(stdout);
  }
  return ok;
}

// ---- monitoring on and off (issue 7) ----

// What issue 7 allows monitoring to cost in throughput.
constexpr double kMaxMonitoringCost = 0.02;
// The capture configuration: the share of requests kept, as a site's policy would set it.
constexpr double kCaptureRate = 0.01;

double Median(std::vector<double> v) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The inputs of every sample set of an example (samples/N/INPUT.npy), in order: the values the
// model was made for, so that the monitor's histograms see what they would see in service.
std::vector<std::vector<Tensor>> SampleInputs(const fs::path& project,
                                              const runtime::ModelSignature& sig) {
  std::vector<std::vector<Tensor>> sets;
  for (int i = 0;; ++i) {
    fs::path dir = project / "samples" / std::to_string(i);
    if (!fs::is_directory(dir)) {
      break;
    }
    std::vector<Tensor> set;
    for (const auto& spec : sig.inputs) {
      set.push_back(Must(runtime::LoadNpy(dir / (spec.name + ".npy"), spec.name),
                         "reading " + (dir / (spec.name + ".npy")).string()));
    }
    sets.push_back(std::move(set));
  }
  if (sets.empty()) {
    Die("no samples in " + (project / "samples").string());
  }
  return sets;
}

// One way of running the agent's request path, measured in alternating rounds against the others.
struct MonitorConfig {
  const char* name;
  std::shared_ptr<agent::ServedVersion> served;
  std::shared_ptr<agent::CaptureRing> capture;  // set on the repository during its rounds
};

// Nanoseconds per call of f, called `calls` times back to back (after a tenth as many untimed).
double NsPerCall(int calls, const std::function<void()>& f) {
  for (int i = 0; i < calls / 10; ++i) {
    f();
  }
  auto t0 = Clock::now();
  for (int i = 0; i < calls; ++i) {
    f();
  }
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()) /
         calls;
}

// The request path the agent monitors, in process: agent::Execute (and agent::Predict with a
// picture) on a ModelRepository with telemetry off, the same with telemetry on, and on with a
// capture ring at kCaptureRate. Closed loop from each number of threads; the configurations take
// turns within each round, in reverse order every other round, so that a change in the machine's
// load falls on all of them alike. Returns false when a request failed.
bool RunMonitoring(const Options& o, runtime::OnnxRuntime& ort, const fs::path& work,
                   const fs::path& store) {
  int max_c = *std::max_element(o.monitor_concurrency.begin(), o.monitor_concurrency.end());
  agent::AgentConfig base;
  base.store = store;
  base.model_control = agent::AgentConfig::ModelControl::kExplicit;
  base.defaults.instances = max_c;  // every thread executes at once: nothing queues
  base.defaults.max_queue = 1024;
  agent::AgentConfig off = base;
  off.telemetry.enabled = false;
  agent::AgentConfig on = base;
  on.telemetry.enabled = !o.monitor_control;
  agent::ModelRepository repo_off(store, ort, off, agent::HostPlatform());
  agent::ModelRepository repo_on(store, ort, on, agent::HostPlatform());
  spdlog::set_level(spdlog::level::warn);  // not a line per load
  trust::CapturePolicy policy;
  policy.rate = kCaptureRate;
  policy.max_bytes = 64ULL << 20;
  policy.upload = false;
  std::shared_ptr<agent::CaptureRing> ring =
      Must(agent::CaptureRing::Open(work / "captures", "bench-device", policy, {}), "capture ring");

  std::printf(
      "\n== monitoring on and off: agent::Execute / agent::Predict in process, %d round(s) of "
      "%.1f s per configuration after %.2f s of warm-up, configurations alternating; "
      "capture at rate %.2f on %s\n",
      o.monitor_rounds, o.monitor_seconds, o.monitor_warmup, kCaptureRate,
      (work / "captures").c_str());
  if (o.monitor_control) {
    std::printf(
        "A/A control: \"on\" and \"capture\" run with telemetry OFF too; their difference from "
        "\"off\" is that of two loaded copies of the model and of the machine's noise\n");
  }
  std::fflush(stdout);

  struct Row {
    std::string model, path;
    int threads = 0;
    std::map<std::string, std::vector<double>> throughput, p50_us, cpu_us;
    std::vector<double> on_cost, capture_cost;  // per round: 1 - config / off
  };
  std::vector<Row> rows;
  struct Parts {
    std::string model;
    double execute_us = 0, inputs_us = 0, outputs_us = 0, finish_us = 0, sample_ns = 0;
    double should_ns = 0;
    std::uint64_t stride = 0;  // the monitor's after the measured runs: observes every stride-th
  };
  std::vector<Parts> parts;
  bool ok = true;
  for (const auto& name : o.models) {
    if (name != "visual-inspection" && name != "vibration-anomaly") {
      continue;  // only the examples have a baseline
    }
    Must(repo_off.Load(name), name + ": loading with telemetry off");
    Must(repo_on.Load(name), name + ": loading with telemetry on");
    auto served_off = Must(repo_off.Find(name), name);
    auto served_on = Must(repo_on.Find(name), name);
    if (served_off->monitor || !served_on->monitor != o.monitor_control) {
      Die(name + ": telemetry.enabled did not decide whether the version has a monitor");
    }
    const fs::path project = o.examples / name;
    const std::vector<std::vector<Tensor>> sets = SampleInputs(project, served_on->signature);
    std::vector<std::string> pictures;  // samples/N/image.png, for the pipeline
    for (int i = 0;
         served_on->steps && fs::exists(project / "samples" / std::to_string(i) / "image.png");
         ++i) {
      fs::path png = project / "samples" / std::to_string(i) / "image.png";
      pictures.push_back(Must(ReadFile(png), "reading " + png.string()));
    }
    // Both answer, and alike: the monitor must not change what is computed.
    for (const auto& set : sets) {
      auto out_off = Must(agent::Execute(*served_off, set, Clock::now()), name + ": off");
      auto out_on = Must(agent::Execute(*served_on, set, Clock::now()), name + ": on");
      for (std::size_t i = 0; i < out_off.size(); ++i) {
        Must(runtime::CompareTensors(out_off[i], out_on[i], {0, 0}), name + ": on against off");
      }
    }
    std::vector<MonitorConfig> configs = {
        {"off", served_off, nullptr}, {"on", served_on, nullptr}, {"capture", served_on, ring}};

    std::vector<std::string> paths;
    for (const auto& path : o.monitor_paths) {
      if (path == "execute" || (path == "predict" && !pictures.empty())) {
        paths.push_back(path);
      }
    }
    for (const auto& path : paths) {
      for (int n : o.monitor_concurrency) {
        Row row;
        row.model = name;
        row.path = path;
        row.threads = n;
        std::printf("\n%s, %s, %d thread(s):\n", name.c_str(),
                    path == "execute" ? "Execute (tensors)" : "Predict (PNG through the pipeline)",
                    n);
        for (int round = 1; round <= o.monitor_rounds; ++round) {
          std::vector<const MonitorConfig*> order;
          for (const auto& c : configs) {
            order.push_back(&c);
          }
          if (round % 2 == 0) {
            std::reverse(order.begin(), order.end());
          }
          std::map<std::string, double> got;
          std::printf("  round %d:", round);
          for (const MonitorConfig* c : order) {
            repo_on.SetCapture(c->capture);
            agent::ServedVersion& served = *c->served;
            std::function<Request(int)> make;
            // Each thread goes through the sample sets (or pictures) in turn, from its own start.
            if (path == "execute") {
              make = [&](int thread) -> Request {
                return [&, i = static_cast<std::size_t>(thread)]() mutable {
                  const std::vector<Tensor>& set = sets[i++ % sets.size()];
                  return agent::Execute(served, set, Clock::now()).has_value();
                };
              };
            } else {
              make = [&](int thread) -> Request {
                return [&, i = static_cast<std::size_t>(thread)]() mutable {
                  const std::string& picture = pictures[i++ % pictures.size()];
                  return agent::Predict(served,
                                        {.bytes = picture, .content_type = "image/png", .name = ""})
                      .has_value();
                };
              };
            }
            Point p = RunClosedLoop(n, o.monitor_warmup, o.monitor_seconds, make, getpid());
            repo_on.SetCapture(nullptr);
            ok = ok && p.errors == 0 && !p.latency_ns.empty();
            row.throughput[c->name].push_back(p.Throughput());
            row.p50_us[c->name].push_back(p.Percentile(0.5));
            row.cpu_us[c->name].push_back(p.self_cpu_us);
            got[c->name] = p.Throughput();
            std::printf(" %s %.0f/s,", c->name, p.Throughput());
            std::fflush(stdout);
          }
          row.on_cost.push_back(1 - got["on"] / got["off"]);
          row.capture_cost.push_back(1 - got["capture"] / got["off"]);
          std::printf(" on costs %+.1f%%, capture %+.1f%%\n", row.on_cost.back() * 100,
                      row.capture_cost.back() * 100);
        }
        rows.push_back(std::move(row));
      }
    }

    // The monitor's own work, each part called alone from one thread on the served version's
    // monitor (its counts are the benchmark's from here on).
    Parts part;
    part.model = name;
    const int calls = name == "vibration-anomaly" ? 20000 : 2000;
    std::vector<std::vector<Tensor>> outputs;
    for (const auto& set : sets) {
      outputs.push_back(Must(agent::Execute(*served_off, set, Clock::now()), name));
    }
    std::size_t i = 0;
    part.execute_us =
        NsPerCall(calls,
                  [&] {
                    if (!agent::Execute(*served_off, sets[i++ % sets.size()], Clock::now())) {
                      Die(name + ": Execute failed");
                    }
                  }) /
        1e3;
    if (monitor::VersionMonitor* m = served_on->monitor.get(); m != nullptr) {
      part.stride = m->stride();
      part.should_ns = NsPerCall(calls, [&] { (void)m->ShouldObserve(); });
      part.inputs_us = NsPerCall(calls, [&] { m->ObserveInputs(sets[i++ % sets.size()]); }) / 1e3;
      part.outputs_us =
          NsPerCall(calls, [&] { m->ObserveOutputs(outputs[i++ % outputs.size()]); }) / 1e3;
      part.finish_us =
          NsPerCall(calls, [&] { m->Finish(true, std::chrono::microseconds(250)); }) / 1e3;
    }
    part.sample_ns = NsPerCall(calls, [&] { (void)ring->Sample(); });
    parts.push_back(part);

    Must(repo_off.Unload(name), name + ": unloading");
    Must(repo_on.Unload(name), name + ": unloading");
  }
  ring->Drain();

  std::printf(
      "\n== monitoring on and off: median throughput of %d round(s); cost = 1 - config/off per "
      "round, median [min, max]\n\n",
      o.monitor_rounds);
  std::printf(
      "| model             | path    | thr | off req/s | on req/s | capture req/s | on costs "
      "              | capture costs          | p50 us off / on / capture | cpu us/req off / on "
      "/ capture |\n");
  std::printf(
      "|-------------------|---------|----:|----------:|---------:|--------------:|--------------"
      "----------|------------------------|---------------------------|-----------------------"
      "------|\n");
  bool met = true;
  for (const auto& r : rows) {
    auto cost = [](const std::vector<double>& v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%+5.1f%% [%+5.1f, %+5.1f]", Median(v) * 100,
                    *std::min_element(v.begin(), v.end()) * 100,
                    *std::max_element(v.begin(), v.end()) * 100);
      return std::string(buf);
    };
    auto& t = r.throughput;
    std::printf(
        "| %-17s | %-7s | %3d | %9.0f | %8.0f | %13.0f | %-22s | %-22s | %7.1f / %7.1f / %7.1f | "
        "%7.1f / %7.1f / %7.1f |\n",
        r.model.c_str(), r.path.c_str(), r.threads, Median(t.at("off")), Median(t.at("on")),
        Median(t.at("capture")), cost(r.on_cost).c_str(), cost(r.capture_cost).c_str(),
        Median(r.p50_us.at("off")), Median(r.p50_us.at("on")), Median(r.p50_us.at("capture")),
        Median(r.cpu_us.at("off")), Median(r.cpu_us.at("on")), Median(r.cpu_us.at("capture")));
    met = met && Median(r.on_cost) <= kMaxMonitoringCost;
  }
  std::printf(
      "\n== the monitor's own work per request, each part alone from one thread (us per call)\n\n"
      "| model             | Execute, off | observes 1 in | ShouldObserve | ObserveInputs | "
      "ObserveOutputs | Finish | CaptureRing::Sample |\n"
      "|-------------------|-------------:|--------------:|--------------:|--------------:|"
      "---------------:|-------:|--------------------:|\n");
  for (const auto& p : parts) {
    std::printf("| %-17s | %12.2f | %13llu | %13.3f | %13.2f | %14.2f | %6.3f | %19.3f |\n",
                p.model.c_str(), p.execute_us, static_cast<unsigned long long>(p.stride),
                p.should_ns / 1e3, p.inputs_us, p.outputs_us, p.finish_us, p.sample_ns / 1e3);
  }
  std::printf("\ncaptures written %llu, dropped %llu (queue full), limited %llu (over %g/s)\n",
              static_cast<unsigned long long>(ring->captured()),
              static_cast<unsigned long long>(ring->dropped()),
              static_cast<unsigned long long>(ring->limited()), ring->max_per_second());
  if (!rows.empty()) {
    std::printf("monitoring (on against off, median per row) costs at most %.0f%%: %s\n",
                kMaxMonitoringCost * 100, met ? "met" : "NOT met");
  }
  return ok;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) {
      out.push_back(item);
    }
  }
  return out;
}

int Main(int argc, char** argv) {
  Options o;
  std::string concurrency = "1,2,4,8", models, modes, sections, cycle_models;
  CLI::App app{"bench_serve: the agent's serving latency, throughput, memory and idle CPU"};
  app.add_option("--agent", o.agent, "the airlock-agent binary")->capture_default_str();
  app.add_option("--examples", o.examples, "the examples directory")->capture_default_str();
  app.add_option("--workdir", o.workdir, "where to make the scratch directory")
      ->capture_default_str();
  app.add_option("--seconds", o.seconds, "measured seconds per point")->capture_default_str();
  app.add_option("--warmup", o.warmup, "warm-up seconds before each point")->capture_default_str();
  app.add_option("--concurrency", concurrency, "client threads, a list")->capture_default_str();
  app.add_option("--models", models,
                 "visual-inspection,vibration-anomaly,resnet-like (default: all)");
  app.add_option("--modes", modes,
                 "ort,json,binary (default), and live: GET /v2/health/live, the HTTP floor");
  app.add_option("--sections", sections,
                 "latency,idle,cycles (the default), and monitoring: agent::Execute with the "
                 "agent's monitoring off, on, and on with capture");
  app.add_option("--idle-seconds", o.idle_seconds, "how long to watch the idle agent's CPU")
      ->capture_default_str();
  app.add_option("--cycles", o.cycles, "load/unload cycles per model")->capture_default_str();
  app.add_option("--cycle-models", cycle_models,
                 "models to cycle (default: visual-inspection,resnet-like)");
  std::string monitor_concurrency = "1,2", monitor_paths;
  app.add_option("--monitor-concurrency", monitor_concurrency, "monitoring: threads, a list")
      ->capture_default_str();
  app.add_option("--monitor-rounds", o.monitor_rounds, "monitoring: rounds of each configuration")
      ->capture_default_str();
  app.add_option("--monitor-seconds", o.monitor_seconds,
                 "monitoring: measured seconds per configuration and round")
      ->capture_default_str();
  app.add_option("--monitor-warmup", o.monitor_warmup,
                 "monitoring: warm-up seconds before each of those")
      ->capture_default_str();
  app.add_flag("--monitor-control", o.monitor_control,
               "monitoring: an A/A run, \"on\" with telemetry off too (the noise floor)");
  app.add_option(
      "--monitor-paths", monitor_paths,
      "monitoring: execute (tensors), predict (a PNG through the pipeline); default both");
  std::string write_cnn;
  app.add_option("--write-cnn", write_cnn, "only write the generated CNN to this file and exit");
  CLI11_PARSE(app, argc, argv);
  if (!write_cnn.empty()) {
    WriteResNetLikeModel(write_cnn);
    return 0;
  }
  o.concurrency.clear();
  for (const auto& c : SplitList(concurrency)) {
    o.concurrency.push_back(std::stoi(c));
    if (o.concurrency.back() < 1) {
      Die("--concurrency: each must be at least 1");
    }
  }
  if (o.concurrency.empty()) {
    Die("--concurrency: give at least one");
  }
  o.monitor_concurrency.clear();
  for (const auto& c : SplitList(monitor_concurrency)) {
    o.monitor_concurrency.push_back(std::stoi(c));
    if (o.monitor_concurrency.back() < 1) {
      Die("--monitor-concurrency: each must be at least 1");
    }
  }
  if (o.monitor_concurrency.empty() || o.monitor_rounds < 1) {
    Die("--monitor-concurrency and --monitor-rounds: give at least one");
  }
  if (!monitor_paths.empty()) {
    o.monitor_paths = SplitList(monitor_paths);
  }
  if (!models.empty()) {
    o.models = SplitList(models);
  }
  if (!modes.empty()) {
    o.modes = SplitList(modes);
  }
  if (!sections.empty()) {
    o.sections = SplitList(sections);
  }
  if (!cycle_models.empty()) {
    o.cycle_models = SplitList(cycle_models);
  }
  std::signal(SIGPIPE, SIG_IGN);

  auto scratch = Must(TempDirectory::Create(o.workdir / "bench-serve.XXXXXX"), "scratch directory");
  const fs::path work = scratch.path();
  auto ort = Must(runtime::OnnxRuntime::Create(), "ONNX Runtime");

  // Every model is installed (the cycles and idle sections use them whatever --models says).
  std::vector<BenchModel> all;
  for (const char* name : {"visual-inspection", "vibration-anomaly"}) {
    all.push_back(NewModel(name, o.examples / name, o.examples / name / "model.onnx", true));
  }
  fs::path cnn = work / "resnet-like";
  WriteResNetLikeModel(cnn / "model.onnx");
  Write(cnn / "airlock.yaml", R"(name: resnet-like
version: 1.0.0
description: A ResNet-like CNN with random weights (bench/cnn_model.cpp), for the serving benchmark.
created: "2026-01-01T00:00:00Z"
model:
  files: [model.onnx]
platforms: [linux/amd64, linux/arm64]
)");
  all.push_back(NewModel("resnet-like", cnn, cnn / "model.onnx", false));
  const fs::path store = work / "store";
  const fs::path empty_store = work / "empty-store";
  std::printf("packing, signing and installing %zu models into %s\n", all.size(), store.c_str());
  std::fflush(stdout);
  InstallAll(all, work, store, *ort);
  Must(agent::ModelStore::Open(empty_store), "empty store");

  bool ok = true;
  if (Has(o.sections, "latency")) {
    std::vector<BenchModel> chosen;
    for (auto& m : all) {
      if (Has(o.models, m.name)) {
        chosen.push_back(m);
      }
    }
    ok = RunLatency(o, chosen, *ort, work, store) && ok;
  }
  if (Has(o.sections, "idle")) {
    RunIdle(o, work, store, empty_store);
  }
  if (Has(o.sections, "cycles")) {
    ok = RunCycles(o, work, store) && ok;
  }
  if (Has(o.sections, "monitoring")) {
    ok = RunMonitoring(o, *ort, work, store) && ok;
  }
  if (!ok) {
    std::printf("\nbench_serve: some requests failed; the figures above are not trustworthy\n");
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace airlock::bench

int main(int argc, char** argv) { return airlock::bench::Main(argc, argv); }
