"""TinyViT image encoder in LiteMedSAM's layout (MobileSAM's TinyViT-5M with LiteMedSAM's changes).

State-dict compatible with LiteMedSAM's `image_encoder.*` tensors (`patch_embed.seq.0.c`,
`layers.i.blocks.j.attn.qkv`, `layers.i.downsample.conv2`, `neck.0` ...), so its pretrained weights
load by name. What differs from the reference implementation, and why:

- Every layer is built for the input size it is given (`img_size`): the reference reshapes the last
  stage to a hard-coded 64x64 grid, so only 256x256 inputs work. Here the grid is img_size / 4, and
  window sizes (hence every weight) stay the same at any size that is a multiple of 4.
- Every reshape keeps the batch axis free (-1): a traced batch size made the reference's ONNX export
  fail at batch > 1.
- An optional bottleneck adapter after each attention (`adapter_ratio` > 0), with its up-projection
  at zero, so a loaded encoder computes exactly what LiteMedSAM computes until the adapter trains.

Layout (LiteMedSAM): a 1x1-conv patch embedding at stride 1, stage 0 = MBConv blocks at full input
resolution, then patch merging (stride 2, 2, and 1 into the last stage), windowed attention stages
with attention biases per relative offset and a depth-wise local conv, and SAM's neck to 256 channels.
"""
import itertools
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .image_encoder import Adapter


class Conv2dBN(nn.Sequential):
    """Conv (no bias) + BatchNorm, named `c` and `bn` as in the checkpoints."""

    def __init__(self, *, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans))


class PatchEmbed(nn.Module):
    """LiteMedSAM's stem: two 1x1 Conv-BN at stride 1 (MobileSAM's has two 3x3 at stride 2)."""

    def __init__(self, *, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans=in_chans, out_chans=embed_dim // 2), nn.GELU(), Conv2dBN(in_chans=embed_dim // 2, out_chans=embed_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depth-wise, 1x1 project, residual, GELU."""

    def __init__(self, *, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(in_chans=dim, out_chans=hidden)
        self.conv2 = Conv2dBN(in_chans=hidden, out_chans=hidden, kernel=3, groups=hidden)
        self.conv3 = Conv2dBN(in_chans=hidden, out_chans=dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        return self.act(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1 conv to the next width, 3x3 depth-wise conv at `stride`, 1x1 conv; (B, C, H, W) in and out."""

    def __init__(self, *, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(in_chans=dim, out_chans=out_dim)
        self.conv2 = Conv2dBN(in_chans=out_dim, out_chans=out_dim, kernel=3, stride=stride, groups=out_dim)
        self.conv3 = Conv2dBN(in_chans=out_dim, out_chans=out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head attention inside a window of w x w tokens, with a learned bias per head and per
    relative offset (|dy|, |dx|) (LeViT style): w * w biases per head, whatever the input size."""

    def __init__(self, *, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict = {}
        index = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets)) for a in points for b in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(index).view(len(points), len(points)), persistent=False)
        self.flops = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B*, N, C)
        n = x.shape[1]
        qkv = self.qkv(self.norm(x)).view(-1, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, self.num_heads * self.head_dim)
        self.flops = 2 * 2 * x.shape[0] * self.num_heads * n * n * self.head_dim
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, *, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows), [adapter], 3x3 depth-wise conv, MLP; the
    token grid `resolution` is fixed at build time so that every reshape is static but the batch."""

    def __init__(self, *, dim: int, num_heads: int, window: int, resolution: Tuple[int, int], mlp_ratio: float, adapter_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.resolution = resolution
        self.attn = WindowAttention(dim=dim, num_heads=num_heads, window=window)
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(in_chans=dim, out_chans=dim, kernel=3, groups=dim)
        self.adapter = Adapter(dim=dim, ratio=adapter_ratio) if adapter_ratio > 0 else None

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        c, s = x.shape[-1], self.window
        if h == s and w == s:
            return self.attn(x)
        x = x.view(-1, h, w, c)
        pad_b, pad_r = (s - h % s) % s, (s - w % s) % s
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        x = x.view(-1, ph // s, s, pw // s, s, c).transpose(2, 3).reshape(-1, s * s, c)
        x = self.attn(x)
        x = x.view(-1, ph // s, pw // s, s, s, c).transpose(2, 3).reshape(-1, ph, pw, c)
        return x[:, :h, :w].reshape(-1, h * w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H*W, C)
        h, w = self.resolution
        c = x.shape[-1]
        x = x + self._windowed(x)
        if self.adapter is not None:
            x = self.adapter(x)
        x = self.local_conv(x.transpose(1, 2).reshape(-1, c, h, w)).reshape(-1, c, h * w).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on (B, C, H, W), then patch merging."""

    def __init__(self, *, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim=dim, expand_ratio=expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """An attention stage on tokens (B, H*W, C), then patch merging (not after the last stage)."""

    def __init__(self, *, blocks: Sequence[TinyViTBlock], downsample: "PatchMerging | None") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is None:
            return x
        h, w = self.blocks[-1].resolution
        x = self.downsample(x.transpose(1, 2).reshape(-1, x.shape[-1], h, w))
        return x.flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    """(B, 3, S, S) in [0, 1] -> image embedding (B, 256, S/4, S/4); S a multiple of 4."""

    def __init__(
        self,
        *,
        img_size: int = 256,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        out_chans: int = 256,
        adapter_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if img_size % 4:
            raise ValueError(f"TinyViT input size {img_size} is not a multiple of 4")
        self.img_size = img_size
        self.grid = img_size // 4
        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dims[0])
        # Stage i runs at img_size / 2**i, except the last, which keeps the third stage's grid.
        sizes = [img_size, img_size // 2, img_size // 4, img_size // 4]
        layers = []
        for i, dim in enumerate(embed_dims):
            last = i == len(embed_dims) - 1
            merge = None if last else PatchMerging(dim=dim, out_dim=embed_dims[i + 1], stride=sizes[i] // sizes[i + 1])
            if i == 0:
                layers.append(ConvLayer(dim=dim, depth=depths[0], expand_ratio=mbconv_expand_ratio, downsample=merge))
                continue
            blocks = [
                TinyViTBlock(
                    dim=dim, num_heads=num_heads[i], window=window_sizes[i], resolution=(sizes[i], sizes[i]), mlp_ratio=mlp_ratio, adapter_ratio=adapter_ratio
                )
                for _ in range(depths[i])
            ]
            layers.append(BasicLayer(blocks=blocks, downsample=merge))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[0](self.patch_embed(x)).flatten(2).transpose(1, 2)
        for layer in self.layers[1:]:
            x = layer(x)
        return self.neck(x.transpose(1, 2).reshape(-1, x.shape[-1], self.grid, self.grid))
