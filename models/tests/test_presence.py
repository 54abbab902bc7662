"""The presence calibration (ldfsam_models/presence.py): the fit, the threshold chosen on validation
within its Dice budget, the operating point, the negative crops, and the command end to end on the
presence fixture (test/fixtures/model-presence, whose score is known from the mask area)."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from ldfsam_models import presence
from ldfsam_models.manifest import validate_manifest

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "test" / "fixtures" / "model-presence"
SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


def rows_from(scores_pos, dice_pos, scores_neg, split="val", sets=("noise",)):
    """Rows whose single feature is the logit of the wanted score (so weights [1], bias 0 reproduce it)."""
    def logit(s):
        return float(np.log(s / (1 - s)))

    rows = [{"set": "positives", "split": split, "id": f"p{i}", "features": [logit(s)], "dice": d} for i, (s, d) in enumerate(zip(scores_pos, dice_pos))]
    rows += [{"set": sets[i % len(sets)], "split": split, "id": f"n{i}", "features": [logit(s)]} for i, s in enumerate(scores_neg)]
    return rows


def test_the_logistic_fit_separates_and_scores_as_the_server_does():
    rng = np.random.default_rng(0)
    pos = rng.normal([0.8, 0.9, 0.3, 0.8], 0.05, (200, 4))
    neg = rng.normal([0.2, 0.6, 0.05, 0.6], 0.05, (200, 4))
    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(200), np.zeros(200)]
    weights, bias = presence.fit_logistic(x, y, np.ones(400))
    rows = [{"features": list(v)} for v in x]
    scores = presence.scores_of(rows, weights, bias)
    # The raw-feature weights and bias give the server's sigmoid(bias + w . x) directly.
    assert np.allclose(scores, 1 / (1 + np.exp(-(bias + x @ weights))))
    assert (scores[:200] > 0.5).mean() > 0.99 and (scores[200:] < 0.5).mean() > 0.99
    # A constant feature does not break the fit (its weight stays 0).
    x_const = np.concatenate([x, np.ones((400, 1))], 1)
    w2, _ = presence.fit_logistic(x_const, y, np.ones(400))
    assert abs(w2[-1]) < 1e-6


def test_the_threshold_keeps_the_dice_budget_and_maximises_specificity():
    # Ten positives, Dice 0.9 each; one has a low score. Negatives spread from 0.05 to 0.6.
    pos = [0.95, 0.9, 0.92, 0.97, 0.3, 0.88, 0.99, 0.93, 0.91, 0.96]
    neg = [0.05, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.02]
    rows = rows_from(pos, [0.9] * 10, neg)
    scores = presence.scores_of(rows, [1.0], 0.0)
    # A budget of 0.001 Dice cannot afford losing the 0.3 positive (0.09): the threshold stays below it.
    t, op = presence.choose_threshold(rows, scores, max_dice_drop=0.001, min_sensitivity=0.9)
    assert 0.25 < t < 0.3 and op["sensitivity"] == 1.0 and op["diceDrop"] == 0.0
    assert op["specificity"] == pytest.approx(5 / 8)
    # With room for one miss, it goes above the 0.3 positive and the 0.4 ... 0.6 negatives.
    t2, op2 = presence.choose_threshold(rows, scores, max_dice_drop=0.1, min_sensitivity=0.9)
    assert 0.6 < t2 < 0.88 and op2["sensitivity"] == 0.9 and op2["specificity"] == 1.0
    assert op2["diceGateOn"] == pytest.approx(0.81) and op2["diceDrop"] == pytest.approx(0.09)


def test_the_operating_point_counts_each_negative_set():
    rows = rows_from([0.9, 0.8], [1.0, 0.5], [0.1, 0.7, 0.2, 0.3], sets=("crops", "noise"))
    op = presence.operating_point(rows, presence.scores_of(rows, [1.0], 0.0), 0.5)
    assert op["negatives"] == {"crops": {"images": 2, "specificity": 1.0}, "noise": {"images": 2, "specificity": 0.5}}
    assert op["specificity"] == 0.75 and op["specificityPooled"] == 0.75
    assert op["sensitivity"] == 1.0 and op["diceGateOff"] == 0.75 and op["diceGateOn"] == 0.75


def test_background_crop_holds_none_of_the_mask():
    mask = np.zeros((200, 300), bool)
    mask[50:150, 40:120] = True
    y0, y1, x0, x1 = presence.background_crop(mask)
    assert not mask[y0:y1, x0:x1].any()
    assert (y0, y1, x0, x1) == (0, 200, 128, 300)  # right of the box plus the 8-pixel margin: the largest strip
    full = np.ones((100, 100), bool)
    assert presence.background_crop(full) is None


def test_calibrate_chooses_on_validation_only():
    val = rows_from([0.9, 0.95, 0.85, 0.92], [0.9] * 4, [0.1, 0.2, 0.3, 0.15])
    test = rows_from([0.2, 0.95], [0.9, 0.9], [0.99, 0.05], split="test")  # test must not move the threshold
    collected = {"dataset": "hc18", "features": ["logit"], "rows": val + test}
    block = presence.calibrate(collected)
    again = presence.calibrate({**collected, "rows": val + rows_from([0.9], [0.9], [0.1], split="test")})
    assert block["threshold"] == again["threshold"] and block["weights"] == again["weights"]
    op = block["operatingPoint"]
    assert op["chosenOn"] == "validation" and op["validation"]["sensitivity"] == 1.0 and op["validation"]["specificity"] == 1.0
    assert op["test"]["sensitivity"] == 0.5 and op["test"]["negatives"]["noise"]["specificity"] == 0.5


def test_calibrate_and_eval_end_to_end_on_the_presence_fixture(tmp_path, capsys):
    """The command on the fixture (its score grows with the bright area) with HC18 positives and
    every negative set: features through onnxruntime, a block the schema accepts, a report."""
    if not (SHARED / "hc18").exists():
        pytest.fail(f"shared data missing at {SHARED}")
    model = tmp_path / "model"
    shutil.copytree(FIXTURE, model)
    from ldfsam_models.__main__ import main

    features = tmp_path / "features.json"
    assert main(["presence", "calibrate", "--model", str(model), "--dataset", "hc18", "--limit", "3", "--write", "--save-features", str(features)]) == 0
    collected = json.loads(features.read_text())
    sets = {(r["set"], r["split"]) for r in collected["rows"]}
    for s in ("positives", *presence.NEGATIVE_SETS):
        assert (s, "val") in sets and (s, "test") in sets, s
    assert all(len(r["features"]) == 4 for r in collected["rows"])
    assert all(0 <= r["dice"] <= 1 for r in collected["rows"] if r["set"] == "positives")
    manifest = json.loads((model / "model.json").read_text())
    validate_manifest(manifest)
    block = manifest["postprocessing"]["presence"]
    assert block["features"] == ["meanValue", "predictedIou", "maskArea", "maskConfidence"] and 0 <= block["threshold"] <= 1
    assert block["operatingPoint"]["validation"]["diceDrop"] <= 0.001
    capsys.readouterr()
    status = main(["presence", "eval", "--model", str(model), "--dataset", "hc18", "--features", str(features), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == block["threshold"]
    assert isinstance(report["testFailures"], list)
    assert report["splits"]["val"] == block["operatingPoint"]["validation"]
    assert report["splits"]["test"] == block["operatingPoint"]["test"]
    assert status == (3 if report["testFailures"] else 0)


def test_other_train_adds_the_other_data_sets_training_images_to_validation_only(tmp_path):
    """--other-train N: N of the other data set's training images (unseen by the model) join the
    other-dataset validation negatives; the test negatives are the same as without it."""
    from ldfsam_models.train import dataset_splits

    model = tmp_path / "model"
    shutil.copytree(FIXTURE, model)
    quiet = lambda m: None  # noqa: E731
    base = presence.collect(model, "ph2", negatives=["other-dataset"], limit=3, log=quiet)
    more = presence.collect(model, "ph2", negatives=["other-dataset"], limit=3, log=quiet, other_train=2)
    ids = lambda c, split: [r["id"] for r in c["rows"] if r["set"] == "other-dataset" and r["split"] == split]  # noqa: E731
    train = [f"hc18:{r.id}" for r in presence.spread(dataset_splits("hc18")["train"][:3], 2)]
    assert ids(more, "val") == ids(base, "val") + train and len(train) == 2
    assert ids(more, "test") == ids(base, "test") and len(ids(base, "test")) == 3


def test_acceptance_names_what_misses_the_bars():
    op = {"diceDrop": 0.003, "negatives": {"crops": {"images": 10, "specificity": 0.8}, "noise": {"images": 5, "specificity": 1.0}}}
    assert presence.acceptance(op) == ["the gate costs 0.0030 Dice (> 0.002)", "crops: specificity 0.800 (< 0.9)"]
    assert presence.acceptance({"diceDrop": 0.001, "negatives": {"noise": {"images": 5, "specificity": 0.9}}}) == []


def test_spread_caps_a_set_evenly_over_the_split():
    records = list(range(10))
    assert presence.spread(records, 4) == [0, 2, 5, 7]
    assert presence.spread(records, None) == records and presence.spread(records, 20) == records


def test_a_target_specificity_takes_the_lowest_threshold_that_reaches_it_on_every_set():
    pos = [0.95, 0.9, 0.92, 0.97, 0.3, 0.88, 0.99, 0.93, 0.91, 0.96]
    neg = [0.05, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.02]
    rows = rows_from(pos, [0.9] * 10, neg)
    scores = presence.scores_of(rows, [1.0], 0.0)
    # 0.75 on 8 negatives lets 2 pass: the lowest such threshold lies between 0.4 and 0.5 (not above 0.6).
    t, op = presence.choose_threshold(rows, scores, max_dice_drop=0.1, min_sensitivity=0.9, target_specificity=0.75)
    assert 0.4 < t < 0.5 and op["specificity"] == 0.75 and op["sensitivity"] == 0.9
    # When the Dice budget rules every such threshold out, the best mean specificity within it is taken.
    t2, op2 = presence.choose_threshold(rows, scores, max_dice_drop=0.001, min_sensitivity=0.9, target_specificity=0.75)
    assert 0.25 < t2 < 0.3 and op2["sensitivity"] == 1.0 and op2["specificity"] == pytest.approx(5 / 8)
