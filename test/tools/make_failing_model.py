"""A model that loads and validates but fails inside onnxruntime when given more than one slice
(a Reshape to batch 1): the ONNX-failure case of the tests. Its manifest is the threshold fixture's
with its own name, file hash and size.

usage: python make_failing_model.py --out DIR
"""
import argparse
import json
import pathlib

import torch
from torch import nn

from ldfsam_models.manifest import sha256_of

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "model-threshold" / "model.json"


class FailsOnBatches(nn.Module):
    def forward(self, image):
        one = image.reshape(1, 3, 256, 256)  # fine for one slice, an error for two
        value = one.mean(dim=1, keepdim=True) + image[:, :1] * 0.0  # outputs keep the dynamic batch axis
        return (value - 0.5) * 20.0, torch.ones_like(value[:, :, 0, 0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            FailsOnBatches().eval(),
            (torch.rand(1, 3, 256, 256),),
            str(path),
            opset_version=17,
            input_names=["image"],
            output_names=["mask_logits", "iou"],
            dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"}, "iou": {0: "batch"}},
        )
    manifest = json.loads(FIXTURE.read_text())
    manifest["name"] = "fails-on-batches"
    manifest["description"] = "Test model: fails inside onnxruntime for batches of more than one slice."
    manifest["files"] = [{"path": "model.onnx", "sha256": sha256_of(path), "bytes": path.stat().st_size, "role": "segmentation"}]
    (out / "model.json").write_text(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
