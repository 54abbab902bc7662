"""What the network's parts take, made from the graph's input (B, 3, S, S) in [0, 1], in one place for
training, export and measurement: the encoder's input (resized to its side, normalised as it was
pretrained) and the detector's (resized to its side). Resizes use static scale factors (ONNX keeps
every shape static); bilinear with half-pixel centres, no antialiasing, as the server resizes."""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

from .configs import LDFSAMConfig

# SAM's normalisation, in 0-255 units.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def fitted_size(rows: int, columns: int, size: int, fit: str = "stretch") -> Tuple[int, int]:
    """The rows x columns of the size x size input a slice fills: all of it ("stretch"), or its aspect
    kept ("longest-side-pad": the longest side to `size`, the other rounded half up, as the server's
    fittedSize computes it)."""
    if fit == "stretch":
        return size, size
    if fit != "longest-side-pad":
        raise ValueError(f"unknown fit {fit!r}; known: stretch, longest-side-pad")
    longest = max(rows, columns)
    return int(math.floor(rows * size / longest + 0.5)), int(math.floor(columns * size / longest + 0.5))


def _resize(image: torch.Tensor, source: int, side: int) -> torch.Tensor:
    # The sizes come from the configuration, not the tensor: a traced shape would make the scale a
    # tensor, which the exporter refuses.
    if source == side:
        return image
    return F.interpolate(image, scale_factor=side / source, mode="bilinear", align_corners=False)


def encoder_input(image: torch.Tensor, config: LDFSAMConfig) -> torch.Tensor:
    x = _resize(image, config.image_size, config.encoder_input)
    if config.normalisation == "unit":
        return x
    mean = torch.tensor(PIXEL_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * 255.0 - mean) / std


def detector_input(image: torch.Tensor, config: LDFSAMConfig) -> torch.Tensor:
    return _resize(image, config.image_size, config.detector_size)


def model_inputs(image: torch.Tensor, config: LDFSAMConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    return encoder_input(image, config), detector_input(image, config)
