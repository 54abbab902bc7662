#!/usr/bin/env bash
# bench/gpu-check.sh [OUT_DIR]: the GPU check of issue 18, for a machine with an NVIDIA GPU and no
# network, within 8 minutes. It reports the driver, the GPUs and onnxruntime-node's CUDA provider
# libraries (ldfsam gpu check), runs `ldfsam bench --provider cuda --json` on a shipped model and on
# `full`, the same on the CPU for comparison, and bench/gpu.py (PyTorch CUDA fp32/bf16) when a CUDA
# PyTorch is present; then writes OUT_DIR/gpu-check.json (everything) and OUT_DIR/gpu-check.md (one
# table). On a machine without a GPU (or without the provider libraries: npm run setup:gpu) it says
# what is missing and exits 3 within seconds. Needs `npm run build` (dist/) done beforehand.
#
# Every step has its own time limit (the whole stays under 8 minutes); a step that fails or runs out
# of time is recorded as such and the others still run. The long series is 400 slices of 512x512,
# the size of issue 18's end-to-end target.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/gpu-check}
mkdir -p "$OUT"
LDFSAM=(node dist/server/src/cli/main.js)
# The shipped automatic model with export.gflopsPerSlice in its model.json (so the bench gives its compute floor).
SHIPPED=${LDFSAM_GPU_CHECK_MODEL:-ldfsam-ph2}
started=$SECONDS

if [ ! -f dist/server/src/cli/main.js ] || [ ! -f dist/bench/gpu-report.js ]; then
  echo "gpu-check: dist/ is missing: run npm run build first" >&2
  exit 2
fi

echo "== driver, GPU, libraries (ldfsam gpu check)"
"${LDFSAM[@]}" gpu check --json >"$OUT/gpu.json" 2>"$OUT/gpu.log"
rc=$?
if [ "$rc" -ne 0 ]; then
  node dist/bench/gpu-report.js "$OUT" --missing
  exit 3
fi

# step NAME SECONDS COMMAND...: stdout to NAME.json, stderr to NAME.log, exit status to NAME.rc.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
  echo $? >"$OUT/$name.rc"
  echo "$((SECONDS - t0))" >"$OUT/$name.seconds"
}

LONG=(--long-slices 400 --long-size 512 --slices 32)
step cuda-shipped 90 "${LDFSAM[@]}" bench --provider cuda --model "$SHIPPED" --json "${LONG[@]}"
# GPU utilisation sampled while `full` runs on CUDA (every 200 ms).
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$OUT/util-cuda-full.csv" 2>/dev/null &
sampler=$!
step cuda-full 130 "${LDFSAM[@]}" bench --provider cuda --model-config full --json "${LONG[@]}"
kill "$sampler" 2>/dev/null
step cpu-shipped 60 "${LDFSAM[@]}" bench --provider cpu --model "$SHIPPED" --json --long-slices 60 --long-size 512 --slices 8
step cpu-full 100 "${LDFSAM[@]}" bench --provider cpu --model-config full --json --long-slices 40 --long-size 512 --slices 8
if models/.venv/bin/python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step torch 80 env PYTHONPATH=models models/.venv/bin/python bench/gpu.py --config full --max-seconds 60 --json "$OUT/torch-figures.json"
else
  echo "no CUDA build of PyTorch in models/.venv: bench/gpu.py skipped" | tee "$OUT/torch.log"
  echo 2 >"$OUT/torch.rc"
fi
node dist/bench/gpu-report.js "$OUT" --seconds "$((SECONDS - started))"
