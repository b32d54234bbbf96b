// Monitoring from the shop floor with every part real: Mosquitto, `airlock-hub serve`,
// `airlock-gateway serve` and `airlock-agent serve` cameras reporting every second. Pictures
// drawn from the training data's distribution raise no drift alert; shifted ones raise one on the
// hub naming the model, version, site, device and feature. Agents and the gateway killed with
// SIGKILL during steady traffic lose no record and store none twice; a gateway cut off from the
// hub keeps its outbox within bounds and reports what it dropped when the hub is back.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sqlite3.h>

#include <cstring>
#include <random>
#include <set>

#include "support/small_disk.hpp"
#include "system/camera_fixture.hpp"

namespace airlock::testing {
namespace {

class MonitoringSystem : public CameraSystem {
 protected:
  void SetUp() override {
    CameraSystem::SetUp();
    // The example's baseline without its predictions: the pictures below are drawn from the
    // baseline's own histograms, and what the model says of such pictures is not the training
    // mix of classes (the prediction drift is tested in monitor_test).
    fs::path project = dir_ / "project";
    fs::copy(SourceDir() / "examples" / kModel, project, fs::copy_options::recursive);
    json baseline = json::parse(ReadAll(project / "baseline.json"));
    baseline.erase("predictions");
    WriteAll(project / "baseline.json", baseline.dump());
    baseline_ = baseline;
    Pack(project / "airlock.yaml", "1.0.0", 1);
    Promote("1.0.0");
  }

  void StartPlant(const std::string& gateway_extra = "",
                  const std::string& camera_config = "telemetry:\n  interval: 1s\n") {
    StartGateway("plant-1", GatewayConfig("plant-1", "",
                                          "policy:\n  offers: auto\n  rollout_approval: auto\n" +
                                              gateway_extra));
    for (const char* cell : {"a", "b"}) {
      EnrollCamera(cell, camera_config);
    }
    std::string deployment = DeployToLine3("0s");
    ASSERT_TRUE(WaitForFleet(deployment, "complete", 2)) << GatewayLogs();
  }

  // One picture as a tensor, each channel drawn from the baseline's histogram of it (a bin by
  // its count, a value uniform within it), plus shift.
  std::string Picture(double shift) {
    json data = json::array();
    const json& features = baseline_["features"];
    for (std::size_t ch = 0; ch < 3; ++ch) {
      const json& f = features[ch];
      std::vector<double> counts = f["counts"].get<std::vector<double>>();
      std::vector<double> edges = f["edges"].get<std::vector<double>>();
      std::discrete_distribution<std::size_t> bin(counts.begin(), counts.end());
      for (int i = 0; i < 64 * 64; ++i) {
        std::size_t b = bin(rng_);
        std::uniform_real_distribution<double> within(edges[b], edges[b + 1]);
        data.push_back(within(rng_) + shift);
      }
    }
    json request = {{"inputs",
                     {{{"name", "image"},
                       {"shape", {1, 3, 64, 64}},
                       {"datatype", "FP32"},
                       {"data", std::move(data)}}}}};
    return request.dump();
  }
  bool Infer(const Camera& c, double shift) {
    httplib::Client client("127.0.0.1", c.port);
    auto r = client.Post("/v2/models/" + kModel + "/infer", Picture(shift), "application/json");
    return r && r->status == 200;
  }

  json Hub(const std::string& path, const std::string& role = "viewer") {
    httplib::Client client("127.0.0.1", hub_port_);
    auto r = client.Get(path, {{"Authorization", "Bearer " + tokens_[role]}});
    return r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
  }
  json Monitor() { return Hub("/api/v1/monitor/" + kModel + "?since=1h"); }
  json Events() { return Hub("/api/v1/events?since=1h")["events"]; }
  // The 1.0.0 summary of the monitor view, null before there is one.
  json Version() {
    json m = Monitor();
    if (!m.is_object()) {
      return json();
    }
    for (const auto& v : m["versions"]) {
      if (v["version"] == "1.0.0") {
        return v;
      }
    }
    return json();
  }

  // The ids of the telemetry records the hub stored, read from its database.
  std::vector<std::string> HubRecordIds() {
    std::vector<std::string> ids;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((dir_ / "hub" / "metadata.db").c_str(), &db, SQLITE_OPEN_READONLY,
                        nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return ids;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT id FROM telemetry_records", -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
      }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ids;
  }
  // One number from an outbox's database (an agent's or the gateway's); -1 when unreadable.
  static long long Figure(const fs::path& outbox, const char* sql) {
    sqlite3* db = nullptr;
    long long n = -1;
    if (sqlite3_open_v2(outbox.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, 5000);
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
  }
  // The records an outbox still holds.
  static long long Held(const fs::path& outbox) {
    return Figure(outbox, "SELECT count(*) FROM outbox_records");
  }

  json baseline_;
  std::mt19937 rng_{20261201};
};

TEST_F(MonitoringSystem, ShiftedPicturesRaiseADriftAlertOnTheHubAndUnshiftedOnesDoNot) {
  // What is tested here is the path of the drift figures, not the monitor's sampling: every
  // request is observed (monitor_budget 1), and intervals are long enough to hold the 10 requests
  // a device needs to judge drift even when a sanitizer slows the agents to a few a second.
  StartPlant("", "telemetry:\n  interval: 3s\n  monitor_budget: 1\n");
  const Camera& a = cameras_[0];
  const Camera& b = cameras_[1];
  // Unshifted pictures on both cameras until the hub has judged every feature of both.
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (int i = 0; i < 15; ++i) {
          EXPECT_TRUE(Infer(a, 0));
          EXPECT_TRUE(Infer(b, 0));
        }
        json v = Version();
        if (!v.is_object() || v["drift"].size() != 3) {
          return false;
        }
        for (const auto& f : v["drift"]) {
          if (f["devices"] != 2) {
            return false;
          }
        }
        return true;
      },
      kLong, 100ms))
      << Monitor().dump(2) << GatewayLogs();
  json calm = Version();
  for (const auto& f : calm["drift"]) {
    EXPECT_EQ(f["worst_level"], "ok") << calm.dump(2);
    EXPECT_LT(f["psi_max"].get<double>(), 0.1) << calm.dump(2);
  }
  EXPECT_EQ(calm["errors"], 0);
  EXPECT_GE(calm["requests"].get<int>(), 20);  // two devices, each judged on at least 10
  EXPECT_TRUE(calm["latency_ms"]["p99"].is_number()) << calm.dump(2);
  EXPECT_TRUE(Events().empty()) << Events().dump(2);

  // cam-b's light changes: every channel moves by 1.5 (its standard deviation).
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (int i = 0; i < 15; ++i) {
          EXPECT_TRUE(Infer(b, 1.5));
          EXPECT_TRUE(Infer(a, 0));
        }
        return !Events().empty();
      },
      kLong, 100ms))
      << Monitor().dump(2) << GatewayLogs();
  std::set<std::string> features;
  for (const auto& e : Events()) {
    EXPECT_EQ(e["event"], "drift.alert");
    EXPECT_EQ(e["model"], kModel);
    EXPECT_EQ(e["version"], "1.0.0");
    EXPECT_EQ(e["site"], "plant-1");
    EXPECT_EQ(e["device"], b.id) << "only cam-b's pictures changed";
    EXPECT_GT(e["psi"].get<double>(), 0.25);
    features.insert(e["feature"].get<std::string>());
  }
  EXPECT_TRUE(features.contains("image/channel0")) << Events().dump(2);

  // What a user runs.
  CommandResult shown = As("viewer", {"monitor", kModel, "--since", "1h"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("1.0.0"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("ALERT"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find(b.id), std::string::npos) << shown.out;
  CommandResult one = As("viewer", {"monitor", kModel, "--device", a.id, "--json"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  json only_a = json::parse(one.out);
  EXPECT_TRUE(only_a["alerts"].empty()) << one.out;
  EXPECT_EQ(only_a["versions"][0]["devices"], 1);
  CommandResult bad = As("viewer", {"monitor", kModel, "--since", "yesterday"});
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
}

// Steady traffic while each agent is killed with SIGKILL again and again, and the gateway twice:
// every record an agent made reaches the hub, once. Each agent's ids are "DEVICE/N" with N
// counting up from 1 without a gap, so a lost record would be a missing number.
TEST_F(MonitoringSystem, RecordsSurviveKillsOfAgentsAndTheGatewayAndReachTheHubOnce) {
  StartPlant();
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    while (!stop) {
      for (const Camera& c : cameras_) {
        Infer(c, 0);
      }
    }
  });
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pause_ms(300, 2500);
  for (int cycle = 0; cycle < 6; ++cycle) {
    Camera& c = cameras_[static_cast<std::size_t>(cycle % 2)];
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    StopDaemon(c.pid, SIGKILL);
    StartAgent(c);
    if (cycle == 2 || cycle == 4) {
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      StopDaemon(gateways_["plant-1"], SIGKILL);
      StartGateway("plant-1", dir_ / "plant-1.yaml");
    }
  }
  std::this_thread::sleep_for(2s);
  stop = true;
  traffic.join();
  // A clean stop stores the last intervals too; then everything drains to the hub.
  for (Camera& c : cameras_) {
    StopDaemon(c.pid);
    StartAgent(c);
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const Camera& c : cameras_) {
          if (Held(c.store / "state/telemetry.db") != 0) {
            return false;
          }
        }
        return Held(dir_ / "plant-1" / "telemetry.db") == 0;
      },
      kLong, 300ms))
      << GatewayLogs();
  std::vector<std::string> ids = HubRecordIds();
  for (const Camera& c : cameras_) {
    std::set<long long> numbers;
    for (const auto& id : ids) {
      if (id.rfind(c.id + "/", 0) == 0) {
        numbers.insert(std::stoll(id.substr(c.id.size() + 1)));
      }
    }
    ASSERT_FALSE(numbers.empty()) << c.name;
    // The agents restarted with the cameras: a few more records than kills, at least.
    EXPECT_GT(numbers.size(), 6u) << c.name;
    EXPECT_EQ(*numbers.begin(), 1) << c.name;
    EXPECT_EQ(static_cast<std::size_t>(*numbers.rbegin()), numbers.size())
        << c.name << ": a record is missing";
  }
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
}

// The hub away for a while: the gateway keeps the devices' records within its bound (64 KiB
// here), drops the oldest, counts them, and when the hub is back forwards what it kept and says
// what it dropped.
TEST_F(MonitoringSystem, AGatewayCutOffFromTheHubStaysInBoundsAndReportsItsDrops) {
  StartPlant("telemetry:\n  outbox_max_bytes: 65536\n");
  StopDaemon(hub_, SIGKILL);
  fs::path outbox = dir_ / "plant-1" / "telemetry.db";
  // Until the bound is met and records were dropped (a record is about 1 KiB, two cameras send
  // one a second each).
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const Camera& c : cameras_) {
          Infer(c, 0);
        }
        return Figure(outbox, "SELECT dropped_metrics FROM outbox_state") >= 5;
      },
      kLong, 500ms))
      << GatewayLogs();
  EXPECT_LE(Figure(outbox, "SELECT bytes FROM outbox_state"), 65536);
  EXPECT_GT(Held(outbox), 0);
  EXPECT_LE(fs::file_size(outbox), 4u << 20) << "the database file stays small";
  StartHub();
  ASSERT_TRUE(WaitUntil(
      [&] {
        json m = Monitor();
        if (!m.is_object()) {
          return false;
        }
        for (const auto& d : m["dropped"]) {
          if (d["source"] == "plant-1" && d["dropped"]["metrics"].get<int>() > 0) {
            return true;
          }
        }
        return false;
      },
      kLong, 500ms))
      << Monitor().dump(2) << GatewayLogs();
  EXPECT_TRUE(WaitUntil([&] { return Held(outbox) == 0; }, kLong, 300ms));
  CommandResult shown = As("viewer", {"monitor", kModel});
  EXPECT_NE(shown.out.find("telemetry dropped"), std::string::npos) << shown.out;
}

// A site that allows capture, with upload: every request a camera serves is captured (rate 1),
// kept in its ring and sent to the hub; `airlock captures export` writes them as the picture the
// camera received, .npy tensors and a manifest.
TEST_F(MonitoringSystem, CapturesTheSiteAllowsReachTheHubAndExportToFilesAUserCanOpen) {
  StartPlant(
      "telemetry:\n  capture:\n    rate: 1\n    max_bytes: 4194304\n    upload: true\n");
  const Camera& a = cameras_[0];
  std::string picture =
      ReadAll(SourceDir() / "examples" / kModel / "samples/1/image.png");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Predict(a));
    ASSERT_TRUE(Infer(a, 0));
  }
  auto captures = [&] {
    json page = Hub("/api/v1/captures?model=" + kModel + "&limit=100", "publisher");
    return page.is_object() ? page["captures"].size() : 0u;
  };
  ASSERT_TRUE(WaitUntil([&] { return captures() >= 6; }, kLong, 300ms)) << GatewayLogs();
  EXPECT_EQ(Hub("/api/v1/captures?model=" + kModel, "viewer"), json())
      << "captures are data from the shop floor: publisher and up";
  // The ring on the camera holds them too, within its bound.
  std::uintmax_t ring = 0;
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(a.store / "captures")) {
    ring += fs::file_size(e.path());
    ++files;
  }
  EXPECT_EQ(files, 6u);
  EXPECT_LE(ring, 4194304u);

  fs::path out = dir_ / "dataset";
  CommandResult exported =
      As("publisher", {"captures", "export", "--model", kModel, "--since", "1h", "-o", out.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  json manifest = json::parse(ReadAll(out / "manifest.json"));
  EXPECT_EQ(manifest["count"], 6);
  int pictures = 0;
  for (const auto& c : manifest["captures"]) {
    EXPECT_EQ(c["device"], a.id);
    EXPECT_EQ(c["site"], "plant-1");
    EXPECT_EQ(c["version"], "1.0.0");
    if (c["files"].contains("raw")) {
      ++pictures;
      EXPECT_EQ(ReadAll(out / c["files"]["raw"].get<std::string>()), picture)
          << "the picture exactly as the camera received it";
      EXPECT_EQ(fs::path(c["files"]["raw"].get<std::string>()).extension(), ".png");
    }
    for (const char* side : {"inputs", "outputs"}) {
      ASSERT_FALSE(c["files"][side].empty()) << c.dump();
      for (const auto& [name, file] : c["files"][side].items()) {
        std::string npy = ReadAll(out / file.get<std::string>());
        EXPECT_EQ(npy.substr(0, 6), "\x93NUMPY") << file;
        if (std::string(side) == "inputs") {
          EXPECT_GE(npy.size(), 3u * 64 * 64 * 4) << "a [1, 3, 64, 64] float tensor";
        }
      }
    }
  }
  EXPECT_EQ(pictures, 3);
  CommandResult again =
      As("publisher", {"captures", "export", "--model", kModel, "-o", out.string()});
  EXPECT_NE(again.exit_code, 0) << "never into a directory that is not empty";
}

// A camera whose disk fills up: it goes on answering, its telemetry degrades by the outbox's
// policy and it says so; once there is room again its reports reach the hub again.
TEST_F(MonitoringSystem, ADeviceWhoseDiskFillsUpServesOnAndSaysItsTelemetryIsDegraded) {
  fs::path small = dir_ / "small";
  SmallDisk disk(small, "80m");  // the agent keeps 64 MiB free for downloads
  if (!disk.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  StartGateway("plant-1", GatewayConfig("plant-1", "",
                                        "policy:\n  offers: auto\n  rollout_approval: auto\n"));
  EnrollCamera("a", "telemetry:\n  interval: 1s\n", small / "cam-a");
  const Camera& a = cameras_[0];
  ASSERT_TRUE(WaitForFleet(DeployToLine3("0s"), "complete", 1)) << GatewayLogs();
  auto from_a = [&] {
    std::size_t n = 0;
    for (const auto& id : HubRecordIds()) {
      n += id.rfind(a.id + "/", 0) == 0 ? 1 : 0;
    }
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return from_a() > 0; }, kLong, 300ms));

  ASSERT_TRUE(FillDisk(small / "filler"));
  fs::path log = dir_ / "cam-a-1.log";
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_TRUE(Infer(a, 0)) << "inference goes on on a full disk";
        return ReadAll(log).find("telemetry degraded") != std::string::npos;
      },
      kLong, 200ms))
      << ReadAll(log);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Infer(a, 0));
  }
  httplib::Client agent("127.0.0.1", a.port);
  auto scraped = agent.Get("/metrics");
  ASSERT_TRUE(scraped && scraped->status == 200);
  EXPECT_NE(scraped->body.find("airlock_telemetry_outbox_disk_full_total"), std::string::npos);

  fs::remove(small / "filler");
  std::size_t before = from_a();
  EXPECT_TRUE(WaitUntil(
      [&] {
        Infer(a, 0);
        return from_a() > before + 2;
      },
      kLong, 300ms))
      << "reports reach the hub again once there is room";
}

}  // namespace
}  // namespace airlock::testing
