"""ONNX export with the preprocessing that belongs in the graph, self-verification and model.json.

One graph, not three (image encoder / prompt generator / mask decoder): measured with `python -m
ldfsam_models graphs` (onnxruntime, 2 threads, 2026-11-30), tiny ran 31.5 ms/slice as one graph and
31.3 ms as three, full 389 ms and 357 ms (within this machine's ~30% drift). The server runs every
part on every slice, so a split buys no clear speed and adds two hand-overs and three files per model;
it pays only when prompts change on a fixed image (interactive SAM), which automatic LDFSAM never does.
"""
import datetime
import json
import pathlib
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configs import LDFSAMConfig
from .inputs import PIXEL_MEAN, PIXEL_STD, model_inputs  # noqa: F401 (PIXEL_*: re-exported)
from .manifest import ManifestError, git_commit, sha256_of, validate_manifest

OPSET = 17
# Test-time augmentation the graph can carry: the image flipped along one axis (dims of (B, C, H, W)).
FLIPS = {"hflip": 3, "vflip": 2}
# The box a second decoder pass takes (box-prompted models): the first mask's, widened by this share of
# its width and height per side (models/README, "PH2: inference-time additions within the budget").
SECOND_PASS_MARGIN = 0.05
# What the automatic graph of a box-prompted (lite) model reports per slice for the presence decision
# (postprocessing.presence in the manifest combines them; see presence.py): the detector's top score,
# the decoder's predicted IoU, the mask's share of the input frame, the mean probability inside it.
PRESENCE_FEATURES = ("detectorScore", "predictedIou", "maskArea", "maskConfidence")
GRAPHS_NOTE = __doc__.split("\n\n")[1].replace("\n", " ")


class SegmentationGraph(nn.Module):
    """What model.onnx computes: `image` (B, 3, S, S) float32 in [0, 1] -> `mask_logits` (B, 1, S, S)
    and `iou` (B, 1). Normalisation and the resize to the detector's input happen inside. With `flips`
    (test-time augmentation) the graph also runs the flipped images in the same batch, flips their
    logits back and returns the mean of all views, so callers see one model with the same contract.
    With `second_pass` (box-prompted configurations) the decoder runs again on the same embedding,
    prompted by the first mask's box (`mask_box`), and its mask and IoU are the answer; a slice whose
    first mask is empty keeps it."""

    def __init__(self, model: nn.Module, config: LDFSAMConfig, flips: Sequence[str] = (), second_pass: bool = False) -> None:
        super().__init__()
        self.model = model
        self.config = config
        unknown = [f for f in flips if f not in FLIPS]
        if unknown:
            raise ValueError(f"unknown test-time flips {unknown}; known: {sorted(FLIPS)}")
        if second_pass and not config.box_prompt:
            raise ValueError(f"a second decoder pass needs a box-prompted configuration (lite); {config.name} is not")
        self.flip_dims = [FLIPS[f] for f in flips]
        self.second_pass = second_pass

    @property
    def with_presence(self) -> bool:
        return self.config.box_prompt

    def forward(self, image: torch.Tensor):
        if not self.flip_dims:
            return self.views(image)
        views = 1 + len(self.flip_dims)
        outputs = self.views(torch.cat([image] + [torch.flip(image, [d]) for d in self.flip_dims]))
        logits, rest = outputs[0].view(views, -1, *outputs[0].shape[1:]), [o.view(views, -1, *o.shape[1:]).mean(0) for o in outputs[1:]]
        # One flip undoes itself: view k + 1 was flipped along flip_dims[k] (one dim later in the stack).
        logits = torch.stack([logits[0]] + [torch.flip(logits[k + 1], [d]) for k, d in enumerate(self.flip_dims)])
        return (logits.mean(0), *rest)

    def views(self, image: torch.Tensor):
        s = self.config.image_size
        masks, iou, aux = self.model(*model_inputs(image, self.config), with_detections=self.with_presence)
        masks = self.input_frame(masks)
        if self.second_pass:
            box, found = mask_box(masks, SECOND_PASS_MARGIN, float(s))
            again, again_iou, _ = self.model.decode(aux["z_cond"], aux["feature_tokens"], boxes=box)
            masks = torch.where(found[:, None, None, None], self.input_frame(again), masks)
            iou = torch.where(found[:, None], again_iou, iou)
        if not self.with_presence:
            return masks, iou
        return masks, iou, presence_features(masks, iou, aux["cls_logits"])

    def input_frame(self, masks: torch.Tensor) -> torch.Tensor:
        """The decoder's masks (4x the embedding grid) in the S x S input frame; a Python constant keeps
        the scale static when traced."""
        s = self.config.image_size
        if masks.shape[-1] == s:
            return masks
        return F.interpolate(masks, scale_factor=s / (4 * self.config.grid), mode="bilinear", align_corners=False)


def mask_box(logits: torch.Tensor, margin: float, side: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, S, S) logits -> the box of each mask (`logits > 0`) as SAM takes it, (B, 4) x0, y0, x1, y1
    over the pixels' extent (last pixel + 1), widened by `margin` x its size per side and clamped to
    [0, side]; and (B,) whether the mask has a pixel at all."""
    inside = (logits[:, 0] > 0).float()
    columns, rows = inside.amax(1) > 0, inside.amax(2) > 0  # (B, S): any pixel in that column / row

    def extent(any_pixel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(any_pixel.shape[1], dtype=logits.dtype).expand_as(any_pixel)
        low = torch.where(any_pixel, index, torch.full_like(index, float(any_pixel.shape[1]))).amin(1)
        high = torch.where(any_pixel, index, torch.full_like(index, -1.0)).amax(1)
        return low, high

    (x0, x1), (y0, y1) = extent(columns), extent(rows)
    w, h = x1 - x0, y1 - y0
    box = torch.stack([x0 - margin * w, y0 - margin * h, x1 + 1 + margin * w, y1 + 1 + margin * h], dim=1)
    return box.clamp(0.0, side), columns.any(1)


def presence_features(logits: torch.Tensor, iou: torch.Tensor, cls_logits: torch.Tensor) -> torch.Tensor:
    """(B, 4) in PRESENCE_FEATURES order, from what the model computes anyway."""
    inside = (logits > 0).float().flatten(1)
    prob = torch.sigmoid(logits).flatten(1)
    area = inside.mean(1)
    confidence = (prob * inside).sum(1) / inside.sum(1).clamp(min=1.0)
    score = torch.sigmoid(cls_logits).amax(dim=(1, 2))
    return torch.stack([score, iou[:, 0], area, confidence], dim=1)


def auto_outputs(config: LDFSAMConfig) -> list:
    s = config.image_size
    outputs = [{"name": "mask_logits", "dtype": "float32", "shape": ["batch", 1, s, s]}, {"name": "iou", "dtype": "float32", "shape": ["batch", 1]}]
    if config.box_prompt:
        outputs.append({"name": "presence_features", "dtype": "float32", "shape": ["batch", len(PRESENCE_FEATURES)]})
    return outputs


def export_onnx(model: nn.Module, config: LDFSAMConfig, path: pathlib.Path, flips: Sequence[str] = (), second_pass: bool = False) -> SegmentationGraph:
    graph = SegmentationGraph(model, config, flips, second_pass).eval()  # eval: export restores training flags afterwards
    example = torch.rand(1, 3, config.image_size, config.image_size)
    names = [o["name"] for o in auto_outputs(config)]
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            opset_version=OPSET,
            input_names=["image"],
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["image"] + names},
            do_constant_folding=True,
        )
    graph.eval()
    annotate_shapes(path, config)
    return graph


def annotate_shapes(path: pathlib.Path, config: LDFSAMConfig) -> None:
    """Torch 1.13's exporter leaves the outputs' dims symbolic after Resize; write the static ones
    (verify_onnx then checks that onnxruntime really produces them)."""
    import onnx

    model = onnx.load(str(path))
    for value, dims in zip(model.graph.output, [o["shape"] for o in auto_outputs(config)]):
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d
    onnx.save(model, str(path))


def verify_onnx(graph: SegmentationGraph, path: pathlib.Path, seed: int = 0, batch: int = 2) -> float:
    """onnx.checker, then PyTorch vs onnxruntime on random inputs: the largest absolute difference."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)))
    rng = np.random.default_rng(seed)
    image = rng.random((batch, 3, graph.config.image_size, graph.config.image_size), dtype=np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in graph(torch.from_numpy(image))]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image})
    for g, e in zip(got, expected):
        if g.shape != e.shape:
            raise ManifestError(f"onnxruntime output shape {g.shape} differs from PyTorch's {e.shape}")
    return float(max(np.abs(g - e).max() for g, e in zip(got, expected)))


def in_graph_steps(config: LDFSAMConfig, flips: Sequence[str] = (), second_pass: bool = False) -> list:
    """What the graphs do to the input themselves (the manifest's preprocessing.inGraph)."""
    steps = []
    if config.encoder_input != config.image_size:
        steps.append(f"bilinear resize to the encoder's {config.encoder_input}x{config.encoder_input}")
    steps.append("SAM mean/std normalisation" if config.normalisation == "sam" else "encoder takes [0, 1] values as they are (LiteMedSAM)")
    if config.detector:
        steps.append(f"bilinear resize to the detector's {config.detector_size}x{config.detector_size}")
    if flips:
        steps.append(f"test-time augmentation: mean logits of the image and its {', '.join(flips)} (flipped back), run as one batch")
    if second_pass:
        steps.append(f"second decoder pass prompted by the first mask's box (widened {SECOND_PASS_MARGIN:.0%} per side); its mask and IoU are the output")
    return steps


def export_model(
    model: nn.Module,
    config: LDFSAMConfig,
    out: pathlib.Path,
    *,
    name: str,
    version: str,
    segments: list,
    modalities: list,
    intensity: dict,
    training: dict,
    metrics: Optional[dict],
    description: str = "",
    tolerance: float = 1e-4,
    flips: Sequence[str] = (),
    second_pass: bool = False,
    postprocessing: Optional[dict] = None,
    promptable: bool = False,
    multimask_for_single_point: bool = False,
) -> dict:
    """Exports, verifies and writes model.json: the automatic graph model.onnx (configurations with a
    prompt generator) and, with `promptable` (always without a prompt generator), encoder.onnx +
    decoder.onnx. Manifest version 2 when there is a promptable pair or the fit is not the stretch of
    version 1. Refuses (ManifestError) when a parity check fails."""
    import onnxruntime as ort

    from .flops import count_flops

    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    s = config.image_size
    files, extra, diffs = [], {}, {}
    modes = []
    if config.detector:
        onnx_path = out / "model.onnx"
        graph = export_onnx(model, config, onnx_path, flips, second_pass)
        max_diff = verify_onnx(graph, onnx_path)
        if not max_diff < tolerance:
            onnx_path.unlink()
            raise ManifestError(f"export parity failed: max |onnxruntime - PyTorch| = {max_diff:.3g} >= {tolerance}")
        diffs["maxAbsDiff"] = max_diff
        files.append({"path": "model.onnx", "sha256": sha256_of(onnx_path), "bytes": onnx_path.stat().st_size, "role": "segmentation"})
        extra["inputs"] = [{"name": "image", "dtype": "float32", "shape": ["batch", 3, s, s]}]
        extra["outputs"] = auto_outputs(config)
        modes.append("auto")
        counts = count_flops(config, model)  # the detect head counts only where its box is the prompt
        per_view = sum(counts.values()) - (0 if config.box_prompt else counts["detector_head"])
        per_view += (counts["prompt_encoder"] + counts["mask_decoder"]) if second_pass else 0
        diffs["gflopsPerSlice"] = round(per_view * (1 + len(flips)) / 1e9, 3)
    if promptable or not config.detector:
        from .decoder_export import FORM as DECODER_FORM
        from .promptable import export_promptable

        pair = export_promptable(model, config, out, multimask_for_single_point=multimask_for_single_point, tolerance=tolerance)
        files += pair["files"]
        extra["promptable"] = pair["promptable"]
        diffs.setdefault("maxAbsDiff", max(pair["promptable"]["maxAbsDiff"]["encoder"], pair["promptable"]["maxAbsDiff"]["decoder"]))
        modes.append("promptable")
    version2 = "promptable" in modes or config.resize != "stretch"
    preprocessing = {"inputSize": s, "resize": "bilinear", "channels": "rgb", "valueRange": [0, 1],
                     "inGraph": in_graph_steps(config, flips, second_pass), "intensity": intensity}
    if version2:
        preprocessing["fit"] = config.resize
    manifest = {
        "schemaVersion": 2 if version2 else 1,
        **({"modes": modes} if version2 else {}),
        "name": name,
        "version": version,
        "description": description,
        "configuration": config.to_dict(),
        "files": files,
        **{k: extra[k] for k in ("inputs", "outputs") if k in extra},
        **({"promptable": extra["promptable"]} if "promptable" in extra else {}),
        "preprocessing": preprocessing,
        "postprocessing": {"output": "mask_logits", "threshold": 0.0, **(postprocessing or {})},
        "segments": segments,
        "modalities": modalities,
        "training": {**training, "gitCommit": training.get("gitCommit") or git_commit(), "date": training.get("date") or datetime.date.today().isoformat()},
        "metrics": metrics,
        "export": {"opset": OPSET, "torch": torch.__version__, "onnxruntime": ort.__version__, "maxAbsDiff": diffs["maxAbsDiff"], "graphs": GRAPHS_NOTE,
                   **({"gflopsPerSlice": diffs["gflopsPerSlice"]} if "gflopsPerSlice" in diffs else {}),
                   **({"decoderGraph": DECODER_FORM} if "promptable" in extra else {}),
                   **({"testTimeAugmentation": list(flips)} if flips else {}),
                   **({"secondPass": {"prompt": "the first mask's box", "margin": SECOND_PASS_MARGIN}} if second_pass else {})},
    }
    validate_manifest(manifest)
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
