"""Training of LDFSAM in four phases (CPU-sized, `tiny` configuration at 256x256).

Phases (what each trains; its loss; what stays frozen; the validation metric that picks the best epoch):
- `teacher`: a larger YOLOv8 (scale `s` by default) on tight boxes around the mask instances;
  detection loss (TAL, BCE + CIoU + DFL); nothing frozen; mean IoU of the top-scoring box with the
  best-matching ground-truth box.
- `student`: LDFSAM's YOLOv8n detector; detection + distillation (`none` / `kd` / `ld-main` /
  `ld-main-vlr`, LD with tau = 10, lambda_main = lambda_vlr = 1); teacher frozen; same metric.
- `encoder` (tiny/full only): everything but the detector, end to end (SAM encoder + adapters, fusion,
  DFP, SFP, prompt encoder, mask decoder); Dice + BCE; distilled detector frozen; validation Dice.
- `segment`: the paper's phase 2: adapters, fusion, DFP (incl. alpha), SFP, mask decoder; Dice + BCE
  (AdamW 1e-4, cosine); detector, SAM encoder (but its adapters) and prompt encoder frozen; validation
  Dice (checkpoint on the best).

The `encoder` phase is not in the paper: it starts from SAM's pretrained encoder, which does not
exist here, and a frozen random ViT is useless, so the encoder is first trained on the same images.

Every phase prints one progress line per epoch, writes `<phase>-last.pt` (for `--resume`) and
`<phase>-best.pt` (best validation metric) into the run folder, and records its time and best
metric in `summary.json`. A phase starts from the best checkpoint of the phase before it. Seeds are
fixed (model initialisation, data order and augmentation draws are functions of the seed and the
epoch), so a resumed run sees the same batches as an uninterrupted one.

Images are resized the way the server feeds the exported graph (plain bilinear, half-pixel
centres, no antialiasing; 8-bit values / 255); masks by `mask_resize` (antialiased,
thresholded at 0.5). The resized set is cached in `runs/cache/` (never committed).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .configs import LDFSAMConfig, build_ldfsam, get_config
from .data import AUGMENTATIONS, FIXED_255, Record, augment_pair, boxes_from_mask, fold_records, load_dataset, parse_fold, record_image01, split_records
from .evaluate import to_input
from .export import PIXEL_MEAN, PIXEL_STD
from .inputs import fitted_size
from .losses import box_overlap, decode_distances, detection_loss, dice_bce_loss, distances_to_boxes, distillation_loss, make_anchors
from .modeling.yolo import YOLOv8

PHASES = ("teacher", "student", "encoder", "segment")
MODELS_DIR = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = MODELS_DIR / "runs"
DATASET_AUGMENT = {"hc18": "ultrasound", "ph2": "dermoscopy"}


@dataclass
class TrainOptions:
    dataset: str = "hc18"  # hc18 | ph2 | folder | dicom-seg
    data_root: Optional[str] = None  # data set folder (default: the shared data); required for 'folder', 'dicom-seg'
    segment_number: int = 1  # dicom-seg: the SEG segment to learn
    intensity: Dict[str, dict] = field(default_factory=lambda: dict(FIXED_255))  # the manifest policy to publish with
    run: str = "hc18"  # run name (folder under runs_dir) or a path
    runs_dir: str = str(DEFAULT_RUNS)
    phases: Tuple[str, ...] = PHASES
    config: str = "tiny"
    seed: int = 2025
    epochs: Dict[str, int] = field(default_factory=lambda: {"teacher": 4, "student": 4, "encoder": 30, "segment": 8})
    steps_per_epoch: Dict[str, int] = field(default_factory=dict)  # subset epochs; missing = whole train split
    batch_size: int = 8
    lr: Dict[str, float] = field(default_factory=lambda: {"teacher": 1e-3, "student": 1e-3, "encoder": 5e-4, "segment": 1e-4})
    teacher_scale: str = "s"
    distill: str = "ld-main-vlr"  # none | kd | ld-main | ld-main-vlr
    use_dense_prompt: bool = True  # prompt ablation (DFP only / SFP only / both) for encoder + segment
    use_sparse_prompt: bool = True
    use_box_prompt: bool = False  # baseline: the detector's top box through SAM's prompt encoder
    tune: str = "decoder"  # lite segment phase: "decoder" (feature prompts + prompt encoder + decoder) | "prompts" (feature prompts only)
    augment: Optional[str] = "auto"  # 'auto' = per data set, None = off, or a data.AUGMENTATIONS name
    limit_train: Optional[int] = None  # use only the first N training (and validation) images: smoke tests
    limit_val: Optional[int] = None
    resume: bool = False
    warmup_fraction: float = 0.05
    # phase -> checkpoint to start that phase from instead of the run's previous phase (e.g. continue
    # another run's encoder with a new schedule: {"encoder": "runs/hc18/encoder-best.pt"})
    init: Dict[str, str] = field(default_factory=dict)
    # encoder/segment: take the detector from this checkpoint (e.g. another student, for measuring a
    # distillation mode through the segmentation) after loading the phase's starting weights
    detector_from: Optional[str] = None
    # 'K/N': train on the other folds of the training pool, validate on fold K (data.fold_records)
    fold: Optional[str] = None

    @property
    def run_dir(self) -> Path:
        p = Path(self.run)
        return p if (p.is_absolute() or len(p.parts) > 1) else Path(self.runs_dir) / self.run


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_folder(root: Path) -> List[Record]:
    """A folder of `images/<id>.<ext>` and `masks/<id>.png` (0/255); every image is its own subject."""
    records = []
    for image in sorted((root / "images").iterdir()):
        if image.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            continue
        mask = root / "masks" / f"{image.stem}.png"
        if mask.exists():
            records.append(Record(image.stem, image.stem, image, mask, None, "folder"))
    if not records:
        raise FileNotFoundError(f"no images/<id> + masks/<id>.png pairs under {root}")
    return records


DATASETS = ("hc18", "ph2", "folder", "dicom-seg")


def dataset_records(name: str, root: Optional[str] = None, segment_number: int = 1, cache_dir: Optional[Path] = None) -> List[Record]:
    if name == "folder":
        if not root:
            raise ValueError("--dataset folder needs --data DIR (with images/ and masks/)")
        return load_folder(Path(root))
    if name == "dicom-seg":
        if not root:
            raise ValueError("--dataset dicom-seg needs --data DIR (DICOM images and the DICOM SEGs that annotate them)")
        from .dicom_dataset import load_dicom_seg

        return load_dicom_seg(Path(root), cache_dir or DEFAULT_RUNS / "cache", segment_number)
    return load_dataset(name, root)


def dataset_splits(
    name: str, root: Optional[str] = None, segment_number: int = 1, cache_dir: Optional[Path] = None, fold: Optional[str] = None
) -> Dict[str, List[Record]]:
    """The project's splits (by subject, seed 2025: 20 % test, 10 % of the rest validation); with
    `fold` ('K/N'), fold K of N of the training pool as validation and the other folds as training
    (data.fold_records; the test split unchanged)."""
    records = dataset_records(name, root, segment_number, cache_dir)
    return fold_records(records, *parse_fold(fold)) if fold else split_records(records)


SPLIT_DESCRIPTION = "by subject, seed 2025 (data.split_records): 20 % test, 10 % of the remaining subjects validation, rest train"


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def server_resize(image: np.ndarray, size: int, fit: str = "stretch") -> torch.Tensor:
    """(H, W, 3) -> (3, size, size): bilinear, half-pixel centres, no antialiasing, into the input as
    `fit` says (the server's; zeros around a fitted image)."""
    return torch.from_numpy(to_input(np.ascontiguousarray(image, dtype=np.float32), size, fit))


def mask_resize(mask: np.ndarray, size: int, fit: str = "stretch") -> torch.Tensor:
    rows, columns = fitted_size(mask.shape[0], mask.shape[1], size, fit)
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    out = torch.zeros(1, size, size, dtype=torch.bool)
    out[:, :rows, :columns] = F.interpolate(m, size=(rows, columns), mode="bilinear", align_corners=False, antialias=True)[0] >= 0.5
    return out


def cached_tensors(records: Sequence[Record], size: int, cache_dir: Path, intensity: Mapping[str, dict] = FIXED_255,
                   fit: str = "stretch") -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, S, S) and bool masks (N, 1, S, S), read once (through the intensity
    policy the model will be published with, fitted as the server fits them) and cached on disk."""
    policy = "" if dict(intensity) == FIXED_255 else "|" + json.dumps(intensity, sort_keys=True)  # old caches stay valid
    policy += "" if fit == "stretch" else f"|{fit}"
    key = hashlib.sha256(("|".join(str(r.image) for r in records) + f"|{size}|v1{policy}").encode()).hexdigest()[:16]
    path = cache_dir / f"{records[0].dataset if records else 'empty'}-{size}-{len(records)}-{key}.pt"
    if path.exists():
        data = torch.load(path)
        return data["images"], data["masks"]
    images = torch.empty(len(records), 3, size, size, dtype=torch.uint8)
    masks = torch.empty(len(records), 1, size, size, dtype=torch.bool)
    for i, r in enumerate(records):
        images[i] = (server_resize(record_image01(r, intensity), size, fit) * 255).round().clamp(0, 255).to(torch.uint8)
        masks[i] = mask_resize(read_mask(r.mask), size, fit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"images": images, "masks": masks}, path)
    return images, masks


class Batches:
    """Seeded, augmented batches from the cached tensors: epoch e's order is a permutation drawn from
    (seed, e) and item i's augmentation from numpy's default_rng((seed, e, i)): reproducible per item and
    epoch, independent of the order (a resumed run sees the same batches)."""

    def __init__(self, images, masks, batch_size, seed, augment, steps_per_epoch=None):
        self.images, self.masks = images, masks
        self.batch_size, self.seed = batch_size, seed
        self.augment = AUGMENTATIONS[augment] if isinstance(augment, str) else augment
        full = math.ceil(len(images) / batch_size)
        self.steps = min(full, steps_per_epoch) if steps_per_epoch else full

    def epoch(self, e: int):
        g = torch.Generator().manual_seed(self.seed * 1000 + e)
        order = torch.randperm(len(self.images), generator=g)
        for s in range(self.steps):
            idx = order[s * self.batch_size : (s + 1) * self.batch_size].tolist()
            if not idx:
                break
            ims, ms, boxes = [], [], []
            for i in idx:
                im = self.images[i].float() / 255.0
                m = self.masks[i].float()
                if self.augment is not None:
                    im, m = augment_pair(im, m, self.augment, np.random.default_rng((self.seed, e, i)))
                ims.append(im)
                ms.append(m)
                boxes.append(torch.from_numpy(boxes_from_mask(m[0].numpy())))
            yield torch.stack(ims), torch.stack(ms), boxes


def sam_input(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (image * 255.0 - mean) / std


def det_input(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, scale_factor=size / image.shape[-1], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------------
# Validation metrics
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def top_box_iou(detector: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, size: int, batch: int = 16) -> float:
    """Mean over images of the IoU between the highest-scoring predicted box and its best-matching
    ground-truth box (0 for an image without ground truth)."""
    detector.eval()
    points, strides = make_anchors(size)
    total = 0.0
    for i in range(0, len(images), batch):
        x = det_input(images[i : i + batch].float() / 255.0, size)
        _, (box, cls) = detector(x)
        pred = distances_to_boxes(decode_distances(box), points, strides)  # (B, A, 4)
        best = cls.sigmoid().amax(1).argmax(1)  # (B,)
        for j in range(x.shape[0]):
            gt = torch.from_numpy(boxes_from_mask(masks[i + j, 0].numpy()))
            if len(gt):
                total += float(box_overlap(pred[j, best[j]][None], gt).max())
    return total / max(len(images), 1)


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, det_size: int) -> torch.Tensor:
    """Logits at the input size (B, 1, S, S) for [0, 1] images, as the exported graph computes them."""
    masks, _, _ = model(sam_input(images), det_input(images, det_size))
    return F.interpolate(masks, size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def val_dice(model, images: torch.Tensor, masks: torch.Tensor, det_size: int, batch: int = 16) -> float:
    model.eval()
    scores = []
    for i in range(0, len(images), batch):
        pred = predict_logits(model, images[i : i + batch].float() / 255.0, det_size) > 0
        t = masks[i : i + batch].bool()
        inter = (pred & t).flatten(1).sum(1).float()
        total = (pred.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
        scores.extend(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total)).tolist())
    return float(np.mean(scores)) if scores else 0.0


# --------------------------------------------------------------------------------------------------
# The phase loop
# --------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s"


def run_phase(
    phase: str,
    opts: TrainOptions,
    module: torch.nn.Module,
    params: List[torch.nn.Parameter],
    step_fn: Callable[[torch.Tensor, torch.Tensor, list], Tuple[torch.Tensor, Dict[str, float]]],
    val_fn: Callable[[], float],
    metric_name: str,
    batches: Batches,
    train_mode: Callable[[], None],
) -> dict:
    """Generic epoch loop with cosine LR, per-epoch checkpoints, resume and progress lines."""
    run_dir = opts.run_dir
    last_path, best_path = run_dir / f"{phase}-last.pt", run_dir / f"{phase}-best.pt"
    epochs = int(opts.epochs[phase])
    total_steps = epochs * batches.steps
    warmup = max(1, int(opts.warmup_fraction * total_steps))
    base_lr = float(opts.lr[phase])
    optim = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.01 if phase in ("encoder", "segment") else 5e-4)
    start_epoch, best, best_epoch, history, elapsed_before = 0, -1.0, -1, [], 0.0
    if opts.resume and last_path.exists():
        ck = torch.load(last_path)
        module.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        start_epoch, best, best_epoch, history, elapsed_before = ck["epoch"] + 1, ck["best"], ck["best_epoch"], ck["history"], ck["elapsed"]
        log(f"[{phase}] resumed from {last_path} after epoch {start_epoch}/{epochs} (best {metric_name} {best:.4f})")
    t0 = time.time()
    step = start_epoch * batches.steps
    for epoch in range(start_epoch, epochs):
        train_mode()
        losses = []
        for images, masks, boxes in batches.epoch(epoch):
            for g in optim.param_groups:
                g["lr"] = cosine_lr(step, total_steps, base_lr, warmup)
            loss, _ = step_fn(images, masks, boxes)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optim.step()
            losses.append(float(loss))
            step += 1
        metric = float(val_fn())
        elapsed = elapsed_before + time.time() - t0
        done = epoch + 1
        eta = (time.time() - t0) / (done - start_epoch) * (epochs - done)
        history.append({"epoch": done, "loss": float(np.mean(losses)) if losses else float("nan"), metric_name: metric, "elapsed_s": round(elapsed, 1)})
        improved = metric > best
        if improved:
            best, best_epoch = metric, done
            best_ck = {"model": module.state_dict(), "phase": phase, "epoch": done, "metric": {metric_name: metric}, "config": opts.config}
            if phase in ("encoder", "segment"):
                best_ck["prompts"] = {"dense": opts.use_dense_prompt, "sparse": opts.use_sparse_prompt, "box": opts.use_box_prompt}
            torch.save(best_ck, best_path)
        torch.save(
            {
                "model": module.state_dict(),
                "optimizer": optim.state_dict(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "history": history,
                "elapsed": elapsed,
                "options": asdict(opts),
            },
            last_path,
        )
        log(
            f"[{phase}] epoch {done}/{epochs} loss {history[-1]['loss']:.4f} val {metric_name} {metric:.4f}"
            f"{' *' if improved else ''} best {best:.4f}@{best_epoch} elapsed {fmt_s(elapsed)} eta {fmt_s(eta)}"
        )
    elapsed = elapsed_before + time.time() - t0
    return {
        "epochs": epochs,
        "steps_per_epoch": batches.steps,
        "batch_size": batches.batch_size,
        "seconds": round(elapsed, 1),
        "metric": metric_name,
        "best": best,
        "best_epoch": best_epoch,
        "history": history,
    }


def _freeze(module: torch.nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


def _load_best(run_dir: Path, phase: str) -> dict:
    path = run_dir / f"{phase}-best.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the {phase!r} phase first")
    return torch.load(path)


def _detector_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The detector's weights (`detector.*`, prefix removed) of an LDFSAM state dict."""
    return {k[len("detector."):]: v for k, v in state.items() if k.startswith("detector.")}


# --------------------------------------------------------------------------------------------------
# The phases: one function each, called by train() after seeding and with the phase's batches
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    """The cached training and validation tensors every phase reads (uint8 images, bool masks)."""

    images: torch.Tensor
    masks: torch.Tensor
    val_images: torch.Tensor
    val_masks: torch.Tensor
    cache_dir: Path
    augment: Optional[str]


def teacher_phase(opts: TrainOptions, cfg: LDFSAMConfig, data: TrainingData, batches: Batches) -> dict:
    """A larger YOLOv8 on tight boxes around the mask instances (detection loss)."""
    det_size = cfg.detector_size
    module = YOLOv8(scale=opts.teacher_scale, nc=cfg.num_classes, reg_max=cfg.reg_max)

    def step_fn(images, masks, boxes):
        _, (box, cls) = module(det_input(images, det_size))
        loss, parts, _ = detection_loss(box, cls, boxes, det_size)
        return loss, parts

    result = run_phase("teacher", opts, module, list(module.parameters()), step_fn,
                       lambda: top_box_iou(module, data.val_images, data.val_masks, det_size), "box_iou", batches, module.train)
    result["scale"] = opts.teacher_scale
    return result


def student_phase(opts: TrainOptions, cfg: LDFSAMConfig, data: TrainingData, batches: Batches) -> dict:
    """LDFSAM's detector, distilled from the frozen teacher (`opts.distill`); the whole LDFSAM state
    is checkpointed (only the detector changes here)."""
    det_size = cfg.detector_size
    model = build_ldfsam(cfg)
    detector = model.detector
    teacher = None
    if opts.distill != "none":
        tck = _load_best(opts.run_dir, "teacher")
        teacher = YOLOv8(scale=tck.get("scale", opts.teacher_scale), nc=cfg.num_classes, reg_max=cfg.reg_max)
        teacher.load_state_dict(tck["model"])
        _freeze(teacher)

    def step_fn(images, masks, boxes):
        x = det_input(images, det_size)
        _, (box, cls) = detector(x)
        loss, parts, asg = detection_loss(box, cls, boxes, det_size)
        t_out = None
        if teacher is not None:
            with torch.no_grad():
                _, t_out = teacher(x)
        distill = distillation_loss(opts.distill, (box, cls), t_out, asg)
        return loss + distill, {**parts, "distill": float(distill)}

    result = run_phase("student", opts, model, list(detector.parameters()), step_fn,
                       lambda: top_box_iou(detector, data.val_images, data.val_masks, det_size), "box_iou", batches, detector.train)
    result["distill"] = opts.distill
    return result


def _vit_model(phase: str, opts: TrainOptions, cfg: LDFSAMConfig) -> torch.nn.Module:
    """LDFSAM for the `encoder` or `segment` phase: the previous phase's best weights (or
    `opts.init[phase]`), the detector of `opts.detector_from` if given, the prompt settings, and what
    the phase does not train frozen."""
    model = build_ldfsam(cfg)
    previous = "student" if phase == "encoder" else "encoder"
    if phase in opts.init:
        model.load_state_dict(torch.load(opts.init[phase])["model"])
        log(f"[{phase}] starts from {opts.init[phase]}")
    else:
        model.load_state_dict(_load_best(opts.run_dir, previous)["model"])
    if opts.detector_from:
        detector_state = _detector_state(torch.load(opts.detector_from)["model"])
        if not detector_state:
            raise ValueError(f"{opts.detector_from} holds no LDFSAM detector (detector.* weights)")
        model.detector.load_state_dict(detector_state)
        log(f"[{phase}] detector from {opts.detector_from}")
    model.use_dense_prompt = opts.use_dense_prompt
    model.use_sparse_prompt = opts.use_sparse_prompt
    model.use_box_prompt = opts.use_box_prompt
    _freeze(model.detector)
    if phase == "segment":
        _freeze(model.image_encoder)
        if not opts.use_box_prompt:  # a box prompt needs its (never trained) corner embeddings
            _freeze(model.prompt_encoder)
        for block in model.image_encoder.blocks:
            for p in block.adapter.parameters():
                p.requires_grad_(True)
    return model


def vit_phase(phase: str, opts: TrainOptions, cfg: LDFSAMConfig, data: TrainingData, batches: Batches) -> dict:
    """`encoder` (everything but the detector) or `segment` (adapters, fusion, DFP, SFP, mask decoder)
    of the SAM-ViT configurations: Dice + BCE through the whole model with the detector frozen."""
    det_size = cfg.detector_size
    model = _vit_model(phase, opts, cfg)
    params = [p for p in model.parameters() if p.requires_grad]

    def train_mode():
        model.train()
        model.detector.eval()
        if phase == "segment":
            model.image_encoder.eval()  # no dropout or BN there; adapters still train
            if not opts.use_box_prompt:
                model.prompt_encoder.eval()

    def step_fn(images, masks, boxes):
        with torch.no_grad():
            p3, p4, p5 = model.detector.features(det_input(images, det_size))
        z_img = model.image_encoder(sam_input(images))
        fused = model.fusion(p3, p4, p5)
        z = model.dense_prompt(z_img, fused) if model.use_dense_prompt else z_img
        box_prompt = model.detector_box(p3, p4, p5, det_size) if model.use_box_prompt else None
        sparse, dense = model.prompt_encoder(images.shape[0], boxes=box_prompt)
        if model.use_sparse_prompt:
            sparse = torch.cat([sparse, model.sparse_prompt(fused)], dim=1)
        low, _ = model.mask_decoder(z, model.prompt_encoder.get_dense_pe(), sparse, dense, False)
        return dice_bce_loss(low, masks), {}

    result = run_phase(phase, opts, model, params, step_fn, lambda: val_dice(model, data.val_images, data.val_masks, det_size), "dice", batches, train_mode)
    result["trainable_params"] = sum(p.numel() for p in params)
    if phase in opts.init:
        result["init"] = str(opts.init[phase])
    if opts.detector_from:
        result["detector_from"] = str(opts.detector_from)
    result["prompts"] = {"dense": opts.use_dense_prompt, "sparse": opts.use_sparse_prompt, "box": opts.use_box_prompt}
    if phase == "segment":
        result["alpha"] = float(model.dense_prompt.alpha)
    return result


def lite_phase(phase: str, opts: TrainOptions, cfg: LDFSAMConfig, data: TrainingData, batches: Batches) -> dict:
    """The `segment` phase of the LiteMedSAM configurations (`lite.segment_phase`, which makes its own
    batches of cached embeddings); their encoder is pretrained, so they have no `encoder` phase."""
    if phase != "segment":
        raise ValueError(f"configuration {cfg.name}: LiteMedSAM's encoder is pretrained, so its phases are teacher, student, segment (not {phase!r})")
    from .lite import segment_phase

    source = torch.load(opts.detector_from)["model"] if opts.detector_from else _load_best(opts.run_dir, "student")["model"]
    tensors = (data.images, data.masks, data.val_images, data.val_masks)
    result = segment_phase(opts, cfg, _detector_state(source), tensors, data.cache_dir, run_phase, log)
    if opts.detector_from:
        result["detector_from"] = str(opts.detector_from)
    return result


def run_training_phase(phase: str, opts: TrainOptions, cfg: LDFSAMConfig, data: TrainingData, batches: Batches) -> dict:
    if phase == "teacher":
        return teacher_phase(opts, cfg, data, batches)
    if phase == "student":
        return student_phase(opts, cfg, data, batches)
    if cfg.encoder == "tinyvit":
        return lite_phase(phase, opts, cfg, data, batches)
    return vit_phase(phase, opts, cfg, data, batches)


# --------------------------------------------------------------------------------------------------
# The run: data, the phases in order, the summary
# --------------------------------------------------------------------------------------------------


def training_data(opts: TrainOptions, cfg: LDFSAMConfig, summary: dict) -> TrainingData:
    """The run's splits, limited and cached at the configuration's input size; their sizes go into
    `summary`."""
    t_data = time.time()
    cache = Path(opts.runs_dir) / "cache"
    splits = dataset_splits(opts.dataset, opts.data_root, opts.segment_number, cache, opts.fold)
    train_recs = splits["train"][: opts.limit_train] if opts.limit_train else splits["train"]
    val_recs = splits["val"][: opts.limit_val] if opts.limit_val else splits["val"]
    if not train_recs or not val_recs:
        raise ValueError(f"{opts.dataset}: the split left {len(train_recs)} training and {len(val_recs)} validation images "
                         f"({len(splits['test'])} test); the split is by subject (patient), so more subjects are needed")
    size = cfg.image_size
    tr_img, tr_mask = cached_tensors(train_recs, size, cache, opts.intensity, cfg.resize)
    va_img, va_mask = cached_tensors(val_recs, size, cache, opts.intensity, cfg.resize)
    augment = DATASET_AUGMENT.get(opts.dataset) if opts.augment == "auto" else opts.augment
    log(f"data: {opts.dataset} train {len(train_recs)} val {len(val_recs)} images at {size} ({time.time() - t_data:.1f}s), augmentation {augment}")
    split = SPLIT_DESCRIPTION + (f"; cross-validation fold {opts.fold} of the train + val subjects as val" if opts.fold else "")
    summary.update(dataset=opts.dataset, split=split, train_images=len(train_recs), val_images=len(val_recs),
                   test_images=len(splits["test"]), seed=opts.seed)
    return TrainingData(tr_img, tr_mask, va_img, va_mask, cache, augment)


def train(opts: TrainOptions) -> dict:
    """Runs the phases of `opts.phases` in order; each is seeded with `opts.seed` + its index in
    PHASES, and its result is written into `summary.json` as soon as it is done."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    run_dir = opts.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if (opts.resume and summary_path.exists()) else {}
    summary.setdefault("phases", {})
    summary["options"] = asdict(opts)
    cfg = get_config(opts.config)
    data = training_data(opts, cfg, summary)

    for phase_index, phase in enumerate(PHASES):
        if phase not in opts.phases:
            continue
        previous_run = summary["phases"].get(phase, {})
        if opts.resume and previous_run.get("done") and previous_run.get("epochs", 0) >= opts.epochs[phase]:
            log(f"[{phase}] already complete (resume): skipped")
            continue
        seed_everything(opts.seed + phase_index)
        batches = Batches(data.images, data.masks, opts.batch_size, opts.seed + phase_index, data.augment, opts.steps_per_epoch.get(phase))
        log(f"[{phase}] {opts.epochs[phase]} epochs x {batches.steps} steps of {opts.batch_size}, lr {opts.lr[phase]}")
        result = run_training_phase(phase, opts, cfg, data, batches)
        result["done"] = True
        summary["phases"][phase] = result
        summary["total_seconds"] = round(sum(p["seconds"] for p in summary["phases"].values()), 1)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        log(f"[{phase}] done in {fmt_s(result['seconds'])}: best val {result['metric']} {result['best']:.4f} at epoch {result['best_epoch']}")

    final = {
        "run": str(run_dir),
        "dataset": opts.dataset,
        "seed": opts.seed,
        "phases": {k: {key: v[key] for key in ("epochs", "seconds", "best", "metric", "best_epoch")} for k, v in summary["phases"].items()},
        "total_seconds": summary.get("total_seconds", 0.0),
    }
    print(json.dumps(final, indent=2), flush=True)
    return summary


def final_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run ships: the best of the last segmentation phase it completed."""
    for phase in ("segment", "encoder"):
        p = Path(run_dir) / f"{phase}-best.pt"
        if p.exists():
            return p
    raise FileNotFoundError(f"no segment-best.pt or encoder-best.pt in {run_dir}")
