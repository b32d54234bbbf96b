#include "trust/canonical_json.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace airlock::trust {
namespace {

using nlohmann::json;

std::string Canon(const json& j) {
  auto r = Canonicalize(j);
  EXPECT_TRUE(r) << r.error().ToString();
  return r ? *r : std::string();
}

json ParseOk(std::string_view text) {
  auto r = ParseJson(text, 1 << 20, "test document");
  EXPECT_TRUE(r) << r.error().ToString();
  return r ? *r : json();
}

TEST(CanonicalizeTest, SortsKeysAndDropsWhitespace) {
  json j = ParseOk(R"({
      "zeta": 1,
      "alpha": [3, 2, 1],
      "mid": {"b": true, "a": null, "c": "x"}
  })");
  EXPECT_EQ(Canon(j), R"({"alpha":[3,2,1],"mid":{"a":null,"b":true,"c":"x"},"zeta":1})");
}

TEST(CanonicalizeTest, KeysAreSortedByUtf8Bytes) {
  // 'Z' (0x5a) < '_' (0x5f) < 'a' (0x61) < 'é' (0xc3 0xa9): uppercase first, non-ASCII last,
  // and a shorter prefix before a longer key.
  json j = {{"\xc3\xa9t\xc3\xa9", 1}, {"a", 2}, {"ab", 3}, {"Z", 4}, {"_x", 5}};
  EXPECT_EQ(Canon(j), "{\"Z\":4,\"_x\":5,\"a\":2,\"ab\":3,\"\xc3\xa9t\xc3\xa9\":1}");
}

TEST(CanonicalizeTest, SameValueGivesSameBytesWhateverTheInputOrder) {
  json a = ParseOk(R"({"b": {"y": 1, "x": 2}, "a": [1, {"q": 1, "p": 2}]})");
  json b = ParseOk(R"({"a":[1,{"p":2,"q":1}],"b":{"x":2,"y":1}})");
  EXPECT_EQ(Canon(a), Canon(b));
  // And canonicalizing the canonical form changes nothing.
  EXPECT_EQ(Canon(ParseOk(Canon(a))), Canon(a));
}

TEST(CanonicalizeTest, IntegersInPlainDecimal) {
  json j = {{"neg", -42},
            {"zero", 0},
            {"max_u64", std::numeric_limits<std::uint64_t>::max()},
            {"min_i64", std::numeric_limits<std::int64_t>::min()}};
  EXPECT_EQ(Canon(j), R"({"max_u64":18446744073709551615,"min_i64":-9223372036854775808,)"
                      R"("neg":-42,"zero":0})");
}

TEST(CanonicalizeTest, EmptyContainersAndScalars) {
  EXPECT_EQ(Canon(json::object()), "{}");
  EXPECT_EQ(Canon(json::array()), "[]");
  EXPECT_EQ(Canon(json(nullptr)), "null");
  EXPECT_EQ(Canon(json(false)), "false");
  EXPECT_EQ(Canon(json("s")), "\"s\"");
}

TEST(CanonicalizeTest, RefusesFloatsAnywhere) {
  for (const char* text :
       {"1.5", "2.0", "1e3", R"({"a":0.1})", R"({"a":{"b":[1,2.0]}})", R"([[[1],[2.5]]])"}) {
    json j = ParseOk(text);
    auto r = Canonicalize(j);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << text;
  }
  auto nested = Canonicalize(ParseOk(R"({"a":{"b":[1,2.0]}})"));
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message().find("/a/b/1"), std::string::npos) << nested.error().message();
}

TEST(CanonicalizeTest, EscapesOnlyQuoteBackslashAndControlCharacters) {
  json j = std::string("q\" b\\ n\n t\t r\r bs\b ff\f one\x01 us\x1f slash/ del\x7f");
  EXPECT_EQ(Canon(j),
            "\"q\\\" b\\\\ n\\n t\\t r\\r bs\\b ff\\f one\\u0001 us\\u001f slash/ del\x7f\"");
  json nul = std::string("a\0b", 3);
  EXPECT_EQ(Canon(nul), "\"a\\u0000b\"");
}

TEST(CanonicalizeTest, KeepsUtf8Raw) {
  std::string text = "caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8f\xad";
  json j = {{"name", text}};
  EXPECT_EQ(Canon(j), "{\"name\":\"" + text + "\"}");
  // Escaped input is decoded, then written raw.
  EXPECT_EQ(Canon(ParseOk(R"("caf\u00e9")")), "\"caf\xc3\xa9\"");
}

TEST(CanonicalizeTest, RefusesInvalidUtf8) {
  for (std::string bad : {std::string("\xff"), std::string("\xc3"), std::string("a\x80z"),
                          std::string("\xed\xa0\x80")}) {
    auto r = Canonicalize(json{{"k", bad}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  auto in_key = Canonicalize(json{{std::string("\xfe"), 1}});
  EXPECT_FALSE(in_key);
}

TEST(ParseJsonTest, RefusesOversizedText) {
  std::string text = R"({"pad":")" + std::string(100, 'x') + R"("})";
  auto over = ParseJson(text, text.size() - 1, "release document");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(over.error().message().find("release document"), std::string::npos);
  EXPECT_NE(over.error().message().find(std::to_string(text.size() - 1)), std::string::npos)
      << over.error().message();

  auto exact = ParseJson(text, text.size(), "release document");
  ASSERT_TRUE(exact);
  EXPECT_EQ((*exact)["pad"].get<std::string>().size(), 100u);
}

TEST(ParseJsonTest, RefusesMalformedJson) {
  for (const char* text :
       {"", "{", "{\"a\":}", "[1,]", "{'a':1}", "{\"a\":1} trailing", "// comment\n{}",
        "{\"a\":1 /* c */}", "NaN", "{\"a\":01}", "\"unterminated", "{\"a\" 1}", "[\"\\x41\"]"}) {
    auto r = ParseJson(text, 1 << 20, "channel document");
    ASSERT_FALSE(r) << "accepted: " << text;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("channel document"), std::string::npos);
  }
}

TEST(ParseJsonTest, RefusesDuplicateKeys) {
  for (const char* text : {"{\"a\":1,\"a\":2}", "{\"x\":{\"b\":1,\"c\":2,\"b\":3}}",
                           "[{\"signed\":{},\"signed\":{}}]"}) {
    auto r = ParseJson(text, 1 << 20, "release document");
    ASSERT_FALSE(r) << "accepted: " << text;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("twice in one object"), std::string::npos);
  }
  // The same key in sibling objects is fine.
  EXPECT_TRUE(ParseJson("[{\"a\":1},{\"a\":2},{\"b\":{\"a\":3}}]", 1 << 20, "x"));
}

// Found while writing fuzz/fuzz_json (a crafted input run through it): a document of nested '['
// overflowed the stack in Canonicalize (which walks it recursively) instead of being refused.
TEST(ParseJsonTest, RefusesDeepNestingWithoutRecursing) {
  const int deep = 200000;
  for (const auto& [open, close] : {std::pair{"[", "]"}, std::pair{"{\"a\":", "}"}}) {
    std::string text;
    for (int i = 0; i < deep; ++i) {
      text += open;
    }
    text += "1";
    for (int i = 0; i < deep; ++i) {
      text += close;
    }
    auto r = ParseJson(text, 4 << 20, "release document");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message().find("deeper than 64"), std::string::npos) << r.error().message();
  }
  // The limit itself is fine, and the next document parses.
  std::string at_limit = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  auto ok = ParseJson(at_limit, 1 << 20, "x");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_TRUE(Canonicalize(*ok));
  EXPECT_FALSE(ParseJson("[" + at_limit + "]", 1 << 20, "x"));
}

TEST(ParseJsonTest, AcceptsAnyValidJson) {
  EXPECT_EQ(ParseOk("  [1, \"two\", null, true, {\"x\": -3}]  \n"),
            json({1, "two", nullptr, true, {{"x", -3}}}));
}

}  // namespace
}  // namespace airlock::trust
