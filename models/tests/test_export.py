"""Export: onnx.checker, parity with PyTorch through onnxruntime, model.json valid, tampering refused."""
import json
import shutil

import pytest
import torch

from ldfsam_models.__main__ import main as cli
from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.export import export_model
from ldfsam_models.manifest import ManifestError, rgb_to_dicom_lab, segments_from, verify_folder


def export(config_name, out):
    torch.manual_seed(1)
    model = build_ldfsam(get_config(config_name))
    with torch.no_grad():
        model.dense_prompt.alpha.fill_(0.3)  # exercise the dense prompt path in the graph too
    return export_model(
        model,
        get_config(config_name),
        out,
        name=f"test-{config_name}",
        version="0.1.0",
        segments=segments_from(["tissue"]),
        modalities=["*"],
        intensity={"default": {"kind": "minmax"}},
        training={"dataset": "none", "split": "none", "seed": 1, "epochs": 0},
        metrics=None,
    )


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    export("tiny", out)
    return out


def test_tiny_export_matches_pytorch_and_validates(tiny_folder):
    manifest = verify_folder(tiny_folder)
    assert manifest["export"]["maxAbsDiff"] < 1e-4
    assert manifest["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 256, 256]}]
    assert [o["name"] for o in manifest["outputs"]] == ["mask_logits", "iou"]
    assert manifest["segments"][0]["number"] == 1 and manifest["segments"][0]["category"]["scheme"] == "SCT"


def test_full_export_matches_pytorch(tmp_path):
    manifest = export("full", tmp_path)
    assert manifest["export"]["maxAbsDiff"] < 1e-4
    assert manifest["configuration"]["embed_dim"] == 768 and manifest["configuration"]["detector_size"] == 640


def test_a_corrupted_onnx_file_is_refused(tiny_folder, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="does not match model.json"):
        verify_folder(folder)


def test_a_manifest_whose_shapes_disagree_with_the_graph_is_refused(tiny_folder, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["inputs"][0]["shape"] = ["batch", 3, 512, 512]
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="ONNX inputs .* differ from model.json"):
        verify_folder(folder)


def test_a_manifest_that_breaks_the_schema_is_refused(tiny_folder, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["segments"][0]["category"]["code"] = "T-D0050"  # a legacy SRT code, not SNOMED CT
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="segments/0/category/code"):
        verify_folder(folder)


def test_cielab_of_pure_colours():
    assert rgb_to_dicom_lab([255, 255, 255]) == [65535, 32896, 32896]
    L, a, b = rgb_to_dicom_lab([255, 0, 0])  # sRGB red: L* 53.2, a* 80.1, b* 67.2
    assert abs(L - 53.24 * 655.35) < 100 and abs(a - (80.09 + 128) * 257) < 150 and abs(b - (67.2 + 128) * 257) < 150


def test_cli_verify_and_info(tiny_folder, capsys):
    assert cli(["verify", str(tiny_folder)]) == 0
    assert "manifest valid, hashes match" in capsys.readouterr().out
    assert cli(["info", "--config", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 9.0 < info["tiny"]["inference"]["params_m"] < 10.0
