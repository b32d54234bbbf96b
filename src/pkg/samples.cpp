#include "pkg/samples.hpp"

#include <algorithm>
#include <cmath>
#include <regex>

#include "core/text.hpp"
#include "pkg/tar.hpp"
#include "runtime/npy.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace fs = std::filesystem;
using nlohmann::json;
using runtime::Tensor;

Status BindToSignature(SampleSet& set, const runtime::ModelSignature& sig) {
  auto bind = [&](std::vector<Tensor>& tensors, const std::vector<runtime::TensorSpec>& specs,
                  const char* side) -> Status {
    if (tensors.size() > specs.size()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "sample " + set.name + " has " + std::to_string(tensors.size()) + " " + side +
                      "s, the model has " + std::to_string(specs.size()));
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      Tensor& t = tensors[i];
      if (t.name.empty()) {
        t.name = specs[i].name;
      }
      auto spec = std::find_if(specs.begin(), specs.end(),
                               [&](const runtime::TensorSpec& s) { return s.name == t.name; });
      if (spec == specs.end()) {
        std::vector<std::string> names;
        for (const auto& s : specs) {
          names.push_back(s.name);
        }
        return Fail(ErrorCode::kInvalidArgument,
                    "sample " + set.name + " names " + side + " \"" + t.name +
                        "\", which the model does not have (it has " + Join(names) + ")");
      }
      auto ok = CheckAgainstSpec(t, *spec);
      if (!ok && std::string(side) == "input") {
        return Fail(std::move(ok.error()).WithContext("sample " + set.name));
      }
    }
    return {};
  };
  AIRLOCK_RETURN_IF_ERROR(bind(set.inputs, sig.inputs, "input"));
  AIRLOCK_RETURN_IF_ERROR(bind(set.outputs, sig.outputs, "output"));
  for (const auto& spec : sig.inputs) {
    bool found = std::any_of(set.inputs.begin(), set.inputs.end(),
                             [&](const Tensor& t) { return t.name == spec.name; });
    if (!found) {
      return Fail(ErrorCode::kInvalidArgument,
                  "sample " + set.name + " lacks input \"" + spec.name + "\"");
    }
  }
  return {};
}

Result<std::vector<SampleOutcome>> RunSamples(runtime::InferenceBackend& model,
                                              const Samples& samples) {
  std::vector<SampleOutcome> out;
  for (const auto& set : samples.sets) {
    auto result = model.Run(set.inputs);
    if (!result) {
      return Fail(std::move(result.error()).WithContext("sample " + set.name));
    }
    SampleOutcome outcome{set.name, 0};
    for (const auto& expected : set.outputs) {
      auto actual = std::find_if(result->begin(), result->end(),
                                 [&](const Tensor& t) { return t.name == expected.name; });
      if (actual == result->end()) {
        return Fail(ErrorCode::kMismatch,
                    "sample " + set.name + ": the model gave no output \"" + expected.name + "\"");
      }
      auto cmp = CompareTensors(expected, *actual, samples.tolerance);
      if (!cmp) {
        return Fail(std::move(cmp.error()).WithContext("sample " + set.name));
      }
      if (runtime::IsFloating(expected.dtype)) {
        for (std::int64_t i = 0; i < expected.ElementCount(); ++i) {
          double d = std::fabs(expected.ValueAsDouble(i) - actual->ValueAsDouble(i));
          if (std::isfinite(d)) {
            outcome.max_abs_error = std::max(outcome.max_abs_error, d);
          }
        }
      }
    }
    out.push_back(outcome);
  }
  return out;
}

Result<std::string> BuildSamplesLayer(const Samples& samples) {
  TarWriter tar(nullptr);
  json sets = json::array();
  // Entries are written in a fixed order (samples.json last) so the layer is reproducible.
  for (std::size_t i = 0; i < samples.sets.size(); ++i) {
    const SampleSet& set = samples.sets[i];
    std::string dir = std::to_string(i);
    AIRLOCK_RETURN_IF_ERROR(tar.AddDirectory(dir));
    json entry = {{"name", set.name}, {"inputs", json::array()}, {"outputs", json::array()}};
    for (const char* side : {"input", "output"}) {
      const auto& tensors = std::string(side) == "input" ? set.inputs : set.outputs;
      for (std::size_t k = 0; k < tensors.size(); ++k) {
        std::string file = dir + "/" + side + "_" + std::to_string(k) + ".npy";
        AIRLOCK_ASSIGN_OR_RETURN(std::string npy, runtime::SerializeNpy(tensors[k]));
        AIRLOCK_RETURN_IF_ERROR(tar.AddBytes(file, npy));
        entry[std::string(side) + "s"].push_back({{"name", tensors[k].name}, {"file", file}});
      }
    }
    sets.push_back(std::move(entry));
  }
  json index = {{"schema", "airlock.samples.v1"},
                {"tolerance", {{"rtol", samples.tolerance.rtol}, {"atol", samples.tolerance.atol}}},
                {"sets", sets}};
  AIRLOCK_RETURN_IF_ERROR(tar.AddBytes("samples.json", index.dump(2) + "\n"));
  AIRLOCK_RETURN_IF_ERROR(tar.Finish());
  return tar.bytes();
}

Result<Samples> ParseSamplesLayer(std::string_view bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(auto entries, IndexTar(bytes));
  auto file = [&](const std::string& name) -> Result<std::string_view> {
    auto it = entries.find(name);
    if (it == entries.end()) {
      return Fail(ErrorCode::kCorrupt, "samples layer lacks " + name);
    }
    return bytes.substr(it->second.offset, it->second.size);
  };
  AIRLOCK_ASSIGN_OR_RETURN(std::string_view index_text, file("samples.json"));
  AIRLOCK_ASSIGN_OR_RETURN(json index, trust::ParseJson(index_text, 1 << 20, "samples.json"));
  if (!index.is_object() || trust::StringOr(index, "schema") != "airlock.samples.v1" ||
      !index.contains("sets") || !index["sets"].is_array()) {
    return Fail(ErrorCode::kCorrupt, "samples.json is not an airlock.samples.v1 document");
  }
  Samples samples;
  if (index.contains("tolerance") && index["tolerance"].is_object()) {
    for (const char* k : {"rtol", "atol"}) {
      const auto& t = index["tolerance"];
      if (t.contains(k) && t[k].is_number()) {
        (std::string(k) == "rtol" ? samples.tolerance.rtol : samples.tolerance.atol) =
            t[k].get<double>();
      }
    }
  }
  for (const auto& s : index["sets"]) {
    SampleSet set;
    set.name = trust::StringOr(s, "name");
    for (const char* side : {"inputs", "outputs"}) {
      if (!s.contains(side) || !s[side].is_array()) {
        return Fail(ErrorCode::kCorrupt, "samples.json set " + set.name + " lacks " + side);
      }
      for (const auto& t : s[side]) {
        if (!t.is_object() || !t.contains("file") || !t["file"].is_string()) {
          return Fail(ErrorCode::kCorrupt, "samples.json entry without a file");
        }
        AIRLOCK_ASSIGN_OR_RETURN(std::string_view npy, file(t["file"].get<std::string>()));
        AIRLOCK_ASSIGN_OR_RETURN(Tensor tensor, runtime::ParseNpy(npy, trust::StringOr(t, "name")));
        (std::string(side) == "inputs" ? set.inputs : set.outputs).push_back(std::move(tensor));
      }
    }
    samples.sets.push_back(std::move(set));
  }
  return samples;
}

}  // namespace airlock::pkg
