#pragma once
// A small, valid package source for pkg tests: the affine model y = 2x + 1 with two sample sets.

#include <filesystem>
#include <string>

#include "pkg/pack.hpp"
#include "support/onnx_models.hpp"
#include "support/tensors.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {

// Writes model.onnx, samples/{0,1}/{x,y}.npy and airlock.yaml into dir; returns the yaml path.
inline std::filesystem::path WriteAffineProject(const std::filesystem::path& dir) {
  WriteAffineModel(dir / "model.onnx");
  WriteNpy(dir / "samples/0/x.npy", Fp32("x", {1, 4}, {0, 1, 2, 3}));
  WriteNpy(dir / "samples/0/y.npy", Fp32("y", {1, 4}, {1, 3, 5, 7}));
  WriteNpy(dir / "samples/1/x.npy", Fp32("x", {2, 4}, {-1, 0.5f, 10, 0, 1, 1, 1, 1}));
  WriteNpy(dir / "samples/1/y.npy", Fp32("y", {2, 4}, {-1, 2, 21, 1, 3, 3, 3, 3}));
  WriteAll(dir / "baseline.json", R"({"schema": "airlock.baseline.v1", "count": 10,
    "features": [{"name": "x", "tensor": "x", "edges": [0, 1, 2], "counts": [4, 6]}],
    "predictions": {"tensor": "y", "kind": "score", "edges": [0, 5, 10], "counts": [5, 5]}})");
  WriteAll(dir / "README.md", "# affine\nA test model.\n");
  WriteAll(dir / "airlock.yaml", R"(name: affine
version: 1.0.0
description: y = 2x + 1
authors: [tests]
created: "2026-01-01T00:00:00Z"
model:
  files: [model.onnx]
platforms: [linux/amd64, linux/arm64]
card: README.md
pipeline:
  postprocess: [{op: threshold, tensor: y, above: high, below: low, value: 4}]
samples:
  tolerance: {rtol: 1.0e-5, atol: 1.0e-6}
  sets:
    - inputs: {x: samples/0/x.npy}
      outputs: {y: samples/0/y.npy}
    - inputs: {x: samples/1/x.npy}
      outputs: {y: samples/1/y.npy}
baseline: baseline.json
)");
  return dir / "airlock.yaml";
}

}  // namespace airlock::testing
