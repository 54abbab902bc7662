"""Parameter and FLOP counts per part of the network (torch 1.13 has no FlopCounterMode).

FLOPs = 2 x multiply-accumulates of convolutions, transposed convolutions, linear layers and the
attention products (q.k, attention.v, relative positions), counted for one slice; element-wise
operations, norms and softmax are left out, as the published YOLO and SAM figures do.
"""
from typing import Dict

import torch
from torch import nn

from .configs import LDFSAMConfig, build_model
from .inputs import model_inputs
from .modeling.image_encoder import Attention as EncoderAttention
from .modeling.tiny_vit import WindowAttention
from .modeling.transformer import Attention as DecoderAttention

PARTS = ("image_encoder", "detector_backbone_neck", "detector_head", "fusion", "dense_prompt", "sparse_prompt", "prompt_encoder", "mask_decoder")


def _part_of(name: str) -> str:
    if name.startswith("detector.model.22"):
        return "detector_head"
    if name.startswith("detector"):
        return "detector_backbone_neck"
    return name.split(".")[0]


def count_params(model: nn.Module) -> Dict[str, int]:
    counts = {p: 0 for p in PARTS}
    for name, param in model.named_parameters():
        counts[_part_of(name)] += param.numel()
    return counts


@torch.no_grad()
def count_flops(config: LDFSAMConfig, model: nn.Module = None) -> Dict[str, int]:
    model = (model or build_model(config)).eval()
    counts = {p: 0 for p in PARTS}
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                macs = output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            elif isinstance(module, nn.ConvTranspose2d):
                macs = inputs[0].numel() * (module.out_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            else:
                macs = output.numel() * module.in_features
            counts[_part_of(name)] += 2 * macs

        return fn

    attentions = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
        elif isinstance(module, (EncoderAttention, DecoderAttention, WindowAttention)):
            attentions.append((name, module))
    try:
        sam, det = model_inputs(torch.zeros(1, 3, config.image_size, config.image_size), config)
        if config.detector:
            model(sam, det, with_detections=True)
        else:  # SAM alone: one box prompt
            model(sam, boxes=torch.tensor([[0.0, 0.0, config.image_size / 2, config.image_size / 2]]))
    finally:
        for h in hooks:
            h.remove()
    for name, module in attentions:
        counts[_part_of(name)] += module.flops
    return counts


def summary(config: LDFSAMConfig) -> Dict[str, Dict[str, float]]:
    model = build_model(config)
    params = count_params(model)
    flops = count_flops(config, model)
    rows = {p: {"params_m": params[p] / 1e6, "gflops": flops[p] / 1e9} for p in PARTS}
    branch = ("detector_backbone_neck", "fusion", "dense_prompt", "sparse_prompt")
    rows["prompt_branch"] = {"params_m": sum(params[p] for p in branch) / 1e6, "gflops": sum(flops[p] for p in branch) / 1e9}
    rows["total"] = {"params_m": sum(params.values()) / 1e6, "gflops": sum(flops.values()) / 1e9}
    # What one segmented slice costs: the detect head only serves training (distillation), unless its
    # top box is the prompt (box_prompt, the lite configuration).
    head = (0, 0) if config.box_prompt else (params["detector_head"], flops["detector_head"])
    rows["inference"] = {"params_m": (sum(params.values()) - head[0]) / 1e6, "gflops": (sum(flops.values()) - head[1]) / 1e9}
    return rows
