"""Exports a seeded random-weight LDFSAM model and writes PyTorch's outputs for a fixed input, so the
TypeScript tests can check onnxruntime-node against PyTorch (the server runs onnxruntime-node).

usage: python export_with_reference.py --config tiny --out DIR [--seed 1]
Writes DIR/model.onnx, DIR/model.json, DIR/reference/{input,mask_logits,iou}.bin + shapes.json.
"""
import argparse
import json
import pathlib

import numpy as np
import torch

from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.export import SegmentationGraph, export_model
from ldfsam_models.manifest import segments_from


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    config = get_config(args.config)
    model = build_ldfsam(config).eval()
    with torch.no_grad():
        model.dense_prompt.alpha.fill_(0.3)
    out = pathlib.Path(args.out)
    export_model(
        model,
        config,
        out,
        name=f"random-{config.name}",
        version="0.0.1",
        segments=segments_from(["tissue"]),
        modalities=["*"],
        intensity={"default": {"kind": "minmax"}},
        training={"dataset": "none (random weights)", "split": "none", "seed": args.seed, "epochs": 0},
        metrics=None,
    )
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    image = np.random.default_rng(args.seed).random((2, 3, config.image_size, config.image_size), dtype=np.float32)
    with torch.no_grad():
        logits, iou = SegmentationGraph(model, config).eval()(torch.from_numpy(image))
    for name, array in (("input", image), ("mask_logits", logits.numpy()), ("iou", iou.numpy())):
        np.ascontiguousarray(array, dtype=np.float32).tofile(ref / f"{name}.bin")
    (ref / "shapes.json").write_text(json.dumps({"input": list(image.shape), "mask_logits": list(logits.shape), "iou": list(iou.shape)}))


if __name__ == "__main__":
    main()
