#include "pkg/tar.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "support/hostile_tar.hpp"

namespace airlock::pkg {
namespace {

// Hand-made hostile archives.
using airlock::testing::TarEnd;
using airlock::testing::TarEntry;
using airlock::testing::TarHeader;

TEST(Tar, WriterOutputReadsBack) {
  TarWriter w(nullptr);
  ASSERT_TRUE(w.AddDirectory("blobs"));
  ASSERT_TRUE(w.AddBytes("blobs/a", "hello"));
  ASSERT_TRUE(w.AddBytes("empty", ""));
  std::string long_path = std::string(120, 'd') + "/file";
  ASSERT_TRUE(w.AddBytes(long_path, "x"));
  ASSERT_TRUE(w.Finish());
  EXPECT_EQ(w.bytes().size() % 10240, 0u);
  auto entries = IndexTar(w.bytes());
  ASSERT_TRUE(entries) << entries.error().ToString();
  ASSERT_EQ(entries->size(), 3u);
  auto a = entries->at("blobs/a");
  EXPECT_EQ(w.bytes().substr(a.offset, a.size), "hello");
  EXPECT_EQ(entries->at("empty").size, 0u);
  EXPECT_EQ(w.bytes().substr(entries->at(long_path).offset, 1), "x");
}

TEST(Tar, WriterIsDeterministic) {
  auto make = [] {
    TarWriter w(nullptr);
    EXPECT_TRUE(w.AddBytes("a", "1"));
    EXPECT_TRUE(w.Finish());
    return w.bytes();
  };
  EXPECT_EQ(make(), make());
}

TEST(Tar, ReadsGnuLongNamesAndPaxPaths) {
  std::string long_name = std::string(150, 'n');
  std::string tar = TarEntry("././@LongLink", long_name + '\0', 'L') + TarEntry("short", "A");
  std::string pax_record = "path=" + std::string(130, 'p');
  std::string rec = std::to_string(pax_record.size() + 5) + " " + pax_record + "\n";
  ASSERT_EQ(rec.size(), pax_record.size() + 5);
  tar += TarEntry("PaxHeader", rec, 'x') + TarEntry("short2", "B") + TarEnd();
  auto entries = IndexTar(tar);
  ASSERT_TRUE(entries) << entries.error().ToString();
  EXPECT_TRUE(entries->contains(long_name));
  EXPECT_TRUE(entries->contains(std::string(130, 'p')));
}

TEST(Tar, TheTopDirectoryEntryOfTarDotIsSkipped) {
  // `tar -C DIR -cf OUT .` starts with "./" and prefixes every name with "./".
  std::string tar = TarEntry("./", "", '5') + TarEntry("./blobs/", "", '5') +
                    TarEntry("./blobs/a", "hello") + TarEnd();
  auto entries = IndexTar(tar);
  ASSERT_TRUE(entries) << entries.error().ToString();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_TRUE(entries->contains("blobs/a"));
  // A regular file named "." is still refused.
  EXPECT_FALSE(IndexTar(TarEntry(".", "x") + TarEnd()));
}

struct Hostile {
  const char* what;
  std::string archive;
  const char* message;
};

class TarRefuses : public ::testing::TestWithParam<Hostile> {};

TEST_P(TarRefuses, WithAClearMessage) {
  auto r = IndexTar(GetParam().archive);
  ASSERT_FALSE(r) << GetParam().what;
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(r.error().message().find(GetParam().message), std::string::npos) << r.error().message();
}

std::string Truncated() {
  std::string t = TarEntry("file", std::string(2000, 'x')) + TarEnd();
  return t.substr(0, 512 + 1000);
}

INSTANTIATE_TEST_SUITE_P(
    Archives, TarRefuses,
    ::testing::Values(
        Hostile{"dotdot", TarEntry("blobs/../../etc/passwd", "x") + TarEnd(), "\"..\""},
        Hostile{"absolute", TarEntry("/etc/passwd", "x") + TarEnd(), "absolute"},
        Hostile{"symlink", TarHeader("blobs/sha256/x", 0, '2', "/etc/shadow") + TarEnd(),
                "symbolic link"},
        Hostile{"hardlink", TarHeader("blobs/sha256/x", 0, '1', "index.json") + TarEnd(),
                "hard link"},
        Hostile{"device", TarHeader("dev", 0, '3') + TarEnd(), "type '3'"},
        Hostile{"fifo", TarHeader("fifo", 0, '6') + TarEnd(), "type '6'"},
        Hostile{"truncated data", Truncated(), "truncated inside entry \"file\""},
        Hostile{"no end marker", TarEntry("file", "abc"), "truncated"},
        Hostile{"half header", TarEntry("file", "abc").substr(0, 300), "truncated"},
        Hostile{"duplicate", TarEntry("a", "1") + TarEntry("a", "2") + TarEnd(), "twice"},
        Hostile{"pax link",
                TarEntry("PaxHeader", "19 linkpath=/etc/x\n", 'x') + TarEntry("a", "1") + TarEnd(),
                "link"}),
    [](const ::testing::TestParamInfo<Hostile>& p) {
      std::string n = p.param.what;
      for (auto& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    });

// A header whose size field is GNU base-256.
std::string Base256Header(const std::string& name, char type, unsigned char first,
                          std::uint64_t value) {
  std::string h = TarHeader(name, 0, type);
  h[124] = static_cast<char>(first);
  for (int i = 11; i >= 1; --i) {
    h[124 + i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

TEST(Tar, HostileSizesAreRefusedWithoutLoopingOrWrapping) {
  // A size that would wrap the offset arithmetic back to this very header.
  for (char type : {'5', 'g', '0'}) {
    auto r = IndexTar(Base256Header("d", type, 0x80, UINT64_MAX - 511) + TarEnd());
    ASSERT_FALSE(r) << type;
    EXPECT_NE(r.error().message().find("too large"), std::string::npos) << r.error().message();
  }
  auto big = IndexTar(Base256Header("f", '0', 0x80, 1ULL << 40) + TarEnd());
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message().find("truncated"), std::string::npos);
  auto negative = IndexTar(Base256Header("f", '0', 0xff, 5) + TarEnd());
  ASSERT_FALSE(negative);
  EXPECT_NE(negative.error().message().find("negative"), std::string::npos);
  auto pax = IndexTar(TarEntry("PaxHeader", "13 size=1024\n", 'x') + TarEntry("a", "1") + TarEnd());
  ASSERT_FALSE(pax);
  EXPECT_NE(pax.error().message().find("sets a size"), std::string::npos);
}

TEST(Tar, BadChecksumIsRefused) {
  std::string t = TarEntry("a", "1") + TarEnd();
  t[0] = 'b';  // the name changes, the checksum does not
  auto r = IndexTar(t);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("checksum"), std::string::npos);
}

TEST(Tar, CheckRelativePath) {
  EXPECT_EQ(CheckRelativePath("./a/b").value(), "a/b");
  EXPECT_EQ(CheckRelativePath("a/b/").value(), "a/b");
  EXPECT_FALSE(CheckRelativePath(""));
  EXPECT_FALSE(CheckRelativePath("/a"));
  EXPECT_FALSE(CheckRelativePath("a/../b"));
  EXPECT_FALSE(CheckRelativePath("a//b"));
  EXPECT_FALSE(CheckRelativePath(".."));
}

}  // namespace
}  // namespace airlock::pkg
