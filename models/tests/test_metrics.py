"""Metrics on hand-made masks with known answers, the empty-mask conventions, and the bootstrap."""
import math

import numpy as np
import pytest

from ldfsam_models import metrics as M


def squares(offset=3, side=10, size=40):
    """Two side x side squares, the second shifted `offset` columns to the right."""
    a = np.zeros((size, size), bool)
    b = np.zeros((size, size), bool)
    a[10 : 10 + side, 10 : 10 + side] = True
    b[10 : 10 + side, 10 + offset : 10 + offset + side] = True
    return a, b


def test_dice_and_iou_of_shifted_squares():
    a, b = squares()
    # overlap 10 x 7 = 70 of 100 + 100; union 130
    assert M.dice(a, b) == pytest.approx(0.7)
    assert M.iou(a, b) == pytest.approx(70 / 130)
    assert M.dice(a, a) == 1.0 and M.iou(a, a) == 1.0


def test_surface_is_the_one_pixel_boundary():
    a, _ = squares()
    s = M.surface(a)
    assert s.sum() == 36  # 4 x 10 - 4 corners counted once
    assert not s[11:19, 11:19].any()
    edge = np.ones((3, 3), bool)  # touching the image border: all boundary but the centre
    assert M.surface(edge).sum() == 8


def test_hd95_and_assd_of_squares_offset_by_three_pixels():
    """Boundary of A (36 px) to the boundary of B, by hand: the left column (10 px) is 3 away; the
    right column's inner 8 px are 1, 2, 3, 3, 3, 3, 2, 1 away (B's top/bottom rows pass through);
    the top and bottom rows' first two non-corner pixels are 2 and 1 away, the rest 0.
    Sum 30 + 18 + 6 = 54 over 36 -> mean 1.5, and by symmetry the same from B. 28 of the 72 pooled
    distances are 3, so the 95th percentile is the maximum, 3."""
    a, b = squares()
    assert M.hd95(a, b) == pytest.approx(3.0)
    assert M.assd(a, b) == pytest.approx(1.5)
    assert M.hd95(a, b, (0.5, 0.5)) == pytest.approx(1.5)
    assert M.assd(a, b, (0.5, 0.5)) == pytest.approx(0.75)
    assert M.segmentation_metrics(a, b) == pytest.approx({"dice": 0.7, "iou": 70 / 130, "hd95": 3.0, "assd": 1.5})
    assert M.hd95(a, a) == 0.0 and M.assd(a, a) == 0.0


def test_spacing_is_row_then_column():
    """The shift is along columns: with column spacing 0.5 the 3-pixel gaps are 1.5 mm; with row
    spacing 0.5 and column spacing 1 they stay 3 mm."""
    a, b = squares()
    assert M.hd95(a, b, (1.0, 0.5)) == pytest.approx(1.5)
    assert M.hd95(a, b, (0.5, 1.0)) == pytest.approx(3.0)


def test_hd95_ignores_a_few_outliers_but_hausdorff_would_not():
    a, _ = squares(side=20, size=80)
    b = a.copy()
    b[70, 70] = True  # one stray pixel far away
    d_ab, d_ba = M.surface_distances(a, b)
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(math.hypot(41, 41))
    assert M.hd95(a, b) == 0.0


def test_empty_mask_conventions():
    empty = np.zeros((8, 8), bool)
    full = np.zeros((8, 8), bool)
    full[2:5, 2:5] = True
    assert M.segmentation_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    for p, t in ((empty, full), (full, empty)):
        m = M.segmentation_metrics(p, t)
        assert m["dice"] == 0.0 and m["iou"] == 0.0
        assert m["hd95"] == math.inf and m["assd"] == math.inf
        assert M.hd95(p, t) == math.inf and M.assd(p, t) == math.inf
    with pytest.raises(ValueError):
        M.dice(full, np.zeros((4, 4)))


def test_bootstrap_ci():
    values = np.arange(1, 11, dtype=float)
    ci = M.bootstrap_ci(values)
    assert ci.mean == pytest.approx(5.5)
    assert ci.low < 5.5 < ci.high
    # bootstrap standard error of the mean: population sd 2.87 / sqrt(10) = 0.908
    assert 3.3 < ci.low < 4.1 and 6.9 < ci.high < 7.7  # 5.5 +- 1.96 x 0.908
    assert M.bootstrap_ci(values) == ci  # seeded
    assert M.bootstrap_ci(values, seed=1) != ci
    narrow = M.bootstrap_ci(values, alpha=0.5)
    assert ci.low < narrow.low < narrow.high < ci.high
    assert M.bootstrap_ci([0.8] * 5) == (0.8, pytest.approx(0.8), pytest.approx(0.8))
    with pytest.raises(ValueError):
        M.bootstrap_ci([1.0, math.inf])
    with pytest.raises(ValueError):
        M.bootstrap_ci([])


def test_paired_difference():
    a = {"c": 0.9, "a": 0.8, "b": 0.7}
    b = {"a": 0.7, "b": 0.7, "c": 0.95}
    d = M.paired_difference(a, b)
    assert d.n == 3 and d.better == 1  # a above b on "a" only
    assert d.ci.mean == pytest.approx((0.1 + 0.0 - 0.05) / 3)
    assert d.ci == M.bootstrap_ci([0.8 - 0.7, 0.7 - 0.7, 0.9 - 0.95])  # in id order, whatever the mappings' order
    with pytest.raises(ValueError, match="different cases"):
        M.paired_difference(a, {"a": 0.7, "b": 0.7})
