"""The exported decoder (`decoder_export.ExportDecoderGraph`) against `DecoderGraph`, the form training
uses: the same logits and IoU in PyTorch on LiteMedSAM's weights, with and without feature tokens, and
its onnxruntime graph free of the kernels it rewrites away."""
import numpy as np
import pytest
import torch

from ldfsam_models.configs import build_model, get_config
from ldfsam_models.decoder_export import ExportDecoderGraph, _pixel_linear
from ldfsam_models.pretrained import load_litemedsam
from ldfsam_models.promptable import MAX_POINTS, DecoderGraph, _example_prompts, export_promptable

# (user points, box, mask input): a box, one click (SAM's best of three), clicks + a box + a
# previous mask, and the API's most points (23 tokens, more than the 16 where the rewrite pays).
PROMPTS = ((0, True, False), (1, False, False), (3, True, True), (MAX_POINTS, True, True))


def _pair(name: str):
    model = build_model(get_config(name))
    load_litemedsam(model)
    model.eval()
    config = get_config(name)
    if config.detector:
        with torch.no_grad():
            model.dense_prompt.alpha.fill_(0.3)
    return (config, DecoderGraph(model, config, multimask_for_single_point=True).eval(),
            ExportDecoderGraph(model, config, multimask_for_single_point=True).eval())


@pytest.mark.parametrize("name", ["medsam-lite", "lite"])
def test_the_exported_form_computes_what_the_decoder_computes(name):
    config, reference, exported = _pair(name)
    rng = np.random.default_rng(5)
    g, c = config.grid, config.prompt_dim
    for n_points, box, mask in PROMPTS:
        feeds = _example_prompts(config, rng, n_points, box, mask)
        inputs = [torch.from_numpy(rng.standard_normal((1, c, g, g)).astype(np.float32))]
        if reference.with_tokens:
            inputs.append(torch.from_numpy(rng.standard_normal((1, config.num_sparse_tokens, c)).astype(np.float32)))
        inputs += [torch.from_numpy(feeds[k]) for k in ("point_coords", "point_labels", "mask_input", "has_mask_input")]
        with torch.no_grad():
            (want, want_iou), (got, got_iou) = reference(*inputs), exported(*inputs)
        assert got.shape == want.shape == (1, 1, config.image_size, config.image_size) and got_iou.shape == (1, 1)
        scale = max(1.0, float(want.abs().max()))
        assert float((got - want).abs().max()) / scale < 1e-5, (n_points, box, mask)
        assert float((got_iou - want_iou).abs().max()) < 1e-5
        assert torch.equal(got > 0, want > 0), (n_points, box, mask)


def test_a_transposed_convolution_is_a_per_pixel_linear_map_only_for_2x2_stride_2():
    conv = torch.nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2)
    x = torch.randn(1, 8, 5, 3)
    want = conv(x)  # (1, 4, 10, 6)
    with torch.no_grad():
        got = _pixel_linear(conv, x.flatten(2).transpose(1, 2).reshape(15, 8))  # (15 * 4, 4): rows (y, x, dy, dx)
    got = got.reshape(5, 3, 2, 2, 4).permute(4, 0, 2, 1, 3).reshape(1, 4, 10, 6)
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="2x2, stride-2"):
        _pixel_linear(torch.nn.ConvTranspose2d(8, 4, kernel_size=3, stride=2), x)


def test_the_exported_decoder_has_no_transposed_convolution_and_passes_parity(tmp_path):
    import onnx

    config = get_config("medsam-lite")
    model = build_model(config)
    load_litemedsam(model)
    section = export_promptable(model, config, tmp_path, multimask_for_single_point=True)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "decoder.onnx")).graph.node}
    assert "ConvTranspose" not in ops and "LayerNormalization" in ops
    assert section["promptable"]["maxAbsDiff"]["decoderRelative"] < 1e-4
