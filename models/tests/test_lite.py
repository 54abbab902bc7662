"""The `lite` configuration (LDFSAM on LiteMedSAM) and the promptable export: its cost, the automatic
graph and the encoder/decoder pair against PyTorch, manifest version 2 and its refusals."""
import copy
import json

import numpy as np
import pytest
import torch

from ldfsam_models.configs import build_model, get_config
from ldfsam_models.export import export_model
from ldfsam_models.flops import summary
from ldfsam_models.inputs import model_inputs
from ldfsam_models.manifest import ManifestError, segments_from, validate_manifest, verify_folder
from ldfsam_models.pretrained import load_litemedsam
from ldfsam_models.promptable import DecoderGraph, EncoderGraph


@pytest.fixture(scope="module")
def lite():
    model = build_model(get_config("lite"))
    load_litemedsam(model)
    return model.eval()


@pytest.fixture(scope="module")
def lite_folder(lite, tmp_path_factory):
    out = tmp_path_factory.mktemp("lite")
    export_model(lite, get_config("lite"), out, name="lite-test", version="0.0.1", segments=segments_from(["tissue"]), modalities=["US"],
                 intensity={"default": {"kind": "minmax"}}, training={"dataset": "none", "split": "none", "seed": 0, "epochs": 0},
                 metrics=None, promptable=True)
    return out


def test_an_automatic_slice_costs_at_most_25_gflops():
    rows = summary(get_config("lite"))
    assert rows["inference"]["gflops"] <= 25.0
    assert rows["image_encoder"]["gflops"] < 21  # LiteMedSAM's encoder at 128 instead of its 75 at 256


def test_the_lite_forward_prompts_litemedsam_with_the_detectors_box(lite):
    config = get_config("lite")
    with torch.no_grad():
        masks, iou, aux = lite(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 256, 256))
    assert aux["z_img"].shape == (2, 256, 32, 32)
    assert aux["boxes"].shape == (2, 4) and ((aux["boxes"] >= 0) & (aux["boxes"] <= config.image_size)).all()
    assert aux["sparse_tokens"].shape == (2, 2 + 4, 256)  # box corners, K feature tokens
    assert masks.shape == (2, 1, 128, 128) and iou.shape == (2, 1)


def test_manifest_version_2_describes_both_graphs(lite_folder):
    manifest = verify_folder(lite_folder)  # hashes, schema, every graph's inputs/outputs
    assert manifest["schemaVersion"] == 2 and manifest["modes"] == ["auto", "promptable"]
    assert manifest["preprocessing"]["fit"] == "longest-side-pad"
    assert [f["role"] for f in manifest["files"]] == ["segmentation", "image-encoder", "mask-decoder"]
    assert manifest["export"]["gflopsPerSlice"] <= 25
    p = manifest["promptable"]
    assert [t["name"] for t in p["encoder"]["outputs"]] == ["image_embeddings", "feature_tokens"]
    assert p["maxAbsDiff"]["encoderRelative"] < 1e-4 and p["maxAbsDiff"]["decoderRelative"] < 1e-4


def test_the_encoder_runs_any_batch_and_the_decoder_matches_pytorch(lite, lite_folder):
    import onnxruntime as ort

    config = get_config("lite")
    enc = ort.InferenceSession(str(lite_folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(lite_folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(3).random((4, 3, 256, 256), dtype=np.float32)
    z, tokens = enc.run(None, {"image": image})
    with torch.no_grad():
        z_ref, tokens_ref = EncoderGraph(lite, config)(torch.from_numpy(image))
    assert z.shape == (4, 256, 32, 32) and tokens.shape == (4, 4, 256)
    assert np.abs(z - z_ref.numpy()).max() < 1e-4
    feeds = {"image_embeddings": z[1:2], "feature_tokens": tokens[1:2],
             "point_coords": np.array([[[60.0, 70.0], [30.0, 20.0], [200.0, 180.0]]], np.float32),
             "point_labels": np.array([[0.0, 2.0, 3.0]], np.float32),
             "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    logits, iou = dec.run(None, feeds)
    with torch.no_grad():
        ref = DecoderGraph(lite, config, multimask_for_single_point=False)(*(torch.from_numpy(feeds[i.name]) for i in dec.get_inputs()))
    assert logits.shape == (1, 1, 256, 256) and iou.shape == (1, 1)
    assert np.abs(logits - ref[0].numpy()).max() / max(1.0, np.abs(ref[0].numpy()).max()) < 1e-4


def test_a_negative_click_changes_a_box_prompt(lite_folder):
    import onnxruntime as ort

    enc = ort.InferenceSession(str(lite_folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(lite_folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.zeros((1, 3, 256, 256), np.float32)
    image[:, :, 60:180, 60:180] = 1.0
    z, tokens = enc.run(None, {"image": image})
    base = {"image_embeddings": z, "feature_tokens": tokens, "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    box = dec.run(None, {**base, "point_coords": np.array([[[50.0, 50.0], [190.0, 190.0]]], np.float32), "point_labels": np.array([[2.0, 3.0]], np.float32)})[0]
    neg = dec.run(None, {**base, "point_coords": np.array([[[120.0, 120.0], [50.0, 50.0], [190.0, 190.0]]], np.float32),
                         "point_labels": np.array([[0.0, 2.0, 3.0]], np.float32)})[0]
    assert not np.array_equal(box > 0, neg > 0)


def test_a_version_2_manifest_whose_encoder_and_decoder_disagree_is_refused(lite_folder):
    manifest = json.loads((lite_folder / "model.json").read_text())
    validate_manifest(manifest)
    wrong = copy.deepcopy(manifest)
    wrong["promptable"]["decoder"]["inputs"][0]["shape"] = [1, 256, 64, 64]
    with pytest.raises(ManifestError, match="does not fit decoder input"):
        validate_manifest(wrong)
    missing = copy.deepcopy(manifest)
    missing["promptable"]["decoder"]["inputs"] = [t for t in missing["promptable"]["decoder"]["inputs"] if t["name"] != "feature_tokens"]
    with pytest.raises(ManifestError, match="feature_tokens is not a decoder input"):
        validate_manifest(missing)
    no_pair = copy.deepcopy(manifest)
    del no_pair["promptable"]
    with pytest.raises(ManifestError, match="promptable"):
        validate_manifest(no_pair)


def test_version_1_manifests_still_validate(tmp_path):
    from ldfsam_models.export import export_model as export

    model = build_model(get_config("tiny")).eval()
    manifest = export(model, get_config("tiny"), tmp_path, name="tiny-v1", version="0.0.1", segments=segments_from(["tissue"]), modalities=["*"],
                      intensity={"default": {"kind": "minmax"}}, training={"dataset": "none", "split": "none", "seed": 0, "epochs": 0}, metrics=None)
    assert manifest["schemaVersion"] == 1 and "modes" not in manifest and "fit" not in manifest["preprocessing"]
    verify_folder(tmp_path)


def test_mask_box_is_the_masks_extent_widened_per_side():
    from ldfsam_models.export import mask_box

    logits = -torch.ones(3, 1, 64, 64)
    logits[0, 0, 5:15, 10:30] = 1.0  # columns 10-29, rows 5-14
    logits[1, 0, 60:64, 0:2] = 1.0  # at the border: the widened box is clamped
    box, found = mask_box(logits, 0.05, 64.0)
    assert found.tolist() == [True, True, False]  # the third mask is empty
    assert torch.allclose(box[0], torch.tensor([10 - 0.95, 5 - 0.45, 30 + 0.95, 15 + 0.45]))
    assert torch.allclose(box[1], torch.tensor([0.0, 60 - 0.15, 2 + 0.05, 64.0]))


def test_the_second_pass_reprompts_the_decoder_with_the_first_masks_box(lite, tmp_path):
    import onnxruntime as ort

    from ldfsam_models.export import SegmentationGraph

    config = get_config("lite")
    manifest = export_model(lite, config, tmp_path, name="lite-second-pass", version="0.0.1", segments=segments_from(["tissue"]), modalities=["US"],
                            intensity={"default": {"kind": "minmax"}}, training={"dataset": "none", "split": "none", "seed": 0, "epochs": 0},
                            metrics=None, second_pass=True)
    verify_folder(tmp_path)
    assert manifest["export"]["secondPass"] == {"prompt": "the first mask's box", "margin": 0.05}
    assert any("second decoder pass" in step for step in manifest["preprocessing"]["inGraph"])
    rows = summary(config)
    assert manifest["export"]["gflopsPerSlice"] == round(rows["inference"]["gflops"] + rows["prompt_encoder"]["gflops"] + rows["mask_decoder"]["gflops"], 3)
    image = np.zeros((2, 3, 256, 256), np.float32)
    image[0, :, 40:150, 60:200] = 1.0
    image[1, :, 100:220, 20:120] = 0.8
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, iou, features = session.run(None, {"image": image})
    # The oracle: the plain graph's mask, its box computed here in numpy, the decoder prompted with it.
    plain = SegmentationGraph(lite, config).eval()
    with torch.no_grad():
        first = plain(torch.from_numpy(image))[0].numpy()
        z, tokens, _ = lite.embed(*model_inputs(torch.from_numpy(image), config))
    for i in range(2):
        ys, xs = np.nonzero(first[i, 0] > 0)
        assert len(xs), "the first pass found nothing: the test image does not exercise the second pass"
        w, h = xs.max() - xs.min(), ys.max() - ys.min()
        box = np.clip([xs.min() - 0.05 * w, ys.min() - 0.05 * h, xs.max() + 1 + 0.05 * w, ys.max() + 1 + 0.05 * h], 0, 256)
        with torch.no_grad():
            again, again_iou, _ = lite.decode(z[i : i + 1], tokens[i : i + 1], boxes=torch.from_numpy(np.asarray([box], np.float32)))
            expected = plain.input_frame(again)[0].numpy()
        assert np.abs(logits[i] - expected).max() < 1e-3 and abs(iou[i, 0] - float(again_iou[0, 0])) < 1e-4
        assert np.abs(logits[i] - first[i]).max() > 1e-2  # the second pass is really there
    with pytest.raises(ValueError, match="box-prompted"):
        SegmentationGraph(build_model(get_config("tiny")), get_config("tiny"), second_pass=True)
