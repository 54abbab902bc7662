"""Training from DICOM + DICOM SEG (`--dataset dicom-seg`): a small PACS-like folder is built from real
HC18 images (CT Image objects with a rescale, one patient each, SEGs written by highdicom), read back
as records, split by patient, trained on for a few steps, and evaluated."""
import json

import highdicom as hd
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ldfsam_models import data as D
from ldfsam_models.__main__ import main
from ldfsam_models.dicom_dataset import load_dicom_seg
from ldfsam_models.train import dataset_splits

HC18 = D.default_data_root() / "hc18"
pytestmark = pytest.mark.skipif(not (HC18 / "index.csv").exists(), reason="shared HC18 data not found")
INTERCEPT = -100.0  # stored = PNG value, so the rescaled value is PNG value - 100
WINDOW = {"default": {"kind": "window", "center": 127.5 + INTERCEPT, "width": 255}}  # back to value / 255


def ct_from_png(png, patient: str, position_z: float) -> Dataset:
    grey = np.asarray(Image.open(png).convert("L"))[::2, ::2]  # half size keeps the test quick
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient, f"Test^{patient}", "", ""
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20260101", "120000", "", "", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 1, 1, "test"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, position_z], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.2, 0.2], 1.0
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, INTERCEPT, "HU"
    ds.PixelData = grey.astype(np.uint16).tobytes()
    return ds


@pytest.fixture(scope="module")
def pacs_folder(tmp_path_factory):
    """12 patients, one CT slice and one SEG each, as a PACS export might lay them out."""
    root = tmp_path_factory.mktemp("pacs")
    records = D.load_hc18()[:12]
    for i, r in enumerate(records):
        ct = ct_from_png(r.image, f"P{i:02d}", float(i))
        mask = np.asarray(Image.open(r.mask).convert("L"))[::2, ::2] > 127
        (root / ct.PatientID).mkdir()
        ct.save_as(root / ct.PatientID / "ct.dcm", enforce_file_format=True)
        seg = hd.seg.Segmentation(
            source_images=[ct], pixel_array=mask[None].astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[hd.seg.SegmentDescription(
                segment_number=1, segment_label="Fetal head",
                segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
                segmented_property_type=hd.sr.CodedConcept("69536005", "SCT", "Head"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
            series_instance_uid=generate_uid(), series_number=2, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1")
        seg.save_as(root / ct.PatientID / "seg.dcm")
    (root / "notes.txt").write_text("not DICOM")  # other files in the export are ignored
    return root, records


def test_records_hold_the_rescaled_slices_and_the_seg_masks(pacs_folder, tmp_path):
    root, sources = pacs_folder
    records = load_dicom_seg(root, tmp_path)
    assert len(records) == 12
    assert sorted(r.subject for r in records) == [f"P{i:02d}" for i in range(12)]
    first = next(r for r in records if r.subject == "P00")
    png = np.asarray(Image.open(sources[0].image).convert("L"))[::2, ::2]
    raw = D.read_raw(first.image)
    assert raw.shape == (*png.shape, 3) and np.array_equal(raw[..., 0], png.astype(np.float32) + INTERCEPT)
    assert np.array_equal(D.read_raw(first.mask)[..., 0] > 127, np.asarray(Image.open(sources[0].mask).convert("L"))[::2, ::2] > 127)
    assert first.pixel_spacing_mm == (0.2, 0.2) and first.meta["modality"] == "CT"
    # The window policy maps the rescaled values back to PNG value / 255, as the server would.
    assert np.allclose(D.record_image01(first, WINDOW)[..., 0], png / 255.0, atol=1e-6)
    inverted = D.Record(first.id, first.subject, first.image, first.mask, None, "dicom-seg", {**first.meta, "photometric": "MONOCHROME1"})
    assert np.allclose(D.record_image01(inverted, WINDOW)[..., 0], 1 - png / 255.0, atol=1e-6)
    # The project's split keeps patients apart: 12 patients -> 9 train, 1 val, 2 test.
    splits = dataset_splits("dicom-seg", str(root), cache_dir=tmp_path)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [9, 1, 2]


def test_missing_segment_and_empty_folder_are_clear_errors(pacs_folder, tmp_path):
    root, _ = pacs_folder
    with pytest.raises(ValueError, match="no SEG .* has segment 2"):
        load_dicom_seg(root, tmp_path, segment_number=2, log=lambda _: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM SEG"):
        load_dicom_seg(tmp_path / "empty", tmp_path)


def test_train_and_eval_on_dicom_seg(pacs_folder, tmp_path, capsys):
    root, _ = pacs_folder
    torch.manual_seed(0)
    args = ["--dataset", "dicom-seg", "--data", str(root), "--intensity", json.dumps(WINDOW)]
    assert main(["train", *args, "--runs-dir", str(tmp_path), "--run", "pacs", "--batch-size", "2", "--steps-per-epoch", "1",
                 "--epochs", "1", "--teacher-scale", "n", "--limit-train", "4"]) == 0
    summary = json.loads((tmp_path / "pacs" / "summary.json").read_text())
    assert summary["dataset"] == "dicom-seg" and summary["train_images"] == 4 and summary["test_images"] == 2
    assert summary["options"]["intensity"] == WINDOW
    from ldfsam_models.evaluate import load_predictor

    assert load_predictor(str(tmp_path / "pacs" / "segment-best.pt")).intensity == WINDOW  # eval uses the run's policy
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "pacs" / "segment-best.pt"), *args[:4], "--split", "test", "--json", "--num-overlays", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["cases"] == 2 and result["summary"]["hd95"]["unit"] == "mm"
