"""Independent decoding of DICOM files with pydicom 3 (+ pylibjpeg codecs), for the TypeScript tests.

For every frame of every file it writes the values the server must produce:
  grey images  -> modality values (Rescale Slope/Intercept applied), float32
  colour       -> interleaved RGB (YBR converted, palette looked up), uint8 or uint16
plus the geometry pydicom reads. Output: <out>/index.json and one .bin per frame.

usage: python pydicom_reference.py --out DIR FILE...
"""
import argparse
import json
import os

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut

JPEG_LOSSY = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


def frames_of(ds):
    if ds.file_meta.TransferSyntaxUID in JPEG_LOSSY:
        # Lossy JPEG: chroma upsampling and IDCT are implementation-defined (libjpeg and libjpeg-turbo
        # differ by up to ~30 levels at edges), so decode with Pillow, whose libjpeg-turbo is the
        # codec family the server uses.
        import io

        from PIL import Image
        from pydicom.encaps import generate_frames

        n = int(ds.get("NumberOfFrames", 1) or 1)
        mode = "RGB" if ds.SamplesPerPixel == 3 else "L"
        frames = [np.asarray(Image.open(io.BytesIO(f)).convert(mode)) for f in generate_frames(ds.PixelData, number_of_frames=n)]
        return np.stack(frames), n, int(ds.SamplesPerPixel)
    arr = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    if n == 1:
        arr = arr[np.newaxis, ...]
    return arr, n, spp


def geometry(ds, index, macro, keyword):
    """A geometry attribute of frame `index`: per-frame, then shared functional groups, then top level."""
    groups = []
    if "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[index])
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for g in groups:
        if macro in g and keyword in g[macro][0]:
            return [float(v) for v in g[macro][0][keyword]]
    return [float(v) for v in ds[keyword].value] if keyword in ds else None


def modality_values(frame, ds, index):
    """Modality LUT; for enhanced multi-frame, the frame's Pixel Value Transformation (pydicom's
    apply_modality_lut reads only the top-level Rescale attributes)."""
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        item = None
        for groups in (ds.get("PerFrameFunctionalGroupsSequence", [None] * (index + 1))[index], (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
            if groups is not None and "PixelValueTransformationSequence" in groups:
                item = groups.PixelValueTransformationSequence[0]
                break
        if item is not None:
            return (frame.astype(np.float64) * float(item.RescaleSlope) + float(item.RescaleIntercept)).astype(np.float32)
    return apply_modality_lut(frame, ds).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    index = []
    for path in args.files:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            continue
        arr, n, spp = frames_of(ds)
        pi = ds.PhotometricInterpretation
        for f in range(n):
            frame = arr[f]
            if pi in ("MONOCHROME1", "MONOCHROME2"):
                values = modality_values(frame, ds, f)
                kind = "grey"
            elif pi == "PALETTE COLOR":
                values = apply_color_lut(frame, ds)
                kind = "rgb"
            else:
                # pydicom 3's pixel_array already converts YBR_FULL, YBR_FULL_422 and YBR_RCT/ICT to RGB.
                values = frame
                kind = "rgb"
            values = np.ascontiguousarray(values)
            name = f"{len(index):04d}.bin"
            values.tofile(os.path.join(args.out, name))
            index.append(
                {
                    "file": os.path.abspath(path),
                    "studyInstanceUID": str(ds.StudyInstanceUID),
                    "seriesInstanceUID": str(ds.SeriesInstanceUID),
                    "sopInstanceUID": str(ds.SOPInstanceUID),
                    "transferSyntaxUID": str(ds.file_meta.TransferSyntaxUID),
                    "photometricInterpretation": pi,
                    "frameNumber": f + 1,
                    "kind": kind,
                    "dtype": str(values.dtype),
                    "shape": list(values.shape),
                    "bin": name,
                    "position": geometry(ds, f, "PlanePositionSequence", "ImagePositionPatient"),
                    "orientation": geometry(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient"),
                    "pixelSpacing": geometry(ds, f, "PixelMeasuresSequence", "PixelSpacing"),
                }
            )
    with open(os.path.join(args.out, "index.json"), "w") as fh:
        json.dump(index, fh, indent=1)


if __name__ == "__main__":
    main()
