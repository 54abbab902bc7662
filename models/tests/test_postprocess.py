"""The Python clean-ups equal the server's (server/src/pipeline/postprocess.ts, test/unit/pipeline.test.ts)."""
import numpy as np

from ldfsam_models.postprocess import apply_postprocessing, fill_holes, keep_largest_component, drop_small_components


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
