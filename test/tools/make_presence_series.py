"""Series whose presence decision per slice is known, for the presence fixture (test/fixtures/model-presence).

The fixture scores a slice sigmoid(40 x maskArea - 4), where maskArea is the share of its input frame
above 0.5 after min-max scaling; a slice passes at 0.5, i.e. when more than 10 % of it is bright. Each
slice here is a bright disc on a dark background (or all dark), so its mask area is the disc's area:

  presence-mixed/  6 slices: disc radius 0.30, 0.10, 0.30, none, 0.20, 0.10 of the width
                   -> found on slices 1, 3, 5 (1-based, in position order), not on 2, 4, 6
  presence-none/   3 slices: disc radius 0.10, none, 0.05 -> found on none (slices 1 and 3 still
                   have a small mask that only the gate removes)

The slices take the geometry of the shared CT's first slices (so they are ordered by position); new
UIDs derived from the series name. Prints JSON: per series its folder, UIDs and per slice the disc's
radius, area share and expected score.

usage: python make_presence_series.py --ct DIR --out DIR
"""
import argparse
import copy
import glob
import hashlib
import json
import math
import os

import numpy as np
import pydicom

SERIES = {"presence-mixed": [0.30, 0.10, 0.30, None, 0.20, 0.10], "presence-none": [0.10, None, 0.05]}


def uid(*parts: str) -> str:
    return "2.25." + str(int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:15], "big"))


def disc(rows: int, columns: int, radius: float) -> np.ndarray:
    y, x = np.mgrid[:rows, :columns]
    r = radius * columns
    return (x + 0.5 - columns * 0.52) ** 2 + (y + 0.5 - rows * 0.48) ** 2 <= r * r


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ct", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ct = [pydicom.dcmread(p) for p in sorted(glob.glob(os.path.join(args.ct, "*"))) if os.path.basename(p) != "DIRFILE"]
    ct = sorted((d for d in ct if "ImagePositionPatient" in d), key=lambda d: float(d.ImagePositionPatient[2]))
    report = {}
    for name, radii in SERIES.items():
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        slices = []
        for i, radius in enumerate(radii):
            ds = copy.deepcopy(ct[i])
            ds.StudyInstanceUID = uid(name, "study")
            ds.SeriesInstanceUID = uid(name, "series")
            ds.SOPInstanceUID = uid(name, "sop", str(i))
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
            ds.SeriesDescription = f"ldfsam test: {name}"
            ds.PatientID = "LDFSAM-PRESENCE"
            ds.InstanceNumber = i + 1
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            mask = disc(ds.Rows, ds.Columns, radius) if radius else np.zeros((ds.Rows, ds.Columns), bool)
            ds.PixelData = np.where(mask, 1124, 0).astype(np.int16).tobytes()
            ds.save_as(os.path.join(folder, f"{i:03d}.dcm"), enforce_file_format=True)
            area = float(mask.mean())
            slices.append({"radius": radius, "area": area, "score": 1 / (1 + math.exp(-(40 * area - 4))), "sopInstanceUID": ds.SOPInstanceUID})
        report[name] = {"folder": folder, "studyInstanceUID": uid(name, "study"), "seriesInstanceUID": uid(name, "series"), "slices": slices}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
