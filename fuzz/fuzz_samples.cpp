// Fuzzes pkg::ParseSamplesLayer: a tar holding samples.json and .npy files, from a package.
//
// Header checksums are repaired first (tar_repair.hpp; fuzz_tar covers checksums) so that
// mutations reach samples.json and the .npy files.
//
// Properties of an accepted layer: every tensor is consistent with its shape, and building a
// layer from the samples and parsing it again gives the same samples.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pkg/samples.hpp"
#include "property.hpp"
#include "tar_repair.hpp"

namespace {

using airlock::runtime::Tensor;

bool SameTensors(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].dtype != b[i].dtype || a[i].shape != b[i].shape ||
        a[i].data != b[i].data || a[i].strings != b[i].strings) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  airlock::fuzz::RepairTarChecksums(bytes);
  auto samples = airlock::pkg::ParseSamplesLayer(bytes);
  if (!samples) {
    return 0;
  }
  for (const auto& set : samples->sets) {
    for (const auto* side : {&set.inputs, &set.outputs}) {
      for (const Tensor& t : *side) {
        AIRLOCK_FUZZ_REQUIRE(t.CheckConsistent());
      }
    }
  }
  auto layer = airlock::pkg::BuildSamplesLayer(*samples);
  AIRLOCK_FUZZ_REQUIRE(layer);
  auto again = airlock::pkg::ParseSamplesLayer(*layer);
  AIRLOCK_FUZZ_REQUIRE(again);
  AIRLOCK_FUZZ_REQUIRE(again->sets.size() == samples->sets.size());
  AIRLOCK_FUZZ_REQUIRE(again->tolerance.rtol == samples->tolerance.rtol &&
                       again->tolerance.atol == samples->tolerance.atol);
  for (std::size_t i = 0; i < samples->sets.size(); ++i) {
    AIRLOCK_FUZZ_REQUIRE(again->sets[i].name == samples->sets[i].name);
    AIRLOCK_FUZZ_REQUIRE(SameTensors(again->sets[i].inputs, samples->sets[i].inputs));
    AIRLOCK_FUZZ_REQUIRE(SameTensors(again->sets[i].outputs, samples->sets[i].outputs));
  }
  return 0;
}
