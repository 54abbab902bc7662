"""Evaluation of a checkpoint or an exported model folder on a data split, the way the server runs it.

Per case: the image's 8-bit values go to [0, 1] by the manifest's intensity policy (a checkpoint:
value / 255), are resized bilinearly (half-pixel centres, no antialiasing) to the input size, run
through the model (an exported folder through onnxruntime, a checkpoint through the same
`SegmentationGraph` PyTorch exports), and the logits are resized bilinearly back to the image's
native rows x columns and thresholded at 0 (the manifest's postprocessing). Dice, IoU, HD95 and ASSD
are computed at native resolution against the reference mask (distances in mm where the data set
gives the pixel size, HC18; else pixels), with bootstrap 95 % intervals of the means. Cases whose
HD95/ASSD is infinite (an empty prediction) are counted separately and left out of the distance
means. Overlay PNGs show the image, the reference contour (green), the predicted contour (yellow),
false positives (red tint) and false negatives (blue tint).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import Record, apply_intensity, read_raw, record_image01  # noqa: F401 (read_raw, apply_intensity: re-exported)
from .inputs import fitted_size
from .metrics import bootstrap_ci, segmentation_metrics, surface
from .postprocess import apply_postprocessing

MODELS_DIR = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# Predictors: (B, 3, S, S) float32 in [0, 1] -> (B, 1, S, S) logits
# --------------------------------------------------------------------------------------------------


class OnnxPredictor:
    def __init__(self, folder: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "model.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.folder / self.manifest["files"][0]["path"]), options, providers=["CPUExecutionProvider"])
        self.size = int(self.manifest["preprocessing"]["inputSize"])
        self.fit = self.manifest["preprocessing"].get("fit", "stretch")
        self.intensity = self.manifest["preprocessing"]["intensity"]
        self.threshold = float(self.manifest["postprocessing"]["threshold"])
        self.postprocessing = self.manifest["postprocessing"]  # clean-ups, applied as the server does
        self.output = self.manifest["postprocessing"]["output"]
        self.description = f"onnxruntime {self.folder / 'model.onnx'}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {"image": x.astype(np.float32)})[0]


class TorchPredictor:
    """A training checkpoint through the export's SegmentationGraph; `ablate` zeroes branches:
    'embedding' (the ViT's image embedding), 'dfp' (the Dense Feature Prompt), 'sfp' (the Sparse
    Feature Prompt tokens are dropped)."""

    def __init__(self, checkpoint: Path, ablate: Sequence[str] = ()) -> None:
        from .configs import build_ldfsam, get_config
        from .export import SegmentationGraph

        ck = torch.load(checkpoint, map_location="cpu")
        self.config = get_config(ck.get("config", "tiny"))
        model = build_ldfsam(self.config)
        model.load_state_dict(ck["model"])
        if "embedding" in ablate:
            model.image_encoder.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
        prompts = ck.get("prompts", {})  # how the checkpoint was trained (prompt ablations)
        model.use_dense_prompt = prompts.get("dense", True) and "dfp" not in ablate
        model.use_sparse_prompt = prompts.get("sparse", True) and "sfp" not in ablate
        model.use_box_prompt = prompts.get("box", False) or self.config.box_prompt
        self.graph = SegmentationGraph(model, self.config).eval()
        self.size = self.config.image_size
        self.fit = self.config.resize
        # The policy the run trained with (train --intensity, in its summary.json), else fixed 255.
        summary = Path(checkpoint).parent / "summary.json"
        options = json.loads(summary.read_text()).get("options", {}) if summary.exists() else {}
        self.intensity = options.get("intensity") or {"default": {"kind": "fixed", "max": 255}}
        self.threshold = 0.0
        self.postprocessing = {}
        self.description = f"PyTorch checkpoint {checkpoint}" + (f" (ablated: {', '.join(ablate)})" if ablate else "")

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.graph(torch.from_numpy(x))[0].numpy()


def load_predictor(model: str, ablate: Sequence[str] = ()):
    p = Path(model)
    if p.is_dir():
        if ablate:
            raise ValueError("--ablate needs a checkpoint (.pt), not an exported folder")
        return OnnxPredictor(p)
    if p.suffix == ".pt" and p.exists():
        return TorchPredictor(p, ablate)
    raise FileNotFoundError(f"{model}: neither a model folder (model.json + model.onnx) nor a .pt checkpoint")


# --------------------------------------------------------------------------------------------------
# Preprocessing as the server does it
# --------------------------------------------------------------------------------------------------


def to_input(image01: np.ndarray, size: int, fit: str = "stretch") -> np.ndarray:
    """(H, W, 3) in [0, 1] -> (3, S, S): bilinear with half-pixel centres, no antialiasing, into the
    whole input ("stretch") or its top-left fitted part with zeros around ("longest-side-pad")."""
    rows, columns = fitted_size(image01.shape[0], image01.shape[1], size, fit)
    t = torch.from_numpy(np.ascontiguousarray(image01)).permute(2, 0, 1)[None]
    resized = F.interpolate(t, size=(rows, columns), mode="bilinear", align_corners=False)[0].numpy()
    if (rows, columns) == (size, size):
        return resized
    out = np.zeros((3, size, size), dtype=resized.dtype)
    out[:, :rows, :columns] = resized
    return out


def to_native(logits: np.ndarray, shape, fit: str = "stretch") -> np.ndarray:
    """(1, S, S) logits -> (H, W) logits, bilinear (the server's postprocessing): the fitted part of the
    input is what is resized back."""
    rows, columns = fitted_size(shape[0], shape[1], logits.shape[-1], fit)
    t = torch.from_numpy(np.ascontiguousarray(logits[..., :rows, :columns]))[None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def read_reference(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def overlay(raw: np.ndarray, ref: np.ndarray, pred: np.ndarray) -> Image.Image:
    """Image (grey-dimmed) with FP red, FN blue, reference contour green, prediction contour yellow."""
    base = raw.astype(np.float32)
    if base.max() > 255:
        base = base / base.max() * 255
    out = base * 0.85
    fp, fn = pred & ~ref, ref & ~pred
    out[fp] = 0.5 * out[fp] + 0.5 * np.array([255, 40, 40])
    out[fn] = 0.5 * out[fn] + 0.5 * np.array([40, 90, 255])
    # Thicken contours to 2 px so they stay visible on 800-px images.
    def thick(m):
        s = surface(m)
        s2 = s.copy()
        s2[1:] |= s[:-1]
        s2[:, 1:] |= s[:, :-1]
        return s2

    out[thick(ref)] = [0, 230, 0]
    out[thick(pred)] = [255, 230, 0]
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def _overlay_cases(rows: Sequence[dict], n: int) -> List[str]:
    """The n // 2 lowest-Dice cases, then the first cases of the split up to n in all."""
    chosen = [row["id"] for row in sorted(rows, key=lambda row: row["dice"])[: n // 2]]
    for row in rows:
        if len(chosen) >= n:
            break
        if row["id"] not in chosen:
            chosen.append(row["id"])
    return chosen


def evaluate(predictor, records: Sequence[Record], overlays: Optional[Path] = None, num_overlays: int = 0, log=None) -> dict:
    rows: List[dict] = []
    preds = {}
    t0 = time.time()
    for i, r in enumerate(records):
        raw = read_raw(r.image)
        x = to_input(record_image01(r, predictor.intensity, raw), predictor.size, predictor.fit)
        logits = predictor(x[None])[0]
        pred = apply_postprocessing(to_native(logits, raw.shape[:2], predictor.fit) > predictor.threshold, predictor.postprocessing)
        ref = read_reference(r.mask)
        m = segmentation_metrics(pred, ref, r.pixel_spacing_mm)
        rows.append({"id": r.id, **m})
        if overlays is not None and num_overlays > 0:
            preds[r.id] = (raw, ref, pred)
            if len(preds) > 4 * num_overlays:  # keep memory bounded: only candidates matter
                keep = set(_overlay_cases(rows, num_overlays))
                preds = {k: v for k, v in preds.items() if k in keep}
        if log:
            log(f"  {r.id:12s} dice {m['dice']:.4f} iou {m['iou']:.4f} hd95 {m['hd95']:.3f} assd {m['assd']:.3f}")
    summary = summarise(rows, records, time.time() - t0)
    written = []
    if overlays is not None and num_overlays > 0 and rows:
        overlays.mkdir(parents=True, exist_ok=True)
        for rid in _overlay_cases(rows, num_overlays):
            if rid in preds:
                path = overlays / f"{rid}.png"
                overlay(*preds[rid]).save(path)
                written.append(str(path))
    return {"model": predictor.description, "summary": summary, "cases": rows, "overlays": written}


def summarise(rows: Sequence[dict], records: Sequence[Record], seconds: float) -> dict:
    """Means with bootstrap 95 % intervals and medians of the per-case metrics; distance means over
    the cases with finite values (an empty prediction's HD95/ASSD is infinite: counted apart)."""
    unit = "mm" if records and all(r.pixel_spacing_mm is not None for r in records) else "px"
    summary = {"cases": len(rows), "unit": unit, "seconds": round(seconds, 1)}
    for key in ("dice", "iou", "hd95", "assd"):
        values = np.array([row[key] for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        entry = {"infiniteCases": int((~np.isfinite(values)).sum())} if key in ("hd95", "assd") else {}
        if len(finite):
            ci = bootstrap_ci(finite)
            entry.update(mean=ci.mean, ci95=[ci.low, ci.high], median=float(np.median(finite)))
        else:
            entry.update(mean=None, ci95=None, median=None)
        if key in ("hd95", "assd"):
            entry["unit"] = unit
        summary[key] = entry
    return summary


def format_summary(result: dict) -> str:
    s = result["summary"]
    lines = [f"{result['model']}: {s['cases']} cases ({s['seconds']}s)"]
    for key in ("dice", "iou", "hd95", "assd"):
        e = s[key]
        unit = f" {e['unit']}" if "unit" in e else ""
        if e["mean"] is None:
            lines.append(f"  {key:5s} n/a ({e.get('infiniteCases', 0)} infinite cases)")
            continue
        extra = f" ({e['infiniteCases']} infinite cases left out)" if e.get("infiniteCases") else ""
        lines.append(f"  {key:5s} {e['mean']:.4f}{unit} [95% CI {e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}] median {e['median']:.4f}{extra}")
    if result.get("overlays"):
        lines.append(f"  overlays: {len(result['overlays'])} PNGs in {Path(result['overlays'][0]).parent}")
    return "\n".join(lines)


def _check_fold(model: Path, fold: Optional[str], split: str) -> None:
    """A checkpoint trained on a cross-validation fold is evaluated on train or val only with that
    fold's splits (the project's val subjects are part of its training folds); its run's summary.json
    says which fold it was."""
    summary = model.parent / "summary.json"
    if model.suffix != ".pt" or split == "test" or not summary.exists():
        return
    trained = json.loads(summary.read_text()).get("options", {}).get("fold")
    if trained != fold:
        raise SystemExit(
            f"{model} was trained {'on fold ' + trained if trained else 'on the project split'}: evaluate its {split} split "
            f"{'with --fold ' + trained if trained else 'without --fold'}"
        )


def main_eval(args) -> int:
    from .train import dataset_splits

    if getattr(args, "prompt", None):
        return _main_eval_prompted(args)
    fold = getattr(args, "fold", None)
    _check_fold(Path(args.model), fold, args.split)
    predictor = load_predictor(args.model, args.ablate or ())
    if getattr(args, "postprocessing", None):  # try clean-ups (chosen on validation) before publishing them
        predictor.postprocessing = {**predictor.postprocessing, **json.loads(args.postprocessing)}
    records = dataset_splits(args.dataset, args.data, getattr(args, "segment_number", 1), fold=fold)[args.split]
    if args.limit:
        records = records[: args.limit]
    overlays = None
    if args.num_overlays > 0:
        if args.overlays:
            overlays = Path(args.overlays)
        else:
            p = Path(args.model)
            base = p.parent if p.suffix == ".pt" else MODELS_DIR / "runs" / "eval" / p.name
            overlays = base / f"overlays-{args.dataset}-{args.split}"
    result = evaluate(predictor, records, overlays, args.num_overlays, log=None if args.json else print)
    result.update(dataset=args.dataset, split=args.split, **({"fold": fold} if fold else {}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_summary(result))
    return 0


def _main_eval_prompted(args) -> int:
    from .prompted import PromptablePredictor, evaluate_prompted
    from .train import dataset_splits

    records = dataset_splits(args.dataset, args.data, getattr(args, "segment_number", 1), fold=getattr(args, "fold", None))[args.split][: args.limit or None]
    result = evaluate_prompted(PromptablePredictor(Path(args.model)), records, args.prompt, log=None if args.json else print)
    result.update(dataset=args.dataset, split=args.split, overlays=[])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else format_summary(result) + f"\n  prompt: {result['summary']['prompt']}")
    return 0
