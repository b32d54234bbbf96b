#pragma once
// The inference seam: something that runs a model on named tensors.
//
// InferenceBackend is what the CLI, and later the agent's model store, hold for a loaded model.
// ONNX Runtime is the implementation (onnx_runtime.hpp); tests may pass their own.

#include <vector>

#include "core/result.hpp"
#include "runtime/tensor.hpp"

namespace airlock::runtime {

class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;

  // The model's inputs and outputs, read when it was loaded.
  virtual const ModelSignature& signature() const = 0;

  // Runs the model. inputs are matched to the signature by name (every input is required);
  // outputs come back in signature order. Fails with kInvalidArgument for inputs that do not fit
  // the signature, kModel when the runtime fails. Thread-safe: may be called concurrently.
  [[nodiscard]] virtual Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) = 0;
};

}  // namespace airlock::runtime
