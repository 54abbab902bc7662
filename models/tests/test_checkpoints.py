"""Checkpoint name mapping, tested with synthetic state dicts in the public key layouts."""
import pytest
import torch

from ldfsam_models.checkpoints import CheckpointMismatch, load_sam_checkpoint, load_yolo_checkpoint
from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.modeling.image_encoder import ImageEncoderViT
from ldfsam_models.modeling.yolo import YOLOv8


def sam_style_state_dict(config, grid_factor=4):
    """What an official SAM checkpoint holds for this encoder width: `image_encoder.*`,
    `prompt_encoder.*`, `mask_decoder.*`, with a position grid `grid_factor` times larger (SAM: 64x64
    at 1024) and no adapters."""
    source = build_ldfsam(config)
    state = {k: v for k, v in source.state_dict().items() if k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder."))}
    state = {k: v for k, v in state.items() if ".adapter." not in k}
    big = ImageEncoderViT(
        img_size=config.image_size * grid_factor,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        window_size=14,
        global_attn_indexes=config.global_attn_indexes,
    )
    state["image_encoder.pos_embed"] = big.pos_embed.detach().clone()
    for k, v in big.state_dict().items():
        if ".attn.rel_pos_" in k:
            state["image_encoder." + k] = torch.randn_like(v)
    return source, state


def test_sam_checkpoint_round_trip_and_resizes():
    config = get_config("tiny")
    source, state = sam_style_state_dict(config)
    target = build_ldfsam(config)
    report = load_sam_checkpoint(target, {"model": state})  # SAM-Med2D wraps it in "model"
    assert report.unexpected == [] and report.skipped == []
    assert sorted(report.missing) == sorted(k for k in target.state_dict() if ".adapter." in k)
    assert "image_encoder.pos_embed: (1, 64, 64, 192) -> (1, 16, 16, 192)" in report.resized
    assert any(".attn.rel_pos_h" in r for r in report.resized)
    for key in ("mask_decoder.iou_token.weight", "image_encoder.blocks.0.attn.qkv.weight", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"):
        assert torch.equal(target.state_dict()[key], state[key])


def test_same_geometry_checkpoint_gives_identical_outputs():
    config = get_config("tiny")
    source = build_ldfsam(config).eval()
    target = build_ldfsam(config).eval()
    state = {k: v for k, v in source.state_dict().items() if k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder."))}
    report = load_sam_checkpoint(target, state)
    assert report.resized == [] and report.missing == []
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(source.image_encoder(x), target.image_encoder(x))


def test_wrong_shapes_are_refused_by_name():
    config = get_config("tiny")
    _, state = sam_style_state_dict(config)
    state["image_encoder.blocks.1.mlp.lin1.weight"] = torch.zeros(10, 10)
    with pytest.raises(CheckpointMismatch, match=r"image_encoder\.blocks\.1\.mlp\.lin1\.weight: checkpoint \(10, 10\), model \(768, 192\)"):
        load_sam_checkpoint(build_ldfsam(config), state)


def test_unknown_keys_are_reported_not_loaded():
    config = get_config("tiny")
    _, state = sam_style_state_dict(config)
    state["image_encoder.blocks.0.Adapter.channel.0.weight"] = torch.zeros(3)  # SAM-Med2D's adapter layout
    state["something_else"] = torch.zeros(1)
    report = load_sam_checkpoint(build_ldfsam(config), state)
    assert set(report.unexpected) == {"image_encoder.blocks.0.Adapter.channel.0.weight", "something_else"}


def test_yolo_state_dict_loads_by_name_and_skips_another_class_head():
    source = YOLOv8(scale="n", nc=80).eval()
    state = source.state_dict()  # keys "model.N...", the layout of a YOLOv8 checkpoint's model.state_dict()
    assert "model.2.m.0.cv1.conv.weight" in state and "model.22.dfl.conv.weight" in state
    target = build_ldfsam(get_config("tiny")).eval()
    report = load_yolo_checkpoint(target, state)
    assert report.missing == [] and report.unexpected == []
    # 80 classes make the class branch 80 wide, 1 class 64 wide: the whole branch is skipped, reported.
    assert report.skipped and all(s.startswith("detector.model.22.cv3.") for s in report.skipped)
    assert "detector.model.22.cv3.0.2.weight: checkpoint (80, 80, 1, 1), model (1, 64, 1, 1)" in report.skipped
    assert "detector.model.22.cv2.0.2.weight" in report.loaded  # the box (DFL) branch loads
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        for a, b in zip(source.features(x), target.detector.features(x)):
            assert torch.equal(a, b)


def test_yolo_checkpoint_of_another_scale_is_refused():
    state = YOLOv8(scale="s", nc=1).state_dict()
    with pytest.raises(CheckpointMismatch, match="do not fit this configuration"):
        load_yolo_checkpoint(build_ldfsam(get_config("tiny")), state)
