#!/usr/bin/env bash
# Ablations of lite, retrained (issue 15 item 6), for one data set: the shipped recipe (teacher,
# student, segment), then phase 2 with DFP off, SFP off, feature prompts only (decoder frozen), both
# feature prompts off (the box alone), and the encoder's adapters tuned end to end, all on the same
# distilled student; each evaluated on val and test (native resolution, no clean-up) into
# results/ablate/<run>-<split>.json (tracked: commit them; runs/ and its checkpoints may not outlive
# the machine). Resumable: finished phases are skipped, a phase in progress continues epoch by epoch,
# a variant whose results are kept is not trained again.
# Epochs as each data set's shipped model: PH2 30 per phase, HC18 12.
# Cost on the 2-core machine: PH2 about 5 h (done 2026-12-06); HC18 (done 2026-12-07) about 2 h of
# detector and embedding cache, 25-40 min per frozen-encoder variant, 115 min for the encoder-tuned one.
# usage: scripts/ablate.sh ph2|hc18 [table]   (table: print the variants kept so far, trains nothing)
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
DS=${1:-}
case $DS in
  ph2) E=30 ;;
  hc18) E=12 ;;
  *) echo "usage: scripts/ablate.sh ph2|hc18 [table] (the data set to run the ablations on; table: print the kept results)" >&2; exit 2 ;;
esac
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
PY=".venv/bin/python -m ldfsam_models"
I='{"default": {"kind": "minmax"}}'
OUT=results/ablate
mkdir -p $OUT runs
stamp() { echo "$(date -u +%H:%M:%S) $*"; }

# Each kept variant's val and test Dice, and its test Dice against the shipped recipe's, paired per image
# (bootstrap 95% interval): the ablation compares branches, it chooses nothing.
table() {
  .venv/bin/python - "$OUT" "$DS" <<'PY'
import json, sys
from pathlib import Path
from ldfsam_models.metrics import paired_difference
out, ds = Path(sys.argv[1]), sys.argv[2]
variants = [("lite", "DFP + SFP (the shipped recipe)"), ("nodfp", "DFP off (`--no-dfp`)"), ("nosfp", "SFP off (`--no-sfp`)"),
            ("prompts", "feature prompts only, decoder frozen (`--tune prompts`)"),
            ("noprompts", "DFP and SFP off: the decoder fine-tuned on the box alone (`--no-dfp --no-sfp`)"),
            ("encoder", "encoder's adapters tuned too (`--config lite-adapters --tune encoder`)")]
def load(name, split):
    f = out / f"{ds}-{name}-{split}.json"
    return json.loads(f.read_text()) if f.exists() else None
base = load("lite", "test")
ref = {c["id"]: c["dice"] for c in base["cases"]} if base else None
print("| phase 2 retrained | val Dice | test Dice [95% CI] | test, paired against the shipped recipe [95% CI] |")
print("| --- | --- | --- | --- |")
for name, label in variants:
    val, test = load(name, "val"), load(name, "test")
    if not (val and test):
        print(f"| {label} | - | - | - |"); continue
    d = test["summary"]["dice"]
    paired = "-"
    if ref and name != "lite":
        ci, better, n = paired_difference({c["id"]: c["dice"] for c in test["cases"]}, ref)
        paired = f"{ci.mean:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}], better on {better} of {n}"
    print(f"| {label} | {val['summary']['dice']['mean']:.4f} | {d['mean']:.4f} [{d['ci95'][0]:.4f}, {d['ci95'][1]:.4f}] | {paired} |")
PY
}
[ "${2:-}" = table ] && { table; exit 0; }
kept() { [ -f "$OUT/$1-val.json" ] && [ -f "$OUT/$1-test.json" ]; }
# The student the variants share; only teacher and student when the shipped recipe's results are kept.
phases=teacher,student,segment
kept "$DS-lite" && phases=teacher,student
stamp "$DS-lite ($phases)"
$PY train --config lite --dataset "$DS" --run "$DS-lite" --intensity "$I" --phase $phases \
  --epochs "teacher=$E,student=$E,segment=$E" --resume
STUDENT=runs/$DS-lite/student-best.pt
variant() {
  local name=$1; shift
  kept "$DS-$name" && return 0
  stamp "$DS-$name: $*"
  $PY train --dataset "$DS" --run "$DS-$name" --intensity "$I" --phase segment --epochs "segment=$E" \
    --detector-from "$STUDENT" --resume "$@"
}
evaluate() {
  for split in val test; do
    [ -f "$OUT/$1-$split.json" ] || $PY eval --model "runs/$1/segment-best.pt" --dataset "$DS" --split $split \
      --json --out "$OUT/$1-$split.json" > /dev/null
  done
  stamp "$1: $(.venv/bin/python -c "import json; print(*[round(json.load(open(f'$OUT/$1-{s}.json'))['summary']['dice']['mean'],4) for s in ('val','test')])" 2>&1)"
}
evaluate "$DS-lite"
variant nodfp --config lite --no-dfp; evaluate "$DS-nodfp"
variant nosfp --config lite --no-sfp; evaluate "$DS-nosfp"
variant prompts --config lite --tune prompts; evaluate "$DS-prompts"
variant noprompts --config lite --no-dfp --no-sfp; evaluate "$DS-noprompts"
variant encoder --config lite-adapters --tune encoder; evaluate "$DS-encoder"
stamp done
