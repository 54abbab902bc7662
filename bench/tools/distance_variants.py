"""How the presence gate's training distance was chosen (models/README "Presence gate"): variants of
the distance of an image's LiteMedSAM embedding from a model's training images, compared on the HC18
validation split only (positives against each negative set of `presence`), through the shipped
model.onnx's encoder output. Reproduces the figures quoted there: for each variant the share of
(positive, negative) pairs ranked the right way per negative set, and the gap between the farthest
validation head and the nearest validation negative in standard deviations of the heads' distances.

usage (from the repository root):
  PYTHONPATH=models models/.venv/bin/python bench/tools/distance_variants.py [--model models/ldfsam-hc18] [--train 300]
"""
import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from ldfsam_models.data import default_data_root
from ldfsam_models.distribution import encoder_output
from ldfsam_models.evaluate import to_input
from ldfsam_models.presence import PresenceRunner, crop_items, noise_items, other_dataset_items, positive_items, shared_dicom_items, spread
from ldfsam_models.train import dataset_splits

NEGATIVES = ("other-dataset", "shared-dicom", "crops", "noise")


def embeddings(folder: Path, items) -> np.ndarray:
    """(N, channels, 4, 4): the encoder's embedding of each item averaged over 4 x 4 cells."""
    runner = PresenceRunner(folder)
    model = onnx.load(str(folder / "model.onnx"))
    name = encoder_output(model)
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = []
    for it in items:
        (e,) = session.run([name], {runner.input: to_input(it.image01, runner.size, runner.fit)[None].astype(np.float32)})
        c, h, w = e.shape[1:]
        out.append(e.reshape(c, 4, h // 4, 4, w // 4).mean((2, 4)))
    return np.stack(out)


def representation(e: np.ndarray, kind: str) -> np.ndarray:
    if kind == "whole grid":
        return e.mean((2, 3))
    if kind == "whole grid, mean + sd":
        return np.concatenate([e.mean((2, 3)), e.std((2, 3))], 1)
    if kind == "2 x 2 cells":
        return e.reshape(len(e), e.shape[1], 2, 2, 2, 2).mean((3, 5)).reshape(len(e), -1)
    return e.reshape(len(e), -1)  # 4 x 4 cells


def z_distance(train, x, floor=0.05):
    sd = train.std(0, ddof=1)
    return np.log(np.mean(((x - train.mean(0)) / np.maximum(sd, floor * sd.mean())) ** 2, 1))


def mahalanobis(train, x, shrink=0.1):
    c = np.cov(train.T)
    c = (1 - shrink) * c + shrink * np.trace(c) / len(c) * np.eye(len(c))
    z = x - train.mean(0)
    return np.log(np.einsum("ij,jk,ik->i", z, np.linalg.inv(c), z) / len(c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/ldfsam-hc18", type=Path)
    parser.add_argument("--train", type=int, default=300, help="training images for the statistics (spread over the split)")
    args = parser.parse_args()
    runner = PresenceRunner(args.model)
    parts, ph2 = dataset_splits("hc18"), dataset_splits("ph2")
    sets = {
        "train": positive_items(spread(parts["train"], args.train), "train", runner.intensity),
        "positives": positive_items(parts["val"], "val", runner.intensity),
        "other-dataset": other_dataset_items("hc18", "val", ph2["val"], runner.intensity, "US", grey=True),
        "shared-dicom": shared_dicom_items(default_data_root() / "dicom", "val", runner.intensity, True, lambda m: None),
        "crops": crop_items(spread(parts["val"], 33), "val", runner.intensity),
        "noise": noise_items("val", (540, 800), False),
    }
    e = {name: embeddings(args.model, items) for name, items in sets.items()}
    for kind in ("whole grid", "whole grid, mean + sd", "2 x 2 cells", "4 x 4 cells"):
        train = representation(e["train"], kind)
        for label, fn in (("z-scores", z_distance), ("Mahalanobis", mahalanobis)):
            if fn is mahalanobis and train.shape[1] > 600:
                continue  # too many entries for a covariance from a few hundred images
            d = {k: fn(train, representation(v, kind)) for k, v in e.items() if k != "train"}
            pos = d["positives"]
            ranked = {k: float(np.mean(d[k][:, None] > pos[None, :])) for k in NEGATIVES}
            gap = (min(d[k].min() for k in NEGATIVES) - pos.max()) / pos.std()
            print(f"{kind:22s} {label:11s} ranked right: " + ", ".join(f"{k} {v:.3f}" for k, v in ranked.items()) + f"; gap {gap:+.2f} sd")


if __name__ == "__main__":
    main()
