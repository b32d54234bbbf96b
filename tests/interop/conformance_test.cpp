// Conformance sweep over Debian's libonnx-testdata: every model of the `pytorch-converted` and
// `simple` sets is packed by the real `airlock` binary with its first test-data set as samples
// (so `pack` runs the model and compares its outputs), then run again from the package with
// `airlock run`, which re-checks the samples the package carries.
//
// Models that fail must be listed, with the reason, in conformance_known_failures.txt (format in
// that file). An unlisted failure, or a listed model failing for another reason, fails the test;
// a listed model that passes is reported so that its line can be removed.

#include "support/conformance.hpp"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kErrorPrefix = "airlock: error: ";

// The first line of airlock's error message, or what is known about the failure without one.
std::string FirstErrorLine(const CommandResult& r) {
  if (r.exit_code == -1) {
    return "timed out";
  }
  std::istringstream in(r.err);
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (line.starts_with(kErrorPrefix)) {
      return Trim(line.substr(kErrorPrefix.size()));
    }
    if (!Trim(line).empty()) {
      last = Trim(line);
    }
  }
  return "exit code " + std::to_string(r.exit_code) + " without an error line" +
         (last.empty() ? "" : " (last stderr line: " + last + ")");
}

struct Outcome {
  std::string model;  // set/name
  bool passed = false;
  std::string phase;  // where it failed: "pack" or "run"
  std::string error;  // FirstErrorLine of that step
};

// Packs one test-data model with test_data_set_0 only, then runs the package's samples.
Outcome CheckModel(const fs::path& model_dir, const std::string& set, const fs::path& work) {
  Outcome o;
  std::string name = model_dir.filename().string();
  o.model = set + "/" + name;
  fs::path dir = work / set / name;
  fs::create_directories(dir / "samples");
  // airlock reads every DIR/test_data_set_*; expose just the first set.
  fs::create_directory_symlink(model_dir / "test_data_set_0", dir / "samples" / "test_data_set_0");
  fs::path package = dir / "x.tar";

  CommandResult pack =
      RunCommand({AirlockBinary().string(), "pack", "--json", "--model",
                  (model_dir / "model.onnx").string(), "--name", SanitisedName(name), "--version",
                  "1", "--sample-dir", (dir / "samples").string(), "-o", package.string()},
                 {}, 120);
  if (pack.exit_code != 0) {
    o.phase = "pack";
    o.error = FirstErrorLine(pack);
    return o;
  }
  // The sweep means nothing if no sample was compared.
  auto summary = nlohmann::json::parse(pack.out, nullptr, false);
  if (summary.is_discarded() || summary.value("samples", -1) != 1) {
    o.phase = "pack";
    o.error = "packed, but did not report exactly 1 sample checked: " + pack.out;
    return o;
  }
  CommandResult run = RunCommand({AirlockBinary().string(), "run", package.string()}, {}, 120);
  if (run.exit_code != 0) {
    o.phase = "run";
    o.error = FirstErrorLine(run);
    return o;
  }
  o.passed = true;
  return o;
}

// Checks every model of a set, a few at a time (each check is its own processes and directory).
std::vector<Outcome> Sweep(const std::vector<fs::path>& dirs, const std::string& set,
                           const fs::path& work) {
  std::vector<Outcome> outcomes(dirs.size());
  std::atomic<std::size_t> next{0};
  unsigned workers = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (std::size_t i = next++; i < dirs.size(); i = next++) {
        // An exception must not escape a thread; it fails the model it came from.
        try {
          outcomes[i] = CheckModel(dirs[i], set, work);
        } catch (const std::exception& e) {
          outcomes[i] = {set + "/" + dirs[i].filename().string(), false, "test setup", e.what()};
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  return outcomes;
}

void CheckSet(const std::string& set) {
  fs::path set_dir = OnnxTestData() / set;
  ASSERT_TRUE(fs::is_directory(set_dir))
      << set_dir << " is missing: install libonnx-testdata (scripts/bootstrap does)";
  KnownFailureList known = ParseKnownFailures(ReadAll(KnownFailuresFile()));
  for (const auto& p : known.problems) {
    ADD_FAILURE() << KnownFailuresFile().string() << " " << p;
  }
  std::vector<fs::path> dirs = ModelDirs(set_dir);
  ASSERT_FALSE(dirs.empty()) << "no models under " << set_dir;

  TempDir work;
  std::vector<Outcome> outcomes = Sweep(dirs, set, work.path());

  int passed = 0;
  int failed_as_listed = 0;
  std::vector<std::string> now_passing;
  for (const auto& o : outcomes) {
    auto entry = known.entries.find(o.model);
    bool listed = entry != known.entries.end();
    if (o.passed) {
      ++passed;
      if (listed) {
        now_passing.push_back(o.model + " (line " + std::to_string(entry->second.line) +
                              ", listed as: " + entry->second.reason + ")");
      }
    } else if (!listed) {
      ADD_FAILURE() << o.model << " fails in `airlock " << o.phase << "`: " << o.error
                    << "\n  It is not in " << KnownFailuresFile().filename().string()
                    << "; fix the cause (the list must not grow).";
    } else if (o.error.find(entry->second.reason) == std::string::npos) {
      ADD_FAILURE() << o.model << " fails in `airlock " << o.phase
                    << "` for another reason than its list entry (line " << entry->second.line
                    << ") gives.\n  listed: " << entry->second.reason << "\n  actual: " << o.error;
    } else {
      ++failed_as_listed;
    }
  }

  std::cout << "[ SWEEP    ] " << set << ": " << outcomes.size() << " models, " << passed
            << " pass, " << failed_as_listed << " fail as listed, "
            << (outcomes.size() - passed - failed_as_listed) << " fail unexpectedly\n";
  for (const auto& m : now_passing) {
    std::cout << "[ NOW PASSES ] " << m << ": remove it from "
              << KnownFailuresFile().filename().string() << "\n";
  }
  for (const auto& [model, entry] : known.entries) {
    if (model.starts_with(set + "/") &&
        std::none_of(outcomes.begin(), outcomes.end(),
                     [&](const Outcome& o) { return o.model == model; })) {
      std::cout << "[ STALE    ] " << model << " (line " << entry.line
                << ") is not in the test data any more: remove it\n";
    }
  }
  ::testing::Test::RecordProperty("models", static_cast<int>(outcomes.size()));
  ::testing::Test::RecordProperty("passed", passed);
}

TEST(PackConformance, PytorchConverted) { CheckSet("pytorch-converted"); }

TEST(PackConformance, Simple) { CheckSet("simple"); }

// The sweep only means something if a wrong expected output is caught: with an output that is off
// by one in one element, `pack` refuses the model, and a package made without validation fails
// `airlock run`.
TEST(PackConformance, WrongExpectedOutputIsCaught) {
  fs::path source = OnnxTestData() / "simple" / "test_single_relu_model";
  ASSERT_TRUE(fs::is_regular_file(source / "model.onnx")) << "install libonnx-testdata";
  TempDir work;
  fs::path set_dir = work / "samples/test_data_set_0";
  fs::create_directories(set_dir);
  fs::copy_file(source / "test_data_set_0/input_0.pb", set_dir / "input_0.pb");

  onnx::TensorProto expected;
  {
    std::ifstream in(source / "test_data_set_0/output_0.pb", std::ios::binary);
    ASSERT_TRUE(expected.ParseFromIstream(&in));
  }
  ASSERT_EQ(expected.data_type(), onnx::TensorProto::FLOAT);
  if (expected.has_raw_data()) {
    std::string raw = expected.raw_data();
    ASSERT_GE(raw.size(), sizeof(float));
    float first;
    std::memcpy(&first, raw.data(), sizeof(first));
    first += 1.0f;
    std::memcpy(raw.data(), &first, sizeof(first));
    expected.set_raw_data(raw);
  } else {
    ASSERT_GT(expected.float_data_size(), 0);
    expected.set_float_data(0, expected.float_data(0) + 1.0f);
  }
  {
    std::ofstream out(set_dir / "output_0.pb", std::ios::binary);
    ASSERT_TRUE(expected.SerializeToOstream(&out));
  }

  std::vector<std::string> pack = {"pack",
                                   "--model",
                                   (source / "model.onnx").string(),
                                   "--name",
                                   "relu",
                                   "--version",
                                   "1",
                                   "--sample-dir",
                                   (work / "samples").string(),
                                   "-o",
                                   (work / "x.tar").string()};
  CommandResult refused = RunAirlock(pack);
  EXPECT_NE(refused.exit_code, 0) << refused.err;
  EXPECT_NE(FirstErrorLine(refused).find("differ"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(work / "x.tar"));

  pack.push_back("--no-validate");
  CommandResult packed = RunAirlock(pack);
  ASSERT_EQ(packed.exit_code, 0) << packed.err;
  CommandResult run = RunAirlock({"run", (work / "x.tar").string()});
  EXPECT_NE(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(FirstErrorLine(run).find("differ"), std::string::npos) << run.err;
}

TEST(PackConformance, KnownFailureListParses) {
  KnownFailureList list = ParseKnownFailures(ReadAll(KnownFailuresFile()));
  EXPECT_TRUE(list.problems.empty()) << list.problems.front();
  EXPECT_FALSE(list.entries.empty());

  KnownFailureList bad = ParseKnownFailures(
      "# comment\n\nsimple/a\treason one\nsimple/a\treason two\nno-tab-here\nnoslash\twhy\n");
  EXPECT_EQ(bad.entries.size(), 1u);
  EXPECT_EQ(bad.entries.at("simple/a").reason, "reason one");
  EXPECT_EQ(bad.entries.at("simple/a").line, 3);
  EXPECT_EQ(bad.problems.size(), 3u);
}

TEST(PackConformance, SanitisedNamesAreRepositoryNames) {
  EXPECT_EQ(SanitisedName("test_AvgPool1d"), "test_avgpool1d");
  EXPECT_EQ(SanitisedName("test_PReLU_1d_multiparam"), "test_prelu_1d_multiparam");
  EXPECT_EQ(SanitisedName("__odd  name__"), "odd-name");
  EXPECT_EQ(SanitisedName("___"), "model");
}

}  // namespace
}  // namespace airlock::testing
