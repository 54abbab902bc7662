"""A YOLOv8-style detector: backbone + PAN neck giving P3/P4/P5 (strides 8/16/32) and a DFL detect head.

Written from the published architecture (Conv-BN-SiLU, C2f, SPPF, PAN top-down and bottom-up, an
anchor-free head predicting each box edge as a distribution over `reg_max` bins). Layers live in
`self.model` with the indices of the public YOLOv8 checkpoints (`model.0` ... `model.22`, e.g.
`model.2.m.0.cv1.conv.weight`, `model.22.cv2.0.2.weight`, `model.22.dfl.conv.weight`), so a YOLOv8
state dict loads by name.
"""
import math
from typing import List, Tuple

import torch
from torch import nn

# (width multiple, depth multiple, max channels) of the public scales.
SCALES = {
    "n": (0.25, 0.33, 1024),
    "s": (0.50, 0.33, 1024),
    "m": (0.75, 0.67, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.25, 1.00, 512),
}


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c2, 3)
        self.cv2 = Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """Split the 1x1 projection in two, run n bottlenecks on one half, concatenate every output."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools, concatenated."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class DFL(nn.Module):
    """Expected value of each edge's distribution over `reg_max` bins (a fixed 1x1 conv)."""

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(reg_max, dtype=torch.float).view(1, reg_max, 1, 1)
        self.reg_max = reg_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # x: B, 4*reg_max, anchors
        return self.conv(x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class Detect(nn.Module):
    """Anchor-free head: per level a box branch (4 x reg_max logits) and a class branch."""

    def __init__(self, nc: int, ch: Tuple[int, int, int], reg_max: int = 16, strides=(8, 16, 32)) -> None:
        super().__init__()
        self.nc = nc
        self.reg_max = reg_max
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float), persistent=False)
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max)
        for conv, s in zip(self.cv3, strides):  # class prior: ~0.01 objects per 640x640 cell grid
            conv[-1].bias.data[:] = math.log(5 / nc / (640 / s) ** 2)

    def forward(self, feats: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs, concatenated over levels: box logits (B, 4*reg_max, A), class logits (B, nc, A)."""
        b = feats[0].shape[0]
        box = torch.cat([self.cv2[i](f).view(b, 4 * self.reg_max, -1) for i, f in enumerate(feats)], 2)
        cls = torch.cat([self.cv3[i](f).view(b, self.nc, -1) for i, f in enumerate(feats)], 2)
        return box, cls


class YOLOv8(nn.Module):
    """Backbone + neck + detect head at one of the public scales (n, s, m, l, x)."""

    def __init__(self, *, scale: str = "n", nc: int = 1, reg_max: int = 16) -> None:
        super().__init__()
        width, depth, max_ch = SCALES[scale]
        ch = lambda c: make_divisible(min(c, max_ch) * width, 8)  # noqa: E731
        n = lambda k: max(round(k * depth), 1)  # noqa: E731
        self.scale = scale
        self.channels = (ch(256), ch(512), ch(1024))  # P3, P4, P5
        layers = [
            Conv(3, ch(64), 3, 2),  # 0  P1/2
            Conv(ch(64), ch(128), 3, 2),  # 1  P2/4
            C2f(ch(128), ch(128), n(3), True),  # 2
            Conv(ch(128), ch(256), 3, 2),  # 3  P3/8
            C2f(ch(256), ch(256), n(6), True),  # 4
            Conv(ch(256), ch(512), 3, 2),  # 5  P4/16
            C2f(ch(512), ch(512), n(6), True),  # 6
            Conv(ch(512), ch(1024), 3, 2),  # 7  P5/32
            C2f(ch(1024), ch(1024), n(3), True),  # 8
            SPPF(ch(1024), ch(1024), 5),  # 9
            nn.Upsample(scale_factor=2, mode="nearest"),  # 10
            nn.Identity(),  # 11 concat(10, 6)
            C2f(ch(1024) + ch(512), ch(512), n(3)),  # 12
            nn.Upsample(scale_factor=2, mode="nearest"),  # 13
            nn.Identity(),  # 14 concat(13, 4)
            C2f(ch(512) + ch(256), ch(256), n(3)),  # 15 P3 out
            Conv(ch(256), ch(256), 3, 2),  # 16
            nn.Identity(),  # 17 concat(16, 12)
            C2f(ch(256) + ch(512), ch(512), n(3)),  # 18 P4 out
            Conv(ch(512), ch(512), 3, 2),  # 19
            nn.Identity(),  # 20 concat(19, 9)
            C2f(ch(512) + ch(1024), ch(1024), n(3)),  # 21 P5 out
            Detect(nc, self.channels, reg_max),  # 22
        ]
        self.model = nn.ModuleList(layers)

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P3, P4, P5 of the PAN neck."""
        m = self.model
        x = m[1](m[0](x))
        x = m[2](x)
        p3b = m[4](m[3](x))
        p4b = m[6](m[5](p3b))
        p5b = m[9](m[8](m[7](p4b)))
        h12 = m[12](torch.cat((m[10](p5b), p4b), 1))
        p3 = m[15](torch.cat((m[13](h12), p3b), 1))
        p4 = m[18](torch.cat((m[16](p3), h12), 1))
        p5 = m[21](torch.cat((m[19](p4), p5b), 1))
        return p3, p4, p5

    def forward(self, x: torch.Tensor):
        feats = self.features(x)
        return feats, self.model[22](list(feats))
