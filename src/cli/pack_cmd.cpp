// airlock init, airlock pack.

#include <cstdio>
#include <filesystem>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "core/yaml.hpp"
#include "pkg/onnx_model.hpp"
#include "pkg/pack.hpp"

namespace airlock::cli {
namespace fs = std::filesystem;

namespace {

std::string InitTemplate(const std::string& name, const std::string& model) {
  return R"(# airlock.yaml: what `airlock pack` puts into a model package.
# Paths are relative to this file. Reference: docs/package-format.md

# The package's name (an OCI repository name: lowercase, digits, . _ -) and version (an OCI tag).
name: )" +
         name + R"(
version: 0.1.0
description: ""
authors: []
licenses: []
# Source revision of the training code (e.g. a git commit), for lineage.
revision: ""
# When the model was made (RFC 3339). Leave it fixed so that packing is reproducible.
# created: "2026-01-01T00:00:00Z"

model:
  # The ONNX model first; any further files (external weights) after it.
  files: [)" +
         model + R"(]
  precision: fp32            # fp32 | fp16 | int8 | mixed

# One variant per platform (os/arch[/variant]). A platform may bring its own files:
#   - {platform: linux/arm64, files: [model-int8.onnx], precision: int8}
platforms: [linux/amd64, linux/arm64]

# Optional model card (markdown), shipped as the package's documentation layer.
# card: README.md

# How devices feed the model and read its answer (the agent's pipeline). Free-form steps, each
# with an "op"; the model's input/output signature is added by `airlock pack`.
pipeline:
  preprocess: []
  postprocess: []
  labels: []

# Sample inputs with the outputs the model must give; checked when packing, and again on every
# device before the model goes live. Tensors are NumPy .npy or ONNX TensorProto .pb files.
samples:
  tolerance: {rtol: 1.0e-3, atol: 1.0e-5}
  sets: []
  #  - inputs: {input: samples/0/input.npy}
  #    outputs: {output: samples/0/output.npy}
  # Or a folder in ONNX's test-data layout (test_data_set_N/input_K.pb, output_K.pb):
  # dir: test_data

# Training-data statistics for drift detection (schema airlock.baseline.v1).
# baseline: baseline.json

# Extra OCI annotations on each manifest.
annotations: {}

# Where this version came from, for a model registry (written as annotations on the package).
# lineage:
#   training_run: "2026-01-01-run-1"
#   dataset_digest: "sha256:…"     # sha256 of the training data (sha256sum), if it is one file
#   source_revision: ""            # default: revision above
#   metrics: {accuracy: 0.97}      # numbers only
)";
}

}  // namespace

void AddInit(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand("init", "Write a commented airlock.yaml to start a package");
  struct Args {
    std::string name;
    std::string model = "model.onnx";
    std::string output = "airlock.yaml";
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--name", a->name, "model name (default: the folder's name)");
  cmd->add_option("--model", a->model, "the ONNX file")->capture_default_str();
  cmd->add_option("-o,--output", a->output, "where to write it")->capture_default_str();
  cmd->add_flag("-f,--force", a->force, "replace an existing file");
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      if (fs::exists(a->output) && !a->force) {
        return ReportError(
            Error(ErrorCode::kAlreadyExists, a->output + " exists (use --force to replace it)"));
      }
      std::string name = a->name;
      if (name.empty()) {
        name = fs::absolute(a->output).parent_path().filename().string();
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
          return std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '-';
        });
      }
      if (auto s = WriteFileAtomic(a->output, InitTemplate(name, a->model)); !s) {
        return ReportError(s.error());
      }
      ctx.Say("wrote " + a->output + "; edit it, then run: airlock pack -f " + a->output);
      return kExitOk;
    };
  });
}

void AddPack(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd =
      app.add_subcommand("pack", "Check, test and package an ONNX model as an OCI model package");
  struct Args {
    std::string file;
    std::vector<std::string> models;
    std::string name, version, precision, pipeline, sample_dir, baseline, card, created;
    std::vector<std::string> platforms;
    std::optional<double> rtol, atol;
    pkg::LineageOverrides lineage;
    std::string output;
    bool no_validate = false;
    bool force = false;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("-f,--file", a->file,
                  "the package description (default: ./airlock.yaml if present)");
  cmd->add_option("--model", a->models, "model file(s); the first is the ONNX model")
      ->each([](const std::string&) {});
  cmd->add_option("--name", a->name, "model name");
  cmd->add_option("--version", a->version, "model version");
  cmd->add_option("--platform", a->platforms, "os/arch[/variant]; repeat for several");
  cmd->add_option("--precision", a->precision, "fp32, fp16, int8 or mixed");
  cmd->add_option("--pipeline", a->pipeline, "pipeline spec (YAML or JSON file)");
  cmd->add_option("--sample-dir", a->sample_dir,
                  "samples in ONNX's layout: DIR/test_data_set_N/{input,output}_K.pb");
  cmd->add_option("--baseline", a->baseline, "baseline statistics (JSON, airlock.baseline.v1)");
  cmd->add_option("--card", a->card, "model card (markdown)");
  cmd->add_option("--created", a->created, "creation time, RFC 3339 (kept out if not given)");
  cmd->add_option("--training-run", a->lineage.training_run,
                  "lineage: the training run that made the model (overrides airlock.yaml)");
  cmd->add_option("--dataset-digest", a->lineage.dataset_digest,
                  "lineage: sha256:<hex> of the training data (overrides airlock.yaml)");
  cmd->add_option("--source-revision", a->lineage.source_revision,
                  "lineage: source revision of the training code (default: revision)");
  cmd->add_option("--metric", a->lineage.metrics,
                  "lineage: NAME=NUMBER, repeatable; adds to or replaces airlock.yaml's metrics");
  cmd->add_option("--rtol", a->rtol, "relative tolerance when comparing sample outputs");
  cmd->add_option("--atol", a->atol, "absolute tolerance when comparing sample outputs");
  cmd->add_option("-o,--output", a->output,
                  "output: a directory, or a file ending in .tar (default NAME-VERSION.tar)");
  cmd->add_flag("--no-validate", a->no_validate,
                "skip the ONNX checker, the ONNX Runtime load and the samples");
  cmd->add_flag("--force", a->force, "replace an existing output");
  cmd->add_flag("--json", a->json, "print the result as JSON");
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto run = [&]() -> Result<std::pair<pkg::PackResult, std::string>> {
        nlohmann::json doc = nlohmann::json::object();
        fs::path base = ".";
        std::string origin = "command line";
        std::string file = a->file;
        if (file.empty() && a->models.empty() && fs::exists("airlock.yaml")) {
          file = "airlock.yaml";
        }
        if (!file.empty()) {
          AIRLOCK_ASSIGN_OR_RETURN(doc, LoadYamlFile(file));
          base =
              fs::path(file).parent_path().empty() ? fs::path(".") : fs::path(file).parent_path();
          origin = file;
        } else if (a->models.empty()) {
          return Fail(ErrorCode::kInvalidArgument,
                      "nothing to pack: give -f airlock.yaml or --model FILE (airlock init writes "
                      "a template)");
        }
        // Flags override the file. Paths given as flags are relative to the current directory.
        auto abs = [](const std::string& p) { return fs::absolute(p).string(); };
        if (!a->models.empty()) {
          // Inside the package a model file keeps its path relative to the base directory (so
          // external data files stay beside the model); from elsewhere, only its name.
          nlohmann::json files = nlohmann::json::array();
          for (const auto& m : a->models) {
            fs::path rel = fs::absolute(m).lexically_relative(fs::absolute(base));
            bool inside = !rel.empty() && *rel.begin() != "..";
            files.push_back(inside ? rel.string() : abs(m));
          }
          if (!doc.contains("model") || !doc["model"].is_object())
            doc["model"] = nlohmann::json::object();
          doc["model"]["files"] = files;
        }
        if (!a->precision.empty()) {
          if (!doc.contains("model") || !doc["model"].is_object())
            doc["model"] = nlohmann::json::object();
          doc["model"]["precision"] = a->precision;
        }
        if (!a->name.empty()) doc["name"] = a->name;
        if (!a->version.empty()) doc["version"] = a->version;
        if (!a->created.empty()) doc["created"] = a->created;
        if (!a->platforms.empty()) doc["platforms"] = a->platforms;
        if (!a->pipeline.empty()) doc["pipeline"] = abs(a->pipeline);
        if (!a->baseline.empty()) doc["baseline"] = abs(a->baseline);
        if (!a->card.empty()) doc["card"] = abs(a->card);
        if (!a->sample_dir.empty() || a->rtol || a->atol) {
          if (!doc.contains("samples") || !doc["samples"].is_object())
            doc["samples"] = nlohmann::json::object();
          if (!a->sample_dir.empty()) doc["samples"]["dir"] = abs(a->sample_dir);
          if (a->rtol) doc["samples"]["tolerance"]["rtol"] = *a->rtol;
          if (a->atol) doc["samples"]["tolerance"]["atol"] = *a->atol;
        }
        AIRLOCK_ASSIGN_OR_RETURN(pkg::PackSpec spec, pkg::PackSpecFromJson(doc, base, origin));
        AIRLOCK_RETURN_IF_ERROR(pkg::ApplyLineageOverrides(a->lineage, spec));
        pkg::PackOptions options;
        options.output = a->output.empty() ? spec.name + "-" + spec.version + ".tar" : a->output;
        options.force = a->force;
        options.validate = !a->no_validate;
        options.say = [&ctx](const std::string& s) { ctx.Say(s); };
        options.progress = [&ctx](const std::string& label, std::uint64_t done,
                                  std::uint64_t total) { ctx.Progress(label, done, total); };
        runtime::OnnxRuntime* ort = nullptr;
        if (options.validate) {
          AIRLOCK_ASSIGN_OR_RETURN(ort, ctx.Ort());
        }
        AIRLOCK_ASSIGN_OR_RETURN(pkg::PackResult result, pkg::Pack(spec, options, ort));
        return std::make_pair(std::move(result), options.output.string());
      };
      auto r = run();
      if (!r) {
        return ReportError(r.error());
      }
      const auto& [result, output] = *r;
      if (a->json) {
        nlohmann::json j = {{"output", output},
                            {"ref", result.ref},
                            {"index", result.index.ToJson()},
                            {"bytes", result.total_bytes},
                            {"samples", result.samples.size()}};
        if (result.signature) j["signature"] = result.signature->ToJson();
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::string samples = a->no_validate ? "validation skipped (--no-validate)"
                              : result.samples.empty()
                                  ? "no samples: add some so that devices can validate the model"
                                  : std::to_string(result.samples.size()) + " sample(s) passed";
        std::printf("packed %s (%s)\n  index %s\n  %s\n", output.c_str(),
                    HumanBytes(result.total_bytes).c_str(), result.index.digest.ToString().c_str(),
                    samples.c_str());
      }
      return kExitOk;
    };
  });
}

}  // namespace airlock::cli
