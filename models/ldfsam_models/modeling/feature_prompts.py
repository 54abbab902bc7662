"""LDFSAM's prompt branch on top of the detector's P3/P4/P5: fusion, Dense and Sparse Feature Prompts."""
import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .yolo import Conv


class FeatureFusion(nn.Module):
    """Upsample P4 and P5 to P3's grid, concatenate, then a 1x1 and a 3x3 Conv-BN-SiLU: F_fused (stride 8)."""

    def __init__(self, *, in_channels, out_channels: int) -> None:
        super().__init__()
        self.reduce = Conv(sum(in_channels), out_channels, 1)
        self.mix = Conv(out_channels, out_channels, 3)

    def forward(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> torch.Tensor:
        p4 = F.interpolate(p4, scale_factor=2.0, mode="nearest")
        p5 = F.interpolate(p5, scale_factor=4.0, mode="nearest")
        return self.mix(self.reduce(torch.cat([p3, p4, p5], dim=1)))


class DenseFeaturePrompt(nn.Module):
    """A strided conv head from F_fused onto the image embedding's grid and channels, added with a
    learnable gate: Z_cond = Z_img + alpha * P_dense, alpha = 0 at start (the SAM embedding is untouched)."""

    def __init__(self, *, in_channels: int, embed_dim: int, stride: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            Conv(in_channels, in_channels, 3),
            nn.Conv2d(in_channels, embed_dim, kernel_size=stride, stride=stride),
        )
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, image_embedding: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return image_embedding + self.alpha * self.head(fused)


class SparseFeaturePrompt(nn.Module):
    """GAP(F_fused) -> MLP -> K tokens of the decoder's width, concatenated with its prompt tokens."""

    def __init__(self, *, in_channels: int, embed_dim: int, num_tokens: int = 4) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.embed_dim = embed_dim
        self.mlp = MLP(input_dim=in_channels, hidden_dim=embed_dim, output_dim=num_tokens * embed_dim, num_layers=2)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        pooled = fused.mean(dim=(2, 3))
        return self.mlp(pooled).view(-1, self.num_tokens, self.embed_dim)
