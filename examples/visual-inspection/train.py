#!/usr/bin/python3
"""Train the Airlock "visual-inspection" example model.

Synthesises 64x64 RGB pictures of brushed-metal tags, some of which carry thin
scratches, trains a small CNN (ok / scratched), exports it to ONNX (opset 13)
and writes everything the Airlock package needs next to this script:

  model.onnx      the classifier, softmax inside the graph
  samples/<k>/    image.npy, probabilities.npy, image.png
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
import struct
import sys
import time
import zlib

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261122
SIZE = 64
LABELS = ["ok", "scratched"]
N_TRAIN = 4000
N_VAL = 1000
N_TEST = 2000
EPOCHS = 12
BATCH = 64
THREADS = 2  # fixed so that float reductions happen in the same order every run


# ---------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------

def _smooth_rows(a, k):
    """Box-filter each row of a 2-D array with a window of k pixels (wrap-around)."""
    out = np.zeros_like(a)
    for s in range(-(k // 2), k // 2 + 1):
        out += np.roll(a, s, axis=1)
    return out / k


def _draw_line(mask, x0, y0, x1, y1, width):
    """Add an anti-aliased line segment of the given width to mask (values 0..1)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
    dist = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
    line = np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0)
    np.maximum(mask, line, out=mask)


def make_tag(rng, scratched):
    """Return one synthetic tag picture as uint8 HWC (64, 64, 3)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)

    # Base metal: grey level, slight colour tint, lighting gradient.
    base = rng.uniform(0.40, 0.70)
    tint = rng.uniform(-0.03, 0.03, size=3) + np.array([0.0, 0.005, 0.02])
    angle = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(0.05, 0.20) * ((xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle))
    # Soft specular highlight band.
    band_pos = rng.uniform(0.0, 1.0)
    band = rng.uniform(0.0, 0.10) * np.exp(-((xs + 0.3 * ys - band_pos) ** 2) / 0.02)

    # Brushed texture: noise smeared along the brushing direction (horizontal).
    streaks = _smooth_rows(rng.normal(0.0, 1.0, size=(SIZE, SIZE)), 15)
    streaks = streaks * rng.uniform(0.02, 0.05) / max(streaks.std(), 1e-6)
    row_tone = rng.normal(0.0, rng.uniform(0.005, 0.02), size=(SIZE, 1))

    lum = base + grad + band + streaks + row_tone

    # Engraving: a rectangular frame and a few text-like dashes, darker.
    engr = np.zeros((SIZE, SIZE))
    if rng.uniform() < 0.85:
        x0, y0 = rng.integers(3, 10), rng.integers(3, 10)
        x1, y1 = SIZE - rng.integers(3, 10), SIZE - rng.integers(3, 10)
        engr[y0, x0:x1] = 1.0
        engr[y1, x0:x1 + 1] = 1.0
        engr[y0:y1, x0] = 1.0
        engr[y0:y1, x1] = 1.0
        # Text-like marks: rows of short blocks inside the frame.
        for row in range(rng.integers(1, 4)):
            ty = y0 + 6 + row * 9
            if ty + 4 >= y1:
                break
            tx = x0 + 5
            while tx + 3 < x1 - 4:
                w = rng.integers(2, 5)
                if rng.uniform() < 0.8:
                    glyph = rng.uniform(size=(5, w)) < 0.55
                    engr[ty:ty + 5, tx:tx + w] = np.maximum(engr[ty:ty + 5, tx:tx + w], glyph)
                tx += w + rng.integers(1, 3)
    lum = lum - rng.uniform(0.10, 0.22) * engr

    # Scratches: thin bright or dark lines at random angles.
    if scratched:
        for _ in range(rng.integers(1, 4)):
            mask = np.zeros((SIZE, SIZE))
            length = rng.uniform(16, 60)
            theta = rng.uniform(0, math.pi)
            cx, cy = rng.uniform(8, SIZE - 8, size=2)
            hx, hy = 0.5 * length * math.cos(theta), 0.5 * length * math.sin(theta)
            _draw_line(mask, cx - hx, cy - hy, cx + hx, cy + hy, rng.uniform(0.6, 1.6))
            sign = 1.0 if rng.uniform() < 0.6 else -1.0
            lum = lum + sign * rng.uniform(0.15, 0.35) * mask

    img = lum[:, :, None] + tint[None, None, :]
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.02), size=img.shape)  # sensor noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def make_set(rng, n):
    labels = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(labels)
    images = np.stack([make_tag(rng, bool(y)) for y in labels])
    return images, labels


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class TagNet(nn.Module):
    """Four 3x3 conv layers, global max pool (a scratch is small and local), linear, softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 48, 3, padding=1)
        self.c4 = nn.Conv2d(48, 48, 3, padding=1)
        self.fc = nn.Linear(48, 2)

    def logits(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)   # 32x32
        x = F.max_pool2d(F.relu(self.c2(x)), 2)   # 16x16
        x = F.max_pool2d(F.relu(self.c3(x)), 2)   # 8x8
        x = F.relu(self.c4(x))
        x = torch.amax(x, dim=(2, 3))             # global max pool -> [batch, 48]
        return self.fc(x)

    def forward(self, image):
        return torch.softmax(self.logits(image), dim=1)


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------

def write_png(path, rgb):
    """Write an 8-bit RGB PNG with zlib only."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


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


def normalise(images_u8, mean, std):
    """uint8 NHWC -> float32 NCHW, same order of operations as the Airlock pipeline."""
    x = images_u8.astype(np.float32) * np.float32(1.0 / 255.0)
    x = (x - mean.astype(np.float32)) / std.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def predict(model, x, batch=256):
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).numpy())
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

    train_u8, train_y = make_set(rng, N_TRAIN)
    val_u8, val_y = make_set(rng, N_VAL)
    test_u8, test_y = make_set(rng, N_TEST)
    print(f"data: {N_TRAIN} train, {N_VAL} val, {N_TEST} test images ({time.time() - t0:.1f}s)")

    # Per-channel normalisation from the training set, rounded for the pipeline.
    pix = train_u8.reshape(-1, 3).astype(np.float64) / 255.0
    mean = np.round(pix.mean(axis=0), 4)
    std = np.round(pix.std(axis=0), 4)
    print(f"normalisation: mean={mean.tolist()} std={std.tolist()}")

    x_train = normalise(train_u8, mean, std)
    x_val = normalise(val_u8, mean, std)
    x_test = normalise(test_u8, mean, std)

    model = TagNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(train_y)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.from_numpy(rng.permutation(N_TRAIN))
        total = 0.0
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            xb = xt[idx]
            # Augmentation: random flips (scratches have no preferred orientation).
            if rng.uniform() < 0.5:
                xb = torch.flip(xb, dims=[3])
            if rng.uniform() < 0.5:
                xb = torch.flip(xb, dims=[2])
            loss = F.cross_entropy(model.logits(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        sched.step()
        model.eval()
        val_acc = float((predict(model, x_val).argmax(1) == val_y).mean())
        print(f"epoch {epoch + 1:2d}  loss {total / N_TRAIN:.4f}  val acc {val_acc:.4f}  ({time.time() - t0:.1f}s)")

    model.eval()
    p_test = predict(model, x_test)
    pred = p_test.argmax(1)
    acc = float((pred == test_y).mean())
    tp = int(((pred == 1) & (test_y == 1)).sum())
    tn = int(((pred == 0) & (test_y == 0)).sum())
    fp = int(((pred == 1) & (test_y == 0)).sum())
    fn = int(((pred == 0) & (test_y == 1)).sum())
    recall = tp / max(tp + fn, 1)
    specificity = tn / max(tn + fp, 1)
    print(f"test: accuracy {acc:.4f}  scratched recall {recall:.4f}  ok specificity {specificity:.4f}"
          f"  (tp {tp} tn {tn} fp {fp} fn {fn})")

    # ---- export -----------------------------------------------------------
    onnx_path = os.path.join(HERE, "model.onnx")
    dummy = torch.from_numpy(x_test[:1])
    torch.onnx.export(
        model, (dummy,), onnx_path,
        input_names=["image"], output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=13, do_constant_folding=True, export_params=True,
    )
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    m.doc_string = "Airlock example: metal tag visual inspection (ok / scratched). Synthetic training data."
    onnx.save(m, onnx_path)
    onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path)} bytes), ops: "
          f"{sorted({n.op_type for n in m.graph.node})}")

    # ---- samples ------------------------------------------------------------
    # Two ok and two scratched pictures from the held-out test set.
    picks = [int(i) for i in np.flatnonzero(test_y == 0)[:2]] + [int(i) for i in np.flatnonzero(test_y == 1)[:2]]
    picks = [picks[0], picks[2], picks[1], picks[3]]
    sample_sets = []
    for k, i in enumerate(picks):
        d = os.path.join(HERE, "samples", str(k))
        os.makedirs(d, exist_ok=True)
        x = x_test[i:i + 1]
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        save_npy(os.path.join(d, "image.npy"), x)
        save_npy(os.path.join(d, "probabilities.npy"), y)
        write_png(os.path.join(d, "image.png"), test_u8[i])
        sample_sets.append(k)
        print(f"sample {k}: true {LABELS[test_y[i]]:9s} probabilities {y[0].tolist()}")

    # ---- baseline ---------------------------------------------------------
    features = []
    for c in range(3):
        v = x_train[:, c].astype(np.float64).ravel()
        edges, counts = histogram(v)
        features.append({
            "name": f"image/channel{c}", "tensor": "image", "axis": 1, "index": c,
            "mean": float(v.mean()), "std": float(v.std()),
            "min": float(v.min()), "max": float(v.max()),
            "edges": edges, "counts": counts,
        })
    train_pred = predict(model, x_train).argmax(1)
    baseline = {
        "schema": "airlock.baseline.v1",
        "count": N_TRAIN,
        "features": features,
        "predictions": {
            "tensor": "probabilities", "kind": "class", "labels": LABELS,
            "counts": [int((train_pred == 0).sum()), int((train_pred == 1).sum())],
        },
    }
    with open(os.path.join(HERE, "baseline.json"), "w") as f:
        json.dump(baseline, f, indent=2)
        f.write("\n")

    # ---- airlock.yaml -----------------------------------------------------
    def flist(a):
        return "[" + ", ".join(repr(float(v)) for v in a) + "]"

    sets = "".join(
        f"    - inputs: {{image: samples/{k}/image.npy}}\n"
        f"      outputs: {{probabilities: samples/{k}/probabilities.npy}}\n" for k in sample_sets)
    yaml = f"""# Airlock package description for the visual-inspection example.
# Written by train.py; the figures below come from its last run.
name: visual-inspection
version: 1.0.0
description: Classifies metal tag images as ok or scratched.
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
    - {{op: decode_image, channels: 3}}
    - {{op: resize, width: 64, height: 64}}
    - {{op: scale, factor: 0.00392156862745098}}   # 1/255: pixels to [0, 1]
    - {{op: normalize, mean: {flist(mean)}, std: {flist(std)}}}   # per channel R, G, B
    - {{op: layout, from: HWC, to: CHW}}
    - {{op: cast, dtype: FP32}}
  postprocess:
    - {{op: argmax, tensor: probabilities, labels: [ok, scratched]}}
  labels: [ok, scratched]
  thresholds: {{scratched: 0.5}}
  resources: {{intra_op_threads: 1}}
samples:
  tolerance: {{rtol: 1.0e-3, atol: 1.0e-4}}
  sets:   # 0 and 2 are ok, 1 and 3 are scratched
{sets}baseline: baseline.json
annotations:
  ai.airlock.example.accuracy: "{acc:.4f}"               # held-out test set, {N_TEST} images
  ai.airlock.example.scratched-recall: "{recall:.4f}"
  ai.airlock.example.ok-specificity: "{specificity:.4f}"
lineage:
  training_run: visual-inspection-2026-11-22   # the run of train.py that made model.onnx
  # No dataset_digest: train.py generates its training images in memory and writes no data file.
  metrics:   # the figures of the annotations above, as numbers
    accuracy: {acc:.4f}
    scratched-recall: {recall:.4f}
    ok-specificity: {specificity:.4f}
"""
    with open(os.path.join(HERE, "airlock.yaml"), "w") as f:
        f.write(yaml)

    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
