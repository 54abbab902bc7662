"""The presence decision: is the model's structure on a slice at all?

An automatic model answers every image it is given; on an image without its structure it would draw
one anyway (the ellipse clean-up turns any blob into a plausible head). The `lite` automatic graph
therefore also outputs, per slice, `presence_features` (export.PRESENCE_FEATURES: the detector's top
score, the decoder's predicted IoU, the mask's share of the input frame, the mean probability inside
the mask). This module turns them into one calibrated score and a threshold, written into model.json
as `postprocessing.presence` (the server gives a slice scoring below it no frame):

1. Items: the data set's positives (val and test splits) and negative sets, images without the
   structure, split into val and test the same way: `other-dataset` (the other shared data set,
   converted to what the model's modality looks like: PH2 to grey for an ultrasound model, HC18 as a
   grey photograph for a dermoscopy model; its own val/test splits), `shared-dicom` (every image of
   ../shared/data/dicom, by series: alternate series to val and test), `crops` (the largest part of
   each positive image that holds none of the reference mask, and that part flipped both ways) and
   `noise` (uniform, blurred and Gaussian noise, flat and gradient images). Preprocessing as
   evaluate.py does it (the manifest's intensity policy and fit, `to_input`), through the exported
   model.onnx in onnxruntime, so the features are the ones the server sees.
2. Fit (validation only): a logistic regression of presence on the features, positives against
   negatives with the negatives' weight equal to the positives' and shared equally among the sets;
   L2-regularised, on standardised features folded back into raw weights and bias.
3. Threshold (validation only): among thresholds whose gate costs at most `--max-dice-drop` mean
   Dice on the validation positives (a positive gated out counts as Dice 0) and keeps at least
   `--min-sensitivity` of them, the one with the best mean specificity over the negative sets (ties:
   the lowest). The operating point is stated on validation (where it was chosen) and measured on
   test; test never chooses anything.
4. Report (`presence eval`, model:eval style): per split, sensitivity, specificity per negative set,
   Dice on the positives with the gate off and on.

usage:
  python -m ldfsam_models presence calibrate --model FOLDER --dataset hc18 [--write]
  python -m ldfsam_models presence eval --model FOLDER --dataset hc18 [--split test]
  python -m ldfsam_models presence add-distance --model FOLDER --dataset hc18   (then calibrate: distribution.py)
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

NEGATIVE_SETS = ("other-dataset", "shared-dicom", "crops", "noise")
OTHER_DATASET = {"hc18": "ph2", "ph2": "hc18"}
SPLITS = ("val", "test")


# --------------------------------------------------------------------------------------------------
# Items: what the model is shown
# --------------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One image as the model will see it: (H, W, 3) in [0, 1] after the manifest's intensity policy."""

    set: str  # "positives" or a negative set
    split: str  # "val" or "test"
    id: str
    image01: np.ndarray
    reference: Optional[np.ndarray] = None  # the reference mask of a positive (native size)


def _grey(raw: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R BT.601) replicated to 3 channels: a colour image as a grey modality shows it."""
    y = raw[..., 0] * 0.299 + raw[..., 1] * 0.587 + raw[..., 2] * 0.114
    return np.repeat(y[..., None], 3, -1).astype(np.float32)


def _policy_image(raw: np.ndarray, intensity: Mapping[str, dict], modality: str) -> np.ndarray:
    from .data import apply_intensity

    return apply_intensity(raw, intensity, modality if modality in intensity else "default")


def model_modality(manifest: Mapping) -> str:
    """The modality the model is made for (its first named one; 'default' for a catch-all)."""
    named = [m for m in manifest["modalities"] if m != "*"]
    return named[0] if named else "default"


def positive_items(records, split: str, intensity: Mapping[str, dict]) -> Iterator[Item]:
    from .data import read_raw, record_image01
    from .evaluate import read_reference

    for r in records:
        raw = read_raw(r.image)
        yield Item("positives", split, r.id, record_image01(r, intensity, raw), read_reference(r.mask))


def other_dataset_items(dataset: str, split: str, records, intensity: Mapping[str, dict], modality: str, grey: bool) -> Iterator[Item]:
    from .data import read_raw

    for r in records:
        raw = read_raw(r.image)
        yield Item("other-dataset", split, f"{OTHER_DATASET[dataset]}:{r.id}", _policy_image(_grey(raw) if grey else raw, intensity, modality))


def _dicom_frames(path: Path) -> Iterator[Tuple[str, str, str, np.ndarray]]:
    """(series UID, modality, frame id, (H, W, 3) modality values) of every frame of a DICOM image file."""
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    ds = pydicom.dcmread(str(path))
    if "PixelData" not in ds:
        return
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    for f in range(frames):
        a = arr[f] if frames > 1 else arr
        if photometric.startswith("MONOCHROME"):
            values = apply_modality_lut(a, ds).astype(np.float32)
            if photometric == "MONOCHROME1":
                values = values.max() + values.min() - values
            rgb = np.repeat(values[..., None], 3, -1)
        elif photometric == "PALETTE COLOR":
            rgb = apply_color_lut(a, ds).astype(np.float32)
            if rgb.max() > 255:
                rgb = rgb / 257.0
        else:
            rgb = a.astype(np.float32)  # pydicom converts YBR to RGB
        yield str(ds.SeriesInstanceUID), str(ds.get("Modality", "OT")), f"{path.name}#{f + 1}", rgb


def _stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def shared_dicom_items(root: Path, split: str, intensity: Mapping[str, dict], grey: bool, log: Callable[[str], None]) -> Iterator[Item]:
    """Every image of the shared DICOM folders; whole series go to val or test (alternately, in the
    order of a hash of their UIDs), so no series is on both sides."""
    frames = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DIRFILE"):
        try:
            frames.extend(_dicom_frames(path))
        except Exception as err:  # an image pydicom cannot decode here is left out, and said so
            log(f"  shared-dicom: {path.name} left out ({type(err).__name__}: {err})")
    series = sorted({s for s, *_ in frames}, key=_stable_hash)
    side = {s: SPLITS[i % 2] for i, s in enumerate(series)}
    for uid, modality, fid, rgb in frames:
        if side[uid] == split:
            yield Item("shared-dicom", split, fid, _policy_image(_grey(rgb) if grey else rgb, intensity, modality))


def background_crop(mask: np.ndarray, margin: int = 8, min_side: int = 48) -> Optional[Tuple[int, int, int, int]]:
    """The largest strip of the image (above, below, left or right of the mask's box plus a margin)
    that holds none of the mask: (y0, y1, x0, x1), or None when every strip is thinner than min_side."""
    rows, columns = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, rows, 0, columns
    top, bottom = max(0, ys.min() - margin), min(rows, ys.max() + 1 + margin)
    left, right = max(0, xs.min() - margin), min(columns, xs.max() + 1 + margin)
    strips = [(0, top, 0, columns), (bottom, rows, 0, columns), (0, rows, 0, left), (0, rows, right, columns)]
    strips = [s for s in strips if s[1] - s[0] >= min_side and s[3] - s[2] >= min_side]
    return max(strips, key=lambda s: (s[1] - s[0]) * (s[3] - s[2])) if strips else None


def crop_items(records, split: str, intensity: Mapping[str, dict]) -> Iterator[Item]:
    from .data import read_raw
    from .evaluate import read_reference

    for r in records:
        box = background_crop(read_reference(r.mask))
        if box is None:
            continue
        y0, y1, x0, x1 = box
        raw = read_raw(r.image)[y0:y1, x0:x1]
        modality = r.meta.get("modality", "default")
        yield Item("crops", split, f"{r.id}:crop", _policy_image(raw, intensity, modality))
        yield Item("crops", split, f"{r.id}:crop-flipped", _policy_image(np.ascontiguousarray(raw[::-1, ::-1]), intensity, modality))


def noise_items(split: str, shape: Tuple[int, int], colour: bool, count: int = 16) -> Iterator[Item]:
    """Images of nothing: uniform, blurred (speckle-like) and Gaussian noise, flat grey, a gradient.
    Already in [0, 1]; val and test use different seeds."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(2025 + SPLITS.index(split))
    rows, columns = shape
    channels = 3 if colour else 1
    kinds = ("uniform", "blurred", "gaussian", "flat", "gradient")
    for k in range(count):
        kind = kinds[k % len(kinds)]
        if kind == "uniform":
            img = rng.random((rows, columns, channels))
        elif kind == "blurred":
            noise = torch.from_numpy(rng.random((1, channels, rows, columns)).astype(np.float32))
            img = F.avg_pool2d(noise, 15, stride=1, padding=7, count_include_pad=False)[0].permute(1, 2, 0).numpy()
            img = (img - img.min()) / max(1e-6, float(img.max() - img.min()))
        elif kind == "gaussian":
            img = np.clip(rng.normal(rng.uniform(0.2, 0.6), 0.15, (rows, columns, channels)), 0, 1)
        elif kind == "flat":
            img = np.full((rows, columns, channels), rng.uniform(0.05, 0.9))
        else:
            img = np.repeat(np.linspace(0, 1, columns)[None, :, None], rows, 0).repeat(channels, 2)
        img = img.astype(np.float32)
        yield Item("noise", split, f"{kind}-{k}", np.repeat(img, 3, -1) if channels == 1 else img)


# --------------------------------------------------------------------------------------------------
# Features through the exported graph
# --------------------------------------------------------------------------------------------------


class PresenceRunner:
    """model.onnx of a folder in onnxruntime: per image its presence features and (for Dice) its
    native-size mask after the manifest's clean-ups."""

    def __init__(self, folder: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "model.json").read_text())
        post = self.manifest["postprocessing"]
        outputs = {o["name"] for o in self.manifest.get("outputs") or []}
        self.features_output = (post.get("presence") or {}).get("output", "presence_features")
        if self.features_output not in outputs:
            raise ValueError(f"{folder}: the automatic graph has no {self.features_output} output (only lite models export it)")
        self.feature_names = list((post.get("presence") or {}).get("features") or _export_feature_names())
        graph = next(f["path"] for f in self.manifest["files"] if f["role"] == "segmentation")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.folder / graph), options, providers=["CPUExecutionProvider"])
        self.input = self.manifest["inputs"][0]["name"]
        self.size = int(self.manifest["preprocessing"]["inputSize"])
        self.fit = self.manifest["preprocessing"].get("fit", "stretch")
        self.intensity = self.manifest["preprocessing"]["intensity"]
        self.post = post

    def run(self, items: Iterable[Item], log: Callable[[str], None] = lambda m: None, batch: int = 4) -> List[dict]:
        """Rows {set, split, id, features, dice (positives: gate off)}: the images are dropped as they go."""
        from .evaluate import to_input

        rows: List[dict] = []
        pending: List[Item] = []

        def flush() -> None:
            x = np.stack([to_input(it.image01, self.size, self.fit) for it in pending]).astype(np.float32)
            logits, features = self.session.run([self.post["output"], self.features_output], {self.input: x})
            for it, lg, ft in zip(pending, logits, features):
                row = {"set": it.set, "split": it.split, "id": it.id, "features": [float(v) for v in ft]}
                if it.reference is not None:
                    row["dice"] = self.dice(lg, it.reference)
                rows.append(row)
            log(f"  {len(rows)} images ({pending[-1].set} {pending[-1].split})")
            pending.clear()

        for it in items:
            pending.append(it)
            if len(pending) == batch:
                flush()
        if pending:
            flush()
        return rows

    def dice(self, logits: np.ndarray, reference: np.ndarray) -> float:
        from .evaluate import to_native
        from .metrics import dice
        from .postprocess import apply_postprocessing

        pred = apply_postprocessing(to_native(logits, reference.shape, self.fit) > float(self.post["threshold"]), self.post)
        return dice(pred, reference)


def _export_feature_names() -> Tuple[str, ...]:
    from .export import PRESENCE_FEATURES

    return PRESENCE_FEATURES


def collect(folder: Path, dataset: str, data: Optional[str] = None, splits: Sequence[str] = SPLITS,
            negatives: Sequence[str] = NEGATIVE_SETS, limit: Optional[int] = None, log: Callable[[str], None] = print,
            max_per_set: Optional[int] = None, other_train: int = 0) -> dict:
    """Every item's features: {"model", "dataset", "features": names, "rows": [...]}. `max_per_set` caps the
    other-dataset and crops sets per split (records spread evenly over the split, so the cap keeps its variety);
    `other_train` adds that many of the other data set's training images (spread evenly) to the validation
    negatives: this model never saw them, and a small validation split of them under-states what it draws."""
    from .data import default_data_root
    from .train import dataset_splits

    runner = PresenceRunner(folder)
    modality = model_modality(runner.manifest)
    grey_model = modality not in ("XC", "ES", "GM", "SM", "OP")  # colour photographs keep their colour
    parts = dataset_splits(dataset, data)
    first = parts["test"][0] if parts["test"] else None
    shape = _image_shape(first) if first else (512, 512)
    colour = not grey_model
    other = OTHER_DATASET.get(dataset)
    other_parts = dataset_splits(other) if other and "other-dataset" in negatives else {}
    rows: List[dict] = []
    t0 = time.time()
    for split in splits:
        take = (lambda rs: rs[:limit]) if limit else (lambda rs: rs)
        sources: List[Iterable[Item]] = [positive_items(take(parts[split]), split, runner.intensity)]
        if "other-dataset" in negatives and other:
            other_records = spread(take(other_parts[split]), max_per_set)
            if split == "val" and other_train:
                other_records += spread(take(other_parts["train"]), other_train)
            sources.append(other_dataset_items(dataset, split, other_records, runner.intensity, modality, grey=grey_model))
        if "shared-dicom" in negatives:
            sources.append(_limited(shared_dicom_items(default_data_root() / "dicom", split, runner.intensity, grey_model, log), limit))
        if "crops" in negatives:
            # two crops (as is, flipped) per image
            sources.append(crop_items(spread(take(parts[split]), max_per_set // 2 if max_per_set else None), split, runner.intensity))
        if "noise" in negatives:
            sources.append(noise_items(split, shape, colour, count=min(16, limit or 16)))
        for source in sources:
            rows += runner.run(source, log)
    log(f"features of {len(rows)} images in {time.time() - t0:.0f} s")
    return {"model": str(folder), "name": runner.manifest["name"], "version": runner.manifest["version"], "dataset": dataset,
            "features": runner.feature_names, "rows": rows}


def spread(records: Sequence, cap: Optional[int]) -> list:
    """At most `cap` records, evenly spaced over the sequence (all of them without a cap)."""
    if not cap or len(records) <= cap:
        return list(records)
    return [records[int(i * len(records) / cap)] for i in range(cap)]


def _limited(items: Iterator[Item], limit: Optional[int]) -> Iterator[Item]:
    for i, it in enumerate(items):
        if limit and i >= limit:
            return
        yield it


def _image_shape(record) -> Tuple[int, int]:
    from .data import read_raw

    return read_raw(record.image).shape[:2]


# --------------------------------------------------------------------------------------------------
# Fit, threshold, operating point
# --------------------------------------------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2, iterations: int = 100) -> Tuple[np.ndarray, float]:
    """Weighted, L2-regularised logistic regression by Newton's method on standardised features;
    returns raw-feature weights and bias (score = sigmoid(bias + weights . x))."""
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd < 1e-8] = 1.0  # a constant feature gets weight 0 through the penalty
    z = np.concatenate([np.ones((len(x), 1)), (x - mu) / sd], 1)
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(z @ beta, -60, 60)))
        grad = z.T @ (w * (p - y)) + penalty * beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = beta[1:] / sd
    bias = float(beta[0] - (beta[1:] * mu / sd).sum())
    return weights, bias


def scores_of(rows: Sequence[dict], weights: Sequence[float], bias: float, limits: Mapping[int, float] = {}) -> np.ndarray:
    """The server's score (pipeline/presence.ts): sigmoid(bias + weights . features), and 0 for a row
    whose feature i is above limits[i] (or NaN)."""
    x = np.array([r["features"] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    scores = 1 / (1 + np.exp(-(bias + x @ np.asarray(weights, dtype=np.float64))))
    for i, limit in limits.items():
        scores[~(x[:, i] <= limit)] = 0.0
    return scores


def block_scores(rows: Sequence[dict], block: Mapping) -> np.ndarray:
    """scores_of() as a model.json presence block says (its weights, bias and featureMax)."""
    limits = {block["features"].index(name): float(v) for name, v in (block.get("featureMax") or {}).items()}
    return scores_of(rows, block["weights"], block["bias"], limits)


def distance_limit(val: Sequence[dict], features: Sequence[str], floor: Optional[float]) -> Optional[float]:
    """featureMax of the training distance: the largest distance of the training images (`floor`, as
    `presence add-distance` wrote it) and of the validation positives, plus distribution.MARGIN.
    None when the model has no such feature."""
    from .distribution import FEATURE, MARGIN

    if FEATURE not in features:
        return None
    i = list(features).index(FEATURE)
    largest = max(r["features"][i] for r in val if r["set"] == "positives") + MARGIN
    return round(max(largest, floor if floor is not None else -np.inf), 6)


def training_weights(rows: Sequence[dict]) -> np.ndarray:
    """Positives weigh 1 each; the negatives together weigh as much as the positives, shared equally among the sets."""
    positives = sum(r["set"] == "positives" for r in rows)
    sets: Dict[str, int] = {}
    for r in rows:
        if r["set"] != "positives":
            sets[r["set"]] = sets.get(r["set"], 0) + 1
    return np.array([1.0 if r["set"] == "positives" else positives / len(sets) / sets[r["set"]] for r in rows])


def operating_point(rows: Sequence[dict], scores: np.ndarray, threshold: float) -> dict:
    """Sensitivity on the positives, specificity per negative set and their mean, Dice of the
    positives with the gate off and on (a positive gated out counts as Dice 0)."""
    passed = scores >= threshold
    pos = np.array([r["set"] == "positives" for r in rows])
    out: dict = {"positives": int(pos.sum())}
    if pos.any():
        dice_off = np.array([r["dice"] for r, p in zip(rows, pos) if p])
        dice_on = dice_off * passed[pos]
        out.update(sensitivity=round(float(passed[pos].mean()), 4), diceGateOff=round(float(dice_off.mean()), 4),
                   diceGateOn=round(float(dice_on.mean()), 4), diceDrop=round(float(dice_off.mean() - dice_on.mean()), 4))
    by_set = {}
    for name in sorted({r["set"] for r in rows} - {"positives"}):
        sel = np.array([r["set"] == name for r in rows])
        by_set[name] = {"images": int(sel.sum()), "specificity": round(float((~passed[sel]).mean()), 4)}
    out["negatives"] = by_set
    if by_set:
        out["specificity"] = round(float(np.mean([v["specificity"] for v in by_set.values()])), 4)
        neg = ~pos
        out["specificityPooled"] = round(float((~passed[neg]).mean()), 4)
    return out


def choose_threshold(rows: Sequence[dict], scores: np.ndarray, max_dice_drop: float, min_sensitivity: float,
                     target_specificity: Optional[float] = None) -> Tuple[float, dict]:
    """On validation rows, among the thresholds that cost at most max_dice_drop mean Dice and keep
    min_sensitivity of the positives: with target_specificity, the lowest one at which every negative
    set reaches it (sensitivity first: the most positives kept for the specificity asked); otherwise,
    or when none reaches it, the one with the best mean specificity (ties: the lowest threshold).
    Candidates are the midpoints between consecutive distinct scores (and 0)."""
    distinct = np.unique(scores)
    candidates = [0.0] + [float((a + b) / 2) for a, b in zip(distinct[:-1], distinct[1:])] + [float(min(1.0, distinct[-1] + 1e-6))]
    best: Optional[Tuple[float, float]] = None
    for t in candidates:
        op = operating_point(rows, scores, t)
        if op.get("diceDrop", 0.0) > max_dice_drop + 1e-12 or op.get("sensitivity", 1.0) < min_sensitivity:
            continue
        if target_specificity and all(v["specificity"] >= target_specificity for v in op["negatives"].values()):
            return t, op
        spec = op.get("specificity", 0.0)
        if best is None or spec > best[1] + 1e-12:
            best = (t, spec)
    threshold = best[0] if best else 0.0
    return threshold, operating_point(rows, scores, threshold)


def calibrate(collected: dict, max_dice_drop: float = 0.001, min_sensitivity: float = 0.98, target_specificity: Optional[float] = 0.95,
              distance_floor: Optional[float] = None) -> dict:
    """The presence block of model.json, fitted and thresholded on the validation rows, with its
    operating point on validation and (measured, not chosen) on test. With a training-distance
    feature, its featureMax first (`distance_limit`; `distance_floor`: the one add-distance wrote)."""
    val = [r for r in collected["rows"] if r["split"] == "val"]
    test = [r for r in collected["rows"] if r["split"] == "test"]
    if not any(r["set"] == "positives" for r in val) or all(r["set"] == "positives" for r in val):
        raise ValueError("calibration needs validation positives and validation negatives")
    x = np.array([r["features"] for r in val], dtype=np.float64)
    y = np.array([1.0 if r["set"] == "positives" else 0.0 for r in val])
    weights, bias = fit_logistic(x, y, training_weights(val))
    block: dict = {"output": "presence_features", "features": list(collected["features"]),
                   "weights": [round(float(w), 8) for w in weights], "bias": round(bias, 8)}
    limit = distance_limit(val, collected["features"], distance_floor)
    if limit is not None:
        from .distribution import FEATURE

        block["featureMax"] = {FEATURE: limit}
    val_scores = block_scores(val, block)
    threshold, val_op = choose_threshold(val, val_scores, max_dice_drop, min_sensitivity, target_specificity)
    threshold = round(threshold, 6)
    test_op = operating_point(test, block_scores(test, block), threshold) if test else None
    sets = sorted({r["set"] for r in collected["rows"]} - {"positives"})
    return {
        **block,
        "threshold": threshold,
        "operatingPoint": {
            "chosenOn": "validation",
            "criterion": criterion(max_dice_drop, min_sensitivity, target_specificity),
            "dataset": collected["dataset"],
            "negativeSets": sets,
            "validation": val_op,
            "test": test_op,
        },
        "notes": "score = sigmoid(bias + weights . features) (0 above a featureMax), features per slice from the graph's presence_features output; "
                 "logistic fit on validation positives against validation negatives (" + ", ".join(sets) + "), "
                 "threshold chosen on validation (ldfsam_models/presence.py); test figures measured, not used to choose"
                 + ("; trainingDistance: log mean squared z-score of the encoder's embedding, averaged over 4 x 4 cells, against the "
                    "training images' per-entry mean and sd (ldfsam_models/distribution.py); featureMax: the farthest training image "
                    "or validation positive plus log 1.1" if limit is not None else ""),
    }


def criterion(max_dice_drop: float, min_sensitivity: float, target_specificity: Optional[float]) -> str:
    within = f"a Dice cost of at most {max_dice_drop} and a sensitivity of at least {min_sensitivity} on the validation positives"
    if target_specificity:
        return (f"the lowest threshold at which every negative set reaches a specificity of {target_specificity}, with {within} "
                f"(else the best mean specificity)")
    return f"best mean specificity over the negative sets with {within}"


def write_presence(folder: Path, block: dict) -> dict:
    """model.json with postprocessing.presence = block, validated against the schema; the ONNX files are untouched."""
    from .manifest import validate_manifest

    path = Path(folder) / "model.json"
    manifest = json.loads(path.read_text())
    manifest["postprocessing"]["presence"] = block
    validate_manifest(manifest)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def format_report(name: str, dataset: str, ops: Mapping[str, Optional[dict]], threshold: float) -> str:
    lines = [f"{name} on {dataset}: presence threshold {threshold:.4f}"]
    lines.append(f"  {'split':6s} {'positives':>9s} {'sensitivity':>11s} {'Dice off':>9s} {'Dice on':>8s} {'drop':>7s} {'specificity':>11s}  per negative set")
    for split, op in ops.items():
        if not op:
            continue
        per = ", ".join(f"{k} {v['specificity']:.3f} ({v['images']})" for k, v in op["negatives"].items())
        lines.append(f"  {split:6s} {op['positives']:9d} {op.get('sensitivity', float('nan')):11.4f} {op.get('diceGateOff', float('nan')):9.4f} "
                     f"{op.get('diceGateOn', float('nan')):8.4f} {op.get('diceDrop', float('nan')):7.4f} {op.get('specificity', float('nan')):11.4f}  {per}")
    return "\n".join(lines)


def acceptance(op: Optional[dict], max_dice_drop: float = 0.002, min_specificity: float = 0.9) -> List[str]:
    """The issue's bars on a split (test): the gate costs at most max_dice_drop mean Dice on the
    positives, and the model draws its structure on at most 1 - min_specificity of every negative set.
    Returns what fails (empty: all met)."""
    if not op:
        return ["no images"]
    failures = []
    if op.get("diceDrop", 0.0) > max_dice_drop:
        failures.append(f"the gate costs {op['diceDrop']:.4f} Dice (> {max_dice_drop})")
    for name, v in op.get("negatives", {}).items():
        if v["specificity"] < min_specificity:
            failures.append(f"{name}: specificity {v['specificity']:.3f} (< {min_specificity})")
    return failures


def add_arguments(p) -> None:
    p.add_argument("action", choices=["calibrate", "eval", "add-distance"],
                   help="calibrate: fit and choose on validation (and --write it); eval: report the model.json's presence block; "
                        "add-distance: add the trainingDistance feature to model.onnx and model.json (distribution.py; then calibrate)")
    p.add_argument("--model", required=True, help="exported model folder (model.json + model.onnx with a presence_features output)")
    p.add_argument("--dataset", default="hc18", choices=["hc18", "ph2"], help="the model's data set (its positives; the other one is a negative set)")
    p.add_argument("--data", help="data set folder (default ../shared/data/<dataset>)")
    p.add_argument("--split", action="append", choices=list(SPLITS), help="eval: splits to report (default val and test)")
    p.add_argument("--negatives", default=",".join(NEGATIVE_SETS), help=f"comma-separated negative sets (default {','.join(NEGATIVE_SETS)})")
    p.add_argument("--max-dice-drop", type=float, default=0.001,
                   help="calibrate: the most mean Dice the gate may cost on the validation positives (default 0.001, half the 0.002 allowed on test)")
    p.add_argument("--min-sensitivity", type=float, default=0.98, help="calibrate: the least share of validation positives that must pass (default 0.98)")
    p.add_argument("--target-specificity", type=float, default=0.95,
                   help="calibrate: the lowest threshold at which every negative set reaches this validation specificity "
                        "(default 0.95, a margin over the 0.9 bar); 0: the best mean specificity instead")
    p.add_argument("--features", help="a features JSON written by an earlier run (--save-features): skips the inference")
    p.add_argument("--save-features", help="write every image's features to this JSON")
    p.add_argument("--write", action="store_true", help="calibrate: write the presence block into the folder's model.json")
    p.add_argument("--limit", type=int, help="only the first N images of each set and split (smoke runs)")
    p.add_argument("--max-per-set", type=int, help="at most N images of the other-dataset and crops sets per split, spread evenly (time on a small machine)")
    p.add_argument("--other-train", type=int, default=0,
                   help="add N of the other data set's training images (spread evenly) to the other-dataset validation negatives")
    p.add_argument("--max-test-dice-drop", type=float, default=0.002, help="eval: the bar on the test split's Dice cost (exit status 3 when missed)")
    p.add_argument("--min-test-specificity", type=float, default=0.9, help="eval: the bar on every negative set's test specificity (exit status 3 when missed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", help="also write the JSON result to this file")


def main_presence(args) -> int:
    log = (lambda m: None) if args.json else print
    folder = Path(args.model)
    if args.action == "add-distance":
        from .distribution import add_distance

        summary = add_distance(folder, args.dataset, args.data, log=log)
        if args.json:
            print(json.dumps(summary, indent=2))
        return 0
    if args.features:
        collected = json.loads(Path(args.features).read_text())
    else:
        collected = collect(folder, args.dataset, args.data, negatives=[n for n in args.negatives.split(",") if n], limit=args.limit, log=log,
                            max_per_set=args.max_per_set, other_train=args.other_train)
    if args.save_features:
        Path(args.save_features).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_features).write_text(json.dumps(collected) + "\n")
    if args.action == "calibrate":
        from .distribution import FEATURE

        previous = json.loads((folder / "model.json").read_text())["postprocessing"].get("presence") or {}
        floor = (previous.get("featureMax") or {}).get(FEATURE)
        block = calibrate(collected, args.max_dice_drop, args.min_sensitivity, args.target_specificity or None, floor)
        if args.write:
            write_presence(folder, block)
            log(f"wrote postprocessing.presence into {folder / 'model.json'}")
        ops = {"val": block["operatingPoint"]["validation"], "test": block["operatingPoint"]["test"]}
        result = {"model": collected.get("name"), "dataset": collected["dataset"], "presence": block}
        if ops["test"]:
            result["testFailures"] = acceptance(ops["test"], args.max_test_dice_drop, args.min_test_specificity)
    else:
        block = json.loads((folder / "model.json").read_text())["postprocessing"].get("presence")
        if not block:
            print(f"error: {folder}/model.json has no postprocessing.presence; run presence calibrate --write first")
            return 1
        ops = {}
        for split in args.split or list(SPLITS):
            rows = [r for r in collected["rows"] if r["split"] == split]
            ops[split] = operating_point(rows, block_scores(rows, block), block["threshold"]) if rows else None
        result = {"model": collected.get("name"), "dataset": collected["dataset"], "threshold": block["threshold"], "splits": ops}
        if "test" in ops:
            result["testFailures"] = acceptance(ops["test"], args.max_test_dice_drop, args.min_test_specificity)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_report(str(collected.get("name")), collected["dataset"], ops, block["threshold"]))
        if "testFailures" in result:
            failures = result["testFailures"]
            print(f"  test bars (Dice cost <= {args.max_test_dice_drop}, specificity >= {args.min_test_specificity} per negative set): "
                  + ("met" if not failures else "MISSED: " + "; ".join(failures)))
    # eval is the check (exit 3 when a bar is missed); calibrate only reports it
    return 3 if args.action == "eval" and result.get("testFailures") else 0
