"""Inference-time fixes for a wrong detector box, measured on a `lite` checkpoint (models/README, "the
PH2 target"): the detector's top box (as shipped), the best of its top-k boxes (non-maximum
suppression at IoU 0.5) by the decoder's predicted IoU or by detector score x predicted IoU, an
oracle best-of-k by the true Dice (not usable; the ceiling), and a second decoder pass prompted by
the first mask's box (+5 % per side). Dice at native resolution, no clean-up, as `eval` computes it.
Run it on a validation split: that is where such a choice is made.

usage: PYTHONPATH=models models/.venv/bin/python bench/tools/box_candidates.py \
    --model models/runs/ph2-lite/segment-best.pt --dataset ph2 --split val [--k 3] [--json]
"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from ldfsam_models.data import read_raw, record_image01
from ldfsam_models.evaluate import TorchPredictor, read_reference, to_input, to_native
from ldfsam_models.inputs import model_inputs
from ldfsam_models.losses import decode_distances, distances_to_boxes, make_anchors
from ldfsam_models.metrics import segmentation_metrics
from ldfsam_models.train import dataset_splits


def box_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    lt, rb = torch.max(a[:2], b[:2]), torch.min(a[2:], b[2:])
    inter = float((rb - lt).clamp(min=0).prod())
    area = lambda t: float((t[2:] - t[:2]).clamp(min=0).prod())  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def top_boxes(boxes: torch.Tensor, scores: torch.Tensor, k: int, iou: float = 0.5) -> list:
    """Indices of the k highest-scoring boxes, each overlapping the ones kept by less than `iou`."""
    keep: list = []
    for i in scores.argsort(descending=True).tolist():
        if all(box_iou(boxes[i], boxes[j]) < iou for j in keep):
            keep.append(i)
        if len(keep) == k:
            break
    return keep


class Candidates:
    def __init__(self, checkpoint: str) -> None:
        self.predictor = TorchPredictor(checkpoint)
        self.model = self.predictor.graph.model.eval()
        self.config = self.predictor.config

    def _to_input_frame(self, masks: torch.Tensor) -> np.ndarray:
        s = self.config.image_size
        if masks.shape[-1] != s:
            masks = F.interpolate(masks, scale_factor=s / (4 * self.config.grid), mode="bilinear", align_corners=False)
        return masks[:, 0].numpy()

    @torch.no_grad()
    def __call__(self, x: np.ndarray, k: int):
        """The top-k boxes' masks (input frame), predicted IoUs, detector scores; and the embedding."""
        m = self.model
        sam, det = model_inputs(torch.from_numpy(x[None]), self.config)
        z, tokens, aux = m.embed(sam, det)
        head = m.detector.model[22]
        box_logits, cls_logits = head([aux["p3"], aux["p4"], aux["p5"]])
        points, strides = make_anchors(int(det.shape[-1]))
        boxes = distances_to_boxes(decode_distances(box_logits, head.reg_max), points, strides)[0]
        scores = cls_logits.sigmoid().amax(1)[0]
        keep = top_boxes(boxes, scores, k)
        side = m.prompt_encoder.input_image_size[0]
        prompts = (boxes[keep] * (side / det.shape[-1])).clamp(0, side)
        n = len(keep)
        masks, iou, _ = m.decode(z.expand(n, -1, -1, -1), tokens.expand(n, -1, -1), boxes=prompts)
        return self._to_input_frame(masks), iou[:, 0].numpy(), scores[keep].numpy(), (z, tokens)

    @torch.no_grad()
    def refine(self, embedding, logits: np.ndarray, margin: float = 0.05) -> np.ndarray:
        """A second decoder pass prompted by the box of `logits`' mask, widened by `margin` per side."""
        ys, xs = np.nonzero(logits > 0)
        if len(xs) == 0:
            return logits
        w, h = xs.max() - xs.min(), ys.max() - ys.min()
        box = [xs.min() - margin * w, ys.min() - margin * h, xs.max() + 1 + margin * w, ys.max() + 1 + margin * h]
        z, tokens = embedding
        prompt = torch.tensor([box], dtype=torch.float32).clamp(0, self.config.image_size)
        masks, _, _ = self.model.decode(z, tokens, boxes=prompt)
        return self._to_input_frame(masks)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a lite training checkpoint (.pt)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    candidates = Candidates(args.model)
    p = candidates.predictor
    variants: dict = {}
    cases = []
    for r in dataset_splits(args.dataset, None, 1)[args.split]:
        raw, ref = read_raw(r.image), read_reference(r.mask)
        masks, ious, scores, embedding = candidates(to_input(record_image01(r, p.intensity, raw), p.size, p.fit), args.k)

        def dice(logits: np.ndarray) -> float:
            pred = to_native(logits[None], raw.shape[:2], p.fit) > 0
            return segmentation_metrics(pred, ref, r.pixel_spacing_mm)["dice"]

        d = [dice(mk) for mk in masks]
        row = {
            "top box": d[0],
            f"best of {args.k} by predicted IoU": d[int(np.argmax(ious))],
            f"best of {args.k} by score x predicted IoU": d[int(np.argmax(scores * ious))],
            f"best of {args.k} by true Dice (oracle)": max(d),
            "second pass on the first mask's box": dice(candidates.refine(embedding, masks[0])),
        }
        for name, value in row.items():
            variants.setdefault(name, []).append(value)
        cases.append({"id": r.id, "scores": scores.tolist(), "predictedIou": ious.tolist(), "dice": d, **row})
        if not args.json:
            print(f"{r.id:10s} scores {np.round(scores, 3)} predicted IoU {np.round(ious, 3)} Dice {np.round(d, 4)}", flush=True)
    means = {name: float(np.mean(v)) for name, v in variants.items()}
    if args.json:
        print(json.dumps({"model": args.model, "dataset": args.dataset, "split": args.split, "meanDice": means, "cases": cases}, indent=2))
    else:
        for name, value in means.items():
            print(f"{name:45s} {value:.4f}")


if __name__ == "__main__":
    main()
