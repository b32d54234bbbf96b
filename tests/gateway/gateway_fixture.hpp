#pragma once
// What the gateway's tests share: a cache in a temporary directory on a clock the test moves,
// and small packages made in code (an index → one image manifest → config and layers, and a
// release referrer of the index).

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/digest.hpp"
#include "core/time.hpp"
#include "gateway/cache.hpp"
#include "support/test_support.hpp"

namespace airlock::gateway {

inline constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kReleaseType[] = "application/vnd.airlock.release.v1+json";

// A clock that moves only when the test says so.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return now_; }
  void Advance(std::chrono::seconds d) { now_ += d; }

 private:
  TimePoint now_ = TimePoint(std::chrono::seconds(1'800'000'000));
};

inline nlohmann::json Descriptor(std::string_view media_type, std::string_view bytes) {
  return {
      {"mediaType", media_type}, {"digest", Sha256Of(bytes).ToString()}, {"size", bytes.size()}};
}

// A package made in code: its manifests, its blobs, and a spec to declare it with.
struct TestPackage {
  PackageSpec spec{{}, Sha256Of(""), {}, ""};
  std::string index;     // the tagged image index
  std::string manifest;  // its one image manifest
  std::string release_manifest;
  std::vector<std::string> blobs;  // config, layers, release document: what must be committed
};

// blobs[0] is the config, the rest layers. The release document is a blob too (the referrer's
// layer), with the referrer's empty config "{}".
inline TestPackage MakePackage(const std::string& repository, const std::string& tag,
                               const std::vector<std::string>& blobs) {
  TestPackage p;
  nlohmann::json layers = nlohmann::json::array();
  for (std::size_t i = 1; i < blobs.size(); ++i) {
    layers.push_back(Descriptor("application/vnd.cncf.model.weight.v1.raw", blobs[i]));
  }
  p.manifest = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", kManifestType},
      {"artifactType", "application/vnd.cncf.model.manifest.v1+json"},
      {"config", Descriptor("application/vnd.cncf.model.config.v1+json", blobs.at(0))},
      {"layers",
       layers}}.dump();
  nlohmann::json variant = Descriptor(kManifestType, p.manifest);
  variant["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  p.index = nlohmann::json{{"schemaVersion", 2},
                           {"mediaType", kIndexType},
                           {"manifests", nlohmann::json::array({variant})}}
                .dump();
  std::string release_doc =
      R"({"signed":{"model":")" + repository + R"(","version":")" + tag + R"("},"signatures":[]})";
  p.release_manifest =
      nlohmann::json{{"schemaVersion", 2},
                     {"mediaType", kManifestType},
                     {"artifactType", kReleaseType},
                     {"config", Descriptor("application/vnd.oci.empty.v1+json", "{}")},
                     {"layers", nlohmann::json::array({Descriptor(kReleaseType, release_doc)})},
                     {"subject", Descriptor(kIndexType, p.index)},
                     {"annotations", {{"ai.airlock.model", repository}}}}
          .dump();
  p.blobs = blobs;
  p.blobs.push_back("{}");
  p.blobs.push_back(release_doc);
  p.spec = PackageSpec{
      {repository, tag}, Sha256Of(p.index), {p.index, p.manifest, p.release_manifest}, release_doc};
  return p;
}

class CacheFixture : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Opens the cache (again: as a restarted gateway would).
  void Reopen(std::uint64_t max_bytes = 1000) {
    cache_.reset();
    max_bytes_ = max_bytes;
    CacheOptions options;
    options.max_bytes = max_bytes;
    options.access_flush_interval = std::chrono::seconds(0);
    auto c = GatewayCache::Open(dir_.path() / "cache", options, clock_);
    ASSERT_TRUE(c) << c.error().ToString();
    cache_ = std::move(*c);
  }

  // Downloads bytes into the cache in one piece and commits them.
  Status Put(const std::string& bytes) {
    AIRLOCK_ASSIGN_OR_RETURN(BlobDownload d, cache_->BeginBlob(Sha256Of(bytes), bytes.size()));
    AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t offset, d.offset());
    auto appended = d.Append(offset, std::string_view(bytes).substr(offset));
    if (!appended) {
      return Fail(std::move(appended.error()));
    }
    return d.Commit();
  }

  // Declares, downloads (what is not cached yet) and completes a package.
  void Deliver(const TestPackage& p) {
    ASSERT_TRUE(cache_->DeclarePackage(p.spec));
    for (const std::string& b : p.blobs) {
      if (!cache_->HasBlob(Sha256Of(b))) {
        Status put = Put(b);
        ASSERT_TRUE(put) << put.error().ToString();
      }
    }
    Status done = cache_->CompletePackage(p.spec.ref);
    ASSERT_TRUE(done) << done.error().ToString();
  }

  std::vector<std::string> FilesUnder(const std::filesystem::path& dir) const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
      if (e.is_regular_file()) {
        out.push_back(std::filesystem::relative(e.path(), dir).string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  airlock::testing::TempDir dir_;
  ManualClock clock_;
  std::uint64_t max_bytes_ = 0;
  std::unique_ptr<GatewayCache> cache_;
};

}  // namespace airlock::gateway
