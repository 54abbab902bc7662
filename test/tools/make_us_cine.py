"""A multi-frame ultrasound series (US Multi-frame Image Storage, a cine loop) made from real HC18
images, for tests that need a long job: N frames of the same size, MONOCHROME2, 8-bit, explicit
VR little endian, one study of its own. Pixel size from HC18's index.csv as an ultrasound region.

usage: python make_us_cine.py --images IMG.png [IMG.png ...] --frames N [--scale F] --out FILE
"""
import argparse
import csv
import pathlib

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", required=True)
    parser.add_argument("--patient-id", default="HC18-CINE")
    parser.add_argument("--scale", type=float, default=1.0, help="resize factor (smaller files for long cines)")
    args = parser.parse_args()
    paths = [pathlib.Path(p) for p in args.images]
    index = paths[0].parent.parent / "index.csv"
    spacing = None
    if index.exists():
        with index.open() as f:
            for row in csv.DictReader(f):
                if row["file"] == paths[0].name:
                    spacing = float(row["pixel_size_mm"])
    images = [Image.open(p).convert("L") for p in paths]
    if args.scale != 1.0:
        images = [im.resize((round(im.width * args.scale), round(im.height * args.scale)), Image.BILINEAR) for im in images]
        spacing = spacing / args.scale if spacing else None
    frames = [np.asarray(im, dtype=np.uint8) for im in images]
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        raise SystemExit("all images must have the same size")
    stack = np.stack([frames[i % len(frames)] for i in range(args.frames)])

    # Fresh UIDs: each test run has a PACS of its own.
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = args.patient_id
    ds.PatientName = args.patient_id.replace("-", "^")
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.StudyID = "CINE"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "US"
    ds.Laterality = ""
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"HC18 cine ({args.frames} frames)"
    ds.InstanceNumber = 1
    ds.Manufacturer = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PatientOrientation = ""
    ds.ContentDate = ""
    ds.ContentTime = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = args.frames
    ds.FrameTime = 40.0
    ds.FrameIncrementPointer = 0x00181063
    ds.LossyImageCompression = "00"
    if spacing:
        region = Dataset()
        region.RegionSpatialFormat = 1
        region.RegionDataType = 1
        region.RegionFlags = 0
        region.RegionLocationMinX0 = 0
        region.RegionLocationMinY0 = 0
        region.RegionLocationMaxX1 = shape[1] - 1
        region.RegionLocationMaxY1 = shape[0] - 1
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = spacing / 10
        region.PhysicalDeltaY = spacing / 10
        ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = stack.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    print(ds.StudyInstanceUID)


if __name__ == "__main__":
    main()
