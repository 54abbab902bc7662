"""Images outside shared/data, with reference masks, for `npm run bench:outside`: PyRadiomics' five
test cases (brain1, brain2: MR brain tumours; breast1: an MR breast lesion crop; lung1, lung2: CT lung
nodules), from the source distribution of pyradiomics 3.0.1 on PyPI (BSD-3-Clause; its data/ folder),
fetched once into bench/.cache and checked against its SHA-256. Each volume is written as a DICOM
series (CT or MR Image Storage, its NRRD geometry as position and orientation, HU stored as they are
for CT), so that the server plans, reads and preprocesses it as any series from a PACS.

  dicom --out DIR                 writes DIR/<case>/<k>.dcm; JSON: [{case, modality, studyInstanceUID,
                                  seriesInstanceUID, slices: [{sop, k, pixels, box, point}]}] for every
                                  slice whose label has >= MIN_PIXELS pixels (prompts as the Python
                                  evaluation makes them: ldfsam_models.prompted.reference_prompt)
  score --out DIR --masks FILE    FILE: {"box"|"point": {"<case>/<k>": bits (base64, LSB first)}};
                                  JSON: per prompt, Dice per case (mean over its slices) and over all slices
"""
import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

from ldfsam_models.prompted import reference_prompt  # noqa: E402

SDIST = "https://files.pythonhosted.org/packages/1b/35/c7f7fb7affd302fd8107dcee6b6e7aaf3708b75ad69d5f9a3dfcadb73eaa/pyradiomics-3.0.1.tar.gz"
SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
CASES = {"brain1": "MR", "brain2": "MR", "breast1": "MR", "lung1": "CT", "lung2": "CT"}
MIN_PIXELS = 25
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "pyradiomics-3.0.1"


def fetch() -> Path:
    """The sdist's data/ folder, downloaded and checked once."""
    data = CACHE / "data"
    if (data / "lung2_label.nrrd").exists():
        return data
    CACHE.mkdir(parents=True, exist_ok=True)
    blob = urllib.request.urlopen(SDIST, timeout=300).read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"pyradiomics-3.0.1.tar.gz: SHA-256 {digest}, expected {SHA256}")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name.startswith("pyradiomics-3.0.1/data/") and m.name.endswith(".nrrd"):
                (data / Path(m.name).name).parent.mkdir(parents=True, exist_ok=True)
                (data / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    return data


def read_nrrd(path: Path):
    """A volume as voxels [k, row, column], its axes' steps (one row per axis, mm, LPS) and origin."""
    image = sitk.ReadImage(str(path))
    spacing = np.array(image.GetSpacing())
    axes = np.array(image.GetDirection()).reshape(3, 3).T  # ITK: axis i is column i
    return sitk.GetArrayFromImage(image), axes * spacing[:, None], np.array(image.GetOrigin())


def ds_(value) -> DSfloat:
    """A Decimal String of at most 16 characters (DICOM's limit)."""
    return DSfloat(float(value), auto_format=True)


def write_series(case: str, modality: str, volume, dirs, origin, out: Path):
    """One DICOM file per slice k; returns (study, series, [sop of slice k])."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    spacing = np.linalg.norm(dirs, axis=1)
    row_dir, col_dir = dirs[0] / spacing[0], dirs[1] / spacing[1]  # along a row (x), along a column (y)
    sops = []
    out.mkdir(parents=True, exist_ok=True)
    for k in range(volume.shape[0]):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID = f"PyRadiomics^{case}", f"pyradiomics-{case}"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.Modality = modality
        ds.SeriesDescription = f"pyradiomics 3.0.1 test case {case}"
        ds.ImagePositionPatient = [ds_(v) for v in origin + k * dirs[2]]
        ds.ImageOrientationPatient = [ds_(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [ds_(spacing[1]), ds_(spacing[0])]  # row spacing, column spacing
        ds.SliceThickness = ds_(spacing[2])
        # Type 2 attributes of the patient, study, series and image modules: present, unknown.
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber",
                        "PatientPosition", "AcquisitionNumber", "ContentDate", "ContentTime", "PositionReferenceIndicator",
                        "Manufacturer"):
            setattr(ds, keyword, "")
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
        ds.BodyPartExamined = {"brain": "HEAD", "breast": "BREAST", "lung": "CHEST"}[case.rstrip("0123456789")]
        if ds.BodyPartExamined == "BREAST":
            ds.Laterality = ""  # a paired part; which side is not recorded with the case
        if modality == "CT":
            ds.KVP = ""
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "RM", "NONE", "", "2D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = "", "", "", ""
            ds.SliceThickness = ds_(spacing[2])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(volume[k]).astype("<i2").tobytes()
        ds.save_as(out / f"{k:03d}.dcm", enforce_file_format=True)
        sops.append(sop)
    return study, series, sops


def dicom(out: Path) -> list:
    data = fetch()
    cases = []
    for case, modality in CASES.items():
        image, dirs, origin = read_nrrd(data / f"{case}_image.nrrd")
        label, _, _ = read_nrrd(data / f"{case}_label.nrrd")
        study, series, sops = write_series(case, modality, image, dirs, origin, out / case)
        reference = label > 0
        np.save(out / case / "reference.npy", reference)
        slices = []
        for k in range(reference.shape[0]):
            ref = reference[k]
            if ref.sum() < MIN_PIXELS:
                continue
            _, box = reference_prompt(ref, "box")
            points, _ = reference_prompt(ref, "point")
            slices.append({"sop": sops[k], "k": k, "pixels": int(ref.sum()), "box": [float(v) for v in box], "point": [points[0][0], points[0][1]]})
        cases.append({"case": case, "modality": modality, "studyInstanceUID": study, "seriesInstanceUID": series, "slices": slices})
    return cases


def dice(a, b) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def score(out: Path, masks: dict) -> dict:
    result = {}
    for prompt, by_key in masks.items():
        per_case, all_slices = {}, []
        for case in CASES:
            reference = np.load(out / case / "reference.npy")
            h, w = reference.shape[1:]
            values = []
            for key, bits in by_key.items():
                name, k = key.split("/")
                if name != case:
                    continue
                pred = np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8), bitorder="little")[: h * w]
                values.append(dice(pred.reshape(h, w).astype(bool), reference[int(k)]))
            if values:
                per_case[case] = {"slices": len(values), "dice": float(np.mean(values))}
                all_slices += values
        result[prompt] = {"cases": per_case, "slices": len(all_slices), "meanDiceOverSlices": float(np.mean(all_slices)),
                          "meanDiceOverCases": float(np.mean([c["dice"] for c in per_case.values()]))}
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["dicom", "score"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--masks")
    args = p.parse_args()
    if args.what == "dicom":
        json.dump(dicom(args.out), sys.stdout)
    else:
        json.dump(score(args.out, json.loads(Path(args.masks).read_text())), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
