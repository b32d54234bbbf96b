// The release manager's commands end to end: the real `airlock` binary against a real
// `airlock-hub serve` on 127.0.0.1 (a free port, a temporary data directory, a root with a
// 2-of-3 release-manager role). The vibration example is packed as 1.0.0 and 1.1.0, signed and
// pushed; then models ls, versions, promote (a pending proposal, its approval, a newer version, a
// rollback), deploy, deployments ls/show/cancel, status, gateways, and the refusals: a viewer's
// token, a version without a release, an unreachable hub.

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "support/daemon.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string HubBinary() { return (AirlockBinary().parent_path() / "airlock-hub").string(); }

// Keys, the root and the two packages are made once for the suite (packing takes seconds).
struct World {
  TempDir dir;
  fs::path root() const { return dir / "root.json"; }
  fs::path key(const std::string& name) const { return dir / "keys" / (name + ".key"); }
  fs::path package(const std::string& version) const { return dir / ("vib-" + version + ".tar"); }
};
World* g_world = nullptr;

class RegistryCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_world = new World();
    const World& w = *g_world;
    for (const char* k : {"root", "publisher", "rm1", "rm2", "rm3"}) {
      CommandResult made = RunAirlock({"keygen", (w.dir / "keys" / k).string()});
      ASSERT_EQ(made.exit_code, 0) << made.err;
    }
    auto pub = [&](const char* k) { return (w.dir / "keys" / (std::string(k) + ".pub")).string(); };
    CommandResult root = RunAirlock(
        {"root", "init", "--root-key", w.key("root").string(), "--publisher", pub("publisher"),
         "--release-manager", pub("rm1"), "--release-manager", pub("rm2"), "--release-manager",
         pub("rm3"), "--release-manager-threshold", "2", "-o", w.root().string()});
    ASSERT_EQ(root.exit_code, 0) << root.err;
    // 1.0.0 is the example as committed; 1.1.0 the same files under another version.
    fs::path example = SourceDir() / "examples" / "vibration-anomaly";
    fs::path newer = w.dir / "vib-1.1.0-src";
    fs::copy(example, newer, fs::copy_options::recursive);
    std::string yaml = ReadAll(newer / "airlock.yaml");
    yaml = std::regex_replace(yaml, std::regex("(^|\\n)version: [^\\n]*"), "$1version: 1.1.0");
    WriteAll(newer / "airlock.yaml", yaml);
    int counter = 1;
    for (auto [version, yaml_path] : {std::pair{"1.0.0", example / "airlock.yaml"},
                                      std::pair{"1.1.0", newer / "airlock.yaml"}}) {
      CommandResult packed =
          RunAirlock({"pack", "-f", yaml_path.string(), "-o", w.package(version).string()});
      ASSERT_EQ(packed.exit_code, 0) << packed.err;
      CommandResult signed_ =
          RunAirlock({"sign", "-k", w.key("publisher").string(), "--counter",
                      std::to_string(counter++), w.package(version).string()});
      ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
    }
  }
  static void TearDownTestSuite() {
    delete g_world;
    g_world = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(g_world, nullptr);
    fs::path data = dir_ / "data";
    for (const char* role : {"viewer", "publisher", "release-manager", "admin"}) {
      CommandResult made = RunCommand(
          {HubBinary(), "token", "create", "--name", std::string(role) + "-1", "--role", role,
           "--data", data.string()});
      ASSERT_EQ(made.exit_code, 0) << made.err;
      std::string token = made.out.substr(0, made.out.find('\n'));
      ASSERT_TRUE(token.starts_with("alk_")) << made.out;
      tokens_[role] = token;
    }
    fs::path log = dir_ / "hub.log";
    hub_ = SpawnDaemon({HubBinary(), "serve", "--data", data.string(), "--root",
                        g_world->root().string(), "--port", "0", "--log-level", "warn"},
                       log);
    port_ = WaitForServingPort(hub_, log, std::chrono::seconds(30));
    ASSERT_GT(port_, 0) << ReadAll(log);
  }
  void TearDown() override { StopDaemon(hub_); }

  std::string hub_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string registry() const { return "127.0.0.1:" + std::to_string(port_); }

  // The airlock binary as `role` (a token from the environment), with a configuration directory
  // of its own (no saved credentials) and the hub in AIRLOCK_HUB.
  CommandResult As(const std::string& role, std::vector<std::string> args) const {
    std::vector<std::string> argv = {"env", "AIRLOCK_CONFIG_DIR=" + (dir_ / "config").string(),
                                     "AIRLOCK_HUB=" + hub_url()};
    if (!role.empty()) {
      argv.push_back("AIRLOCK_REGISTRY_TOKEN=" + tokens_.at(role));
    }
    argv.push_back(AirlockBinary().string());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, dir_.path(), 120);
  }

  void Push(const std::string& version) {
    CommandResult pushed = As("publisher", {"-q", "push", g_world->package(version).string(),
                                            registry() + "/models/vibration-anomaly"});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  }

  // The channel as the hub answers GET …/channels/production (what a gateway reads).
  json Channel() const {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v1/models/vibration-anomaly/channels/production",
                   {{"Authorization", "Bearer " + tokens_.at("viewer")}});
    EXPECT_TRUE(r);
    if (!r) {
      return json();
    }
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body, nullptr, false);
  }

  std::string Promote(const std::string& version, std::vector<std::string> keys,
                      int expect_exit = 0) {
    std::vector<std::string> args = {"promote", "vibration-anomaly", version, "--channel",
                                     "production"};
    for (const auto& k : keys) {
      args.push_back("-k");
      args.push_back(g_world->key(k).string());
    }
    CommandResult r = As("release-manager", args);
    EXPECT_EQ(r.exit_code, expect_exit) << r.out << r.err;
    return expect_exit == 0 ? r.out : r.err;
  }

  // Registers a gateway the way its operator would (POST /api/v1/gateways/register).
  void RegisterGateway(const std::string& name) {
    CommandResult token = As("admin", {"gateways", "token", "--json"});
    ASSERT_EQ(token.exit_code, 0) << token.err;
    json t = json::parse(token.out);
    httplib::Client c("127.0.0.1", port_);
    json body = {{"token", t["token"]}, {"name", name}, {"labels", {{"line", "3"}}}};
    auto r = c.Post("/api/v1/gateways/register", body.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
  }

  TempDir dir_;
  pid_t hub_ = -1;
  int port_ = 0;
  std::map<std::string, std::string> tokens_;
};

TEST_F(RegistryCli, ModelsAndVersionsAsTablesAndJson) {
  CommandResult empty = As("viewer", {"models", "ls"});
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(empty.out, "no models on the hub yet; push one with airlock push PKG " + registry() +
                           "/models/NAME (pack it with airlock pack, sign it with airlock sign)\n");

  Push("1.0.0");
  Push("1.1.0");
  CommandResult table = As("viewer", {"models", "ls"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_TRUE(table.out.starts_with("NAME               VERSIONS  LATEST  CHANNELS  DESCRIPTION\n"
                                    "vibration-anomaly  2         1.1.0   -         "))
      << table.out;
  CommandResult listed = As("viewer", {"models", "ls", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  json models = json::parse(listed.out);
  ASSERT_EQ(models["models"].size(), 1u);
  EXPECT_EQ(models["models"][0]["name"], "vibration-anomaly");
  EXPECT_EQ(models["models"][0]["versions"], 2);
  CommandResult none = As("viewer", {"models", "ls", "--search", "no-such-thing"});
  EXPECT_EQ(none.out, "no models on the hub match \"no-such-thing\"; list them all with airlock "
                      "models ls\n");

  CommandResult versions = As("viewer", {"versions", "vibration-anomaly", "--json"});
  ASSERT_EQ(versions.exit_code, 0) << versions.err;
  json v = json::parse(versions.out)["versions"];
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0]["version"], "1.1.0");  // newest first
  EXPECT_EQ(v[0]["pushed_by"], "publisher-1");
  ASSERT_TRUE(v[0]["release"].is_object()) << v[0].dump();  // push carried the release
  EXPECT_EQ(v[0]["release"]["release_counter"], 2);
  CommandResult vtable = As("viewer", {"versions", "vibration-anomaly"});
  ASSERT_EQ(vtable.exit_code, 0) << vtable.err;
  EXPECT_TRUE(vtable.out.starts_with("VERSION  PUSHED  "))
      << vtable.out;
  EXPECT_NE(vtable.out.find("publisher-1  linux/amd64,linux/arm64  #2, 1 sig  -"),
            std::string::npos)
      << vtable.out;

  CommandResult unknown = As("viewer", {"versions", "no-such-model"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("HTTP 404"), std::string::npos) << unknown.err;
}

TEST_F(RegistryCli, PromotionNeedsTwoReleaseManagersAndARollbackIsAPromotion) {
  Push("1.0.0");
  Push("1.1.0");
  // The first release manager proposes; the channel has no current document yet.
  EXPECT_EQ(Promote("1.0.0", {"rm1"}),
            "proposed production version 1 of vibration-anomaly → 1.0.0: 1 of 2 release-manager "
            "signatures; another release manager approves with the same command\n");
  json channel = Channel();
  EXPECT_TRUE(channel["current"].is_null()) << channel.dump();
  ASSERT_TRUE(channel["pending"].is_object()) << channel.dump();
  // The second approves the same document.
  EXPECT_EQ(Promote("1.0.0", {"rm2"}),
            "production of vibration-anomaly is now version 1: 1.0.0 (no rollback targets)\n");
  channel = Channel();
  ASSERT_TRUE(channel["current"].is_object()) << channel.dump();
  EXPECT_EQ(channel["current"]["version"], 1);
  EXPECT_EQ(channel["current"]["document"]["signatures"].size(), 2u);
  EXPECT_TRUE(channel["pending"].is_null());

  // Two keys at once meet the threshold in one step.
  EXPECT_EQ(Promote("1.1.0", {"rm1", "rm3"}),
            "production of vibration-anomaly is now version 2: 1.1.0 (rollback targets 1.0.0)\n");
  CommandResult models = As("viewer", {"models", "ls", "--json"});
  EXPECT_EQ(json::parse(models.out)["models"][0]["channels"]["production"], "1.1.0");

  // The fleet-wide rollback: a new channel version pointing back at 1.0.0.
  EXPECT_EQ(Promote("1.0.0", {"rm2", "rm3"}),
            "production of vibration-anomaly is now version 3: 1.0.0, rolled back from 1.1.0 "
            "(rollback targets 1.1.0)\n");

  // Refused locally: a version without a release, and the version already current. Nothing
  // changes on the hub, and the next good promotion still works.
  std::string no_release = Promote("9.9.9", {"rm1", "rm2"}, 1);
  EXPECT_NE(no_release.find("vibration-anomaly 9.9.9 has no release on the hub (releases: "),
            std::string::npos)
      << no_release;
  std::string same = Promote("1.0.0", {"rm1", "rm2"}, 1);
  EXPECT_NE(same.find("already points at 1.0.0 (channel version 3)"), std::string::npos) << same;
  // A key outside the release-manager role: the hub refuses the document (422, exit 3).
  std::string wrong_key = Promote("1.1.0", {"publisher"}, 3);
  EXPECT_NE(wrong_key.find("HTTP 422"), std::string::npos) << wrong_key;
  // A viewer may read but not promote: the hub's 403 and its reason.
  CommandResult viewer = As("viewer", {"promote", "vibration-anomaly", "1.1.0", "--channel",
                                       "production", "-k", g_world->key("rm1").string()});
  EXPECT_EQ(viewer.exit_code, 1);
  EXPECT_NE(viewer.err.find("HTTP 403"), std::string::npos) << viewer.err;
  EXPECT_NE(viewer.err.find("viewer"), std::string::npos) << viewer.err;
  EXPECT_EQ(Channel()["current"]["version"], 3);
  EXPECT_EQ(Promote("1.1.0", {"rm1", "rm2"}),
            "production of vibration-anomaly is now version 4: 1.1.0 (rollback targets 1.0.0)\n");

  CommandResult json_out = As("release-manager",
                              {"promote", "vibration-anomaly", "1.0.0", "--channel", "production",
                               "-k", g_world->key("rm1").string(), "--json"});
  ASSERT_EQ(json_out.exit_code, 0) << json_out.err;
  json put = json::parse(json_out.out);
  EXPECT_EQ(put["state"], "pending");
  EXPECT_EQ(put["version"], 5);
}

TEST_F(RegistryCli, DeployListShowStatusAndCancel) {
  Push("1.0.0");
  CommandResult no_gateways = As("viewer", {"gateways", "ls"});
  ASSERT_EQ(no_gateways.exit_code, 0) << no_gateways.err;
  EXPECT_NE(no_gateways.out.find("no gateways registered"), std::string::npos);
  CommandResult token = As("admin", {"gateways", "token", "--expires-in", "1h"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  EXPECT_NE(token.out.find("curl -sf -X POST -H 'Content-Type: application/json' -d "
                           "'{\"labels\":{\"site\":\"SITE\"},\"name\":\"GATEWAY-NAME\","
                           "\"token\":\""),
            std::string::npos)
      << token.out;
  EXPECT_NE(token.out.find(hub_url() + "/api/v1/gateways/register"), std::string::npos);
  CommandResult as_viewer = As("viewer", {"gateways", "token"});
  EXPECT_EQ(as_viewer.exit_code, 1);
  EXPECT_NE(as_viewer.err.find("HTTP 403"), std::string::npos) << as_viewer.err;

  RegisterGateway("plant-1-line-3");
  CommandResult gateways = As("viewer", {"gateways", "ls"});
  ASSERT_EQ(gateways.exit_code, 0) << gateways.err;
  EXPECT_TRUE(gateways.out.starts_with("NAME            ID")) << gateways.out;
  EXPECT_NE(gateways.out.find("plant-1-line-3"), std::string::npos);

  // No current channel document yet: the hub refuses the deployment.
  CommandResult early = As("release-manager", {"deploy", "vibration-anomaly", "--channel",
                                               "production", "--gateway", "plant-1-line-3"});
  EXPECT_EQ(early.exit_code, 3) << early.err;
  EXPECT_NE(early.err.find("HTTP 422"), std::string::npos) << early.err;

  EXPECT_NE(Promote("1.0.0", {"rm1", "rm2"}).find("is now version 1"), std::string::npos);
  CommandResult deployed = As(
      "release-manager", {"deploy", "vibration-anomaly", "--channel", "production", "--gateway",
                          "plant-1-line-3", "--selector", "line=3", "--waves", "1,10%,100%",
                          "--max-in-flight", "2", "--health-window", "5m", "--failure-threshold",
                          "10%", "--shadow", "95%", "--shadow-compared", "50"});
  ASSERT_EQ(deployed.exit_code, 0) << deployed.err;
  std::string id = deployed.out.substr(0, deployed.out.find('\n'));
  ASSERT_FALSE(id.empty());
  EXPECT_NE(deployed.out.find("deployment " + id +
                              ": vibration-anomaly production (channel version 1, release "
                              "1.0.0) to 1 gateway(s) and those matching line=3, state "),
            std::string::npos)
      << deployed.out;

  CommandResult list = As("viewer", {"deployments"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(list.out.starts_with("ID")) << list.out;
  EXPECT_NE(list.out.find(id), std::string::npos);
  CommandResult filtered = As("viewer", {"deployments", "ls", "--state", "cancelled"});
  EXPECT_EQ(filtered.out, "no deployments match; list them all with airlock deployments ls\n");
  CommandResult listed = As("viewer", {"deployments", "ls", "--model", "vibration-anomaly",
                                       "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  json all = json::parse(listed.out)["deployments"];
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["strategy"]["waves"], json::array({"1", "10%", "100%"}));
  EXPECT_EQ(all[0]["strategy"]["shadow"]["min_compared"], 50);
  EXPECT_DOUBLE_EQ(all[0]["strategy"]["shadow"]["min_agreement"].get<double>(), 0.95);
  EXPECT_EQ(all[0]["selector"]["line"], "3");

  CommandResult status = As("viewer", {"status", id});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(status.out.starts_with("deployment " + id + ": ")) << status.out;
  EXPECT_NE(status.out.find("plant-1-line-3"), std::string::npos) << status.out;

  CommandResult cancelled =
      As("release-manager", {"deployments", "cancel", id, "--reason", "wrong line"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  EXPECT_EQ(cancelled.out, "cancelled deployment " + id +
                               " (vibration-anomaly production), state cancelled\n");
  CommandResult again = As("release-manager", {"deployments", "cancel", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("HTTP 409"), std::string::npos) << again.err;

  CommandResult show = As("viewer", {"deployments", "show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("  state:    cancelled\n"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("TIME "), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("wrong line"), std::string::npos) << show.out;
  CommandResult shown = As("viewer", {"deployments", "show", id, "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_GE(json::parse(shown.out)["history"].size(), 2u);
}

TEST_F(RegistryCli, AnUnreachableHubAndAMissingTokenAreClearErrors) {
  CommandResult anonymous = As("", {"models", "ls"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_NE(anonymous.err.find("HTTP 401"), std::string::npos) << anonymous.err;
  EXPECT_NE(anonymous.err.find("airlock login"), std::string::npos) << anonymous.err;

  // A saved login for the hub's host:port is used like the variable.
  CommandResult login = RunCommand({"sh", "-c",
                                    "echo " + tokens_.at("viewer") + " | env AIRLOCK_CONFIG_DIR=" +
                                        (dir_ / "config").string() + " " +
                                        AirlockBinary().string() + " login " + registry() +
                                        " --token-stdin"});
  ASSERT_EQ(login.exit_code, 0) << login.err;
  CommandResult saved = As("", {"models", "ls"});
  EXPECT_EQ(saved.exit_code, 0) << saved.err;

  StopDaemon(hub_);
  CommandResult gone = As("viewer", {"models", "ls"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("cannot reach the hub at " + hub_url()), std::string::npos) << gone.err;
  EXPECT_EQ(gone.err.find(tokens_.at("viewer")), std::string::npos);
}

// The air-gapped export: one tar holding the package as an OCI layout with its release (which
// `airlock verify` accepts against the root), the deployment's manifest and the channel document.
TEST_F(RegistryCli, BundleExportWritesTheDeploymentsSignedPackage) {
  Push("1.0.0");
  RegisterGateway("site-offline");
  Promote("1.0.0", {"rm1", "rm2"});
  CommandResult deployed = As("release-manager", {"deploy", "vibration-anomaly", "--channel",
                                                  "production", "--gateway", "site-offline"});
  ASSERT_EQ(deployed.exit_code, 0) << deployed.err;
  std::string id = deployed.out.substr(0, deployed.out.find('\n'));

  fs::path bundle = dir_ / "out" / "bundle.tar";
  CommandResult exported =
      As("viewer", {"bundle", "export", "--deployment", id, "-o", bundle.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_NE(exported.out.find("wrote " + bundle.string() + ": vibration-anomaly 1.0.0 for "
                              "deployment " + id),
            std::string::npos)
      << exported.out;
  EXPECT_NE(exported.out.find("channel production v1"), std::string::npos) << exported.out;

  CommandResult verified =
      As("", {"verify", bundle.string(), "--root", g_world->root().string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  // The top-level files, read with tar(1): the manifest names the deployment and the index.
  CommandResult manifest =
      RunCommand({"tar", "-xOf", bundle.string(), "airlock-bundle.json"}, dir_.path());
  ASSERT_EQ(manifest.exit_code, 0) << manifest.err;
  json m = json::parse(manifest.out);
  EXPECT_EQ(m["type"], "airlock.bundle");
  EXPECT_EQ(m["deployment_id"], id);
  EXPECT_EQ(m["model"], "vibration-anomaly");
  EXPECT_EQ(m["version"], "1.0.0");
  EXPECT_EQ(m["repository"], "models/vibration-anomaly");
  EXPECT_EQ(m["channel_version"], 1);
  CommandResult channel = RunCommand({"tar", "-xOf", bundle.string(), "channel.json"}, dir_.path());
  ASSERT_EQ(channel.exit_code, 0) << channel.err;
  EXPECT_EQ(json::parse(channel.out)["signed"]["_type"], "channel");

  // Not over an existing file without --force; an unknown deployment is a clear error.
  CommandResult again =
      As("viewer", {"bundle", "export", "--deployment", id, "-o", bundle.string()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("pass --force"), std::string::npos) << again.err;
  CommandResult unknown = As("viewer", {"bundle", "export", "--deployment",
                                        "dep-00000000000000000000000000000000", "-o",
                                        (dir_ / "x.tar").string()});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("HTTP 404"), std::string::npos) << unknown.err;
  EXPECT_FALSE(fs::exists(dir_ / "x.tar"));
  // Nothing left behind by the staging.
  for (const auto& e : fs::directory_iterator(dir_ / "out")) {
    EXPECT_EQ(e.path().filename(), "bundle.tar");
  }
}

}  // namespace
}  // namespace airlock::testing
