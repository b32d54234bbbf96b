#include "agent/http_api.hpp"

#include <httplib.h>
#include <openssl/crypto.h>

#include <array>
#include <charconv>
#include <chrono>

#include "agent/oip_codec.hpp"
#include "core/fs.hpp"
#include "core/time.hpp"
#include "net/http_server.hpp"

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "0.0.0"
#endif

namespace airlock::agent {
namespace {

using nlohmann::json;
using std::chrono::steady_clock;

constexpr const char* kJson = "application/json";
constexpr std::uint64_t kMaxApiKey = 4096;

int HttpStatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout:
      return 503;
    case ErrorCode::kModel:
    case ErrorCode::kIo:
    case ErrorCode::kInternal:
      return 500;
    default:
      return 400;
  }
}

void SendJson(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

void SendError(httplib::Response& res, int status, const std::string& message) {
  SendJson(res, {{"error", message}}, status);
}

void SendError(httplib::Response& res, const Error& e) {
  SendError(res, HttpStatusFor(e.code()), e.ToString());
}

// The content types a pipeline reads; anything else (curl's default form type, text/plain) is
// left to the pipeline to recognise by its bytes.
std::string PipelineContentType(const std::string& header) {
  std::string type = header.substr(0, header.find(';'));
  for (auto& ch : type) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  while (!type.empty() && type.back() == ' ') {
    type.pop_back();
  }
  for (const char* known : {"image/jpeg", "image/png", "application/x-npy", "application/json",
                            "application/octet-stream"}) {
    if (type == known) {
      return header;
    }
  }
  return "";
}

std::string TritonType(runtime::DataType t) {
  return t == runtime::DataType::kBytes ? "TYPE_STRING"
                                        : "TYPE_" + std::string(runtime::DataTypeName(t));
}

json TensorMetadata(const runtime::TensorSpec& s) {
  return {{"name", s.name},
          {"datatype", std::string(runtime::DataTypeName(s.dtype))},
          {"shape", s.shape}};
}

// Triton's model configuration (the subset that clients and perf_analyzer read).
json ModelConfigJson(const ServedVersion& v) {
  const auto& c = v.config;
  bool batched = c.batching && IsBatchable(v.signature);
  auto dims = [&](const runtime::TensorSpec& s) {
    std::vector<std::int64_t> d = s.shape;
    if (batched && !d.empty()) {
      d.erase(d.begin());
    }
    return d;
  };
  json inputs = json::array(), outputs = json::array();
  for (const auto& s : v.signature.inputs) {
    inputs.push_back({{"name", s.name}, {"data_type", TritonType(s.dtype)}, {"dims", dims(s)}});
  }
  for (const auto& s : v.signature.outputs) {
    outputs.push_back({{"name", s.name}, {"data_type", TritonType(s.dtype)}, {"dims", dims(s)}});
  }
  json policy;
  switch (c.versions.kind) {
    case VersionPolicy::Kind::kLatest:
      policy = {{"latest", {{"num_versions", c.versions.latest}}}};
      break;
    case VersionPolicy::Kind::kSpecific:
      policy = {{"specific", {{"versions", c.versions.versions}}}};
      break;
    case VersionPolicy::Kind::kAll:
      policy = {{"all", json::object()}};
      break;
  }
  json j = {
      {"name", v.name},
      {"platform", "onnxruntime_onnx"},
      {"backend", "onnxruntime"},
      {"version_policy", policy},
      {"max_batch_size", batched ? c.batching->max_batch_size : 0},
      {"input", inputs},
      {"output", outputs},
      {"instance_group", {{{"name", v.name}, {"count", c.instances}, {"kind", "KIND_CPU"}}}},
      {"parameters",
       {{"intra_op_thread_count", {{"string_value", std::to_string(c.session.intra_op_threads)}}},
        {"allow_spinning", {{"string_value", c.session.allow_spinning ? "1" : "0"}}},
        {"cpu_arena", {{"string_value", c.session.cpu_arena ? "1" : "0"}}},
        {"shared_pool", {{"string_value", c.session.shared_pool ? "1" : "0"}}}}}};
  if (batched) {
    j["dynamic_batching"] = {
        {"max_queue_delay_microseconds", c.batching->max_queue_delay.count()},
        {"default_queue_policy",
         {{"default_timeout_microseconds",
           std::chrono::duration_cast<std::chrono::microseconds>(c.timeout).count()},
          {"max_queue_size", c.max_queue}}}};
  }
  return j;
}

json DurationJson(const DurationStat& d) {
  return {{"count", d.count.load()}, {"ns", d.ns.load()}};
}

json StatsJson(const ServedVersion& v) {
  const auto& s = v.stats;
  json batches = json::array();
  for (const auto& [size, count] : s.BatchCounts()) {
    batches.push_back({{"batch_size", size}, {"compute_infer", {{"count", count}}}});
  }
  return {{"name", v.name},
          {"version", v.version},
          {"last_inference", s.last_inference_ms.load()},
          {"inference_count", s.inference_count.load()},
          {"execution_count", s.execution_count.load()},
          {"inference_stats",
           {{"success", DurationJson(s.success)},
            {"fail", DurationJson(s.fail)},
            {"queue", DurationJson(s.queue)},
            {"compute_input", DurationJson(s.compute_input)},
            {"compute_infer", DurationJson(s.compute_infer)},
            {"compute_output", DurationJson(s.compute_output)},
            {"cache_hit", {{"count", 0}, {"ns", 0}}},
            {"cache_miss", {{"count", 0}, {"ns", 0}}}}},
          {"batch_stats", batches}};
}

}  // namespace

void RenderMetrics(const ModelRepository& repository, prometheus::MetricsText& out) {
  using prometheus::MetricType;
  auto ready = repository.Ready();
  auto labels = [](const ServedVersion& v) -> prometheus::Labels {
    return {{"model", v.name}, {"version", v.version}};
  };
  auto per_version = [&](const char* name, MetricType type, const char* help, auto value) {
    out.Family(name, type, help);
    for (const auto& v : ready) {
      out.Sample(labels(*v), value(*v));
    }
  };
  auto us = [](const DurationStat& d) { return d.ns.load() / 1000; };
  per_version("nv_inference_request_success", MetricType::kCounter,
              "Number of successful inference requests, all batch sizes",
              [](const ServedVersion& v) { return v.stats.success.count.load(); });
  per_version("nv_inference_request_failure", MetricType::kCounter,
              "Number of failed inference requests, all batch sizes",
              [](const ServedVersion& v) { return v.stats.fail.count.load(); });
  per_version("nv_inference_count", MetricType::kCounter,
              "Number of inferences performed (a batch of n counts n)",
              [](const ServedVersion& v) { return v.stats.inference_count.load(); });
  per_version("nv_inference_exec_count", MetricType::kCounter,
              "Number of model executions performed (a batch counts once)",
              [](const ServedVersion& v) { return v.stats.execution_count.load(); });
  per_version("nv_inference_request_duration_us", MetricType::kCounter,
              "Cumulative inference request duration in microseconds",
              [&](const ServedVersion& v) { return us(v.stats.success); });
  per_version("nv_inference_queue_duration_us", MetricType::kCounter,
              "Cumulative inference queuing duration in microseconds",
              [&](const ServedVersion& v) { return us(v.stats.queue); });
  per_version("nv_inference_compute_input_duration_us", MetricType::kCounter,
              "Cumulative compute input duration in microseconds",
              [&](const ServedVersion& v) { return us(v.stats.compute_input); });
  per_version("nv_inference_compute_infer_duration_us", MetricType::kCounter,
              "Cumulative compute inference duration in microseconds",
              [&](const ServedVersion& v) { return us(v.stats.compute_infer); });
  per_version("nv_inference_compute_output_duration_us", MetricType::kCounter,
              "Cumulative inference compute output duration in microseconds",
              [&](const ServedVersion& v) { return us(v.stats.compute_output); });
  per_version("nv_inference_pending_request_count", MetricType::kGauge,
              "Instantaneous number of pending requests awaiting execution",
              [](const ServedVersion& v) { return v.scheduler->QueueDepth(); });
  per_version("airlock_pipeline_requests_total", MetricType::kCounter,
              "Raw inputs (images, signals) the model's pipeline turned into results",
              [](const ServedVersion& v) { return v.stats.pipeline_success.load(); });
  per_version("airlock_pipeline_failures_total", MetricType::kCounter,
              "Raw inputs the model's pipeline could not turn into results",
              [](const ServedVersion& v) { return v.stats.pipeline_failure.load(); });
  per_version("airlock_inference_rejected_total", MetricType::kCounter,
              "Requests refused because the model's queue was full (HTTP 503)",
              [](const ServedVersion& v) { return v.stats.rejected.load(); });
  per_version("airlock_inference_timeout_total", MetricType::kCounter,
              "Requests that timed out before their model ran them",
              [](const ServedVersion& v) { return v.stats.timed_out.load(); });

  out.Family("airlock_inference_request_duration_seconds", MetricType::kHistogram,
             "Successful inference request latency, arrival to response");
  for (const auto& v : ready) {
    const auto& h = v->stats.latency;
    std::array<double, LatencyHistogram::kBoundsUs.size()> bounds{};
    std::array<std::uint64_t, LatencyHistogram::kBoundsUs.size() + 1> counts{};
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      bounds[i] = static_cast<double>(h.kBoundsUs[i]) / 1e6;
    }
    for (std::size_t i = 0; i < counts.size(); ++i) {
      counts[i] = h.buckets[i].load();
    }
    out.Histogram(labels(*v), {.upper_bounds = bounds,
                               .counts = counts,
                               .sum = static_cast<double>(h.sum_us.load()) / 1e6});
  }

  out.Family("airlock_model_state", MetricType::kGauge,
             "1 for the state each installed model version is in (LOADING, READY, UNLOADING, "
             "UNAVAILABLE)");
  for (const auto& s : repository.Index()) {
    out.Sample({{"model", s.name}, {"version", s.version}, {"state", ModelStateName(s.state)}}, 1);
  }
  out.Family("airlock_model_loads_total", MetricType::kCounter, "Model version loads attempted");
  out.Sample(repository.loads());
  out.Family("airlock_model_load_failures_total", MetricType::kCounter,
             "Model version loads that failed (verification, runtime or warm-up)");
  out.Sample(repository.load_failures());
}

std::string RenderMetrics(const ModelRepository& repository) {
  prometheus::MetricsText out;
  RenderMetrics(repository, out);
  return out.Text();
}

struct AgentServer::Impl {
  ModelRepository& repo;
  const AgentConfig& config;
  std::string platform;
  std::string runtime_version;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::unique_ptr<httplib::Server> server;
  net::ServeLoop loop;
  std::string api_key;
  MetricsAppender metrics_appender;
  std::atomic<std::uint64_t> http_requests{0};
  std::atomic<std::uint64_t> http_errors{0};

  Impl(ModelRepository& r, std::string p, std::string rv)
      : repo(r), config(r.config()), platform(std::move(p)), runtime_version(std::move(rv)) {}

  // The served version a /v2/models/{m}[/versions/{v}]/... route names.
  Result<std::shared_ptr<ServedVersion>> Target(const httplib::Request& req) const {
    return repo.Find(req.matches[1], req.matches.size() > 2 ? req.matches[2].str() : "");
  }

  bool Authorized(const httplib::Request& req) const {
    if (api_key.empty()) {
      return true;
    }
    std::string given = req.get_header_value("X-Api-Key");
    std::string auth = req.get_header_value("Authorization");
    if (given.empty() && auth.rfind("Bearer ", 0) == 0) {
      given = auth.substr(7);
    }
    return given.size() == api_key.size() &&
           CRYPTO_memcmp(given.data(), api_key.data(), api_key.size()) == 0;
  }

  void Infer(const httplib::Request& req, httplib::Response& res, const std::string& body) {
    auto arrival = steady_clock::now();
    auto target = Target(req);
    if (!target) {
      return SendError(res, target.error());
    }
    const auto& served = *target;
    std::optional<std::uint64_t> header_length;
    if (req.has_header("Inference-Header-Content-Length")) {
      std::string h = req.get_header_value("Inference-Header-Content-Length");
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(h.data(), h.data() + h.size(), n);
      if (ec != std::errc() || end != h.data() + h.size()) {
        return SendError(res, 400, "Inference-Header-Content-Length is not a number: " + h);
      }
      header_length = n;
    }
    auto request = ParseInferRequest(body, header_length);
    if (!request) {
      served->stats.fail.Add(steady_clock::now() - arrival);
      return SendError(res, request.error());
    }
    for (const auto& o : request->outputs) {
      bool known = std::any_of(served->signature.outputs.begin(), served->signature.outputs.end(),
                               [&](const auto& s) { return s.name == o.name; });
      if (!known) {
        served->stats.fail.Add(steady_clock::now() - arrival);
        return SendError(res, 400,
                         "unknown output \"" + o.name + "\" requested from " + served->name);
      }
    }
    auto outputs = Execute(*served, std::move(request->inputs), arrival);
    if (!outputs) {
      return SendError(res, outputs.error());
    }
    if (!request->outputs.empty()) {
      std::vector<runtime::Tensor> wanted;
      for (auto& t : *outputs) {
        bool asked = std::any_of(request->outputs.begin(), request->outputs.end(),
                                 [&](const auto& o) { return o.name == t.name; });
        if (asked) {
          wanted.push_back(std::move(t));
        }
      }
      *outputs = std::move(wanted);
    }
    auto encoded =
        EncodeInferResponse(served->name, served->version, request->id, *outputs, *request);
    // Moved into the response rather than through set_content, which copies: the body holds
    // every output tensor.
    if (encoded.header_length) {
      res.set_header("Inference-Header-Content-Length", std::to_string(*encoded.header_length));
      res.set_header("Content-Type", "application/octet-stream");
    } else {
      res.set_header("Content-Type", kJson);
    }
    res.body = std::move(encoded.body);
    res.status = 200;
  }

  json Status() const {
    json models = json::array();
    auto ready = repo.Ready();
    for (const auto& s : repo.Index()) {
      json m = {{"name", s.name},
                {"version", s.version},
                {"release_counter", s.release_counter},
                {"state", ModelStateName(s.state)}};
      if (!s.reason.empty()) {
        m["reason"] = s.reason;
      }
      for (const auto& v : ready) {
        if (v->name == s.name && v->version == s.version) {
          m["index_digest"] = v->index_digest;
          m["loaded_at"] =
              FormatRfc3339(std::chrono::time_point_cast<std::chrono::seconds>(v->loaded_at));
          m["load_ms"] = v->load_duration.count();
          m["warmup_samples"] = v->warmup_samples;
          m["queue_depth"] = v->scheduler->QueueDepth();
          m["dynamic_batching"] = v->scheduler->batching();
          m["pipeline"] = !v->pipeline.empty();
          m["requests"] = {{"success", v->stats.success.count.load()},
                           {"failure", v->stats.fail.count.load()},
                           {"rejected", v->stats.rejected.load()},
                           {"timed_out", v->stats.timed_out.load()}};
        }
      }
      models.push_back(std::move(m));
    }
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now() - started);
    return {{"agent",
             {{"version", AIRLOCK_VERSION},
              {"platform", platform},
              {"onnxruntime", runtime_version},
              {"store", config.store.string()},
              {"started_at",
               FormatRfc3339(std::chrono::time_point_cast<std::chrono::seconds>(started))},
              {"uptime_seconds", uptime.count()}}},
            {"ready", repo.AllReady()},
            {"models", models},
            {"http", {{"requests", http_requests.load()}, {"errors", http_errors.load()}}}};
  }

  // Checks the API key in the handler, after httplib has read the body: refusing in a
  // pre-routing handler would leave the body unread on a keep-alive connection.
  httplib::Server::Handler Guarded(httplib::Server::Handler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      if (!Authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer");
        return SendError(res, 401, "missing or wrong API key (send Authorization: Bearer KEY)");
      }
      handler(req, res);
    };
  }

  // A request body read through httplib's content reader: that path skips httplib's form parsing
  // (and its 8 KiB limit on form bodies, which is what curl -d sends by default). From a
  // multipart form (curl -F file=@tag.jpg), the first part, with its file name and type.
  struct Body {
    std::string bytes;
    std::string content_type;
    std::string name;
  };
  using BodyHandler = std::function<void(const httplib::Request&, httplib::Response&, Body&)>;

  httplib::Server::HandlerWithContentReader WithBody(BodyHandler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) {
      Body body;
      body.content_type = req.get_header_value("Content-Type");
      if (req.is_multipart_form_data()) {
        int part = 0;
        reader(
            [&](const httplib::MultipartFormData& f) {
              if (++part == 1) {
                body.name = f.filename;
                body.content_type = f.content_type;
              }
              return true;
            },
            [&](const char* data, std::size_t n) {
              if (part == 1) {
                body.bytes.append(data, n);
              }
              return true;
            });
      } else {
        // httplib hands the body over in 4 KiB pieces: reserve it whole once (Content-Length,
        // which httplib has already held to max_request_size) instead of regrowing the string.
        std::uint64_t length = req.get_header_value<std::uint64_t>("Content-Length");
        if (length <= config.http.max_request_size) {
          body.bytes.reserve(static_cast<std::size_t>(length));
        }
        reader([&](const char* data, std::size_t n) {
          body.bytes.append(data, n);
          return true;
        });
      }
      if (res.status >= 400) {
        return;  // httplib refused the body (too large)
      }
      if (!Authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer");
        return SendError(res, 401, "missing or wrong API key (send Authorization: Bearer KEY)");
      }
      handler(req, res, body);
    };
  }

  void Routes() {
    auto& s = *server;
    // Paths of one model, optionally one version: matches[1] is the model, [2] the version.
    const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
    auto get = [&](const std::string& pattern, httplib::Server::Handler h) {
      s.Get(pattern, Guarded(std::move(h)));
    };
    auto post = [&](const std::string& pattern, httplib::Server::Handler h) {
      s.Post(pattern, Guarded(std::move(h)));
    };

    s.Get("/v2/health/live",
          [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
    s.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
      res.status = repo.AllReady() ? 200 : 400;
    });
    get("/v2", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, {{"name", "airlock-agent"},
                     {"version", AIRLOCK_VERSION},
                     {"extensions",
                      {"binary_tensor_data", "model_repository", "statistics",
                       "model_configuration", "schedule_policy"}}});
    });
    get(model, [this](const httplib::Request& req, httplib::Response& res) {
      auto v = Target(req);
      if (!v) {
        return SendError(res, v.error());
      }
      json versions = json::array();
      for (const auto& status : repo.VersionsOf((*v)->name)) {
        if (status.state == ModelState::kReady) {
          versions.push_back(status.version);
        }
      }
      json inputs = json::array(), outputs = json::array();
      for (const auto& t : (*v)->signature.inputs) {
        inputs.push_back(TensorMetadata(t));
      }
      for (const auto& t : (*v)->signature.outputs) {
        outputs.push_back(TensorMetadata(t));
      }
      SendJson(res, {{"name", (*v)->name},
                     {"versions", versions},
                     {"platform", "onnxruntime_onnx"},
                     {"inputs", inputs},
                     {"outputs", outputs}});
    });
    get(model + "/ready", [this](const httplib::Request& req, httplib::Response& res) {
      res.status = Target(req) ? 200 : 400;
    });
    get(model + "/config", [this](const httplib::Request& req, httplib::Response& res) {
      auto v = Target(req);
      if (!v) {
        return SendError(res, v.error());
      }
      SendJson(res, ModelConfigJson(**v));
    });
    get(R"(/v2/models(?:/([^/]+)(?:/versions/([^/]+))?)?/stats)",
        [this](const httplib::Request& req, httplib::Response& res) {
          json stats = json::array();
          std::string name = req.matches[1], version = req.matches[2];
          if (name.empty()) {
            for (const auto& v : repo.Ready()) {
              stats.push_back(StatsJson(*v));
            }
          } else if (version.empty()) {
            auto found = repo.Find(name);
            if (!found) {
              return SendError(res, found.error());
            }
            for (const auto& v : repo.Ready()) {
              if (v->name == name) {
                stats.push_back(StatsJson(*v));
              }
            }
          } else {
            auto v = repo.Find(name, version);
            if (!v) {
              return SendError(res, v.error());
            }
            stats.push_back(StatsJson(**v));
          }
          SendJson(res, {{"model_stats", stats}});
        });
    s.Post(model + "/infer", WithBody([this](const httplib::Request& req, httplib::Response& res,
                                             Body& body) { Infer(req, res, body.bytes); }));
    post("/v2/repository/index", [this](const httplib::Request& req, httplib::Response& res) {
      bool only_ready = false;
      if (!req.body.empty()) {
        json body = json::parse(req.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
          return SendError(res, 400, "the request body is not a JSON object");
        }
        auto it = body.find("ready");
        only_ready = it != body.end() && it->is_boolean() && it->get<bool>();
      }
      json list = json::array();
      for (const auto& status : repo.Index()) {
        if (only_ready && status.state != ModelState::kReady) {
          continue;
        }
        json e = {{"name", status.name},
                  {"version", status.version},
                  {"state", ModelStateName(status.state)},
                  {"reason", status.reason}};
        list.push_back(std::move(e));
      }
      SendJson(res, list);
    });
    post(R"(/v2/repository/models/([^/]+)/load)",
         [this](const httplib::Request& req, httplib::Response& res) {
           auto st = repo.Load(req.matches[1]);
           if (!st) {
             return SendError(res, st.error());
           }
           res.status = 200;
         });
    post(R"(/v2/repository/models/([^/]+)/unload)",
         [this](const httplib::Request& req, httplib::Response& res) {
           auto st = repo.Unload(req.matches[1]);
           if (!st) {
             return SendError(res, st.error());
           }
           res.status = 200;
         });
    get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      prometheus::MetricsText text;
      RenderMetrics(repo, text);
      text.Family("airlock_http_requests_total", prometheus::MetricType::kCounter,
                  "HTTP requests received");
      text.Sample(http_requests.load());
      text.Family("airlock_http_errors_total", prometheus::MetricType::kCounter,
                  "HTTP responses with status >= 400");
      text.Sample(http_errors.load());
      if (metrics_appender) {
        metrics_appender(text);
      }
      res.set_content(text.Text(), prometheus::kMetricsContentType);
    });
    get("/api/v1/status",
        [this](const httplib::Request&, httplib::Response& res) { SendJson(res, Status()); });
    s.Post(R"(/api/v1/models/([^/]+)(?:/versions/([^/]+))?/predict)",
           WithBody([this](const httplib::Request& req, httplib::Response& res, Body& body) {
             auto v = Target(req);
             if (!v) {
               return SendError(res, v.error());
             }
             std::string name = req.has_param("name") ? req.get_param_value("name") : body.name;
             pipeline::Input in{std::move(body.bytes), PipelineContentType(body.content_type),
                                std::move(name)};
             auto result = Predict(**v, in);
             if (!result) {
               return SendError(res, result.error());
             }
             SendJson(res, *result);
           }));
  }
};

AgentServer::AgentServer(ModelRepository& repository, std::string platform,
                         std::string runtime_version)
    : impl_(std::make_unique<Impl>(repository, std::move(platform), std::move(runtime_version))) {}

AgentServer::~AgentServer() = default;

void AgentServer::SetMetricsAppender(MetricsAppender appender) {
  impl_->metrics_appender = std::move(appender);
}

Status AgentServer::Bind() {
  const HttpConfig& http = impl_->config.http;
  if (!http.api_key_file.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string key, ReadFile(http.api_key_file, kMaxApiKey));
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) {
      key.pop_back();
    }
    if (key.size() < 16) {
      return Fail(ErrorCode::kInvalidArgument,
                  http.api_key_file.string() + ": the API key must be at least 16 characters");
    }
    impl_->api_key = std::move(key);
  }
  if (!http.tls_cert.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(http.tls_cert.c_str(), http.tls_key.c_str());
    if (!ssl->is_valid()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "cannot use the TLS certificate " + http.tls_cert.string() + " and key " +
                      http.tls_key.string() + " (unreadable, or they do not match)");
    }
    impl_->server = std::move(ssl);
  } else {
    impl_->server = std::make_unique<httplib::Server>();
  }
  auto& s = *impl_->server;
  int threads = http.threads;
  s.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(1000000);
  s.set_payload_max_length(http.max_request_size);
  s.set_read_timeout(30);
  s.set_write_timeout(30);
  Impl* impl = impl_.get();
  s.set_pre_routing_handler([impl](const httplib::Request&, httplib::Response&) {
    impl->http_requests.fetch_add(1, std::memory_order_relaxed);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_post_routing_handler([impl](const httplib::Request&, httplib::Response& res) {
    if (res.status >= 400) {
      impl->http_errors.fetch_add(1, std::memory_order_relaxed);
    }
  });
  std::uint64_t max_size = http.max_request_size;
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [max_size](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) {
          return httplib::Server::HandlerResponse::Unhandled;  // ours already
        }
        if (res.status == 413) {
          SendError(res, 413,
                    "the request body is larger than http.max_request_size (" +
                        std::to_string(max_size) + " bytes)");
        } else if (res.status == 404) {
          SendError(res, 404, "no such route: " + req.method + " " + req.path);
        } else if (res.status >= 400) {
          SendError(res, res.status,
                    "malformed HTTP request (a POST without a body needs Content-Length: 0, e.g. "
                    "curl -d '')");
        }
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        SendError(res, 500, net::InternalErrorMessage(ep));
      });
  impl_->Routes();
  AIRLOCK_ASSIGN_OR_RETURN(port_, net::BindHttpServer(s, http.address, http.port));
  return {};
}

void AgentServer::Serve() { impl_->loop.Serve(*impl_->server); }

void AgentServer::Stop() {
  if (impl_->server) {
    impl_->loop.Stop(*impl_->server);
  }
}

}  // namespace airlock::agent
