"""Inference-time fixes for a wrong detector box, measured on a `lite` checkpoint (models/README, "the
PH2 target" and "PH2: inference-time additions within the budget"): the detector's top box (as
shipped), the best of its top-k boxes (non-maximum suppression at IoU 0.5) by the decoder's predicted
IoU or by detector score x predicted IoU, an oracle best-of-k by the true Dice (not usable; the
ceiling), a second decoder pass prompted by the first mask's box (+5 % per side), and the detector
run on the horizontally flipped slice too, its top box flipped back and averaged with the top box
("hflip mean") or the higher-scoring of the two taken ("hflip best"). Dice at native resolution as
`eval` computes it, after `--postprocessing` (the manifest's clean-ups; none by default). Run it on a
validation split (`--fold K/N` for a cross-validation checkpoint's own fold): that is where such a
choice is made.

usage: PYTHONPATH=models models/.venv/bin/python bench/tools/box_candidates.py \
    --model models/runs/ph2-lite/segment-best.pt --dataset ph2 --split val [--fold K/N] [--k 3] \
    [--postprocessing '{"fillHoles": true}'] [--json]
"""
import argparse
import json

import numpy as np
import torch

from ldfsam_models.data import read_raw, record_image01
from ldfsam_models.evaluate import TorchPredictor, read_reference, to_input, to_native
from ldfsam_models.export import SECOND_PASS_MARGIN, mask_box
from ldfsam_models.inputs import model_inputs
from ldfsam_models.losses import decode_distances, distances_to_boxes, make_anchors
from ldfsam_models.metrics import segmentation_metrics
from ldfsam_models.postprocess import apply_postprocessing
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
        return self.predictor.graph.input_frame(masks)[:, 0].numpy()

    @torch.no_grad()
    def __call__(self, x: np.ndarray, k: int):
        """The top-k boxes' masks (input frame), predicted IoUs, detector scores, the embedding (z,
        feature tokens) and the boxes as prompted (SAM's input frame), highest score first."""
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
        return self._to_input_frame(masks), iou[:, 0].numpy(), scores[keep].numpy(), (z, tokens), prompts

    @torch.no_grad()
    def flipped_box(self, x: np.ndarray):
        """The detector's top box on the horizontally flipped slice, flipped back into the slice's
        frame (x -> side - x), and its score."""
        m = self.model
        _, det = model_inputs(torch.from_numpy(x[None]), self.config)
        p3, p4, p5 = m.detector.features(torch.flip(det, [3]))
        head = m.detector.model[22]([p3, p4, p5])
        box = m.detector_box(p3, p4, p5, int(det.shape[-1]), head)[0]
        side = m.prompt_encoder.input_image_size[0]
        return torch.stack([side - box[2], box[1], side - box[0], box[3]]), float(head[1].sigmoid().amax())

    @torch.no_grad()
    def with_box(self, embedding, box: torch.Tensor) -> np.ndarray:
        z, tokens = embedding
        masks, _, _ = self.model.decode(z, tokens, boxes=box[None])
        return self._to_input_frame(masks)[0]

    @torch.no_grad()
    def refine(self, embedding, logits: np.ndarray) -> np.ndarray:
        """A second decoder pass prompted by the box of `logits`' mask, as `publish --second-pass`
        computes it inside model.onnx (export.mask_box); an empty mask is kept."""
        box, found = mask_box(torch.from_numpy(logits)[None, None], SECOND_PASS_MARGIN, float(self.config.image_size))
        return self.with_box(embedding, box[0]) if bool(found[0]) else logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a lite training checkpoint (.pt)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--fold", help="K/N: the cross-validation fold the checkpoint validated on (train --fold)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--postprocessing", default="{}", help="the manifest's clean-ups (JSON), applied to every variant's mask")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    candidates = Candidates(args.model)
    post = json.loads(args.postprocessing)
    variants: dict = {}
    cases = []
    for r in dataset_splits(args.dataset, None, 1, None, args.fold)[args.split]:
        row, extra = case_row(candidates, r, args.k, post)
        for name, value in row.items():
            variants.setdefault(name, []).append(value)
        cases.append({"id": r.id, **extra, **row})
        if not args.json:
            scores, ious, dice = (np.round(extra[k], n) for k, n in (("scores", 3), ("predictedIou", 3), ("dice", 4)))
            print(f"{r.id:10s} scores {scores} predicted IoU {ious} Dice {dice}", flush=True)
    means = {name: float(np.mean(v)) for name, v in variants.items()}
    if args.json:
        print(json.dumps({"model": args.model, "dataset": args.dataset, "split": args.split, "fold": args.fold, "postprocessing": post,
                          "meanDice": means, "cases": cases}, indent=2))
    else:
        for name, value in means.items():
            print(f"{name:45s} {value:.4f}")


def case_row(candidates: Candidates, r, k: int, post: dict):
    """One image: each variant's Dice, and the detector's and decoder's figures behind them."""
    p = candidates.predictor
    raw, ref = read_raw(r.image), read_reference(r.mask)
    x = to_input(record_image01(r, p.intensity, raw), p.size, p.fit)
    masks, ious, scores, embedding, prompts = candidates(x, k)

    def dice(logits: np.ndarray) -> float:
        pred = apply_postprocessing(to_native(logits[None], raw.shape[:2], p.fit) > 0, post)
        return segmentation_metrics(pred, ref, r.pixel_spacing_mm)["dice"]

    top_box, top_score = prompts[0], float(scores[0])
    flipped, flipped_score = candidates.flipped_box(x)
    d = [dice(mk) for mk in masks]
    row = {
        "top box": d[0],
        f"best of {k} by predicted IoU": d[int(np.argmax(ious))],
        f"best of {k} by score x predicted IoU": d[int(np.argmax(scores * ious))],
        f"best of {k} by true Dice (oracle)": max(d),
        "second pass on the first mask's box": dice(candidates.refine(embedding, masks[0])),
        "hflip mean: mean of the top boxes of the slice and its flip": dice(candidates.with_box(embedding, (top_box + flipped) / 2)),
        "hflip best: the higher-scoring of the two top boxes": d[0] if top_score >= flipped_score else dice(candidates.with_box(embedding, flipped)),
    }
    extra = {"scores": scores.tolist(), "predictedIou": ious.tolist(), "dice": d, "topBox": top_box.tolist(),
             "flippedBox": flipped.tolist(), "flippedScore": flipped_score}
    return row, extra


if __name__ == "__main__":
    main()
