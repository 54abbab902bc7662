"""Evaluation of a promptable export (encoder.onnx + decoder.onnx) the way the interactive mode runs it:
each test image through the manifest's preprocessing, one prompt made from its reference mask - the
reference's bounding box with a margin, or one positive point at its centroid - and the decoder's mask
back at native size, against the reference. Prompts are given in native pixel (x, y) and scaled into
the model's input frame as the server does: multiplied by fitted size / native size (SAM's convention;
the prompt encoder adds the half-pixel)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data import Record, read_raw, record_image01
from .evaluate import read_reference, summarise, to_input, to_native
from .inputs import fitted_size
from .metrics import segmentation_metrics

PROMPTS = ("box", "point")
BOX_MARGIN = 0.05  # of the box's width / height, per side


class PromptablePredictor:
    def __init__(self, folder: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "model.json").read_text())
        section = self.manifest.get("promptable")
        if section is None:
            raise ValueError(f"{folder} has no promptable export (encoder.onnx + decoder.onnx)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.encoder = ort.InferenceSession(str(self.folder / section["encoder"]["file"]), options, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(self.folder / section["decoder"]["file"]), options, providers=["CPUExecutionProvider"])
        self.labels = section["prompts"]["labels"]
        self.encoder_outputs = [t["name"] for t in section["encoder"]["outputs"]]
        pre = self.manifest["preprocessing"]
        self.size, self.fit, self.intensity = int(pre["inputSize"]), pre.get("fit", "stretch"), pre["intensity"]
        self.threshold = float(self.manifest["postprocessing"]["threshold"])
        self.description = f"onnxruntime {self.folder} (encoder.onnx + decoder.onnx)"

    def embed(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        return dict(zip(self.encoder_outputs, self.encoder.run(None, {"image": x.astype(np.float32)})))

    def decode(self, embedding: Dict[str, np.ndarray], points: Sequence[Tuple[float, float, bool]], box: Optional[Sequence[float]],
               mask_input: Optional[np.ndarray] = None) -> Tuple[np.ndarray, float]:
        """Prompts in the input frame; returns (S, S) logits and the predicted IoU."""
        coords = [(x, y) for x, y, _ in points]
        labels = [self.labels["positive"] if positive else self.labels["negative"] for _, _, positive in points]
        if box is not None:
            coords += [(box[0], box[1]), (box[2], box[3])]
            labels += [self.labels["boxTopLeft"], self.labels["boxBottomRight"]]
        else:
            coords.append((0.0, 0.0))
            labels.append(self.labels["padding"])
        s = self.size
        feeds = {
            **embedding,
            "point_coords": np.array([coords], dtype=np.float32),
            "point_labels": np.array([labels], dtype=np.float32),
            "mask_input": (mask_input if mask_input is not None else np.zeros((s, s), np.float32)).reshape(1, 1, s, s).astype(np.float32),
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], dtype=np.float32),
        }
        logits, iou = self.decoder.run(None, feeds)
        return logits[0, 0], float(iou[0, 0])


def reference_prompt(mask: np.ndarray, kind: str) -> Tuple[List[Tuple[float, float, bool]], Optional[List[float]]]:
    """Native-pixel prompt from a reference mask: its bounding box (inclusive pixel indices, as MedSAM
    takes them) widened by BOX_MARGIN per side and clipped to the image, or one positive point at its
    centroid (the nearest mask pixel when the centroid falls outside it)."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise ValueError("the reference mask is empty: no prompt can be made from it")
    if kind == "box":
        x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
        mx, my = BOX_MARGIN * (x1 - x0 + 1), BOX_MARGIN * (y1 - y0 + 1)
        h, w = mask.shape
        return [], [max(0.0, x0 - mx), max(0.0, y0 - my), min(w - 1.0, x1 + mx), min(h - 1.0, y1 + my)]
    if kind == "point":
        cy, cx = rows.mean(), cols.mean()
        if not mask[int(round(cy)), int(round(cx))]:
            i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
            cy, cx = rows[i], cols[i]
        return [(float(round(cx)), float(round(cy)), True)], None
    raise ValueError(f"unknown prompt {kind!r}; known: {', '.join(PROMPTS)}")


def to_input_frame(points, box, shape: Tuple[int, int], size: int, fit: str):
    """Native (x, y) -> the model input's frame: scaled by fitted / native per axis."""
    rows, cols = fitted_size(shape[0], shape[1], size, fit)
    sx, sy = cols / shape[1], rows / shape[0]
    pts = [(x * sx, y * sy, positive) for x, y, positive in points]
    return pts, (None if box is None else [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy])


def evaluate_prompted(predictor: PromptablePredictor, records: Sequence[Record], prompt: str, log=None) -> dict:
    rows: List[dict] = []
    t0 = time.time()
    for r in records:
        raw = read_raw(r.image)
        ref = read_reference(r.mask)
        embedding = predictor.embed(to_input(record_image01(r, predictor.intensity, raw), predictor.size, predictor.fit)[None])
        points, box = to_input_frame(*reference_prompt(ref, prompt), raw.shape[:2], predictor.size, predictor.fit)
        logits, iou = predictor.decode(embedding, points, box)
        pred = to_native(logits[None], raw.shape[:2], predictor.fit) > predictor.threshold
        m = segmentation_metrics(pred, ref, r.pixel_spacing_mm)
        rows.append({"id": r.id, "predictedIou": iou, **m})
        if log:
            log(f"  {r.id:12s} dice {m['dice']:.4f} (predicted IoU {iou:.3f})")
    summary = summarise(rows, records, time.time() - t0)
    summary["prompt"] = prompt_description(prompt)
    return {"model": predictor.description, "summary": summary, "cases": rows}


def prompt_description(prompt: str) -> str:
    if prompt == "box":
        return f"the reference's bounding box + {BOX_MARGIN:.0%} of its size per side"
    return "one positive point at the reference's centroid"
