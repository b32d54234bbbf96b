// The agent's /metrics scraped from a running server after some requests: the values a dashboard
// reads, the hook other parts of the agent append with, and promtool's verdict on the text.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/agent_fixture.hpp"
#include "support/promtool.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;

class AgentMetricsTest : public AgentFixture {};

TEST_F(AgentMetricsTest, AScrapeAfterRequestsCountsThemAndPromtoolAcceptsIt) {
  Install(affine_dir(), "1.0.0", 1);
  StartServer();
  // The hook: what the pipelines and, later, the telemetry outbox add. A label value that needs
  // escaping goes through the shared writer.
  server_->SetMetricsAppender([](prometheus::MetricsText& out) {
    out.Family("airlock_test_outbox_records", prometheus::MetricType::kGauge,
               "Records waiting in a test outbox");
    out.Sample({{"outbox", "line \"3\"\\cam"}}, 7);
  });
  auto c = Client();
  json good = {{"inputs",
                {{{"name", "x"},
                  {"datatype", "FP32"},
                  {"shape", {2, 4}},
                  {"data", {1, 2, 3, 4, 5, 6, 7, 8}}}}}};
  ASSERT_EQ(c->Post("/v2/models/affine/infer", good.dump(), "application/json")->status, 200);
  ASSERT_EQ(c->Post("/v2/models/affine/infer", "{}", "application/json")->status, 400);
  ASSERT_EQ(c->Get("/v2/models/nothing")->status, 404);

  auto m = c->Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = m->body;
  for (const char* line : {
           "nv_inference_request_success{model=\"affine\",version=\"1.0.0\"} 1\n",
           "nv_inference_request_failure{model=\"affine\",version=\"1.0.0\"} 1\n",
           "nv_inference_count{model=\"affine\",version=\"1.0.0\"} 2\n",
           "airlock_inference_request_duration_seconds_count{model=\"affine\",version=\"1.0.0\"} "
           "1\n",
           "airlock_model_state{model=\"affine\",version=\"1.0.0\",state=\"READY\"} 1\n",
           // The three requests above and this scrape; the 400 and the 404 are errors.
           "\nairlock_http_requests_total 4\n",
           "\nairlock_http_errors_total 2\n",
           "# TYPE airlock_test_outbox_records gauge\n"
           "airlock_test_outbox_records{outbox=\"line \\\"3\\\"\\\\cam\"} 7\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
  }
  EXPECT_TRUE(airlock::testing::PromtoolAccepts(text, TritonLintProblems()));
}

// The tolerated problems are exactly Triton's names: the same problem on any other name fails.
TEST_F(AgentMetricsTest, OnlyTritonsOwnNamesAreExemptFromTheLint) {
  std::string text =
      "# HELP airlock_requests_count Requests\n# TYPE airlock_requests_count counter\n"
      "airlock_requests_count 1\n";
  auto checked = airlock::testing::PromtoolCheck(text);
  ASSERT_TRUE(checked.found) << "promtool is not installed: run scripts/bootstrap";
  EXPECT_EQ(checked.exit_code, 3) << checked.output;
  EXPECT_NE(
      checked.output.find("airlock_requests_count counter metrics should have \"_total\" suffix"),
      std::string::npos)
      << checked.output;
  EXPECT_FALSE(airlock::testing::PromtoolAccepts(text, TritonLintProblems()));
}

}  // namespace
}  // namespace airlock::agent
