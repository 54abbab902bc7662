"""How well a promptable model's predicted IoU tells "the structure is in this box" from "it is not",
which is what stops a propagation when it runs past the end of a structure (LDFSAM_INTERACTIVE_MIN_IOU).

For each image of a split: the reference mask's box + 5% per side (present), and the same box moved
to where it overlaps none of the reference (absent: the slice after the structure ended, with the
previous slice's box). Prints the predicted IoU of both, the Dice of the present masks, and for
candidate thresholds the share of present boxes kept and of absent ones stopped.

usage: python bench/tools/propagation_stop.py --model <folder> --dataset hc18|ph2 [--split val] [--limit N] [--json]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

from ldfsam_models.data import read_raw, record_image01  # noqa: E402
from ldfsam_models.evaluate import read_reference, to_input, to_native  # noqa: E402
from ldfsam_models.metrics import segmentation_metrics  # noqa: E402
from ldfsam_models.prompted import PromptablePredictor, reference_prompt, to_input_frame  # noqa: E402
from ldfsam_models.train import dataset_splits  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def moved_box(box, ref):
    """The box shifted (right, left, down or up) to the place where it overlaps the reference least, inside the image."""
    h, w = ref.shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    best = None
    for nx0, ny0 in ((w - 1 - bw, y0), (0, y0), (x0, h - 1 - bh), (x0, 0), (0, 0), (w - 1 - bw, h - 1 - bh)):
        nx0, ny0 = min(max(0.0, nx0), w - 1 - bw), min(max(0.0, ny0), h - 1 - bh)
        cand = [nx0, ny0, nx0 + bw, ny0 + bh]
        overlap = ref[int(ny0) : int(ny0 + bh) + 1, int(nx0) : int(nx0 + bw) + 1].sum()
        if best is None or overlap < best[0]:
            best = (overlap, cand)
    return best[1], int(best[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, choices=["hc18", "ph2"])
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    predictor = PromptablePredictor(Path(args.model))
    records = dataset_splits(args.dataset, None)[args.split][: args.limit or None]
    present, absent, dices, overlaps = [], [], [], []
    for r in records:
        raw = read_raw(r.image)
        ref = read_reference(r.mask)
        emb = predictor.embed(to_input(record_image01(r, predictor.intensity, raw), predictor.size, predictor.fit)[None])
        _, box = reference_prompt(ref, "box")
        for kind, b in (("present", box), ("absent", moved_box(box, ref)[0])):
            _, fb = to_input_frame([], b, raw.shape[:2], predictor.size, predictor.fit)
            logits, iou = predictor.decode(emb, [], fb)
            if kind == "present":
                pred = to_native(logits[None], raw.shape[:2], predictor.fit) > predictor.threshold
                dices.append(segmentation_metrics(pred, ref, r.pixel_spacing_mm)["dice"])
                present.append(iou)
            else:
                absent.append(iou)
                overlaps.append(moved_box(box, ref)[1])
    present, absent = np.array(present), np.array(absent)
    table = [
        {"minIou": t, "presentKept": float((present >= t).mean()), "absentStopped": float((absent < t).mean())}
        for t in THRESHOLDS
    ]
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "images": len(records),
        "presentDiceMean": float(np.mean(dices)),
        "presentIou": {"mean": float(present.mean()), "p5": float(np.percentile(present, 5)), "min": float(present.min())},
        "absentIou": {"mean": float(absent.mean()), "p95": float(np.percentile(absent, 95)), "max": float(absent.max())},
        "absentBoxesTouchingReference": int(sum(o > 0 for o in overlaps)),
        "thresholds": table,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=1)
    else:
        print(f"{args.dataset} {args.split}: {len(records)} images, present Dice {result['presentDiceMean']:.3f}")
        print(f"  predicted IoU present: mean {present.mean():.3f}, 5th percentile {result['presentIou']['p5']:.3f}, min {present.min():.3f}")
        print(f"  predicted IoU absent:  mean {absent.mean():.3f}, 95th percentile {result['absentIou']['p95']:.3f}, max {absent.max():.3f}")
        for row in table:
            print(f"  minIou {row['minIou']:.2f}: present kept {row['presentKept']:.1%}, absent stopped {row['absentStopped']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
