"""The training-distance presence feature (ldfsam_models/distribution.py): the graph computes what the
NumPy reference does, appended as the last presence feature, on a small graph shaped as the exported
ones (an /model/image_encoder/ output and a presence_features Concat); and on the shipped models,
whose graphs carry it, the column equals the reference from their own pooled embedding."""
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ldfsam_models import distribution

MODELS = pathlib.Path(__file__).resolve().parents[1]


def small_graph() -> onnx.ModelProto:
    """image (B, 3, 8, 8) -> an 'encoder' conv (B, 6, 8, 8); presence_features = Concat(2 columns)."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(6, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["emb"], name="/model/image_encoder/conv"),
        helper.make_node("ReduceMax", ["image"], ["a"], axes=[1, 2, 3], keepdims=0, name="/a"),
        helper.make_node("ReduceMin", ["image"], ["b"], axes=[1, 2, 3], keepdims=0, name="/b"),
        helper.make_node("Unsqueeze", ["a", "one"], ["a1"], name="/ua"),
        helper.make_node("Unsqueeze", ["b", "one"], ["b1"], name="/ub"),
        helper.make_node("Concat", ["a1", "b1"], ["presence_features"], axis=1, name="/cat"),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("presence_features", TensorProto.FLOAT, ["batch", 2])],
        [w, numpy_helper.from_array(np.array([1], np.int64), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, outputs, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(outputs, {"image": x})


def test_the_graph_appends_the_reference_distance():
    model = small_graph()
    rng = np.random.default_rng(2)
    train = rng.random((20, 3, 8, 8), dtype=np.float32)
    probe = distribution.with_pooled_output(model, 8)
    probe.graph.output.append(helper.make_tensor_value_info("emb", TensorProto.FLOAT, None))
    pooled, emb = run(probe, [distribution.POOLED, "emb"], train)
    # 6 channels x 4 x 4 cells of 2 x 2 embedding pixels, channel-major as Flatten orders them
    assert pooled.shape == (20, 6 * 16)
    assert np.allclose(pooled, emb.reshape(20, 6, 4, 2, 4, 2).mean((3, 5)).reshape(20, -1), atol=1e-6)
    mean, sd = distribution.channel_statistics(pooled)
    extended = distribution.add_distance_nodes(model, 8, mean, sd)
    onnx.checker.check_model(extended)
    assert [o.name for o in extended.graph.output] == ["presence_features"]
    assert extended.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
    x = np.concatenate([rng.random((3, 3, 8, 8), dtype=np.float32), 5 + rng.random((2, 3, 8, 8), dtype=np.float32)])
    (before,) = run(model, ["presence_features"], x)
    (after,) = run(extended, ["presence_features"], x)
    (pooled_x,) = run(distribution.with_pooled_output(model, 8), [distribution.POOLED], x)
    assert np.array_equal(after[:, :2], before)  # the four (here two) features unchanged
    assert np.allclose(after[:, 2], distribution.distance(pooled_x, mean, sd), atol=1e-5)
    # images unlike the training ones lie far off: shifted intensities give a larger distance
    assert after[3:, 2].min() > after[:3, 2].max() + 2


def test_an_embedding_that_does_not_split_into_the_cells_is_refused():
    with pytest.raises(ValueError, match="does not split"):
        distribution.with_pooled_output(small_graph(), 6)


def test_a_nearly_constant_channel_is_floored():
    pooled = np.zeros((10, 3), np.float32)
    pooled[:, 0] = np.arange(10)
    pooled[:, 1] = np.arange(10) * 2
    pooled[:, 2] = 1e-9 * np.arange(10)  # nearly constant
    _, sd = distribution.channel_statistics(pooled)
    assert sd[2] == pytest.approx(distribution.SD_FLOOR * np.std(pooled, 0, ddof=1).mean(), rel=1e-5)


@pytest.mark.parametrize("name", ["ldfsam-hc18", "ldfsam-ph2"])
def test_a_shipped_graph_carries_the_feature_as_its_manifest_says(name):
    folder = MODELS / name
    manifest = json.loads((folder / "model.json").read_text())
    presence = manifest["postprocessing"]["presence"]
    assert presence["features"][-1] == distribution.FEATURE
    assert len(presence["weights"]) == len(presence["features"])
    model = onnx.load(str(folder / "model.onnx"))
    # the graph already averages the embedding's cells (internally): expose that tensor
    model.graph.output.append(helper.make_tensor_value_info(distribution.POOLED, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    size = manifest["preprocessing"]["inputSize"]
    x = np.random.default_rng(3).random((2, 3, size, size), dtype=np.float32)
    features, pooled = session.run(["presence_features", distribution.POOLED], {"image": x})
    assert features.shape == (2, len(presence["features"]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    mean, inv_sd = inits["/presence/train_mean"], inits["/presence/train_inv_sd"]
    assert np.allclose(features[:, -1], distribution.distance(pooled, mean, 1 / inv_sd), atol=1e-4)


def test_calibrate_sets_the_distance_limit_and_gates_what_lies_beyond_it():
    from ldfsam_models import presence

    features = ["detectorScore", distribution.FEATURE]
    rng = np.random.default_rng(4)
    rows = []
    for split in ("val", "test"):
        for i in range(20):  # positives: confident, near the training images
            rows.append({"set": "positives", "split": split, "id": f"p{i}", "features": [0.9, float(rng.uniform(-0.5, 0.4))], "dice": 0.9})
        for i in range(20):  # negatives the detector rejects
            rows.append({"set": "noise", "split": split, "id": f"n{i}", "features": [0.05, float(rng.uniform(-0.5, 0.4))]})
        # an image unlike the training ones on which the detector is as sure as on a positive
        rows.append({"set": "photos", "split": split, "id": "coffee", "features": [0.95, 1.5]})
    collected = {"dataset": "hc18", "features": features, "rows": rows}
    val_max = max(r["features"][1] for r in rows if r["split"] == "val" and r["set"] == "positives")
    block = presence.calibrate(collected, distance_floor=0.2)
    assert block["featureMax"] == {distribution.FEATURE: pytest.approx(val_max + distribution.MARGIN, abs=1e-6)}
    # a floor (the training images' farthest, as add-distance wrote it) further off than the positives wins
    assert presence.calibrate(collected, distance_floor=0.9)["featureMax"][distribution.FEATURE] == 0.9
    test = [r for r in rows if r["split"] == "test"]
    scores = presence.block_scores(test, block)
    coffee = next(i for i, r in enumerate(test) if r["id"] == "coffee")
    assert scores[coffee] == 0.0
    assert block["operatingPoint"]["test"]["negatives"]["photos"]["specificity"] == 1.0
    assert block["operatingPoint"]["test"]["sensitivity"] == 1.0
    # without the distance feature there is no limit
    plain = {**collected, "features": ["detectorScore", "other"]}
    assert "featureMax" not in presence.calibrate(plain)
