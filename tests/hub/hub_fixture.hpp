#pragma once
// A hub served in-process on a free 127.0.0.1 port over a temporary data directory, with its
// metadata in SQLite or in a fresh database of the tests' PostgreSQL (the test parameter: suites
// instantiate on both), and the requests the tests make of it.

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "core/digest.hpp"
#include "hub/oci_rules.hpp"
#include "hub/server.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace airlock::hub {

inline constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";

// The "code" of the first error of an OCI error body, "" when there is none.
inline std::string ErrorCodeOf(const httplib::Result& r) {
  if (!r) {
    return "(no response)";
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("errors") || j["errors"].empty()) {
    return "";
  }
  return j["errors"][0].value("code", "");
}

// A descriptor for bytes.
inline nlohmann::json Describe(std::string_view media_type, std::string_view bytes) {
  return {
      {"mediaType", media_type}, {"digest", Sha256Of(bytes).ToString()}, {"size", bytes.size()}};
}

inline std::string ImageManifest(const std::string& config, const std::vector<std::string>& layers,
                                 const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", kManifestType},
                      {"config", Describe("application/vnd.cncf.model.config.v1+json", config)},
                      {"layers", nlohmann::json::array()}};
  for (const auto& l : layers) {
    m["layers"].push_back(Describe("application/vnd.cncf.model.weight.v1.raw", l));
  }
  m.update(extra);
  return m.dump();
}

class HubFixture : public ::testing::TestWithParam<airlock::testing::MetadataBackend> {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::warn);
    HubConfig config = DefaultHubConfig();
    config.data = dir_ / "data";
    if (GetParam() == airlock::testing::MetadataBackend::kPostgres) {
      try {
        config.db = airlock::testing::SharedPostgres().CreateDatabase();
      } catch (const std::exception& e) {
        FAIL() << e.what();
      }
    }
    config.http.port = 0;
    config.oci.max_blob_size = max_blob_size_;
    // The OCI tests run without tokens (allowed on loopback); tests/hub/auth_test.cpp turns
    // them on.
    config.auth.enabled = auth_enabled_;
    config.auth.anonymous_pull = anonymous_pull_;
    config.root = root_path_;
    Configure(config);
    config_ = config;
    StartHub();
  }
  void TearDown() override { StopHub(); }

  // Suites adjust the configuration here (before the hub first starts).
  virtual void Configure(HubConfig& /*config*/) {}

  // Opens the hub on config_ and serves it (on a new port after a restart).
  void StartHub() {
    auto hub = Hub::Open(config_, &clock_);
    ASSERT_TRUE(hub) << hub.error().ToString();
    hub_ = std::move(*hub);
    ASSERT_TRUE(hub_->server().Bind());
    serving_ = std::thread([this] { hub_->server().Serve(); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", hub_->server().port());
    client_->set_read_timeout(30);
  }
  // Stops serving and closes the hub (its stores, its MQTT connection).
  void StopHub() {
    if (hub_) {
      hub_->server().Stop();
    }
    if (serving_.joinable()) {
      serving_.join();
    }
    hub_.reset();
  }

  httplib::Client& c() { return *client_; }
  int port() const { return hub_->server().port(); }

  // Monolithic push (POST ?digest=); expects 201.
  void PushBlob(const std::string& repo, const std::string& bytes) {
    auto r = c().Post(("/v2/" + repo + "/blobs/uploads/?digest=" + Sha256Of(bytes).ToString()),
                      bytes, "application/octet-stream");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
  }
  httplib::Result PutManifest(const std::string& repo, const std::string& ref,
                              const std::string& bytes, const std::string& type = kManifestType) {
    return c().Put(("/v2/" + repo + "/manifests/" + ref), bytes, type.c_str());
  }
  // Pushes config and layers, then the manifest under ref; returns the manifest's bytes.
  std::string PushImage(const std::string& repo, const std::string& ref, const std::string& config,
                        const std::vector<std::string>& layers,
                        const nlohmann::json& extra = nlohmann::json::object()) {
    PushBlob(repo, config);
    for (const auto& l : layers) {
      PushBlob(repo, l);
    }
    std::string m = ImageManifest(config, layers, extra);
    auto r = PutManifest(repo, ref, m);
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no response");
    return m;
  }

  // A clock the tests move forward to expire tokens and URLs.
  class ManualClock final : public Clock {
   public:
    TimePoint Now() const override { return TimePoint(std::chrono::seconds(now_.load())); }
    void Advance(std::chrono::seconds d) { now_ += d.count(); }

   private:
    std::atomic<std::int64_t> now_{1800000000};
  };

  std::uint64_t max_blob_size_ = 64ULL << 20;
  bool auth_enabled_ = false;
  bool anonymous_pull_ = false;
  std::filesystem::path root_path_;  // the hub's root document, if any
  ManualClock clock_;
  airlock::testing::TempDir dir_;
  HubConfig config_;
  std::unique_ptr<Hub> hub_;
  std::thread serving_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace airlock::hub
