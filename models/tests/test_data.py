"""Data: records of the real folders, subject-level splits, boxes from masks, and the training
batches (cached tensors, seeded augmentation) that `train.py` builds from them."""
import hashlib
import json
from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

from ldfsam_models import data as D
from ldfsam_models.train import Batches, cached_tensors

ROOT = D.default_data_root()
if not ROOT.exists():  # a missing reference fails, it is not skipped
    raise RuntimeError(f"shared data not found at {ROOT}: see ../shared/data/README")
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


def test_ph2_folds_partition_the_training_pool_and_leave_test_alone(ph2):
    project = D.split_records(ph2)
    pool = {r.subject for r in project["train"] + project["val"]}
    vals = []
    for k in range(1, 5):
        fold = D.fold_records(ph2, k, 4)
        assert fold["test"] == project["test"]  # never part of a fold
        train, val = {r.subject for r in fold["train"]}, {r.subject for r in fold["val"]}
        assert not train & val and train | val == pool
        assert len(val) == 30  # 120 subjects dealt into 4 folds
        vals.append(val)
        assert D.fold_records(ph2, k, 4) == fold  # deterministic
    assert set().union(*vals) == pool and sum(len(v) for v in vals) == len(pool)  # each subject validated once
    # the project's own 12 validation subjects are spread over the folds, not one fold
    assert max(len({r.subject for r in project["val"]} & v) for v in vals) < 12


def test_folds_keep_a_subjects_images_together(hc18):
    fold = D.fold_records(hc18, 3, 5)
    where = {r.subject: k for k, v in fold.items() for r in v}
    assert all(where[r.subject] == k for k, v in fold.items() for r in v)
    assert sum(len(v) for v in fold.values()) == len(hc18)


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/1", "a/b", "2", "2/4/1", "-1/4", ""])
def test_a_bad_fold_is_refused_with_the_form_expected(text):
    with pytest.raises(ValueError, match="--fold"):
        D.parse_fold(text)


def test_parse_fold():
    assert D.parse_fold("2/4") == (2, 4)


def test_training_and_evaluation_take_the_fold(ph2, tmp_path):
    from ldfsam_models.evaluate import _check_fold
    from ldfsam_models.train import dataset_splits

    assert dataset_splits("ph2", fold="2/4") == D.fold_records(ph2, 2, 4)
    assert dataset_splits("ph2") == D.split_records(ph2)
    # a checkpoint of a fold run: its val split is only that fold's (the project's val was trained on)
    run = tmp_path / "ph2-cv2"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"options": {"fold": "2/4"}}))
    checkpoint = run / "segment-best.pt"
    _check_fold(checkpoint, "2/4", "val")
    _check_fold(checkpoint, None, "test")  # the test split is the same for every fold
    with pytest.raises(SystemExit, match="trained on fold 2/4: evaluate its val split with --fold 2/4"):
        _check_fold(checkpoint, None, "val")
    with pytest.raises(SystemExit, match="with --fold 2/4"):
        _check_fold(checkpoint, "1/4", "val")
    (run / "summary.json").write_text(json.dumps({"options": {"fold": None}}))
    with pytest.raises(SystemExit, match="trained on the project split: evaluate its val split without --fold"):
        _check_fold(checkpoint, "1/4", "val")


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
# Training batches and augmentation: train.cached_tensors, then train.Batches applying augment_pair
# ------------------------------------------------------------------------------------------------


def _items(batches, epoch):
    """(image, mask, boxes) of every item of one epoch, in the epoch's order."""
    return [item for images, masks, boxes in batches.epoch(epoch) for item in zip(images, masks, boxes)]


def _by_index(batches, images, epoch):
    """{record index: (image, mask, boxes)} of one epoch. The epoch's order depends on (seed, epoch)
    only, so the same batches without augmentation tell which record each item is."""
    plain = Batches(batches.images, batches.masks, batches.batch_size, batches.seed, None, batches.steps)
    out = {}
    for item, (unaugmented, _, _) in zip(_items(batches, epoch), _items(plain, epoch)):
        [i] = [i for i in range(len(images)) if torch.equal(images[i].float() / 255.0, unaugmented)]
        out[i] = item
    return out


def test_training_item_on_real_hc18(hc18, tmp_path):
    r = hc18[0]
    images, masks = cached_tensors([r], 256, tmp_path)
    assert images.shape == (1, 3, 256, 256) and images.dtype == torch.uint8
    assert masks.shape == (1, 1, 256, 256) and masks.dtype == torch.bool
    again = cached_tensors([r], 256, tmp_path)  # read back from the cache file
    assert torch.equal(again[0], images) and torch.equal(again[1], masks)
    [(image, mask, boxes)] = _items(Batches(images, masks, 1, 0, None), 0)
    assert image.shape == (3, 256, 256) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert torch.equal(image[0], image[1])  # grey replicated
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    with Image.open(r.image) as im:
        assert im.size == (800, 540)
    # the box of the resized mask is the original box scaled per axis (to within resampling)
    original = D.boxes_from_mask(np.array(Image.open(r.mask)))
    scaled = original * np.array([256 / 800, 256 / 540, 256 / 800, 256 / 540])
    np.testing.assert_allclose(boxes.numpy(), scaled, atol=1.0)
    np.testing.assert_array_equal(boxes.numpy(), D.boxes_from_mask(mask[0].numpy()))


def test_augmentation_is_seeded_per_seed_epoch_and_item(hc18, ph2, tmp_path):
    for records, kind in ((hc18[:3], "ultrasound"), (ph2[:3], "dermoscopy")):
        images, masks = cached_tensors(records, 64, tmp_path)
        batches = Batches(images, masks, 2, 3, kind)
        draws = []
        for epoch in range(4):
            items = _by_index(batches, images, epoch)
            assert sorted(items) == [0, 1, 2]
            # a new instance with the same seed (a resumed run) gives the same batches
            for a, b in zip(_items(batches, epoch), _items(Batches(images, masks, 2, 3, kind), epoch)):
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            # item i's augmentation is drawn from default_rng((seed, epoch, i)), wherever the epoch puts it
            for i, (image, mask, _) in items.items():
                rng = np.random.default_rng((3, epoch, i))
                expected = D.augment_pair(images[i].float() / 255.0, masks[i].float(), D.AUGMENTATIONS[kind], rng)
                assert torch.equal(image, expected[0]) and torch.equal(mask, expected[1])
            draws.append(items[1][0])
        assert any(not torch.equal(draws[0], d) for d in draws[1:])  # new draws each epoch


def test_ultrasound_augmentation_has_no_colour(hc18, tmp_path):
    images, masks = cached_tensors(hc18[:1], 64, tmp_path)
    batches = Batches(images, masks, 1, D.SPLIT_SEED, "ultrasound")
    for epoch in range(3):
        [(img, _, _)] = _items(batches, epoch)
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
def test_geometric_augmentation_moves_image_mask_and_boxes_together(blob_pair, config, tmp_path):
    images, masks = cached_tensors([blob_pair], 64, tmp_path)
    [(_, plain, _)] = _items(Batches(images, masks, 1, D.SPLIT_SEED, None), 0)
    config = D.AugmentConfig(hflip=config.hflip, vflip=config.vflip, rotation=config.rotation, max_degrees=config.max_degrees)
    batches = Batches(images, masks, 1, D.SPLIT_SEED, config)
    changed = 0
    for epoch in range(6):
        [(image, mask, boxes)] = _items(batches, epoch)
        bright = image[0] >= 0.5
        mask = mask[0] > 0
        agreement = (bright & mask).sum() / (bright | mask).sum()
        assert agreement > 0.95
        np.testing.assert_array_equal(boxes.numpy(), D.boxes_from_mask(mask.numpy()))
        changed += not torch.equal(mask, plain[0] > 0)
    assert changed > 0
