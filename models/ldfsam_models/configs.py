"""Named LDFSAM configurations and their builder (a registry, as segment-anything's build_sam)."""
from dataclasses import asdict, dataclass, field
from typing import Dict, Tuple

from torch import nn

from .modeling.feature_prompts import DenseFeaturePrompt, FeatureFusion, SparseFeaturePrompt
from .modeling.image_encoder import ImageEncoderViT
from .modeling.ldfsam import LDFSAM, PromptableSAM
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.tiny_vit import TinyViT
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
    # The image encoder: "vit" (SAM's ViT with adapters, above) or "tinyvit" (LiteMedSAM's TinyViT,
    # its layout fixed in modeling/tiny_vit.py; `adapter_ratio` 0 leaves it exactly LiteMedSAM).
    encoder: str = "vit"
    # The encoder's input side when it differs from `image_size` (the graph's input and the frame of
    # box/point prompts): the image is resized to it inside the graph. lite: 128, a quarter of the
    # FLOPs of LiteMedSAM's 256.
    encoder_size: int = 0
    # The mask decoder's embedding grid when it differs from the encoder's (the encoder's output,
    # after the Dense Feature Prompt, is upsampled to it): LiteMedSAM's decoder works on 64x64.
    embedding_grid: int = 0
    # Pixel values into the encoder: "sam" (SAM's mean/std of 0-255 values) or "unit" ([0, 1] as is,
    # LiteMedSAM).
    normalisation: str = "sam"
    # How the server fits a slice into image_size x image_size: "stretch" (both axes) or
    # "longest-side-pad" (aspect kept, longest side to image_size, zeros right and bottom; LiteMedSAM).
    resize: str = "stretch"
    # The detector's top box enters SAM's prompt encoder as a box prompt (the lite models: LiteMedSAM
    # was trained with boxes), beside the Dense and Sparse Feature Prompts.
    box_prompt: bool = False
    # False: SAM alone (encoder, prompt encoder, decoder), promptable only (medsam-lite).
    detector: bool = True
    notes: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def encoder_input(self) -> int:
        return self.encoder_size or self.image_size

    @property
    def encoder_grid(self) -> int:
        return self.encoder_input // (4 if self.encoder == "tinyvit" else self.patch_size)

    @property
    def grid(self) -> int:
        """The mask decoder's embedding grid (its low-resolution masks are 4x this)."""
        return self.embedding_grid or self.encoder_grid

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
    # LDFSAM on LiteMedSAM (TinyViT, SAM's prompt encoder and decoder, pretrained on ~1.5 M medical
    # image-mask pairs): the encoder at 128x128 (20.5 of LiteMedSAM's 75 GFLOPs), the decoder on its
    # 32x32 grid (upsampling to LiteMedSAM's 64x64 would cost the decoder 3.7 instead of 0.9 GFLOPs
    # and the model 25.2 GFLOPs in all, over the 25 an automatic model may cost); YOLOv8n at 256 gives
    # the box prompt and the feature prompts; aspect kept, as LiteMedSAM was trained.
    "lite": LDFSAMConfig(
        name="lite",
        encoder="tinyvit",
        encoder_size=128,
        adapter_ratio=0.0,  # the encoder is frozen: LiteMedSAM's as it is
        detector_size=256,
        fused_channels=64,
        normalisation="unit",
        resize="longest-side-pad",
        box_prompt=True,
    ),
    # lite with a bottleneck adapter after each attention of the encoder (the encoder fine-tuned
    # through its adapters, an ablation: LiteMedSAM's weights stay, the adapters start at identity).
    "lite-adapters": LDFSAMConfig(
        name="lite-adapters",
        encoder="tinyvit",
        encoder_size=128,
        adapter_ratio=0.25,
        detector_size=256,
        fused_channels=64,
        normalisation="unit",
        resize="longest-side-pad",
        box_prompt=True,
    ),
    # LiteMedSAM itself at its full 256 input, promptable only: interactive use on every modality.
    "medsam-lite": LDFSAMConfig(
        name="medsam-lite",
        encoder="tinyvit",
        adapter_ratio=0.0,
        normalisation="unit",
        resize="longest-side-pad",
        detector=False,
    ),
}


def get_config(name: str) -> LDFSAMConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}") from None


def _image_encoder(config: LDFSAMConfig) -> nn.Module:
    if config.encoder == "tinyvit":
        return TinyViT(img_size=config.encoder_input, out_chans=config.prompt_dim, adapter_ratio=config.adapter_ratio)
    if config.encoder != "vit":
        raise ValueError(f"unknown encoder {config.encoder!r}; known: vit, tinyvit")
    return ImageEncoderViT(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        out_chans=config.prompt_dim,
        window_size=config.window_size,
        global_attn_indexes=config.global_attn_indexes,
        adapter_ratio=config.adapter_ratio,
    )


def _sam_parts(config: LDFSAMConfig) -> dict:
    grid = config.grid
    if grid % config.encoder_grid:
        raise ValueError(f"embedding grid {grid} is not a multiple of the encoder's {config.encoder_grid}")
    return dict(
        image_encoder=_image_encoder(config),
        prompt_encoder=PromptEncoder(embed_dim=config.prompt_dim, image_embedding_size=(grid, grid), input_image_size=(config.image_size, config.image_size)),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_dim,
            transformer=TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim, num_heads=8, mlp_dim=config.decoder_mlp_dim),
        ),
    )


def build_promptable_sam(config: LDFSAMConfig) -> PromptableSAM:
    """SAM's three parts alone (a configuration with `detector=False`, e.g. medsam-lite)."""
    return PromptableSAM(**_sam_parts(config))


def build_ldfsam(config: LDFSAMConfig) -> LDFSAM:
    if not config.detector:
        raise ValueError(f"configuration {config.name!r} has no prompt generator: build it with build_promptable_sam")
    enc_grid = config.encoder_grid
    p3_grid = config.detector_size // 8
    if p3_grid % enc_grid:
        raise ValueError(f"P3 grid {p3_grid} is not a multiple of the encoder's grid {enc_grid}: pick detector_size = 8 * grid * k")
    detector = YOLOv8(scale=config.detector_scale, nc=config.num_classes, reg_max=config.reg_max)
    model = LDFSAM(
        **_sam_parts(config),
        detector=detector,
        fusion=FeatureFusion(in_channels=detector.channels, out_channels=config.fused_channels),
        dense_prompt=DenseFeaturePrompt(in_channels=config.fused_channels, embed_dim=config.prompt_dim, stride=p3_grid // enc_grid),
        sparse_prompt=SparseFeaturePrompt(in_channels=config.fused_channels, embed_dim=config.prompt_dim, num_tokens=config.num_sparse_tokens),
        embedding_scale=config.grid // enc_grid,
    )
    model.use_box_prompt = config.box_prompt
    return model


def build_model(config: LDFSAMConfig) -> nn.Module:
    """LDFSAM, or SAM alone for a configuration without a prompt generator."""
    return build_ldfsam(config) if config.detector else build_promptable_sam(config)
