"""How far an image lies from the images a model was trained on: a fifth presence feature.

The four features the automatic graph exports (detector score, predicted IoU, mask area, mask
confidence) say how sure the model is of what it drew; they say nothing about whether the image is
of the kind it knows. A coffee cup seen from above, photographed, gives a fetal-head model as round
and confident a mask as a head does. The frozen LiteMedSAM encoder's embedding does tell the two
apart: this adds to model.onnx, in the graph, `trainingDistance` = log of the mean over the
4096 entries of ((e - mean) / sd)^2, where e is the image embedding averaged over each cell of a
4 x 4 grid (256 channels x 16 cells: what is where, e.g. an ultrasound's fan against a photograph)
and mean and sd are those of the model's training images (about 0 for an image like them, larger the
further off). Per-entry statistics rather than a full covariance: a few hundred training images
(108 for PH2) do not estimate 4096 x 4096 covariances.

Chosen on HC18's validation data (2026-12-06; 300 training images for the statistics): of the
embedding averaged over the whole grid, its mean and spread per channel, 2 x 2 and 4 x 4 cells, with
per-entry z-scores or a shrunk Mahalanobis distance, every variant ranks the validation heads below
every other-dataset and noise image and 99.8-100 % of the other pairs the right way; only the cell
variants rank every head below every negative, and 4 x 4 cells with the largest gap (0.8 sd of the
heads' distances, 2 x 2: 0.26; bench/tools/distance_variants.py).

`presence add-distance` writes the feature into the graph (one more column of `presence_features`)
and appends it to model.json's presence block with weight 0 and a `featureMax` (the farthest
training image's distance plus MARGIN); `presence calibrate --write` then fits all five weights on
validation and widens featureMax to the farthest validation positive (plus MARGIN) when that lies
further. A slice above featureMax scores 0 (the server's presence.ts): an image unlike every image
the model was trained and validated on gets no mask, however sure its detector is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, List, Tuple

import numpy as np

FEATURE = "trainingDistance"
POOLED = "embedding_cells"
GRID = 4  # cells per side
# A channel whose training spread is below this share of the mean spread counts with that floor:
# a nearly constant channel must not turn a tiny difference into a large distance.
SD_FLOOR = 0.05
# featureMax of the feature: the largest distance of the training images and the validation
# positives, plus this (log units: 10 % more mean squared z-score than the farthest of them).
MARGIN = float(np.log(1.1))


def encoder_output(model) -> str:
    """The image encoder's output tensor (the embedding before the dense feature prompt is added)."""
    name = None
    for node in model.graph.node:
        if node.name.startswith("/model/image_encoder/"):
            name = node.output[0]
    if name is None:
        raise ValueError("the graph has no /model/image_encoder/ nodes: not an exported LDFSAM automatic graph")
    return name


def _cell_nodes(model, embedding_side: int) -> list:
    """Nodes computing POOLED: the embedding averaged over each cell of a GRID x GRID grid,
    flattened, (batch, channels x GRID x GRID). `embedding_side`: the embedding's grid side."""
    from onnx import helper

    if embedding_side % GRID:
        raise ValueError(f"an embedding of {embedding_side} x {embedding_side} does not split into {GRID} x {GRID} cells")
    cell = embedding_side // GRID
    return [
        helper.make_node("AveragePool", [encoder_output(model)], ["/presence/cells"], kernel_shape=[cell, cell], strides=[cell, cell],
                         name="/presence/AveragePool"),
        helper.make_node("Flatten", ["/presence/cells"], [POOLED], axis=1, name="/presence/Flatten"),
    ]


def _copy(model):
    copy = type(model)()
    copy.CopyFrom(model)
    return copy


def with_pooled_output(model, embedding_side: int):
    """A copy of the graph that also outputs POOLED (`_cell_nodes`)."""
    from onnx import TensorProto, helper

    graph = _copy(model)
    graph.graph.node.extend(_cell_nodes(model, embedding_side))
    graph.graph.output.append(helper.make_tensor_value_info(POOLED, TensorProto.FLOAT, ["batch", None]))
    return graph


def embedding_side(manifest) -> int:
    """The image embedding's grid side: LiteMedSAM's TinyViT gives a quarter of its input size."""
    config = manifest["configuration"]
    return int(config.get("encoder_size") or config["image_size"]) // 4


def pooled_embeddings(onnx_path: Path, side: int, inputs: Iterable[np.ndarray], input_name: str, batch: int = 4,
                      log: Callable[[str], None] = lambda m: None) -> np.ndarray:
    """(N, channels x cells): the pooled embedding of each model input (3, S, S), through the exported graph."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(with_pooled_output(onnx.load(str(onnx_path)), side).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rows: List[np.ndarray] = []
    pending: List[np.ndarray] = []

    def flush() -> None:
        rows.append(session.run([POOLED], {input_name: np.stack(pending).astype(np.float32)})[0])
        pending.clear()
        log(f"  {sum(len(r) for r in rows)} training images embedded")

    for x in inputs:
        pending.append(x)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return np.concatenate(rows)


def channel_statistics(pooled: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and floored standard deviation per entry of the training images' pooled embeddings."""
    mean = pooled.mean(0)
    sd = pooled.std(0, ddof=1)
    return mean.astype(np.float32), np.maximum(sd, SD_FLOOR * sd.mean()).astype(np.float32)


def distance(pooled: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The feature as the graph computes it (reference for the tests)."""
    return np.log(np.mean(((pooled - mean) / sd) ** 2, axis=1))


def add_distance_nodes(model, side: int, mean: np.ndarray, sd: np.ndarray, features_output: str = "presence_features"):
    """The graph with `trainingDistance` appended as the last column of `features_output`."""
    from onnx import helper, numpy_helper

    model = _copy(model)
    model.graph.node.extend(_cell_nodes(model, side))
    producer = next(n for n in model.graph.node if features_output in n.output)
    base = f"{features_output}_base"
    producer.output[list(producer.output).index(features_output)] = base
    model.graph.initializer.extend([numpy_helper.from_array(mean.astype(np.float32), "/presence/train_mean"),
                                    numpy_helper.from_array((1.0 / sd).astype(np.float32), "/presence/train_inv_sd")])
    p = "/presence/"
    model.graph.node.extend([
        helper.make_node("Sub", [POOLED, p + "train_mean"], [p + "centred"], name=p + "Sub"),
        helper.make_node("Mul", [p + "centred", p + "train_inv_sd"], [p + "z"], name=p + "Mul"),
        helper.make_node("Mul", [p + "z", p + "z"], [p + "z2"], name=p + "Square"),
        helper.make_node("ReduceMean", [p + "z2"], [p + "mean_z2"], axes=[1], keepdims=1, name=p + "ReduceMean"),
        helper.make_node("Log", [p + "mean_z2"], [p + "distance"], name=p + "Log"),
        helper.make_node("Concat", [base, p + "distance"], [features_output], axis=1, name=p + "Concat"),
    ])
    out = next(o for o in model.graph.output if o.name == features_output)
    out.type.tensor_type.shape.dim[1].dim_value += 1
    return model


def add_distance(folder: Path, dataset: str, data=None, log: Callable[[str], None] = print) -> dict:
    """Adds the feature to folder's model.onnx and model.json (see the module's docstring); returns a summary."""
    import onnx

    from .evaluate import to_input
    from .manifest import sha256_of, validate_manifest
    from .presence import PresenceRunner, positive_items
    from .train import dataset_splits

    runner = PresenceRunner(folder)
    manifest = runner.manifest
    presence = manifest["postprocessing"].get("presence")
    if not presence:
        raise ValueError(f"{folder}/model.json has no postprocessing.presence: calibrate the four features first")
    if FEATURE in presence["features"]:
        raise ValueError(f"{folder}: {FEATURE} is already a presence feature")
    graph_file = next(f for f in manifest["files"] if f["role"] == "segmentation")
    onnx_path = folder / graph_file["path"]
    train = dataset_splits(dataset, data)["train"]
    log(f"pooled embeddings of {len(train)} {dataset} training images...")
    inputs = (to_input(it.image01, runner.size, runner.fit) for it in positive_items(train, "train", runner.intensity))
    side = embedding_side(manifest)
    pooled = pooled_embeddings(onnx_path, side, inputs, runner.input, log=log)
    mean, sd = channel_statistics(pooled)
    train_distance = distance(pooled, mean, sd)
    model = add_distance_nodes(onnx.load(str(onnx_path)), side, mean, sd, presence["output"])
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
    graph_file["bytes"] = onnx_path.stat().st_size
    graph_file["sha256"] = sha256_of(onnx_path)
    out = next(o for o in manifest["outputs"] if o["name"] == presence["output"])
    out["shape"] = ["batch", len(presence["features"]) + 1]
    presence["features"].append(FEATURE)
    presence["weights"].append(0.0)
    # until calibrate widens it to the validation positives too: nothing further off than the training images
    presence["featureMax"] = {FEATURE: round(float(train_distance.max()) + MARGIN, 6)}
    validate_manifest(manifest)
    (folder / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    summary = {"trainingImages": len(train), "entries": int(pooled.shape[1]),
               "trainingDistance": {"min": float(train_distance.min()), "median": float(np.median(train_distance)),
                                    "max": float(train_distance.max())}}
    log(f"{FEATURE} added to {onnx_path}: training images' distance {json.dumps(summary['trainingDistance'])}")
    return summary
