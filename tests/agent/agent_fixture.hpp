#pragma once
// A signed test package factory, a model store, and an in-process agent server on a free port of
// 127.0.0.1, for the agent's tests.

#include <gtest/gtest.h>
#include <httplib.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/http_api.hpp"
#include "agent/model_repository.hpp"
#include "agent/model_store.hpp"
#include "core/keys.hpp"
#include "pkg/fixture.hpp"
#include "pkg/release.hpp"

namespace airlock::agent {

// What `promtool check metrics` says of Triton's metric names, which the agent keeps so that
// Triton's dashboards and clients work unchanged (DESIGN §5.2): counters without _total, units
// abbreviated (_us), and _count on counters and a gauge. Tests of /metrics tolerate these lines
// and no others.
inline std::vector<std::string> TritonLintProblems() {
  std::vector<std::string> out;
  for (const char* counter :
       {"nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
        "nv_inference_exec_count", "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us"}) {
    out.push_back(std::string(counter) + " counter metrics should have \"_total\" suffix");
  }
  for (const char* us :
       {"nv_inference_request_duration_us", "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us"}) {
    out.push_back(std::string(us) + " metric names should not contain abbreviated units");
  }
  for (const char* count :
       {"nv_inference_count", "nv_inference_exec_count", "nv_inference_pending_request_count"}) {
    out.push_back(std::string(count) +
                  " non-histogram and non-summary metrics should not have \"_count\" suffix");
  }
  return out;
}

inline const TimePoint kTestNow = ParseRfc3339("2026-06-01T00:00:00Z").value();

class AgentFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    publisher_ = std::make_unique<PrivateKey>(PrivateKey::Generate().value());
    trust::Root root;
    // Ten years: the device tests judge expiry by the real clock.
    root.expires = kTestNow + std::chrono::hours(24 * 3650);
    root.keys.emplace(publisher_->id(), publisher_->public_key());
    root.roles["root"] = {{publisher_->id()}, 1};
    root.roles["publisher"] = {{publisher_->id()}, 1};
    root_ = trust::SignedDocument::Wrap(root.ToJson());
    ASSERT_TRUE(root_.Sign(*publisher_));
    airlock::testing::WriteAffineProject(tmp_ / "affine");
  }

  void TearDown() override { StopServer(); }

  static runtime::OnnxRuntime& Ort() {
    static auto ort = runtime::OnnxRuntime::Create().value();
    return *ort;
  }

  // Packs the project in dir (its airlock.yaml) as version, signs it with counter. With
  // validate false, samples are not checked (to make a package whose warm-up fails).
  // signed_at: when the release is signed (it expires 30 days later).
  std::filesystem::path PackProject(const std::filesystem::path& dir, const std::string& version,
                                    std::uint64_t counter, bool validate = true,
                                    TimePoint signed_at = kTestNow) {
    auto spec = pkg::LoadPackSpec(dir / "airlock.yaml");
    EXPECT_TRUE(spec) << spec.error().ToString();
    spec->version = version;
    return PackAndSign(*spec, counter, validate, signed_at);
  }

  std::filesystem::path PackAndSign(const pkg::PackSpec& spec, std::uint64_t counter,
                                    bool validate = true, TimePoint signed_at = kTestNow) {
    pkg::PackOptions options;
    options.output =
        tmp_ / (spec.name + "-" + spec.version + "-" + std::to_string(counter) + ".tar");
    options.force = true;
    options.validate = validate;
    auto packed = pkg::Pack(spec, options, validate ? &Ort() : nullptr);
    EXPECT_TRUE(packed) << packed.error().ToString();
    pkg::SignOptions sign;
    sign.counter = counter;
    sign.created = signed_at;
    sign.expires = signed_at + std::chrono::hours(24 * 30);
    EXPECT_TRUE(pkg::SignPackage(options.output, {*publisher_}, sign));
    return options.output;
  }

  // Packs and installs into the store.
  void Install(const std::filesystem::path& dir, const std::string& version, std::uint64_t counter,
               bool validate = true) {
    InstallPackage(PackProject(dir, version, counter, validate));
  }

  void InstallPackage(const std::filesystem::path& package) {
    auto store = ModelStore::Open(store_dir()).value();
    auto installed = store.Install(package, root_, kTestNow, HostPlatform());
    ASSERT_TRUE(installed) << installed.error().ToString();
  }

  // Writes a project for a model with one Identity per ONNX element type.
  std::filesystem::path IdentityProject(const std::string& name, const std::vector<int>& types) {
    auto dir = tmp_ / name;
    airlock::testing::WriteIdentityModel(dir / "model.onnx", types);
    airlock::testing::WriteAll(dir / "airlock.yaml", "name: " + name + R"(
version: 1.0.0
created: "2026-01-01T00:00:00Z"
model:
  files: [model.onnx]
platforms: [linux/amd64, linux/arm64]
)");
    return dir;
  }

  std::filesystem::path store_dir() const { return tmp_ / "store"; }
  std::filesystem::path affine_dir() const { return tmp_ / "affine"; }

  // before_load runs on the repository before it loads what the configuration says.
  void StartServer(AgentConfig config = {}, BackendDecorator decorate = {},
                   const std::function<void(ModelRepository&)>& before_load = {}) {
    config.store = store_dir();
    config.http.port = 0;
    ASSERT_TRUE(ModelStore::Open(store_dir()));
    repo_ = std::make_unique<ModelRepository>(store_dir(), Ort(), config, HostPlatform(),
                                              std::move(decorate));
    if (before_load) {
      before_load(*repo_);
    }
    server_ = std::make_unique<AgentServer>(*repo_, HostPlatform(), Ort().Version());
    auto bound = server_->Bind();
    ASSERT_TRUE(bound) << bound.error().ToString();
    load_errors_ = repo_->LoadAtStart();
    thread_ = std::thread([this] { server_->Serve(); });
  }

  void StopServer() {
    if (server_) {
      server_->Stop();
    }
    if (thread_.joinable()) {
      thread_.join();
    }
    server_.reset();
    repo_.reset();
  }

  std::unique_ptr<httplib::Client> Client() {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(60);
    c->set_keep_alive(true);
    return c;
  }

  airlock::testing::TempDir tmp_;
  std::unique_ptr<PrivateKey> publisher_;
  trust::SignedDocument root_;
  std::unique_ptr<ModelRepository> repo_;
  std::unique_ptr<AgentServer> server_;
  std::vector<Error> load_errors_;
  std::thread thread_;
};

}  // namespace airlock::agent
