"""The segmentation phase of LDFSAM on LiteMedSAM (`lite`), the paper's phase 2 with the SAM encoder
frozen: the prompt generator (the distilled student) is frozen too, so each training image's LiteMedSAM
embedding and P3-P5 are computed once and cached, and the fusion, the Dense and Sparse Feature Prompts,
the prompt encoder and the mask decoder train on the cache (Dice + BCE on the masks, MSE of the IoU
head to the mask's real IoU, AdamW, cosine).

Augmentation is what a cache allows: each training image in its four flips (none, horizontal,
vertical, both), each with its own embedding. Prompts per step (one kind for the whole batch, so every
sample has the same number of prompt tokens, as at inference): the detector's top box (what the
automatic graph feeds), a reference box jittered by up to 10 % of its size per edge, or 1-3 points
(positives inside the reference, negatives outside it near its box; SAM's padding point after them):
the promptable export's decoder then answers boxes and clicks too.

What trains (`--tune`): `decoder` (fusion, DFP, SFP, prompt encoder, mask decoder; the default),
`prompts` (fusion, DFP, SFP only: the prompt generator's heads with SAM frozen, an ablation) or
`encoder` (`lite-adapters` only: the encoder's adapters as well, end to end through the encoder on
augmented images - no cache, about 3x the compute of a cached step per image).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .configs import LDFSAMConfig, build_ldfsam
from .inputs import encoder_input
from .losses import dice_bce_loss
from .pretrained import load_litemedsam

FLIPS: Tuple[Tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))  # none, horizontal, vertical, both
PROMPT_MIX = (("detector", 0.6), ("box", 0.25), ("points", 0.15))
TUNE = ("decoder", "prompts", "encoder")


def build_lite(config: LDFSAMConfig, detector_state: Dict[str, torch.Tensor]) -> torch.nn.Module:
    """LDFSAM lite with LiteMedSAM's weights (checked) and the given detector."""
    model = build_ldfsam(config)
    load_litemedsam(model)
    model.detector.load_state_dict(detector_state)
    return model


@torch.no_grad()
def top_boxes(model, p3, p4, p5, det_size: int) -> torch.Tensor:
    return model.detector_box(p3, p4, p5, det_size)


@torch.no_grad()
def embed_cache(model, config: LDFSAMConfig, images: torch.Tensor, masks: torch.Tensor, flips: Sequence[Tuple[int, ...]], path: Path, log) -> dict:
    """Per image and flip: the encoder's embedding (fp16), P3-P5 (fp16), the detector's top box, the
    mask. Cached in `path` (a key of the images, the flips and the detector's weights)."""
    if path.exists():
        return torch.load(path)
    model.eval()
    out: Dict[str, List[torch.Tensor]] = {"z": [], "p3": [], "p4": [], "p5": [], "det_box": [], "mask": []}
    t0 = time.time()
    for i in range(0, len(images), 8):
        x0 = images[i : i + 8].float() / 255.0
        m0 = masks[i : i + 8]
        for flip in flips:
            x = torch.flip(x0, flip) if flip else x0
            m = torch.flip(m0, flip) if flip else m0
            z = model.image_encoder(encoder_input(x, config))
            p3, p4, p5 = model.detector.features(x)
            out["z"].append(z.half())
            out["p3"].append(p3.half())
            out["p4"].append(p4.half())
            out["p5"].append(p5.half())
            out["det_box"].append(top_boxes(model, p3, p4, p5, config.detector_size))
            out["mask"].append(m)
        if log and (i // 8) % 10 == 0:
            log(f"  cached {min(i + 8, len(images))}/{len(images)} images x {len(flips)} flips ({time.time() - t0:.0f}s)")
    cache = {k: torch.cat(v) for k, v in out.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path)
    return cache


def cache_key(images: torch.Tensor, flips, detector_state: Dict[str, torch.Tensor], config: LDFSAMConfig) -> str:
    h = hashlib.sha256()
    h.update(images.numpy().tobytes()[:: 97])
    h.update(repr((images.shape, flips, config.encoder_input, config.name)).encode())
    for k in sorted(detector_state):
        h.update(detector_state[k].float().numpy().tobytes()[:: 31])
    return h.hexdigest()[:16]


def gt_box(mask: np.ndarray) -> np.ndarray:
    """The reference's box as SAM/MedSAM take it: inclusive pixel indices (x0, y0, x1, y1)."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.array([0, 0, mask.shape[1] - 1, mask.shape[0] - 1], dtype=np.float32)
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float32)


def jittered_box(mask: np.ndarray, rng: np.random.Generator, fraction: float = 0.1) -> np.ndarray:
    b = gt_box(mask)
    w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
    b = b + rng.uniform(-fraction, fraction, 4) * np.array([w, h, w, h])
    limit = np.array([mask.shape[1], mask.shape[0], mask.shape[1], mask.shape[0]]) - 1
    return np.clip(b, 0, limit).astype(np.float32)


def sample_points(mask: np.ndarray, rng: np.random.Generator, positives: int, negatives: int) -> Tuple[np.ndarray, np.ndarray]:
    """Positive points inside the mask, negatives outside it within its box grown by 20 %."""
    rows, cols = np.nonzero(mask)
    pick = rng.integers(0, len(rows), positives)
    pts = [(cols[i], rows[i]) for i in pick]
    b = gt_box(mask)
    w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
    x0, y0 = max(0, b[0] - 0.2 * w), max(0, b[1] - 0.2 * h)
    x1, y1 = min(mask.shape[1] - 1, b[2] + 0.2 * w), min(mask.shape[0] - 1, b[3] + 0.2 * h)
    tries = 0
    while len(pts) < positives + negatives and tries < 200:
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        tries += 1
        if not mask[int(y), int(x)]:
            pts.append((x, y))
    while len(pts) < positives + negatives:  # the box is all mask: a negative far away
        pts.append((0.0, 0.0) if not mask[0, 0] else (mask.shape[1] - 1.0, mask.shape[0] - 1.0))
    labels = [1.0] * positives + [0.0] * negatives
    return np.array(pts, dtype=np.float32), np.array(labels, dtype=np.float32)


def prompt_tokens(kind: str, masks: torch.Tensor, det_boxes: torch.Tensor, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 2) coordinates and (B, N) labels in the promptable decoder's convention (points, then box
    corners labelled 2 and 3; with no box one padding point labelled -1)."""
    b = masks.shape[0]
    if kind in ("detector", "box"):
        boxes = det_boxes.numpy() if kind == "detector" else np.stack([jittered_box(masks[i, 0].numpy(), rng) for i in range(b)])
        coords = torch.from_numpy(boxes.reshape(b, 2, 2).astype(np.float32))
        return coords, torch.tensor([[2.0, 3.0]]).expand(b, -1)
    positives = int(rng.integers(1, 3))
    negatives = int(rng.integers(0, 2))
    coords, labels = zip(*(sample_points(masks[i, 0].numpy(), rng, positives, negatives) for i in range(b)))
    coords = np.concatenate([np.stack(coords), np.zeros((b, 1, 2), np.float32)], axis=1)
    labels = np.concatenate([np.stack(labels), -np.ones((b, 1), np.float32)], axis=1)
    return torch.from_numpy(coords), torch.from_numpy(labels)


def decode(model, decoder_graph, z, p3, p4, p5, coords, labels):
    """Feature prompts + prompt tokens through the decoder, as the exported graphs compute them."""
    fused = model.fusion(p3, p4, p5)
    z = model.dense_prompt(z, fused) if model.use_dense_prompt else z
    sparse = decoder_graph._sparse(coords, labels)
    if model.use_sparse_prompt:
        sparse = torch.cat([sparse, model.sparse_prompt(fused)], dim=1)
    pe = model.prompt_encoder
    dense = pe.no_mask_embed.weight.view(1, -1, 1, 1).expand(z.shape[0], -1, *z.shape[-2:])
    masks, iou = model.mask_decoder.predict_all(z, pe.get_dense_pe(), sparse, dense)
    return masks[:, :1], iou[:, :1]


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The real IoU of each predicted mask (logits > 0, resized to the target) with the target."""
    with torch.no_grad():
        pred = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False) > 0
        t = target.bool()
        inter = (pred & t).flatten(1).sum(1).float()
        union = (pred | t).flatten(1).sum(1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class CachedBatches:
    """Seeded batches over the cached flips: epoch e's order and prompt kinds are functions of (seed, e)."""

    def __init__(self, cache: dict, batch_size: int, seed: int, steps_per_epoch=None) -> None:
        self.cache, self.batch_size, self.seed = cache, batch_size, seed
        full = (len(cache["z"]) + batch_size - 1) // batch_size
        self.steps = min(full, steps_per_epoch) if steps_per_epoch else full

    def epoch(self, e: int):
        g = torch.Generator().manual_seed(self.seed * 1000 + e)
        order = torch.randperm(len(self.cache["z"]), generator=g)
        rng = np.random.default_rng((self.seed, e))
        kinds, weights = zip(*PROMPT_MIX)
        for s in range(self.steps):
            idx = order[s * self.batch_size : (s + 1) * self.batch_size]
            if len(idx) == 0:
                break
            kind = str(rng.choice(kinds, p=np.array(weights) / sum(weights)))
            batch = {k: v[idx] for k, v in self.cache.items()}
            coords, labels = prompt_tokens(kind, batch["mask"], batch["det_box"], rng)
            yield batch, batch["mask"].float(), (coords, labels)


def val_dice(model, decoder_graph, cache: dict, batch: int = 16) -> float:
    """Dice at the 256 input frame of the automatic path: the detector's box, the feature prompts."""
    model.eval()
    scores = []
    with torch.no_grad():
        for i in range(0, len(cache["z"]), batch):
            sl = slice(i, i + batch)
            b = cache["z"][sl].shape[0]
            coords = cache["det_box"][sl].reshape(b, 2, 2)
            labels = torch.tensor([[2.0, 3.0]]).expand(b, -1)
            logits, _ = decode(
                model, decoder_graph, cache["z"][sl].float(), cache["p3"][sl].float(), cache["p4"][sl].float(), cache["p5"][sl].float(), coords, labels
            )
            pred = F.interpolate(logits, size=cache["mask"].shape[-2:], mode="bilinear", align_corners=False) > 0
            t = cache["mask"][sl].bool()
            inter = (pred & t).flatten(1).sum(1).float()
            total = (pred.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
            scores.extend(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total)).tolist())
    return float(np.mean(scores)) if scores else 0.0


def trainable(model, tune: str) -> List[torch.nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(False)
    parts = [model.fusion, model.dense_prompt, model.sparse_prompt]
    if tune in ("decoder", "encoder"):
        parts += [model.prompt_encoder, model.mask_decoder]
    elif tune != "prompts":
        raise ValueError(f"unknown --tune {tune!r}; known: {', '.join(TUNE)}")
    params = [p for part in parts for p in part.parameters()]
    if tune == "encoder":
        adapters = [p for name, p in model.image_encoder.named_parameters() if ".adapter." in name]
        if not adapters:
            raise ValueError("--tune encoder needs a configuration with adapters (lite-adapters)")
        params += adapters
    for p in params:
        p.requires_grad_(True)
    return params


def step_loss(model, decoder_graph, batch: dict, masks: torch.Tensor, prompts) -> Tuple[torch.Tensor, Dict[str, float]]:
    coords, labels = prompts
    logits, iou = decode(model, decoder_graph, batch["z"].float(), batch["p3"].float(), batch["p4"].float(), batch["p5"].float(), coords, labels)
    seg = dice_bce_loss(logits, masks)
    iou_loss = F.mse_loss(iou[:, 0], mask_iou(logits, masks))
    return seg + iou_loss, {"seg": float(seg), "iou": float(iou_loss)}


def end_to_end_batches(images, masks, batch_size, seed, augment, steps):
    """Augmented image batches (train.Batches) with a prompt kind per step, for --tune encoder."""
    from .train import Batches

    inner = Batches(images, masks, batch_size, seed, augment, steps)

    class _Wrapped:
        steps, batch_size = inner.steps, inner.batch_size

        def epoch(self, e):
            rng = np.random.default_rng((seed, e, 1))
            kinds, weights = zip(*PROMPT_MIX)
            for ims, ms, _ in inner.epoch(e):
                yield ims, ms, str(rng.choice(kinds, p=np.array(weights) / sum(weights)))

    return _Wrapped()


def end_to_end_step(model, config, decoder_graph, images, masks, kind, rng) -> Tuple[torch.Tensor, Dict[str, float]]:
    with torch.no_grad():
        p3, p4, p5 = model.detector.features(images)
        det = top_boxes(model, p3, p4, p5, config.detector_size)
    z = model.image_encoder(encoder_input(images, config))
    coords, labels = prompt_tokens(kind, masks.bool(), det, rng)
    batch = {"z": z, "p3": p3, "p4": p4, "p5": p5}
    return step_loss(model, decoder_graph, batch, masks, (coords, labels))


def segment_phase(opts, config: LDFSAMConfig, detector_state: Dict[str, torch.Tensor], data: Tuple[torch.Tensor, ...], cache_dir: Path, run_phase, log) -> dict:
    """Runs the phase through train.run_phase (checkpoints, resume, progress lines) on the cache."""
    from .promptable import DecoderGraph

    tr_img, tr_mask, va_img, va_mask = data
    model = build_lite(config, detector_state)
    model.use_dense_prompt, model.use_sparse_prompt = opts.use_dense_prompt, opts.use_sparse_prompt
    graph = DecoderGraph(model, config, multimask_for_single_point=False)
    t0 = time.time()
    if opts.tune == "encoder":
        return _end_to_end_phase(opts, config, model, graph, data, run_phase, log)
    tr_cache = embed_cache(model, config, tr_img, tr_mask, FLIPS, cache_dir / f"lite-train-{cache_key(tr_img, FLIPS, detector_state, config)}.pt", log)
    va_cache = embed_cache(model, config, va_img, va_mask, ((),), cache_dir / f"lite-val-{cache_key(va_img, ((),), detector_state, config)}.pt", log)
    log(f"[segment] cached {len(tr_cache['z'])} training and {len(va_cache['z'])} validation embeddings ({time.time() - t0:.0f}s)")
    params = trainable(model, opts.tune)
    batches = CachedBatches(tr_cache, opts.batch_size, opts.seed + 3, opts.steps_per_epoch.get("segment"))

    def train_mode():
        model.eval()  # frozen parts (encoder, detector) stay in eval
        for part in (model.fusion, model.dense_prompt, model.sparse_prompt, model.prompt_encoder, model.mask_decoder):
            part.train(any(p.requires_grad for p in part.parameters()))

    result = run_phase("segment", opts, model, params, lambda b, m, p: step_loss(model, graph, b, m, p),
                       lambda: val_dice(model, graph, va_cache), "dice", batches, train_mode)
    result.update(trainable_params=sum(p.numel() for p in params), tune=opts.tune, cache_seconds=round(time.time() - t0 - result["seconds"], 1),
                  prompts={"dense": opts.use_dense_prompt, "sparse": opts.use_sparse_prompt, "box": True, "mix": dict(PROMPT_MIX)},
                  alpha=float(model.dense_prompt.alpha), flips=len(FLIPS))
    return result


def _end_to_end_phase(opts, config, model, graph, data, run_phase, log) -> dict:
    from .train import DATASET_AUGMENT

    tr_img, tr_mask, va_img, va_mask = data
    params = trainable(model, "encoder")
    augment = DATASET_AUGMENT.get(opts.dataset) if opts.augment == "auto" else opts.augment
    batches = end_to_end_batches(tr_img, tr_mask, opts.batch_size, opts.seed + 3, augment, opts.steps_per_epoch.get("segment"))
    rng = np.random.default_rng(opts.seed)

    def train_mode():
        model.eval()  # BatchNorm statistics stay LiteMedSAM's and the detector's
        for part in (model.fusion, model.dense_prompt, model.sparse_prompt, model.prompt_encoder, model.mask_decoder):
            part.train()

    def val():
        with torch.no_grad():
            cache = {k: [] for k in ("z", "p3", "p4", "p5", "det_box", "mask")}
            model.eval()
            for i in range(0, len(va_img), 8):
                x = va_img[i : i + 8].float() / 255.0
                p3, p4, p5 = model.detector.features(x)
                for k, v in zip(
                    ("z", "p3", "p4", "p5", "det_box", "mask"),
                    (model.image_encoder(encoder_input(x, config)), p3, p4, p5, top_boxes(model, p3, p4, p5, config.detector_size), va_mask[i : i + 8]),
                ):
                    cache[k].append(v)
            return val_dice(model, graph, {k: torch.cat(v) for k, v in cache.items()})

    result = run_phase("segment", opts, model, params, lambda ims, ms, kind: end_to_end_step(model, config, graph, ims, ms, kind, rng),
                       val, "dice", batches, train_mode)
    result.update(trainable_params=sum(p.numel() for p in params), tune="encoder", augment=augment,
                  prompts={"dense": opts.use_dense_prompt, "sparse": opts.use_sparse_prompt, "box": True, "mix": dict(PROMPT_MIX)},
                  alpha=float(model.dense_prompt.alpha))
    return result


def zero_shot_run(source_run: Path, out_run: Path, config: LDFSAMConfig) -> Path:
    """The baseline without training: LiteMedSAM prompted by the trained detector's top box (the
    feature prompts off), written as a run folder (segment-best.pt + summary.json) that eval and
    publish take like any other."""
    import json

    student = torch.load(source_run / "student-best.pt", map_location="cpu")["model"]
    model = build_lite(config, {k[len("detector."):]: v for k, v in student.items() if k.startswith("detector.")})
    out_run.mkdir(parents=True, exist_ok=True)
    prompts = {"dense": False, "sparse": False, "box": True}
    torch.save(
        {"model": model.state_dict(), "phase": "segment", "epoch": 0, "metric": {}, "config": config.name, "prompts": prompts}, out_run / "segment-best.pt"
    )
    summary = json.loads((source_run / "summary.json").read_text())
    summary["phases"] = {k: v for k, v in summary["phases"].items() if k in ("teacher", "student")}
    summary["phases"]["segment"] = {"epochs": 0, "seconds": 0.0, "metric": "dice", "best": float("nan"), "best_epoch": 0, "prompts": prompts,
                                    "note": "zero-shot: LiteMedSAM's encoder, prompt encoder and decoder as they are, prompted by the detector's box"}
    (out_run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out_run / "segment-best.pt"
