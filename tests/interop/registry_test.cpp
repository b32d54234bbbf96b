// `airlock push` and `airlock pull` against a real OCI registry: Debian's docker-registry
// (Distribution 2.8, which has no referrers API, so releases travel under the referrers tag),
// started per test on a free 127.0.0.1 port. skopeo cross-checks both directions.
//
// The package is the affine model y = 2x + 1 for linux/amd64 and linux/arm64 with one sample,
// packed by the airlock binary and signed with a throwaway publisher key.

#include "support/registry.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/digest.hpp"
#include "core/fs.hpp"
#include "net/registry_client.hpp"
#include "support/mosquitto.hpp"
#include "support/onnx_models.hpp"
#include "support/tensors.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kVersion[] = "1.0.0";

json ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
  return j;
}

// Files of a directory tree other than the top, relative, for "nothing left behind" checks.
std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class RegistryInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kDockerRegistry, X_OK) != 0) {
      GTEST_SKIP() << "docker-registry is not installed (scripts/bootstrap installs it)";
    }
    registry_ = std::make_unique<DistributionRegistry>();
    fs::path src = dir_ / "src";
    WriteAffineModel(src / "model.onnx", 4);
    ASSERT_NO_FATAL_FAILURE(
        WriteNpy(src / "x.npy", Fp32("x", {2, 4}, {0, 1, 2, 3, -1, -0.5f, 0.25f, 100})));
    ASSERT_NO_FATAL_FAILURE(
        WriteNpy(src / "y.npy", Fp32("y", {2, 4}, {1, 3, 5, 7, -1, 0, 1.5f, 201})));
    WriteAll(src / "airlock.yaml", std::string("name: affine\nversion: \"") + kVersion +
                                       "\"\n"
                                       "created: \"2026-01-01T00:00:00Z\"\n"
                                       "model: {files: [model.onnx], precision: fp32}\n"
                                       "platforms: [linux/amd64, linux/arm64]\n"
                                       "samples:\n"
                                       "  sets:\n"
                                       "    - inputs: {x: x.npy}\n"
                                       "      outputs: {y: y.npy}\n");
    CommandResult packed =
        RunAirlock({"pack", "-f", (src / "airlock.yaml").string(), "-o", package().string()});
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
    fs::create_directories(dir_ / "keys");
    for (const char* name : {"publisher", "root"}) {
      CommandResult r = RunAirlock({"keygen", (dir_ / "keys" / name).string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    CommandResult root = RunAirlock({"root", "init", "--root-key", Key("root.key"), "--publisher",
                                     Key("publisher.pub"), "-o", RootFile()});
    ASSERT_EQ(root.exit_code, 0) << root.err;
    CommandResult signed_ = RunAirlock({"sign", "-k", Key("publisher.key"), "--counter", "1", "-o",
                                        (dir_ / "release.json").string(), package().string()});
    ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  }

  std::string Key(const std::string& name) const { return (dir_ / "keys" / name).string(); }
  std::string RootFile() const { return (dir_ / "root.json").string(); }
  fs::path package() const { return dir_ / "affine.tar"; }
  std::string Repo(const std::string& name = "models/affine") const {
    return registry_->address() + "/" + name;
  }

  CommandResult Push(const std::string& target, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"push", "--json", package().string(), target};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunAirlock(args);
  }
  CommandResult Pull(const std::string& source, const fs::path& out) {
    return RunAirlock({"pull", "--json", source, "-o", out.string()});
  }
  CommandResult Verify(const fs::path& pkg, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"verify", "--root", RootFile(), pkg.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunAirlock(args);
  }
  CommandResult Skopeo(std::vector<std::string> args) const {
    fs::create_directories(dir_ / "skopeo-tmp");
    args.insert(args.begin(),
                {"skopeo", "--insecure-policy", "--tmpdir", (dir_ / "skopeo-tmp").string()});
    return RunCommand(args, {}, 120);
  }

  TempDir dir_;
  std::unique_ptr<DistributionRegistry> registry_;
};

TEST_F(RegistryInterop, PushThenPullIsByteIdenticalAndVerifies) {
  CommandResult pushed = Push(Repo());
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << registry_->Log();
  json p = ParseJson(pushed.out);
  EXPECT_EQ(p.value("tag", ""), kVersion);
  EXPECT_EQ(p.value("referrers", ""), "tag") << "Distribution 2.8 has no referrers API";
  EXPECT_TRUE(p.at("release").is_string());
  EXPECT_GT(p.at("blobs").value("uploaded", 0), 3);

  fs::path tar = dir_ / "pulled.tar";
  CommandResult pulled = Pull(Repo() + ":" + kVersion, tar);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  json q = ParseJson(pulled.out);
  EXPECT_EQ(q.at("index"), p.at("index"));
  EXPECT_EQ(q.at("release"), p.at("release"));
  EXPECT_TRUE(ReadAll(tar) == ReadAll(package())) << "the pulled tar differs from the pushed one";

  fs::path layout = dir_ / "pulled-layout";
  CommandResult as_dir = Pull(Repo() + ":" + kVersion, layout);
  ASSERT_EQ(as_dir.exit_code, 0) << as_dir.err;
  CommandResult inspect = RunAirlock({"inspect", layout.string()});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  for (const fs::path& pkg : {tar, layout}) {
    CommandResult v = Verify(pkg);
    EXPECT_EQ(v.exit_code, 0) << pkg << ": " << v.out << v.err;
  }
}

TEST_F(RegistryInterop, SecondPushSkipsWhatTheRegistryHas) {
  ASSERT_EQ(Push(Repo()).exit_code, 0);
  CommandResult again = Push(Repo());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  json j = ParseJson(again.out);
  EXPECT_EQ(j.at("blobs").value("uploaded", -1), 0) << again.out;
  EXPECT_GT(j.at("blobs").value("existing", 0), 3);
  EXPECT_EQ(j.value("bytes_uploaded", -1), 0);

  // Another repository of the same registry: blobs mounted, not sent again.
  CommandResult mounted = Push(Repo("models/affine-copy"), {"--mount-from", "models/affine"});
  ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
  json m = ParseJson(mounted.out);
  EXPECT_EQ(m.at("blobs").value("uploaded", -1), 0) << mounted.out;
  EXPECT_GT(m.at("blobs").value("mounted", 0), 3) << mounted.out;
}

TEST_F(RegistryInterop, PullByDigestAndUnderAnotherTag) {
  CommandResult pushed = Push(Repo() + ":stable");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  std::string digest = ParseJson(pushed.out).at("index").at("digest");
  fs::path out = dir_ / "by-digest.tar";
  CommandResult pulled = Pull(Repo() + "@" + digest, out);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_TRUE(ReadAll(out) == ReadAll(package()));
}

TEST_F(RegistryInterop, UnknownTagOrRepositoryIsAClearError) {
  ASSERT_EQ(Push(Repo()).exit_code, 0);
  for (const std::string& source : {Repo() + ":9.9.9", Repo("models/nothing") + ":1.0.0"}) {
    fs::path out = dir_ / "nothing.tar";
    CommandResult r = Pull(source, out);
    EXPECT_EQ(r.exit_code, 1) << source;
    EXPECT_NE(r.err.find("is not in 127.0.0.1"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("check the repository name and the tag"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  CommandResult bad = RunAirlock({"pull", "no-registry-here:1.0", "-o", "x.tar"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("REGISTRY/REPOSITORY"), std::string::npos) << bad.err;
}

TEST_F(RegistryInterop, UnreachableRegistryIsAClearError) {
  std::string nowhere = "127.0.0.1:" + std::to_string(FreePort()) + "/models/affine";
  CommandResult r = Push(nowhere);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot reach the registry"), std::string::npos) << r.err;
}

// The registry's copy of the model blob is corrupted on disk: the pull is refused with a digest
// error, nothing is left in the output directory, and once the blob is repaired the pull works.
TEST_F(RegistryInterop, CorruptBlobInTheRegistryIsRefused) {
  CommandResult pushed = Push(Repo());
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  // The model layer: the largest blob of the package.
  CommandResult inspect = RunAirlock({"inspect", "--json", package().string()});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  std::string hex;
  std::uint64_t largest = 0;
  for (const auto& entry : fs::directory_iterator(registry_->BlobDataPath(std::string(64, '0'))
                                                      .parent_path()
                                                      .parent_path()
                                                      .parent_path())) {
    for (const auto& blob : fs::directory_iterator(entry.path())) {
      auto size = fs::file_size(blob.path() / "data");
      if (size > largest) {
        largest = size;
        hex = blob.path().filename().string();
      }
    }
  }
  ASSERT_FALSE(hex.empty());
  fs::path data = registry_->BlobDataPath(hex);
  std::string original = ReadAll(data);
  std::string corrupt = original;
  corrupt[corrupt.size() / 2] ^= 0x55;
  WriteAll(data, corrupt);

  fs::path out_dir = dir_ / "out";
  fs::create_directories(out_dir);
  for (const char* name : {"pulled.tar", "pulled-layout"}) {
    CommandResult r = Pull(Repo() + ":" + kVersion, out_dir / name);
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find("does not match its digest"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("sha256:" + hex), std::string::npos) << r.err;
    EXPECT_TRUE(Entries(out_dir).empty()) << "left behind: " << Entries(out_dir).front();
  }
  WriteAll(data, original);
  CommandResult good = Pull(Repo() + ":" + kVersion, out_dir / "pulled.tar");
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_TRUE(ReadAll(out_dir / "pulled.tar") == ReadAll(package()));
}

// skopeo reads what airlock pushed (the index byte for byte), and airlock pulls what skopeo
// pushed (skopeo does not carry the release referrer, so that copy verifies with the file).
TEST_F(RegistryInterop, SkopeoReadsWhatAirlockPushedAndViceVersa) {
  if (RunCommand({"skopeo", "--version"}).exit_code != 0) {
    GTEST_SKIP() << "skopeo is not installed (scripts/bootstrap installs it)";
  }
  CommandResult pushed = Push(Repo());
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  std::string index_digest = ParseJson(pushed.out).at("index").at("digest");

  fs::path copy = dir_ / "skopeo-copy";
  CommandResult read =
      Skopeo({"copy", "-q", "--all", "--src-tls-verify=false",
              "docker://" + Repo() + ":" + kVersion, "oci:" + copy.string() + ":" + kVersion});
  ASSERT_EQ(read.exit_code, 0) << read.err;
  json top = ParseJson(ReadAll(copy / "index.json"));
  ASSERT_EQ(top.at("manifests").size(), 1u);
  EXPECT_EQ(top["manifests"][0].value("digest", ""), index_digest) << "skopeo saw another index";
  CommandResult v = Verify(copy, {"--release", (dir_ / "release.json").string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // The other way: skopeo pushes the layout it made, airlock pulls it.
  CommandResult put = Skopeo({"copy", "-q", "--all", "--dest-tls-verify=false",
                              "oci:" + copy.string() + ":" + kVersion,
                              "docker://" + Repo("models/by-skopeo") + ":" + kVersion});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  fs::path pulled = dir_ / "from-skopeo";
  CommandResult r = Pull(Repo("models/by-skopeo") + ":" + kVersion, pulled);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = ParseJson(r.out);
  EXPECT_EQ(j.at("index").value("digest", ""), index_digest);
  EXPECT_TRUE(j.at("release").is_null());
  CommandResult verified = Verify(pulled, {"--release", (dir_ / "release.json").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  CommandResult unsigned_ = Verify(pulled);
  EXPECT_EQ(unsigned_.exit_code, 3) << "a package without its release must not verify";
}

// The client on its own: a blob larger than the chunk size goes up in PATCH chunks, comes back
// through a resumable download, and the tag list shows the package and its referrers tag.
TEST_F(RegistryInterop, ChunkedUploadDownloadAndTags) {
  net::RegistryOptions options;
  options.registry = registry_->address();
  options.chunk_size = 64 * 1024;
  auto client = net::RegistryClient::Create(options);
  ASSERT_TRUE(client.has_value()) << client.error().ToString();
  std::string bytes;
  for (int i = 0; bytes.size() < 300000; ++i) {
    bytes += std::to_string(i * 7919) + ",";
  }
  fs::path file = dir_ / "big.bin";
  WriteAll(file, bytes);
  Digest digest = Sha256Of(bytes);
  auto fd = OpenForRead(file);
  ASSERT_TRUE(fd.has_value());
  std::uint64_t reported = 0;
  auto pushed = (*client)->PushBlob("models/blobs", digest, {fd->get(), 0, bytes.size()}, {},
                                    [&](std::uint64_t done, std::uint64_t) { reported = done; });
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString() << registry_->Log();
  EXPECT_EQ(*pushed, net::BlobPushOutcome::kUploaded);
  EXPECT_EQ(reported, bytes.size());
  EXPECT_EQ(ReadAll(registry_->BlobDataPath(digest.hex())), bytes);
  EXPECT_NE(registry_->Log().find("PATCH /v2/models/blobs/blobs/uploads/"), std::string::npos);

  auto size = (*client)->BlobSize("models/blobs", digest);
  ASSERT_TRUE(size.has_value()) << size.error().ToString();
  EXPECT_EQ(size->value_or(0), bytes.size());
  auto again = (*client)->PushBlob("models/blobs", digest, {fd->get(), 0, bytes.size()});
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, net::BlobPushOutcome::kExisted);
  ASSERT_TRUE((*client)->DownloadBlob("models/blobs", digest, bytes.size(), dir_ / "back.bin"));
  EXPECT_EQ(ReadAll(dir_ / "back.bin"), bytes);

  CommandResult p = Push(Repo());
  ASSERT_EQ(p.exit_code, 0) << p.err;
  std::string index = ParseJson(p.out).at("index").at("digest");
  auto tags = (*client)->ListTags("models/affine");
  ASSERT_TRUE(tags.has_value()) << tags.error().ToString();
  std::sort(tags->begin(), tags->end());
  EXPECT_EQ(*tags, (std::vector<std::string>{"1.0.0", "sha256-" + index.substr(7)}));
  auto missing = (*client)->ListTags("models/none");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace airlock::testing
