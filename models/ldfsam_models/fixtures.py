"""The geometry-test models: their answers are predictable from the pixels.

test/fixtures/model-threshold (automatic):

It accepts every modality; the server scales each slice min-max to [0, 1] (manifest intensity
policy `minmax`), the graph averages the channels and answers logit = 20 x (value - 0.5), so the mask
is "scaled value > 0.5". Tests compare every SEG frame with that threshold computed on the source
slice: a mask on the wrong slice, flipped or transposed cannot pass.

test/fixtures/model-promptable (promptable, see PromptableFixture below): the same threshold, but
only where the prompt says - inside the box and within discs around positive points, never within
discs around negative points - so a prompt that lands shifted, flipped or on another slice gives
another mask.
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from .export import OPSET
from .manifest import git_commit, segments_from, sha256_of, validate_manifest


class ThresholdGraph(nn.Module):
    def forward(self, image: torch.Tensor):
        value = image.mean(dim=1, keepdim=True)
        logits = (value - 0.5) * 20.0
        iou = torch.ones_like(logits[:, :, 0, 0])
        return logits, iou


def _export_image_graph(graph: nn.Module, path: pathlib.Path, size: int, output_names: list) -> float:
    """Exports a one-input ("image", dynamic batch) fixture graph and returns the largest difference
    between onnxruntime and PyTorch on a batch of two random images."""
    with torch.no_grad():
        torch.onnx.export(graph, (torch.rand(1, 3, size, size),), str(path), opset_version=OPSET, input_names=["image"],
                          output_names=output_names, dynamic_axes={n: {0: "batch"} for n in ["image"] + output_names})
    image = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(image))]
    return float(max(np.abs(g - e).max() for g, e in zip(got, expected)))


def export_threshold_fixture(out: pathlib.Path, size: int = 256) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    max_diff = _export_image_graph(ThresholdGraph().eval(), path, size, ["mask_logits", "iou"])
    manifest = {
        "schemaVersion": 1,
        "name": "threshold-fixture",
        "version": "1.0.0",
        "description": "Geometry test fixture: mask = (slice scaled min-max to [0, 1], mean of channels) > 0.5. Not a clinical model.",
        "configuration": {"name": "threshold-fixture"},
        "files": [{"path": "model.onnx", "sha256": sha256_of(path), "bytes": path.stat().st_size, "role": "segmentation"}],
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]}],
        "outputs": [{"name": "mask_logits", "dtype": "float32", "shape": ["batch", 1, size, size]}, {"name": "iou", "dtype": "float32", "shape": ["batch", 1]}],
        "preprocessing": {
            "inputSize": size,
            "resize": "bilinear",
            "channels": "rgb",
            "valueRange": [0, 1],
            "inGraph": ["mean of the channels", "logit = 20 x (value - 0.5)"],
            "intensity": {"default": {"kind": "minmax"}},
        },
        "postprocessing": {"output": "mask_logits", "threshold": 0.0},
        "segments": segments_from(["tissue"]),
        "modalities": ["*"],
        "training": {"dataset": "none (a fixed threshold)", "split": "none", "seed": 0, "epochs": 0, "gitCommit": git_commit(), "date": "n/a"},
        "metrics": None,
        "export": {
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "maxAbsDiff": max_diff,
            "graphs": "one graph: a fixed arithmetic",
        },
    }
    validate_manifest(manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


FIXTURE_DISC_RADIUS = 12.0  # input-frame pixels around a point that it adds (positive) or removes (negative)


class FixtureEncoder(nn.Module):
    """image -> image_embeddings (the channel mean, the slice's own values) and level (0.5): two
    outputs, so a server that does not feed every encoder output to the decoder by name fails."""

    def forward(self, image: torch.Tensor):
        value = image.mean(dim=1, keepdim=True)
        level = image.mean(dim=(1, 2, 3)).unsqueeze(1) * 0.0 + 0.5
        return value, level


class FixtureDecoder(nn.Module):
    """The prompt's region R in the input frame: pixels (column j, row i) with x0 <= j <= x1 and
    y0 <= i <= y1 for the box (labels 2, 3), or within FIXTURE_DISC_RADIUS of a positive point
    (label 1), and not within it of a negative point (label 0); padding (-1) is ignored.
    mask_logits = 20 x (value - level) inside R, -20 outside; with has_mask_input, the elementwise
    maximum with mask_input (the previous mask is kept: a union). iou = the share of R above level."""

    def forward(self, image_embeddings, level, point_coords, point_labels, mask_input, has_mask_input):
        s = image_embeddings.shape[-1]
        grid = torch.arange(s, dtype=torch.float32)
        jj = grid.view(1, 1, 1, s)  # (1, 1, 1, S): columns
        ii = grid.view(1, 1, s, 1)  # rows
        x = point_coords[:, :, 0].view(1, -1, 1, 1)  # (1, N, 1, 1)
        y = point_coords[:, :, 1].view(1, -1, 1, 1)
        labels = point_labels.view(1, -1, 1, 1)
        is_tl, is_br = (labels == 2).float(), (labels == 3).float()
        has_box = (point_labels == 2).any()
        x0, y0 = (x * is_tl).sum(dim=1, keepdim=True), (y * is_tl).sum(dim=1, keepdim=True)
        x1, y1 = (x * is_br).sum(dim=1, keepdim=True), (y * is_br).sum(dim=1, keepdim=True)
        in_box = (jj >= x0) & (jj <= x1) & (ii >= y0) & (ii <= y1) & has_box  # (1, 1, S, S)
        near = ((jj - x) ** 2 + (ii - y) ** 2) <= FIXTURE_DISC_RADIUS ** 2  # (1, N, S, S)
        positive = (near & (labels == 1)).any(dim=1, keepdim=True)
        negative = (near & (labels == 0)).any(dim=1, keepdim=True)
        region = (in_box | positive) & ~negative
        above = image_embeddings > level.view(1, 1, 1, 1)
        logits = torch.where(region, 20.0 * (image_embeddings - level.view(1, 1, 1, 1)), image_embeddings * 0.0 - 20.0)
        logits = torch.where(has_mask_input.view(1, 1, 1, 1) > 0.5, torch.maximum(logits, mask_input), logits)
        inside = region.float().sum()
        iou = (region & above).float().sum() / torch.clamp(inside, min=1.0)
        return logits, iou.view(1, 1)


def export_promptable_fixture(out: pathlib.Path, size: int = 256) -> dict:
    """test/fixtures/model-promptable: encoder.onnx + decoder.onnx (a few kB), longest-side-pad so
    that non-square images exercise the coordinate mapping, checked against PyTorch."""
    out.mkdir(parents=True, exist_ok=True)
    enc_path, dec_path = out / "encoder.onnx", out / "decoder.onnx"
    encoder, decoder = FixtureEncoder().eval(), FixtureDecoder().eval()
    enc_in = [{"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]}]
    enc_out = [
        {"name": "image_embeddings", "dtype": "float32", "shape": ["batch", 1, size, size]},
        {"name": "level", "dtype": "float32", "shape": ["batch", 1]},
    ]
    dec_in = [
        {"name": "image_embeddings", "dtype": "float32", "shape": [1, 1, size, size]},
        {"name": "level", "dtype": "float32", "shape": [1, 1]},
        {"name": "point_coords", "dtype": "float32", "shape": [1, "points", 2]},
        {"name": "point_labels", "dtype": "float32", "shape": [1, "points"]},
        {"name": "mask_input", "dtype": "float32", "shape": [1, 1, size, size]},
        {"name": "has_mask_input", "dtype": "float32", "shape": [1]},
    ]
    dec_out = [
        {"name": "mask_logits", "dtype": "float32", "shape": [1, 1, size, size]},
        {"name": "iou", "dtype": "float32", "shape": [1, 1]},
    ]
    rng = np.random.default_rng(0)
    coords = np.array([[[40.0, 50.0], [10.0, 10.0], [30.0, 20.0], [200.0, 180.0]]], dtype=np.float32)
    labels = np.array([[1.0, 0.0, 2.0, 3.0]], dtype=np.float32)
    example = (
        torch.rand(1, 1, size, size), torch.full((1, 1), 0.5), torch.from_numpy(coords), torch.from_numpy(labels),
        torch.rand(1, 1, size, size), torch.ones(1),
    )
    with torch.no_grad():
        torch.onnx.export(encoder, (torch.rand(1, 3, size, size),), str(enc_path), opset_version=OPSET,
                          input_names=["image"], output_names=["image_embeddings", "level"],
                          dynamic_axes={"image": {0: "batch"}, "image_embeddings": {0: "batch"}, "level": {0: "batch"}})
        torch.onnx.export(decoder, example, str(dec_path), opset_version=OPSET,
                          input_names=[t["name"] for t in dec_in], output_names=["mask_logits", "iou"],
                          dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}})
    from .promptable import _write_shapes  # the manifest's dims written into both graphs

    _write_shapes(enc_path, enc_in, enc_out)
    _write_shapes(dec_path, dec_in, dec_out)
    image = rng.random((2, 3, size, size), dtype=np.float32)
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(dec_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_enc = [t.numpy() for t in encoder(torch.from_numpy(image))]
    got_enc = enc.run(None, {"image": image})
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got_enc, want_enc))
    for n_coords, n_labels, has in ((coords, labels, 1.0), (np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.float32), 0.0)):
        feeds = {"image_embeddings": got_enc[0][:1], "level": got_enc[1][:1], "point_coords": n_coords, "point_labels": n_labels,
                 "mask_input": rng.standard_normal((1, 1, size, size)).astype(np.float32), "has_mask_input": np.array([has], np.float32)}
        with torch.no_grad():
            want = [t.numpy() for t in decoder(*(torch.from_numpy(feeds[t["name"]]) for t in dec_in))]
        diff = max(diff, max(float(np.abs(g - e).max()) for g, e in zip(dec.run(None, feeds), want)))
    if not diff < 1e-5:
        raise ValueError(f"promptable fixture: onnxruntime differs from PyTorch by {diff}")
    manifest = {
        "schemaVersion": 2,
        "modes": ["promptable"],
        "name": "promptable-fixture",
        "version": "1.0.0",
        "description": "Geometry test fixture: mask = (slice scaled min-max to [0, 1], mean of channels) > 0.5 inside the "
        "prompt's box and discs of 12 input pixels around positive points, minus discs around negative points. Not a clinical model.",
        "configuration": {"name": "promptable-fixture"},
        "files": [
            {"path": p.name, "sha256": sha256_of(p), "bytes": p.stat().st_size, "role": role}
            for p, role in ((enc_path, "image-encoder"), (dec_path, "mask-decoder"))
        ],
        "promptable": {
            "encoder": {"file": enc_path.name, "inputs": enc_in, "outputs": enc_out},
            "decoder": {"file": dec_path.name, "inputs": dec_in, "outputs": dec_out},
            "prompts": {
                "frame": "model input: the slice fitted as preprocessing.fit says; (x, y) pixels",
                "labels": {"positive": 1, "negative": 0, "boxTopLeft": 2, "boxBottomRight": 3, "padding": -1},
                "maxPoints": 16,
                "padWhenNoBox": True,
                "order": "points, then the box's two corners",
                "maskInput": "the previous mask_logits; the fixture keeps their union with the new mask",
                "multimaskForSinglePoint": False,
            },
            "maxAbsDiff": {"all": diff},
        },
        "preprocessing": {
            "inputSize": size,
            "resize": "bilinear",
            "fit": "longest-side-pad",
            "channels": "rgb",
            "valueRange": [0, 1],
            "inGraph": ["mean of the channels", "the prompt's region", "logit = 20 x (value - 0.5) inside it"],
            "intensity": {"default": {"kind": "minmax"}},
        },
        "postprocessing": {"output": "mask_logits", "threshold": 0.0},
        "segments": segments_from(["structure"]),
        "modalities": ["*"],
        "training": {"dataset": "none (a fixed rule)", "split": "none", "seed": 0, "epochs": 0, "gitCommit": git_commit(), "date": "n/a"},
        "metrics": None,
        "export": {
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "maxAbsDiff": diff,
            "graphs": "encoder + decoder: fixed arithmetic",
        },
    }
    validate_manifest(manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# The presence-test model (test/fixtures/model-presence): the threshold fixture's mask, plus a
# presence_features output whose value is known from the pixels, so that tests decide per slice exactly.
PRESENCE_FIXTURE_FEATURES = ("meanValue", "predictedIou", "maskArea", "maskConfidence")
# score = sigmoid(40 x maskArea - 4): a slice passes (score >= 0.5) when more than 10 % of the input
# frame is above 0.5 after min-max scaling.
PRESENCE_FIXTURE_BLOCK = {"output": "presence_features", "features": list(PRESENCE_FIXTURE_FEATURES), "weights": [0.0, 0.0, 40.0, 0.0],
                          "bias": -4.0, "threshold": 0.5,
                          "notes": "test fixture: score = sigmoid(40 x maskArea - 4), i.e. a slice passes when its mask covers "
                                   "more than 10 % of the input frame"}


class PresenceGraph(nn.Module):
    """ThresholdGraph's logits and iou, and per slice (meanValue, predictedIou = 1, maskArea, maskConfidence):
    the mean scaled value, the share of the input above 0.5, the mean sigmoid probability inside the mask."""

    def forward(self, image: torch.Tensor):
        logits, iou = ThresholdGraph()(image)
        inside = (logits > 0).float().flatten(1)
        prob = torch.sigmoid(logits).flatten(1)
        area = inside.mean(1)
        confidence = (prob * inside).sum(1) / inside.sum(1).clamp(min=1.0)
        mean = image.mean(dim=1).flatten(1).mean(1)
        return logits, iou, torch.stack([mean, iou[:, 0], area, confidence], dim=1)


def export_presence_fixture(out: pathlib.Path, size: int = 256) -> dict:
    """model.onnx + model.json of the presence fixture: the mask is the threshold fixture's, cleaned
    up by fillHoles + fitEllipse (so a clean-up that ran on a gated slice would show), and
    postprocessing.presence = PRESENCE_FIXTURE_BLOCK."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    max_diff = _export_image_graph(PresenceGraph().eval(), path, size, ["mask_logits", "iou", "presence_features"])
    manifest = {
        "schemaVersion": 1,
        "name": "presence-fixture",
        "version": "1.0.0",
        "description": "Presence test fixture: mask = (slice scaled min-max, mean of channels) > 0.5; the structure counts as present "
                       "when the mask covers more than 10 % of the input frame. Not a clinical model.",
        "configuration": {"name": "presence-fixture"},
        "files": [{"path": "model.onnx", "sha256": sha256_of(path), "bytes": path.stat().st_size, "role": "segmentation"}],
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 3, size, size]}],
        "outputs": [{"name": "mask_logits", "dtype": "float32", "shape": ["batch", 1, size, size]}, {"name": "iou", "dtype": "float32", "shape": ["batch", 1]},
                    {"name": "presence_features", "dtype": "float32", "shape": ["batch", len(PRESENCE_FIXTURE_FEATURES)]}],
        "preprocessing": {
            "inputSize": size,
            "resize": "bilinear",
            "channels": "rgb",
            "valueRange": [0, 1],
            "inGraph": ["mean of the channels", "logit = 20 x (value - 0.5)",
                        "presence features: mean value, 1, mask area share, mean probability in the mask"],
            "intensity": {"default": {"kind": "minmax"}},
        },
        "postprocessing": {"output": "mask_logits", "threshold": 0.0, "fillHoles": True, "fitEllipse": True, "presence": PRESENCE_FIXTURE_BLOCK},
        "segments": segments_from(["tissue"]),
        "modalities": ["*"],
        "training": {"dataset": "none (a fixed threshold)", "split": "none", "seed": 0, "epochs": 0, "gitCommit": git_commit(), "date": "n/a"},
        "metrics": None,
        "export": {"opset": OPSET, "torch": torch.__version__, "onnxruntime": ort.__version__, "maxAbsDiff": max_diff,
                   "graphs": "one graph: a fixed arithmetic"},
    }
    validate_manifest(manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
