"""The PyTorch side of `ldfsam bench`: exports a seeded random-weight model of a configuration (once,
into --out), its int8 twin (into --out/int8: MatMul weights quantised as `publish --compress int8`
does), writes a square float32 MatMul graph for the machine's matrix-product rate, and times PyTorch
eager on the same weights and inputs. Prints one JSON object.

usage: python bench_models.py --config tiny --out DIR [--slices 8] [--matmul 2048]
"""
import argparse
import json
import pathlib
import time

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.export import SegmentationGraph, export_model
from ldfsam_models.flops import summary
from ldfsam_models.manifest import segments_from, sha256_of
from ldfsam_models.publish import compress_int8


def matmul_graph(path: pathlib.Path, n: int) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", [a, b], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--out", required=True)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--matmul", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = get_config(args.config)
    out = pathlib.Path(args.out)
    model = build_ldfsam(config).eval()
    if not (out / "model.json").exists():
        export_model(
            model,
            config,
            out,
            name=f"bench-{config.name}",
            version="0.0.0",
            segments=segments_from(["tissue"]),
            modalities=["*"],
            intensity={"default": {"kind": "minmax"}},
            training={"dataset": "none (random weights, seed 0)", "split": "none", "seed": 0, "epochs": 0},
            metrics=None,
        )
    int8 = out / "int8"
    if not (int8 / "model.json").exists():
        int8.mkdir(exist_ok=True)
        compress_int8(out / "model.onnx", int8 / "model.onnx")
        manifest = json.loads((out / "model.json").read_text())
        manifest["files"] = [{**manifest["files"][0], "sha256": sha256_of(int8 / "model.onnx"), "bytes": (int8 / "model.onnx").stat().st_size}]
        manifest["name"] = manifest["name"] + "-int8"
        (int8 / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    matmul_graph(out / "matmul.onnx", args.matmul)
    graph = SegmentationGraph(model, config).eval()
    image = torch.from_numpy(np.random.default_rng(0).random((1, 3, config.image_size, config.image_size), dtype=np.float32))
    with torch.no_grad():
        graph(image)  # warm-up
        times = []
        for _ in range(args.slices):
            t = time.perf_counter()
            graph(image)
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"torchMsPerSlice": float(np.median(times)), "gflopsPerSlice": summary(config)["inference"]["gflops"], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
