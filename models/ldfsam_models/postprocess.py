"""The manifest's mask clean-ups, exactly as the server applies them (server/src/pipeline/
postprocess.ts), so that evaluation measures what users get: drop components smaller than
`minComponentVoxels`, keep the largest component (`largestComponentOnly`), fill holes (`fillHoles`).
On one 2D mask (a single-image series), where 3D 6-connectivity is 2D 4-connectivity.
"""
from typing import Mapping

import numpy as np

from .data import _find, _row_runs


def _components4(mask: np.ndarray):
    """4-connected components of a boolean mask: (labels int32, count), 0 = background, 1..K in
    raster order of their first pixel. Run-based union-find, like data.label_components (which is
    8-connected: the server's clean-ups use 6-connectivity in 3D, i.e. 4-connectivity in a slice)."""
    rows, starts, ends = _row_runs(mask)
    labels = np.zeros(mask.shape, dtype=np.int32)
    n = len(rows)
    if n == 0:
        return labels, 0
    parent = list(range(n))
    row_first = np.searchsorted(rows, np.arange(rows.max() + 2))
    for r in range(int(rows.max())):
        a0, a1 = row_first[r], row_first[r + 1]
        b0, b1 = row_first[r + 1], row_first[r + 2]
        i, j = a0, b0
        while i < a1 and j < b1:
            if starts[j] < ends[i] and starts[i] < ends[j]:  # share at least one column (ends exclusive)
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([_find(parent, i) for i in range(n)])
    _, comp = np.unique(roots, return_inverse=True)
    for r, s0, e, c in zip(rows, starts, ends, comp):
        labels[r, s0:e] = c + 1
    return labels, int(comp.max()) + 1


def drop_small_components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    if min_pixels <= 1 or not mask.any():
        return mask
    labels, count = _components4(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    labels, count = _components4(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))  # ties: the lowest label, met first in raster order


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background not 4-connected to the border becomes foreground."""
    background, count = _components4(~mask)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    outside = np.isin(background, border[border > 0])
    return mask | (~outside & (background > 0))


def apply_postprocessing(mask: np.ndarray, post: Mapping) -> np.ndarray:
    """A thresholded boolean mask through the manifest's `postprocessing` clean-ups, in the server's order."""
    out = mask.astype(bool)
    out = drop_small_components(out, int(post.get("minComponentVoxels", 0) or 0))
    if post.get("largestComponentOnly"):
        out = keep_largest_component(out)
    if post.get("fillHoles"):
        out = fill_holes(out)
    return out
