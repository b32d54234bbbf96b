#pragma once
// A ResNet-like image classifier made in code, for the serving benchmark: an input the size of
// an ImageNet picture (FP32 [batch, 3, 224, 224], "image") and ten class probabilities out
// (FP32 [batch, 10], "probabilities"). The weights are random (fixed seed): it measures serving,
// it classifies nothing. About 0.1 GMAC per image and 0.5 MB of weights, so a package of it is
// small and it is generated when the benchmark runs instead of being committed.

#include <filesystem>

namespace airlock::bench {

// Writes the model (ONNX, opset 13). Throws nothing; a write failure leaves a short file that
// ONNX Runtime then refuses.
void WriteResNetLikeModel(const std::filesystem::path& path);

}  // namespace airlock::bench
