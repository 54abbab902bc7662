#!/usr/bin/env bash
# PH2 ablations of lite, retrained (issue 15 item 6): the shipped recipe, then phase 2 with DFP off,
# SFP off, feature prompts only (decoder frozen), and the encoder's adapters tuned end to end, all on
# the same distilled student; each evaluated on val and test (native resolution, no clean-up).
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
PY=".venv/bin/python -m ldfsam_models"
I='{"default": {"kind": "minmax"}}'
mkdir -p runs/ablate
stamp() { echo "$(date -u +%H:%M:%S) $*"; }
stamp "ph2-lite (teacher, student, segment)"
$PY train --config lite --dataset ph2 --run ph2-lite --intensity "$I" --phase teacher,student,segment \
  --epochs teacher=30,student=30,segment=30 --resume
STUDENT=runs/ph2-lite/student-best.pt
variant() {
  local name=$1; shift
  stamp "ph2-$name: $*"
  $PY train --dataset ph2 --run ph2-$name --intensity "$I" --phase segment --epochs segment=30 \
    --detector-from $STUDENT --resume "$@"
}
evaluate() {
  for split in val test; do
    [ -f runs/ablate/$1-$split.json ] || $PY eval --model runs/$1/segment-best.pt --dataset ph2 --split $split \
      --json --out runs/ablate/$1-$split.json > /dev/null
  done
  stamp "$1: $(.venv/bin/python -c "import json; print(*[round(json.load(open(f'runs/ablate/$1-{s}.json'))['summary']['dice']['mean'],4) for s in ('val','test')])" 2>&1)"
}
evaluate ph2-lite
variant nodfp --config lite --no-dfp; evaluate ph2-nodfp
variant nosfp --config lite --no-sfp; evaluate ph2-nosfp
variant prompts --config lite --tune prompts; evaluate ph2-prompts
variant encoder --config lite-adapters --tune encoder; evaluate ph2-encoder
stamp done
