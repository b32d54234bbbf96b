// Micro-benchmarks of the primitives every package operation leans on: SHA-256 (digests of every
// blob), Ed25519 (release, channel and directive signatures) and canonical JSON (the bytes those
// signatures cover). Figures and how to run them: bench/README.md.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/digest.hpp"
#include "core/keys.hpp"
#include "trust/canonical_json.hpp"

namespace airlock {
namespace {

std::string RandomBytes(std::size_t n) {
  std::mt19937_64 rng(42);
  std::string s(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

// SHA-256 over a buffer in memory, fed in one Update (small sizes show the per-call cost).
void BM_Sha256(benchmark::State& state) {
  std::string data = RandomBytes(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    Sha256 h;
    h.Update(data);
    benchmark::DoNotOptimize(h.Finish());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Sha256)->Arg(1 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20);

// HashFile on a file in the page cache: SHA-256 plus read(2) in 1 MiB chunks, as pack does.
void BM_HashFile(benchmark::State& state) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "airlock-bench-XXXXXX").string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    state.SkipWithError("mkstemp failed");
    return;
  }
  ::close(fd);
  {
    std::ofstream out(tmpl, std::ios::binary);
    out << RandomBytes(static_cast<std::size_t>(state.range(0)));
  }
  for (auto _ : state) {
    auto d = HashFile(tmpl);
    if (!d) {
      state.SkipWithError(d.error().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(d->digest);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  std::filesystem::remove(tmpl);
}
BENCHMARK(BM_HashFile)->Arg(256 << 20)->Unit(benchmark::kMillisecond);

// A release document's signed body is about 600 bytes.
void BM_Ed25519Sign(benchmark::State& state) {
  auto key = PrivateKey::Generate();
  if (!key) {
    state.SkipWithError(key.error().ToString().c_str());
    return;
  }
  std::string message = RandomBytes(600);
  for (auto _ : state) {
    benchmark::DoNotOptimize(key->Sign(message));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Ed25519Sign);

void BM_Ed25519Verify(benchmark::State& state) {
  auto key = PrivateKey::Generate();
  if (!key) {
    state.SkipWithError(key.error().ToString().c_str());
    return;
  }
  std::string message = RandomBytes(600);
  std::string signature = key->Sign(message).value();
  for (auto _ : state) {
    bool ok = key->public_key().Verify(message, signature);
    if (!ok) {
      state.SkipWithError("a good signature did not verify");
      break;
    }
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Ed25519Verify);

// A release-shaped document: what is canonicalised on every sign and verify.
nlohmann::json ReleaseLike() {
  nlohmann::json platforms = nlohmann::json::array();
  for (const char* p : {"linux/amd64", "linux/arm64", "linux/arm/v7"}) {
    platforms.push_back(p);
  }
  return {{"signed",
           {{"_type", "release"},
            {"spec_version", 1},
            {"model", "defect-detector"},
            {"version", "2.4.1"},
            {"release_counter", 42},
            {"created", "2026-01-01T00:00:00Z"},
            {"expires", "2027-01-01T00:00:00Z"},
            {"platforms", platforms},
            {"index",
             {{"mediaType", "application/vnd.oci.image.index.v1+json"},
              {"digest", "sha256:" + std::string(64, 'a')},
              {"size", 1234}}}}},
          {"signatures",
           {{{"keyid", std::string(64, 'b')}, {"sig", std::string(88, 'c')}},
            {{"keyid", std::string(64, 'd')}, {"sig", std::string(88, 'e')}}}}};
}

void BM_Canonicalize(benchmark::State& state) {
  nlohmann::json doc = ReleaseLike();
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto text = trust::Canonicalize(doc);
    if (!text) {
      state.SkipWithError(text.error().ToString().c_str());
      break;
    }
    bytes = text->size();
    benchmark::DoNotOptimize(*text);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_Canonicalize);

void BM_ParseJson(benchmark::State& state) {
  std::string text = *trust::Canonicalize(ReleaseLike());
  for (auto _ : state) {
    auto doc = trust::ParseJson(text, 1 << 20, "release");
    if (!doc) {
      state.SkipWithError(doc.error().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(*doc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseJson);

}  // namespace
}  // namespace airlock

BENCHMARK_MAIN();
