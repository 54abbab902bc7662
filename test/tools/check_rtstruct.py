"""Independent check of an RTSTRUCT against the SEG of the same run (pydicom + scikit-image).

Every contour is mapped from patient coordinates (mm) back onto the source image it references
(Image Position / Orientation / Pixel Spacing read from the source files with pydicom), checked to
lie in that image's plane, and filled with scikit-image's polygon rasteriser (pixel centres inside
the polygon); the contours of one ROI on one image are combined by union, the reading that fills
any hole written as a contour of its own: holes must come as keyholes (PS3.3 C.8.8.6.3), which
every reader fills alike. The SEG's frames are placed on their source images through
their Derivation Image references. Per ROI = segment number, the masks are compared image by image.

Usage: check_rtstruct.py --rtstruct RS.dcm --seg SEG.dcm SOURCE_FILES...
Prints JSON: per ROI the images with a mask on either side, mean/min Dice, images reproduced exactly,
the largest distance of a contour point from its image's plane, contours referencing an image whose
plane they are not in, and the mean Dice against the SEG flipped left-right and up-down (which a
correct reader must not match).
"""

import argparse
import json
import sys

import numpy as np
import pydicom
from skimage.draw import polygon


def geometry(ds):
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    spacing = [float(v) for v in ds.PixelSpacing]  # [between rows, between columns]
    return {
        "ipp": ipp,
        "row": row,
        "col": col,
        "normal": np.cross(row, col),
        "spacing": spacing,
        "shape": (int(ds.Rows), int(ds.Columns)),
    }


def rtstruct_masks(rs, images):
    """{roi number: {sop uid: mask}} and the plane checks."""
    masks = {}
    worst_plane = 0.0
    misplaced = 0
    for roi in rs.ROIContourSequence:
        per_image = masks.setdefault(int(roi.ReferencedROINumber), {})
        for contour in getattr(roi, "ContourSequence", []):
            assert contour.ContourGeometricType == "CLOSED_PLANAR", contour.ContourGeometricType
            uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            g = images[uid]
            pts = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            assert len(pts) == int(contour.NumberOfContourPoints)
            rel = pts - g["ipp"]
            dist = np.abs(rel @ g["normal"])
            worst_plane = max(worst_plane, float(dist.max()))
            # The image whose plane is nearest to the contour must be the one it references.
            nearest = min(images, key=lambda u: abs((pts[0] - images[u]["ipp"]) @ images[u]["normal"]))
            if nearest != uid:
                misplaced += 1
            c = rel @ g["row"] / g["spacing"][1]
            r = rel @ g["col"] / g["spacing"][0]
            rr, cc = polygon(r, c, shape=g["shape"])
            m = per_image.setdefault(uid, np.zeros(g["shape"], dtype=bool))
            m[rr, cc] |= True
    return masks, worst_plane, misplaced


def seg_masks(seg):
    frames = seg.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    masks = {}
    for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        per_image = masks.setdefault(number, {})
        per_image[uid] = per_image.get(uid, False) | frames[i].astype(bool)
    return masks


def dice(a, b):
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rtstruct", required=True)
    parser.add_argument("--seg", required=True)
    parser.add_argument("sources", nargs="+")
    args = parser.parse_args()
    images = {}
    for path in args.sources:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "ImagePositionPatient" in ds:
            images[ds.SOPInstanceUID] = geometry(ds)
    rs = pydicom.dcmread(args.rtstruct)
    seg = pydicom.dcmread(args.seg)
    rt, worst_plane, misplaced = rtstruct_masks(rs, images)
    sg = seg_masks(seg)
    names = {int(s.ROINumber): s.ROIName for s in rs.StructureSetROISequence}
    out = {"rois": [], "maxPlaneDistanceMm": worst_plane, "misplacedContours": misplaced}
    for number in sorted(set(rt) | set(sg)):
        a, b = rt.get(number, {}), sg.get(number, {})
        uids = sorted(set(a) | set(b))
        empty = lambda u: np.zeros(images[u]["shape"], dtype=bool)  # noqa: E731
        scores = [dice(a.get(u, empty(u)), b.get(u, empty(u))) for u in uids]
        exact = sum(bool(np.array_equal(a.get(u, empty(u)), b.get(u, empty(u)))) for u in uids)
        flipped = [dice(a.get(u, empty(u)), b.get(u, empty(u))[::-1, ::-1]) for u in uids]
        out["rois"].append(
            {
                "number": number,
                "name": names.get(number),
                "images": len(uids),
                "rtstructImages": len(a),
                "segImages": len(b),
                "meanDice": float(np.mean(scores)) if scores else None,
                "minDice": float(np.min(scores)) if scores else None,
                "exactImages": exact,
                "flippedMeanDice": float(np.mean(flipped)) if flipped else None,
                "voxels": int(sum(int(m.sum()) for m in b.values())),
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
