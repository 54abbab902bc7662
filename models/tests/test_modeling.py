"""Shapes of every intermediate, the DFP gate, and the parameter counts against the published ones."""
import pytest
import torch

from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.flops import count_params, summary
from ldfsam_models.modeling.yolo import YOLOv8


@pytest.fixture(scope="module")
def tiny():
    return build_ldfsam(get_config("tiny")).eval()


def run(model, config, batch=2):
    sam = torch.rand(batch, 3, config.image_size, config.image_size)
    det = torch.rand(batch, 3, config.detector_size, config.detector_size)
    with torch.no_grad():
        return model(sam, det, with_detections=True)


@pytest.mark.parametrize("name", ["tiny", "full"])
def test_prompt_branch_shapes(name):
    config = get_config(name)
    model = build_ldfsam(config).eval()
    det = torch.rand(2, 3, config.detector_size, config.detector_size)
    with torch.no_grad():
        p3, p4, p5 = model.detector.features(det)
        fused = model.fusion(p3, p4, p5)
        z = torch.zeros(2, config.prompt_dim, config.grid, config.grid)
        dense = model.dense_prompt.head(fused)
        tokens = model.sparse_prompt(fused)
    y = config.detector_size
    c3, c4, c5 = model.detector.channels
    assert p3.shape == (2, c3, y // 8, y // 8)
    assert p4.shape == (2, c4, y // 16, y // 16)
    assert p5.shape == (2, c5, y // 32, y // 32)
    assert fused.shape == (2, config.fused_channels, y // 8, y // 8)  # stride 8
    assert dense.shape == (2, 256, 16, 16) == z.shape  # onto Z_img's grid and channels
    assert tokens.shape == (2, 4, 256)  # K = 4 sparse tokens


def test_full_forward_shapes_and_detector_head(tiny):
    config = get_config("tiny")
    masks, iou, aux = run(tiny, config)
    assert aux["z_img"].shape == (2, 256, 16, 16)
    assert aux["sparse_tokens"].shape == (2, 4, 256)  # no prompts: only the K feature tokens
    assert masks.shape == (2, 1, 64, 64) and iou.shape == (2, 1)
    anchors = sum((config.detector_size // s) ** 2 for s in (8, 16, 32))
    assert aux["box_logits"].shape == (2, 4 * config.reg_max, anchors)
    assert aux["cls_logits"].shape == (2, config.num_classes, anchors)


def test_untrained_dense_prompt_leaves_the_embedding_unchanged(tiny):
    assert float(tiny.dense_prompt.alpha) == 0.0
    _, _, aux = run(tiny, get_config("tiny"))
    assert torch.equal(aux["z_cond"], aux["z_img"])
    with torch.no_grad():
        tiny.dense_prompt.alpha.fill_(0.5)
    _, _, aux = run(tiny, get_config("tiny"))
    assert not torch.equal(aux["z_cond"], aux["z_img"])
    with torch.no_grad():
        tiny.dense_prompt.alpha.fill_(0.0)


def test_box_and_point_prompts_still_work(tiny):
    config = get_config("tiny")
    sam = torch.rand(1, 3, 256, 256)
    det = torch.rand(1, 3, config.detector_size, config.detector_size)
    points = (torch.tensor([[[100.0, 120.0]]]), torch.tensor([[1]]))
    with torch.no_grad():
        _, _, aux = tiny(sam, det, points=points, boxes=torch.tensor([[10.0, 20.0, 200.0, 220.0]]))
    assert aux["sparse_tokens"].shape == (1, 1 + 2 + 4, 256)  # point, box corners, K feature tokens


def test_ablation_switches(tiny):
    config = get_config("tiny")
    tiny.use_sparse_prompt = False
    try:
        _, _, aux = run(tiny, config)
        assert aux["sparse_tokens"].shape[1] == 0
    finally:
        tiny.use_sparse_prompt = True


def test_box_prompt_from_the_detector(tiny):
    """Ablation baseline: the detector's top-scoring box, in SAM's input pixels, through the prompt
    encoder (two corner tokens), with both feature prompts off."""
    from ldfsam_models.losses import decode_distances, distances_to_boxes, make_anchors

    config = get_config("tiny")
    tiny.use_box_prompt, tiny.use_dense_prompt, tiny.use_sparse_prompt = True, False, False
    try:
        masks, _, aux = run(tiny, config)
    finally:
        tiny.use_box_prompt, tiny.use_dense_prompt, tiny.use_sparse_prompt = False, True, True
    assert masks.shape == (2, 1, 64, 64)
    assert aux["sparse_tokens"].shape == (2, 2, 256)  # the box's two corners only
    assert torch.equal(aux["z_cond"], aux["z_img"])  # no DFP
    points, strides = make_anchors(config.detector_size)
    boxes = distances_to_boxes(decode_distances(aux["box_logits"]), points, strides)
    best = aux["cls_logits"].sigmoid().amax(1).argmax(1)
    expected = torch.stack([boxes[i, best[i]] for i in range(2)]) * (config.image_size / config.detector_size)
    assert torch.allclose(aux["boxes"], expected.clamp(0, config.image_size), atol=1e-5)
    assert (aux["boxes"] >= 0).all() and (aux["boxes"] <= config.image_size).all()
    # the box changes the decoder's output against no prompt at all
    with torch.no_grad():
        sam = torch.rand(1, 3, 256, 256)
        tiny.use_dense_prompt = tiny.use_sparse_prompt = False
        plain, _, _ = tiny(sam, sam)
        boxed, _, _ = tiny(sam, sam, boxes=torch.tensor([[30.0, 40.0, 200.0, 210.0]]))
        tiny.use_dense_prompt = tiny.use_sparse_prompt = True
    assert not torch.allclose(plain, boxed)


def test_full_parameter_count_matches_the_published_parts():
    # Published: SAM ViT-B image encoder 89.67 M (at 1024 input), mask decoder 4.06 M, YOLOv8n 3.16 M (80 classes).
    params = count_params(build_ldfsam(get_config("full")))
    total = sum(params.values())
    published = 89.67e6 + 4.06e6 + 3.16e6
    assert abs(total - published) / published < 0.05
    assert abs(params["mask_decoder"] - 4.06e6) / 4.06e6 < 0.01


@pytest.mark.parametrize("scale,expected", [("n", 3.157e6), ("s", 11.166e6)])
def test_yolo_scales_match_the_published_parameter_counts(scale, expected):
    n = sum(p.numel() for p in YOLOv8(scale=scale, nc=80).parameters() if p.requires_grad)
    assert abs(n - expected) / expected < 0.01


def test_flops_of_the_prompt_branch_are_near_the_papers():
    rows = summary(get_config("full"))
    assert 8.0 < rows["prompt_branch"]["gflops"] < 11.0  # paper: 9.4 at 640x640
    assert 3.0 < rows["prompt_branch"]["params_m"] < 4.0  # paper: 3.3 M
