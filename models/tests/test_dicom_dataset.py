"""Training from DICOM + DICOM SEG (`--dataset dicom-seg`): SEG frames matched to their source slices on
the real seg-corpus files; then a small PACS-like folder built from real HC18 images (CT Image objects
with a rescale, one patient each, SEGs written by highdicom), read back as records, split by patient,
trained on for a few steps, and evaluated."""
import copy
import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ldfsam_models import data as D
from ldfsam_models.__main__ import main
from ldfsam_models.dicom_dataset import decode_seg_frames, load_dicom_seg, load_seg_pairs
from ldfsam_models.train import dataset_splits

HC18 = D.default_data_root() / "hc18"
SEG = D.default_data_root() / "seg-corpus"
if not (HC18 / "index.csv").exists():  # a missing reference fails, it is not skipped
    raise RuntimeError(f"shared HC18 data not found at {HC18}: see ../shared/data/README")
INTERCEPT = -100.0  # stored = PNG value, so the rescaled value is PNG value - 100
WINDOW = {"default": {"kind": "window", "center": 127.5 + INTERCEPT, "width": 255}}  # back to value / 255


# ------------------------------------------------------------------------------------------------
# DICOM SEG
# ------------------------------------------------------------------------------------------------


def _derivation_uids(path):
    ds = pydicom.dcmread(path)
    return [
        str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        for fg in ds.PerFrameFunctionalGroupsSequence
    ]


def _position_of(path):
    return [float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient]


def test_dcmqi_liver_frames_land_on_their_slices():
    seg_path = SEG / "dcmqi/ct-3slice-seg/liver.dcm"
    pairs = load_seg_pairs(seg_path, SEG / "dcmqi/ct-3slice")
    assert len(pairs) == 3
    assert [p.sop_instance_uid for p in pairs] == _derivation_uids(seg_path)
    assert [p.seg_frame for p in pairs] == [1, 2, 3]
    assert all(p.matched_by == "derivation" and p.frame_number is None for p in pairs)
    # frame 1 is the slice at z = -128.69 (03.dcm), frame 3 the one at -126.69 (01.dcm)
    uids = {f.name: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in (SEG / "dcmqi/ct-3slice").iterdir()}
    assert [p.sop_instance_uid for p in pairs] == [uids["03.dcm"], uids["02.dcm"], uids["01.dcm"]]
    seg = pydicom.dcmread(seg_path)
    for p, fg in zip(pairs, seg.PerFrameFunctionalGroupsSequence):
        src = next(f for f, u in uids.items() if u == p.sop_instance_uid)
        np.testing.assert_allclose(fg.PlanePositionSequence[0].ImagePositionPatient, _position_of(SEG / "dcmqi/ct-3slice" / src), atol=1e-3)
    # pydicom's own decoder counts these foreground pixels per frame
    assert [int(p.mask.sum()) for p in pairs] == [36233, 35645, 35220]
    assert pairs[0].image.shape == pairs[0].mask.shape == (512, 512)
    for p in pairs:  # the mask covers liver (soft tissue, ~45 HU), not air (-1000 HU)
        assert 20 < float(np.median(p.image[p.mask])) < 80


def test_highdicom_binary_and_fractional():
    binary = load_seg_pairs(SEG / "highdicom/seg_image_ct_binary.dcm", SEG / "highdicom/source-ct")
    names = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f.name for f in (SEG / "highdicom/source-ct").iterdir()}
    assert [names[p.sop_instance_uid] for p in binary] == ["17136", "17166", "17196"]  # not 17106
    assert [p.sop_instance_uid for p in binary] == _derivation_uids(SEG / "highdicom/seg_image_ct_binary.dcm")
    assert [int(p.mask.sum()) for p in binary] == [127, 256, 255]
    # the true fractional SEG stores 128 / 64 / 0 of 255: thresholding at half the maximum keeps 128
    fractional = load_seg_pairs(SEG / "highdicom/seg_image_ct_true_fractional.dcm", SEG / "highdicom/source-ct")
    for a, b in zip(binary, fractional):
        assert a.sop_instance_uid == b.sop_instance_uid
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image, b.image)
    # the single-frame SEG next to its source in the same folder (the SEG files there are skipped)
    single = load_seg_pairs(SEG / "highdicom/seg_image_ct_binary_single_frame.dcm", SEG / "highdicom")
    assert len(single) == 1 and single[0].sop_instance_uid == str(pydicom.dcmread(SEG / "highdicom/ct_image.dcm").SOPInstanceUID)
    assert int(single[0].mask.sum()) == 1832


def test_segment_selection():
    path = SEG / "dcmqi/ct-3slice-seg/partial_overlaps.dcm"
    pairs = load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=3)
    assert [p.seg_frame for p in pairs] == [3, 4, 5]
    assert [p.sop_instance_uid for p in pairs] == _derivation_uids(path)[2:5]
    assert all(p.mask.any() for p in pairs)
    assert [p.seg_frame for p in load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=5)] == [7]
    with pytest.raises(ValueError, match="segment 9"):
        load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=9)


def test_non_byte_aligned_frames_unpack_like_pydicom():
    ds = pydicom.dcmread(SEG / "pydicom-data/liver_nonbyte_aligned.dcm")
    assert (ds.Rows * ds.Columns) % 8 != 0  # 510 x 510: frames 2 and 3 start mid-byte
    ours = decode_seg_frames(ds)
    np.testing.assert_array_equal(ours, ds.pixel_array)
    assert [int(f.sum()) for f in ours] == [36233, 35645, 35220]


def test_position_fallback_without_derivation():
    seg = pydicom.dcmread(SEG / "dcmqi/ct-3slice-seg/liver.dcm")
    by_ref = load_seg_pairs(seg, SEG / "dcmqi/ct-3slice")
    stripped = copy.deepcopy(seg)
    for fg in stripped.PerFrameFunctionalGroupsSequence:
        del fg.DerivationImageSequence
    by_pos = load_seg_pairs(stripped, SEG / "dcmqi/ct-3slice")
    assert [p.sop_instance_uid for p in by_pos] == [p.sop_instance_uid for p in by_ref]
    assert all(p.matched_by == "position" for p in by_pos)
    # a frame moved off every slice matches nothing and says so
    stripped.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient[2] += 0.5
    with pytest.raises(ValueError, match="SEG frame 2"):
        load_seg_pairs(stripped, SEG / "dcmqi/ct-3slice")


def test_multiframe_source_by_frame_number_and_by_position():
    """The dcmqi 23x38x3 case ships its CT both as three files and as one legacy-converted
    multi-frame object with the same pixels; point the SEG at the multi-frame one."""
    seg = pydicom.dcmread(SEG / "dcmqi/23x38x3/seg/label.seg")
    singles = load_seg_pairs(seg, SEG / "dcmqi/23x38x3/image")
    mf = pydicom.dcmread(SEG / "dcmqi/23x38x3/multiframe/mf.dcm", stop_before_pixels=True)
    # SEG frame k refers to source frame (3 - k + 1): reversed, so a frame-order mix-up would show
    retargeted = copy.deepcopy(seg)
    for k, fg in enumerate(retargeted.PerFrameFunctionalGroupsSequence):
        src = fg.DerivationImageSequence[0].SourceImageSequence[0]
        src.ReferencedSOPInstanceUID = mf.SOPInstanceUID
        src.ReferencedFrameNumber = 3 - k
    pairs = load_seg_pairs(retargeted, SEG / "dcmqi/23x38x3/multiframe")
    assert [p.frame_number for p in pairs] == [3, 2, 1]
    for p, s in zip(pairs, reversed(singles)):
        np.testing.assert_array_equal(p.image, s.image)
    # without derivation references: per-frame Plane Position of the multi-frame source
    stripped = copy.deepcopy(seg)
    for fg in stripped.PerFrameFunctionalGroupsSequence:
        del fg.DerivationImageSequence
    stripped.ReferencedSeriesSequence[0].SeriesInstanceUID = mf.SeriesInstanceUID
    stripped.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = mf.SOPInstanceUID
    pairs = load_seg_pairs(stripped, SEG / "dcmqi/23x38x3/multiframe")
    assert [(p.sop_instance_uid, p.frame_number, p.matched_by) for p in pairs] == [(mf.SOPInstanceUID, f, "position") for f in (1, 2, 3)]
    for p, s in zip(pairs, singles):
        np.testing.assert_array_equal(p.image, s.image)
        np.testing.assert_array_equal(p.mask, s.mask)


def test_wrong_sources_are_refused():
    with pytest.raises(ValueError, match="no source image"):
        load_seg_pairs(SEG / "dcmqi/ct-3slice-seg/liver.dcm", SEG / "highdicom/source-ct")
    with pytest.raises(ValueError, match="not a DICOM SEG"):
        load_seg_pairs(SEG / "highdicom/ct_image.dcm", SEG / "highdicom")


# ------------------------------------------------------------------------------------------------
# Records from a PACS-like folder, training and evaluation
# ------------------------------------------------------------------------------------------------

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
