#!/usr/bin/env bash
# PH2: inference-time additions within the 25 GFLOPs a slice (models/README, "PH2: inference-time
# additions within the budget"; the candidates and the adoption rule were written there before this
# ran). bench/tools/box_candidates.py on 72 validation images none of the checkpoints trained on: the
# out-of-fold images of cross-validation folds 3 and 4 through their encoder-tuned checkpoints, the
# project's validation split through 3.0.0's; Dice at native resolution after 3.0.0's clean-ups. Each
# evaluation is kept in results/ph2-additions/ (commit them; runs/ may not outlive the machine) and not
# run again. Under a minute per evaluation on the 2 cores.
# usage: scripts/ph2-additions.sh [table|verdict]   (table: print the kept results, run nothing;
#   verdict: print the candidate the rule adopts: none, R, H-mean or H-best)
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD:$PWD/../bench/tools OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
OUT=results/ph2-additions
POST='{"fillHoles": true, "largestComponentOnly": true}'
mkdir -p $OUT

# name checkpoint fold ("-" = the project split)
EVALS=("cv3 runs/ph2-cv3-encoder/segment-best.pt 3/4" "cv4 runs/ph2-cv4-encoder/segment-best.pt 4/4" "project runs/ph2-encoder3/segment-best.pt -")

run() {
  for e in "${EVALS[@]}"; do
    read -r name ck fold <<< "$e"
    [ -f "$OUT/$name-val.json" ] && continue
    [ -f "$ck" ] || { echo "$ck is missing: this evaluation needs the checkpoint (scripts/ph2-cv.sh, ph2-ship-encoder.sh)" >&2; exit 1; }
    args=(--model "$ck" --dataset ph2 --split val --postprocessing "$POST" --json)
    [ "$fold" != "-" ] && args+=(--fold "$fold")
    echo "$(date -u +%H:%M:%S) $name: ${args[*]}"
    .venv/bin/python ../bench/tools/box_candidates.py "${args[@]}" > "$OUT/$name-val.json.tmp"
    mv "$OUT/$name-val.json.tmp" "$OUT/$name-val.json"
  done
}

# The candidates (row of box_candidates.py, GFLOPs a slice) and the rule, in one place. `table`: each
# candidate's mean over the kept evaluations' images and its paired difference from none; `verdict`:
# the candidate the rule adopts (the highest mean, above none's; a tie keeps none), refusing while an
# evaluation is missing.
report() {
  .venv/bin/python - "$OUT" "$1" "${#EVALS[@]}" <<'PY'
import json, sys
from pathlib import Path
from ldfsam_models.metrics import bootstrap_ci, paired_difference
out, mode, expected = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
runs = sorted(out.glob("*-val.json"))
cases = [dict(c, id=f"{p.name.split('-')[0]}:{c['id']}") for p in runs for c in json.loads(p.read_text())["cases"]]
rows = [("none", "none (3.0.0 as shipped)", "top box", "22.96"), ("R", "R", "second pass on the first mask's box", "23.93"),
        ("H-mean", "H-mean", "hflip mean: mean of the top boxes of the slice and its flip", "24.25"),
        ("H-best", "H-best", "hflip best: the higher-scoring of the two top boxes", "24.25")]
base = {c["id"]: c["top box"] for c in cases}
if mode == "verdict":
    if len(runs) != expected:
        sys.exit(f"{len(runs)} of {expected} evaluations kept in {out}: run scripts/ph2-additions.sh first")
    means = {name: sum(c[key] for c in cases) / len(cases) for name, _, key, _ in rows}
    print(max(means, key=lambda n: (means[n], n == "none")))  # a tie keeps none
    sys.exit(0)
print(f"{len(cases)} images ({', '.join(p.name for p in runs)})\n")
print("| candidate | GFLOPs a slice | mean Dice [95% CI] | paired vs none [95% CI] | better / worse |")
print("| --- | --- | --- | --- | --- |")
for _, label, key, gflops in rows:
    values = {c["id"]: c[key] for c in cases}
    ci = bootstrap_ci(list(values.values()))
    cell = "- | -"
    if key != "top box":
        d = paired_difference(values, base)
        worse = sum(values[i] < base[i] for i in values)
        cell = f"{d.ci.mean:+.4f} [{d.ci.low:+.4f}, {d.ci.high:+.4f}] | {d.better} / {worse}"
    print(f"| {label} | {gflops} | {ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}] | {cell} |")
PY
}

case "${1:-}" in
  verdict) report verdict ;;
  table) report table ;;
  "") run; report table ;;
  *) echo "usage: scripts/ph2-additions.sh [table|verdict]" >&2; exit 2 ;;
esac
