"""A long series for the memory benchmark, made from the real CT slices (never stored in the repo):
--slices slices of --size x --size, each a real slice resized (bilinear), cycling through the CT,
with its own SOP Instance UID and a position 1 mm apart.

usage: python long_series.py --ct DIR --out DIR --slices 600 --size 820
"""
import argparse
import copy
import glob
import os

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import generate_uid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ct", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--size", type=int, default=820)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sources = []
    for path in sorted(glob.glob(os.path.join(args.ct, "*"))):
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            sources.append(ds)
    study, series = generate_uid(), generate_uid()
    for i in range(args.slices):
        src = sources[i % len(sources)]
        ds = copy.deepcopy(src)
        pixels = np.asarray(Image.fromarray(src.pixel_array.astype(np.float32)).resize((args.size, args.size), Image.BILINEAR))
        ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
        ds.Rows = ds.Columns = args.size
        ds.PixelSpacing = [0.3, 0.3]
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.SeriesDescription = f"ldfsam bench: {args.slices} slices {args.size}x{args.size}"
        ds.save_as(os.path.join(args.out, f"{i:04d}.dcm"), enforce_file_format=True)
    print(f'{{"studyInstanceUID": "{study}", "seriesInstanceUID": "{series}"}}')


if __name__ == "__main__":
    main()
