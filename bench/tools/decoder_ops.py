"""Promptable decoders side by side in onnxruntime (Python, CPU, as the server's options: 2 intra-op
threads, 1 inter-op): per prompt kind, time per run with the decoders alternated run by run (so
both see the same load), and the process CPU time per run with 1 thread (what the machine's load
disturbs least); then each decoder's kernel time per operator type (onnxruntime's profiler, box
prompt). Inputs: a random embedding, no mask input.

usage: python bench/tools/decoder_ops.py DECODER.onnx [DECODER.onnx ...] [--runs 40] [--op-threads 2] [--top 10] [--json]
"""
import argparse
import collections
import json
import os
import time

import numpy as np

PROMPTS = {  # name -> (user points, box)
    "box": (0, True),
    "box + 1 click": (1, True),
    "box + 16 clicks": (16, True),
}


def feeds(session, n_points: int, box: bool, rng) -> dict:
    emb = session.get_inputs()[0].shape
    s = session.get_inputs()[[i.name for i in session.get_inputs()].index("mask_input")].shape[-1]
    coords = rng.random((1, n_points, 2), dtype=np.float32) * s
    labels = rng.integers(0, 2, (1, n_points)).astype(np.float32)
    if box:
        coords = np.concatenate([coords, np.array([[[0.2 * s, 0.25 * s], [0.6 * s, 0.65 * s]]], np.float32)], axis=1)
        labels = np.concatenate([labels, np.array([[2, 3]], np.float32)], axis=1)
    return {"image_embeddings": rng.standard_normal(emb).astype(np.float32), "point_coords": coords, "point_labels": labels,
            "mask_input": np.zeros((1, 1, s, s), np.float32), "has_mask_input": np.zeros(1, np.float32)}


def session(path: str, threads: int, profile: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = profile
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def alternate(paths, threads: int, runs: int, f: dict) -> list:
    sessions = [session(p, threads) for p in paths]
    for s in sessions:
        for _ in range(3):
            s.run(None, f)
    wall, cpu = [[] for _ in paths], [[] for _ in paths]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t, c = time.perf_counter(), time.process_time()
            s.run(None, f)
            wall[i].append((time.perf_counter() - t) * 1e3)
            cpu[i].append((time.process_time() - c) * 1e3)
    return [{"p50": float(np.median(w)), "p95": float(np.percentile(w, 95)), "cpuP50": float(np.median(c))} for w, c in zip(wall, cpu)]


def per_op(path: str, runs: int, f: dict, threads: int, warm: int = 3) -> dict:
    """Kernel milliseconds per run by operator type, the warm-up runs left out."""
    s = session(path, threads, profile=True)
    for _ in range(warm + runs):
        s.run(None, f)
    trace = s.end_profiling()
    with open(trace) as fh:
        events = json.load(fh)
    os.remove(trace)
    starts = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    after = starts[warm - 1]
    ops = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > after:
            ops[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
    return dict(ops.most_common())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("decoders", nargs="+")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--op-threads", type=int, default=2, help="intra-op threads of the per-operator profile (1: least disturbed by load)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    probe = session(args.decoders[0], 1)
    result = {"loadBefore": os.getloadavg()[0], "prompts": {}, "ops": {}}
    for name, (n, box) in PROMPTS.items():
        f = feeds(probe, n, box, rng)
        two = alternate(args.decoders, 2, args.runs, f)
        one = alternate(args.decoders, 1, max(10, args.runs // 2), f)
        result["prompts"][name] = [{"decoder": p, "p50": a["p50"], "p95": a["p95"], "cpuP50OneThread": b["cpuP50"]}
                                   for p, a, b in zip(args.decoders, two, one)]
    f = feeds(probe, 0, True, np.random.default_rng(1))
    for p in args.decoders:
        result["ops"][p] = per_op(p, max(10, args.runs // 2), f, args.op_threads)
    result["loadAfter"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"load average (1 min) {result['loadBefore']:.2f} before, {result['loadAfter']:.2f} after")
    for name, rows in result["prompts"].items():
        for r in rows:
            print(f"{name:16s} {r['decoder']:48s} p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  1-thread CPU p50 {r['cpuP50OneThread']:6.1f} ms")
    for p, ops in result["ops"].items():
        total = sum(ops.values())
        print(f"{p}: kernel time {total:.1f} ms per run (box, {args.op_threads} thread(s))")
        for op, ms in list(ops.items())[: args.top]:
            print(f"  {op:22s} {ms:6.2f} ms {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
