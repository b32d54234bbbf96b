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
  // Run on the runtime's shared thread pool instead of the session's own threads (then
  // intra_op_threads and allow_spinning are the pool's). Needs a runtime created with one.
  bool shared_pool = false;
};

// Process-wide options, fixed when the runtime is created.
struct RuntimeOptions {
  // > 0: one intra-op thread pool of this many threads shared by every session that asks for it
  // (SessionConfig::shared_pool): small devices serving several models need not run a pool each.
  int shared_pool_threads = 0;
  bool shared_pool_spinning = false;
};

class OnnxRuntime {
 public:
  [[nodiscard]] static Result<std::unique_ptr<OnnxRuntime>> Create(
      const RuntimeOptions& options = {});
  ~OnnxRuntime();

  // "1.29.0": the library actually loaded.
  std::string Version() const;

  // Loads a model file. kModel with ONNX Runtime's message when it refuses the model;
  // kUnsupported when an input or output is not a tensor (sequences, maps).
  [[nodiscard]] Result<std::unique_ptr<InferenceBackend>> Load(const std::filesystem::path& model,
                                                               const SessionConfig& config);

 private:
  struct Impl;
  explicit OnnxRuntime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::runtime
