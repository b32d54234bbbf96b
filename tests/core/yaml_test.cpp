#include "core/yaml.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "support/test_support.hpp"

namespace airlock {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::WriteAll;

json Parse(std::string_view text) {
  auto r = ParseYaml(text, "test.yaml");
  EXPECT_TRUE(r) << r.error().ToString();
  return r ? *r : json();
}

TEST(YamlTest, PlainScalarsAreTyped) {
  json j = Parse(
      "int: 42\n"
      "negative: -7\n"
      "plus: +3\n"
      "float: 1.5\n"
      "exp: 2e3\n"
      "leading_dot: .5\n"
      "yes_bool: true\n"
      "no_bool: False\n"
      "nothing: null\n"
      "tilde: ~\n"
      "empty:\n"
      "word: hello world\n");
  EXPECT_TRUE(j["int"].is_number_integer());
  EXPECT_EQ(j["int"].get<int>(), 42);
  EXPECT_EQ(j["negative"].get<int>(), -7);
  EXPECT_EQ(j["plus"].get<int>(), 3);
  EXPECT_TRUE(j["float"].is_number_float());
  EXPECT_DOUBLE_EQ(j["float"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["exp"].get<double>(), 2000.0);
  EXPECT_DOUBLE_EQ(j["leading_dot"].get<double>(), 0.5);
  EXPECT_EQ(j["yes_bool"], true);
  EXPECT_EQ(j["no_bool"], false);
  EXPECT_TRUE(j["nothing"].is_null());
  EXPECT_TRUE(j["tilde"].is_null());
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["word"], "hello world");
}

TEST(YamlTest, Yaml12CoreSchemaNotYaml11) {
  // YAML 1.1's "yes"/"no"/"on" booleans are plain strings in the core schema.
  json j = Parse("country: no\nanswer: yes\nswitch: on\nversion: 1.0.3\n");
  EXPECT_EQ(j["country"], "no");
  EXPECT_EQ(j["answer"], "yes");
  EXPECT_EQ(j["switch"], "on");
  EXPECT_EQ(j["version"], "1.0.3");
}

TEST(YamlTest, QuotedScalarsStayStrings) {
  json j = Parse(
      "version: \"1.0\"\n"
      "single: '1.0'\n"
      "number: \"42\"\n"
      "flag: 'true'\n"
      "null_word: \"null\"\n"
      "empty: \"\"\n");
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_EQ(j["single"], "1.0");
  EXPECT_EQ(j["number"], "42");
  EXPECT_EQ(j["flag"], "true");
  EXPECT_EQ(j["null_word"], "null");
  EXPECT_TRUE(j["empty"].is_string());
  EXPECT_EQ(j["empty"], "");
}

TEST(YamlTest, UnquotedVersionBecomesANumber) {
  // The reason the quoted form matters: an unquoted 1.0 is a float.
  json j = Parse("version: 1.0\n");
  EXPECT_TRUE(j["version"].is_number_float());
}

TEST(YamlTest, NestedMapsAndLists) {
  json j = Parse(
      "name: demo\n"
      "platforms:\n"
      "  - linux/amd64\n"
      "  - linux/arm64/v8\n"
      "pipeline:\n"
      "  inputs:\n"
      "    - name: x\n"
      "      shape: [1, 3, 224, 224]\n"
      "      mean: [0.485, 0.456, 0.406]\n"
      "  labels: {0: cat, 1: dog}\n"
      "empty_list: []\n"
      "empty_map: {}\n");
  EXPECT_EQ(j["name"], "demo");
  ASSERT_TRUE(j["platforms"].is_array());
  EXPECT_EQ(j["platforms"], json({"linux/amd64", "linux/arm64/v8"}));
  const json& input = j["pipeline"]["inputs"][0];
  EXPECT_EQ(input["name"], "x");
  EXPECT_EQ(input["shape"], json({1, 3, 224, 224}));
  EXPECT_DOUBLE_EQ(input["mean"][2].get<double>(), 0.406);
  // Map keys are always strings in the JSON model.
  EXPECT_EQ(j["pipeline"]["labels"]["1"], "dog");
  EXPECT_TRUE(j["empty_list"].is_array());
  EXPECT_TRUE(j["empty_list"].empty());
  EXPECT_TRUE(j["empty_map"].is_object());
  EXPECT_TRUE(j["empty_map"].empty());
}

TEST(YamlTest, EmptyDocumentIsNull) { EXPECT_TRUE(Parse("").is_null()); }

TEST(YamlTest, TopLevelScalarAndList) {
  EXPECT_EQ(Parse("17\n"), 17);
  EXPECT_EQ(Parse("- a\n- 2\n"), json({"a", 2}));
}

TEST(YamlTest, HugeNumbersDoNotEscapeAsExceptions) {
  // Out of range for a double: must come back as a value, not throw out of ParseYaml.
  auto r = ParseYaml("big: 1e999\nsmall: -1e999\n", "huge.yaml");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_TRUE((*r)["big"].is_number_float());
  EXPECT_TRUE(std::isinf((*r)["big"].get<double>()));
  EXPECT_GT((*r)["big"].get<double>(), 0);
  EXPECT_LT((*r)["small"].get<double>(), 0);

  // An integer too large for 64 bits is still a number.
  auto wide = ParseYaml("n: 123456789012345678901234567890\n", "wide.yaml");
  ASSERT_TRUE(wide);
  EXPECT_TRUE((*wide)["n"].is_number());
}

// Found while writing fuzz/fuzz_yaml (crafted inputs run through it): telling numbers from strings
// with std::regex recursed once per character and overflowed the stack on a long plain scalar.
TEST(YamlTest, LongPlainScalarsAreTypedWithoutRecursing) {
  auto r = ParseYaml("digits: " + std::string(200000, '7') + "\nfloat: 1." +
                         std::string(200000, '5') + "\nword: " + std::string(200000, 'x') + "\n",
                     "long.yaml");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE((*r)["digits"].is_number_float());  // too wide for 64 bits
  EXPECT_DOUBLE_EQ((*r)["float"].get<double>(), 1.5555555555555556);
  EXPECT_EQ((*r)["word"].get<std::string>().size(), 200000u);
  // The hand-written matchers agree with the YAML 1.2 core schema on the edge cases.
  EXPECT_EQ(
      Parse("[+5, -0, 5., .5, 1e5, 1E-5, ., +, 1e, e5, 1.2.3, 0x1F, 1_000]"),
      json::array({5, 0, 5.0, 0.5, 1e5, 1e-5, ".", "+", "1e", "e5", "1.2.3", "0x1F", "1_000"}));
}

// Found the same way: an alias inside the node it names made the conversion to JSON recurse
// until the stack overflowed; aliases of aliases could expand exponentially.
TEST(YamlTest, SelfReferencesAndAliasBombsAreRefused) {
  auto cycle = ParseYaml("a: &a [x, *a]\n", "cycle.yaml");
  ASSERT_FALSE(cycle);
  EXPECT_EQ(cycle.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(cycle.error().ToString().find("cycle.yaml"), std::string::npos);
  EXPECT_NE(cycle.error().message().find("deeper than 64"), std::string::npos)
      << cycle.error().message();

  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) {
      bomb += std::string(i ? ", *" : "*") + static_cast<char>(c - 1);
    }
    bomb += "]\n";
  }
  auto expanded = ParseYaml(bomb, "bomb.yaml");
  ASSERT_FALSE(expanded);
  EXPECT_NE(expanded.error().message().find("more than"), std::string::npos)
      << expanded.error().message();

  // Ordinary aliases still work, and the next document parses.
  EXPECT_EQ(Parse("base: &b {x: 1}\nother: *b\n"),
            json::parse(R"({"base":{"x":1},"other":{"x":1}})"));
}

TEST(YamlTest, SyntaxErrorsReportFileLineAndColumn) {
  auto r = ParseYaml("name: demo\nplatforms: [linux/amd64\nversion: 1\n", "airlock.yaml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  const std::string& msg = r.error().message();
  EXPECT_EQ(msg.rfind("airlock.yaml:", 0), 0u) << msg;
  // "airlock.yaml:<line>:<column>: what"
  std::size_t line_start = std::string("airlock.yaml:").size();
  std::size_t colon = msg.find(':', line_start);
  ASSERT_NE(colon, std::string::npos) << msg;
  int line = std::stoi(msg.substr(line_start, colon - line_start));
  std::size_t colon2 = msg.find(':', colon + 1);
  ASSERT_NE(colon2, std::string::npos) << msg;
  int column = std::stoi(msg.substr(colon + 1, colon2 - colon - 1));
  EXPECT_GE(line, 2) << msg;
  EXPECT_LE(line, 4) << msg;
  EXPECT_GE(column, 1) << msg;
  EXPECT_GT(msg.size(), colon2 + 2) << "no description in " << msg;
}

TEST(YamlTest, BadIndentationReportsTheLine) {
  auto r = ParseYaml("a:\n  b: 1\n c: 2\n", "indent.yaml");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("indent.yaml:3:"), std::string::npos) << r.error().message();
}

TEST(YamlTest, LoadYamlFileNamesTheFileInErrors) {
  TempDir dir;
  WriteAll(dir / "good.yaml", "name: demo\nversion: \"2.0\"\n");
  auto good = LoadYamlFile(dir / "good.yaml");
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_EQ((*good)["version"], "2.0");

  WriteAll(dir / "bad.yaml", "name: [unclosed\n");
  auto bad = LoadYamlFile(dir / "bad.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find((dir / "bad.yaml").string() + ":"), std::string::npos)
      << bad.error().message();

  auto missing = LoadYamlFile(dir / "missing.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace airlock
