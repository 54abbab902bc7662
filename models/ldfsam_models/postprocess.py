"""The manifest's mask clean-ups, exactly as the server applies them (server/src/pipeline/
postprocess.ts), so that evaluation measures what users get: drop components smaller than
`minComponentVoxels`, keep the largest component (`largestComponentOnly`), fill holes (`fillHoles`),
replace the mask by its moment ellipse (`fitEllipse`). On one 2D mask (a single-image series), where 3D 6-connectivity is 2D 4-connectivity.
"""
from typing import Mapping

import numpy as np

from .data import label_components


def _components4(mask: np.ndarray):
    """4-connected components (the server's clean-ups use 6-connectivity in 3D, i.e. 4 in a slice)."""
    return label_components(mask, connectivity=4)


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


def fit_ellipse(mask: np.ndarray) -> np.ndarray:
    """The ellipse with the mask's area centroid and second moments: pixels (x, y) with
    d^T C^-1 d <= 4, d = (x - cx, y - cy), C the pixel-centre covariance plus 1/12 on the diagonal (a
    pixel's own spread; it also keeps C invertible). A filled ellipse is its own moment ellipse, so
    for a structure that is an ellipse (a fetal head, whose HC18 references are drawn as ellipses) this
    removes the boundary noise of the prediction. Computed in float64 in the same order as
    server/src/pipeline/postprocess.ts `fitEllipse`, so both give the same pixels."""
    if not mask.any():
        return mask
    ys, xs = np.nonzero(mask)
    # Integer sums are exact, so numpy and the server's JavaScript start from identical numbers.
    xs, ys = xs.astype(np.int64), ys.astype(np.int64)
    n = float(len(xs))
    sx, sy = float(xs.sum()), float(ys.sum())
    sxx, syy, sxy = float((xs * xs).sum()), float((ys * ys).sum()), float((xs * ys).sum())
    cx, cy = sx / n, sy / n
    vxx = sxx / n - cx * cx + 1.0 / 12.0
    vyy = syy / n - cy * cy + 1.0 / 12.0
    vxy = sxy / n - cx * cy
    det = vxx * vyy - vxy * vxy
    a, b, c = vyy / det, -vxy / det, vxx / det  # C^-1 = [[a, b], [b, c]]
    rows, columns = mask.shape
    gx = np.arange(columns, dtype=np.float64)[None, :] - cx
    gy = np.arange(rows, dtype=np.float64)[:, None] - cy
    return a * gx * gx + 2.0 * b * gx * gy + c * gy * gy <= 4.0


def apply_postprocessing(mask: np.ndarray, post: Mapping) -> np.ndarray:
    """A thresholded boolean mask through the manifest's `postprocessing` clean-ups, in the server's order."""
    out = mask.astype(bool)
    out = drop_small_components(out, int(post.get("minComponentVoxels", 0) or 0))
    if post.get("largestComponentOnly"):
        out = keep_largest_component(out)
    if post.get("fillHoles"):
        out = fill_holes(out)
    if post.get("fitEllipse"):
        out = fit_ellipse(out)
    return out
