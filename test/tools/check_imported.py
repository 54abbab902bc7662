"""Independent reading of the DICOM files `ldfsam import-images` wrote, with pydicom 3 (+ pylibjpeg),
against their source images read with Pillow, for test/integration/import-images.test.ts.

For every DICOM=SOURCE pair it prints one JSON object (a list in all) with what pydicom reads
(SOP class, transfer syntax, photometric, size, ultrasound calibration in mm, Pixel Spacing), whether
pydicom's decoding equals the source (PNG: exactly; JPEG: largest and mean difference, since pylibjpeg's
libjpeg and Pillow's libjpeg-turbo round differently), whether the encapsulated JPEG frame is the source
bitstream byte for byte, and writes both decodings as interleaved uint8 .bin files for the TypeScript
side to compare the server's decoder with.

usage: python check_imported.py --out DIR DICOM=SOURCE...
"""
import argparse
import json
import os

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("pairs", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = []
    for n, pair in enumerate(args.pairs):
        dicom_path, source_path = pair.split("=", 1)
        ds = pydicom.dcmread(dicom_path)
        source_image = Image.open(source_path)
        source = np.asarray(source_image.convert("L" if ds.SamplesPerPixel == 1 else "RGB"))
        decoded = ds.pixel_array  # pydicom 3 converts YBR to RGB
        diff = np.abs(decoded.astype(np.int16) - source.astype(np.int16))
        ts = str(ds.file_meta.TransferSyntaxUID)
        bitstream_unchanged = None
        if ts == "1.2.840.10008.1.2.4.50":
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
            original = open(source_path, "rb").read()
            # Fragments have even length: an odd bitstream carries one trailing pad byte.
            bitstream_unchanged = frame[: len(original)] == original and len(frame) - len(original) in (0, 1)
        regions = ds.get("SequenceOfUltrasoundRegions")
        us_delta_mm = None
        if regions:
            r = regions[0]
            us_delta_mm = {
                "x": float(r.PhysicalDeltaX) * 10,
                "y": float(r.PhysicalDeltaY) * 10,
                "unitsX": int(r.PhysicalUnitsXDirection),
                "unitsY": int(r.PhysicalUnitsYDirection),
                "region": [int(r.RegionLocationMinX0), int(r.RegionLocationMinY0), int(r.RegionLocationMaxX1), int(r.RegionLocationMaxY1)],
            }
        pydicom_bin = os.path.join(args.out, f"{n:03d}-pydicom.bin")
        source_bin = os.path.join(args.out, f"{n:03d}-source.bin")
        np.ascontiguousarray(decoded, dtype=np.uint8).tofile(pydicom_bin)
        np.ascontiguousarray(source, dtype=np.uint8).tofile(source_bin)
        results.append(
            {
                "dicom": dicom_path,
                "source": source_path,
                "sopClassUID": str(ds.SOPClassUID),
                "modality": str(ds.Modality),
                "transferSyntaxUID": ts,
                "photometricInterpretation": str(ds.PhotometricInterpretation),
                "rows": int(ds.Rows),
                "columns": int(ds.Columns),
                "samplesPerPixel": int(ds.SamplesPerPixel),
                "shape": list(decoded.shape),
                "sourceShape": list(source.shape),
                "pixelSpacing": [float(v) for v in ds.PixelSpacing] if "PixelSpacing" in ds else None,
                "usDeltaMm": us_delta_mm,
                "maxDiff": int(diff.max()),
                "meanDiff": float(diff.mean()),
                "bitstreamUnchanged": bitstream_unchanged,
                "patientID": str(ds.PatientID),
                "patientIdentityRemoved": str(ds.get("PatientIdentityRemoved", "")),
                "pydicomBin": pydicom_bin,
                "sourceBin": source_bin,
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
