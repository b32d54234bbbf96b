#include "core/fs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace airlock {
namespace {

namespace fs = std::filesystem;
using testing::ReadAll;
using testing::TempDir;
using testing::WriteAll;

// Names of everything in dir, sorted, hidden files included.
std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

mode_t ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Sets the process umask for the lifetime of the object.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

TEST(WriteFileAtomicTest, WritesContentAndLeavesNoTemporaryFiles) {
  TempDir dir;
  fs::path target = dir / "config.json";
  std::string data = std::string("{\"a\":1}\n") + std::string(1, '\0') + "binary tail";
  ASSERT_TRUE(WriteFileAtomic(target, data));
  EXPECT_EQ(ReadAll(target), data);
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"config.json"});
}

TEST(WriteFileAtomicTest, WritesAnEmptyFile) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "empty", ""));
  EXPECT_TRUE(fs::exists(dir / "empty"));
  EXPECT_EQ(fs::file_size(dir / "empty"), 0u);
}

TEST(WriteFileAtomicTest, ModeIsHonouredWhateverTheUmask) {
  TempDir dir;
  {
    ScopedUmask mask(0);  // would leave a 0666-style request wide open
    ASSERT_TRUE(WriteFileAtomic(dir / "secret.key", "k", 0600));
  }
  EXPECT_EQ(ModeOf(dir / "secret.key"), 0600u);
  {
    ScopedUmask mask(0077);  // would narrow 0644 to 0600
    ASSERT_TRUE(WriteFileAtomic(dir / "public.pub", "p", 0644));
  }
  EXPECT_EQ(ModeOf(dir / "public.pub"), 0644u);
  EXPECT_EQ(ModeOf(dir / "secret.key"), 0600u);
}

TEST(WriteFileAtomicTest, DefaultModeIs0644) {
  TempDir dir;
  ScopedUmask mask(0077);
  ASSERT_TRUE(WriteFileAtomic(dir / "f", "x"));
  EXPECT_EQ(ModeOf(dir / "f"), 0644u);
}

TEST(WriteFileAtomicTest, ReplacesAnExistingFileAndItsMode) {
  TempDir dir;
  fs::path target = dir / "state";
  ASSERT_TRUE(WriteFileAtomic(target, "old content that is longer than the new one", 0644));
  ASSERT_TRUE(WriteFileAtomic(target, "new", 0600));
  EXPECT_EQ(ReadAll(target), "new");
  EXPECT_EQ(ModeOf(target), 0600u);
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"state"});
}

TEST(WriteFileAtomicTest, MissingDirectoryFailsAndCreatesNothing) {
  TempDir dir;
  auto st = WriteFileAtomic(dir / "no" / "such" / "file", "x");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(st.error().message().find("no/such"), std::string::npos) << st.error().message();
  EXPECT_TRUE(Entries(dir.path()).empty());
  // The next good write still works.
  ASSERT_TRUE(WriteFileAtomic(dir / "file", "y"));
  EXPECT_EQ(ReadAll(dir / "file"), "y");
}

TEST(WriteFileAtomicTest, RelativePathInTheCurrentDirectory) {
  TempDir dir;
  fs::path old_cwd = fs::current_path();
  fs::current_path(dir.path());
  auto st = WriteFileAtomic("relative.txt", "here");
  fs::current_path(old_cwd);
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(ReadAll(dir / "relative.txt"), "here");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"relative.txt"});
}

TEST(AtomicFileTest, DestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  {
    auto file = AtomicFile::Create(dir / "partial.bin", 0600);
    ASSERT_TRUE(file) << file.error().ToString();
    ASSERT_TRUE(file->Write("half of the data"));
    // While writing, only a temporary file exists, never the target.
    EXPECT_FALSE(fs::exists(dir / "partial.bin"));
    EXPECT_EQ(Entries(dir.path()).size(), 1u);
  }
  EXPECT_TRUE(Entries(dir.path()).empty());
}

TEST(AtomicFileTest, DestroyedWithoutCommitKeepsTheOldFile) {
  TempDir dir;
  WriteAll(dir / "model.onnx", "old model");
  {
    auto file = AtomicFile::Create(dir / "model.onnx");
    ASSERT_TRUE(file);
    ASSERT_TRUE(file->Write("new model, never committed"));
  }
  EXPECT_EQ(ReadAll(dir / "model.onnx"), "old model");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"model.onnx"});
}

TEST(AtomicFileTest, WritesInPiecesAndPublishesOnCommit) {
  TempDir dir;
  auto file = AtomicFile::Create(dir / "out");
  ASSERT_TRUE(file);
  ASSERT_TRUE(file->Write("one,"));
  ASSERT_TRUE(file->Write("two,"));
  ASSERT_TRUE(file->Write("three"));
  ASSERT_TRUE(file->Commit());
  EXPECT_EQ(ReadAll(dir / "out"), "one,two,three");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out"});
}

TEST(AtomicFileTest, CommitTwiceIsRefused) {
  TempDir dir;
  auto file = AtomicFile::Create(dir / "out");
  ASSERT_TRUE(file);
  ASSERT_TRUE(file->Write("data"));
  ASSERT_TRUE(file->Commit());
  auto again = file->Commit();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kInternal);
  EXPECT_EQ(ReadAll(dir / "out"), "data");
}

TEST(AtomicFileTest, MovedFromObjectDoesNotRemoveTheTemporary) {
  TempDir dir;
  auto file = AtomicFile::Create(dir / "moved");
  ASSERT_TRUE(file);
  {
    AtomicFile taken(std::move(*file));
    ASSERT_TRUE(taken.Write("payload"));
    ASSERT_TRUE(taken.Commit());
  }
  EXPECT_EQ(ReadAll(dir / "moved"), "payload");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"moved"});
}

TEST(AtomicFileTest, CopyFromCopiesAByteRange) {
  TempDir dir;
  std::string source;
  for (int i = 0; i < 300000; ++i) {
    source.push_back(static_cast<char>('a' + i % 26));
  }
  WriteAll(dir / "source", source);
  auto in = OpenForRead(dir / "source");
  ASSERT_TRUE(in);
  auto file = AtomicFile::Create(dir / "copy");
  ASSERT_TRUE(file);
  ASSERT_TRUE(file->Write("head:"));
  ASSERT_TRUE(file->CopyFrom(in->get(), 1000, 250000));
  ASSERT_TRUE(file->Commit());
  EXPECT_EQ(ReadAll(dir / "copy"), "head:" + source.substr(1000, 250000));
}

TEST(AtomicFileTest, CopyFromPastTheEndIsCorruptAndPublishesNothing) {
  TempDir dir;
  WriteAll(dir / "short", "only twenty bytes!!!");
  auto in = OpenForRead(dir / "short");
  ASSERT_TRUE(in);
  {
    auto file = AtomicFile::Create(dir / "copy");
    ASSERT_TRUE(file);
    auto st = file->CopyFrom(in->get(), 10, 100);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code(), ErrorCode::kCorrupt);
    EXPECT_NE(st.error().message().find("90 bytes early"), std::string::npos)
        << st.error().message();
  }
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"short"});
}

TEST(ReadFileTest, ReadsWholeFile) {
  TempDir dir;
  std::string data(100000, 'z');
  data[5] = '\0';
  WriteAll(dir / "f", data);
  auto r = ReadFile(dir / "f");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, data);
}

TEST(ReadFileTest, RefusesFilesOverTheLimit) {
  TempDir dir;
  WriteAll(dir / "f", std::string(100, 'x'));
  auto over = ReadFile(dir / "f", 99);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(over.error().message().find("100 bytes"), std::string::npos) << over.error().message();
  EXPECT_NE(over.error().message().find("99"), std::string::npos);

  auto exact = ReadFile(dir / "f", 100);
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->size(), 100u);
}

TEST(ReadFileTest, MissingFileIsNotFoundAndNamesThePath) {
  TempDir dir;
  auto r = ReadFile(dir / "missing.yaml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.error().message().find("missing.yaml"), std::string::npos);
}

TEST(ReadFileTest, DirectoryIsRefused) {
  TempDir dir;
  auto r = ReadFile(dir.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("directory"), std::string::npos) << r.error().message();
}

TEST(ReadFileTest, ReadsFilesWhoseSizeIsNotKnownInAdvance) {
  // /proc files report size 0 and are read until EOF.
  auto r = ReadFile("/proc/self/status");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_NE(r->find("Pid:"), std::string::npos);

  auto capped = ReadFile("/proc/self/status", 16);
  ASSERT_FALSE(capped);
  EXPECT_EQ(capped.error().code(), ErrorCode::kInvalidArgument);
}

TEST(MakeDirectoriesTest, CreatesParentsAndIsIdempotent) {
  TempDir dir;
  fs::path deep = dir / "a" / "b" / "c";
  ASSERT_TRUE(MakeDirectories(deep));
  EXPECT_TRUE(fs::is_directory(deep));
  EXPECT_TRUE(MakeDirectories(deep));
  ASSERT_TRUE(WriteFileAtomic(deep / "f", "x"));
  EXPECT_TRUE(SyncDirectory(deep));
}

TEST(MakeDirectoriesTest, FailsWhenAFileIsInTheWay) {
  TempDir dir;
  WriteAll(dir / "file", "x");
  auto st = MakeDirectories(dir / "file" / "sub");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kIo);
}

TEST(SyncDirectoryTest, MissingDirectoryIsNotFound) {
  TempDir dir;
  auto st = SyncDirectory(dir / "nope");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kNotFound);
}

TEST(UniqueFdTest, ClosesOnDestructionAndMoveAssignment) {
  TempDir dir;
  WriteAll(dir / "f", "x");
  int raw = -1;
  {
    auto fd = OpenForRead(dir / "f");
    ASSERT_TRUE(fd);
    raw = fd->get();
    EXPECT_GE(::fcntl(raw, F_GETFD), 0);
    UniqueFd other;
    other = std::move(*fd);
    EXPECT_EQ(other.get(), raw);
    EXPECT_EQ(fd->get(), -1);
  }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);  // closed
}

}  // namespace
}  // namespace airlock
