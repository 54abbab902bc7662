"""The Python clean-ups equal the server's (server/src/pipeline/postprocess.ts, test/unit/pipeline.test.ts)."""
import numpy as np

from ldfsam_models.postprocess import apply_postprocessing, drop_small_components, fill_holes, fit_ellipse, keep_largest_component


def grid(picture):
    return np.array([[c == "#" for c in row] for row in picture])


def draw(mask):
    return ["".join("#" if v else "." for v in row) for row in mask]


def test_fill_holes_matches_the_server():
    picture = ["......", ".####.", ".#..#.", ".####.", ".#....", ".#...."]
    assert draw(fill_holes(grid(picture))) == ["......", ".####.", ".####.", ".####.", ".#....", ".#...."]
    # Background reaching the border through a 4-connected gap is not a hole.
    open_ = grid(["#####", "#...#", "#...#", "#.###", "#.#.."])
    assert (fill_holes(open_) == open_).all()
    # A diagonal gap does not connect (4-connectivity): that background is a hole.
    diagonal = grid(["....", ".##.", "#..#", ".##."])
    assert draw(fill_holes(diagonal)) == ["....", ".##.", "####", ".##."]


def test_largest_component_is_4_connected():
    mask = grid(["##..", "##..", "..#.", "...#"])  # diagonal pixels are separate components
    assert draw(keep_largest_component(mask)) == ["##..", "##..", "....", "...."]
    assert not keep_largest_component(np.zeros((3, 3), bool)).any()


def test_small_components_and_order():
    mask = grid(["##...", "##...", ".....", "...##", "....."])
    assert draw(drop_small_components(mask, 3)) == ["##...", "##...", ".....", ".....", "....."]
    ring = grid([".....", ".###.", ".#.#.", ".###.", "#...."])
    out = apply_postprocessing(ring, {"minComponentVoxels": 2, "largestComponentOnly": True, "fillHoles": True})
    assert draw(out) == [".....", ".###.", ".###.", ".###.", "....."]
    assert (apply_postprocessing(ring, {"threshold": 0}) == ring).all()


def test_fit_ellipse_matches_the_server():
    # The same picture and answer as test/unit/pipeline.test.ts: the moment ellipse of a blob.
    blob = grid([".........", "..####...", ".######..", ".#######.", ".######..", "..###....", "........."])
    assert draw(fit_ellipse(blob)) == [".........", "..####...", ".######..", ".######..", ".######..", "..####...", "........."]
    assert not fit_ellipse(np.zeros((4, 4), bool)).any()
    assert draw(fit_ellipse(grid(["...", ".#.", "..."]))) == ["...", ".#.", "..."]


def test_fit_ellipse_keeps_a_drawn_ellipse():
    # A rasterised rotated ellipse is (up to rasterisation) its own moment ellipse.
    yy, xx = np.mgrid[0:40, 0:60]
    t = 0.5
    u = (xx - 29.3) * np.cos(t) + (yy - 19.6) * np.sin(t)
    v = -(xx - 29.3) * np.sin(t) + (yy - 19.6) * np.cos(t)
    drawn = (u / 22) ** 2 + (v / 12) ** 2 <= 1
    assert int((fit_ellipse(drawn) != drawn).sum()) <= 0.005 * drawn.sum()
    # Zero-mean noise on its boundary (pixels flipped at random within 1 pixel of it) is removed.
    rng = np.random.default_rng(0)
    near = np.abs(np.sqrt((u / 22) ** 2 + (v / 12) ** 2) - 1) < 0.06
    noisy = drawn ^ (near & (rng.random(drawn.shape) < 0.5))
    assert int((noisy != drawn).sum()) > 50
    assert int((fit_ellipse(noisy) != drawn).sum()) < int((noisy != drawn).sum()) / 2
    assert apply_postprocessing(noisy, {"fitEllipse": True}).sum() == fit_ellipse(noisy).sum()
