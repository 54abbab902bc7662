"""Export: onnx.checker, parity with PyTorch through onnxruntime, model.json valid, tampering refused."""
import json
import shutil

import pytest
import torch

from ldfsam_models.__main__ import main as cli
from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.export import SegmentationGraph, export_model
from ldfsam_models.manifest import ManifestError, rgb_to_dicom_lab, segments_from, verify_folder


def export(config_name, out, **extra):
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
        **extra,
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


def test_test_time_flips_run_inside_the_graph(tmp_path):
    import numpy as np
    import onnxruntime as ort

    manifest = export("tiny", tmp_path, flips=["hflip", "vflip"], postprocessing={"fitEllipse": True})
    assert manifest["export"]["testTimeAugmentation"] == ["hflip", "vflip"]
    assert any("test-time augmentation" in step for step in manifest["preprocessing"]["inGraph"])
    assert manifest["postprocessing"] == {"output": "mask_logits", "threshold": 0.0, "fitEllipse": True}
    assert manifest["inputs"][0]["shape"] == ["batch", 3, 256, 256]  # the contract is unchanged
    verify_folder(tmp_path)
    # The graph's answer is the mean of the three views, each flipped back, per image of a batch of 2.
    torch.manual_seed(1)
    model = build_ldfsam(get_config("tiny")).eval()
    with torch.no_grad():
        model.dense_prompt.alpha.fill_(0.3)
    plain = SegmentationGraph(model, get_config("tiny")).eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        views = [plain(x)[0], plain(x.flip(3))[0].flip(3), plain(x.flip(2))[0].flip(2)]
    expected = torch.stack(views).mean(0).numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, iou = session.run(None, {"image": x.numpy()})
    assert logits.shape == (2, 1, 256, 256) and iou.shape == (2, 1)
    assert np.abs(logits - expected).max() < 1e-3
    assert np.abs(logits - views[0].numpy()).max() > 1e-3  # the views really differ: the mean is not the plain answer
    with pytest.raises(ValueError, match="unknown test-time flips"):
        SegmentationGraph(model, get_config("tiny"), ["rot90"])


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
