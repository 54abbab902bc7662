"""Exports `lite` (LiteMedSAM's weights, a seeded random prompt generator and feature prompts) with its
promptable pair, fp32, and writes PyTorch's outputs for fixed inputs, so the TypeScript tests can check
the encoder and decoder through onnxruntime-node (what the server runs) against PyTorch.

usage: python export_promptable_reference.py --out DIR [--seed 1]
Writes DIR/{model,encoder,decoder}.onnx, DIR/model.json and DIR/reference/*.bin + shapes.json.
"""
import argparse
import json
import pathlib

import numpy as np
import torch

from ldfsam_models.configs import build_model, get_config
from ldfsam_models.export import export_model
from ldfsam_models.manifest import segments_from
from ldfsam_models.pretrained import load_litemedsam
from ldfsam_models.promptable import DecoderGraph, EncoderGraph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    config = get_config("lite")
    model = build_model(config)
    load_litemedsam(model)
    model.eval()
    with torch.no_grad():
        model.dense_prompt.alpha.fill_(0.3)
    out = pathlib.Path(args.out)
    training = {"dataset": "none (random prompt generator)", "split": "none", "seed": args.seed, "epochs": 0}
    export_model(model, config, out, name="random-lite", version="0.0.1", segments=segments_from(["tissue"]), modalities=["*"],
                 intensity={"default": {"kind": "minmax"}}, training=training, metrics=None, promptable=True)
    rng = np.random.default_rng(args.seed)
    s = config.image_size
    image = rng.random((2, 3, s, s), dtype=np.float32)
    prompts = {
        "point_coords": np.array([[[120.0, 90.0], [40.0, 50.0], [200.0, 170.0]]], np.float32),  # a negative click, then a box
        "point_labels": np.array([[0.0, 2.0, 3.0]], np.float32),
        "mask_input": (rng.standard_normal((1, 1, s, s)) * 3).astype(np.float32),
        "has_mask_input": np.array([1.0], np.float32),
    }
    with torch.no_grad():
        z, tokens = EncoderGraph(model, config)(torch.from_numpy(image))
        logits, iou = DecoderGraph(model, config, multimask_for_single_point=False)(
            z[1:2], tokens[1:2], *(torch.from_numpy(prompts[k]) for k in ("point_coords", "point_labels", "mask_input", "has_mask_input")))
    arrays = {"image": image, "image_embeddings": z.numpy(), "feature_tokens": tokens.numpy(), **prompts, "mask_logits": logits.numpy(), "iou": iou.numpy()}
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    for name, array in arrays.items():
        np.ascontiguousarray(array, dtype=np.float32).tofile(ref / f"{name}.bin")
    (ref / "shapes.json").write_text(json.dumps({k: list(v.shape) for k, v in arrays.items()}))


if __name__ == "__main__":
    main()
