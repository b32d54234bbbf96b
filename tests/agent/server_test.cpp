// The agent's HTTP API over real HTTP on 127.0.0.1: every endpoint, the error cases, hot swap,
// bounded queues, dynamic batching and the API key.

#include <onnx/onnx_pb.h>

#include <atomic>
#include <condition_variable>

#include "agent/agent_fixture.hpp"
#include "agent/oip_codec.hpp"
#include "support/tensors.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::DataType;
using runtime::Tensor;

json Affine(std::vector<float> x, std::int64_t rows = 1) {
  return {{"inputs",
           {{{"name", "x"},
             {"datatype", "FP32"},
             {"shape", {rows, static_cast<std::int64_t>(x.size()) / rows}},
             {"data", x}}}}};
}

json Parse(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no response";
  return r ? json::parse(r->body, nullptr, false) : json();
}

// Holds backend executions until opened.
class Gate {
 public:
  void Close() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Pass() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
};

class GatedBackend final : public runtime::InferenceBackend {
 public:
  GatedBackend(std::unique_ptr<runtime::InferenceBackend> inner, Gate& gate)
      : inner_(std::move(inner)), gate_(gate) {}
  const runtime::ModelSignature& signature() const override { return inner_->signature(); }
  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    gate_.Pass();
    return inner_->Run(inputs);
  }

 private:
  std::unique_ptr<runtime::InferenceBackend> inner_;
  Gate& gate_;
};

// Polls until pred holds (10 s at most).
template <typename Pred>
bool Eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

class ServerTest : public AgentFixture {};

TEST_F(ServerTest, HealthMetadataAndConfig) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  ASSERT_TRUE(load_errors_.empty());
  auto c = Client();
  EXPECT_EQ(c->Get("/v2/health/live")->status, 200);
  EXPECT_EQ(c->Get("/v2/health/ready")->status, 200);
  auto server = Parse(c->Get("/v2"));
  EXPECT_EQ(server["name"], "airlock-agent");
  EXPECT_NE(server["extensions"].dump().find("binary_tensor_data"), std::string::npos);

  auto meta = Parse(c->Get("/v2/models/affine"));
  EXPECT_EQ(meta["name"], "affine");
  EXPECT_EQ(meta["versions"], json::array({"1.0.0"}));
  EXPECT_EQ(meta["platform"], "onnxruntime_onnx");
  EXPECT_EQ(meta["inputs"][0], json({{"name", "x"}, {"datatype", "FP32"}, {"shape", {-1, 4}}}));
  EXPECT_EQ(meta["outputs"][0]["name"], "y");
  EXPECT_EQ(Parse(c->Get("/v2/models/affine/versions/1.0.0"))["name"], "affine");

  EXPECT_EQ(c->Get("/v2/models/affine/ready")->status, 200);
  EXPECT_EQ(c->Get("/v2/models/affine/versions/1.0.0/ready")->status, 200);
  EXPECT_EQ(c->Get("/v2/models/affine/versions/2.0.0/ready")->status, 400);
  EXPECT_EQ(c->Get("/v2/models/nothing/ready")->status, 400);

  auto config = Parse(c->Get("/v2/models/affine/config"));
  EXPECT_EQ(config["platform"], "onnxruntime_onnx");
  EXPECT_EQ(config["max_batch_size"], 0);
  EXPECT_EQ(config["input"][0]["data_type"], "TYPE_FP32");
  EXPECT_EQ(config["input"][0]["dims"], json({-1, 4}));

  auto missing = c->Get("/v2/models/nothing");
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(Parse(missing)["error"], "unknown model \"nothing\"");
  auto no_route = c->Get("/v3/anything");
  EXPECT_EQ(no_route->status, 404);
  EXPECT_TRUE(Parse(no_route).contains("error"));
}

TEST_F(ServerTest, InfersWithJsonTensors) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  auto c = Client();
  json request = Affine({0, 1, 2, 3, 4, 5, 6, 7}, 2);
  request["id"] = "req-7";
  auto r = c->Post("/v2/models/affine/infer", request.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto body = Parse(r);
  EXPECT_EQ(body["model_name"], "affine");
  EXPECT_EQ(body["model_version"], "1.0.0");
  EXPECT_EQ(body["id"], "req-7");
  EXPECT_EQ(body["outputs"][0]["name"], "y");
  EXPECT_EQ(body["outputs"][0]["shape"], json({2, 4}));
  EXPECT_EQ(body["outputs"][0]["data"], json({1, 3, 5, 7, 9, 11, 13, 15}));

  // The same through the version's own route.
  r = c->Post("/v2/models/affine/versions/1.0.0/infer", Affine({1, 1, 1, 1}).dump(),
              "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Parse(r)["outputs"][0]["data"], json({3, 3, 3, 3}));
}

// Every datatype ONNX Runtime's Identity takes, through the binary extension and through JSON.
TEST_F(ServerTest, BinaryAndJsonRoundTripForEveryDatatype) {
  using P = onnx::TensorProto;
  std::vector<int> types = {P::BOOL,  P::UINT8,  P::UINT16, P::UINT32,  P::UINT64,
                            P::INT8,  P::INT16,  P::INT32,  P::INT64,   P::FLOAT16,
                            P::FLOAT, P::DOUBLE, P::STRING, P::BFLOAT16};
  Install(IdentityProject("identity", types), "1.0.0", 1);
  StartServer();
  ASSERT_TRUE(load_errors_.empty()) << load_errors_.front().ToString();
  auto c = Client();

  // Two rows of three elements each, distinct bytes per type.
  std::vector<Tensor> inputs;
  for (int type : types) {
    Tensor t;
    t.dtype = runtime::FromOnnxType(type).value();
    t.name = "in_" + std::string(runtime::DataTypeName(t.dtype));
    t.shape = {2, 3};
    if (t.dtype == DataType::kBytes) {
      t.strings = {"", "a", std::string("nul\0byte", 8), "\xff\xfe binary", "sixth", "é"};
    } else if (t.dtype == DataType::kBool) {
      t.data = std::string("\x01\x00\x01\x01\x00\x00", 6);
    } else {
      std::size_t n = runtime::ElementSize(t.dtype) * 6;
      for (std::size_t i = 0; i < n; ++i) {
        // Keep FP16/BF16/FP32/FP64 values finite and ordinary: small mantissa-only patterns.
        t.data +=
            static_cast<char>(i % runtime::ElementSize(t.dtype) == runtime::ElementSize(t.dtype) - 1
                                  ? 0x3c
                                  : (i * 7 + 1) & 0x7f);
      }
    }
    ASSERT_TRUE(t.CheckConsistent());
    inputs.push_back(std::move(t));
  }

  // Binary request: JSON header then each tensor's bytes; outputs in binary too.
  auto request = EncodeInferRequest(inputs, {.binary_inputs = true, .binary_outputs = true});
  ASSERT_TRUE(request.header_length);
  httplib::Headers h = {
      {"Inference-Header-Content-Length", std::to_string(*request.header_length)}};
  auto r = c->Post("/v2/models/identity/infer", h, request.body, "application/octet-stream");
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_TRUE(r->has_header("Inference-Header-Content-Length"));
  auto outputs = ParseInferResponse(
      r->body, std::stoull(r->get_header_value("Inference-Header-Content-Length")));
  ASSERT_TRUE(outputs) << outputs.error().ToString();
  ASSERT_EQ(outputs->outputs.size(), inputs.size());
  for (const auto& in : inputs) {
    SCOPED_TRACE(in.name);
    std::string out_name = "out_" + in.name.substr(3);
    auto it = std::find_if(outputs->outputs.begin(), outputs->outputs.end(),
                           [&](const Tensor& t) { return t.name == out_name; });
    ASSERT_NE(it, outputs->outputs.end());
    EXPECT_EQ(it->dtype, in.dtype);
    EXPECT_EQ(it->shape, in.shape);
    EXPECT_EQ(it->data, in.data);
    EXPECT_EQ(it->strings, in.strings);
  }

  // JSON both ways (BYTES must be valid UTF-8 in JSON, so use printable strings there).
  json jreq = {{"inputs", json::array()}};
  for (auto t : inputs) {
    if (t.dtype == DataType::kBytes) {
      t.strings = {"", "a", "b c", "d", "sixth", "é"};
    }
    jreq["inputs"].push_back(TensorToJson(t));
  }
  r = c->Post("/v2/models/identity/infer", jreq.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto jres = Parse(r);
  for (const auto& in : jreq["inputs"]) {
    std::string out_name = "out_" + in["name"].get<std::string>().substr(3);
    bool found = false;
    for (const auto& out : jres["outputs"]) {
      if (out["name"] == out_name) {
        found = true;
        EXPECT_EQ(out["data"], in["data"]) << out_name;
        EXPECT_EQ(out["datatype"], in["datatype"]);
      }
    }
    EXPECT_TRUE(found) << out_name;
  }
}

TEST_F(ServerTest, BadRequestsGetTheRightStatusAndTheServerKeepsServing) {
  Install(affine_dir(), "1.0.0", 1);
  AgentConfig config;
  config.http.max_request_size = 64 * 1024;
  StartServer(config);
  auto c = Client();
  struct Case {
    const char* what;
    std::string path;
    std::string body;
    httplib::Headers headers;
    int status;
    const char* message;  // a part of the error
  };
  std::string big(100 * 1024, ' ');
  std::vector<Case> cases = {
      {"malformed JSON", "/v2/models/affine/infer", "{\"inputs\": [", {}, 400, "malformed JSON"},
      {"not an object", "/v2/models/affine/infer", "[1,2]", {}, 400, "not a JSON object"},
      {"wrong input name",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"z","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]})",
       {},
       400,
       "no input named \"z\""},
      {"wrong shape",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,5],"data":[1,2,3,4,5]}]})",
       {},
       400,
       "x"},
      {"wrong datatype",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1,4],"data":[1,2,3,4]}]})",
       {},
       400,
       "INT32"},
      {"count does not match shape",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3]}]})",
       {},
       400,
       "needs 4"},
      {"binary size does not match shape",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":8}}]})" +
           std::string(8, '\0'),
       {{"Inference-Header-Content-Length", "87"}},
       400,
       ""},
      {"header length past the body",
       "/v2/models/affine/infer",
       R"({"inputs":[]})",
       {{"Inference-Header-Content-Length", "9999"}},
       400,
       "past the end"},
      {"header length not a number",
       "/v2/models/affine/infer",
       R"({"inputs":[]})",
       {{"Inference-Header-Content-Length", "12abc"}},
       400,
       "not a number"},
      {"huge declared shape",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[4294967296,4294967296],"data":[1]}]})",
       {},
       400,
       ""},
      {"unknown output",
       "/v2/models/affine/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}],"outputs":[{"name":"nope"}]})",
       {},
       400,
       "unknown output \"nope\""},
      {"unknown model",
       "/v2/models/nope/infer",
       Affine({1, 2, 3, 4}).dump(),
       {},
       404,
       "unknown model"},
      {"unknown version",
       "/v2/models/affine/versions/7/infer",
       Affine({1, 2, 3, 4}).dump(),
       {},
       404,
       "unknown version"},
      {"body over the limit", "/v2/models/affine/infer", big, {}, 413, "max_request_size"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.what);
    auto r = c->Post(k.path, k.headers, k.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, k.status) << r->body;
    auto body = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r->body;
    ASSERT_TRUE(body.contains("error"));
    EXPECT_NE(body["error"].get<std::string>().find(k.message), std::string::npos) << body["error"];
    // Still serving.
    auto good = c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
    ASSERT_TRUE(good);
    EXPECT_EQ(good->status, 200);
  }
  auto stats = Parse(c->Get("/v2/models/affine/stats"));
  EXPECT_EQ(stats["model_stats"][0]["inference_stats"]["success"]["count"], cases.size());
  EXPECT_GT(stats["model_stats"][0]["inference_stats"]["fail"]["count"].get<int>(), 0);
}

TEST_F(ServerTest, RepositoryIndexLoadAndUnload) {
  Install(affine_dir(), "1.0.0", 1);
  Install(affine_dir(), "1.1.0", 2);
  AgentConfig config;
  config.model_control = AgentConfig::ModelControl::kExplicit;
  StartServer(config);
  auto c = Client();
  auto index = Parse(c->Post("/v2/repository/index", "", "application/json"));
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");
  EXPECT_EQ(index[0]["reason"], "not loaded");
  EXPECT_EQ(
      c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json")->status,
      404);

  ASSERT_EQ(c->Post("/v2/repository/models/affine/load", "", "application/json")->status, 200);
  index = Parse(c->Post("/v2/repository/index", "{}", "application/json"));
  EXPECT_EQ(index[0]["version"], "1.0.0");
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");  // latest 1: only 1.1.0 serves
  EXPECT_EQ(index[1]["version"], "1.1.0");
  EXPECT_EQ(index[1]["state"], "READY");
  auto ready_only =
      Parse(c->Post("/v2/repository/index", R"({"ready": true})", "application/json"));
  EXPECT_EQ(ready_only.size(), 1u);
  auto r = c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
  EXPECT_EQ(Parse(r)["model_version"], "1.1.0");

  ASSERT_EQ(c->Post("/v2/repository/models/affine/unload", "", "application/json")->status, 200);
  index = Parse(c->Post("/v2/repository/index", "", "application/json"));
  EXPECT_EQ(index[1]["state"], "UNAVAILABLE");
  EXPECT_EQ(index[1]["reason"], "unloaded");
  r = c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(Parse(r)["error"].get<std::string>().find("no ready version"), std::string::npos);
  EXPECT_EQ(c->Get("/v2/health/ready")->status, 200);  // unloaded on purpose: nothing is due

  auto missing = c->Post("/v2/repository/models/ghost/load", "", "application/json");
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(Parse(missing)["error"].get<std::string>().find("not installed"), std::string::npos);
}

TEST_F(ServerTest, VersionPolicies) {
  Install(affine_dir(), "1.0.0", 1);
  Install(affine_dir(), "1.1.0", 2);
  Install(affine_dir(), "1.2.0", 3);
  AgentConfig config;
  config.models["affine"].versions = {
      VersionPolicy::Kind::kSpecific, 0, {"1.0.0", "1.2.0", "9.9.9"}};
  StartServer(config);
  auto c = Client();
  auto index = Parse(c->Post("/v2/repository/index", "", "application/json"));
  std::map<std::string, std::string> states;
  for (const auto& e : index) {
    states[e["version"]] = e["state"];
  }
  EXPECT_EQ(states["1.0.0"], "READY");
  EXPECT_EQ(states["1.1.0"], "UNAVAILABLE");
  EXPECT_EQ(states["1.2.0"], "READY");
  EXPECT_EQ(states["9.9.9"], "UNAVAILABLE");
  EXPECT_EQ(Parse(c->Post("/v2/models/affine/versions/1.0.0/infer", Affine({1, 1, 1, 1}).dump(),
                          "application/json"))["model_version"],
            "1.0.0");
  EXPECT_EQ(c->Post("/v2/models/affine/versions/1.1.0/infer", Affine({1, 1, 1, 1}).dump(),
                    "application/json")
                ->status,
            503);
  // Without a version: the highest release counter that is ready.
  EXPECT_EQ(Parse(c->Post("/v2/models/affine/infer", Affine({1, 1, 1, 1}).dump(),
                          "application/json"))["model_version"],
            "1.2.0");
  c.reset();  // a keep-alive connection would hold the server's shutdown
  StopServer();

  config.models["affine"].versions = {VersionPolicy::Kind::kAll, 0, {}};
  StartServer(config);
  index = Parse(Client()->Post("/v2/repository/index", "", "application/json"));
  for (const auto& e : index) {
    EXPECT_EQ(e["state"], "READY") << e.dump();
  }
}

// A new version that fails its warm-up never serves; the old one keeps serving.
TEST_F(ServerTest, AVersionThatFailsWarmUpLeavesThePreviousOneServing) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  // The same model with expected outputs that it does not produce.
  fs::copy(affine_dir(), tmp_ / "broken", fs::copy_options::recursive);
  airlock::testing::WriteNpy(tmp_ / "broken/samples/0/y.npy",
                             airlock::testing::Fp32("y", {1, 4}, {9, 9, 9, 9}));
  Install(tmp_ / "broken", "2.0.0", 2, /*validate=*/false);
  auto c = Client();
  auto r = c->Post("/v2/repository/models/affine/load", "", "application/json");
  EXPECT_EQ(r->status, 200) << r->body;  // 1.0.0 still satisfies latest 1
  auto index = Parse(c->Post("/v2/repository/index", "", "application/json"));
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[0]["version"], "1.0.0");
  EXPECT_EQ(index[0]["state"], "READY");
  EXPECT_EQ(index[1]["version"], "2.0.0");
  EXPECT_EQ(index[1]["state"], "UNAVAILABLE");
  EXPECT_NE(index[1]["reason"].get<std::string>().find("warm-up"), std::string::npos)
      << index[1]["reason"];
  r = c->Post("/v2/models/affine/infer", Affine({1, 1, 1, 1}).dump(), "application/json");
  EXPECT_EQ(Parse(r)["model_version"], "1.0.0");
  auto status = Parse(c->Get("/api/v1/status"));
  EXPECT_EQ(status["models"][1]["state"], "UNAVAILABLE");
  EXPECT_TRUE(status["ready"]);
}

// What a gateway-managed device does (agent/activation.hpp): the pinned version serves even
// when a newer one is installed; a candidate is preloaded (warmed up, its samples checked) beside
// it without serving; Pin commits it; a pin to a version that fails leaves everything as it was.
TEST_F(ServerTest, APinServesOneVersionAPreloadedCandidateWaitsAndAFailedPinChangesNothing) {
  Install(affine_dir(), "1.0.0", 1);
  Install(affine_dir(), "1.1.0", 2);
  fs::copy(affine_dir(), tmp_ / "broken", fs::copy_options::recursive);
  airlock::testing::WriteNpy(tmp_ / "broken/samples/0/y.npy",
                             airlock::testing::Fp32("y", {1, 4}, {9, 9, 9, 9}));
  Install(tmp_ / "broken", "2.0.0", 3, /*validate=*/false);
  AgentConfig config;
  config.model_control = AgentConfig::ModelControl::kExplicit;
  StartServer(config);
  repo_->SetPin("affine", "1.0.0");
  ASSERT_TRUE(repo_->Load("affine"));
  auto served = [&] { return repo_->Find("affine").value()->version; };
  auto state = [&](const std::string& version) {
    for (const auto& v : repo_->VersionsOf("affine")) {
      if (v.version == version) {
        return std::string(ModelStateName(v.state));
      }
    }
    return std::string("absent");
  };
  EXPECT_EQ(served(), "1.0.0");
  EXPECT_EQ(state("1.1.0"), "UNAVAILABLE");

  // Preloaded: ready to be asked for by version, but requests without one stay on the pin.
  ASSERT_TRUE(repo_->Preload("affine", "1.1.0"));
  EXPECT_EQ(state("1.1.0"), "READY");
  EXPECT_EQ(served(), "1.0.0");
  EXPECT_TRUE(repo_->Find("affine", "1.1.0"));

  // A candidate whose samples do not reproduce: the preload fails with the reason.
  auto bad = repo_->Preload("affine", "2.0.0");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().ToString().find("warm-up"), std::string::npos) << bad.error().ToString();
  EXPECT_EQ(repo_->Preload("affine", "9.9.9").error().code(), ErrorCode::kNotFound);

  // Commit: 1.1.0 serves alone.
  ASSERT_TRUE(repo_->Pin("affine", "1.1.0"));
  EXPECT_EQ(served(), "1.1.0");
  EXPECT_EQ(state("1.0.0"), "UNAVAILABLE");

  // Pinning the broken version fails and changes nothing: 1.1.0 still serves, still pinned.
  ASSERT_FALSE(repo_->Pin("affine", "2.0.0"));
  EXPECT_EQ(served(), "1.1.0");
  ASSERT_TRUE(repo_->Load("affine"));
  EXPECT_EQ(served(), "1.1.0");
  EXPECT_EQ(state("2.0.0"), "UNAVAILABLE");

  // Roll back: the previous version loads again and serves alone.
  ASSERT_TRUE(repo_->Pin("affine", "1.0.0"));
  EXPECT_EQ(served(), "1.0.0");
  EXPECT_EQ(state("1.1.0"), "UNAVAILABLE");
  auto r = Client()->Post("/v2/models/affine/infer", Affine({1, 1, 1, 1}).dump(),
                          "application/json");
  EXPECT_EQ(Parse(r)["model_version"], "1.0.0");
}

TEST_F(ServerTest, HotSwapUnderConcurrentLoadFailsNoRequest) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, from_new{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      auto c = Client();
      while (!stop.load()) {
        auto r =
            c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
        if (r && r->status == 200 && Parse(r)["outputs"][0]["data"] == json({3, 5, 7, 9})) {
          ++ok;
          from_new += Parse(r)["model_version"] == "1.1.0" ? 1 : 0;
        } else {
          ++failed;
        }
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return ok.load() > 50; }));
  Install(affine_dir(), "1.1.0", 2);
  auto load = Client()->Post("/v2/repository/models/affine/load", "", "application/json");
  EXPECT_EQ(load->status, 200);
  int at_swap = ok.load();
  ASSERT_TRUE(Eventually([&] { return ok.load() > at_swap + 50 && from_new.load() > 20; }));
  stop = true;
  for (auto& t : clients) {
    t.join();
  }
  EXPECT_EQ(failed.load(), 0);
  auto index = Parse(Client()->Post("/v2/repository/index", "", "application/json"));
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");
  EXPECT_EQ(index[1]["state"], "READY");
}

TEST_F(ServerTest, AFullQueueAnswers503AndAStuckRequestTimesOut) {
  Install(affine_dir(), "1.0.0", 1);
  Gate gate;
  AgentConfig config;
  config.defaults.instances = 1;
  config.defaults.max_queue = 1;
  config.defaults.timeout = std::chrono::milliseconds(300);
  StartServer(config, [&](std::unique_ptr<runtime::InferenceBackend> b) {
    return std::make_unique<GatedBackend>(std::move(b), gate);
  });
  gate.Close();
  auto served = repo_->Find("affine").value();
  // One runs (held at the gate), one waits, the third is refused.
  std::thread first([&] {
    auto r =
        Client()->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
    EXPECT_EQ(r->status, 200);
  });
  ASSERT_TRUE(Eventually([&] { return served->scheduler->QueueDepth() == 1; }));
  std::thread second([&] {
    auto r =
        Client()->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
    EXPECT_EQ(r->status, 503);
    EXPECT_NE(r->body.find("timed out"), std::string::npos) << r->body;
  });
  ASSERT_TRUE(Eventually([&] { return served->scheduler->QueueDepth() == 2; }));
  auto third =
      Client()->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
  EXPECT_EQ(third->status, 503);
  EXPECT_NE(third->body.find("queue is full"), std::string::npos) << third->body;
  second.join();  // times out while the first is held
  gate.Open();
  first.join();
  auto metrics = Client()->Get("/metrics")->body;
  EXPECT_NE(metrics.find("airlock_inference_rejected_total{model=\"affine\",version=\"1.0.0\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("airlock_inference_timeout_total{model=\"affine\",version=\"1.0.0\"} 1"),
            std::string::npos);
}

TEST_F(ServerTest, DynamicBatchingRunsConcurrentRequestsAsOneBatch) {
  Install(affine_dir(), "1.0.0", 1);
  AgentConfig config;
  // A long delay: the batch runs when it is full, which makes the test deterministic.
  config.defaults.batching = DynamicBatching{4, std::chrono::seconds(10)};
  StartServer(config);
  auto c = Client();
  EXPECT_EQ(Parse(c->Get("/v2/models/affine/config"))["max_batch_size"], 4);
  EXPECT_EQ(Parse(c->Get("/v2/models/affine/config"))["input"][0]["dims"], json({4}));
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      float v = static_cast<float>(i);
      auto r = Client()->Post("/v2/models/affine/infer", Affine({v, v, v, v}).dump(),
                              "application/json");
      ASSERT_EQ(r->status, 200) << r->body;
      float y = 2 * v + 1;
      EXPECT_EQ(Parse(r)["outputs"][0]["data"], json({y, y, y, y}));
      EXPECT_EQ(Parse(r)["outputs"][0]["shape"], json({1, 4}));
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  auto stats = Parse(c->Get("/v2/models/affine/versions/1.0.0/stats"))["model_stats"][0];
  // Warm-up ran before the scheduler existed, so these are the requests alone.
  EXPECT_EQ(stats["execution_count"], 1);
  EXPECT_EQ(stats["inference_count"], 4);
  EXPECT_EQ(stats["batch_stats"][0]["batch_size"], 4);

  auto too_big = c->Post("/v2/models/affine/infer", Affine(std::vector<float>(20, 1.0f), 5).dump(),
                         "application/json");
  EXPECT_EQ(too_big->status, 400);
  EXPECT_NE(too_big->body.find("max_batch_size"), std::string::npos);
}

TEST_F(ServerTest, AnApiKeyGuardsEverythingButHealth) {
  Install(affine_dir(), "1.0.0", 1);
  airlock::testing::WriteAll(tmp_ / "key", "0123456789abcdef0123\n");
  AgentConfig config;
  config.http.api_key_file = tmp_ / "key";
  StartServer(config);
  auto c = Client();
  EXPECT_EQ(c->Get("/v2/health/ready")->status, 200);
  auto denied = c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4}).dump(), "application/json");
  EXPECT_EQ(denied->status, 401);
  EXPECT_EQ(c->Get("/metrics")->status, 401);
  EXPECT_EQ(c->Get("/v2/models/affine", {{"Authorization", "Bearer wrong-key-wrong-key"}})->status,
            401);
  EXPECT_EQ(c->Get("/v2/models/affine", {{"Authorization", "Bearer 0123456789abcdef0123"}})->status,
            200);
  EXPECT_EQ(c->Get("/v2/models/affine", {{"X-Api-Key", "0123456789abcdef0123"}})->status, 200);
}

TEST_F(ServerTest, MetricsUseTritonNamesAndStatusReportsModels) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  auto c = Client();
  ASSERT_EQ(c->Post("/v2/models/affine/infer", Affine({1, 2, 3, 4, 5, 6, 7, 8}, 2).dump(),
                    "application/json")
                ->status,
            200);
  auto m = c->Get("/metrics");
  ASSERT_EQ(m->status, 200);
  const std::string& text = m->body;
  for (const char* line :
       {"nv_inference_request_success{model=\"affine\",version=\"1.0.0\"} 1",
        "nv_inference_request_failure{model=\"affine\",version=\"1.0.0\"} 0",
        "nv_inference_count{model=\"affine\",version=\"1.0.0\"} 2",
        "nv_inference_exec_count{model=\"affine\",version=\"1.0.0\"} 1",
        "airlock_inference_request_duration_seconds_count{model=\"affine\",version=\"1.0.0\"} 1",
        "airlock_model_state{model=\"affine\",version=\"1.0.0\",state=\"READY\"} 1",
        "# TYPE nv_inference_request_duration_us counter",
        "# TYPE airlock_inference_request_duration_seconds histogram"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  auto status = Parse(c->Get("/api/v1/status"));
  EXPECT_TRUE(status["ready"]);
  EXPECT_EQ(status["agent"]["onnxruntime"], Ort().Version());
  EXPECT_EQ(status["models"][0]["name"], "affine");
  EXPECT_EQ(status["models"][0]["state"], "READY");
  EXPECT_EQ(status["models"][0]["warmup_samples"], 2);
  EXPECT_EQ(status["models"][0]["requests"]["success"], 1);
}

// A self-signed certificate for 127.0.0.1 and its key, made by the openssl command.
void MakeCertificate(const fs::path& cert, const fs::path& key) {
  auto made = airlock::testing::RunCommand(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key.string(), "-out", cert.string(), "-days", "2", "-subj", "/CN=127.0.0.1",
       "-addext", "subjectAltName=IP:127.0.0.1"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
}

// With http.tls the agent speaks HTTPS only: a client that trusts the certificate gets answers,
// one that does not is refused, and plain HTTP on that port gets no HTTP answer.
TEST_F(ServerTest, ServesHttpsWithTheConfiguredCertificate) {
  MakeCertificate(tmp_ / "agent.crt", tmp_ / "agent.key");
  MakeCertificate(tmp_ / "other.crt", tmp_ / "other.key");
  Install(affine_dir(), "1.0.0", 1);
  AgentConfig config;
  config.http.tls_cert = tmp_ / "agent.crt";
  config.http.tls_key = tmp_ / "agent.key";
  StartServer(config);

  httplib::SSLClient c("127.0.0.1", server_->port());
  c.set_ca_cert_path((tmp_ / "agent.crt").c_str());
  c.enable_server_certificate_verification(true);
  auto ready = c.Get("/v2/health/ready");
  ASSERT_TRUE(ready) << httplib::to_string(ready.error());
  EXPECT_EQ(ready->status, 200);
  auto infer =
      c.Post("/v2/models/affine/infer",
             R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]})",
             "application/json");
  ASSERT_TRUE(infer) << httplib::to_string(infer.error());
  EXPECT_EQ(infer->status, 200) << infer->body;

  httplib::SSLClient untrusting("127.0.0.1", server_->port());
  untrusting.set_ca_cert_path((tmp_ / "other.crt").c_str());
  untrusting.enable_server_certificate_verification(true);
  auto refused = untrusting.Get("/v2/health/live");
  EXPECT_FALSE(refused);
  EXPECT_EQ(refused.error(), httplib::Error::SSLServerVerification);

  httplib::Client plain("127.0.0.1", server_->port());
  plain.set_read_timeout(5);
  auto p = plain.Get("/v2/health/live");
  EXPECT_FALSE(p && p->status == 200);

  // The server still answers after the refused and the plain connection.
  auto again = c.Get("/v2/health/live");
  ASSERT_TRUE(again) << httplib::to_string(again.error());
  EXPECT_EQ(again->status, 200);
}

TEST_F(ServerTest, MismatchedTlsKeyIsRefusedAtStartWithTheFilesNamed) {
  MakeCertificate(tmp_ / "agent.crt", tmp_ / "agent.key");
  MakeCertificate(tmp_ / "other.crt", tmp_ / "other.key");
  ASSERT_TRUE(ModelStore::Open(store_dir()));
  AgentConfig config;
  config.store = store_dir();
  config.http.port = 0;
  config.http.tls_cert = tmp_ / "agent.crt";
  config.http.tls_key = tmp_ / "other.key";
  ModelRepository repo(store_dir(), Ort(), config, HostPlatform(), {});
  AgentServer server(repo, HostPlatform(), Ort().Version());
  auto bound = server.Bind();
  ASSERT_FALSE(bound);
  EXPECT_NE(bound.error().message().find("agent.crt"), std::string::npos)
      << bound.error().ToString();
  EXPECT_NE(bound.error().message().find("other.key"), std::string::npos);
}

}  // namespace
}  // namespace airlock::agent
