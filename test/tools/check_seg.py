"""Independent checks of a SEG the server wrote, against its source files: highdicom must read it,
every frame must reference an existing source instance (and frame) and carry that source's Image
Position, and its mask must agree with the threshold fixture's answer computed here with pydicom
(slice values scaled min-max to [0, 1], colour averaged, > 0.5); the same mask flipped or
transposed must agree far less (so a flip or transposition in the server cannot pass).

usage: python check_seg.py SEG SOURCE... (prints JSON)
"""
import glob
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def expected_mask(ds, frame_index):
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[frame_index]
    if ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(arr, ds).astype(np.float64)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            values = values.max() + values.min() - values
    else:
        if ds.PhotometricInterpretation == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        values = arr.astype(np.float64).mean(axis=-1)
    lo, hi = values.min(), values.max()
    scaled = (values - lo) / (hi - lo if hi > lo else 1)
    return scaled > 0.5


def main():
    seg_path, *sources = sys.argv[1:]
    files = []
    for s in sources:
        files += sorted(glob.glob(os.path.join(s, "**", "*"), recursive=True)) if os.path.isdir(s) else [s]
    by_uid = {}
    for f in files:
        if os.path.isfile(f):
            try:
                ds = pydicom.dcmread(f)
            except Exception:
                continue
            if "PixelData" in ds:
                by_uid[str(ds.SOPInstanceUID)] = ds
    report = {"highdicom": "ok", "frames": []}
    try:
        import highdicom as hd

        hseg = hd.seg.segread(seg_path)
        report["highdicomSegments"] = int(hseg.number_of_segments)
    except Exception as err:  # what highdicom says is the finding
        report["highdicom"] = f"{type(err).__name__}: {err}"
    seg = pydicom.dcmread(seg_path)
    masks = seg.pixel_array.astype(bool)
    if int(seg.NumberOfFrames) == 1:
        masks = masks[np.newaxis]
    for i, groups in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src = groups.DerivationImageSequence[0].SourceImageSequence[0]
        uid = str(src.ReferencedSOPInstanceUID)
        frame_no = int(src.get("ReferencedFrameNumber", 1) or 1)
        source = by_uid.get(uid)
        entry = {"frame": i + 1, "source": uid, "sourceFrame": frame_no, "found": source is not None}
        if source is not None:
            position = None
            if "PlanePositionSequence" in groups:
                position = [float(v) for v in groups.PlanePositionSequence[0].ImagePositionPatient]
            src_pos = None
            if "PerFrameFunctionalGroupsSequence" in source:
                src_pos = [float(v) for v in source.PerFrameFunctionalGroupsSequence[frame_no - 1].PlanePositionSequence[0].ImagePositionPatient]
            elif "ImagePositionPatient" in source:
                src_pos = [float(v) for v in source.ImagePositionPatient]
            entry["positionMatches"] = (position is None and src_pos is None) or (
                position is not None and src_pos is not None and bool(np.allclose(position, src_pos, atol=1e-3))
            )
            want = expected_mask(source, frame_no - 1)
            got = masks[i]
            entry["dice"] = dice(got, want)
            entry["diceFlippedRows"] = dice(got[::-1, :], want)
            entry["diceFlippedColumns"] = dice(got[:, ::-1], want)
            entry["diceTransposed"] = dice(got.T, want) if got.shape[0] == got.shape[1] else 0.0
        report["frames"].append(entry)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
