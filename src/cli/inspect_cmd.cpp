// airlock inspect.

#include <cstdio>
#include <set>

#include "cli/common.hpp"
#include "pkg/layout.hpp"
#include "pkg/lineage.hpp"
#include "pkg/package.hpp"
#include "pkg/samples.hpp"
#include "runtime/tensor.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::cli {

namespace {

using nlohmann::json;

// Everything inspect shows, as JSON; the human form is printed from it.
Result<json> Describe(const std::string& path, const std::string& ref) {
  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(path));
  AIRLOCK_ASSIGN_OR_RETURN(pkg::Package p, pkg::LoadPackage(*reader, ref));
  json out = {{"path", path},
              {"name", p.name()},
              {"version", p.version()},
              {"ref", p.ref},
              {"index", p.index_descriptor.ToJson()},
              {"created", p.index.Annotation(pkg::annotation::kCreated)},
              {"variants", json::array()}};
  // A malformed lineage is reported, not fatal: the package itself is still usable.
  if (auto lineage = pkg::Lineage::FromAnnotations(p.index.annotations); !lineage) {
    out["lineage_error"] = lineage.error().message();
  } else if (*lineage) {
    out["lineage"] = (*lineage)->ToJson();
  }
  for (const auto& v : p.variants) {
    json layers = json::array();
    for (const auto& l : v.manifest.layers) {
      layers.push_back(l.ToJson());
    }
    out["variants"].push_back({{"platform", v.platform.ToString()},
                               {"manifest", v.descriptor.ToJson()},
                               {"config", v.config},
                               {"layers", layers}});
  }
  const pkg::Variant& first = p.variants.front();
  if (auto layers = first.Layers(pkg::media::kPipeline); !layers.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader->ReadBlob(*layers.front()));
    AIRLOCK_ASSIGN_OR_RETURN(json pipeline, trust::ParseJson(bytes, pkg::kMaxJsonBlob, "pipeline"));
    out["pipeline"] = pipeline;
    if (pipeline.contains("signature")) {
      auto sig = runtime::ModelSignature::FromJson(pipeline["signature"]);
      if (sig) {
        out["signature"] = sig->ToJson();
      } else {
        out["signature_error"] = sig.error().message();
      }
    }
  }
  if (auto layers = first.Layers(pkg::media::kSamples); !layers.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader->ReadBlob(*layers.front(), 1ULL << 30));
    AIRLOCK_ASSIGN_OR_RETURN(pkg::Samples samples, pkg::ParseSamplesLayer(bytes));
    json sets = json::array();
    for (const auto& s : samples.sets) {
      sets.push_back(s.name);
    }
    out["samples"] = {
        {"sets", sets},
        {"tolerance", {{"rtol", samples.tolerance.rtol}, {"atol", samples.tolerance.atol}}}};
  }
  if (auto layers = first.Layers(pkg::media::kBaseline); !layers.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, reader->ReadBlob(*layers.front()));
    AIRLOCK_ASSIGN_OR_RETURN(json baseline, trust::ParseJson(bytes, pkg::kMaxJsonBlob, "baseline"));
    json features = json::array();
    if (baseline.contains("features") && baseline["features"].is_array()) {
      for (const auto& f : baseline["features"]) {
        features.push_back(trust::StringOr(f, "name"));
      }
    }
    out["baseline"] = {{"count", trust::IntOr(baseline, "count")}, {"features", features}};
    if (baseline.contains("predictions")) {
      out["baseline"]["predictions"] = trust::StringOr(baseline["predictions"], "kind");
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto release, pkg::FindRelease(*reader, p.index_descriptor));
  if (release) {
    json keyids = json::array();
    for (const auto& s : release->signatures()) {
      keyids.push_back(s.keyid);
    }
    out["release"] = {{"signed", release->body()}, {"signed_by", keyids}};
  }
  return out;
}

std::string Short(const std::string& digest) { return digest.substr(0, 19) + "…"; }

void PrintHuman(const json& d) {
  std::printf("%s %s\n", d["name"].get<std::string>().c_str(),
              d["version"].get<std::string>().c_str());
  std::printf("  package    %s (ref %s)\n", d["path"].get<std::string>().c_str(),
              d["ref"].get<std::string>().c_str());
  std::printf("  index      %s  %s\n", d["index"]["digest"].get<std::string>().c_str(),
              HumanBytes(d["index"]["size"]).c_str());
  if (!d["created"].get<std::string>().empty()) {
    std::printf("  created    %s\n", d["created"].get<std::string>().c_str());
  }
  const json& first = d["variants"][0];
  if (first["config"].contains("descriptor")) {
    std::string about = trust::StringOr(first["config"]["descriptor"], "description");
    if (!about.empty()) {
      std::printf("  about      %s\n", about.c_str());
    }
  }
  std::printf("  platforms\n");
  for (const auto& v : d["variants"]) {
    std::printf(
        "    %-16s %-6s manifest %s\n", v["platform"].get<std::string>().c_str(),
        trust::StringOr(v["manifest"]["annotations"], pkg::annotation::kPrecision).c_str(),
        Short(v["manifest"]["digest"]).c_str());
  }
  std::printf("  layers (%s)\n", first["platform"].get<std::string>().c_str());
  for (const auto& l : first["layers"]) {
    std::string mt = l["mediaType"];
    std::string kind = mt == pkg::media::kModelWeight ? "model"
                       : mt == pkg::media::kPipeline  ? "pipeline"
                       : mt == pkg::media::kBaseline  ? "baseline"
                       : mt == pkg::media::kSamples   ? "samples"
                       : mt == pkg::media::kModelDoc  ? "card"
                                                      : mt;
    std::printf("    %-9s %-20s %10s  %s\n", kind.c_str(),
                trust::StringOr(l["annotations"], pkg::annotation::kFilepath).c_str(),
                HumanBytes(l["size"]).c_str(), Short(l["digest"]).c_str());
  }
  if (d.contains("signature_error")) {
    std::printf("  signature  unreadable: %s\n", d["signature_error"].get<std::string>().c_str());
  }
  if (d.contains("signature")) {  // validated by ModelSignature::FromJson in Describe
    for (const char* side : {"inputs", "outputs"}) {
      std::printf("  %s\n", side);
      for (const auto& t : d["signature"][side]) {
        std::string shape = "[";
        for (std::size_t i = 0; i < t["shape"].size(); ++i) {
          std::int64_t dim = t["shape"][i];
          std::string named = t.contains("dim_names") ? t["dim_names"][i].get<std::string>() : "";
          shape += (i ? "," : "") + (dim >= 0 ? std::to_string(dim) : named.empty() ? "?" : named);
        }
        shape += "]";
        std::printf("    %-20s %-6s %s\n", t["name"].get<std::string>().c_str(),
                    t["datatype"].get<std::string>().c_str(), shape.c_str());
      }
    }
  }
  if (d.contains("samples")) {
    std::printf("  samples    %zu set(s), rtol %g, atol %g\n", d["samples"]["sets"].size(),
                d["samples"]["tolerance"]["rtol"].get<double>(),
                d["samples"]["tolerance"]["atol"].get<double>());
  }
  if (d.contains("baseline")) {
    std::printf("  baseline   %zu feature(s) over %lld examples%s\n",
                d["baseline"]["features"].size(),
                static_cast<long long>(d["baseline"]["count"].get<std::int64_t>()),
                d["baseline"].contains("predictions")
                    ? (", predictions: " + d["baseline"]["predictions"].get<std::string>()).c_str()
                    : "");
  }
  if (d.contains("lineage_error")) {
    std::printf("  lineage    unreadable: %s\n", d["lineage_error"].get<std::string>().c_str());
  }
  if (d.contains("lineage")) {
    const json& l = d["lineage"];
    std::printf("  lineage\n");
    for (auto [key, label] :
         {std::pair{"training_run", "training run"}, std::pair{"dataset_digest", "dataset"},
          std::pair{"source_revision", "source revision"}}) {
      if (l.contains(key)) {
        std::printf("    %-16s %s\n", label, l[key].get<std::string>().c_str());
      }
    }
    if (l.contains("metrics")) {
      std::printf("    metrics\n");
      for (const auto& [name, value] : l["metrics"].items()) {
        std::printf("      %-20s %s\n", name.c_str(), value.dump().c_str());
      }
    }
  }
  if (d.contains("release")) {
    const json& r = d["release"]["signed"];
    std::printf("  release    counter %lld, created %s, expires %s\n",
                static_cast<long long>(trust::IntOr(r, "release_counter")),
                trust::StringOr(r, "created").c_str(), trust::StringOr(r, "expires").c_str());
    for (const auto& k : d["release"]["signed_by"]) {
      std::printf("    signed by %s\n", k.get<std::string>().c_str());
    }
  } else {
    std::printf("  release    none (unsigned: run airlock sign)\n");
  }
}

}  // namespace

void AddInspect(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand("inspect", "Show what a package holds");
  auto path = std::make_shared<std::string>();
  auto ref = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("package", *path, "package directory or .tar")->required();
  cmd->add_option("--ref", *ref, "which package in the layout (its version tag)");
  cmd->add_flag("--json", *as_json, "print JSON");
  cmd->callback([&action, path, ref, as_json] {
    action = [path, ref, as_json]() -> int {
      auto d = Describe(*path, *ref);
      if (!d) {
        return ReportError(d.error(), ExitCodeFor(d.error()));
      }
      if (*as_json) {
        std::printf("%s\n", d->dump(2).c_str());
      } else {
        PrintHuman(*d);
      }
      return kExitOk;
    };
  });
}

}  // namespace airlock::cli
