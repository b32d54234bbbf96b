#include "pkg/pack.hpp"

#include <map>
#include <regex>
#include <set>

#include "core/digest.hpp"
#include "core/fs.hpp"
#include "core/names.hpp"
#include "core/time.hpp"
#include "core/yaml.hpp"
#include "pkg/layout.hpp"
#include "pkg/onnx_model.hpp"
#include "pkg/tar.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::pkg {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

Error SpecError(const std::string& origin, const std::string& msg) {
  return Error(ErrorCode::kInvalidArgument, origin + ": " + msg);
}

Result<std::vector<std::string>> StringList(const json& doc, const char* key,
                                            const std::string& origin) {
  std::vector<std::string> out;
  if (!doc.contains(key) || doc[key].is_null()) {
    return out;
  }
  const json& v = doc[key];
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
    return out;
  }
  if (!v.is_array()) {
    return Fail(
        SpecError(origin, std::string("\"") + key + "\" must be a string or a list of strings"));
  }
  for (const auto& item : v) {
    if (!item.is_string()) {
      return Fail(SpecError(origin, std::string("\"") + key + "\" must list strings"));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::string ScalarString(const json& doc, const char* key) {
  if (!doc.contains(key) || doc[key].is_null()) {
    return "";
  }
  const json& v = doc[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

Result<std::vector<ModelFile>> ModelFiles(const json& files, const fs::path& base,
                                          const std::string& origin) {
  std::vector<ModelFile> out;
  std::vector<std::string> names;
  if (files.is_string()) {
    names.push_back(files.get<std::string>());
  } else if (files.is_array()) {
    for (const auto& f : files) {
      if (!f.is_string()) {
        return Fail(SpecError(origin, "model files must be strings"));
      }
      names.push_back(f.get<std::string>());
    }
  } else {
    return Fail(SpecError(origin, "model \"files\" must be a path or a list of paths"));
  }
  for (const auto& n : names) {
    fs::path p(n);
    ModelFile mf;
    mf.source = p.is_absolute() ? p : base / p;
    // Inside the package a file keeps its path relative to airlock.yaml, so that external data
    // files stay where the model expects them; absolute paths keep only the file name.
    auto rel =
        CheckRelativePath(p.is_absolute() ? p.filename().string() : p.lexically_normal().string());
    if (!rel) {
      return Fail(SpecError(origin, "model file " + n + ": " + rel.error().message()));
    }
    mf.filepath = *rel;
    out.push_back(std::move(mf));
  }
  return out;
}

Result<runtime::Tensor> LoadSampleTensor(const std::string& name, const json& file,
                                         const fs::path& base, const std::string& origin) {
  if (!file.is_string()) {
    return Fail(SpecError(origin, "sample tensor " + name + " must name a .npy or .pb file"));
  }
  fs::path p(file.get<std::string>());
  return LoadTensorFile(p.is_absolute() ? p : base / p, name);
}

Result<Samples> LoadSamples(const json& doc, const fs::path& base, const std::string& origin) {
  Samples samples;
  if (!doc.contains("samples") || doc["samples"].is_null()) {
    return samples;
  }
  const json& s = doc["samples"];
  if (!s.is_object()) {
    return Fail(SpecError(origin, "\"samples\" must be a mapping with sets, dir and tolerance"));
  }
  if (s.contains("tolerance")) {
    const json& t = s["tolerance"];
    if (!t.is_object()) {
      return Fail(SpecError(origin, "samples.tolerance must be {rtol: …, atol: …}"));
    }
    for (const char* k : {"rtol", "atol"}) {
      if (t.contains(k)) {
        if (!t[k].is_number() || t[k].get<double>() < 0) {
          return Fail(SpecError(
              origin, std::string("samples.tolerance.") + k + " must be a non-negative number"));
        }
        (std::string(k) == "rtol" ? samples.tolerance.rtol : samples.tolerance.atol) =
            t[k].get<double>();
      }
    }
  }
  if (s.contains("dir")) {
    fs::path dir(ScalarString(s, "dir"));
    AIRLOCK_ASSIGN_OR_RETURN(auto sets, LoadOnnxTestData(dir.is_absolute() ? dir : base / dir));
    for (auto& set : sets) {
      samples.sets.push_back(std::move(set));
    }
  }
  if (s.contains("sets")) {
    if (!s["sets"].is_array()) {
      return Fail(SpecError(origin, "samples.sets must be a list"));
    }
    int i = 0;
    for (const auto& entry : s["sets"]) {
      SampleSet set;
      set.name = entry.contains("name") ? ScalarString(entry, "name") : std::to_string(i);
      ++i;
      for (const char* side : {"inputs", "outputs"}) {
        if (!entry.contains(side) || !entry[side].is_object()) {
          return Fail(SpecError(
              origin, "sample set " + set.name + " needs \"" + side + "\": {tensor name: file}"));
        }
        for (const auto& [name, file] : entry[side].items()) {
          AIRLOCK_ASSIGN_OR_RETURN(runtime::Tensor t, LoadSampleTensor(name, file, base, origin));
          (std::string(side) == "inputs" ? set.inputs : set.outputs).push_back(std::move(t));
        }
      }
      samples.sets.push_back(std::move(set));
    }
  }
  return samples;
}

Status ValidatePipeline(const json& p) {
  if (!p.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "pipeline must be a mapping");
  }
  for (const char* side : {"preprocess", "postprocess"}) {
    if (!p.contains(side)) {
      continue;
    }
    if (!p[side].is_array()) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("pipeline.") + side + " must be a list of steps");
    }
    for (const auto& step : p[side]) {
      if (!step.is_object() || !step.contains("op") || !step["op"].is_string()) {
        return Fail(ErrorCode::kInvalidArgument,
                    std::string("every pipeline.") + side + " step needs an \"op\"");
      }
    }
  }
  return {};
}

// Errors about a staged copy should name the file the user gave.
template <typename T>
Result<T> ShowAs(Result<T> r, const fs::path& staged, const fs::path& source) {
  if (r) {
    return r;
  }
  std::string msg = r.error().message();
  for (auto at = msg.find(staged.string()); at != std::string::npos;
       at = msg.find(staged.string(), at + source.string().size())) {
    msg.replace(at, staged.string().size(), source.string());
  }
  return Fail(r.error().code(), msg);
}

// The staged copies of one platform's model files.
struct StagedFiles {
  std::vector<fs::path> paths;  // in the order of PlatformSpec::files; the first is the model
  std::vector<Descriptor> layers;
};

// A small layer waiting to be written, with its bytes.
struct PendingLayer {
  Descriptor descriptor;
  std::string bytes;
};

}  // namespace

Result<PackSpec> PackSpecFromJson(const json& doc, const fs::path& base,
                                  const std::string& origin) {
  if (!doc.is_object()) {
    return Fail(SpecError(origin, "expected a mapping at the top"));
  }
  PackSpec spec;
  for (auto [key, field] :
       {std::pair{"name", &spec.name}, std::pair{"version", &spec.version},
        std::pair{"revision", &spec.revision}, std::pair{"created", &spec.created}}) {
    // YAML reads `version: 1.10` as the number 1.1: refuse rather than change what was written.
    if (doc.contains(key) && doc[key].is_number_float()) {
      return Fail(SpecError(origin, std::string(key) + " reads as the number " + doc[key].dump() +
                                        "; put it in quotes to keep it as written (" + key +
                                        ": \"…\")"));
    }
    *field = ScalarString(doc, key);
  }
  spec.description = ScalarString(doc, "description");
  if (doc.contains("min_runtime")) {
    spec.min_runtime = ScalarString(doc, "min_runtime");
  }
  AIRLOCK_ASSIGN_OR_RETURN(spec.authors, StringList(doc, "authors", origin));
  AIRLOCK_ASSIGN_OR_RETURN(spec.licenses, StringList(doc, "licenses", origin));
  if (doc.contains("annotations") && doc["annotations"].is_object()) {
    for (const auto& [k, v] : doc["annotations"].items()) {
      spec.annotations[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
  }
  std::vector<ModelFile> default_files;
  std::string default_precision = "fp32";
  if (doc.contains("model")) {
    const json& m = doc["model"];
    if (m.is_string() || m.is_array()) {
      AIRLOCK_ASSIGN_OR_RETURN(default_files, ModelFiles(m, base, origin));
    } else if (m.is_object()) {
      if (m.contains("files")) {
        AIRLOCK_ASSIGN_OR_RETURN(default_files, ModelFiles(m["files"], base, origin));
      }
      if (m.contains("precision")) {
        default_precision = ScalarString(m, "precision");
      }
    } else {
      return Fail(SpecError(origin, "\"model\" must be a path or {files: […], precision: …}"));
    }
  }
  if (doc.contains("platforms")) {
    if (!doc["platforms"].is_array()) {
      return Fail(SpecError(origin, "\"platforms\" must be a list"));
    }
    for (const auto& p : doc["platforms"]) {
      PlatformSpec ps;
      ps.files = default_files;
      ps.precision = default_precision;
      std::string text;
      if (p.is_string()) {
        text = p.get<std::string>();
      } else if (p.is_object() && p.contains("platform")) {
        text = ScalarString(p, "platform");
        if (p.contains("files")) {
          AIRLOCK_ASSIGN_OR_RETURN(ps.files, ModelFiles(p["files"], base, origin));
        }
        if (p.contains("precision")) {
          ps.precision = ScalarString(p, "precision");
        }
      } else {
        return Fail(
            SpecError(origin, "each platform is \"os/arch\" or {platform, files, precision}"));
      }
      auto parsed = Platform::Parse(text);
      if (!parsed) {
        return Fail(SpecError(origin, parsed.error().message()));
      }
      ps.platform = *parsed;
      spec.platforms.push_back(std::move(ps));
    }
  } else if (!default_files.empty()) {
    spec.platforms.push_back({Platform{"linux", "amd64", ""}, default_files, default_precision});
  }
  if (doc.contains("pipeline") && !doc["pipeline"].is_null()) {
    const json& p = doc["pipeline"];
    if (p.is_string()) {
      fs::path pp(p.get<std::string>());
      pp = pp.is_absolute() ? pp : base / pp;
      AIRLOCK_ASSIGN_OR_RETURN(spec.pipeline, LoadYamlFile(pp));
    } else {
      spec.pipeline = p;
    }
  }
  for (const char* key : {"baseline", "card"}) {
    if (doc.contains(key) && !doc[key].is_null()) {
      fs::path p(ScalarString(doc, key));
      (std::string(key) == "baseline" ? spec.baseline : spec.card) = p.is_absolute() ? p : base / p;
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(spec.samples, LoadSamples(doc, base, origin));
  if (doc.contains("lineage") && !doc["lineage"].is_null()) {
    AIRLOCK_ASSIGN_OR_RETURN(spec.lineage, Lineage::FromSpec(doc["lineage"], origin));
  }
  return spec;
}

Result<PackSpec> LoadPackSpec(const fs::path& yaml_path) {
  AIRLOCK_ASSIGN_OR_RETURN(json doc, LoadYamlFile(yaml_path));
  fs::path base = yaml_path.parent_path().empty() ? fs::path(".") : yaml_path.parent_path();
  return PackSpecFromJson(doc, base, yaml_path.string());
}

Status ApplyLineageOverrides(const LineageOverrides& overrides, PackSpec& spec) {
  if (overrides.empty()) {
    return {};
  }
  Lineage lineage = spec.lineage.value_or(Lineage{});
  if (overrides.training_run) {
    lineage.training_run = *overrides.training_run;
  }
  if (overrides.dataset_digest) {
    AIRLOCK_RETURN_IF_ERROR(CheckDatasetDigest(*overrides.dataset_digest, "--dataset-digest"));
    lineage.dataset_digest = *overrides.dataset_digest;
  }
  if (overrides.source_revision) {
    lineage.source_revision = *overrides.source_revision;
  }
  for (const auto& m : overrides.metrics) {
    AIRLOCK_ASSIGN_OR_RETURN(auto metric, ParseMetric(m));
    lineage.metrics[metric.first] = std::move(metric.second);
  }
  spec.lineage = std::move(lineage);
  return {};
}

std::optional<Lineage> EffectiveLineage(const PackSpec& spec) {
  if (!spec.lineage) {
    return std::nullopt;
  }
  Lineage lineage = *spec.lineage;
  if (lineage.source_revision.empty()) {
    lineage.source_revision = spec.revision;
  }
  return lineage;
}

Status ValidateSpec(const PackSpec& spec) {
  static const std::regex kVersion(R"([A-Za-z0-9_][A-Za-z0-9._-]{0,127})");
  if (!ValidModelName(spec.name)) {
    return Fail(ErrorCode::kInvalidArgument, "model name \"" + spec.name +
                                                 "\" must be lowercase letters and digits "
                                                 "separated by . _ or -, at most 128 characters "
                                                 "(an OCI repository name)");
  }
  if (!std::regex_match(spec.version, kVersion)) {
    return Fail(ErrorCode::kInvalidArgument,
                "version \"" + spec.version +
                    "\" must be a valid OCI tag (letters, digits, . _ -; at most 128)");
  }
  if (!spec.created.empty()) {
    AIRLOCK_RETURN_IF_ERROR(WithContext(ParseRfc3339(spec.created).map([](auto) {}), "created"));
  }
  if (spec.lineage) {
    AIRLOCK_RETURN_IF_ERROR(spec.lineage->Check());
  }
  if (spec.platforms.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "no model file given (model: or --model)");
  }
  std::set<std::string> seen;
  for (const auto& p : spec.platforms) {
    if (!seen.insert(p.platform.ToString()).second) {
      return Fail(ErrorCode::kInvalidArgument,
                  "platform " + p.platform.ToString() + " is listed twice");
    }
    if (p.files.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "platform " + p.platform.ToString() + " has no model file");
    }
    if (p.precision != "fp32" && p.precision != "fp16" && p.precision != "int8" &&
        p.precision != "mixed") {
      return Fail(ErrorCode::kInvalidArgument,
                  "precision \"" + p.precision + "\" must be fp32, fp16, int8 or mixed");
    }
    std::set<std::string> paths;
    for (const auto& f : p.files) {
      std::error_code ec;
      if (!fs::is_regular_file(f.source, ec)) {
        return Fail(ErrorCode::kNotFound, "model file " + f.source.string() + " does not exist");
      }
      if (!paths.insert(f.filepath).second) {
        return Fail(ErrorCode::kInvalidArgument, "two model files would both be " + f.filepath);
      }
    }
  }
  return ValidatePipeline(spec.pipeline);
}

Status ValidateBaseline(const json& b, const runtime::ModelSignature* sig) {
  auto bad = [](const std::string& m) {
    return Fail(ErrorCode::kInvalidArgument, "baseline: " + m);
  };
  if (!b.is_object() || trust::StringOr(b, "schema") != "airlock.baseline.v1") {
    return bad("want a JSON object with \"schema\": \"airlock.baseline.v1\"");
  }
  auto has_tensor = [&](const std::vector<runtime::TensorSpec>& specs, const std::string& n) {
    return sig == nullptr || std::any_of(specs.begin(), specs.end(),
                                         [&](const runtime::TensorSpec& s) { return s.name == n; });
  };
  auto check_hist = [&](const json& h, const std::string& where) -> Status {
    if (!h.contains("edges") || !h["edges"].is_array() || !h.contains("counts") ||
        !h["counts"].is_array()) {
      return bad(where + " needs \"edges\" and \"counts\"");
    }
    const json& e = h["edges"];
    const json& c = h["counts"];
    if (e.size() < 2 || c.size() + 1 != e.size()) {
      return bad(where + ": a histogram needs n+1 edges for n counts (n >= 1)");
    }
    for (std::size_t i = 0; i < e.size(); ++i) {
      if (!e[i].is_number() || (i > 0 && !(e[i].get<double>() > e[i - 1].get<double>()))) {
        return bad(where + ": edges must be increasing numbers");
      }
    }
    for (const auto& n : c) {
      if (!n.is_number_integer() || n.get<std::int64_t>() < 0) {
        return bad(where + ": counts must be non-negative integers");
      }
    }
    return {};
  };
  if (!b.contains("features") || !b["features"].is_array()) {
    return bad("needs a list \"features\"");
  }
  for (const auto& f : b["features"]) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("tensor") ||
        !f["tensor"].is_string()) {
      return bad("each feature needs \"name\" and \"tensor\"");
    }
    std::string where = "feature " + f["name"].get<std::string>();
    if (!has_tensor(sig ? sig->inputs : std::vector<runtime::TensorSpec>{}, f["tensor"])) {
      return bad(where + " names tensor \"" + f["tensor"].get<std::string>() +
                 "\", which is not a model input");
    }
    AIRLOCK_RETURN_IF_ERROR(check_hist(f, where));
  }
  if (b.contains("predictions")) {
    const json& p = b["predictions"];
    if (!p.is_object() || !p.contains("tensor") || !p["tensor"].is_string()) {
      return bad("predictions need a \"tensor\"");
    }
    if (!has_tensor(sig ? sig->outputs : std::vector<runtime::TensorSpec>{}, p["tensor"])) {
      return bad("predictions name tensor \"" + p["tensor"].get<std::string>() +
                 "\", which is not a model output");
    }
    std::string kind = trust::StringOr(p, "kind");
    if (kind == "class") {
      if (!p.contains("labels") || !p["labels"].is_array() || !p.contains("counts") ||
          !p["counts"].is_array() || p["labels"].size() != p["counts"].size()) {
        return bad("class predictions need \"labels\" and \"counts\" of the same length");
      }
    } else if (kind == "score") {
      AIRLOCK_RETURN_IF_ERROR(check_hist(p, "predictions"));
    } else {
      return bad("predictions \"kind\" must be \"class\" or \"score\"");
    }
  }
  return {};
}

Result<PackResult> Pack(const PackSpec& spec, const PackOptions& options,
                        runtime::OnnxRuntime* ort) {
  auto say = [&](const std::string& s) {
    if (options.say) {
      options.say(s);
    }
  };
  AIRLOCK_RETURN_IF_ERROR(ValidateSpec(spec));
  // "out/" means the directory out.
  fs::path output = options.output;
  while (!output.empty() && output.filename().empty() && output != output.root_path()) {
    output = output.parent_path();
  }
  if (output.empty() || output.filename() == "." || output.filename() == "..") {
    return Fail(ErrorCode::kInvalidArgument,
                "output " + options.output.string() + " names no file or directory");
  }
  if (options.validate && ort == nullptr) {
    return Fail(ErrorCode::kInternal, "Pack needs ONNX Runtime to validate");
  }
  PackResult result;

  // 1. Copy each platform's model files into a staging directory beside the output (so on its
  //    filesystem), hashing them on the way; pack then validates and ships those copies, so a
  //    source file that changes meanwhile cannot make the package lie. Platforms with the same
  //    files share one copy.
  RemoveStaleTemporaries(output);  // what an earlier, killed pack left behind
  fs::path out_dir = output.parent_path().empty() ? fs::path(".") : output.parent_path();
  AIRLOCK_ASSIGN_OR_RETURN(
      TempDirectory staging,
      TempDirectory::Create(out_dir / (TemporaryPrefix(output, "staging") + "XXXXXX")));
  std::map<std::string, StagedFiles> staged;  // by the platform's list of files
  auto files_key = [](const PlatformSpec& ps) {
    std::string key;
    for (const auto& f : ps.files) key += f.source.string() + "\n" + f.filepath + "\n";
    return key;
  };
  for (const auto& ps : spec.platforms) {
    std::string key = files_key(ps);
    if (staged.contains(key)) {
      continue;
    }
    StagedFiles group;
    fs::path dir = staging.path() / std::to_string(staged.size());
    for (const auto& f : ps.files) {
      fs::path target = dir / f.filepath;
      AIRLOCK_RETURN_IF_ERROR(MakeDirectories(target.parent_path()));
      say("copying and hashing " + f.source.string());
      ProgressFn progress;
      if (options.progress) {
        progress = [&](std::uint64_t done, std::uint64_t total) {
          options.progress("hashing " + f.filepath, done, total);
        };
      }
      AIRLOCK_ASSIGN_OR_RETURN(FileDigest fd, HashCopy(f.source, target, progress));
      Descriptor d;
      d.media_type = std::string(media::kModelWeight);
      d.digest = fd.digest;
      d.size = fd.size;
      d.annotations[std::string(annotation::kFilepath)] = f.filepath;
      group.paths.push_back(target);
      group.layers.push_back(std::move(d));
    }
    staged.emplace(key, std::move(group));
  }

  // 2. Validate each distinct model (the staged copy), and take the signature from the first.
  std::set<std::string> validated;  // files keys already checked
  Samples samples = spec.samples;
  for (const auto& ps : spec.platforms) {
    std::string key = files_key(ps);
    const fs::path& entry = staged.at(key).paths.front();
    if (!options.validate || validated.contains(key)) {
      continue;
    }
    say("checking " + ps.files.front().source.string() + " with the ONNX checker");
    const fs::path& source = ps.files.front().source;
    AIRLOCK_ASSIGN_OR_RETURN(std::string note, ShowAs(CheckOnnxModel(entry), entry, source));
    if (!note.empty()) {
      say("note: " + note);
    }
    say("loading it in ONNX Runtime " + ort->Version());
    AIRLOCK_ASSIGN_OR_RETURN(auto model,
                             ShowAs(ort->Load(entry, runtime::SessionConfig{}), entry, source));
    if (!result.signature) {  // the first platform's model defines the package's signature
      result.signature = model->signature();
      for (auto& set : samples.sets) {
        AIRLOCK_RETURN_IF_ERROR(BindToSignature(set, model->signature()));
      }
    }
    if (!samples.sets.empty()) {
      say("running " + std::to_string(samples.sets.size()) + " sample(s) for " +
          ps.platform.ToString());
      AIRLOCK_ASSIGN_OR_RETURN(auto outcomes, RunSamples(*model, samples));
      if (result.samples.empty()) {
        result.samples = outcomes;
      }
    }
    validated.insert(key);
  }
  if (!result.signature && spec.pipeline.contains("signature")) {
    AIRLOCK_ASSIGN_OR_RETURN(auto sig,
                             runtime::ModelSignature::FromJson(spec.pipeline["signature"]));
    result.signature = sig;
  }
  if (!options.validate) {
    say("validation skipped (--no-validate): the model was not checked, loaded or tested");
  }

  // 3. The shared layers: pipeline, baseline, samples, card.
  std::vector<PendingLayer> shared;
  json pipeline = spec.pipeline;
  pipeline["schema"] = "airlock.pipeline.v1";
  if (result.signature) {
    pipeline["signature"] = result.signature->ToJson();
  }
  {
    std::string bytes = pipeline.dump(2) + "\n";
    Descriptor d = DescribeBytes(media::kPipeline, bytes);
    d.annotations[std::string(annotation::kFilepath)] = "pipeline.json";
    shared.push_back({d, std::move(bytes)});
  }
  if (spec.baseline) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(*spec.baseline, kMaxJsonBlob));
    auto parsed = trust::ParseJson(text, kMaxJsonBlob, spec.baseline->string());
    if (!parsed) {
      return Fail(std::move(parsed.error()));
    }
    AIRLOCK_RETURN_IF_ERROR(
        WithContext(ValidateBaseline(*parsed, result.signature ? &*result.signature : nullptr),
                    spec.baseline->string()));
    std::string bytes = parsed->dump(2) + "\n";
    Descriptor d = DescribeBytes(media::kBaseline, bytes);
    d.annotations[std::string(annotation::kFilepath)] = "baseline.json";
    shared.push_back({d, std::move(bytes)});
  }
  if (!samples.sets.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, BuildSamplesLayer(samples));
    Descriptor d = DescribeBytes(media::kSamples, bytes);
    d.annotations[std::string(annotation::kFilepath)] = "samples.tar";
    shared.push_back({d, std::move(bytes)});
  }
  if (spec.card) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadFile(*spec.card, kMaxJsonBlob));
    Descriptor d = DescribeBytes(media::kModelDoc, bytes);
    d.annotations[std::string(annotation::kFilepath)] = spec.card->filename().string();
    shared.push_back({d, std::move(bytes)});
  }

  LayoutWriter writer;
  for (const auto& [key, group] : staged) {
    for (std::size_t i = 0; i < group.paths.size(); ++i) {
      std::string rel = BlobPath(group.layers[i].digest);
      if (!writer.Has(rel)) {
        writer.AddMovable(rel, group.paths[i]);
      }
    }
  }
  for (const auto& l : shared) {
    writer.AddBlob(l.descriptor, l.bytes);
  }

  // 4. One config and manifest per platform, then the index.
  Index index;
  index.artifact_type = std::string(media::kModelArtifact);
  index.annotations[std::string(annotation::kModel)] = spec.name;
  index.annotations[std::string(annotation::kVersion)] = spec.version;
  if (!spec.created.empty()) {
    index.annotations[std::string(annotation::kCreated)] = spec.created;
  }
  if (auto lineage = EffectiveLineage(spec)) {
    index.annotations.merge(lineage->ToAnnotations());
  }
  for (const auto& ps : spec.platforms) {
    Manifest m;
    m.artifact_type = std::string(media::kModelArtifact);
    for (const auto& layer : staged.at(files_key(ps)).layers) {
      m.layers.push_back(layer);
    }
    for (const auto& l : shared) {
      m.layers.push_back(l.descriptor);
    }
    json descriptor = {{"name", spec.name}, {"version", spec.version}};
    if (!spec.created.empty()) descriptor["createdAt"] = spec.created;
    if (!spec.authors.empty()) descriptor["authors"] = spec.authors;
    if (!spec.description.empty()) descriptor["description"] = spec.description;
    if (!spec.revision.empty()) descriptor["revision"] = spec.revision;
    if (!spec.licenses.empty()) descriptor["licenses"] = spec.licenses;
    json diff_ids = json::array();
    for (const auto& l : m.layers) {
      diff_ids.push_back(l.digest.ToString());
    }
    json config = {{"descriptor", descriptor},
                   {"config", {{"format", "onnx"}, {"precision", ps.precision}}},
                   {"modelfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    std::string config_bytes = ToBytes(config);
    m.config = DescribeBytes(media::kModelConfig, config_bytes);
    writer.AddBlob(m.config, config_bytes);
    m.annotations = spec.annotations;
    m.annotations[std::string(annotation::kTitle)] = spec.name;
    m.annotations[std::string(annotation::kVersion)] = spec.version;
    if (!spec.created.empty()) {
      m.annotations[std::string(annotation::kCreated)] = spec.created;
    }
    std::string manifest_bytes = ToBytes(m.ToJson());
    Descriptor md = DescribeBytes(media::kImageManifest, manifest_bytes);
    // No artifactType on the index's entries: skopeo 1.9 does not know the field there and
    // rewrites the index on `copy --all`, which would change the digest a release signs.
    md.platform = ps.platform;
    md.annotations[std::string(annotation::kPrecision)] = ps.precision;
    md.annotations[std::string(annotation::kMinRuntime)] = spec.min_runtime;
    writer.AddBlob(md, manifest_bytes);
    index.manifests.push_back(md);
  }
  std::string index_bytes = ToBytes(index.ToJson());
  result.index = DescribeBytes(media::kImageIndex, index_bytes);
  writer.AddBlob(result.index, index_bytes);
  result.ref = spec.version;

  Index top;
  Descriptor top_entry = result.index;
  top_entry.annotations[std::string(annotation::kRefName)] = spec.version;
  top_entry.annotations[std::string(annotation::kModel)] = spec.name;
  top.manifests.push_back(top_entry);
  writer.SetIndex(top);

  std::set<Digest> distinct;
  for (const auto& [key, group] : staged) {
    for (const auto& d : group.layers) {
      if (distinct.insert(d.digest).second) result.total_bytes += d.size;
    }
  }
  for (const auto& l : shared) {
    if (distinct.insert(l.descriptor.digest).second) result.total_bytes += l.descriptor.size;
  }

  // 5. Write.
  bool as_tar = output.extension() == ".tar";
  say("writing " + output.string() + (as_tar ? " (tar)" : " (OCI layout directory)"));
  if (as_tar) {
    AIRLOCK_RETURN_IF_ERROR(writer.WriteTar(output, options.force));
  } else {
    AIRLOCK_RETURN_IF_ERROR(writer.WriteDirectory(output, options.force));
  }
  return result;
}

}  // namespace airlock::pkg
