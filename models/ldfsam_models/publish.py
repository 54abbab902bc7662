"""Ship a trained run: export its best checkpoint (fp32, parity-checked), evaluate the fp32 ONNX on
the test split, compress the weights (fp16 initializers + Cast nodes, or int8 dynamic quantisation)
keeping the graph's float32 input and outputs, evaluate again, and write model.json with the
provenance, the test metrics of the shipped file and both Dice values."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from .configs import build_ldfsam, get_config
from .evaluate import OnnxPredictor, evaluate, format_summary
from .export import export_model
from .manifest import ManifestError, git_commit, segments_from, sha256_of, validate_manifest, verify_folder
from .train import DEFAULT_RUNS, SPLIT_DESCRIPTION, dataset_splits, final_checkpoint

# Initializers smaller than this stay float32 (biases, norms, scales; Resize constants must stay static).
MIN_FP16_ELEMENTS = 1024


def compress_fp16(src: Path, dst: Path, min_elements: int = MIN_FP16_ELEMENTS) -> int:
    """Store every float32 initializer of at least `min_elements` values as float16 and cast it back
    to float32 at load (onnxruntime folds the Casts), so inputs, outputs and all arithmetic stay
    float32 and only the weights are rounded. Returns the number of converted tensors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts, converted = [], 0
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast"))
        converted += 1
    _save_with_nodes_first(model, casts, dst)
    return converted


def compress_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights (the ViT's linear layers: qkv, projections,
    MLPs, the decoder's transformer), activations quantised per batch at run time. Convolutions stay
    float32: onnxruntime's ConvInteger is slower than its float convolutions on these CPUs, and
    quantising them too failed on the full graph (shape inference). Measured with `ldfsam bench`:
    `full` ran 2.0x faster (AVX-512 VNNI); `tiny`, whose time goes to the detector's convolutions,
    gained nothing measurable."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})


def compress_int8_weights(src: Path, dst: Path) -> int:
    """Store every constant MatMul weight (the linear layers: the encoder's qkv, projections and MLPs,
    the decoder's transformer) as int8 with one float32 scale per output column, and dequantize it in
    the graph (DequantizeLinear, axis 1): arithmetic stays float32, so a slice's result does not depend
    on what else is in its batch (dynamic quantisation scales activations per batch, which made the
    server, batching by series, and the evaluation differ by a few hundred pixels). Returns the count."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, converted = [], 0
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT or w.name in {n.name for n in nodes}:
            continue
        a = numpy_helper.to_array(w)
        scale = np.maximum(np.abs(a).max(axis=0), 1e-12).astype(np.float32) / 127.0
        q = np.clip(np.round(a / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(w)
        del inits[w.name]
        graph.initializer.extend([numpy_helper.from_array(q, w.name + "__q"), numpy_helper.from_array(scale, w.name + "__scale"),
                                  numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), w.name + "__zero")])
        nodes.append(helper.make_node("DequantizeLinear", [w.name + "__q", w.name + "__scale", w.name + "__zero"], [w.name], axis=1, name=w.name))
        converted += 1
    _save_with_nodes_first(model, nodes, dst)
    return converted


def _save_with_nodes_first(model, first: list, dst: Path) -> None:
    """The graph with `first` (the nodes that rebuild the replaced weights) ahead of every other node,
    checked and saved: the graph stays topologically sorted."""
    import onnx

    rest = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(first + rest)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def compress_int8_fp16(src: Path, dst: Path) -> None:
    """int8 MatMul weights (`compress_int8_weights`: storage only, float arithmetic), then float16
    storage of the float32 weights left (the convolutions): the lite automatic graph holds the encoder,
    the detector and the decoder (13.2 M weights), 27.6 MB in float16 alone, over the repository's 20 MB
    per file."""
    tmp = dst.with_suffix(".int8.onnx")
    compress_int8_weights(src, tmp)
    compress_fp16(tmp, dst)
    tmp.unlink()


def metrics_entry(result: dict, dataset: str) -> dict:
    s = result["summary"]
    return {
        "dataset": dataset,
        "split": "test",
        "cases": s["cases"],
        "dice": {k: s["dice"][k] for k in ("mean", "ci95", "median")},
        "iou": {k: s["iou"][k] for k in ("mean", "ci95", "median")},
        "hd95": {k: s["hd95"][k] for k in ("mean", "ci95", "median", "unit", "infiniteCases")},
        "assd": {k: s["assd"][k] for k in ("mean", "ci95", "median", "unit", "infiniteCases")},
        "bootstrap": "percentile, 2000 resamples, seed 2025; distance means over cases with finite values",
    }


def publish(args) -> dict:
    run = Path(args.run)
    run_dir = run if (run.is_absolute() or len(run.parts) > 1) else DEFAULT_RUNS / args.run
    checkpoint_path = final_checkpoint(run_dir)
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    summary = json.loads((run_dir / "summary.json").read_text())
    config = get_config(checkpoint.get("config", "tiny"))
    model = build_ldfsam(config)
    model.load_state_dict(checkpoint["model"])
    prompts = checkpoint.get("prompts", {})  # prompt ablations the run trained with
    model.use_dense_prompt, model.use_sparse_prompt = prompts.get("dense", True), prompts.get("sparse", True)
    phases = summary.get("phases", {})
    training = {
        "dataset": args.dataset,
        "split": summary.get("split", SPLIT_DESCRIPTION)
        + f" ({summary.get('train_images')} train / {summary.get('val_images')} val / {summary.get('test_images')} test images)",
        "seed": int(summary.get("seed", 2025)),
        "epochs": {k: v["epochs"] for k, v in phases.items()},
        "stepsPerEpoch": {k: v.get("steps_per_epoch") for k, v in phases.items()},
        "batchSize": next((v.get("batch_size") for v in phases.values()), None),
        "secondsPerPhase": {k: v["seconds"] for k, v in phases.items()},
        "bestValidation": {k: {v["metric"]: v["best"], "epoch": v["best_epoch"]} for k, v in phases.items()},
        "distillation": phases.get("student", {}).get("distill"),
        "teacher": f"YOLOv8{phases.get('teacher', {}).get('scale', '?')}",
        "checkpoint": f"{checkpoint_path.name} (epoch {checkpoint.get('epoch')})",
        "machine": "2 CPU cores (torch 1.13 CPU, OpenBLAS)",
        "gitCommit": git_commit(),
        "date": "",
    }
    started = {k: v["init"] for k, v in phases.items() if v.get("init")}
    if started:  # a phase continued from another run's checkpoint (train --init): its epochs add to that run's
        training["phaseStartedFrom"] = started
    if config.encoder == "tinyvit":
        from .pretrained import LITEMEDSAM

        training["pretrained"] = {"package": f"{LITEMEDSAM.package}=={LITEMEDSAM.version}", "sha256": LITEMEDSAM.sha256, "license": LITEMEDSAM.license,
                                  "source": LITEMEDSAM.source, "use": "image encoder (frozen), prompt encoder and mask decoder (fine-tuned) start from it"}
        training["segmentPhase"] = {k: phases.get("segment", {}).get(k) for k in ("tune", "prompts", "flips", "trainable_params", "cache_seconds", "alpha")}
    segments = segments_from(args.segments.split(","))
    modalities = args.modalities.split(",")
    # The policy the run trained with (train --intensity), unless given here.
    intensity = json.loads(args.intensity) if args.intensity else summary.get("options", {}).get("intensity") or {"default": {"kind": "fixed", "max": 255}}
    fp32_dir = run_dir / "export-fp32"
    export_model(model, config, fp32_dir, name=args.name, version=args.version, segments=segments, modalities=modalities,
                 intensity=intensity, training=training, metrics=None, description=args.description,
                 flips=[f for f in (args.tta or "").split(",") if f], second_pass=args.second_pass, postprocessing=json.loads(args.postprocessing or "{}"),
                 promptable=args.promptable)
    records = dataset_splits(args.dataset, args.data, getattr(args, "segment_number", 1))["test"]
    if args.limit:
        records = records[: args.limit]
    res32 = evaluate(OnnxPredictor(fp32_dir), records)
    print(format_summary(res32), flush=True)
    out = Path(args.out)
    # Compressed and evaluated in the run folder first: a refused compression leaves --out untouched.
    stage = run_dir / f"export-{args.compress}"
    stage.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((fp32_dir / "model.json").read_text())
    fp32_bytes = (fp32_dir / "model.onnx").stat().st_size
    for f in manifest["files"]:
        src, dst = fp32_dir / f["path"], stage / f["path"]
        if args.compress == "none":
            shutil.copyfile(src, dst)
        elif args.compress == "fp16" or (args.compress == "int8-fp16" and f["role"] != "segmentation"):
            compress_fp16(src, dst)
        elif args.compress == "int8-fp16":
            compress_int8_fp16(src, dst)
        elif f["role"] == "segmentation":
            compress_int8(src, dst)
        else:  # int8 is gated on the automatic graph's Dice only: the promptable pair stays float32
            shutil.copyfile(src, dst)
    compression = {
        "none": {"weights": "float32"},
        "fp16": {
            "weights": "float16",
            "method": f"float32 initializers of >= {MIN_FP16_ELEMENTS} values stored as float16 (every file), Cast to float32 in the graph; inputs, "
            "outputs and arithmetic float32",
        },
        "int8-fp16": {
            "weights": "int8+float16",
            "method": "model.onnx: constant MatMul weights stored int8 with a float32 scale per output column, DequantizeLinear in the graph "
            f"(storage only: arithmetic float32, results independent of the batch), then the float32 initializers left of >= {MIN_FP16_ELEMENTS} "
            "values (convolutions) stored as float16; encoder.onnx and decoder.onnx: float16 weights; inputs, outputs and arithmetic float32",
        },
        "int8": {
            "weights": "int8",
            "method": "onnxruntime.quantization.quantize_dynamic, MatMul weights QInt8, activations quantised at run time; convolutions float32 "
            "(model.onnx; a promptable pair stays float32)",
        },
    }[args.compress]
    manifest["files"] = [{**f, "sha256": sha256_of(stage / f["path"]), "bytes": (stage / f["path"]).stat().st_size} for f in manifest["files"]]
    (stage / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    res = res32 if args.compress == "none" else evaluate(OnnxPredictor(stage), records)
    print(format_summary(res), flush=True)
    dice_change = res["summary"]["dice"]["mean"] - res32["summary"]["dice"]["mean"]
    if abs(dice_change) > args.max_dice_change:
        raise ManifestError(
            f"{args.compress} compression changed the test Dice by {dice_change:+.4f} (fp32 {res32['summary']['dice']['mean']:.4f}), "
            f"more than --max-dice-change {args.max_dice_change}: not published ({out} left as it was; the file is in {stage})"
        )
    metrics = metrics_entry(res, args.dataset)
    post = {k: v for k, v in manifest["postprocessing"].items() if k not in ("output", "threshold")}
    metrics["measuredWith"] = (
        "python -m ldfsam_models eval on this folder's model.onnx (onnxruntime, server preprocessing: the manifest's intensity policy "
        f"{json.dumps(intensity)}, "
        f"bilinear into {config.image_size}x{config.image_size} ({config.resize}), logits bilinear back to native size, threshold 0"
        + (f", the graph's test-time flips {manifest['export']['testTimeAugmentation']}" if manifest["export"].get("testTimeAugmentation") else "")
        + (", the graph's second decoder pass on the first mask's box" if manifest["export"].get("secondPass") else "")
        + (f", the manifest's clean-ups {json.dumps(post)}" if post else "")
        + ")"
    )
    metrics["fp32"] = {
        "dice": res32["summary"]["dice"]["mean"],
        "iou": res32["summary"]["iou"]["mean"],
        "hd95": res32["summary"]["hd95"]["mean"],
        "bytes": fp32_bytes,
    }
    metrics["diceChangeFromCompression"] = dice_change
    if "promptable" in manifest:
        from .prompted import PromptablePredictor, evaluate_prompted

        metrics["prompted"] = []
        for prompt in ("box", "point"):
            r = evaluate_prompted(PromptablePredictor(stage), records, prompt)
            metrics["prompted"].append({"prompt": r["summary"]["prompt"], "dice": {k: r["summary"]["dice"][k] for k in ("mean", "ci95", "median")}})
            print(f"promptable ({prompt}): test Dice {r['summary']['dice']['mean']:.4f}", flush=True)
    manifest["metrics"] = metrics
    manifest["export"]["compression"] = {
        **compression,
        "fp32Bytes": fp32_bytes,
        "maxAbsDiffNote": "maxAbsDiff is the fp32 export's parity with PyTorch; the compressed file's test Dice is in metrics",
    }
    validate_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    for f in manifest["files"]:
        shutil.copyfile(stage / f["path"], out / f["path"])
    for stale in ("model.onnx", "encoder.onnx", "decoder.onnx"):  # files of an earlier version no longer listed
        if stale not in {f["path"] for f in manifest["files"]} and (out / stale).exists():
            (out / stale).unlink()
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    verify_folder(out)
    (run_dir / f"publish-{args.name}.json").write_text(json.dumps({"fp32": res32, "shipped": res}, indent=2) + "\n")
    print(
        f"published {out}: {sum(f['bytes'] for f in manifest['files']) / 1e6:.1f} MB ({compression['weights']}), test Dice "
        f"{res['summary']['dice']['mean']:.4f} (fp32 {res32['summary']['dice']['mean']:.4f})",
        flush=True,
    )
    return manifest


def publish_pretrained(args) -> dict:
    """Ship a pretrained promptable model as it is (medsam-lite): export fp32 (parity-checked), store
    the weights as fp16, measure both on the test splits of the given data sets with reference-box and
    centroid-point prompts, refuse when fp16 moves the box Dice by more than --max-dice-change, and
    write the metrics into model.json."""
    from .configs import build_model
    from .export import export_model
    from .pretrained import LITEMEDSAM, load_litemedsam
    from .prompted import PromptablePredictor, evaluate_prompted

    config = get_config(args.config)
    model = build_model(config)
    load_litemedsam(model)
    stage = Path(args.stage)
    fp32_dir, fp16_dir = stage / "fp32", stage / "fp16"
    intensity = json.loads(args.intensity)
    training = {"dataset": "none: LiteMedSAM's pretrained weights, used as they are", "split": "none", "seed": 0, "epochs": 0,
                "pretrained": {"package": f"{LITEMEDSAM.package}=={LITEMEDSAM.version}", "file": LITEMEDSAM.path, "sha256": LITEMEDSAM.sha256,
                               "bytes": LITEMEDSAM.bytes, "license": LITEMEDSAM.license, "source": LITEMEDSAM.source},
                "gitCommit": git_commit(), "date": ""}
    manifest = export_model(model, config, fp32_dir, name=args.name, version=args.version, segments=segments_from(args.segments.split(",")),
                            modalities=args.modalities.split(","), intensity=intensity, training=training, metrics=None,
                            description=args.description, promptable=True, multimask_for_single_point=args.multimask_single_point)
    fp16_dir.mkdir(parents=True, exist_ok=True)
    for f in manifest["files"]:
        compress_fp16(fp32_dir / f["path"], fp16_dir / f["path"])
    manifest["files"] = [{**f, "sha256": sha256_of(fp16_dir / f["path"]), "bytes": (fp16_dir / f["path"]).stat().st_size} for f in manifest["files"]]
    (fp16_dir / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    results = []
    for dataset in args.datasets.split(","):
        records = dataset_splits(dataset, None)["test"][: args.limit or None]
        for prompt in ("box", "point"):
            r32 = evaluate_prompted(PromptablePredictor(fp32_dir), records, prompt)
            r16 = evaluate_prompted(PromptablePredictor(fp16_dir), records, prompt)
            change = r16["summary"]["dice"]["mean"] - r32["summary"]["dice"]["mean"]
            print(f"{dataset} {prompt}: Dice fp32 {r32['summary']['dice']['mean']:.4f} fp16 {r16['summary']['dice']['mean']:.4f}", flush=True)
            if prompt == "box" and abs(change) > args.max_dice_change:
                raise ManifestError(f"fp16 weights changed the {dataset} box-prompt Dice by {change:+.4f}: not published")
            entry = metrics_entry(r16, dataset)
            entry.update(prompt=r16["summary"]["prompt"], fp32Dice=r32["summary"]["dice"]["mean"], diceChangeFromCompression=change)
            results.append(entry)
    manifest["metrics"] = {
        "kind": "prompted (zero-shot: no training here)",
        "prompted": results,
        "measuredWith": "python -m ldfsam_models eval --prompt box|point on this folder (onnxruntime; the manifest's preprocessing; prompts from the "
        "reference mask, scaled into the input frame as the server does)",
    }
    manifest["export"]["compression"] = {
        "weights": "float16",
        "method": f"float32 initializers of >= {MIN_FP16_ELEMENTS} values stored as float16, Cast to float32 in the graph",
    }
    validate_manifest(manifest)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in manifest["files"]:
        shutil.copyfile(fp16_dir / f["path"], out / f["path"])
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    verify_folder(out)
    print(f"published {out}: " + ", ".join(f"{f['path']} {f['bytes'] / 1e6:.1f} MB" for f in manifest["files"]), flush=True)
    return manifest
