#include "agent/config.hpp"

#include <gtest/gtest.h>

#include "core/yaml.hpp"
#include "support/test_support.hpp"

namespace airlock::agent {
namespace {

Result<AgentConfig> FromYaml(const std::string& text) {
  auto doc = ParseYaml(text, "agent.yaml");
  EXPECT_TRUE(doc) << doc.error().ToString();
  return ParseAgentConfig(*doc, "agent.yaml");
}

TEST(AgentConfig, EmptyMeansDefaults) {
  auto c = FromYaml("");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->http.address, "127.0.0.1");
  EXPECT_EQ(c->http.port, 8000);
  EXPECT_EQ(c->http.max_request_size, 64u << 20);
  EXPECT_FALSE(c->defaults.session.cpu_arena);
  EXPECT_EQ(c->defaults.versions.kind, VersionPolicy::Kind::kLatest);
  EXPECT_EQ(c->defaults.versions.latest, 1u);
  EXPECT_FALSE(c->defaults.batching);
  EXPECT_EQ(c->telemetry.monitor_budget, 0.005);
  EXPECT_EQ(c->telemetry.capture_max_per_second, 20);
  auto t = FromYaml("telemetry: {monitor_budget: 0.02, capture_max_per_second: 2.5}");
  ASSERT_TRUE(t) << t.error().ToString();
  EXPECT_EQ(t->telemetry.monitor_budget, 0.02);
  EXPECT_EQ(t->telemetry.capture_max_per_second, 2.5);
}

TEST(AgentConfig, ModelsOverrideDefaultsKeyByKey) {
  auto c = FromYaml(R"(
http: {port: 0, max_request_size: 512KiB}
runtime: {shared_pool_threads: 2}
defaults: {instances: 2, timeout: 1500ms, dynamic_batching: {max_batch_size: 16}}
models:
  a: {versions: {specific: ["1.0", 2.0.0]}, dynamic_batching: false}
  b: {versions: all, max_queue: 0}
mqtt: {broker: "tcp://127.0.0.1:1883"}
)");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->http.max_request_size, 512u * 1024);
  EXPECT_EQ(c->runtime.shared_pool_threads, 2);
  EXPECT_EQ(c->defaults.timeout, std::chrono::milliseconds(1500));
  ASSERT_TRUE(c->defaults.batching);
  EXPECT_EQ(c->defaults.batching->max_batch_size, 16);
  EXPECT_EQ(c->defaults.batching->max_queue_delay, std::chrono::milliseconds(2));
  const auto& a = c->For("a");
  EXPECT_EQ(a.instances, 2);
  EXPECT_FALSE(a.batching);
  EXPECT_EQ(a.versions.versions, (std::vector<std::string>{"1.0", "2.0.0"}));
  EXPECT_EQ(c->For("b").versions.kind, VersionPolicy::Kind::kAll);
  EXPECT_EQ(c->For("b").max_queue, 0u);
  EXPECT_EQ(c->For("other").instances, 2);  // the defaults
  EXPECT_EQ(c->mqtt.broker, "tcp://127.0.0.1:1883");
}

TEST(AgentConfig, MistakesNameTheKey) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  for (const Case& k : std::vector<Case>{
           {"http: {prot: 8000}", "http.prot: unknown key"},
           {"http: {port: 70000}", "http.port: must be an integer from 0 to 65535"},
           {"http: {max_request_size: 5 MB}", "http.max_request_size: bad size"},
           {"http: {tls: {cert: a.pem}}", "give both cert and key"},
           {"defaults: {timeout: 5}", "defaults.timeout"},
           {"defaults: {timeout: 0s}", "must be more than 0"},
           {"defaults: {versions: {latest: 1, specific: [a]}}", "not both"},
           {"models: {m: {versions: {specific: [1.0]}}}", "quote 1.0"},
           {"models: {m: {instances: 0}}", "models.m.instances"},
           {"model_control: sometimes", "want all or explicit"},
           {"[1, 2]", "must be a mapping"},
           {"telemetry: {monitor_budget: 0}", "telemetry.monitor_budget: must be a number from 0.0001 to 1"},
           {"telemetry: {monitor_budget: 5%}", "telemetry.monitor_budget: must be a number"},
           {"telemetry: {capture_max_per_second: -1}", "telemetry.capture_max_per_second: must be"},
           {"telemetry: {interval: 500ms}", "telemetry.interval: must be at least 1s"},
       }) {
    SCOPED_TRACE(k.yaml);
    auto c = FromYaml(k.yaml);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(c.error().ToString().find(k.message), std::string::npos) << c.error().ToString();
    EXPECT_EQ(c.error().ToString().rfind("agent.yaml: ", 0), 0u);
  }
}

}  // namespace
}  // namespace airlock::agent

namespace airlock::agent {
namespace {

TEST(AgentServe, RefusesPlainHttpOffLoopbackUnlessAllowed) {
  airlock::testing::TempDir dir;
  airlock::testing::WriteAll(dir / "agent.yaml", "http: {address: 0.0.0.0, port: 0}\n");
  auto r = airlock::testing::RunCommand(
      {airlock::testing::AgentBinary().string(), "--store", (dir / "store").string(), "serve",
       "--config", (dir / "agent.yaml").string()},
      {}, 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("plain HTTP on 0.0.0.0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("http.allow_plain"), std::string::npos) << r.err;
  auto allowed = FromYaml("http: {address: 0.0.0.0, allow_plain: true}");
  ASSERT_TRUE(allowed) << allowed.error().ToString();
  EXPECT_TRUE(allowed->http.allow_plain);
}

}  // namespace
}  // namespace airlock::agent
