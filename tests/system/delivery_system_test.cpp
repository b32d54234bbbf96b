// Cloud → factory delivery with every part real: a Mosquitto broker, `airlock-hub serve --mqtt`
// and `airlock-gateway serve` as processes, driven through the `airlock` and `airlock-gateway`
// commands as their users would. A package is pushed, signed, promoted and deployed; the hub
// offers it, the gateway verifies and downloads it, the operator approves it, and a device pulls
// it from the gateway. Then the same with the hub, the broker or the link down between steps,
// and the air-gapped path (bundle export, import, and the hub learning of it later).

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "net/mqtt.hpp"
#include "support/daemon.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

#include "system/system_fixture.hpp"

namespace airlock::testing {
namespace {

using namespace std::chrono_literals;

TEST_F(DeliverySystem, ADeploymentReachesTheGatewayAndWaitsForTheOperator) {
  StartGateway("plant-1", GatewayConfig("plant-1"));
  std::string id = Deploy("plant-1");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  json status = Status(id);
  ASSERT_EQ(status["deliveries"].size(), 1u) << status.dump(2);
  const json& d = status["deliveries"][0];
  EXPECT_EQ(d["gateway"], "plant-1");
  EXPECT_EQ(d["state"], "available");
  EXPECT_GT(d["bytes_total"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(d["bytes_done"], d["bytes_total"]);
  CommandResult table = As("viewer", {"status", id});
  EXPECT_NE(table.out.find("plant-1"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("available"), std::string::npos) << table.out;

  // The operator sees what arrived, signed by whom, and approves it.
  CommandResult ls = Operator("plant-1", {"approvals", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  json approvals = json::parse(ls.out)["approvals"];
  ASSERT_EQ(approvals.size(), 1u) << ls.out;
  EXPECT_EQ(approvals[0]["state"], "awaiting-approval");
  EXPECT_EQ(approvals[0]["deployment"], id);
  std::string delivery = approvals[0]["id"];
  CommandResult show = Operator("plant-1", {"approvals", "show", delivery});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("vibration-anomaly 1.0.0"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("signed by:"), std::string::npos) << show.out;
  CommandResult approved =
      Operator("plant-1", {"approvals", "approve", delivery, "--comment", "line 3 is ready"});
  ASSERT_EQ(approved.exit_code, 0) << approved.err;
  EXPECT_NE(approved.out.find("approved"), std::string::npos) << approved.out;

  ExpectDevicesCanPull("plant-1");
}

TEST_F(DeliverySystem, AnOfferHeldForTheOperatorIsShownOnTheHubAndNeverGivenUp) {
  StartGateway("plant-9", GatewayConfig("plant-9", "", "policy:\n  offers: operator\n"));
  std::string id = Deploy("plant-9");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitUntil([&] { return Delivery(id).value("held", false); }, kLong, 500ms))
      << Status(id).dump(2) << GatewayLogs();
  // Several offer timeouts (3 s here) later: re-offered, still held, not one failure counted.
  std::this_thread::sleep_for(8s);
  json d = Delivery(id);
  EXPECT_EQ(d["state"], "offered") << d.dump(2);
  EXPECT_TRUE(d["held"].get<bool>()) << d.dump(2);
  EXPECT_EQ(d["retries"], 0) << d.dump(2);
  EXPECT_GE(d["offers"].get<int>(), 2) << d.dump(2);
  CommandResult table = As("viewer", {"status", id});
  EXPECT_NE(table.out.find("held for the site's operator"), std::string::npos) << table.out;

  // The operator lets it in: ready, downloaded, complete.
  CommandResult ls = Operator("plant-9", {"approvals", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  json approvals = json::parse(ls.out)["approvals"];
  ASSERT_EQ(approvals.size(), 1u) << ls.out;
  EXPECT_EQ(approvals[0]["state"], "held-offer");
  ASSERT_EQ(Operator("plant-9", {"approvals", "approve", approvals[0]["id"]}).exit_code, 0);
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_FALSE(Delivery(id)["held"].get<bool>());
}

TEST_F(DeliverySystem, TheHubAndTheBrokerRestartedBetweenStepsLoseNothing) {
  // Registered, then offline while the deployment is made: the offer waits at the broker.
  fs::path config = GatewayConfig("plant-2");
  StartGateway("plant-2", config);
  StopGateway("plant-2");
  std::string id = Deploy("plant-2");
  ASSERT_FALSE(id.empty());
  // The hub goes down with the offer out; the gateway comes up and answers to nobody.
  StopDaemon(hub_);
  StartGateway("plant-2", config);
  // The broker restarts too (no persistence: what it held is lost; the timers make up for it).
  broker_->Stop();
  broker_->Start();
  StartHub();
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_EQ(Status(id)["deliveries"][0]["state"], "available");
  ExpectDevicesCanPull("plant-2");
}

TEST_F(DeliverySystem, AnAirGappedSiteImportsABundleAndTheHubLearnsOfItLater) {
  // Registered while it had a link; then the link is gone (its broker address leads nowhere).
  StartGateway("site-b", GatewayConfig("site-b"));
  StopGateway("site-b");
  StartGateway("site-b",
               GatewayConfig("site-b", "tcp://127.0.0.1:" + std::to_string(FreePort())));
  std::string id = Deploy("site-b");
  ASSERT_FALSE(id.empty());

  fs::path bundle = dir_ / "site-b-bundle.tar";
  CommandResult exported =
      As("viewer", {"bundle", "export", "--deployment", id, "-o", bundle.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;

  // A bundle whose bytes were altered is refused, and nothing is served.
  fs::path tampered = dir_ / "tampered.tar";
  fs::copy_file(bundle, tampered);
  {
    std::string bytes = ReadAll(tampered);
    std::size_t at = bytes.find("\"vibration-anomaly\"");  // inside a manifest or the release
    ASSERT_NE(at, std::string::npos);
    bytes[at + 1] = 'V';
    WriteAll(tampered, bytes);
  }
  CommandResult refused = Operator("site-b", {"import", tampered.string()});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_NE(refused.err.find("did not import"), std::string::npos) << refused.err;

  CommandResult imported = Operator("site-b", {"import", bundle.string()});
  ASSERT_EQ(imported.exit_code, 0) << imported.err << GatewayLogs();
  EXPECT_NE(imported.out.find("imported vibration-anomaly 1.0.0 for deployment " + id),
            std::string::npos)
      << imported.out;
  EXPECT_NE(imported.out.find("bundle site-b-bundle.tar, exported from " + hub_url()),
            std::string::npos)
      << imported.out;
  json approvals = json::parse(Operator("site-b", {"approvals", "ls", "--json"}).out)["approvals"];
  ASSERT_EQ(approvals.size(), 1u);
  EXPECT_EQ(approvals[0]["state"], "awaiting-approval");
  std::string delivery = approvals[0]["id"];
  ASSERT_EQ(Operator("site-b", {"approvals", "approve", delivery}).exit_code, 0);
  // Importing the same bundle again changes nothing, whatever its file is called (the gateway
  // takes names of at most 128 letters, digits, '.', '_' and '-': the command makes one).
  fs::path renamed = dir_ / ("site b (copy) " + std::string(200, 'x') + ".tar");
  fs::copy_file(bundle, renamed);
  CommandResult again = Operator("site-b", {"import", renamed.string()});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  ExpectDevicesCanPull("site-b");
  EXPECT_EQ(Status(id)["deliveries"][0]["state"], "offered");

  // The link returns: the hub's offer is answered "available" without a download, and the
  // operator's decision stands.
  StopGateway("site-b");
  StartGateway("site-b", GatewayConfig("site-b"));
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_EQ(Status(id)["deliveries"][0]["attempt"], 0) << Status(id).dump(2);
  approvals = json::parse(Operator("site-b", {"approvals", "ls", "--json"}).out)["approvals"];
  for (const json& a : approvals) {
    EXPECT_EQ(a["state"], "approved") << a.dump();
  }
}

TEST_F(DeliverySystem, AGatewayKilledMidDownloadFetchesOnlyWhatItLacked) {
  PrepareBig("plant-3");
  fs::path config = dir_ / "plant-3.yaml";
  StartGateway("plant-3", config);
  std::string id = Deploy("plant-3", "big");
  ASSERT_TRUE(WaitUntil([&] { return PartialBytes("plant-3") >= kBigModel / 2; }, kLong))
      << Status(id).dump(2) << GatewayLogs();
  ::kill(gateways_["plant-3"], SIGKILL);
  StopGateway("plant-3");
  std::uint64_t kept = PartialBytes("plant-3");
  std::uint64_t before = relay_->bytes_to_clients();
  ASSERT_LT(kept, kBigModel) << "the download finished before the kill";
  StartGateway("plant-3", config);
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  std::uint64_t again = relay_->bytes_to_clients() - before;
  // The restarted gateway asks for the model from where its file ended: what it kept is not
  // sent again (the rest of the package, its manifests, is a few KiB).
  EXPECT_GE(again, kBigModel - kept);
  EXPECT_LT(again, kBigModel - kept + (64 << 10)) << "kept " << kept << ", again " << again
                                                   << GatewayLogs();
  EXPECT_EQ(PartialBytes("plant-3"), 0u);
  EXPECT_NE(GatewayLogs().find("resuming sha256:"), std::string::npos);
}

TEST_F(DeliverySystem, ABrokerRestartAndACutConnectionMidDownloadLoseNothing) {
  PrepareBig("plant-4");
  StartGateway("plant-4", dir_ / "plant-4.yaml");
  std::string id = Deploy("plant-4", "big");
  ASSERT_TRUE(WaitUntil([&] { return relay_->bytes_to_clients() >= kBigModel / 4; }, kLong))
      << Status(id).dump(2) << GatewayLogs();
  broker_->Stop();
  broker_->Start();
  ASSERT_TRUE(WaitUntil([&] { return relay_->bytes_to_clients() >= kBigModel / 2; }, kLong));
  relay_->CutConnections();  // the network between the gateway and the hub breaks
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_EQ(Delivery(id)["state"], "available");
  EXPECT_EQ(Delivery(id)["bytes_done"], Delivery(id)["bytes_total"]);
}

TEST_F(DeliverySystem, ACancelWhileDownloadingRemovesThePartialData) {
  PrepareBig("plant-5", 1 << 20);  // 16 s for the model: the cancel comes long before its end
  StartGateway("plant-5", dir_ / "plant-5.yaml");
  std::string id = Deploy("plant-5", "big");
  ASSERT_TRUE(WaitUntil([&] { return PartialBytes("plant-5") > 0; }, kLong))
      << Status(id).dump(2) << GatewayLogs();
  CommandResult cancelled =
      As("release-manager", {"deployments", "cancel", id, "--reason", "wrong model"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  ASSERT_TRUE(WaitUntil([&] { return PartialBytes("plant-5") == 0; }, kLong)) << GatewayLogs();
  EXPECT_EQ(Status(id)["state"], "cancelled");
  EXPECT_EQ(Delivery(id)["state"], "cancelled");
  json shown = json::parse(Operator("plant-5", {"approvals", "show",
                                                Delivery(id)["delivery_id"].get<std::string>(),
                                                "--json"})
                               .out,
                           nullptr, false);
  EXPECT_EQ(shown.value("delivery", ""), "cancelled") << shown.dump();
  // Nothing of it is served.
  httplib::Client device("127.0.0.1", gateway_ports_["plant-5"]);
  auto r = device.Get("/v2/models/big/manifests/1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

TEST_F(DeliverySystem, WrongBytesFromTheHubAreRefusedNeverCachedAndFetchedAgain) {
  PrepareBig("plant-6");
  // Flip a byte of the model in the hub's blob store: the hub serves it as it is.
  fs::path blob;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "hub" / "blobs")) {
    if (e.is_regular_file() && e.file_size() >= kBigModel) {
      blob = e.path();
    }
  }
  ASSERT_FALSE(blob.empty());
  std::string good = ReadAll(blob);
  std::string bad = good;
  bad[bad.size() / 3] = static_cast<char>(bad[bad.size() / 3] ^ 0x01);
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  WriteAll(blob, bad);
  StartGateway("plant-6", dir_ / "plant-6.yaml");
  std::string id = Deploy("plant-6", "big");
  ASSERT_TRUE(WaitUntil(
      [&] {
        json d = Delivery(id);
        return d.contains("last_error") && d["last_error"].is_object() &&
               d["last_error"].value("code", "") == "digest-mismatch";
      },
      kLong))
      << Status(id).dump(2) << GatewayLogs();
  std::string hex = blob.filename().string();
  EXPECT_FALSE(fs::exists(dir_ / "plant-6" / "cache" / "blobs" / "sha256" / hex.substr(0, 2) / hex));
  WriteAll(blob, good);
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_GE(Delivery(id)["attempt"].get<int>(), 2);
}

TEST_F(DeliverySystem, AGatewayWithoutRoomRejectsAndTheHubSaysWhy) {
  // 10 KiB of cache for a package of about 100 KiB.
  fs::path config = GatewayConfig("plant-7");
  std::string yaml = ReadAll(config);
  yaml.replace(yaml.find("cache:\n"), 7, "cache:\n  max_bytes: 10240\n");
  WriteAll(config, yaml);
  StartGateway("plant-7", config);
  std::string id = Deploy("plant-7");
  ASSERT_TRUE(WaitForState(id, "failed")) << Status(id).dump(2) << GatewayLogs();
  json d = Delivery(id);
  EXPECT_EQ(d["state"], "rejected");
  EXPECT_EQ(d["last_error"]["code"], "insufficient-space") << d.dump(2);
  EXPECT_NE(d["last_error"]["message"].get<std::string>().find("needs"), std::string::npos)
      << d.dump(2);
  CommandResult table = As("viewer", {"status", id});
  EXPECT_NE(table.out.find("insufficient-space"), std::string::npos) << table.out;
}

TEST_F(DeliverySystem, UrlsThatExpireMidDownloadAreGrantedAgainAndTheDeliveryFinishes) {
  // URLs that live 4 s, re-granted 2 s before they expire, for a download of about 16 s.
  StopDaemon(hub_);
  WriteAll(dir_ / "hub.yaml", ReadAll(dir_ / "hub.yaml") +
                                  "  url_ttl: 4s\n"
                                  "  url_refresh_margin: 2s\n");
  StartHub();
  PrepareBig("plant-8", 1 << 20);
  StartGateway("plant-8", dir_ / "plant-8.yaml");
  std::string id = Deploy("plant-8", "big");
  // Past the first URLs' expiry, the connection breaks: the gateway must resume with a newer
  // grant's URLs (the old ones are refused).
  ASSERT_TRUE(WaitUntil([&] { return Delivery(id).value("attempt", 0) >= 3; }, kLong))
      << Status(id).dump(2) << GatewayLogs();
  relay_->CutConnections();
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  EXPECT_GE(Delivery(id)["attempt"].get<int>(), 3);
  EXPECT_EQ(Delivery(id)["retries"], 0) << "URL refreshes are not failures";
}

// Messages replayed into the broker after the fact: a stale grant, the gateway's old ready and
// statuses, a foreign gateway's status. Both sides ignore them; nothing is fetched again.
TEST_F(DeliverySystem, RepeatedAndStaleMessagesChangeNothing) {
  net::MqttOptions o;
  o.broker_url = broker_->url();
  o.client_id = "replayer";
  auto replayer = net::MqttClient::Create(o);
  ASSERT_TRUE(replayer);
  std::mutex mu;
  std::vector<net::MqttMessage> seen;
  ASSERT_TRUE((*replayer)->WaitConnected(10s));
  ASSERT_TRUE((*replayer)->Subscribe("airlock/v1/#", 1, [&](const net::MqttMessage& m) {
    std::lock_guard lock(mu);
    seen.push_back(m);
  }));
  PrepareBig("plant-9", 16 << 20);
  StartGateway("plant-9", dir_ / "plant-9.yaml");
  std::string id = Deploy("plant-9", "big");
  ASSERT_TRUE(WaitForState(id, "complete")) << Status(id).dump(2) << GatewayLogs();
  json before = Delivery(id);
  std::uint64_t bytes = relay_->bytes_to_clients();
  std::vector<net::MqttMessage> replay;
  {
    std::lock_guard lock(mu);
    replay = seen;
  }
  ASSERT_GE(replay.size(), 4u);  // offer, ready, grant, statuses
  for (const auto& m : replay) {
    ASSERT_TRUE((*replayer)->Publish(m.topic, m.payload));
  }
  // The same status, claimed for another gateway's topic.
  for (const auto& m : replay) {
    if (m.topic.ends_with("/status")) {
      std::string foreign = m.topic;
      foreign.replace(foreign.find("plant-9"), 7, "plant-0");
      ASSERT_TRUE((*replayer)->Publish(foreign, m.payload));
    }
  }
  // A marker through the same broker: once the hub answered a later deployment, it had read the
  // replayed messages.
  StartGateway("plant-1", GatewayConfig("plant-1"));
  std::string later = Deploy("plant-1");
  ASSERT_TRUE(WaitForState(later, "complete"));
  json after = Delivery(id);
  EXPECT_EQ(after["state"], "available");
  EXPECT_EQ(after["attempt"], before["attempt"]);
  EXPECT_EQ(after["updated_at"], before["updated_at"]);
  EXPECT_EQ(Status(id)["state"], "complete");
  EXPECT_EQ(relay_->bytes_to_clients(), bytes) << "the replayed grant was fetched again";
  json approvals = json::parse(Operator("plant-9", {"approvals", "ls", "--json"}).out)["approvals"];
  EXPECT_EQ(approvals.size(), 1u) << approvals.dump();
}

}  // namespace
}  // namespace airlock::testing
