#!/usr/bin/python3
"""Train the Airlock "vibration-anomaly" example model.

Synthesises accelerometer windows of a rotating machine (a few harmonics of the
shaft frequency plus noise), trains a linear autoencoder (256 -> 24 -> 256) on
normal windows only, picks an anomaly threshold on held-out data, exports the
model to ONNX (opset 13) and writes next to this script:

  model.onnx      autoencoder; outputs the reconstruction and the anomaly score
                  (mean squared reconstruction error, computed inside the graph)
  samples/<k>/    window.npy, reconstruction.npy, score.npy
  baseline.json   training-data statistics for drift detection
  airlock.yaml    the package description (filled with the measured figures)

Run with Debian's Python (packages python3-torch, python3-onnx, python3-numpy):

    /usr/bin/python3 train.py

Everything is seeded; on the same machine and library versions two runs write
byte-identical files.
"""

import json
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261122
N = 256                 # samples per window
FS = 2560.0             # sample rate of the synthetic accelerometer, Hz (a window is 0.1 s)
SCALE = 0.5             # model input = acceleration in g * SCALE
N_TRAIN = 16000         # normal windows only
N_VAL = 2000            # per kind (normal + each anomaly kind), used to choose the threshold
N_TEST = 2000           # per kind, used only for the reported figures
CODE = 24               # bottleneck width of the autoencoder
TARGET_FALSE_ALARM = 0.005   # threshold = 99.5th percentile of held-out normal scores
THREADS = 2
KINDS = ["normal", "bearing_impulses", "amplitude_jump", "extra_frequency"]


# ---------------------------------------------------------------------------
# Synthetic data (values in g, before scaling)
# ---------------------------------------------------------------------------

T = np.arange(N) / FS


def normal_window(rng):
    """Shaft harmonics 1x, 2x, 3x with random amplitudes and phases, plus sensor noise."""
    f0 = rng.uniform(20.0, 40.0)                       # shaft speed 1200..2400 rpm
    amps = [rng.uniform(0.6, 1.2), rng.uniform(0.15, 0.5), rng.uniform(0.05, 0.25)]
    x = np.zeros(N)
    for h, a in enumerate(amps, start=1):
        x += a * np.sin(2 * math.pi * h * f0 * T + rng.uniform(0, 2 * math.pi))
    noise = rng.uniform(0.03, 0.06)
    return x, f0, noise


def make_window(rng, kind):
    x, f0, noise = normal_window(rng)
    if kind == "bearing_impulses":
        # Outer-race defect: an impulse every 1/BPFO seconds exciting a structural
        # resonance that rings down within a few milliseconds.
        bpfo = rng.uniform(3.0, 5.5) * f0
        fres = rng.uniform(600.0, 1000.0)
        tau = rng.uniform(0.0015, 0.003)
        amp = rng.uniform(0.3, 0.8)
        t_hit = rng.uniform(0, 1 / bpfo)
        while t_hit < N / FS:
            dt = T - t_hit
            ring = np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / tau) * np.sin(2 * math.pi * fres * np.clip(dt, 0, None)), 0.0)
            x += amp * rng.uniform(0.7, 1.0) * ring
            t_hit += 1 / bpfo
    elif kind == "amplitude_jump":
        # Sudden change of vibration level inside the window (loosening, rub).
        start = rng.integers(40, N - 40)
        gain = rng.uniform(1.6, 2.4)
        x[start:] *= gain
    elif kind == "extra_frequency":
        # A component that is not a shaft harmonic (e.g. a gear mesh or an electrical fault).
        f = rng.uniform(200.0, 900.0)
        x += rng.uniform(0.2, 0.5) * np.sin(2 * math.pi * f * T + rng.uniform(0, 2 * math.pi))
    x += rng.normal(0.0, noise, size=N)
    return x


def make_set(rng, kind, n):
    return (np.stack([make_window(rng, kind) for _ in range(n)]) * SCALE).astype(np.float32)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class VibrationAE(nn.Module):
    """Linear autoencoder 256 -> 24 -> 256; score = mean squared reconstruction error.

    A normal window is a sum of shaft harmonics below ~120 Hz, which a 24-dimensional
    linear subspace of the 256-sample window holds almost exactly; bearing impulses,
    extra frequencies and sudden amplitude changes put energy outside that subspace.
    """

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(N, CODE)
        self.decoder = nn.Linear(CODE, N)

    def forward(self, window):
        reconstruction = self.decoder(self.encoder(window))
        score = torch.mean((reconstruction - window) ** 2, dim=1)
        return reconstruction, score


def fit_linear_autoencoder(model, x):
    """Set the weights to the least-squares optimum of a linear autoencoder.

    For squared error the optimal linear autoencoder projects onto the leading
    principal components of the training data (Baldi & Hornik, 1989), so training
    is done in closed form: eigen-decomposition of the training covariance.
    Gradient training of the same network reaches the same subspace, only slower.
    """
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    cov = (x - mu).T @ (x - mu) / len(x)
    evals, evecs = np.linalg.eigh(cov)                # ascending
    comps = evecs[:, ::-1][:, :CODE].T               # [CODE, N], leading first
    # Fix each component's sign (largest-magnitude entry positive) for reproducible bytes.
    signs = np.sign(comps[np.arange(CODE), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    explained = evals[::-1][:CODE].sum() / evals.sum()
    with torch.no_grad():
        model.encoder.weight.copy_(torch.from_numpy(comps.astype(np.float32)))
        model.encoder.bias.copy_(torch.from_numpy((-comps @ mu).astype(np.float32)))
        model.decoder.weight.copy_(torch.from_numpy(comps.T.astype(np.float32)))
        model.decoder.bias.copy_(torch.from_numpy(mu.astype(np.float32)))
    return float(explained)


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------

def save_npy(path, arr):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=(1, 0), allow_pickle=False)


def histogram(values):
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, 11)
    counts, _ = np.histogram(values, bins=edges)
    edges = [float(e) for e in edges]
    edges[0], edges[-1] = lo, hi
    return edges, [int(c) for c in counts]


def scores_of(model, x, batch=1024):
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch]))[1].numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    t0 = time.time()
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)

    x_train = make_set(rng, "normal", N_TRAIN)
    val = {k: make_set(rng, k, N_VAL) for k in KINDS}
    test = {k: make_set(rng, k, N_TEST) for k in KINDS}
    print(f"data: {N_TRAIN} normal training windows, {N_VAL}+{N_TEST} per kind for val/test "
          f"({time.time() - t0:.1f}s)")

    model = VibrationAE()
    explained = fit_linear_autoencoder(model, x_train)
    model.eval()
    train_scores = scores_of(model, x_train).astype(np.float64)
    print(f"fitted: {CODE} components hold {explained:.4%} of the training variance; "
          f"train mse {train_scores.mean():.6f}, val normal mse {scores_of(model, val['normal']).mean():.6f}")

    # Threshold from held-out normal windows only (target false-alarm rate).
    val_scores = {k: scores_of(model, v) for k, v in val.items()}
    threshold = float(np.quantile(val_scores["normal"].astype(np.float64), 1.0 - TARGET_FALSE_ALARM))
    threshold = float(f"{threshold:.3g}")   # a round figure for the package description
    print(f"threshold (99.5th percentile of validation normal scores, 3 significant digits): {threshold}")
    for k in KINDS:
        s = val_scores[k]
        print(f"  val {k:17s} score median {np.median(s):.6f}  flagged {np.mean(s > threshold):.4f}")

    test_scores = {k: scores_of(model, v) for k, v in test.items()}
    rates = {}
    for k in KINDS:
        rates[k] = float(np.mean(test_scores[k] > threshold))
    normal_ok = 1.0 - rates["normal"]
    anomalies = np.concatenate([test_scores[k] for k in KINDS[1:]])
    detected = float(np.mean(anomalies > threshold))
    print(f"test: normal windows passed {normal_ok:.4f} (false alarms {rates['normal']:.4f}), "
          f"anomalies detected {detected:.4f}")
    for k in KINDS[1:]:
        print(f"  test {k:17s} detected {rates[k]:.4f}")

    # ---- export -----------------------------------------------------------
    onnx_path = os.path.join(HERE, "model.onnx")
    dummy = torch.from_numpy(test["normal"][:1])
    torch.onnx.export(
        model, (dummy,), onnx_path,
        input_names=["window"], output_names=["reconstruction", "score"],
        dynamic_axes={"window": {0: "batch"}, "reconstruction": {0: "batch"}, "score": {0: "batch"}},
        opset_version=13, do_constant_folding=True, export_params=True,
    )
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    m.doc_string = ("Airlock example: vibration anomaly autoencoder; score = mean squared "
                    "reconstruction error. Synthetic training data.")
    onnx.save(m, onnx_path)
    onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path)} bytes), ops: "
          f"{sorted({n.op_type for n in m.graph.node})}")

    # ---- samples ------------------------------------------------------------
    # From the test set: the first normal window classified normal, the first of each
    # anomaly kind classified anomalous, and a second normal window.
    def first(kind, anomalous):
        s = test_scores[kind]
        idx = np.flatnonzero(s > threshold) if anomalous else np.flatnonzero(s <= threshold)
        return kind, int(idx[0])

    picks = [first("normal", False), first("bearing_impulses", True), first("normal", False),
             first("amplitude_jump", True), first("extra_frequency", True)]
    picks[2] = ("normal", int(np.flatnonzero(test_scores["normal"] <= threshold)[1]))
    sample_notes = []
    for k, (kind, i) in enumerate(picks):
        d = os.path.join(HERE, "samples", str(k))
        os.makedirs(d, exist_ok=True)
        x = test[kind][i:i + 1]
        with torch.no_grad():
            rec, score = model(torch.from_numpy(x))
        save_npy(os.path.join(d, "window.npy"), x)
        save_npy(os.path.join(d, "reconstruction.npy"), rec.numpy())
        save_npy(os.path.join(d, "score.npy"), score.numpy())
        label = "anomaly" if float(score[0]) > threshold else "normal"
        sample_notes.append(f"{k}: {kind} (score {float(score[0]):.5f} -> {label})")
        print(f"sample {k}: {kind:17s} score {float(score[0]):.6f} -> {label}")

    # ---- baseline ---------------------------------------------------------
    v = x_train.astype(np.float64).ravel()
    edges, counts = histogram(v)
    s_edges, s_counts = histogram(train_scores)
    baseline = {
        "schema": "airlock.baseline.v1",
        "count": N_TRAIN,
        "features": [{
            "name": "window", "tensor": "window", "axis": None, "index": None,
            "mean": float(v.mean()), "std": float(v.std()),
            "min": float(v.min()), "max": float(v.max()),
            "edges": edges, "counts": counts,
        }],
        "predictions": {
            "tensor": "score", "kind": "score",
            "edges": s_edges, "counts": s_counts,
            "mean": float(train_scores.mean()), "std": float(train_scores.std()),
        },
    }
    with open(os.path.join(HERE, "baseline.json"), "w") as f:
        json.dump(baseline, f, indent=2)
        f.write("\n")

    # ---- airlock.yaml -----------------------------------------------------
    sets = "".join(
        f"    - inputs: {{window: samples/{k}/window.npy}}\n"
        f"      outputs: {{reconstruction: samples/{k}/reconstruction.npy, score: samples/{k}/score.npy}}\n"
        for k in range(len(picks)))
    notes = "".join(f"  #   {n}\n" for n in sample_notes)
    yaml = f"""# Airlock package description for the vibration-anomaly example.
# Written by train.py; the figures below come from its last run.
name: vibration-anomaly
version: 1.0.0
description: Flags anomalous vibration windows of a rotating machine with an autoencoder.
authors: ["Airlock examples"]
licenses: ["Apache-2.0"]
created: "2026-11-22T00:00:00Z"   # fixed so that packing is reproducible
model:
  files: [model.onnx]
  precision: fp32
platforms: [linux/amd64, linux/arm64]
card: README.md
pipeline:
  preprocess:
    - {{op: window, size: {N}, hop: {N // 2}}}   # accelerometer samples in g, {FS:g} Hz
    - {{op: scale, factor: {SCALE}}}
    - {{op: cast, dtype: FP32}}
  postprocess:
    - {{op: threshold, tensor: score, above: anomaly, below: normal, value: {threshold}}}
  labels: [normal, anomaly]
  thresholds: {{anomaly: {threshold}}}
  resources: {{intra_op_threads: 1}}
samples:
  tolerance: {{rtol: 1.0e-3, atol: 1.0e-4}}
  # Sample sets:
{notes}  sets:
{sets}baseline: baseline.json
annotations:
  ai.airlock.example.normal-pass-rate: "{normal_ok:.4f}"        # test set, {N_TEST} normal windows
  ai.airlock.example.anomaly-detection-rate: "{detected:.4f}"   # test set, {3 * N_TEST} anomalous windows
  ai.airlock.example.bearing-impulses-detection-rate: "{rates['bearing_impulses']:.4f}"
  ai.airlock.example.amplitude-jump-detection-rate: "{rates['amplitude_jump']:.4f}"
  ai.airlock.example.extra-frequency-detection-rate: "{rates['extra_frequency']:.4f}"
lineage:
  training_run: vibration-anomaly-2026-11-22   # the run of train.py that made model.onnx
  # No dataset_digest: train.py generates its training data in memory and writes no data file.
  metrics:   # the figures of the annotations above, as numbers
    normal-pass-rate: {normal_ok:.4f}
    anomaly-detection-rate: {detected:.4f}
    bearing-impulses-detection-rate: {rates['bearing_impulses']:.4f}
    amplitude-jump-detection-rate: {rates['amplitude_jump']:.4f}
    extra-frequency-detection-rate: {rates['extra_frequency']:.4f}
"""
    with open(os.path.join(HERE, "airlock.yaml"), "w") as f:
        f.write(yaml)

    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
