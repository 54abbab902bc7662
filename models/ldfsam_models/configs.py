"""Named LDFSAM configurations and their builder (a registry, as segment-anything's build_sam)."""
from dataclasses import asdict, dataclass, field
from typing import Dict, Tuple

from .modeling.feature_prompts import DenseFeaturePrompt, FeatureFusion, SparseFeaturePrompt
from .modeling.image_encoder import ImageEncoderViT
from .modeling.ldfsam import LDFSAM
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.transformer import TwoWayTransformer
from .modeling.yolo import YOLOv8


@dataclass(frozen=True)
class LDFSAMConfig:
    name: str
    image_size: int = 256  # SAM encoder input (SAM-Med2D: 256)
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    # SAM uses 14x14 windows at 1024 (64x64 tokens). At 256 the grid is 16x16: 14x14 windows would pad
    # it to 28x28 and triple the tokens of 8 of the 12 blocks (70 instead of 50 GFLOPs) for nothing,
    # so one 16x16 window covers it; the checkpoint loader resizes SAM's window position tables.
    window_size: int = 16
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)
    adapter_ratio: float = 0.125
    prompt_dim: int = 256  # SAM's embedding/decoder width
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    detector_scale: str = "n"
    detector_size: int = 640  # YOLO input (the paper: 640x640)
    num_classes: int = 1
    reg_max: int = 16
    fused_channels: int = 128
    num_sparse_tokens: int = 4
    notes: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["global_attn_indexes"] = list(self.global_attn_indexes)
        return d


CONFIGS: Dict[str, LDFSAMConfig] = {
    # The paper's model: SAM ViT-B at 256x256 (SAM-Med2D), YOLOv8n at 640x640, K = 4.
    "full": LDFSAMConfig(name="full"),
    # Small enough to train on 2 CPU cores: a 6-block ViT of width 192, YOLOv8n at 256x256.
    "tiny": LDFSAMConfig(
        name="tiny",
        embed_dim=192,
        depth=6,
        num_heads=3,
        window_size=8,
        global_attn_indexes=(2, 5),
        adapter_ratio=0.25,
        decoder_mlp_dim=1024,
        detector_size=256,
        fused_channels=64,
    ),
}


def get_config(name: str) -> LDFSAMConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}") from None


def build_ldfsam(config: LDFSAMConfig) -> LDFSAM:
    grid = config.grid
    p3_grid = config.detector_size // 8
    if p3_grid % grid:
        raise ValueError(f"P3 grid {p3_grid} is not a multiple of the embedding grid {grid}: pick detector_size = 128 * k")
    detector = YOLOv8(scale=config.detector_scale, nc=config.num_classes, reg_max=config.reg_max)
    return LDFSAM(
        image_encoder=ImageEncoderViT(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            out_chans=config.prompt_dim,
            window_size=config.window_size,
            global_attn_indexes=config.global_attn_indexes,
            adapter_ratio=config.adapter_ratio,
        ),
        prompt_encoder=PromptEncoder(embed_dim=config.prompt_dim, image_embedding_size=(grid, grid), input_image_size=(config.image_size, config.image_size)),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_dim,
            transformer=TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim, num_heads=8, mlp_dim=config.decoder_mlp_dim),
        ),
        detector=detector,
        fusion=FeatureFusion(in_channels=detector.channels, out_channels=config.fused_channels),
        dense_prompt=DenseFeaturePrompt(in_channels=config.fused_channels, embed_dim=config.prompt_dim, stride=p3_grid // grid),
        sparse_prompt=SparseFeaturePrompt(in_channels=config.fused_channels, embed_dim=config.prompt_dim, num_tokens=config.num_sparse_tokens),
    )
