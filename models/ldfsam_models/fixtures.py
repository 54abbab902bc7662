"""The geometry-test model (test/fixtures/model-threshold): its answer is predictable from the pixels.

It accepts every modality; the server scales each slice min-max to [0, 1] (manifest intensity
policy `minmax`), the graph averages the channels and answers logit = 20 x (value - 0.5), so the mask
is "scaled value > 0.5". Tests compare every SEG frame with that threshold computed on the source
slice: a mask on the wrong slice, flipped or transposed cannot pass.
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from .export import OPSET
from .manifest import git_commit, segments_from, sha256_of, validate_manifest


class ThresholdGraph(nn.Module):
    def forward(self, image: torch.Tensor):
        value = image.mean(dim=1, keepdim=True)
        logits = (value - 0.5) * 20.0
        iou = torch.ones_like(logits[:, :, 0, 0])
        return logits, iou


def export_threshold_fixture(out: pathlib.Path, size: int = 256) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    graph = ThresholdGraph().eval()
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (torch.rand(1, 3, size, size),),
            str(path),
            opset_version=OPSET,
            input_names=["image"],
            output_names=["mask_logits", "iou"],
            dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"}, "iou": {0: "batch"}},
        )
    image = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(image))]
    max_diff = float(max(np.abs(g - e).max() for g, e in zip(got, expected)))
    manifest = {
        "schemaVersion": 1,
        "name": "threshold-fixture",
        "version": "1.0.0",
        "description": "Geometry test fixture: mask = (slice scaled min-max to [0, 1], mean of channels) > 0.5. Not a clinical model.",
        "configuration": {"name": "threshold-fixture"},
        "files": [{"path": "model.onnx", "sha256": sha256_of(path), "bytes": path.stat().st_size, "role": "segmentation"}],
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]}],
        "outputs": [{"name": "mask_logits", "dtype": "float32", "shape": ["batch", 1, size, size]}, {"name": "iou", "dtype": "float32", "shape": ["batch", 1]}],
        "preprocessing": {
            "inputSize": size,
            "resize": "bilinear",
            "channels": "rgb",
            "valueRange": [0, 1],
            "inGraph": ["mean of the channels", "logit = 20 x (value - 0.5)"],
            "intensity": {"default": {"kind": "minmax"}},
        },
        "postprocessing": {"output": "mask_logits", "threshold": 0.0},
        "segments": segments_from(["tissue"]),
        "modalities": ["*"],
        "training": {"dataset": "none (a fixed threshold)", "split": "none", "seed": 0, "epochs": 0, "gitCommit": git_commit(), "date": "n/a"},
        "metrics": None,
        "export": {
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "maxAbsDiff": max_diff,
            "graphs": "one graph: a fixed arithmetic",
        },
    }
    validate_manifest(manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
