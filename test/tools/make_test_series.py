"""Derives test series from the real CT slices in shared/data, written with pydicom.

Each output series gets new Study/Series/SOP Instance UIDs (derived from the source UIDs, so
reruns are identical) and lands in its own folder under --out:

  enhanced-ct/     one Enhanced CT instance holding every slice as a frame, frames in shuffled
                   order, per-frame Plane Position and Pixel Value Transformation
  tilted/          the slices with a gantry tilt of 15 degrees (orientation and positions rotated)
  uneven/          the slices with one gap doubled (a slice removed) and shuffled instance numbers
  mixed-sizes/     three slices, one cropped to 256x256
  mixed-orient/    three slices, one with a sagittal orientation
  no-geometry/     two CT slices without Image Position/Orientation (Patient)
  blank/           two CT slices whose pixels are all equal (nothing to segment)
  truncated/       one slice whose Pixel Data lost its second half
  no-images/       a series holding only a non-image object (a Key Object Selection without pixels)
  ct-rle/, ct-j2k/, ct-jpegls/
                   the CT re-encoded as RLE Lossless, JPEG 2000 Lossless, JPEG-LS Lossless
  ct-jpegll/, us-jpegll/
                   three CT slices and the RGB ultrasound as JPEG Lossless SV1 (DCMTK's dcmcjpeg)
  ct-mono1/        three CT slices labelled MONOCHROME1 (values unchanged)
  us-ybr-full/, us-ybr-422/, us-planar/, us-jpeg-422/
                   the RGB ultrasound US1_UNCR as native YBR_FULL, native YBR_FULL_422, planar RGB,
                   and JPEG baseline YBR_FULL_422 (encoded with Pillow)

usage: python make_test_series.py --ct DIR --us FILE --out DIR
"""
import argparse
import copy
import glob
import hashlib
import math
import os
import random
import subprocess

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

ROOT = "2.25."


def uid(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return ROOT + str(int.from_bytes(digest[:15], "big"))


def load_ct(folder):
    slices = []
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            slices.append(ds)
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return slices


def renew(ds, name, index):
    ds = copy.deepcopy(ds)
    ds.StudyInstanceUID = uid(name, "study")
    ds.SeriesInstanceUID = uid(name, "series")
    ds.SOPInstanceUID = uid(name, "sop", str(index))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = f"ldfsam test: {name}"
    ds.PatientID = "LDFSAM-TEST"
    return ds


def save(ds, out, name, index):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    ds.save_as(os.path.join(folder, f"{index:03d}.dcm"), enforce_file_format=True)


def rotate_x(v, degrees):
    a = math.radians(degrees)
    x, y, z = v
    return [x, y * math.cos(a) - z * math.sin(a), y * math.sin(a) + z * math.cos(a)]


def make_enhanced(slices, out):
    name = "enhanced-ct"
    first = slices[0]
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    for kw in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"):
        setattr(ds, kw, getattr(first, kw, ""))
    ds.PatientID = "LDFSAM-TEST"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.Modality = "CT"
    ds.StudyInstanceUID = uid(name, "study")
    ds.SeriesInstanceUID = uid(name, "series")
    ds.SOPInstanceUID = uid(name, "sop", "0")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = "ldfsam test: enhanced-ct"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = first.Rows
    ds.Columns = first.Columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    order = list(range(len(slices)))
    random.Random(2025).shuffle(order)
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    shared.PixelMeasuresSequence = Sequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = first.ImageOrientationPatient
    shared.PlaneOrientationSequence = Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    frames = []
    for n, i in enumerate(order):
        s = slices[i]
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = s.ImagePositionPatient
        item.PlanePositionSequence = Sequence([pos])
        # A different rescale per frame, with stored values changed to keep the same HU.
        transform = Dataset()
        slope = 1 if n % 2 == 0 else 2
        intercept = float(s.RescaleIntercept) - 10 * (n % 3)
        transform.RescaleSlope = slope
        transform.RescaleIntercept = intercept
        transform.RescaleType = "HU"
        item.PixelValueTransformationSequence = Sequence([transform])
        content = Dataset()
        content.InStackPositionNumber = i + 1
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
        hu = s.pixel_array.astype(np.float64) * float(s.RescaleSlope) + float(s.RescaleIntercept)
        stored = np.round((hu - intercept) / slope).astype(np.int16)
        frames.append(stored)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).tobytes()
    save(ds, out, name, 0)


def make_colour(us, out):
    rgb = us.pixel_array  # rows x columns x 3, uint8
    rows, cols = rgb.shape[:2]

    ds = renew(us, "us-ybr-full", 0)
    ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    save(ds, out, "us-ybr-full", 0)

    ds = renew(us, "us-ybr-422", 0)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint16)
    # Y1 Y2 Cb Cr for each pair of pixels, chroma averaged over the pair.
    pairs = ybr.reshape(rows, cols // 2, 2, 3)
    packed = np.empty((rows, cols // 2, 4), dtype=np.uint8)
    packed[..., 0] = pairs[:, :, 0, 0]
    packed[..., 1] = pairs[:, :, 1, 0]
    packed[..., 2] = (pairs[:, :, :, 1].sum(axis=2) + 1) // 2
    packed[..., 3] = (pairs[:, :, :, 2].sum(axis=2) + 1) // 2
    ds.PixelData = packed.tobytes()
    ds.PhotometricInterpretation = "YBR_FULL_422"
    save(ds, out, "us-ybr-422", 0)

    ds = renew(us, "us-planar", 0)
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    save(ds, out, "us-planar", 0)

    import io

    from PIL import Image

    ds = renew(us, "us-jpeg-422", 0)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=90, subsampling=1)  # 4:2:2
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    save(ds, out, "us-jpeg-422", 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ct", required=True)
    parser.add_argument("--us", required=True, help="an uncompressed RGB ultrasound file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    slices = load_ct(args.ct)
    make_enhanced(slices, args.out)

    centre = [float(v) for v in slices[len(slices) // 2].ImagePositionPatient]
    for i, s in enumerate(slices):
        ds = renew(s, "tilted", i)
        ds.ImageOrientationPatient = [round(v, 6) for v in [1, 0, 0] + rotate_x([0, 1, 0], 15)]
        p = [float(v) - c for v, c in zip(s.ImagePositionPatient, centre)]
        # Gantry tilt: the slab shears along y; each slice stays at its table position (z).
        p = [p[0], p[1] + p[2] * math.tan(math.radians(15)), p[2]]
        ds.ImagePositionPatient = [round(v + c, 4) for v, c in zip(p, centre)]
        ds.GantryDetectorTilt = 15
        ds.InstanceNumber = len(slices) - i
        save(ds, args.out, "tilted", i)

    kept = [s for k, s in enumerate(slices) if k != 5]
    numbers = list(range(1, len(kept) + 1))
    random.Random(7).shuffle(numbers)
    for i, s in enumerate(kept):
        ds = renew(s, "uneven", i)
        ds.InstanceNumber = numbers[i]
        save(ds, args.out, "uneven", i)

    for i, s in enumerate(slices[:3]):
        ds = renew(s, "mixed-sizes", i)
        if i == 1:
            ds.PixelData = s.pixel_array[:256, :256].copy().tobytes()
            ds.Rows, ds.Columns = 256, 256
        save(ds, args.out, "mixed-sizes", i)

    for i, s in enumerate(slices[:3]):
        ds = renew(s, "mixed-orient", i)
        if i == 2:
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        save(ds, args.out, "mixed-orient", i)

    for i, s in enumerate(slices[:2]):
        ds = renew(s, "no-geometry", i)
        del ds.ImagePositionPatient
        del ds.ImageOrientationPatient
        save(ds, args.out, "no-geometry", i)

    for i, s in enumerate(slices[:2]):
        ds = renew(s, "blank", i)
        ds.PixelData = np.full((s.Rows, s.Columns), 100, dtype=np.uint16).tobytes()
        save(ds, args.out, "blank", i)

    ds = renew(slices[0], "truncated", 0)
    ds.PixelData = bytes(ds.PixelData)[: len(ds.PixelData) // 2]
    save(ds, args.out, "truncated", 0)

    for i, s in enumerate(slices[:3]):
        ds = renew(s, "ct-mono1", i)
        ds.PhotometricInterpretation = "MONOCHROME1"
        save(ds, args.out, "ct-mono1", i)

    make_colour(pydicom.dcmread(args.us), args.out)

    # Studies of their own for the interactive API tests (they store SEGs, which other tests count):
    # the whole CT, and the non-square RGB ultrasound (640 x 480: x and y cannot be mixed up unseen).
    for i, s in enumerate(slices):
        save(renew(s, "ct-interactive", i), args.out, "ct-interactive", i)
    save(renew(pydicom.dcmread(args.us), "us-interactive", 0), args.out, "us-interactive", 0)

    # JPEG Lossless (process 14, SV1): no Python encoder exists, DCMTK's dcmcjpeg writes it.
    for name, sources in (("ct-jpegll", slices[:3]), ("us-jpegll", [pydicom.dcmread(args.us)])):
        for i, s in enumerate(sources):
            ds = renew(s, name, i)
            save(ds, args.out, name, i)
            path = os.path.join(args.out, name, f"{i:03d}.dcm")
            subprocess.run(["dcmcjpeg", "--encode-lossless-sv1", path, path + ".jpeg"], check=True)
            os.replace(path + ".jpeg", path)

    for name, syntax in (("ct-rle", RLELossless), ("ct-j2k", JPEG2000Lossless), ("ct-jpegls", JPEGLSLossless)):
        for i, s in enumerate(slices):
            ds = renew(s, name, i)
            ds.compress(syntax)
            save(ds, args.out, name, i)

    ko = Dataset()
    ko.file_meta = pydicom.dataset.FileMetaDataset()
    ko.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ko.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ko.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ko.StudyInstanceUID = uid("no-images", "study")
    ko.SeriesInstanceUID = uid("no-images", "series")
    ko.SOPInstanceUID = uid("no-images", "sop", "0")
    ko.file_meta.MediaStorageSOPInstanceUID = ko.SOPInstanceUID
    ko.Modality = "KO"
    ko.PatientID = "LDFSAM-TEST"
    ko.PatientName = "Test^KO"
    ko.SeriesNumber = 99
    ko.InstanceNumber = 1
    save(ko, args.out, "no-images", 0)


if __name__ == "__main__":
    main()
