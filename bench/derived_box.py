"""Which box to derive from a lone click for a box-trained promptable model (the MONAI Label API's
rule for points without an ROI, server/src/interactive/volume-prompts.ts): one positive click at the
reference's centroid on test images of HC18 and PH2, prompted alone, with the box of its own mask,
with squares of several sizes around it, and with the server's rule (the square the model rates
best by predicted IoU among those whose mask holds the click). Prints the mean Dice of each.

usage: PYTHONPATH=models models/.venv/bin/python bench/derived_box.py [--model models/medsam-lite] [--limit 25]
"""
import argparse

import numpy as np

from ldfsam_models.data import read_raw, record_image01
from ldfsam_models.evaluate import read_reference, to_input, to_native
from ldfsam_models.prompted import PromptablePredictor, reference_prompt, to_input_frame
from ldfsam_models.train import dataset_splits

SCALES = (0.1, 0.2, 0.3, 0.45, 0.6)  # as DERIVED_BOX_SCALES


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2 * np.logical_and(a, b).sum() / s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="models/medsam-lite")
    p.add_argument("--limit", type=int, default=25)
    args = p.parse_args()
    pred = PromptablePredictor(args.model)
    for ds in ("hc18", "ph2"):
        res = {}
        for r in dataset_splits(ds, None)["test"][: args.limit]:
            raw, ref = read_raw(r.image), read_reference(r.mask)
            emb = pred.embed(to_input(record_image01(r, pred.intensity, raw), pred.size, pred.fit)[None])
            pts, _ = reference_prompt(ref, "point")
            h, w = raw.shape[:2]

            def run(points, box):
                p_, b_ = to_input_frame(points, box, (h, w), pred.size, pred.fit)
                logits, iou = pred.decode(emb, p_, b_)
                return to_native(logits[None], (h, w), pred.fit) > pred.threshold, iou

            alone, _ = run(pts, None)
            res.setdefault("click alone", []).append(dice(alone, ref))
            if alone.any():
                rr, cc = np.nonzero(alone)
                mx, my = 0.05 * (cc.max() - cc.min() + 1), 0.05 * (rr.max() - rr.min() + 1)
                own, _ = run(pts, [max(0, cc.min() - mx), max(0, rr.min() - my), min(w - 1, cc.max() + mx), min(h - 1, rr.max() + my)])
            else:
                own = alone
            res.setdefault("box of the click's mask", []).append(dice(own, ref))
            cx, cy, _ = pts[0]
            best = None
            for f in SCALES:
                half = f * max(h, w) / 2
                mask, iou = run(pts, [max(0, cx - half), max(0, cy - half), min(w - 1, cx + half), min(h - 1, cy + half)])
                res.setdefault(f"square {f:.0%}", []).append(dice(mask, ref))
                if mask[int(cy), int(cx)] and (best is None or iou > best[0]):
                    best = (iou, mask)
            res.setdefault("server rule (best predicted IoU)", []).append(dice(best[1], ref) if best else 0.0)
        for k, v in res.items():
            print(f"{ds:5s} {k:34s} Dice {np.mean(v):.4f} ({len(v)} images)")


if __name__ == "__main__":
    main()
