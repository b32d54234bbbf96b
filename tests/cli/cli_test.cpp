// The airlock binary as a user runs it: exit codes, files it writes, messages it prints.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "pkg/fixture.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kUsage = 2;
constexpr int kVerification = 3;

class CliTest : public ::testing::Test {
 protected:
  CommandResult Airlock(std::vector<std::string> args) { return RunAirlock(args, tmp_.path()); }

  // keys/{root,alice,bob}, root.json needing 1 publisher signature, and a packed affine.tar.
  void MakeSignedWorld(int threshold = 1) {
    for (const char* k : {"root", "alice", "bob"}) {
      ASSERT_EQ(Airlock({"keygen", std::string("keys/") + k}).exit_code, 0);
    }
    auto root =
        Airlock({"root", "init", "--root-key", "keys/root.key", "--publisher", "keys/alice.pub",
                 "--publisher", "keys/bob.pub", "--threshold", std::to_string(threshold)});
    ASSERT_EQ(root.exit_code, 0) << root.err;
    WriteAffineProject(tmp_ / "src");
    auto pack = Airlock({"pack", "-f", "src/airlock.yaml", "-o", "affine.tar"});
    ASSERT_EQ(pack.exit_code, 0) << pack.err;
  }

  TempDir tmp_;
};

TEST_F(CliTest, HelpListsTheCommands) {
  auto r = Airlock({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd :
       {"keygen", "root", "init", "pack", "inspect", "sign", "verify", "run", "push", "pull",
        "models", "versions", "promote", "deploy", "deployments", "status", "gateways"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  }
}

TEST_F(CliTest, UsageErrorsExitWithTwo) {
  EXPECT_EQ(Airlock({}).exit_code, kUsage);
  EXPECT_EQ(Airlock({"frobnicate"}).exit_code, kUsage);
  EXPECT_EQ(Airlock({"verify", "x.tar"}).exit_code, kUsage);  // --root is required
  EXPECT_EQ(Airlock({"pack", "--no-such-flag"}).exit_code, kUsage);
  EXPECT_EQ(Airlock({"pull", "localhost:5000/a:1"}).exit_code, kUsage);  // -o is required
  EXPECT_EQ(Airlock({"push", "x.tar", "not a reference"}).exit_code, kUsage);
}

// The hub commands refuse bad arguments before they reach for a hub (none listens on port 9).
TEST_F(CliTest, HubCommandsRefuseBadArgumentsWithTwo) {
  auto usage = [&](std::vector<std::string> args, const std::string& says) {
    auto r = Airlock(args);
    EXPECT_EQ(r.exit_code, kUsage) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  };
  const std::string hub = "--hub=http://127.0.0.1:9";
  usage({"models", "ls", "--hub", "ftp://hub"}, "the scheme must be http or https");
  usage({"versions", "m", "--hub", "http://hub/api"}, "give only the scheme, host and port");
  usage({"promote", "m", "1.0.0", "--channel", "Production", "-k", "k.key", hub},
        "\"Production\" is not a channel name");
  usage(
      {"promote", "m", "1.0.0", "--channel", "production", "-k", "k.key", "--expires", "soon", hub},
      "--expires");
  usage({"promote", "m", "1.0.0", "--channel", "production", "-k", "k.key", "--keep", "0", hub},
        "--keep must be at least 1");
  usage({"deploy", "m", "--channel", "production", hub}, "--gateway NAME");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--waves", "1,0%", hub},
        "\"0%\" is neither a device count nor a share");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--waves", "150%", hub},
        "150%");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--selector", "line", hub},
        "want key=value");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--shadow", "0.99", hub},
        "--shadow 0.99: want the share of answers that must agree, e.g. 99%");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--shadow", "150%", hub},
        "--shadow 150%");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--shadow", "99%",
         "--shadow-compared", "0", hub},
        "--shadow-compared must be at least 1");
  usage({"deploy", "m", "--channel", "production", "--gateway", "g", "--health-window", "5x", hub},
        "--health-window");
  usage({"gateways", "token", "--expires-in", "tomorrow", hub}, "--expires-in");
  EXPECT_EQ(Airlock({"deployments", "show"}).exit_code, kUsage);  // the id is required
  EXPECT_EQ(Airlock({"gateways"}).exit_code, kUsage);             // ls or token

  // Good arguments, no hub: a failure (1) that says so.
  auto r = Airlock({"deployments", "ls", hub});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot reach the hub at http://127.0.0.1:9"), std::string::npos) << r.err;
}

TEST_F(CliTest, KeygenWritesAPrivateKeyOnlyTheOwnerCanRead) {
  auto r = Airlock({"keygen", "keys/alice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(id.size(), 64u);
  struct stat st {};
  ASSERT_EQ(::stat((tmp_ / "keys/alice.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(::stat((tmp_ / "keys/alice.pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644);
  // Never overwrites a key.
  std::string before = ReadAll(tmp_ / "keys/alice.key");
  auto again = Airlock({"keygen", "keys/alice"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already exists"), std::string::npos);
  EXPECT_EQ(ReadAll(tmp_ / "keys/alice.key"), before);
}

TEST_F(CliTest, PackSignVerifyInspectRun) {
  MakeSignedWorld();
  auto sign = Airlock(
      {"sign", "affine.tar", "-k", "keys/alice.key", "--counter", "3", "-o", "release.json"});
  ASSERT_EQ(sign.exit_code, 0) << sign.err;
  EXPECT_TRUE(fs::exists(tmp_ / "release.json"));
  auto verify =
      Airlock({"verify", "affine.tar", "--root", "root.json", "--platform", "linux/arm64"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.out.find("verified affine 1.0.0 (release counter 3"), std::string::npos);

  auto inspect = Airlock({"inspect", "affine.tar"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("affine 1.0.0"), std::string::npos);
  EXPECT_NE(inspect.out.find("linux/arm64"), std::string::npos);
  EXPECT_NE(inspect.out.find("counter 3"), std::string::npos);
  auto json = Airlock({"inspect", "--json", "affine.tar"});
  ASSERT_EQ(json.exit_code, 0);
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["name"], "affine");
  EXPECT_EQ(j["variants"].size(), 2u);
  EXPECT_EQ(j["pipeline"]["signature"]["inputs"][0]["name"], "x");

  auto samples = Airlock({"run", "affine.tar"});
  EXPECT_EQ(samples.exit_code, 0) << samples.err;
  EXPECT_NE(samples.out.find("2 of 2 sample(s)"), std::string::npos);

  WriteNpy(tmp_ / "in.npy", Fp32("x", {1, 4}, {1, 2, 3, 4}));
  auto run = Airlock({"run", "affine.tar", "--input", "x=in.npy", "--json", "--output-dir", "out"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto out = nlohmann::json::parse(run.out);
  EXPECT_EQ(out["outputs"][0]["data"], nlohmann::json({3.0, 5.0, 7.0, 9.0}));
  EXPECT_TRUE(fs::exists(tmp_ / "out/y.npy"));
}

TEST_F(CliTest, VerificationFailuresExitWithThree) {
  MakeSignedWorld(2);
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/alice.key", "--counter", "1"}).exit_code, 0);
  auto under = Airlock({"verify", "affine.tar", "--root", "root.json"});
  EXPECT_EQ(under.exit_code, kVerification);
  EXPECT_NE(under.err.find("needs 2"), std::string::npos);

  // Co-signing by the same key does not help; by a second key it does.
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/alice.key"}).exit_code, 0);
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "root.json"}).exit_code, kVerification);
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/bob.key"}).exit_code, 0);
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "root.json"}).exit_code, 0);

  auto rollback =
      Airlock({"verify", "affine.tar", "--root", "root.json", "--trusted-counter", "2"});
  EXPECT_EQ(rollback.exit_code, kVerification);
  auto expired =
      Airlock({"--now", "2099-01-01T00:00:00Z", "verify", "affine.tar", "--root", "root.json"});
  EXPECT_EQ(expired.exit_code, kVerification);
  EXPECT_NE(expired.err.find("expired"), std::string::npos);

  // A root that is not a root, and a missing root file.
  WriteAll(tmp_ / "junk.json", "{\"signed\": 1}");
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "junk.json"}).exit_code, kVerification);
  EXPECT_EQ(Airlock({"verify", "affine.tar", "--root", "missing.json"}).exit_code, 1);
}

TEST_F(CliTest, WrongKeyMessages) {
  MakeSignedWorld();
  auto pub_as_private = Airlock({"sign", "affine.tar", "-k", "keys/alice.pub", "--counter", "1"});
  EXPECT_EQ(pub_as_private.exit_code, 1);
  EXPECT_NE(pub_as_private.err.find("keys/alice.pub"), std::string::npos);
  EXPECT_NE(pub_as_private.err.find("public half"), std::string::npos);
  auto missing = Airlock({"sign", "affine.tar", "-k", "keys/nobody.key", "--counter", "1"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("keys/nobody.key"), std::string::npos);
  // A stranger's signature is not a publisher's.
  ASSERT_EQ(Airlock({"keygen", "keys/mallory"}).exit_code, 0);
  ASSERT_EQ(Airlock({"sign", "affine.tar", "-k", "keys/mallory.key", "--counter", "1"}).exit_code,
            0);
  auto r = Airlock({"verify", "affine.tar", "--root", "root.json"});
  EXPECT_EQ(r.exit_code, kVerification);
  EXPECT_NE(r.err.find("is not a publisher key"), std::string::npos);
}

TEST_F(CliTest, InitWritesATemplateThatPackExplains) {
  ASSERT_EQ(Airlock({"init", "--name", "demo"}).exit_code, 0);
  std::string yaml = ReadAll(tmp_ / "airlock.yaml");
  EXPECT_NE(yaml.find("name: demo"), std::string::npos);
  EXPECT_EQ(Airlock({"init"}).exit_code, 1);  // no overwrite without --force
  auto pack = Airlock({"pack"});
  EXPECT_EQ(pack.exit_code, 1);
  EXPECT_NE(pack.err.find("model.onnx does not exist"), std::string::npos) << pack.err;
  WriteAffineModel(tmp_ / "model.onnx");
  auto ok = Airlock({"pack", "-o", "demo"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(CliTest, PackFromFlagsAlone) {
  WriteAffineModel(tmp_ / "m.onnx");
  auto r = Airlock({"pack", "--model", "m.onnx", "--name", "m", "--version", "2", "--platform",
                    "linux/arm64/v8", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output"], "m-2.tar");
  EXPECT_TRUE(fs::exists(tmp_ / "m-2.tar"));
  auto inspect = Airlock({"inspect", "m-2.tar"});
  EXPECT_NE(inspect.out.find("linux/arm64/v8"), std::string::npos);
}

TEST_F(CliTest, PackLineageFlagsAndInspect) {
  WriteAffineProject(tmp_ / "src");
  WriteAll(tmp_ / "src/airlock.yaml", ReadAll(tmp_ / "src/airlock.yaml") +
                                          "revision: abc123\nlineage:\n  training_run: r1\n"
                                          "  metrics: {accuracy: 0.9, loss: 0.25}\n");
  std::string digest = "sha256:" + std::string(64, 'a');
  auto pack =
      Airlock({"pack", "-f", "src/airlock.yaml", "-o", "a.tar", "--training-run", "r2",
               "--dataset-digest", digest, "--metric", "accuracy=0.95", "--metric", "epochs=12"});
  ASSERT_EQ(pack.exit_code, 0) << pack.err;
  auto j = nlohmann::json::parse(Airlock({"inspect", "--json", "a.tar"}).out);
  EXPECT_EQ(j["lineage"],
            nlohmann::json({{"training_run", "r2"},
                            {"dataset_digest", digest},
                            {"source_revision", "abc123"},
                            {"metrics", {{"accuracy", 0.95}, {"epochs", 12}, {"loss", 0.25}}}}));
  auto text = Airlock({"inspect", "a.tar"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("  lineage\n    training run     r2\n    dataset          " + digest),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("source revision  abc123"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("epochs               12"), std::string::npos) << text.out;

  // Bad flag values: exit 1, the flag named, nothing written.
  auto bad = Airlock({"pack", "-f", "src/airlock.yaml", "-o", "b.tar", "--metric", "f1=good"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--metric f1=good"), std::string::npos) << bad.err;
  auto digest_bad =
      Airlock({"pack", "-f", "src/airlock.yaml", "-o", "b.tar", "--dataset-digest", "abc"});
  EXPECT_EQ(digest_bad.exit_code, 1);
  EXPECT_NE(digest_bad.err.find("--dataset-digest: \"abc\" is not a dataset digest"),
            std::string::npos)
      << digest_bad.err;
  EXPECT_FALSE(fs::exists(tmp_ / "b.tar"));
}

TEST_F(CliTest, PackageMissingABlobFailsVerification) {
  MakeSignedWorld();
  ASSERT_EQ(Airlock({"pack", "-f", "src/airlock.yaml", "-o", "dir"}).exit_code, 0);
  ASSERT_EQ(Airlock({"sign", "dir", "-k", "keys/alice.key", "--counter", "1"}).exit_code, 0);
  auto j = nlohmann::json::parse(Airlock({"inspect", "--json", "dir"}).out);
  std::string model = j["variants"][0]["layers"][0]["digest"];
  fs::remove(tmp_ / "dir/blobs/sha256" / model.substr(7));
  auto r = Airlock({"verify", "dir", "--root", "root.json"});
  EXPECT_EQ(r.exit_code, kVerification);
  EXPECT_NE(r.err.find("lacks blob " + model), std::string::npos) << r.err;
}

TEST_F(CliTest, PackGuardsWhatTheUserWrote) {
  WriteAffineModel(tmp_ / "model.onnx");
  WriteAll(tmp_ / "data/extra.bin", "external weights");
  // YAML would read 1.10 as 1.1.
  WriteAll(tmp_ / "airlock.yaml", "name: m\nversion: 1.10\nmodel: model.onnx\n");
  auto number = Airlock({"pack"});
  EXPECT_EQ(number.exit_code, 1);
  EXPECT_NE(number.err.find("version reads as the number 1.1; put it in quotes"), std::string::npos)
      << number.err;
  // --force replaces a package, not a directory of other things.
  WriteAll(tmp_ / "work/notes.txt", "mine");
  auto force = Airlock(
      {"pack", "--model", "model.onnx", "--name", "m", "--version", "1", "-o", "work", "--force"});
  EXPECT_EQ(force.exit_code, 1);
  EXPECT_EQ(ReadAll(tmp_ / "work/notes.txt"), "mine");
  // A trailing slash names the directory; flag paths keep their folders inside the package.
  auto slash = Airlock({"pack", "--model", "model.onnx", "--model", "data/extra.bin", "--name", "m",
                        "--version", "1", "-o", "out/"});
  ASSERT_EQ(slash.exit_code, 0) << slash.err;
  EXPECT_TRUE(fs::exists(tmp_ / "out/oci-layout"));
  auto j = nlohmann::json::parse(Airlock({"inspect", "--json", "out"}).out);
  EXPECT_EQ(j["variants"][0]["layers"][1]["annotations"]["org.cncf.model.filepath"],
            "data/extra.bin");
}

TEST_F(CliTest, SymlinkedLayoutDirectoriesAreRefused) {
  MakeSignedWorld();
  ASSERT_EQ(Airlock({"pack", "-f", "src/airlock.yaml", "-o", "dir"}).exit_code, 0);
  fs::rename(tmp_ / "dir/blobs", tmp_ / "elsewhere");
  fs::create_directory_symlink(tmp_ / "elsewhere", tmp_ / "dir/blobs");
  auto r = Airlock({"inspect", "dir"});
  EXPECT_EQ(r.exit_code, kVerification);
  EXPECT_NE(r.err.find("links are refused"), std::string::npos) << r.err;
}

TEST_F(CliTest, CorruptPackageInputs) {
  WriteAll(tmp_ / "notatar.tar", "this is not a tar archive at all");
  auto r = Airlock({"inspect", "notatar.tar"});
  EXPECT_EQ(r.exit_code, kVerification);
  EXPECT_NE(r.err.find("notatar.tar"), std::string::npos);
  auto missing = Airlock({"inspect", "nothing-here"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no package at nothing-here"), std::string::npos);
}

}  // namespace
}  // namespace airlock::testing
