// skopeo (Debian 12's 1.9) pushes a package written by `airlock pack` into the hub and pulls it
// back out: every blob and manifest comes back byte for byte, and the copy still verifies. The
// release referrer, which skopeo does not carry, is pushed by hand and found by the referrers API.

#include <filesystem>
#include <map>

#include "hub/hub_fixture.hpp"
#include "support/onnx_models.hpp"
#include "support/tensors.hpp"

namespace airlock::hub {
namespace {

namespace fs = std::filesystem;
using airlock::testing::CommandResult;
using airlock::testing::ReadAll;
using airlock::testing::RunAirlock;
using airlock::testing::RunCommand;
using nlohmann::json;

constexpr char kReleaseType[] = "application/vnd.airlock.release.v1+json";

class SkopeoHubInterop : public HubFixture {
 protected:
  void SetUp() override {
    if (RunCommand({"skopeo", "--version"}).exit_code != 0) {
      GTEST_SKIP() << "skopeo is not installed (scripts/bootstrap installs it)";
    }
    HubFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    fs::path src = dir_ / "src";
    airlock::testing::WriteAffineModel(src / "model.onnx", 4);
    airlock::testing::WriteNpy(src / "x.npy", airlock::testing::Fp32("x", {1, 4}, {0, 1, 2, 3}));
    airlock::testing::WriteNpy(src / "y.npy", airlock::testing::Fp32("y", {1, 4}, {1, 3, 5, 7}));
    airlock::testing::WriteAll(src / "airlock.yaml",
                               "name: affine\nversion: \"1.0.0\"\n"
                               "model: {files: [model.onnx], precision: fp32}\n"
                               "platforms: [linux/amd64, linux/arm64]\n"
                               "samples:\n  sets:\n    - name: first\n"
                               "      inputs: {x: x.npy}\n      outputs: {y: y.npy}\n");
    CommandResult packed =
        RunAirlock({"pack", "-f", (src / "airlock.yaml").string(), "-o", layout().string()});
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
  }

  CommandResult Skopeo(std::vector<std::string> args) const {
    fs::create_directories(dir_ / "skopeo-tmp");
    args.insert(args.begin(),
                {"skopeo", "--insecure-policy", "--tmpdir", (dir_ / "skopeo-tmp").string()});
    return RunCommand(args, {}, 180);
  }

  fs::path layout() const { return dir_ / "layout"; }
  std::string HubRef() const {
    return "docker://127.0.0.1:" + std::to_string(port()) + "/models/affine:1.0.0";
  }

  // Every blob file of a layout, by name.
  static std::map<std::string, std::string> Blobs(const fs::path& l) {
    std::map<std::string, std::string> out;
    for (const auto& f : fs::directory_iterator(l / "blobs" / "sha256")) {
      out[f.path().filename().string()] = ReadAll(f.path());
    }
    return out;
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, SkopeoHubInterop, airlock::testing::AllMetadataBackends(),
                         airlock::testing::BackendName);

TEST_P(SkopeoHubInterop, CopyInAndOutIsByteIdenticalAndStillVerifies) {
  // Sign first, so the layout carries a release referrer as a real package does.
  fs::path keys = dir_ / "keys";
  fs::create_directories(keys);
  for (const char* name : {"publisher", "root"}) {
    ASSERT_EQ(RunAirlock({"keygen", (keys / name).string()}).exit_code, 0);
  }
  fs::path root = dir_ / "root.json";
  CommandResult made =
      RunAirlock({"root", "init", "--root-key", (keys / "root.key").string(), "--publisher",
                  (keys / "publisher.pub").string(), "-o", root.string()});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  fs::path release = dir_ / "release.json";
  CommandResult signed_ = RunAirlock({"sign", "-k", (keys / "publisher.key").string(), "--counter",
                                      "1", "-o", release.string(), layout().string()});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err;

  CommandResult in = Skopeo({"copy", "-q", "--all", "--dest-tls-verify=false",
                             "oci:" + layout().string() + ":1.0.0", HubRef()});
  ASSERT_EQ(in.exit_code, 0) << in.err;

  fs::path copy = dir_ / "copy";
  CommandResult out = Skopeo({"copy", "-q", "--all", "--src-tls-verify=false", HubRef(),
                              "oci:" + copy.string() + ":1.0.0"});
  ASSERT_EQ(out.exit_code, 0) << out.err;

  // Every blob and manifest of the copy is the original's, byte for byte; only the release
  // referrer (which skopeo does not follow) stays behind.
  auto original = Blobs(layout());
  auto copied = Blobs(copy);
  ASSERT_FALSE(copied.empty());
  for (const auto& [name, bytes] : copied) {
    ASSERT_TRUE(original.count(name)) << name << " is not in the original";
    EXPECT_TRUE(original[name] == bytes) << name;
  }
  std::string index_digest;
  json top = json::parse(ReadAll(copy / "index.json"));
  for (const auto& m : top["manifests"]) {
    index_digest = m["digest"].get<std::string>();
  }
  json original_top = json::parse(ReadAll(layout() / "index.json"));
  std::string release_digest, signed_index;
  for (const auto& m : original_top["manifests"]) {
    if (m.value("artifactType", "") == kReleaseType) {
      release_digest = m["digest"].get<std::string>();
    } else {
      signed_index = m["digest"].get<std::string>();
    }
  }
  EXPECT_EQ(index_digest, signed_index) << "the package index changed on the way";
  EXPECT_EQ(copied.size() + 3, original.size())
      << "all but the release manifest, its document and its empty config";

  // The hub serves the index under the tag, with the right type.
  auto tagged = c().Get("/v2/models/affine/manifests/1.0.0");
  ASSERT_EQ(tagged->status, 200);
  EXPECT_EQ(tagged->get_header_value("Docker-Content-Digest"), signed_index);
  EXPECT_EQ(tagged->get_header_value("Content-Type"), kIndexType);

  // The copy verifies (with the release document, which skopeo left behind).
  CommandResult verified =
      RunAirlock({"verify", "--root", root.string(), "--release", release.string(), copy.string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  CommandResult inspected = RunAirlock({"inspect", copy.string()});
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;

  // Push the release referrer as `airlock push` will, and find it by the referrers API.
  std::string release_manifest = original[release_digest.substr(7)];
  json rm = json::parse(release_manifest);
  PushBlob("models/affine", original[rm["config"]["digest"].get<std::string>().substr(7)]);
  for (const auto& l : rm["layers"]) {
    PushBlob("models/affine", original[l["digest"].get<std::string>().substr(7)]);
  }
  auto put = PutManifest("models/affine", release_digest, release_manifest);
  ASSERT_EQ(put->status, 201) << put->body;
  auto referrers = c().Get("/v2/models/affine/referrers/" + signed_index +
                           "?artifactType=" + "application/vnd.airlock.release.v1%2Bjson");
  ASSERT_EQ(referrers->status, 200);
  json found = json::parse(referrers->body)["manifests"];
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0]["digest"], release_digest);
  EXPECT_EQ(found[0]["artifactType"], kReleaseType);
}

// With tokens on: skopeo --dest-creds name:TOKEN goes through the challenge and GET /v2/token
// (Basic in, a session token out); without credentials the push is refused (401, which skopeo
// reports as "unauthorized").
class SkopeoHubAuth : public SkopeoHubInterop {
 protected:
  void SetUp() override {
    auth_enabled_ = true;
    SkopeoHubInterop::SetUp();
  }
};

// The token flow does not depend on where the metadata is: SQLite only (skopeo runs are slow).
INSTANTIATE_TEST_SUITE_P(Backends, SkopeoHubAuth,
                         ::testing::Values(airlock::testing::MetadataBackend::kSqlite),
                         airlock::testing::BackendName);

TEST_P(SkopeoHubAuth, CopyWithCredentialsWorksAndWithoutIsRefused) {
  auto minted = hub_->access().CreateToken("ci", Role::kPublisher, "test", std::nullopt);
  ASSERT_TRUE(minted);
  std::string src = "oci:" + layout().string() + ":1.0.0";
  CommandResult anonymous =
      Skopeo({"copy", "-q", "--all", "--dest-tls-verify=false", src, HubRef()});
  EXPECT_NE(anonymous.exit_code, 0);
  EXPECT_NE(anonymous.err.find("unauthorized"), std::string::npos) << anonymous.err;
  CommandResult in = Skopeo({"copy", "-q", "--all", "--dest-tls-verify=false", "--dest-creds",
                             "ci:" + minted->token, src, HubRef()});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  CommandResult out =
      Skopeo({"copy", "-q", "--all", "--src-tls-verify=false", "--src-creds", "ci:" + minted->token,
              HubRef(), "oci:" + (dir_ / "copy").string() + ":1.0.0"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  // The pushes are in the audit log under the token's name.
  auto entries = hub_->access().store().ListAudit(0, 1000);
  ASSERT_TRUE(entries);
  bool manifest_put = false;
  for (const auto& e : *entries) {
    manifest_put |= e.action == "manifest.put" && e.token_name == "ci" && e.result == "201";
  }
  EXPECT_TRUE(manifest_put);
}

// airlock's own client against a hub with tokens on: the bearer token from the environment, a
// viewer may pull but not push, and without a token nothing gets in.
TEST_P(SkopeoHubAuth, AirlockPushAndPullUseTheTokenAndTheRoleDecides) {
  auto publisher = hub_->access().CreateToken("ci", Role::kPublisher, "test", std::nullopt);
  auto viewer = hub_->access().CreateToken("line3", Role::kViewer, "test", std::nullopt);
  ASSERT_TRUE(publisher);
  ASSERT_TRUE(viewer);
  std::string target = "127.0.0.1:" + std::to_string(port()) + "/models/affine";
  auto airlock = [&](const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {"env", "AIRLOCK_REGISTRY_TOKEN=" + token,
                               airlock::testing::AirlockBinary().string()});
    return RunCommand(args, {}, 120);
  };
  CommandResult anonymous = RunAirlock({"push", layout().string(), target});
  EXPECT_NE(anonymous.exit_code, 0);
  EXPECT_NE(anonymous.err.find("401"), std::string::npos) << anonymous.err;
  CommandResult as_viewer = airlock(viewer->token, {"push", layout().string(), target});
  EXPECT_NE(as_viewer.exit_code, 0);
  EXPECT_NE(as_viewer.err.find("403"), std::string::npos) << as_viewer.err;

  CommandResult pushed = airlock(publisher->token, {"push", layout().string(), target});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  fs::path pulled = dir_ / "pulled.tar";
  CommandResult pull = airlock(viewer->token, {"pull", target + ":1.0.0", "-o", pulled.string()});
  ASSERT_EQ(pull.exit_code, 0) << pull.err;
  CommandResult inspect = RunAirlock({"inspect", pulled.string()});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
}

// airlock login checks the token against the hub and saves it (0600); push and pull then use it
// without any variable; a wrong token is refused and not saved; logout forgets it.
TEST_P(SkopeoHubAuth, AirlockLoginSavesTheTokenForPushAndPull) {
  auto publisher = hub_->access().CreateToken("ci", Role::kPublisher, "test", std::nullopt);
  ASSERT_TRUE(publisher);
  std::string registry = "127.0.0.1:" + std::to_string(port());
  fs::path config = dir_ / "config";
  auto airlock = [&](std::vector<std::string> args, const std::string& token = "") {
    std::vector<std::string> argv = {"env", "AIRLOCK_CONFIG_DIR=" + config.string()};
    if (!token.empty()) {
      argv.push_back("AIRLOCK_REGISTRY_TOKEN=" + token);
    }
    argv.push_back(airlock::testing::AirlockBinary().string());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {}, 120);
  };
  std::string wrong = "alk_" + std::string(64, '0');
  CommandResult refused = airlock({"login", registry}, wrong);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("not known to this hub"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(config / "credentials.json"));

  CommandResult login = airlock({"login", registry}, publisher->token);
  ASSERT_EQ(login.exit_code, 0) << login.err;
  auto mode = fs::status(config / "credentials.json").permissions();
  EXPECT_EQ(mode & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  CommandResult pushed = airlock({"push", layout().string(), registry + "/models/affine"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  CommandResult pulled =
      airlock({"pull", registry + "/models/affine:1.0.0", "-o", (dir_ / "p.tar").string()});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;

  CommandResult logout = airlock({"logout", registry});
  ASSERT_EQ(logout.exit_code, 0) << logout.err;
  CommandResult after =
      airlock({"pull", registry + "/models/affine:1.0.0", "-o", (dir_ / "q.tar").string()});
  EXPECT_NE(after.exit_code, 0);
  EXPECT_NE(after.err.find("401"), std::string::npos) << after.err;
}

}  // namespace
}  // namespace airlock::hub
