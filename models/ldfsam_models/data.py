"""Training data: image/mask folders (HC18, PH2), subject-level splits, boxes from masks, image
intensities as the server computes them, and per-modality augmentation (`train.Batches` applies it;
DICOM SEG + source image pairs are in `dicom_dataset.py`).

Conventions used throughout (and by `losses.py` / `metrics.py`):

- Masks are 2-D arrays, foreground where non-zero.
- Boxes are ``x1, y1, x2, y2`` in continuous pixel coordinates, where pixel (row r, col c) covers
  ``[c, c + 1) x [r, r + 1)``: a tight box is ``(min col, min row, max col + 1, max row + 1)``, so its
  width is the instance's pixel extent. That is the frame the detector's anchor points
  ``((j + 0.5) * stride, (i + 0.5) * stride)`` live in.
- Pixel spacing is ``(row, col)`` in mm, as DICOM's PixelSpacing; ``None`` when unknown.
"""
from __future__ import annotations

import csv
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PathLike = Union[str, os.PathLike]

# --------------------------------------------------------------------------------------------------
# Records and folders
# --------------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """`../shared/data` next to the project root, as the TypeScript tests find it; or
    `$LDFSAM_SHARED_DATA`. The data is read-only and never copied into the repository."""
    env = os.environ.get("LDFSAM_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Record:
    """One image/mask pair. `subject` groups images of one patient so splits never separate them."""

    id: str
    subject: str
    image: Path
    mask: Path
    pixel_spacing_mm: Optional[Tuple[float, float]]  # (row, col) in mm of the ORIGINAL image
    dataset: str
    meta: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def load_hc18(root: Optional[PathLike] = None) -> List[Record]:
    """HC18 from `index.csv` (file, subject, pixel_size_mm, head_circumference_mm).

    Several subjects have more than one image (`010_HC.png`, `010_2HC.png`, `014_3HC.png`); the
    subject column groups them. The pixel size is isotropic, so the spacing is (size, size)."""
    root = Path(root) if root is not None else default_data_root() / "hc18"
    records = []
    with open(root / "index.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            name = row["file"]
            size = float(row["pixel_size_mm"])
            records.append(
                Record(
                    id=Path(name).stem,
                    subject=row["subject"],
                    image=root / "images" / name,
                    mask=root / "masks" / name,
                    pixel_spacing_mm=(size, size),
                    dataset="hc18",
                    meta={"head_circumference_mm": row["head_circumference_mm"]},
                )
            )
    _check_files(records)
    return sorted(records, key=lambda r: r.id)


def load_ph2(root: Optional[PathLike] = None) -> List[Record]:
    """PH2 from its image folder (one image per patient, so subject = id). The physical pixel size
    of the dermoscope is not given, so the spacing is None and distances stay in pixels.

    `PH2_dataset.csv` (clinical diagnosis 0/1/2 = common nevus / atypical nevus / melanoma) is
    attached as `meta['diagnosis']` where it has a row; its trailing legend lines are skipped."""
    root = Path(root) if root is not None else default_data_root() / "ph2"
    diagnosis: Dict[str, str] = {}
    csv_path = root / "PH2_dataset.csv"
    if csv_path.exists():
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                name = (row.get("Name") or "").strip()
                if name.startswith("IMD"):
                    diagnosis[name] = (row.get("Clinical Diagnosis") or "").strip()
    records = []
    for image in sorted((root / "images").glob("IMD*.jpg")):
        rid = image.stem
        meta = {"diagnosis": diagnosis[rid]} if rid in diagnosis else {}
        records.append(Record(rid, rid, image, root / "masks" / f"{rid}.png", None, "ph2", meta))
    _check_files(records)
    return records


def load_dataset(name: str, root: Optional[PathLike] = None) -> List[Record]:
    loaders = {"hc18": load_hc18, "ph2": load_ph2}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(loaders)}")
    return loaders[name](root)


def _check_files(records: Sequence[Record]) -> None:
    missing = [str(p) for r in records for p in (r.image, r.mask) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed files are missing, e.g. {missing[:3]}")


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------

SPLIT_SEED = 2025


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_subjects(
    subjects: Iterable[str],
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = SPLIT_SEED,
) -> Dict[str, List[str]]:
    """Split subject ids into train / val / test, deterministically.

    - The distinct ids are sorted, then shuffled once with ``random.Random(seed)`` (seed 2025).
    - The first ``round(test_fraction * n)`` shuffled subjects are the test set (default 20 %).
    - Of the remaining training pool, the next ``round(val_fraction * n_pool)`` subjects are held out
      for validation (default 10 % of training, as the paper does); the rest is train.
    - Rounding is half up. Each returned list is sorted.

    Python's Mersenne Twister and ``Random.shuffle`` are specified and platform independent, so the
    same input gives the same split on every call and machine (the tests pin a fingerprint)."""
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0):
        raise ValueError("fractions must lie in [0, 1)")
    order = sorted(set(subjects))
    random.Random(seed).shuffle(order)
    n_test = _round_half_up(test_fraction * len(order))
    pool = order[n_test:]
    n_val = _round_half_up(val_fraction * len(pool))
    return {"train": sorted(pool[n_val:]), "val": sorted(pool[:n_val]), "test": sorted(order[:n_test])}


def split_records(
    records: Sequence[Record],
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = SPLIT_SEED,
) -> Dict[str, List[Record]]:
    """Records grouped by `split_subjects` of their subjects (no subject in two splits)."""
    parts = split_subjects((r.subject for r in records), test_fraction, val_fraction, seed)
    where = {s: name for name, subjects in parts.items() for s in subjects}
    out: Dict[str, List[Record]] = {name: [] for name in parts}
    for r in records:
        out[where[r.subject]].append(r)
    return out


def parse_fold(text: str) -> Tuple[int, int]:
    """'2/4' -> (2, 4): fold 2 of 4 (1-based). Refuses anything else with a message saying why."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--fold {text!r}: expected K/N, e.g. 2/4 (fold K of N)")
    fold, folds = int(parts[0]), int(parts[1])
    if folds < 2 or not 1 <= fold <= folds:
        raise ValueError(f"--fold {text}: needs N >= 2 folds and 1 <= K <= N")
    return fold, folds


def fold_records(
    records: Sequence[Record],
    fold: int,
    folds: int,
    seed: int = SPLIT_SEED,
) -> Dict[str, List[Record]]:
    """Cross-validation over the training pool: the subjects of the project's train and val splits
    (the test split stays as it is and is never part of a fold), sorted, shuffled with
    ``random.Random(seed + 1)``, dealt round-robin into `folds` folds; fold `fold` (1-based) is the
    validation split, the others the training split. Subjects never straddle folds. For choosing
    between recipes on more than one small validation split (PH2's is 12 images)."""
    parts = split_subjects(r.subject for r in records)
    pool = sorted(parts["train"] + parts["val"])
    random.Random(seed + 1).shuffle(pool)
    val = set(pool[fold - 1 :: folds])
    test = set(parts["test"])
    out: Dict[str, List[Record]] = {"train": [], "val": [], "test": []}
    for r in records:
        out["test" if r.subject in test else "val" if r.subject in val else "train"].append(r)
    return out


# --------------------------------------------------------------------------------------------------
# Connected components and boxes
# --------------------------------------------------------------------------------------------------


def _row_runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of foreground: (row, start col, end col exclusive), in row-major order."""
    m = np.asarray(mask) != 0
    padded = np.zeros((m.shape[0], m.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    starts = np.argwhere(d == 1)  # row-major, so starts and ends pair up in order
    ends = np.argwhere(d == -1)
    return starts[:, 0], starts[:, 1], ends[:, 1]


def _find(parent: List[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _run_components(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Component id (0..K-1, in order of first appearance) of each run, 8- or 4-connected.

    Run-based union-find: two runs on neighbouring rows touch when their column intervals overlap
    (4-connectivity) or would overlap with each widened by one (8-connectivity). Only runs are
    visited, which keeps a pure-Python labelling fast enough for full-resolution masks."""
    reach = 1 if connectivity == 8 else 0
    n = len(rows)
    parent = list(range(n))
    row_first = np.searchsorted(rows, np.arange(rows.max() + 2)) if n else np.zeros(1, int)
    for r in range(int(rows.max()) if n else 0):
        a0, a1 = row_first[r], row_first[r + 1]
        b0, b1 = row_first[r + 1], row_first[r + 2]
        i, j = a0, b0
        while i < a1 and j < b1:  # two pointers over the sorted runs of rows r and r + 1
            if starts[j] < ends[i] + reach and starts[i] < ends[j] + reach:  # ends are exclusive
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)  # roots are the minimal run index: ordered
    return labels


def label_components(mask: np.ndarray, connectivity: int = 8) -> Tuple[np.ndarray, int]:
    """8- (default) or 4-connected labelling: (labels int32 with 0 = background and 1..K, K),
    components numbered in row-major order of their first pixel."""
    m = np.asarray(mask)
    labels = np.zeros(m.shape, dtype=np.int32)
    rows, starts, ends = _row_runs(m)
    if len(rows) == 0:
        return labels, 0
    comp = _run_components(rows, starts, ends, connectivity)
    for r, s, e, c in zip(rows, starts, ends, comp):
        labels[r, s:e] = c + 1
    return labels, int(comp.max()) + 1


def boxes_from_mask(mask: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """Tight boxes (N, 4) float32 ``x1, y1, x2, y2`` around each 8-connected instance of `mask`
    (pixel-edge convention: see the module docstring), in row-major order of the instances' first
    pixels. Instances with fewer than `min_pixels` pixels are dropped (speckle after resizing)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    rows, starts, ends = _row_runs(m)
    if len(rows) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    comp = _run_components(rows, starts, ends)
    k = int(comp.max()) + 1
    x1 = np.full(k, np.inf)
    y1 = np.full(k, np.inf)
    x2 = np.full(k, -np.inf)
    y2 = np.full(k, -np.inf)
    np.minimum.at(x1, comp, starts)
    np.minimum.at(y1, comp, rows)
    np.maximum.at(x2, comp, ends)
    np.maximum.at(y2, comp, rows + 1)
    pixels = np.bincount(comp, weights=ends - starts, minlength=k)
    boxes = np.stack([x1, y1, x2, y2], axis=1)[pixels >= min_pixels]
    return boxes.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Intensities and augmentation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Per-modality augmentation. Geometric ops move image and mask together (same sampling grid);
    boxes are recomputed from the augmented mask, never transformed separately.

    rotation: 'none', 'small' (uniform in +-max_degrees), 'right' (multiples of 90 degrees, exact),
    'any' (uniform 0-360)."""

    hflip: bool = False
    vflip: bool = False
    rotation: str = "none"
    max_degrees: float = 0.0
    brightness: float = 0.0  # additive offset, uniform in +-brightness (intensities in [0, 1])
    contrast: float = 0.0  # gain around the image mean, uniform in 1 +- contrast
    saturation: float = 0.0  # blend with the grey image, factor uniform in 1 +- saturation
    channel_gain: float = 0.0  # per-channel gain, uniform in 1 +- channel_gain (colour cast)


# Ultrasound: the probe can be mirrored, the head lies at any small tilt, gain/TGC settings vary;
# no colour: B-mode is grey and the three channels stay equal.
ULTRASOUND = AugmentConfig(hflip=True, rotation="small", max_degrees=15.0, brightness=0.1, contrast=0.2)
# Dermoscopy: a lesion has no canonical orientation (flip both axes, any rotation), and cameras and
# lighting change its colour. Right-angle rotations avoid interpolation and black corners; pass
# `AugmentConfig(..., rotation='any')` for free rotation.
DERMOSCOPY = AugmentConfig(
    hflip=True, vflip=True, rotation="right", brightness=0.1, contrast=0.2, saturation=0.2, channel_gain=0.05
)
AUGMENTATIONS: Mapping[str, AugmentConfig] = {"ultrasound": ULTRASOUND, "dermoscopy": DERMOSCOPY}


def read_raw(path: Path) -> np.ndarray:
    """(H, W, 3) float32 of the stored values, grey replicated: PNG/JPEG as stored (8-bit: 0..255,
    16-bit: 0..65535); `.npy` (a DICOM slice after its modality rescale, written by
    `dicom_dataset.load_dicom_seg`) as saved."""
    if path.suffix == ".npy":
        arr = np.load(path).astype(np.float32)
        return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, -1)
    with Image.open(path) as im:
        if im.mode in ("I", "I;16"):
            grey = np.asarray(im, dtype=np.float32)
            return np.repeat(grey[..., None], 3, -1)
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def apply_intensity(raw: np.ndarray, policy: Mapping[str, dict], modality: str = "default") -> np.ndarray:
    """Values to [0, 1] by the manifest's policy for `modality` (else 'default'), as the server's
    preprocess.ts does."""
    p = policy.get(modality, policy["default"])
    kind = p["kind"]
    if kind == "fixed":
        out = raw / float(p["max"])
    elif kind == "minmax":
        lo, hi = float(raw.min()), float(raw.max())
        out = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    elif kind == "percentile":
        lo, hi = np.percentile(raw, [p["low"], p["high"]])
        out = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    elif kind == "window":
        out = (raw - (p["center"] - p["width"] / 2)) / p["width"]
    else:
        raise ValueError(f"unknown intensity kind {kind!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


FIXED_255 = {"default": {"kind": "fixed", "max": 255}}


def record_image01(record: Record, policy: Mapping[str, dict] = FIXED_255, raw: Optional[np.ndarray] = None) -> np.ndarray:
    """A record's image in [0, 1] (H, W, 3) as the server feeds it: the policy of the record's
    modality (`meta["modality"]`, else 'default'), MONOCHROME1 inverted after scaling."""
    raw = read_raw(record.image) if raw is None else raw
    out = apply_intensity(raw, policy, record.meta.get("modality", "default"))
    return 1.0 - out if record.meta.get("photometric") == "MONOCHROME1" else out


def _rotate(image: torch.Tensor, mask: torch.Tensor, degrees: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate both about the image centre through one sampling grid (zeros outside)."""
    t = math.radians(degrees)
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    img = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    m = F.grid_sample(mask[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return img, (m >= 0.5).float()


def augment_pair(
    image: torch.Tensor, mask: torch.Tensor, config: AugmentConfig, rng: np.random.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply `config` to a (3, S, S) image and (1, S, S) mask with parameters drawn from `rng`.

    Every parameter is drawn whether or not it is used, so the random stream (and so the result for
    a given seed) does not depend on earlier coin flips."""
    u = rng.uniform(size=9)
    if config.hflip and u[0] < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    if config.vflip and u[1] < 0.5:
        image, mask = image.flip(-2), mask.flip(-2)
    if config.rotation == "right":
        k = int(u[2] * 4) % 4
        image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
    elif config.rotation in ("small", "any"):
        degrees = (2 * u[2] - 1) * config.max_degrees if config.rotation == "small" else 360.0 * u[2]
        if degrees != 0.0:
            image, mask = _rotate(image, mask, degrees)
    elif config.rotation != "none":
        raise ValueError(f"unknown rotation {config.rotation!r}")
    if config.channel_gain:
        gains = 1 + (2 * u[3:6] - 1) * config.channel_gain
        image = image * torch.tensor(gains, dtype=image.dtype).view(3, 1, 1)
    if config.saturation:
        grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
        s = 1 + (2 * u[6] - 1) * config.saturation
        image = grey + s * (image - grey)
    if config.contrast:
        c = 1 + (2 * u[7] - 1) * config.contrast
        image = image.mean() + c * (image - image.mean())
    if config.brightness:
        image = image + (2 * u[8] - 1) * config.brightness
    return image.clamp(0, 1), mask
