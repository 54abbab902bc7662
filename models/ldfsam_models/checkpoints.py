"""Loading official checkpoints by name mapping: SAM ViT-B / SAM-Med2D `.pth` and YOLOv8 state dicts.

Every load returns a report (loaded, resized, missing, unexpected, skipped). Shapes must match,
except where a resize is the documented intent: SAM's absolute position grid (64x64 at 1024 input)
is interpolated to this model's grid and relative-position tables to its window; a detector class
branch trained for another number of classes is skipped (and reported), as fine-tuning a
pretrained detector to one class needs. Any other shape difference
is refused with the list of offending tensors, never loaded silently wrong.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LoadReport:
    loaded: List[str] = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)}, resized {len(self.resized)}, skipped {len(self.skipped)}, "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}"
        )


class CheckpointMismatch(ValueError):
    pass


def unwrap_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """State dicts arrive bare, or under 'model' / 'state_dict' (SAM-Med2D, training scripts)."""
    if isinstance(checkpoint, Mapping):
        for key in ("model", "state_dict"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping):
                return dict(inner)
            if isinstance(inner, nn.Module):
                return inner.state_dict()
        return dict(checkpoint)
    if isinstance(checkpoint, nn.Module):
        return checkpoint.state_dict()
    raise CheckpointMismatch(f"not a state dict: {type(checkpoint).__name__}")


def _resize_pos_embed(t: torch.Tensor, shape) -> torch.Tensor:
    # (1, H, W, C) -> (1, h, w, C), bicubic over the grid
    x = t.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(shape[1], shape[2]), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(t.dtype)


def _resize_rel_pos(t: torch.Tensor, shape) -> torch.Tensor:
    # (L, C) -> (l, C), linear along the offsets
    return F.interpolate(t.t()[None].float(), size=shape[0], mode="linear", align_corners=False)[0].t().to(t.dtype)


def load_mapped(model: nn.Module, mapped: Dict[str, torch.Tensor], prefixes, resizable, skippable) -> LoadReport:
    """`mapped` (keys already named as the model's) into `model`: a tensor of another shape is resized
    where `resizable` says, skipped where `skippable` says, and refused otherwise (CheckpointMismatch);
    the model's keys under `prefixes` that nothing filled are reported missing."""
    own = model.state_dict()
    report = LoadReport()
    new_state = {}
    wrong = []
    for key, tensor in mapped.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key].shape
        if tensor.shape == target:
            new_state[key] = tensor
            report.loaded.append(key)
        elif any(r(key) for r in resizable) and tensor.dim() == len(target):
            resize = _resize_pos_embed if key.endswith("pos_embed") else _resize_rel_pos
            new_state[key] = resize(tensor, target)
            report.resized.append(f"{key}: {tuple(tensor.shape)} -> {tuple(target)}")
        elif any(s(key) for s in skippable):
            report.skipped.append(f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(target)}")
        else:
            wrong.append(f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(target)}")
    if wrong:
        raise CheckpointMismatch("checkpoint tensors do not fit this configuration:\n  " + "\n  ".join(wrong))
    skipped = {s.split(":")[0] for s in report.skipped}
    report.missing = [k for k in own if k.startswith(prefixes) and k not in new_state and k not in skipped and not k.endswith("num_batches_tracked")]
    model.load_state_dict(new_state, strict=False)
    return report


def load_sam_checkpoint(model: nn.Module, checkpoint) -> LoadReport:
    """SAM (`sam_vit_b_01ec64.pth`) or SAM-Med2D weights into an LDFSAM model. SAM-Med2D's own
    adapters (`blocks.i.Adapter.*`) have another structure: they are reported as unexpected and our
    adapters keep their identity initialisation."""
    state = unwrap_state_dict(checkpoint)
    mapped = {k: v for k, v in state.items() if k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder."))}
    report = load_mapped(
        model,
        mapped,
        prefixes=("image_encoder.", "prompt_encoder.", "mask_decoder."),
        resizable=[lambda k: k == "image_encoder.pos_embed", lambda k: ".attn.rel_pos_" in k],
        skippable=[],
    )
    report.unexpected += [k for k in state if k not in mapped]
    return report


def load_yolo_checkpoint(model: nn.Module, checkpoint) -> LoadReport:
    """A YOLOv8 state dict (`model.N...` keys, as `torch.save(yolo.model.state_dict())` writes; the
    pickled ultralytics model object needs ultralytics to unpickle: save its state_dict first) into
    the detector of an LDFSAM model, or into a bare YOLOv8 module."""
    state = unwrap_state_dict(checkpoint)
    target_prefix = "detector." if hasattr(model, "detector") else ""
    mapped = {}
    for k, v in state.items():
        key = k[len("model.model.") - len("model.") :] if k.startswith("model.model.") else k
        if key.startswith("model."):
            mapped[target_prefix + key] = v
    return load_mapped(
        model,
        mapped,
        prefixes=(target_prefix + "model.",),
        resizable=[],
        # The class branch's widths depend on the number of classes (max(P3 width, min(nc, 100))).
        skippable=[lambda k: ".model.22.cv3." in f".{k}"],
    )
