#pragma once
// Cameras on a factory line, for the system tests of the factory → device path: the
// visual-inspection example packed, signed and pushed to the hub, a gateway plant-1 (auto
// approvals), and `airlock-agent serve` processes enrolled with it (labels line=3, cell=X),
// deployed to with `airlock deploy` as a release manager would.

#include <algorithm>
#include <string>
#include <vector>

#include "system/system_fixture.hpp"

namespace airlock::testing {

inline const std::string kModel = "visual-inspection";

class CameraSystem : public DeliverySystem {
 protected:
  struct Camera {
    std::string name;
    std::string id;  // the device id it enrolled as
    fs::path store;
    fs::path config;  // its agent configuration, when it has one
    pid_t pid = -1;
    int port = 0;
    int starts = 0;
  };

  void TearDown() override {
    for (Camera& c : cameras_) {
      StopDaemon(c.pid);
    }
    DeliverySystem::TearDown();
  }

  // Enrolls camera cam-CELL with plant-1 and starts its agent (with agent_config as its
  // configuration file when not empty, and its store in store when given).
  void EnrollCamera(const std::string& cell, const std::string& agent_config = "",
                    const fs::path& store = {}) {
    Camera c;
    c.name = "cam-" + cell;
    c.store = store.empty() ? dir_ / "devices" / c.name : store;
    CommandResult token = Operator("plant-1", {"devices", "token", "--label", "line=3", "--label",
                                               "cell=" + cell, "--json"});
    ASSERT_EQ(token.exit_code, 0) << token.err;
    std::vector<std::string> enroll = {AgentBinary().string(), "--store", c.store.string(),
                                       "enroll", "--gateway", GatewayUrl("plant-1"), "--token",
                                       json::parse(token.out)["token"].get<std::string>()};
    if (!gateway_ca_.empty()) {
      enroll.insert(enroll.end(), {"--ca", gateway_ca_.string()});
    }
    CommandResult enrolled = RunCommand(enroll);
    ASSERT_EQ(enrolled.exit_code, 0) << enrolled.err;
    c.id = json::parse(ReadAll(c.store / "identity/device.json"))["device_id"];
    if (!agent_config.empty()) {
      c.config = dir_ / (c.name + ".yaml");
      WriteAll(c.config, agent_config);
    }
    cameras_.push_back(std::move(c));
    StartAgent(cameras_.back());
  }

  void StartAgent(Camera& c) {
    std::vector<std::string> argv = {AgentBinary().string(), "--store", c.store.string(), "serve",
                                     "--port", "0", "--log-level", "info"};
    if (!c.config.empty()) {
      argv.insert(argv.end(), {"--config", c.config.string()});
    }
    c.port = StartServing(c.pid, argv, dir_ / (c.name + "-" + std::to_string(++c.starts) + ".log"));
    ASSERT_GT(c.port, 0);
  }

  void Pack(const fs::path& yaml, const std::string& version, int counter, bool validate = true) {
    fs::path out = dir_ / (kModel + "-" + version + ".tar");
    std::vector<std::string> args = {"-q", "pack", "-f", yaml.string(), "--version", version, "-o",
                                     out.string()};
    if (!validate) {
      args.insert(args.begin() + 2, "--no-validate");
    }
    CommandResult packed = RunAirlock(args);
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
    CommandResult signed_ = RunAirlock({"sign", "-k", g_world->key("publisher").string(),
                                        "--counter", std::to_string(counter), out.string()});
    ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
    CommandResult pushed = As("publisher", {"-q", "push", out.string(),
                                            "127.0.0.1:" + std::to_string(hub_port_) +
                                                "/models/" + kModel});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  }
  void Promote(const std::string& version) {
    CommandResult promoted = As("release-manager", {"promote", kModel, version, "--channel",
                                                    "production", "-k",
                                                    g_world->key("manager").string()});
    ASSERT_EQ(promoted.exit_code, 0) << promoted.err;
  }
  std::string DeployToLine3(const std::string& health_window = "2s",
                            std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"deploy", kModel, "--channel", "production", "--gateway",
                                     "plant-1", "--selector", "line=3", "--waves", "1,100%",
                                     "--health-window", health_window, "--failure-threshold", "1",
                                     "--json"};
    args.insert(args.end(), more.begin(), more.end());
    CommandResult deployed = As("release-manager", args);
    EXPECT_EQ(deployed.exit_code, 0) << deployed.err;
    return json::parse(deployed.out, nullptr, false).value("id", "");
  }

  // The version the camera's agent serves ("" for none), from its repository index.
  std::string Serves(const Camera& c) {
    httplib::Client client("127.0.0.1", c.port);
    auto r = client.Post("/v2/repository/index", "", "application/json");
    if (!r || r->status != 200) {
      return "unreachable";
    }
    for (const json& e : json::parse(r->body)) {
      if (e.value("name", "") == kModel && e.value("state", "") == "READY") {
        return e.value("version", "");
      }
    }
    return "";
  }
  // One picture through the camera's pipeline; true when it answered.
  bool Predict(const Camera& c) {
    httplib::Client client("127.0.0.1", c.port);
    auto r = client.Post("/api/v1/models/" + kModel + "/predict",
                         ReadAll(SourceDir() / "examples" / kModel / "samples/1/image.png"),
                         "image/png");
    return r && r->status == 200;
  }
  // The rollout of deployment as the hub shows it (null until the gateway reports it).
  json Fleet(const std::string& deployment) {
    json fleet = Status(deployment)["fleet"];
    return fleet.is_array() && !fleet.empty() ? fleet[0] : json();
  }
  bool WaitForFleet(const std::string& deployment, const std::string& state, int done) {
    return WaitUntil(
        [&] {
          json f = Fleet(deployment);
          return f.is_object() && f["state"] == state && f["devices"]["done"] == done;
        },
        kLong, 300ms);
  }

  std::vector<Camera> cameras_;
};

}  // namespace airlock::testing
