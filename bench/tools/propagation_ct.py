"""Propagation quality on the shared CT (used by `ldfsam bench-interactive --quality`).

The head phantom's central insert is a cylinder of about 95 HU through the first 11 slices (in
position order); its reference on each slice is the connected region of 20-200 HU at the insert
(limited to a 42-pixel radius where it touches another structure), and it is absent from slice 11 on.
No expert drew it, but the insert is a uniform material in air and soft plastic, so a threshold
outlines it to about a pixel.

  box --ct DIR --slice K        prints the reference's box + 5% per side on slice K (the seed prompt)
  score --ct DIR --masks FILE   FILE: {"runs": {name: [{slice, iou, bits}]}} (bits: base64, LSB first);
                                prints per run the Dice per slice, the predicted IoU on slices with and
                                without the insert, and the mean Dice over the slices that have it
"""
import argparse
import base64
import glob
import json
import os
import sys

import numpy as np
import pydicom
from scipy import ndimage


def volume(folder):
    slices = []
    for path in glob.glob(os.path.join(folder, "*")):
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            slices.append(ds)
    # The server's planned order: along the slice normal (these slices are axial, so by z).
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])


def reference(vol):
    gt = np.zeros(vol.shape, bool)
    yy, xx = np.mgrid[0 : vol.shape[1], 0 : vol.shape[2]]
    centre = (270, 250)
    for i in range(len(vol)):
        labels, _ = ndimage.label((vol[i] > 20) & (vol[i] < 200))
        label = labels[centre]
        if not label:
            continue
        region = labels == label
        if region.sum() > 8000:  # merged with a neighbour: keep the insert's disc
            region &= (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 42**2
        gt[i] = region
        cy, cx = ndimage.center_of_mass(region)
        centre = (int(round(cy)), int(round(cx)))
    return gt


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["box", "score"])
    p.add_argument("--ct", required=True)
    p.add_argument("--slice", type=int, default=4)
    p.add_argument("--masks")
    args = p.parse_args()
    gt = reference(volume(args.ct))
    if args.what == "box":
        ys, xs = np.nonzero(gt[args.slice])
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        mx, my = 0.05 * (x1 - x0 + 1), 0.05 * (y1 - y0 + 1)
        h, w = gt.shape[1:]
        json.dump([max(0.0, x0 - mx), max(0.0, y0 - my), min(w - 1.0, x1 + mx), min(h - 1.0, y1 + my)], sys.stdout)
        return
    runs = json.load(open(args.masks))["runs"]
    out = {"referenceSlices": [int(i) for i in np.nonzero(gt.reshape(len(gt), -1).any(axis=1))[0]], "runs": {}}
    rows, columns = gt.shape[1:]
    for name, masks in runs.items():
        per = []
        for m in sorted(masks, key=lambda m: m["slice"]):
            bits = np.unpackbits(np.frombuffer(base64.b64decode(m["bits"]), np.uint8), bitorder="little")[: rows * columns]
            got = bits.reshape(rows, columns).astype(bool)
            ref = gt[m["slice"]]
            per.append({"slice": m["slice"], "iou": m["iou"], "dice": dice(got, ref), "present": bool(ref.any()), "pixels": int(got.sum())})
        present = [x for x in per if x["present"]]
        absent = [x for x in per if not x["present"]]
        out["runs"][name] = {
            "slices": per,
            "meanDicePresent": float(np.mean([x["dice"] for x in present])) if present else None,
            "minIouPresent": min((x["iou"] for x in present), default=None),
            "maxIouAbsent": max((x["iou"] for x in absent), default=None),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
