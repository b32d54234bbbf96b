#pragma once
// ONNX Runtime as an InferenceBackend (CPU execution provider).
//
// OnnxRuntime owns the process's Ort::Env: create one in main and share it; it must outlive every
// backend it loaded. ONNX Runtime's exceptions stop in this library and come back as kModel
// errors. Loading blocks (it reads and optimises the model); Run is thread-safe.

#include <filesystem>
#include <memory>
#include <string>

#include "core/result.hpp"
#include "runtime/backend.hpp"

namespace airlock::runtime {

struct SessionConfig {
  int intra_op_threads = 1;     // 0 lets ONNX Runtime choose (one per core)
  bool allow_spinning = false;  // spinning trades idle CPU for latency
  bool cpu_arena = false;       // the arena grows without bound on varying shapes: off by default
};

class OnnxRuntime {
 public:
  [[nodiscard]] static Result<std::unique_ptr<OnnxRuntime>> Create();
  ~OnnxRuntime();

  // "1.29.0": the library actually loaded.
  std::string Version() const;

  // Loads a model file. kModel with ONNX Runtime's message when it refuses the model;
  // kUnsupported when an input or output is not a tensor (sequences, maps).
  [[nodiscard]] Result<std::unique_ptr<InferenceBackend>> Load(const std::filesystem::path& model,
                                                               const SessionConfig& config);

 private:
  OnnxRuntime();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::runtime
