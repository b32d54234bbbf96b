// How the hub commands print the hub's answers: aligned tables, "-" for what the hub leaves
// out, and empty lists that say what to do next.

#include "cli/hub_views.hpp"

#include <gtest/gtest.h>

#include "cli/table.hpp"

namespace airlock::cli {
namespace {

using nlohmann::json;

TEST(FormatTable, AlignsColumnsByCodePointsAndLeavesNoTrailingSpaces) {
  std::string t = FormatTable(
      {"NAME", "CHANNELS", "DESCRIPTION"},
      {{"vibration-anomaly", "production=1.0.0", "bearings → alarms"}, {"affine", "-", ""}});
  EXPECT_EQ(t,
            "NAME               CHANNELS          DESCRIPTION\n"
            "vibration-anomaly  production=1.0.0  bearings → alarms\n"
            "affine             -\n");
}

TEST(FormatTable, ShortRowsArePadded) { EXPECT_EQ(FormatTable({"A", "B"}, {{"x"}}), "A  B\nx\n"); }

TEST(Shorten, CutsAtCodePointsWithAnEllipsis) {
  EXPECT_EQ(Shorten("short", 10), "short");
  EXPECT_EQ(Shorten("a description\nover two lines", 16), "a description o…");
  EXPECT_EQ(Shorten("ééééé", 3), "éé…");
  EXPECT_EQ(DisplayWidth(Shorten("ééééé", 3)), 3u);
}

TEST(ShortDigest, KeepsTwelveHexDigits) {
  EXPECT_EQ(ShortDigest("sha256:0123456789abcdef0123"), "sha256:0123456789ab");
  EXPECT_EQ(ShortDigest("sha256:01"), "sha256:01");
}

TEST(ModelsView, ListsNameVersionsLatestChannelsAndDescription) {
  json answer = json::parse(R"({"models":[
    {"name":"vibration-anomaly","description":"Flags abnormal vibration of bearings from accelerometer windows","versions":2,"latest":"1.1.0","channels":{"production":"1.0.0","staging":"1.1.0"}},
    {"name":"affine","description":"","versions":1,"latest":null,"channels":{}}]})");
  EXPECT_EQ(ModelsView(answer, "", "127.0.0.1:7400"),
            "NAME               VERSIONS  LATEST  CHANNELS                         DESCRIPTION\n"
            "vibration-anomaly  2         1.1.0   production=1.0.0, staging=1.1.0  "
            "Flags abnormal vibration of bearings from accel…\n"
            "affine             1         -       -\n");
}

TEST(ModelsView, AnEmptyListSaysWhatToDoNext) {
  json none = {{"models", json::array()}};
  EXPECT_EQ(ModelsView(none, "", "127.0.0.1:7400"),
            "no models on the hub yet; push one with airlock push PKG 127.0.0.1:7400/models/NAME "
            "(pack it with airlock pack, sign it with airlock sign)\n");
  EXPECT_EQ(ModelsView(none, "pump", "h:1"),
            "no models on the hub match \"pump\"; list them all with airlock models ls\n");
  // An answer without the list (an older hub) reads as empty, not as a crash.
  EXPECT_NE(ModelsView(json::array(), "", "h:1").find("no models"), std::string::npos);
}

TEST(VersionsView, ShowsReleaseChannelsAndLineage) {
  json answer = json::parse(R"({"versions":[
    {"model":"vib","version":"1.1.0","platforms":["linux/amd64","linux/arm64"],
     "pushed_by":"ci","pushed_at":"2026-11-30T12:00:00Z",
     "release":{"id":"sha256:aa","release_counter":2,"signatures":2,"uploaded_by":"ci","uploaded_at":"x"},
     "channels":["staging"],
     "lineage":{"training_run":"run-42","dataset_digest":"sha256:0123456789abcdef0000"}},
    {"model":"vib","version":"1.0.0","platforms":["linux/amd64"],
     "pushed_by":"ci","pushed_at":"2026-11-29T12:00:00Z","release":null,"channels":[],"lineage":{}}]})");
  EXPECT_EQ(VersionsView(answer, "vib", "h:1"),
            "VERSION  PUSHED                BY  PLATFORMS                RELEASE    CHANNELS  "
            "LINEAGE\n"
            "1.1.0    2026-11-30T12:00:00Z  ci  linux/amd64,linux/arm64  #2, 2 sig  staging   "
            "run-42 / sha256:0123456789ab\n"
            "1.0.0    2026-11-29T12:00:00Z  ci  linux/amd64              unsigned   -         "
            "-\n");
  EXPECT_EQ(VersionsView({{"versions", json::array()}}, "vib", "h:1"),
            "vib has no versions on the hub; push one with airlock push PKG h:1/models/vib\n");
}

json Deployment() {
  return json::parse(R"({"id":"d-7","model":"vib","channel":"production","channel_version":4,
    "release":{"version":"1.1.0","id":"sha256:0123456789abcdef"},"gateways":["gw-a","gw-b"],
    "selector":{"line":"3"},"strategy":{"waves":["1","10%","100%"],"max_in_flight":5},
    "state":"pending","created_by":"rm","created_at":"2026-11-30T12:00:00Z",
    "updated_at":"2026-11-30T12:01:00Z",
    "history":[{"at":"2026-11-30T12:00:00Z","actor":"rm","action":"created","detail":"2 gateways"},
               {"at":"2026-11-30T12:01:00Z","actor":"rm","action":"cancelled","detail":null}]})");
}

TEST(DeploymentViews, ListShowSummaryAndStatus) {
  json list = {{"deployments", json::array({Deployment()})}};
  EXPECT_EQ(DeploymentsView(list, false),
            "ID   MODEL  CHANNEL     RELEASE  STATE    GATEWAYS  CREATED\n"
            "d-7  vib    production  1.1.0    pending  2         2026-11-30T12:00:00Z\n");
  EXPECT_NE(DeploymentsView({{"deployments", json::array()}}, false).find("airlock deploy"),
            std::string::npos);
  EXPECT_NE(DeploymentsView({{"deployments", json::array()}}, true).find("no deployments match"),
            std::string::npos);

  std::string show = DeploymentView(Deployment());
  EXPECT_NE(show.find("  release:  1.1.0 (sha256:0123456789ab)\n"), std::string::npos) << show;
  EXPECT_NE(show.find("  strategy: waves 1,10%,100%, max in flight 5\n"), std::string::npos)
      << show;
  EXPECT_NE(show.find("  selector: line=3\n"), std::string::npos) << show;
  EXPECT_NE(show.find("TIME                  WHO  ACTION     DETAIL\n"
                      "2026-11-30T12:00:00Z  rm   created    2 gateways\n"
                      "2026-11-30T12:01:00Z  rm   cancelled\n"),
            std::string::npos)
      << show;

  EXPECT_EQ(DeploymentSummary(Deployment()),
            "deployment d-7: vib production (channel version 4, release 1.1.0) to 2 gateway(s) "
            "and those matching line=3, state pending");

  std::string status = StatusView(Deployment(), 1);
  EXPECT_NE(status.find("deployment d-7: pending\n"), std::string::npos) << status;
  EXPECT_NE(status.find("  gw-a\n  gw-b\n"), std::string::npos) << status;
  EXPECT_NE(status.find("last 1 of 2 event(s):"), std::string::npos) << status;
  EXPECT_EQ(status.find("created    2 gateways"), std::string::npos) << status;

  json with_states = Deployment();
  with_states["gateways_status"] = {{"gw-a", {{"state", "downloading"}, {"bytes_done", 10}}},
                                    {"gw-b", "pending"}};
  std::string s2 = StatusView(with_states, 5);
  EXPECT_NE(s2.find("GATEWAY  STATE        DETAIL\n"
                    "gw-a     downloading  bytes_done=10\n"
                    "gw-b     pending\n"),
            std::string::npos)
      << s2;

  // What the hub reports since its orchestrator: one delivery per gateway.
  json with_deliveries = Deployment();
  with_deliveries["state"] = "delivering";
  with_deliveries["deliveries"] = json::parse(R"([
    {"gateway":"gw-a","state":"downloading","wait":"reply","bytes_done":1572864,
     "bytes_total":3145728,"attempt":1,"retries":0,"updated_at":"2026-11-30T12:02:00Z",
     "last_error":null},
    {"gateway":"gw-b","state":"offered","wait":"retry","bytes_done":0,"bytes_total":0,
     "attempt":0,"retries":2,"updated_at":"2026-11-30T12:03:00Z",
     "last_error":{"code":"timeout","message":"no answer to the offer within 15m"}}])");
  std::string s3 = StatusView(with_deliveries, 5);
  EXPECT_NE(s3.find("GATEWAY  STATE               PROGRESS                 ATTEMPT  RETRIES  "
                    "UPDATED               LAST ERROR\n"
                    "gw-a     downloading         1.5 MiB / 3.0 MiB (50%)  1        0        "
                    "2026-11-30T12:02:00Z  -\n"
                    "gw-b     offered (retrying)  -                        0        2        "
                    "2026-11-30T12:03:00Z  timeout: no answer to the offer within 15m\n"),
            std::string::npos)
      << s3;
  EXPECT_FALSE(DeploymentIsFinal(with_deliveries));
  with_deliveries["state"] = "complete";
  EXPECT_TRUE(DeploymentIsFinal(with_deliveries));
  // What the gateways report of their device rollouts (gw/{gw}/fleet), down to each device.
  with_deliveries["fleet"] = json::parse(R"([
    {"gateway":"gw-a","deployment":"d-7","state":"running","wave":2,"waves":2,"failures":0,
     "failure_limit":1,"devices":{"total":3,"offline":0,"pending":0,"done":1,"activating":1,
     "health-window":1,"failed":0},
     "device_status":[{"id":"dev-1","wave":1,"status":"done","online":true},
                      {"id":"dev-2","wave":2,"status":"activating","online":true},
                      {"id":"dev-3","wave":2,"status":"pending","online":false}]}])");
  std::string s4 = StatusView(with_deliveries, 5);
  EXPECT_NE(s4.find("devices:\n"
                    "GATEWAY  ROLLOUT  WAVE  DONE  FAILED  DETAIL\n"
                    "gw-a     running  2/2   1/3   0/1     activating 1, health-window 1\n"),
            std::string::npos)
      << s4;
  EXPECT_NE(s4.find("dev-3   2     pending (offline)"), std::string::npos) << s4;
  EXPECT_EQ(ByteProgress(0, 0), "-");
  EXPECT_EQ(ByteProgress(512, 1024), "512 B / 1.0 KiB (50%)");
}

TEST(GatewaysView, ListsGatewaysOrSaysHowToRegisterOne) {
  json answer =
      json::parse(R"({"gateways":[{"id":"g1","name":"plant-1","labels":{"site":"a","line":"3"},
    "registered_at":"2026-11-30T12:00:00Z","last_seen":null,"devices":0}]})");
  EXPECT_EQ(GatewaysView(answer, "http://h:1"),
            "NAME     ID  LABELS         REGISTERED            LAST SEEN  DEVICES\n"
            "plant-1  g1  line=3,site=a  2026-11-30T12:00:00Z  -          0\n");
  EXPECT_NE(GatewaysView({{"gateways", json::array()}}, "http://h:1")
                .find("airlock gateways token --hub http://h:1"),
            std::string::npos);
}

}  // namespace
}  // namespace airlock::cli
