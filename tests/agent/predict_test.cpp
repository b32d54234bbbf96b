// The pipeline endpoint over real HTTP: a JPEG of a tag in, a verdict out; a signal in, a verdict
// out; corrupt input refused while the server keeps serving.

#include "agent/agent_fixture.hpp"
#include "pipeline/encode.hpp"
#include "pipeline/image.hpp"

namespace airlock::agent {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char* const kTagVerdicts[] = {"ok", "scratched", "ok", "scratched"};

class PredictTest : public AgentFixture {
 protected:
  fs::path Example(const std::string& name) {
    return airlock::testing::SourceDir() / "examples" / name;
  }
};

TEST_F(PredictTest, JpegInVerdictOut) {
  Install(Example("visual-inspection"), "1.0.0", 1);
  StartServer();
  ASSERT_TRUE(load_errors_.empty()) << load_errors_.front().ToString();
  auto c = Client();
  for (int k = 0; k < 4; ++k) {
    SCOPED_TRACE("sample " + std::to_string(k));
    std::string png = airlock::testing::ReadAll(Example("visual-inspection") / "samples" /
                                                std::to_string(k) / "image.png");
    auto img = pipeline::DecodeImage(png, 3).value();
    std::string jpeg = pipeline::pictures::EncodeJpeg(img.pixels, img.width, img.height, 3, 95);
    auto r = c->Post("/api/v1/models/visual-inspection/predict?name=tag.jpg", jpeg, "image/jpeg");
    ASSERT_EQ(r->status, 200) << r->body;
    auto result = json::parse(r->body);
    EXPECT_EQ(result["verdict"], kTagVerdicts[k]) << result.dump();
    EXPECT_EQ(result["model"], "visual-inspection");
    EXPECT_EQ(result["version"], "1.0.0");
    EXPECT_EQ(result["name"], "tag.jpg");
    // Raw octets mean FP32 samples, which a picture pipeline refuses.
    r = c->Post("/api/v1/models/visual-inspection/versions/1.0.0/predict", png,
                "application/octet-stream; x=1");
    EXPECT_EQ(r->status, 400) << r->body;
    // What curl --data-binary sends (a form type): the picture is recognised by its bytes.
    r = c->Post("/api/v1/models/visual-inspection/predict", png,
                "application/x-www-form-urlencoded");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["verdict"], kTagVerdicts[k]);
  }

  // Corrupt pictures: 400 naming the problem; the model keeps serving.
  std::string png = airlock::testing::ReadAll(Example("visual-inspection") / "samples/0/image.png");
  for (const std::string& bad : {png.substr(0, png.size() / 2), std::string("\xff\xd8\xff garbage"),
                                 std::string()}) {
    auto r = c->Post("/api/v1/models/visual-inspection/predict", bad, "");
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_FALSE(json::parse(r->body)["error"].get<std::string>().empty());
  }
  auto r = c->Post("/api/v1/models/visual-inspection/predict", png, "image/png");
  EXPECT_EQ(r->status, 200);
  auto metrics = c->Get("/metrics")->body;
  EXPECT_NE(metrics.find("airlock_pipeline_requests_total{model=\"visual-inspection\",version=\"1.0.0\"} 9"),
            std::string::npos);
  EXPECT_NE(metrics.find("airlock_pipeline_failures_total{model=\"visual-inspection\",version=\"1.0.0\"} 7"),
            std::string::npos);
}

TEST_F(PredictTest, SignalInVerdictOut) {
  Install(Example("vibration-anomaly"), "1.0.0", 1);
  StartServer();
  ASSERT_TRUE(load_errors_.empty()) << load_errors_.front().ToString();
  auto c = Client();
  // A quiet signal: 512 samples, three windows, all normal.
  json quiet = json::array();
  for (int i = 0; i < 512; ++i) {
    quiet.push_back(0.0);
  }
  auto r = c->Post("/api/v1/models/vibration-anomaly/predict", quiet.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto result = json::parse(r->body);
  EXPECT_EQ(result["rows"].size(), 3u) << result.dump();
  EXPECT_TRUE(result.contains("verdict"));
  // Too short for one window.
  r = c->Post("/api/v1/models/vibration-anomaly/predict", "[1, 2, 3]", "application/json");
  EXPECT_EQ(r->status, 400) << r->body;
}

// Without steps, a single-input model takes numbers as they are and gives its outputs back.
TEST_F(PredictTest, APipelineWithoutStepsPassesNumbersThrough) {
  Install(IdentityProject("identity", {1}), "1.0.0", 1);  // 1: FLOAT
  StartServer();
  auto r = Client()->Post("/api/v1/models/identity/predict", "[[1, 2, 3]]", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto out = json::parse(r->body)["outputs"]["out_FP32"];
  EXPECT_EQ(out["data"], json({1, 2, 3})) << r->body;
  EXPECT_EQ(out["shape"], json({1, 3}));
}

}  // namespace
}  // namespace airlock::agent
