"""The shipped models through the server against the Python evaluation (what the published metrics
measure), pixel for pixel, on real test-split images.

usage: python shipped_model_parity.py pick --dataset hc18 --n 3
       python shipped_model_parity.py compare --model DIR --image IMG --seg SEG.dcm
`pick` prints the first N test-split image paths (the project's split); `compare` prints the pixels
of the evaluation's mask (models/ldfsam_models/evaluate.py: manifest intensity, resize, the graph,
logits back to native size, threshold, the manifest's clean-ups) and of the SEG's segment 1, their
Dice and the number of pixels that differ, and the presence score the evaluation computes for the
image (models/ldfsam_models/presence.py, every feature the manifest names; null without a gate).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
from ldfsam_models.evaluate import OnnxPredictor, apply_intensity, read_raw, to_input, to_native  # noqa: E402
from ldfsam_models.postprocess import apply_postprocessing  # noqa: E402
from ldfsam_models.presence import block_scores  # noqa: E402
from ldfsam_models.train import dataset_splits  # noqa: E402


def model_input(predictor: OnnxPredictor, raw: np.ndarray) -> np.ndarray:
    return to_input(apply_intensity(raw, predictor.intensity), predictor.size, predictor.fit)[None]


def evaluation_mask(model: Path, image: Path) -> np.ndarray:
    predictor = OnnxPredictor(model)
    raw = read_raw(image)
    logits = predictor(model_input(predictor, raw))[0]
    return apply_postprocessing(to_native(logits, raw.shape[:2], predictor.fit) > predictor.threshold, predictor.postprocessing)


def presence_score(model: Path, image: Path):
    """The gate's score of the image as the evaluation computes it (None for a model without a gate)."""
    import onnxruntime as ort

    manifest = json.loads((model / "model.json").read_text())
    block = manifest["postprocessing"].get("presence")
    if not block:
        return None
    graph = next(f["path"] for f in manifest["files"] if f["role"] == "segmentation")
    session = ort.InferenceSession(str(model / graph), providers=["CPUExecutionProvider"])
    x = model_input(OnnxPredictor(model), read_raw(image)).astype(np.float32)
    (features,) = session.run([block["output"]], {manifest["inputs"][0]["name"]: x})
    return float(block_scores([{"features": [float(v) for v in features[0]]}], block)[0])


def seg_mask(path: Path, shape) -> np.ndarray:
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, *shape)
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in ds.PerFrameFunctionalGroupsSequence]
    out = np.zeros(shape, bool)
    for frame, number in zip(frames, numbers):
        if number == 1:
            out |= frame.astype(bool)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pick")
    p.add_argument("--dataset", required=True)
    p.add_argument("--n", type=int, default=3)
    p = sub.add_parser("compare")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--seg", required=True)
    args = parser.parse_args()
    if args.cmd == "pick":
        print(json.dumps([str(r.image) for r in dataset_splits(args.dataset)["test"][: args.n]]))
        return
    ours = evaluation_mask(Path(args.model), Path(args.image))
    theirs = seg_mask(Path(args.seg), ours.shape)
    dice = 2 * (ours & theirs).sum() / max(1, ours.sum() + theirs.sum())
    print(json.dumps({"evaluation": int(ours.sum()), "server": int(theirs.sum()), "differing": int((ours != theirs).sum()), "dice": float(dice),
                      "presenceScore": presence_score(Path(args.model), Path(args.image))}))


if __name__ == "__main__":
    main()
