"""Smoke tests of training (every phase, a few steps on a handful of HC18 images), resume, the
evaluation command and publishing (export + fp16 compression + metrics) of a tiny trained model."""
import json

import numpy as np
import pytest
import torch

from ldfsam_models.__main__ import main
from ldfsam_models.data import default_data_root
from ldfsam_models.manifest import SEGMENT_PRESETS, verify_folder

if not (default_data_root() / "hc18" / "index.csv").exists():  # a missing reference fails, it is not skipped
    raise RuntimeError(f"shared HC18 data not found at {default_data_root() / 'hc18'}: see ../shared/data/README")

SMALL = ["--dataset", "hc18", "--limit-train", "4", "--limit-val", "2", "--batch-size", "2", "--steps-per-epoch", "1", "--teacher-scale", "n"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    assert main(["train", *SMALL, "--runs-dir", str(runs), "--run", "smoke", "--epochs", "1"]) == 0
    return runs / "smoke"


def test_every_phase_runs_and_checkpoints(smoke_run, capsys):
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert list(summary["phases"]) == ["teacher", "student", "encoder", "segment"]
    for phase, result in summary["phases"].items():
        assert result["done"] and result["epochs"] == 1 and result["seconds"] > 0
        assert (smoke_run / f"{phase}-last.pt").exists() and (smoke_run / f"{phase}-best.pt").exists()
        assert 0.0 <= result["best"] <= 1.0
    assert summary["phases"]["student"]["distill"] == "ld-main-vlr"
    # phase 2 trains adapters, prompt heads and the decoder only: far fewer parameters than phase 1b
    assert summary["phases"]["segment"]["trainable_params"] < summary["phases"]["encoder"]["trainable_params"]


def test_resume_continues_from_the_checkpoint(tmp_path, capsys):
    args = [*SMALL, "--runs-dir", str(tmp_path), "--run", "r", "--phase", "teacher"]
    assert main(["train", *args, "--epochs", "1"]) == 0
    first = torch.load(tmp_path / "r" / "teacher-last.pt")
    assert first["epoch"] == 0
    capsys.readouterr()
    assert main(["train", *args, "--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "after epoch 1/2" in out
    assert "epoch 1/2" not in out.replace("after epoch 1/2", "")  # epoch 1 was not trained again
    second = torch.load(tmp_path / "r" / "teacher-last.pt")
    assert second["epoch"] == 1 and len(second["history"]) == 2
    assert second["history"][0] == first["history"][0]
    assert main(["train", *args, "--epochs", "2", "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_distillation_modes_train(tmp_path, smoke_run):
    import shutil

    for mode in ("none", "kd", "ld-main"):
        run = tmp_path / mode
        run.mkdir()
        shutil.copy(smoke_run / "teacher-best.pt", run / "teacher-best.pt")
        assert main(["train", *SMALL, "--runs-dir", str(tmp_path), "--run", mode, "--phase", "student", "--epochs", "1", "--distill", mode]) == 0
        assert json.loads((run / "summary.json").read_text())["phases"]["student"]["distill"] == mode


def test_prompt_ablations_and_init(smoke_run, tmp_path, capsys):
    """Phase 2 retrained per prompt setting from another run's encoder (--init), including the
    'box prompt from the detector' baseline; the checkpoint remembers its prompts for eval."""
    for name, flags in (("box", ["--box-prompt", "--no-dfp", "--no-sfp"]), ("dfp", ["--no-sfp"])):
        assert main(["train", *SMALL, "--runs-dir", str(tmp_path), "--run", name, "--phase", "segment", "--epochs", "1",
                     "--init", f"segment={smoke_run / 'encoder-best.pt'}", *flags]) == 0
        result = json.loads((tmp_path / name / "summary.json").read_text())["phases"]["segment"]
        assert result["init"].endswith("encoder-best.pt")
        best = torch.load(tmp_path / name / "segment-best.pt")
        assert result["prompts"] == best["prompts"] == {"dense": name == "dfp", "sparse": False, "box": name == "box"}
    # a segment phase with another run's detector (distillation modes measured through segmentation)
    student = torch.load(smoke_run / "student-best.pt")["model"]
    assert main(["train", *SMALL, "--runs-dir", str(tmp_path), "--run", "det2", "--phase", "segment", "--epochs", "1",
                 "--init", f"segment={smoke_run / 'encoder-best.pt'}", "--detector-from", str(smoke_run / "student-best.pt")]) == 0
    trained = torch.load(tmp_path / "det2" / "segment-best.pt")["model"]
    assert all(torch.equal(trained[k], v) for k, v in student.items() if k.startswith("detector."))
    # the box baseline trains the prompt encoder's (never used) box-corner embeddings in phase 2
    box = json.loads((tmp_path / "box" / "summary.json").read_text())["phases"]["segment"]
    dfp = json.loads((tmp_path / "dfp" / "summary.json").read_text())["phases"]["segment"]
    assert box["trainable_params"] > dfp["trainable_params"]
    capsys.readouterr()
    model = str(tmp_path / "box" / "segment-best.pt")
    assert main(["eval", "--model", model, "--dataset", "hc18", "--split", "test", "--limit", "1", "--num-overlays", "0"]) == 0
    assert "dice" in capsys.readouterr().out


def test_eval_checkpoint_with_ablation(smoke_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(smoke_run / "segment-best.pt"), "--dataset", "hc18", "--split", "test", "--limit", "2",
                 "--ablate", "sfp", "--overlays", str(tmp_path / "ov"), "--num-overlays", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dice" in text and "ablated: sfp" in text
    result = json.loads(out.read_text())
    assert result["summary"]["cases"] == 2 and result["summary"]["hd95"]["unit"] == "mm"
    assert len(list((tmp_path / "ov").glob("*.png"))) == 2


def test_publish_and_eval_exported_model(smoke_run, tmp_path, capsys):
    folder = tmp_path / "ldfsam-smoke"
    assert main(["publish", "--run", str(smoke_run), "--out", str(folder), "--name", "ldfsam-smoke", "--dataset", "hc18",
                 "--segments", "fetal-head", "--modalities", "US", "--limit", "2"]) == 0
    manifest = verify_folder(folder)
    assert manifest["inputs"][0]["dtype"] == "float32" and manifest["outputs"][0]["shape"] == ["batch", 1, 256, 256]
    assert manifest["segments"][0]["type"]["code"] == "69536005"
    assert manifest["preprocessing"]["intensity"] == {"default": {"kind": "fixed", "max": 255}}
    assert manifest["export"]["compression"]["weights"] == "float16"
    assert manifest["files"][0]["bytes"] < 0.6 * manifest["export"]["compression"]["fp32Bytes"]
    assert manifest["metrics"]["cases"] == 2 and "ci95" in manifest["metrics"]["dice"]
    assert abs(manifest["metrics"]["diceChangeFromCompression"]) <= 0.05
    assert manifest["training"]["epochs"] == {"teacher": 1, "student": 1, "encoder": 1, "segment": 1}
    capsys.readouterr()
    assert main(["eval", "--model", str(folder), "--dataset", "hc18", "--split", "test", "--limit", "2", "--json", "--num-overlays", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["cases"] == 2
    assert result["summary"]["dice"]["mean"] == pytest.approx(manifest["metrics"]["dice"]["mean"], abs=1e-9)
    assert [row["id"] for row in result["cases"]] == sorted(row["id"] for row in result["cases"])


def test_segment_presets():
    assert SEGMENT_PRESETS["fetal-head"]["category"]["code"] == "91723000"
    assert SEGMENT_PRESETS["skin-lesion"]["type"] == {"scheme": "SCT", "code": "95324001", "meaning": "Skin lesion"}


def test_help_of_the_new_commands(capsys):
    for command in ("train", "eval", "publish"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_publish_int8_and_the_dice_gate(smoke_run, tmp_path, capsys):
    base = ["publish", "--run", str(smoke_run), "--name", "ldfsam-smoke", "--dataset", "hc18", "--segments", "fetal-head",
            "--modalities", "US", "--limit", "2", "--compress", "int8"]
    folder = tmp_path / "int8"
    assert main([*base, "--out", str(folder)]) == 0
    manifest = verify_folder(folder)
    assert manifest["export"]["compression"]["weights"] == "int8"
    assert "MatMul" in manifest["export"]["compression"]["method"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops or "DynamicQuantizeLinear" in ops
    assert "ConvInteger" not in ops
    # A gate no compression can pass: nothing is written to --out, and the old model there stays.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "model.json").write_text("{}")
    assert main([*base, "--out", str(kept), "--max-dice-change", "-1"]) == 1
    assert "not published" in capsys.readouterr().err
    assert (kept / "model.json").read_text() == "{}" and not (kept / "model.onnx").exists()


def test_publish_int8_fp16_stores_matmuls_int8_and_the_rest_float16(smoke_run, tmp_path):
    folder = tmp_path / "int8-fp16"
    assert main(["publish", "--run", str(smoke_run), "--name", "ldfsam-smoke", "--dataset", "hc18", "--segments", "fetal-head",
                 "--modalities", "US", "--limit", "2", "--compress", "int8-fp16", "--out", str(folder)]) == 0
    manifest = verify_folder(folder)
    assert manifest["export"]["compression"]["weights"] == "int8+float16"
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "DequantizeLinear" in ops and "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops  # weights only: float arithmetic
    kinds = {i.data_type for i in graph.initializer if len(i.dims) and int(np.prod(i.dims)) >= 1024}
    assert TensorProto.FLOAT not in kinds and TensorProto.FLOAT16 in kinds  # convolutions float16, nothing big left float32
    assert manifest["files"][0]["bytes"] < manifest["export"]["compression"]["fp32Bytes"] / 2
