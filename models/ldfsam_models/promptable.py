"""The promptable export: `encoder.onnx` (image -> what a slice's prompts need, computed once per
slice) and `decoder.onnx` (that + a box and/or points + an optional previous mask -> mask logits and
the predicted IoU), for interactive use. Both are verified against PyTorch before the manifest
describes them (`promptable` in model.json, schema version 2). The decoder is exported from
`decoder_export.ExportDecoderGraph`, the same computation written for onnxruntime's CPU kernels, and
checked against `DecoderGraph` here, the form training uses.

Prompt conventions (SAM's ONNX decoder's, written into the manifest):
- coordinates are (x, y) in pixels of the model's input frame (the slice resized as
  `preprocessing.fit` says), pixel centres at +0.5 (the prompt encoder adds it);
- `point_labels`: 1 positive, 0 negative, 2 box top-left corner, 3 box bottom-right corner, -1 padding;
  points come first, then the box's two corners; with no box, one padding point (0, 0, -1) ends the
  list (SAM's prompt encoder pads the same way);
- `mask_input`: logits of a previous step (the decoder's own `mask_logits`, in the input frame), used
  when `has_mask_input` is 1; the graph brings it to the decoder's low resolution (4x its embedding
  grid) and brings the output back to the input frame, so callers see one frame only;
- one mask out: the first mask token, or, where `multimaskForSinglePoint` is true and the prompt is one
  point and no box, the best of the three multimask tokens by predicted IoU (SAM's rule for ambiguous
  single clicks).
"""
from __future__ import annotations

import pathlib
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configs import LDFSAMConfig
from .export import OPSET
from .inputs import detector_input, encoder_input
from .manifest import ManifestError, sha256_of

MAX_POINTS = 16  # user points per prompt (the API's limit); + 2 box corners or 1 padding point
LABELS = {"positive": 1, "negative": 0, "boxTopLeft": 2, "boxBottomRight": 3, "padding": -1}


class EncoderGraph(nn.Module):
    """`image` (B, 3, S, S) in [0, 1] -> `image_embeddings` (B, C, G, G) [+ `feature_tokens` (B, K, C)]."""

    def __init__(self, model: nn.Module, config: LDFSAMConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, image: torch.Tensor):
        enc = encoder_input(image, self.config)
        if not self.config.detector:
            return self.model.embed(enc)[0]
        z, tokens, _ = self.model.embed(enc, detector_input(image, self.config))
        return z, tokens


class DecoderGraph(nn.Module):
    """SAM's prompt encoder + mask decoder with every prompt as an input tensor (see the module doc)."""

    def __init__(self, model: nn.Module, config: LDFSAMConfig, *, multimask_for_single_point: bool) -> None:
        super().__init__()
        self.model, self.config = model, config
        self.multimask_for_single_point = multimask_for_single_point
        self.with_tokens = config.detector and config.num_sparse_tokens > 0 and getattr(model, "use_sparse_prompt", True)

    def _sparse(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        size = float(self.config.image_size)
        emb = pe.pe_layer._pe_encoding((coords + 0.5) / size)
        pad = (labels == -1).unsqueeze(-1).to(emb.dtype)
        emb = emb * (1 - pad) + pe.not_a_point_embed.weight * pad
        for i in range(4):
            emb = emb + pe.point_embeddings[i].weight * (labels == i).unsqueeze(-1).to(emb.dtype)
        return emb

    def _prompts(self, *rest) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The inputs after `image_embeddings` -> the sparse embeddings (B, N, C), the point labels, the
        mask input at the decoder's low resolution and `has_mask_input` as (B, 1, 1, 1)."""
        if self.with_tokens:
            feature_tokens, point_coords, point_labels, mask_input, has_mask_input = rest
        else:
            point_coords, point_labels, mask_input, has_mask_input = rest
            feature_tokens = None
        sparse = self._sparse(point_coords, point_labels)
        if feature_tokens is not None:
            sparse = torch.cat([sparse, feature_tokens], dim=1)
        s, low = self.config.image_size, 4 * self.config.grid
        if low != s:  # static factors (see inputs.py)
            mask_input = F.interpolate(mask_input, scale_factor=low / s, mode="bilinear", align_corners=False)
        return sparse, point_labels, mask_input, has_mask_input.view(-1, 1, 1, 1)

    def _index(self, point_labels: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """Which mask token answers (B,): the first, or SAM's best of three for a lone click."""
        index = torch.zeros_like(iou[:, 0], dtype=torch.long)
        if self.multimask_for_single_point:
            clicks = ((point_labels == 0) | (point_labels == 1)).sum(dim=1)
            boxed = (point_labels == 2).any(dim=1)
            index = torch.where((clicks == 1) & ~boxed, 1 + iou[:, 1:].argmax(dim=1), index)
        return index

    def _to_input_frame(self, mask: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (B, 1, 4G, 4G) -> the input frame (B, 1, S, S)."""
        s, low = self.config.image_size, 4 * self.config.grid
        if low != s:
            mask = F.interpolate(mask, scale_factor=s / low, mode="bilinear", align_corners=False)
        return mask

    def forward(self, image_embeddings, *rest):
        sparse, point_labels, mask_input, has = self._prompts(*rest)
        pe = self.model.prompt_encoder
        dense = pe.mask_downscaling(mask_input) * has + pe.no_mask_embed.weight.view(1, -1, 1, 1) * (1 - has)
        masks, iou = self.model.mask_decoder.predict_all(image_embeddings, pe.get_dense_pe(), sparse, dense)
        index = self._index(point_labels, iou)
        h, w = masks.shape[-2:]
        mask = masks.gather(1, index.view(-1, 1, 1, 1).expand(-1, 1, h, w))
        return self._to_input_frame(mask), iou.gather(1, index.view(-1, 1))


def encoder_io(config: LDFSAMConfig, with_tokens: bool) -> Tuple[List[dict], List[dict]]:
    s, g, c = config.image_size, config.grid, config.prompt_dim
    inputs = [{"name": "image", "dtype": "float32", "shape": ["batch", 3, s, s]}]
    outputs = [{"name": "image_embeddings", "dtype": "float32", "shape": ["batch", c, g, g]}]
    if with_tokens:
        outputs.append({"name": "feature_tokens", "dtype": "float32", "shape": ["batch", config.num_sparse_tokens, c]})
    return inputs, outputs


def decoder_io(config: LDFSAMConfig, with_tokens: bool) -> Tuple[List[dict], List[dict]]:
    g, c, s = config.grid, config.prompt_dim, config.image_size
    inputs = [{"name": "image_embeddings", "dtype": "float32", "shape": [1, c, g, g]}]
    if with_tokens:
        inputs.append({"name": "feature_tokens", "dtype": "float32", "shape": [1, config.num_sparse_tokens, c]})
    inputs += [
        {"name": "point_coords", "dtype": "float32", "shape": [1, "points", 2]},
        {"name": "point_labels", "dtype": "float32", "shape": [1, "points"]},
        {"name": "mask_input", "dtype": "float32", "shape": [1, 1, s, s]},
        {"name": "has_mask_input", "dtype": "float32", "shape": [1]},
    ]
    outputs = [{"name": "mask_logits", "dtype": "float32", "shape": [1, 1, s, s]}, {"name": "iou", "dtype": "float32", "shape": [1, 1]}]
    return inputs, outputs


def _example_prompts(config: LDFSAMConfig, rng: np.random.Generator, n_points: int, box: bool, mask: bool) -> Dict[str, np.ndarray]:
    s = config.image_size
    coords = rng.random((1, n_points, 2), dtype=np.float32) * s
    labels = rng.integers(0, 2, (1, n_points)).astype(np.float32)
    if box:
        x0, y0 = rng.random(2) * s / 2
        coords = np.concatenate([coords, np.array([[[x0, y0], [x0 + s / 3, y0 + s / 4]]], dtype=np.float32)], axis=1)
        labels = np.concatenate([labels, np.array([[2, 3]], dtype=np.float32)], axis=1)
    else:
        coords = np.concatenate([coords, np.zeros((1, 1, 2), dtype=np.float32)], axis=1)
        labels = np.concatenate([labels, -np.ones((1, 1), dtype=np.float32)], axis=1)
    return {
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": (rng.standard_normal((1, 1, s, s)) * 4).astype(np.float32),
        "has_mask_input": np.array([1.0 if mask else 0.0], dtype=np.float32),
    }


def export_promptable(model: nn.Module, config: LDFSAMConfig, out: pathlib.Path, *, multimask_for_single_point: bool, tolerance: float = 1e-4) -> dict:
    """Writes encoder.onnx and decoder.onnx into `out`, checks both against PyTorch (encoder at batch 1
    and 3: the dynamic batch must work; decoder with a box, points, both, and a mask input) and
    returns the manifest's `promptable` section with its `files` entries. Refuses (ManifestError)
    on a parity failure, removing what it wrote."""
    from .decoder_export import ExportDecoderGraph

    model = model.eval()
    out.mkdir(parents=True, exist_ok=True)
    encoder = EncoderGraph(model, config).eval()
    decoder = DecoderGraph(model, config, multimask_for_single_point=multimask_for_single_point).eval()
    exported = ExportDecoderGraph(model, config, multimask_for_single_point=multimask_for_single_point).eval()
    with_tokens = decoder.with_tokens
    enc_in, enc_out = encoder_io(config, with_tokens)
    dec_in, dec_out = decoder_io(config, with_tokens)
    enc_path, dec_path = out / "encoder.onnx", out / "decoder.onnx"
    s, g, c = config.image_size, config.grid, config.prompt_dim
    with torch.no_grad():
        torch.onnx.export(encoder, (torch.rand(1, 3, s, s),), str(enc_path), opset_version=OPSET,
                          input_names=[t["name"] for t in enc_in], output_names=[t["name"] for t in enc_out],
                          dynamic_axes={t["name"]: {0: "batch"} for t in enc_in + enc_out}, do_constant_folding=True)
        example = _example_prompts(config, np.random.default_rng(0), 2, True, True)
        args = [torch.rand(1, c, g, g)] + ([torch.rand(1, config.num_sparse_tokens, c)] if with_tokens else [])
        args += [torch.from_numpy(example[k]) for k in ("point_coords", "point_labels", "mask_input", "has_mask_input")]
        torch.onnx.export(exported, tuple(args), str(dec_path), opset_version=OPSET,
                          input_names=[t["name"] for t in dec_in], output_names=[t["name"] for t in dec_out],
                          dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}}, do_constant_folding=True)
    _write_shapes(enc_path, enc_in, enc_out)
    _write_shapes(dec_path, dec_in, dec_out)
    try:
        diff = verify_promptable(encoder, decoder, enc_path, dec_path, config)
    except Exception:
        enc_path.unlink(missing_ok=True)
        dec_path.unlink(missing_ok=True)
        raise
    if not max(diff["encoderRelative"], diff["decoderRelative"]) < tolerance:
        enc_path.unlink()
        dec_path.unlink()
        raise ManifestError(f"promptable export parity failed: |onnxruntime - PyTorch| {diff}, relative >= {tolerance}")
    files = [
        {"path": enc_path.name, "sha256": sha256_of(enc_path), "bytes": enc_path.stat().st_size, "role": "image-encoder"},
        {"path": dec_path.name, "sha256": sha256_of(dec_path), "bytes": dec_path.stat().st_size, "role": "mask-decoder"},
    ]
    section = {
        "encoder": {"file": enc_path.name, "inputs": enc_in, "outputs": enc_out},
        "decoder": {"file": dec_path.name, "inputs": dec_in, "outputs": dec_out},
        "prompts": {
            "frame": "model input: the slice fitted as preprocessing.fit says; (x, y) pixels, centres at +0.5",
            "labels": LABELS,
            "maxPoints": MAX_POINTS,
            "padWhenNoBox": True,
            "order": "points, then the box's two corners",
            "maskInput": "the decoder's mask_logits of a previous step (input frame, like the output); has_mask_input 1 to use it",
            "multimaskForSinglePoint": multimask_for_single_point,
        },
        "maxAbsDiff": diff,
    }
    return {"files": files, "promptable": section}


def _write_shapes(path: pathlib.Path, inputs: List[dict], outputs: List[dict]) -> None:
    """Torch 1.13 leaves some output dims symbolic: write the manifest's dims into the graph."""
    import onnx

    model = onnx.load(str(path))
    for values, specs in ((model.graph.input, inputs), (model.graph.output, outputs)):
        for value, spec in zip(values, specs):
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for d in spec["shape"]:
                dim = shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _compare(got: List[np.ndarray], expected: List[np.ndarray], what: str) -> Tuple[float, float]:
    """Max |difference| and that over max(1, max |expected|): decoder logits reach +-30, where float32
    rounding alone differs by ~1e-4, so parity is judged relative to the outputs' scale."""
    for g_, e in zip(got, expected):
        if g_.shape != e.shape:
            raise ManifestError(f"{what}: onnxruntime output shape {g_.shape}, PyTorch {e.shape}")
    diff = max(float(np.abs(g_ - e).max()) for g_, e in zip(got, expected))
    scale = max([1.0] + [float(np.abs(e).max()) for e in expected])
    return diff, diff / scale


@torch.no_grad()
def verify_promptable(encoder: EncoderGraph, decoder: DecoderGraph, enc_path: pathlib.Path, dec_path: pathlib.Path, config: LDFSAMConfig) -> Dict[str, float]:
    """Largest absolute and relative differences, encoder at batch 1 and 3, decoder on four prompt kinds."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    enc = ort.InferenceSession(str(enc_path), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(dec_path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    s = config.image_size
    worst = {"encoder": 0.0, "encoderRelative": 0.0, "decoder": 0.0, "decoderRelative": 0.0}
    embedding = None
    for batch in (1, 3):
        image = rng.random((batch, 3, s, s), dtype=np.float32)
        expected = encoder(torch.from_numpy(image))
        expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
        got = enc.run(None, {"image": image})
        d, r = _compare(got, expected, f"encoder.onnx at batch {batch}")
        worst["encoder"], worst["encoderRelative"] = max(worst["encoder"], d), max(worst["encoderRelative"], r)
        embedding = [t[:1] for t in got]
    names = [i.name for i in dec.get_inputs()]
    for n_points, box, mask in ((0, True, False), (1, False, False), (3, True, True), (MAX_POINTS, False, True)):
        feeds = dict(zip(["image_embeddings"] + (["feature_tokens"] if decoder.with_tokens else []), embedding))
        feeds.update(_example_prompts(config, rng, n_points, box, mask))
        expected = [t.numpy() for t in decoder(*(torch.from_numpy(feeds[n]) for n in names))]
        d, r = _compare(dec.run(None, feeds), expected, f"decoder.onnx with {n_points} points{', a box' if box else ''}")
        worst["decoder"], worst["decoderRelative"] = max(worst["decoder"], d), max(worst["decoderRelative"], r)
    return worst
