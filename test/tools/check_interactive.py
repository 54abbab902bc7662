"""Independent checks of the interactive API with pydicom, for test/integration/interactive.test.ts.

mask CASES.json: each case is a source file, a mask the API answered (base64 bits, LSB first) and
the prompt; the promptable fixture's answer is computed here, independently of the server, from
the source pixels and the model contract: the slice scaled min-max to [0, 1] (colour: one range
over all samples), resized bilinearly (torch, half-pixel centres) to its fitted size inside the
256 x 256 input (longest side to 256, zeros right and bottom), channels averaged; the prompt
scaled into that frame (x * fitted columns / columns, y * fitted rows / rows); logits 20 x (value -
0.5) inside the box (input pixels j with x0 <= j <= x1, likewise rows) or within 12 input pixels of
a positive point and not of a negative one, -20 elsewhere; cropped to the fitted part, resized back
to the slice (torch bilinear) and > 0. Prints per case the Dice with that answer, the Dice of the
mask flipped (rows, columns) with it, and the mask's pixels outside the prompt's region (in slice
pixels, grown by 2 pixels for the resampling of its edge).

seg SEG SOURCE...: what the stored SEG says (module attributes, segment, algorithm) and per frame its
referenced source, whether its Plane Position is the source's, and its bits (base64, LSB first).
"""
import base64
import glob
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut
from scipy import ndimage


def unpack(b64, rows, columns):
    bits = np.unpackbits(np.frombuffer(base64.b64decode(b64), dtype=np.uint8), bitorder="little")
    return bits[: rows * columns].reshape(rows, columns).astype(bool)


def pack(mask):
    return base64.b64encode(np.packbits(mask.astype(np.uint8).ravel(), bitorder="little").tobytes()).decode()


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def region(case, rows, columns):
    yy, xx = np.mgrid[0:rows, 0:columns]
    inside = np.zeros((rows, columns), bool)
    if case.get("box"):
        x0, y0, x1, y1 = case["box"]
        inside |= (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    r = case["radius"]
    for p in case.get("points", []):
        near = (xx - p["x"]) ** 2 + (yy - p["y"]) ** 2 <= r * r
        inside = inside | near if p["positive"] else inside & ~near
    return inside


SIZE = 256
DISC = 12.0


def fixture_answer(ds, frame_index, case):
    import torch
    import torch.nn.functional as F

    rows, columns = int(ds.Rows), int(ds.Columns)
    longest = max(rows, columns)
    fr, fc = int(rows * SIZE / longest + 0.5), int(columns * SIZE / longest + 0.5)
    values = scaled_channels(ds, frame_index)  # (C, rows, columns)
    small = F.interpolate(torch.from_numpy(values)[None].float(), size=(fr, fc), mode="bilinear", align_corners=False)[0]
    value = torch.zeros(SIZE, SIZE)
    value[:fr, :fc] = small.mean(dim=0)
    sx, sy = np.float32(fc / columns), np.float32(fr / rows)
    jj = torch.arange(SIZE, dtype=torch.float32).view(1, SIZE)
    ii = torch.arange(SIZE, dtype=torch.float32).view(SIZE, 1)
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    if case.get("box"):
        x0, y0, x1, y1 = (np.float32(v) for v in case["box"])
        in_x = (jj >= float(np.float32(x0 * sx))) & (jj <= float(np.float32(x1 * sx)))
        inside |= in_x & (ii >= float(np.float32(y0 * sy))) & (ii <= float(np.float32(y1 * sy)))
    for p in case.get("points", []):
        px, py = float(np.float32(p["x"] * sx)), float(np.float32(p["y"] * sy))
        near = (jj - px) ** 2 + (ii - py) ** 2 <= DISC ** 2
        inside = inside | near if p["positive"] else inside & ~near
    logits = torch.where(inside, 20.0 * (value - 0.5), torch.full_like(value, -20.0))
    back = F.interpolate(logits[:fr, :fc][None, None], size=(rows, columns), mode="bilinear", align_corners=False)[0, 0]
    return (back > 0).numpy()


def scaled_channels(ds, frame_index):
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[frame_index]
    if ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(arr, ds).astype(np.float64)[None]
    else:
        values = np.moveaxis(arr.astype(np.float64), -1, 0)
    lo, hi = values.min(), values.max()
    return ((values - lo) / (hi - lo if hi > lo else 1)).astype(np.float32)


def check_mask(cases_path):
    out = []
    for case in json.load(open(cases_path)):
        ds = pydicom.dcmread(case["file"])
        rows, columns = int(ds.Rows), int(ds.Columns)
        got = unpack(case["bits"], rows, columns)
        where = region(case, rows, columns)
        want = fixture_answer(ds, case.get("frame", 1) - 1, case)
        out.append({
            "pixels": int(got.sum()),
            "expectedPixels": int(want.sum()),
            "dice": dice(got, want),
            "diceFlippedRows": dice(got[::-1, :], want),
            "diceFlippedColumns": dice(got[:, ::-1], want),
            "outside": int((got & ~ndimage.binary_dilation(where, iterations=2)).sum()),
        })
    json.dump(out, sys.stdout)


def code(item):
    return {"scheme": str(item.CodingSchemeDesignator), "code": str(item.CodeValue), "meaning": str(item.CodeMeaning)}


def check_seg(seg_path, sources):
    files = []
    for s in sources:
        files += sorted(glob.glob(os.path.join(s, "**", "*"), recursive=True)) if os.path.isdir(s) else [s]
    by_uid = {}
    for f in files:
        if os.path.isfile(f):
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:
                continue
            if "SOPInstanceUID" in ds:  # not a DICOMDIR
                by_uid[str(ds.SOPInstanceUID)] = ds
    report = {"highdicom": "ok"}
    try:
        import highdicom as hd

        hd.seg.segread(seg_path)
    except Exception as err:  # what highdicom says is the finding
        report["highdicom"] = f"{type(err).__name__}: {err}"
    seg = pydicom.dcmread(seg_path)
    segment = seg.SegmentSequence[0]
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    report.update({
        "sopClassUID": str(seg.SOPClassUID),
        "seriesInstanceUID": str(seg.SeriesInstanceUID),
        "seriesDescription": str(seg.SeriesDescription),
        "instanceNumber": int(seg.InstanceNumber),
        "segments": len(seg.SegmentSequence),
        "label": str(segment.SegmentLabel),
        "algorithmType": str(segment.SegmentAlgorithmType),
        "algorithmName": str(algorithm.AlgorithmName),
        "algorithmVersion": str(algorithm.AlgorithmVersion),
        "category": code(segment.SegmentedPropertyCategoryCodeSequence[0]),
        "type": code(segment.SegmentedPropertyTypeCodeSequence[0]),
        "frames": [],
    })
    masks = seg.pixel_array.astype(bool)
    if int(seg.NumberOfFrames) == 1:
        masks = masks[np.newaxis]
    for i, groups in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src = groups.DerivationImageSequence[0].SourceImageSequence[0]
        uid = str(src.ReferencedSOPInstanceUID)
        source = by_uid.get(uid)
        position = None
        if "PlanePositionSequence" in groups:
            position = [float(v) for v in groups.PlanePositionSequence[0].ImagePositionPatient]
        matches = None
        if source is not None and "ImagePositionPatient" in source:
            matches = position is not None and bool(np.allclose(position, [float(v) for v in source.ImagePositionPatient], atol=1e-3))
        report["frames"].append({"source": uid, "found": source is not None, "positionMatches": matches, "bits": pack(masks[i])})
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "mask":
        check_mask(sys.argv[2])
    else:
        check_seg(sys.argv[2], sys.argv[3:])
