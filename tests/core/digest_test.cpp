#include "core/digest.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "core/encoding.hpp"
#include "support/test_support.hpp"

namespace airlock {
namespace {

using testing::TempDir;
using testing::WriteAll;

constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcSha256[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
// FIPS 180-2 appendix B.2: the two-block message.
constexpr char kTwoBlock[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr char kTwoBlockSha256[] =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Of("").hex(), kEmptySha256);
  EXPECT_EQ(Sha256Of("abc").hex(), kAbcSha256);
  EXPECT_EQ(Sha256Of(kTwoBlock).hex(), kTwoBlockSha256);
  EXPECT_EQ(Sha256Of("abc").ToString(), std::string("sha256:") + kAbcSha256);
}

TEST(Sha256Test, MillionAs) {
  // FIPS 180-2 appendix B.3.
  EXPECT_EQ(Sha256Of(std::string(1000000, 'a')).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, StreamingEqualsOneShotForEverySplit) {
  std::string data;
  for (int i = 0; i < 1000; ++i) {
    data.push_back(static_cast<char>(i * 31 + 7));
  }
  Digest one_shot = Sha256Of(data);
  for (std::size_t chunk : {1u, 3u, 63u, 64u, 65u, 999u, 1000u}) {
    Sha256 h;
    for (std::size_t pos = 0; pos < data.size(); pos += chunk) {
      h.Update(std::string_view(data).substr(pos, chunk));
    }
    EXPECT_EQ(h.Finish(), one_shot) << "chunk " << chunk;
  }
}

TEST(Sha256Test, EmptyUpdatesChangeNothing) {
  Sha256 h;
  h.Update("");
  h.Update("ab");
  h.Update("");
  h.Update("c");
  EXPECT_EQ(h.Finish().hex(), kAbcSha256);
}

TEST(Sha256Test, FinishRawIsThe32Bytes) {
  Sha256 h;
  h.Update("abc");
  std::string raw = h.FinishRaw();
  EXPECT_EQ(raw.size(), 32u);
  EXPECT_EQ(HexEncode(raw), kAbcSha256);
}

TEST(HashFileTest, MultiMebibyteFileEqualsInMemoryDigest) {
  TempDir dir;
  // Over three of HashFile's 1 MiB reads, ending mid-buffer.
  std::string data(3 * 1024 * 1024 + 12345, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  WriteAll(dir / "blob", data);
  auto fd = HashFile(dir / "blob");
  ASSERT_TRUE(fd) << fd.error().ToString();
  EXPECT_EQ(fd->size, data.size());
  EXPECT_EQ(fd->digest, Sha256Of(data));
}

TEST(HashFileTest, EmptyFile) {
  TempDir dir;
  WriteAll(dir / "empty", "");
  auto fd = HashFile(dir / "empty");
  ASSERT_TRUE(fd);
  EXPECT_EQ(fd->size, 0u);
  EXPECT_EQ(fd->digest.hex(), kEmptySha256);
}

TEST(HashFileTest, MissingFileIsNotFound) {
  TempDir dir;
  auto fd = HashFile(dir / "nope");
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fd.error().message().find("nope"), std::string::npos);
}

TEST(DigestTest, ParseAcceptsSha256WithLowercaseHex) {
  auto d = Digest::Parse(std::string("sha256:") + kAbcSha256);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->hex(), kAbcSha256);
  EXPECT_EQ(d->ToString(), std::string("sha256:") + kAbcSha256);
  EXPECT_EQ(*d, Sha256Of("abc"));
}

TEST(DigestTest, ParseRefusesEverythingElse) {
  std::string hex = kAbcSha256;
  std::string upper = hex;
  for (auto& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  const std::string refused[] = {
      "sha256:" + upper,                                        // uppercase hex
      "sha256:" + hex.substr(0, 63),                            // short
      "sha256:" + hex + "0",                                    // long
      "sha256:",                                                // empty
      "sha512:" + hex + hex,                                    // other algorithm
      "SHA256:" + hex,                                          // prefix is case-sensitive
      hex,                                                      // no algorithm
      "sha256:" + hex.substr(0, 63) + "g",                      // not hex
      " sha256:" + hex,                                         // whitespace
      "sha256:" + hex.substr(0, 32) + "/../" + hex.substr(36),  // path characters
  };
  for (const auto& text : refused) {
    auto d = Digest::Parse(text);
    ASSERT_FALSE(d) << text;
    EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument) << text;
  }
}

TEST(DigestTest, OrderingAndEquality) {
  Digest a = Digest::FromHex(std::string(64, 'a'));
  Digest b = Digest::FromHex(std::string(64, 'b'));
  EXPECT_LT(a, b);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, Digest::FromHex(std::string(64, 'a')));
}

}  // namespace
}  // namespace airlock
