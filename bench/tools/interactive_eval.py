"""The Python side of `ldfsam eval-interactive`: the split's images with the prompts the Python
evaluation makes from their reference masks (ldfsam_models.prompted.reference_prompt: the reference's
bounding box + 5% per side, or one positive point at its centroid), and the scoring of the masks the
server's API answered, with the same metrics code as `python -m ldfsam_models eval`.

  prompts --dataset hc18|ph2 [--split test] [--limit N]   JSON: [{id, image, mask, box, point}]
  score --dataset ... --masks FILE                         FILE: {"box"|"point": {id: bits (base64, LSB first)}}
"""
import argparse
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

from ldfsam_models.evaluate import read_reference, summarise  # noqa: E402
from ldfsam_models.metrics import segmentation_metrics  # noqa: E402
from ldfsam_models.prompted import prompt_description, reference_prompt  # noqa: E402
from ldfsam_models.train import dataset_splits  # noqa: E402


def records(args):
    return dataset_splits(args.dataset, None)[args.split][: args.limit or None]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["prompts", "score"])
    p.add_argument("--dataset", required=True, choices=["hc18", "ph2"])
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--masks")
    args = p.parse_args()
    recs = records(args)
    if args.what == "prompts":
        out = []
        for r in recs:
            ref = read_reference(r.mask)
            _, box = reference_prompt(ref, "box")
            points, _ = reference_prompt(ref, "point")
            out.append({"id": r.id, "image": str(r.image), "mask": str(r.mask), "box": [float(v) for v in box], "point": [points[0][0], points[0][1]]})
        json.dump(out, sys.stdout)
        return 0
    masks = json.load(open(args.masks))
    result = {}
    for prompt, by_id in masks.items():
        rows = []
        t0 = time.time()
        for r in recs:
            ref = read_reference(r.mask)
            h, w = ref.shape
            bits = np.unpackbits(np.frombuffer(base64.b64decode(by_id[r.id]), np.uint8), bitorder="little")[: h * w]
            rows.append({"id": r.id, **segmentation_metrics(bits.reshape(h, w).astype(bool), ref, r.pixel_spacing_mm)})
        summary = summarise(rows, recs, time.time() - t0)
        summary["prompt"] = prompt_description(prompt)
        result[prompt] = {"summary": summary, "cases": [{"id": x["id"], "dice": x["dice"]} for x in rows]}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
