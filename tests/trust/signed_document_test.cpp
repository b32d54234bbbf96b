#include <gtest/gtest.h>

#include <string>

#include "core/encoding.hpp"
#include "trust/canonical_json.hpp"
#include "trust/documents.hpp"
#include "trust_fixture.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;

class SignedDocumentTest : public TrustFixture {
 protected:
  json body_ = {{"_type", "note"}, {"spec_version", 1}, {"text", "hello"}, {"n", 7}};
};

TEST_F(SignedDocumentTest, SerializeParseRoundTrip) {
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0], &publisher_keys[1]});
  auto text = doc.Serialize();
  ASSERT_TRUE(text) << text.error().ToString();
  EXPECT_EQ(text->back(), '\n');
  EXPECT_EQ(text->find('\n'), text->size() - 1);  // one line, canonical

  auto parsed = SignedDocument::Parse(*text);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->body(), body_);
  EXPECT_EQ(parsed->type(), "note");
  ASSERT_EQ(parsed->signatures().size(), 2u);
  EXPECT_EQ(parsed->signatures()[0].keyid, publisher_keys[0].id());
  EXPECT_EQ(parsed->signatures()[0].sig, doc.signatures()[0].sig);
  EXPECT_EQ(parsed->signatures()[1].keyid, publisher_keys[1].id());
  EXPECT_EQ(parsed->Serialize().value(), *text);
}

TEST_F(SignedDocumentTest, SerializedFormIsTheEnvelope) {
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0]});
  json j = json::parse(doc.Serialize().value());
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 2u);
  EXPECT_EQ(j["signed"], body_);
  ASSERT_EQ(j["signatures"].size(), 1u);
  EXPECT_EQ(j["signatures"][0]["keyid"], publisher_keys[0].id());
  auto sig = Base64Decode(j["signatures"][0]["sig"].get<std::string>());
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->size(), 64u);
}

TEST_F(SignedDocumentTest, SignaturesCoverTheCanonicalBody) {
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0]});
  auto bytes = doc.SignedBytes();
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, Canonicalize(body_).value());
  EXPECT_TRUE(publisher_keys[0].public_key().Verify(*bytes, doc.signatures()[0].sig));
}

TEST_F(SignedDocumentTest, UnsignedDocumentHasNoSignatures) {
  SignedDocument doc = SignedDocument::Wrap(body_);
  EXPECT_TRUE(doc.signatures().empty());
  auto parsed = SignedDocument::Parse(doc.Serialize().value());
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->signatures().empty());
}

TEST_F(SignedDocumentTest, SignReplacesAnEarlierSignatureBySameKey) {
  // A document arrives carrying a stale (invalid) signature by key 0 and a valid one by key 1.
  json j = AsJson(SignedBy(body_, {&publisher_keys[1]}));
  j["signatures"].push_back(
      {{"keyid", publisher_keys[0].id()}, {"sig", Base64Encode(std::string(64, 'x'))}});
  auto doc = FromJson(j);
  ASSERT_TRUE(doc);
  ASSERT_EQ(doc->signatures().size(), 2u);

  ASSERT_TRUE(doc->Sign(publisher_keys[0]));
  ASSERT_EQ(doc->signatures().size(), 2u);
  std::string bytes = doc->SignedBytes().value();
  int by_key0 = 0;
  for (const auto& s : doc->signatures()) {
    if (s.keyid == publisher_keys[0].id()) {
      ++by_key0;
      EXPECT_TRUE(publisher_keys[0].public_key().Verify(bytes, s.sig));
    }
  }
  EXPECT_EQ(by_key0, 1);

  // Signing again with the same key still leaves one signature per key.
  ASSERT_TRUE(doc->Sign(publisher_keys[0]));
  ASSERT_TRUE(doc->Sign(publisher_keys[1]));
  EXPECT_EQ(doc->signatures().size(), 2u);
}

TEST_F(SignedDocumentTest, SigningABodyWithFloatsIsRefusedAndAddsNothing) {
  json body = body_;
  body["score"] = 0.5;
  SignedDocument doc = SignedDocument::Wrap(body);
  auto st = doc.Sign(publisher_keys[0]);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(doc.signatures().empty());
  EXPECT_FALSE(doc.Serialize());
}

TEST_F(SignedDocumentTest, MalformedEnvelopesAreRefused) {
  std::string good_sig = Base64Encode(std::string(64, 's'));
  std::string id = publisher_keys[0].id();
  const std::string cases[] = {
      "",
      "not json",
      "[]",
      R"("signed")",
      R"({"signatures":[]})",              // missing signed
      R"({"signed":{"_type":"x"}})",       // missing signatures
      R"({"signed":[],"signatures":[]})",  // signed not an object
      R"({"signed":"{\"_type\":\"x\"}","signatures":[]})",
      R"({"signed":{"_type":"x"},"signatures":{}})",       // signatures not a list
      R"({"signed":{},"signatures":[]})",                  // no _type
      R"({"signed":{"_type":7},"signatures":[]})",         // _type not a string
      R"({"signed":{"_type":"x"},"signatures":["sig"]})",  // entry not an object
      R"({"signed":{"_type":"x"},"signatures":[{"sig":")" + good_sig + R"("}]})",  // no keyid
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id + R"("}]})",      // no sig
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":1,"sig":")" + good_sig + R"("}]})",
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id + R"(","sig":5}]})",
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id + R"(","sig":"!!!!"}]})",
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id + R"(","sig":"c2==bG4="}]})",
      R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id + R"(","sig":"c2l"}]})",
  };
  for (const auto& text : cases) {
    auto doc = SignedDocument::Parse(text);
    ASSERT_FALSE(doc) << "accepted: " << text;
    EXPECT_EQ(doc.error().code(), ErrorCode::kCorrupt) << text;
  }
  auto bad_b64 = SignedDocument::Parse(R"({"signed":{"_type":"x"},"signatures":[{"keyid":")" + id +
                                       R"(","sig":"!!!!"}]})");
  ASSERT_FALSE(bad_b64);
  EXPECT_NE(bad_b64.error().message().find("base64"), std::string::npos);

  // The next good document still parses.
  auto good = SignedDocument::Parse(SignedBy(body_, {&publisher_keys[0]}).Serialize().value());
  EXPECT_TRUE(good);
}

TEST_F(SignedDocumentTest, OversizedDocumentsAreRefusedBeforeParsing) {
  json body = body_;
  body["pad"] = std::string(kMaxDocumentSize, 'p');
  std::string text = json{{"signed", body}, {"signatures", json::array()}}.dump();
  auto doc = SignedDocument::Parse(text);
  ASSERT_FALSE(doc);
  EXPECT_EQ(doc.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(doc.error().message().find("limit"), std::string::npos) << doc.error().message();
}

TEST_F(SignedDocumentTest, AcceptsNonCanonicalWhitespaceAndKeyOrder) {
  SignedDocument doc = SignedBy(body_, {&publisher_keys[0]});
  std::string pretty = AsJson(doc).dump(4);
  auto parsed = SignedDocument::Parse(pretty);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->SignedBytes().value(), doc.SignedBytes().value());
  EXPECT_EQ(parsed->Serialize().value(), doc.Serialize().value());
}

}  // namespace
}  // namespace airlock::trust
