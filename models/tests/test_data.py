"""Data: records of the real folders, subject-level splits, boxes from masks, the augmented Dataset,
and DICOM SEG frames matched to their source slices on the real seg-corpus files."""
import copy
import hashlib
from collections import deque

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from ldfsam_models import data as D

ROOT = D.default_data_root()
SEG = ROOT / "seg-corpus"
pytestmark = pytest.mark.skipif(not ROOT.exists(), reason=f"shared data not found at {ROOT}")
# sha256 prefix of the comma-joined sorted test subjects, pinned when the split was fixed
PINNED_HC18_TEST = "2e409631ee368400"
PINNED_HC18_VAL = "8bd4539370173e92"
PINNED_PH2_TEST = "4c7fa91ed2f6c07f"


# ------------------------------------------------------------------------------------------------
# Records and splits
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hc18():
    return D.load_hc18()


@pytest.fixture(scope="module")
def ph2():
    return D.load_ph2()


def test_hc18_records(hc18):
    assert len(hc18) == 801
    assert len({r.subject for r in hc18}) == 650
    by_id = {r.id: r for r in hc18}
    # subjects with several acquisitions keep one subject id
    assert by_id["014_3HC"].subject == by_id["014_2HC"].subject == by_id["014_HC"].subject == "014"
    assert by_id["000_HC"].pixel_spacing_mm == (0.069135804, 0.069135804)
    assert by_id["000_HC"].mask.name == "000_HC.png" and by_id["000_HC"].mask.parent.name == "masks"


def test_ph2_records(ph2):
    assert len(ph2) == 150
    assert all(r.subject == r.id and r.pixel_spacing_mm is None for r in ph2)
    assert ph2[0].image.suffix == ".jpg" and ph2[0].mask.suffix == ".png"
    assert {r.meta.get("diagnosis") for r in ph2} <= {"0", "1", "2"}


def _fingerprint(names):
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16]


def test_hc18_split_is_deterministic_disjoint_and_sized(hc18):
    subjects = [r.subject for r in hc18]
    a = D.split_subjects(subjects)
    b = D.split_subjects(list(reversed(subjects)))  # input order must not matter
    assert a == b
    sets = {k: set(v) for k, v in a.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(subjects)
    # 650 subjects: test = round(0.2 * 650) = 130; val = round(0.1 * 520) = 52; train 468
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (468, 52, 130)
    # pinned so that a change of algorithm (or platform) that moves a subject fails here
    assert _fingerprint(a["test"]) == _fingerprint(D.split_subjects(subjects)["test"])
    assert _fingerprint(a["test"]) == PINNED_HC18_TEST
    assert _fingerprint(a["val"]) == PINNED_HC18_VAL

    records = D.split_records(hc18)
    assert sum(len(v) for v in records.values()) == 801
    where = {r.subject: k for k, v in records.items() for r in v}
    for k, v in records.items():
        assert all(where[r.subject] == k for r in v)  # no subject in two splits
    assert (len(records["train"]), len(records["val"]), len(records["test"])) == (574, 66, 161)


def test_ph2_split_sizes(ph2):
    parts = D.split_records(ph2)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (108, 12, 30)
    assert D.split_records(ph2) == parts
    assert _fingerprint(sorted(r.subject for r in parts["test"])) == PINNED_PH2_TEST


def test_split_fractions_are_parameters():
    s = D.split_subjects([f"{i:03d}" for i in range(100)], test_fraction=0.3, val_fraction=0.5, seed=7)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (35, 35, 30)
    assert s != D.split_subjects([f"{i:03d}" for i in range(100)], test_fraction=0.3, val_fraction=0.5, seed=8)


# ------------------------------------------------------------------------------------------------
# Boxes from masks
# ------------------------------------------------------------------------------------------------


def test_two_blobs_give_two_tight_boxes():
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 3:8] = 255  # rows 2-4, cols 3-7
    m[10:18, 20:29] = 1  # rows 10-17, cols 20-28
    m[12, 19] = 1  # a spur widening the second blob by one column
    boxes = D.boxes_from_mask(m)
    np.testing.assert_array_equal(boxes, [[3, 2, 8, 5], [19, 10, 29, 18]])
    assert boxes.dtype == np.float32


def test_eight_connectivity_and_min_pixels():
    m = np.zeros((10, 10), bool)
    m[1, 1] = m[2, 2] = m[3, 3] = True  # diagonal chain: one instance
    m[8, 8] = True  # a single pixel
    np.testing.assert_array_equal(D.boxes_from_mask(m), [[1, 1, 4, 4], [8, 8, 9, 9]])
    np.testing.assert_array_equal(D.boxes_from_mask(m, min_pixels=2), [[1, 1, 4, 4]])
    assert D.boxes_from_mask(np.zeros((5, 5))).shape == (0, 4)


def test_u_shape_merges_into_one_instance():
    m = np.zeros((8, 9), bool)
    m[0:7, 1] = True  # left bar
    m[0:7, 7] = True  # right bar, only joined at the bottom row
    m[6, 1:8] = True
    np.testing.assert_array_equal(D.boxes_from_mask(m), [[1, 0, 8, 7]])


def _flood_labels(m):
    """Reference 8-connected labelling by breadth-first search."""
    labels = np.zeros(m.shape, int)
    n = 0
    for r, c in zip(*np.nonzero(m)):
        if labels[r, c]:
            continue
        n += 1
        labels[r, c] = n
        queue = deque([(r, c)])
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < m.shape[0] and 0 <= xx < m.shape[1] and m[yy, xx] and not labels[yy, xx]:
                        labels[yy, xx] = n
                        queue.append((yy, xx))
    return labels, n


def test_labelling_matches_flood_fill_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((25, 31)) < 0.35
        labels, n = D.label_components(m)
        ref, n_ref = _flood_labels(m)
        assert n == n_ref
        np.testing.assert_array_equal(labels, ref)  # same numbering: row-major first pixel


# ------------------------------------------------------------------------------------------------
# Dataset and augmentation
# ------------------------------------------------------------------------------------------------


def test_dataset_item_on_real_hc18(hc18):
    r = hc18[0]
    item = D.SegmentationDataset([r], size=256)[0]
    assert item["image"].shape == (3, 256, 256) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert torch.equal(item["image"][0], item["image"][1])  # grey replicated
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["original_size"] == (540, 800)
    assert item["scale"] == (256 / 540, 256 / 800)
    # the box of the resized mask is the original box scaled per axis (to within resampling)
    original = D.boxes_from_mask(np.array(Image.open(r.mask)))
    scaled = original * np.array([256 / 800, 256 / 540, 256 / 800, 256 / 540])
    np.testing.assert_allclose(item["boxes"].numpy(), scaled, atol=1.0)
    np.testing.assert_array_equal(item["boxes"].numpy(), D.boxes_from_mask(item["mask"][0].numpy()))
    assert item["pixel_spacing_mm"] == pytest.approx((0.069135804 * 540 / 256, 0.069135804 * 800 / 256))


def test_augmentation_is_seeded(hc18, ph2):
    for records, kind in ((hc18[:2], "ultrasound"), (ph2[:2], "dermoscopy")):
        ds = D.SegmentationDataset(records, size=64, augment=kind, seed=3)
        a, b = ds[1], D.SegmentationDataset(records, size=64, augment=kind, seed=3)[1]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        draws = []
        for epoch in range(4):
            ds.set_epoch(epoch)
            draws.append(ds[1]["image"])
        assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_ultrasound_augmentation_has_no_colour(hc18):
    ds = D.SegmentationDataset(hc18[:1], size=64, augment="ultrasound")
    for epoch in range(3):
        ds.set_epoch(epoch)
        img = ds[0]["image"]
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


@pytest.fixture()
def blob_pair(tmp_path):
    """An image whose bright region IS the mask: an L-shaped blob, asymmetric under flips and turns."""
    m = np.zeros((96, 128), np.uint8)
    m[20:70, 30:50] = 255
    m[55:70, 30:100] = 255
    Image.fromarray(m).save(tmp_path / "img.png")
    Image.fromarray(m).save(tmp_path / "mask.png")
    return D.Record("blob", "blob", tmp_path / "img.png", tmp_path / "mask.png", (1.0, 1.0), "test")


@pytest.mark.parametrize("config", [D.ULTRASOUND, D.DERMOSCOPY, D.AugmentConfig(hflip=True, vflip=True, rotation="any")])
def test_geometric_augmentation_moves_image_mask_and_boxes_together(blob_pair, config):
    plain = D.SegmentationDataset([blob_pair], size=64)[0]
    config = D.AugmentConfig(hflip=config.hflip, vflip=config.vflip, rotation=config.rotation, max_degrees=config.max_degrees)
    ds = D.SegmentationDataset([blob_pair], size=64, augment=config)
    changed = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        bright = item["image"][0] >= 0.5
        mask = item["mask"][0] > 0
        agreement = (bright & mask).sum() / (bright | mask).sum()
        assert agreement > 0.95
        np.testing.assert_array_equal(item["boxes"].numpy(), D.boxes_from_mask(mask.numpy()))
        changed += not torch.equal(item["mask"], plain["mask"])
    assert changed > 0


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
    pairs = D.load_seg_pairs(seg_path, SEG / "dcmqi/ct-3slice")
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
    binary = D.load_seg_pairs(SEG / "highdicom/seg_image_ct_binary.dcm", SEG / "highdicom/source-ct")
    names = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f.name for f in (SEG / "highdicom/source-ct").iterdir()}
    assert [names[p.sop_instance_uid] for p in binary] == ["17136", "17166", "17196"]  # not 17106
    assert [p.sop_instance_uid for p in binary] == _derivation_uids(SEG / "highdicom/seg_image_ct_binary.dcm")
    assert [int(p.mask.sum()) for p in binary] == [127, 256, 255]
    # the true fractional SEG stores 128 / 64 / 0 of 255: thresholding at half the maximum keeps 128
    fractional = D.load_seg_pairs(SEG / "highdicom/seg_image_ct_true_fractional.dcm", SEG / "highdicom/source-ct")
    for a, b in zip(binary, fractional):
        assert a.sop_instance_uid == b.sop_instance_uid
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image, b.image)
    # the single-frame SEG next to its source in the same folder (the SEG files there are skipped)
    single = D.load_seg_pairs(SEG / "highdicom/seg_image_ct_binary_single_frame.dcm", SEG / "highdicom")
    assert len(single) == 1 and single[0].sop_instance_uid == str(pydicom.dcmread(SEG / "highdicom/ct_image.dcm").SOPInstanceUID)
    assert int(single[0].mask.sum()) == 1832


def test_segment_selection():
    path = SEG / "dcmqi/ct-3slice-seg/partial_overlaps.dcm"
    pairs = D.load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=3)
    assert [p.seg_frame for p in pairs] == [3, 4, 5]
    assert [p.sop_instance_uid for p in pairs] == _derivation_uids(path)[2:5]
    assert all(p.mask.any() for p in pairs)
    assert [p.seg_frame for p in D.load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=5)] == [7]
    with pytest.raises(ValueError, match="segment 9"):
        D.load_seg_pairs(path, SEG / "dcmqi/ct-3slice", segment_number=9)


def test_non_byte_aligned_frames_unpack_like_pydicom():
    ds = pydicom.dcmread(SEG / "pydicom-data/liver_nonbyte_aligned.dcm")
    assert (ds.Rows * ds.Columns) % 8 != 0  # 510 x 510: frames 2 and 3 start mid-byte
    ours = D.decode_seg_frames(ds)
    np.testing.assert_array_equal(ours, ds.pixel_array)
    assert [int(f.sum()) for f in ours] == [36233, 35645, 35220]


def test_position_fallback_without_derivation():
    seg = pydicom.dcmread(SEG / "dcmqi/ct-3slice-seg/liver.dcm")
    by_ref = D.load_seg_pairs(seg, SEG / "dcmqi/ct-3slice")
    stripped = copy.deepcopy(seg)
    for fg in stripped.PerFrameFunctionalGroupsSequence:
        del fg.DerivationImageSequence
    by_pos = D.load_seg_pairs(stripped, SEG / "dcmqi/ct-3slice")
    assert [p.sop_instance_uid for p in by_pos] == [p.sop_instance_uid for p in by_ref]
    assert all(p.matched_by == "position" for p in by_pos)
    # a frame moved off every slice matches nothing and says so
    stripped.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient[2] += 0.5
    with pytest.raises(ValueError, match="SEG frame 2"):
        D.load_seg_pairs(stripped, SEG / "dcmqi/ct-3slice")


def test_multiframe_source_by_frame_number_and_by_position():
    """The dcmqi 23x38x3 case ships its CT both as three files and as one legacy-converted
    multi-frame object with the same pixels; point the SEG at the multi-frame one."""
    seg = pydicom.dcmread(SEG / "dcmqi/23x38x3/seg/label.seg")
    singles = D.load_seg_pairs(seg, SEG / "dcmqi/23x38x3/image")
    mf = pydicom.dcmread(SEG / "dcmqi/23x38x3/multiframe/mf.dcm", stop_before_pixels=True)
    # SEG frame k refers to source frame (3 - k + 1): reversed, so a frame-order mix-up would show
    retargeted = copy.deepcopy(seg)
    for k, fg in enumerate(retargeted.PerFrameFunctionalGroupsSequence):
        src = fg.DerivationImageSequence[0].SourceImageSequence[0]
        src.ReferencedSOPInstanceUID = mf.SOPInstanceUID
        src.ReferencedFrameNumber = 3 - k
    pairs = D.load_seg_pairs(retargeted, SEG / "dcmqi/23x38x3/multiframe")
    assert [p.frame_number for p in pairs] == [3, 2, 1]
    for p, s in zip(pairs, reversed(singles)):
        np.testing.assert_array_equal(p.image, s.image)
    # without derivation references: per-frame Plane Position of the multi-frame source
    stripped = copy.deepcopy(seg)
    for fg in stripped.PerFrameFunctionalGroupsSequence:
        del fg.DerivationImageSequence
    stripped.ReferencedSeriesSequence[0].SeriesInstanceUID = mf.SeriesInstanceUID
    stripped.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = mf.SOPInstanceUID
    pairs = D.load_seg_pairs(stripped, SEG / "dcmqi/23x38x3/multiframe")
    assert [(p.sop_instance_uid, p.frame_number, p.matched_by) for p in pairs] == [(mf.SOPInstanceUID, f, "position") for f in (1, 2, 3)]
    for p, s in zip(pairs, singles):
        np.testing.assert_array_equal(p.image, s.image)
        np.testing.assert_array_equal(p.mask, s.mask)


def test_wrong_sources_are_refused():
    with pytest.raises(ValueError, match="no source image"):
        D.load_seg_pairs(SEG / "dcmqi/ct-3slice-seg/liver.dcm", SEG / "highdicom/source-ct")
    with pytest.raises(ValueError, match="not a DICOM SEG"):
        D.load_seg_pairs(SEG / "highdicom/ct_image.dcm", SEG / "highdicom")
