"""Segmentation metrics between binary masks (Dice, IoU, HD95, ASSD) and bootstrap confidence
intervals of their means.

Empty masks (no foreground), decided once here so every table is computed the same way:

| case | Dice | IoU | HD95 | ASSD |
| --- | --- | --- | --- | --- |
| both empty | 1 | 1 | 0 | 0 |
| exactly one empty | 0 | 0 | inf | inf |

A prediction that misses the structure completely has no surface to measure, so its distances are
infinite rather than NaN: a mean over cases then comes out inf instead of silently skipping the
case, and `bootstrap_ci` refuses non-finite values until the caller decides (e.g. report the number
of such cases and summarise the finite ones, or substitute the image diagonal).

Surfaces are the foreground pixels with at least one 4-neighbour in the background or outside the
image (the mask minus its erosion by a cross, as medpy's). Distances are between pixel centres,
in mm when a (row, col) spacing is given, else in pixels. HD95 is the 95th percentile of the
pooled distances of both directions (A to B and B to A), ASSD their mean.
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

Spacing = Optional[Tuple[float, float]]


def _binary(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"masks must be 2-D, got shape {m.shape}")
    return m != 0


def _pair(pred: np.ndarray, target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    p, t = _binary(pred), _binary(target)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {t.shape}")
    return p, t


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """2 |P & T| / (|P| + |T|); 1 when both are empty."""
    p, t = _pair(pred, target)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * (p & t).sum() / total)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """|P & T| / |P | T|; 1 when both are empty."""
    p, t = _pair(pred, target)
    union = (p | t).sum()
    return 1.0 if union == 0 else float((p & t).sum() / union)


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a mask: foreground with a background (or out-of-image) 4-neighbour."""
    m = _binary(mask)
    padded = np.pad(m, 1, constant_values=False)
    eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~eroded


def _directed_distances(src: np.ndarray, dst: np.ndarray, spacing: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each point of `src` (K, 2) (row, col), the distance to the nearest point of `dst`.

    Brute force in chunks: O(K x M) but exact, and a 256x256 mask has a few hundred boundary
    pixels, so this beats a distance transform we would have to write ourselves (no scipy here)."""
    a = src * spacing
    b = dst * spacing
    b_sq = (b**2).sum(1)
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        part = a[i : i + chunk]
        d2 = (part**2).sum(1)[:, None] + b_sq[None] - 2 * part @ b.T
        out[i : i + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def surface_distances(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> Tuple[np.ndarray, np.ndarray]:
    """(distances from each surface pixel of pred to target's surface, and target to pred), or
    empty arrays when either mask is empty (callers apply the conventions above)."""
    p, t = _pair(pred, target)
    sp = np.asarray(spacing if spacing is not None else (1.0, 1.0), dtype=np.float64)
    sp_pts = np.argwhere(surface(p)).astype(np.float64)
    st_pts = np.argwhere(surface(t)).astype(np.float64)
    if len(sp_pts) == 0 or len(st_pts) == 0:
        return np.zeros(0), np.zeros(0)
    return _directed_distances(sp_pts, st_pts, sp), _directed_distances(st_pts, sp_pts, sp)


def _empty_case(p: np.ndarray, t: np.ndarray) -> Optional[float]:
    """0 when both masks are empty, inf when exactly one is, None otherwise."""
    ep, et = not p.any(), not t.any()
    if ep and et:
        return 0.0
    if ep or et:
        return float("inf")
    return None


def _pooled_distances(pred: np.ndarray, target: np.ndarray, spacing: Spacing):
    """Both directions' surface distances pooled, or the empty-mask convention's value."""
    p, t = _pair(pred, target)
    special = _empty_case(p, t)
    if special is not None:
        return special
    d_pt, d_tp = surface_distances(p, t, spacing)
    return np.concatenate([d_pt, d_tp])


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> float:
    """95th percentile (numpy's linear interpolation) of the pooled symmetric surface distances."""
    d = _pooled_distances(pred, target, spacing)
    return d if isinstance(d, float) else float(np.percentile(d, 95))


def assd(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> float:
    """Average symmetric surface distance: mean of the pooled distances of both directions."""
    d = _pooled_distances(pred, target, spacing)
    return d if isinstance(d, float) else float(d.mean())


def segmentation_metrics(pred: np.ndarray, target: np.ndarray, spacing: Spacing = None) -> Dict[str, float]:
    """All four metrics of one case (surface distances computed once)."""
    p, t = _pair(pred, target)
    out = {"dice": dice(p, t), "iou": iou(p, t)}
    special = _empty_case(p, t)
    if special is not None:
        out["hd95"] = out["assd"] = special
        return out
    d = np.concatenate(surface_distances(p, t, spacing))
    out["hd95"] = float(np.percentile(d, 95))
    out["assd"] = float(d.mean())
    return out


class Interval(NamedTuple):
    mean: float
    low: float
    high: float


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 2025, alpha: float = 0.05) -> Interval:
    """Mean of `values` and its percentile bootstrap interval at level 1 - alpha (95 %): `n`
    resamples of the cases with replacement from ``numpy.random.default_rng(seed)``, the interval
    being the alpha/2 and 1 - alpha/2 percentiles of the resampled means. Deterministic for a seed.
    Refuses NaN and inf (see the empty-mask conventions in the module docstring)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values")
    if not np.isfinite(v).all():
        raise ValueError(f"{int((~np.isfinite(v)).sum())} non-finite values: decide how to count them first")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Interval(float(v.mean()), float(low), float(high))


class PairedDifference(NamedTuple):
    ci: Interval  # mean of (a - b) per case and its bootstrap 95 % interval
    better: int   # cases where a is above b
    n: int


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> PairedDifference:
    """Per-case difference a - b of two evaluations of the same cases (case id -> metric), in id
    order, with `bootstrap_ci`'s interval: how two models compare on one split. Refuses case sets
    that differ, since a difference over unmatched cases compares nothing."""
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"the two evaluations cover different cases ({len(only)} in one only, e.g. {only[:3]})")
    diff = [a[i] - b[i] for i in sorted(a)]
    return PairedDifference(bootstrap_ci(diff), sum(d > 0 for d in diff), len(diff))
