// airlock run.

#include <cstdio>
#include <cstdlib>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "pkg/layout.hpp"
#include "pkg/onnx_model.hpp"
#include "pkg/package.hpp"
#include "pkg/samples.hpp"
#include "runtime/npy.hpp"

namespace airlock::cli {
namespace fs = std::filesystem;

namespace {

nlohmann::json TensorJson(const runtime::Tensor& t) {
  nlohmann::json data = nlohmann::json::array();
  for (std::int64_t i = 0; i < t.ElementCount(); ++i) {
    if (t.dtype == runtime::DataType::kBytes) {
      data.push_back(t.strings[i]);
    } else {
      data.push_back(t.ValueAsDouble(i));
    }
  }
  return {{"name", t.name},
          {"datatype", std::string(runtime::DataTypeName(t.dtype))},
          {"shape", t.shape},
          {"data", data}};
}

}  // namespace

void AddRun(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "run", "Run a package's model locally: on given inputs, or on its own samples");
  struct Args {
    std::string package;
    std::string ref;
    std::string platform;
    std::vector<std::string> inputs;
    bool json = false;
    std::string output_dir;
    int threads = 1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("package", a->package, "package directory or .tar")->required();
  cmd->add_option("-i,--input", a->inputs,
                  "NAME=FILE (.npy or .pb) for each model input; without inputs the package's "
                  "samples are run and checked");
  cmd->add_option("--platform", a->platform, "which variant (default: the first)");
  cmd->add_option("--ref", a->ref, "which package in the layout (its version tag)");
  cmd->add_option("--threads", a->threads, "ONNX Runtime intra-op threads (0: one per core)")
      ->capture_default_str();
  cmd->add_option("--output-dir", a->output_dir, "also write each output as NAME.npy here");
  cmd->add_flag("--json", a->json, "print outputs as JSON (KServe-style tensors)");
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto run = [&]() -> Result<int> {
        AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(a->package));
        AIRLOCK_ASSIGN_OR_RETURN(pkg::Package p, pkg::LoadPackage(*reader, a->ref));
        AIRLOCK_ASSIGN_OR_RETURN(const pkg::Variant* variant, p.Select(a->platform));
        AIRLOCK_ASSIGN_OR_RETURN(
            TempDirectory tmp,
            TempDirectory::Create(fs::temp_directory_path() / "airlock-run-XXXXXX"));
        AIRLOCK_ASSIGN_OR_RETURN(fs::path model,
                                 pkg::MaterializeModel(*reader, *variant, tmp.path()));
        AIRLOCK_ASSIGN_OR_RETURN(runtime::OnnxRuntime * ort, ctx.Ort());
        runtime::SessionConfig config;
        config.intra_op_threads = a->threads;
        AIRLOCK_ASSIGN_OR_RETURN(auto backend, ort->Load(model, config));
        ctx.Say("loaded " + p.name() + " " + p.version() + " (" + variant->platform.ToString() +
                ") in ONNX Runtime " + ort->Version());
        if (a->inputs.empty()) {
          auto layers = variant->Layers(pkg::media::kSamples);
          if (layers.empty()) {
            return Fail(ErrorCode::kInvalidArgument,
                        "the package has no samples; give inputs with --input NAME=FILE");
          }
          AIRLOCK_ASSIGN_OR_RETURN(std::string bytes,
                                   reader->ReadBlob(*layers.front(), 1ULL << 30));
          AIRLOCK_ASSIGN_OR_RETURN(pkg::Samples samples, pkg::ParseSamplesLayer(bytes));
          AIRLOCK_ASSIGN_OR_RETURN(auto outcomes, pkg::RunSamples(*backend, samples));
          if (a->json) {
            nlohmann::json j = {{"model_name", p.name()},
                                {"model_version", p.version()},
                                {"samples", nlohmann::json::array()}};
            for (const auto& o : outcomes) {
              j["samples"].push_back(
                  {{"name", o.name}, {"ok", true}, {"max_abs_error", o.max_abs_error}});
            }
            std::printf("%s\n", j.dump(2).c_str());
            return kExitOk;
          }
          for (const auto& o : outcomes) {
            std::printf("sample %-12s ok (max abs error %.3g)\n", o.name.c_str(), o.max_abs_error);
          }
          std::printf("%zu of %zu sample(s) reproduce their expected outputs\n", outcomes.size(),
                      samples.sets.size());
          return kExitOk;
        }
        std::vector<runtime::Tensor> inputs;
        for (const auto& spec : a->inputs) {
          auto eq = spec.find('=');
          if (eq == std::string::npos) {
            return Fail(ErrorCode::kInvalidArgument, "--input wants NAME=FILE, got " + spec);
          }
          AIRLOCK_ASSIGN_OR_RETURN(runtime::Tensor t,
                                   pkg::LoadTensorFile(spec.substr(eq + 1), spec.substr(0, eq)));
          inputs.push_back(std::move(t));
        }
        AIRLOCK_ASSIGN_OR_RETURN(auto outputs, backend->Run(inputs));
        if (!a->output_dir.empty()) {
          AIRLOCK_RETURN_IF_ERROR(MakeDirectories(a->output_dir));
          for (const auto& t : outputs) {
            AIRLOCK_ASSIGN_OR_RETURN(std::string npy, runtime::SerializeNpy(t));
            AIRLOCK_RETURN_IF_ERROR(
                WriteFileAtomic(fs::path(a->output_dir) / (t.name + ".npy"), npy));
          }
        }
        if (a->json) {
          nlohmann::json j = {{"model_name", p.name()},
                              {"model_version", p.version()},
                              {"outputs", nlohmann::json::array()}};
          for (const auto& t : outputs) j["outputs"].push_back(TensorJson(t));
          std::printf("%s\n", j.dump(2).c_str());
        } else {
          for (const auto& t : outputs) {
            std::printf("%s: %s\n", t.name.c_str(), runtime::Summarize(t).c_str());
          }
        }
        return kExitOk;
      };
      auto r = run();
      return r ? *r : ReportError(r.error());
    };
  });
}

}  // namespace airlock::cli
