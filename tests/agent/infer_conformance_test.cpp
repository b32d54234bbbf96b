// The libonnx-testdata conformance sweep again, this time through the agent's HTTP API: every
// model of the `pytorch-converted` and `simple` sets that `airlock pack` takes (all but those in
// tests/interop/conformance_known_failures.txt, whose failures the pack sweep already pins) is
// packed, signed, installed in one store and loaded by one server; then its first test-data set
// goes to POST /v2/models/{m}/infer twice, with binary tensors and with JSON tensors, and each
// answer is compared with the expected outputs at the pack sweep's tolerance.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "agent/agent_fixture.hpp"
#include "agent/oip_codec.hpp"
#include "pkg/onnx_model.hpp"
#include "support/conformance.hpp"
#include "support/test_support.hpp"

namespace airlock::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using runtime::Tensor;

// The numbered .pb files (input_0.pb, input_1.pb, …) of a test-data set, in order.
std::vector<Tensor> ReadTensors(const fs::path& dir, const std::string& prefix) {
  std::vector<Tensor> tensors;
  for (int i = 0; fs::exists(dir / (prefix + std::to_string(i) + ".pb")); ++i) {
    auto t = pkg::LoadTensorProto(dir / (prefix + std::to_string(i) + ".pb"));
    EXPECT_TRUE(t) << t.error().ToString();
    if (t) {
      tensors.push_back(std::move(*t));
    }
  }
  return tensors;
}

// The model's tensor names from GET /v2/models/{m}, in order ("inputs" or "outputs").
std::vector<std::string> MetadataNames(httplib::Client& c, const std::string& model,
                                       const std::string& key) {
  std::vector<std::string> names;
  auto r = c.Get("/v2/models/" + model);
  if (!r || r->status != 200) {
    ADD_FAILURE() << model << ": metadata: " << (r ? r->body : "no response");
    return names;
  }
  json metadata = json::parse(r->body);
  for (const auto& t : metadata[key]) {
    names.push_back(t["name"].get<std::string>());
  }
  return names;
}

class InferConformanceTest : public AgentFixture {
 protected:
  struct Case {
    std::string model;  // the agent's model name
    fs::path data;      // test_data_set_0
  };

  // Packs and installs every model of the set that is not known to fail.
  std::vector<Case> InstallSet(const std::string& set) {
    auto known = airlock::testing::ParseKnownFailures(
        airlock::testing::ReadAll(airlock::testing::KnownFailuresFile()));
    fs::path set_dir = airlock::testing::OnnxTestData() / set;
    EXPECT_TRUE(fs::is_directory(set_dir)) << set_dir << ": install libonnx-testdata";
    std::vector<Case> cases;
    std::set<std::string> names;
    for (const auto& dir : airlock::testing::ModelDirs(set_dir)) {
      std::string id = set + "/" + dir.filename().string();
      if (known.entries.contains(id)) {
        continue;
      }
      std::string name = airlock::testing::SanitisedName(dir.filename().string());
      EXPECT_TRUE(names.insert(name).second) << id << ": a second model named " << name;
      json doc = {{"name", name},
                  {"version", "1.0.0"},
                  {"created", "2026-01-01T00:00:00Z"},
                  {"model", {{"files", {"model.onnx"}}}},
                  {"platforms", {"linux/amd64", "linux/arm64"}}};
      auto spec = pkg::PackSpecFromJson(doc, dir, id);
      EXPECT_TRUE(spec) << spec.error().ToString();
      if (!spec) {
        continue;
      }
      // Not validated here: loading it is the server's job, and a failure shows up there.
      InstallPackage(PackAndSign(*spec, 1, /*validate=*/false));
      cases.push_back({name, dir / "test_data_set_0"});
    }
    return cases;
  }

  // Sends one model's inputs and compares the outputs with the expected ones.
  void CheckModel(httplib::Client& c, const Case& k, bool binary) {
    SCOPED_TRACE(k.model + (binary ? " (binary tensors)" : " (JSON tensors)"));
    std::vector<Tensor> inputs = ReadTensors(k.data, "input_");
    std::vector<Tensor> expected = ReadTensors(k.data, "output_");
    auto input_names = MetadataNames(c, k.model, "inputs");
    auto output_names = MetadataNames(c, k.model, "outputs");
    ASSERT_EQ(inputs.size(), input_names.size());
    ASSERT_EQ(expected.size(), output_names.size());
    // Tensors are bound to the model's inputs by position, as airlock pack binds samples.
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      inputs[i].name = input_names[i];
    }
    auto request = EncodeInferRequest(inputs, {.binary_inputs = binary, .binary_outputs = binary});
    httplib::Headers headers;
    if (request.header_length) {
      headers.emplace("Inference-Header-Content-Length", std::to_string(*request.header_length));
    }
    auto r = c.Post("/v2/models/" + k.model + "/infer", headers, request.body,
                    binary ? "application/octet-stream" : "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    std::optional<std::uint64_t> header_length;
    if (r->has_header("Inference-Header-Content-Length")) {
      header_length = std::stoull(r->get_header_value("Inference-Header-Content-Length"));
    }
    EXPECT_EQ(header_length.has_value(), binary);
    auto response = ParseInferResponse(r->body, header_length);
    ASSERT_TRUE(response) << response.error().ToString();
    ASSERT_EQ(response->outputs.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      auto it = std::find_if(response->outputs.begin(), response->outputs.end(),
                             [&](const Tensor& t) { return t.name == output_names[i]; });
      ASSERT_NE(it, response->outputs.end()) << "no output " << output_names[i];
      auto same = runtime::CompareTensors(expected[i], *it, runtime::Tolerance{});
      EXPECT_TRUE(same) << output_names[i] << ": " << same.error().ToString();
    }
  }

  void SweepSet(const std::string& set) {
    std::vector<Case> cases = InstallSet(set);
    ASSERT_FALSE(cases.empty());
    StartServer();
    for (const auto& e : load_errors_) {
      ADD_FAILURE() << "load: " << e.ToString();
    }
    auto c = Client();
    for (const auto& k : cases) {
      CheckModel(*c, k, /*binary=*/true);
      CheckModel(*c, k, /*binary=*/false);
    }
    std::cout << "[ SWEEP    ] " << set << ": " << cases.size()
              << " models through /infer, binary and JSON\n";
  }
};

TEST_F(InferConformanceTest, PytorchConverted) { SweepSet("pytorch-converted"); }

TEST_F(InferConformanceTest, Simple) { SweepSet("simple"); }

}  // namespace
}  // namespace airlock::agent
