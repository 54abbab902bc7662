"""The default models shipped in models/: manifests valid, hashes and graph IO matching, under the
repository's size limit, and the evaluation reproducing the test Dice its manifest records to 1e-4
(the automatic graph; a promptable-only model's box-prompted Dice per data set). The evaluation is
deterministic on the CPU: the same graph on the same images gives the same figure, so anything wider
would hide a change of what the manifest describes."""
import json
import pathlib

import pytest

from ldfsam_models.evaluate import evaluate, load_predictor
from ldfsam_models.manifest import verify_folder
from ldfsam_models.train import dataset_splits

MODELS = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in MODELS.iterdir() if (p / "model.json").is_file())


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_manifest_hashes_and_size(folder):
    manifest = verify_folder(folder)
    assert manifest["metrics"] is not None, "a shipped model carries its held-out metrics"
    assert manifest["segments"][0]["category"]["scheme"] == "SCT"
    assert all(f["bytes"] < 20 * 1024 * 1024 for f in manifest["files"])


def manifest_of(folder):
    return json.loads((folder / "model.json").read_text())


AUTO = [p for p in SHIPPED if "auto" in manifest_of(p).get("modes", ["auto"])]
PROMPTED = [
    (p, entry)
    for p in SHIPPED
    if p not in AUTO
    for entry in manifest_of(p)["metrics"]["prompted"]
    if entry["prompt"].startswith("the reference's bounding box")
]


@pytest.mark.parametrize("folder", AUTO, ids=[p.name for p in AUTO])
def test_evaluation_reproduces_the_recorded_dice(folder):
    manifest = json.loads((folder / "model.json").read_text())
    metrics = manifest["metrics"]
    records = dataset_splits(metrics["dataset"], None)[metrics["split"]]
    result = evaluate(load_predictor(str(folder)), records)
    got, recorded = result["summary"]["dice"]["mean"], metrics["dice"]["mean"]
    assert abs(got - recorded) <= 1e-4, f"{folder.name}: test Dice {got:.6f}, the manifest records {recorded:.6f}"


@pytest.mark.parametrize("folder,entry", PROMPTED, ids=[f"{p.name}-{e['dataset']}" for p, e in PROMPTED])
def test_prompted_evaluation_reproduces_the_recorded_dice(folder, entry):
    from ldfsam_models.prompted import PromptablePredictor, evaluate_prompted

    records = dataset_splits(entry["dataset"], None)[entry["split"]]
    result = evaluate_prompted(PromptablePredictor(folder), records, "box")
    assert result["summary"]["prompt"] == entry["prompt"]
    got, recorded = result["summary"]["dice"]["mean"], entry["dice"]["mean"]
    assert abs(got - recorded) <= 1e-4, f"{folder.name} on {entry['dataset']}: box-prompted Dice {got:.6f}, the manifest records {recorded:.6f}"


GATED = [p for p in SHIPPED if json.loads((p / "model.json").read_text())["postprocessing"].get("presence")]


@pytest.mark.parametrize("folder", GATED, ids=[p.name for p in GATED])
def test_the_presence_gate_meets_its_bars_on_the_test_split(folder):
    """Recomputed through the graph (test split only, the calibration's items and caps): the gate costs
    at most 0.002 mean Dice on the test positives and draws on at most 10 % of every negative set,
    and these are the figures the manifest records."""
    from ldfsam_models import presence

    block = json.loads((folder / "model.json").read_text())["postprocessing"]["presence"]
    dataset = block["operatingPoint"]["dataset"]
    collected = presence.collect(folder, dataset, splits=["test"], max_per_set=66, log=lambda m: None)
    op = presence.operating_point(collected["rows"], presence.block_scores(collected["rows"], block), block["threshold"])
    assert presence.acceptance(op) == []
    assert op == block["operatingPoint"]["test"]
