"""GPU benchmark of the LDFSAM network (issue: bench). Run on a machine with an NVIDIA GPU:

    python bench/gpu.py --config full [--json out.json]

It times the same random-weight model (seed 0) in PyTorch on CUDA, fp32 and bf16 autocast, for
batch sizes 1..64, and, when onnxruntime-gpu is installed, the exported ONNX graph through the CUDA
execution provider; prints a table (ms/slice, slices/s) and optionally writes the figures as JSON.
Each configuration stops early once a batch takes more than --budget seconds, and no new measurement
starts after --max-seconds (default 480), so the whole run stays under 10 minutes. On a machine
without CUDA it says so and exits 2 (`--device cpu` runs the same code on the CPU: the test suite
does, so the script cannot rot between GPU machines).
"""
import argparse
import json
import sys
import time

import torch

from ldfsam_models.configs import build_ldfsam, get_config
from ldfsam_models.export import SegmentationGraph


def time_it(fn, repeats: int) -> float:
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="full", choices=["tiny", "full"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds one batch may take before larger batches are skipped")
    parser.add_argument("--max-seconds", type=float, default=480.0, help="start no new measurement after this many seconds")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine", file=sys.stderr)
        return 2
    started = time.perf_counter()
    out_of_time = lambda: time.perf_counter() - started > args.max_seconds  # noqa: E731
    torch.manual_seed(0)
    config = get_config(args.config)
    graph = SegmentationGraph(build_ldfsam(config), config).eval().to(args.device)
    rows = []
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= args.max_batch]
    # bf16 autocast is a CUDA measurement (torch 1.13's CPU autocast breaks on LayerNorm).
    for precision in ("fp32", "bf16") if args.device == "cuda" else ("fp32",):
        for b in batches:
            if out_of_time():
                print(f"--max-seconds {args.max_seconds} reached: stopping", flush=True)
                break
            x = torch.rand(b, 3, config.image_size, config.image_size, device=args.device)

            def step():
                with torch.no_grad(), torch.autocast(device_type=args.device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    graph(x)

            seconds = time_it(step, args.repeats)
            rows.append({"runtime": "pytorch", "precision": precision, "batch": b, "msPerSlice": seconds * 1000 / b, "slicesPerSecond": b / seconds})
            print(f"pytorch {precision:5s} batch {b:3d}: {seconds * 1000 / b:8.2f} ms/slice {b / seconds:9.1f} slices/s", flush=True)
            if seconds > args.budget:
                break
    try:
        import onnxruntime as ort  # onnxruntime-gpu when installed

        if "CUDAExecutionProvider" in ort.get_available_providers() and args.device == "cuda":
            import pathlib
            import tempfile

            from ldfsam_models.export import export_onnx

            with tempfile.TemporaryDirectory() as tmp:
                path = pathlib.Path(tmp) / "model.onnx"
                export_onnx(graph.model.cpu(), config, path)
                session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
                for b in batches:
                    if out_of_time():
                        break
                    x = torch.rand(b, 3, config.image_size, config.image_size).numpy()
                    seconds = time_it(lambda: session.run(None, {"image": x}), args.repeats)
                    rows.append(
                        {"runtime": "onnxruntime-cuda", "precision": "fp32", "batch": b, "msPerSlice": seconds * 1000 / b, "slicesPerSecond": b / seconds}
                    )
                    print(f"onnxruntime-cuda fp32 batch {b:3d}: {seconds * 1000 / b:8.2f} ms/slice", flush=True)
        else:
            print("onnxruntime CUDA provider not installed: PyTorch figures only", flush=True)
    except ImportError:
        print("onnxruntime not installed: PyTorch figures only", flush=True)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    result = {"seconds": round(time.perf_counter() - started, 1), "config": args.config, "device": device, "torch": torch.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
