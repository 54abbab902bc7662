#!/usr/bin/env bash
# Issue 15: which PH2 recipe to ship, decided on cross-validation instead of PH2's 12 validation
# images. Both recipes of models/README's PH2 ablations (the shipped one: detector distilled, phase 2
# on cached embeddings; and the encoder's adapters tuned end to end) are trained on each of 4 folds of
# the 120 train + val subjects (`--fold K/4`; the 30 test images are in no fold and are not read) and
# evaluated on the fold they did not see. Resumable: every run continues where it stopped (epoch by
# epoch); run it again after an interruption. Each finished evaluation is a result file in
# models/results/ph2-cv/ (tracked: commit it; runs/ and its checkpoints may not outlive the machine),
# and a run whose result is there is not trained again. Prints the table at the end (and
# `scripts/ph2-cv.sh table` prints it for the folds done so far).
# The rule, fixed before the folds' results: the encoder-tuned recipe ships if its mean Dice over the
# 4 folds' validation images is above the shipped recipe's (the paired per-image difference > 0);
# the bootstrap interval is reported with it, and an interval across 0 is said to be one.
# Cost on the 2-core machine: per fold ~26 min detector + 8 min embedding cache + 24 min phase 2 +
# ~150 min encoder-tuned phase 2; about 14 h for the 4 folds.
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
PY=".venv/bin/python -m ldfsam_models"
I='{"default": {"kind": "minmax"}}'
FOLDS=${PH2_CV_FOLDS:-4}
OUT=results/ph2-cv
mkdir -p $OUT runs
stamp() { echo "$(date -u +%H:%M:%S) $*"; }

table() {
  .venv/bin/python - "$OUT" "$FOLDS" <<'PY'
import json, sys
from pathlib import Path
from ldfsam_models.metrics import paired_difference
out, folds = Path(sys.argv[1]), int(sys.argv[2])
rows, pairs = [], []
per_image = {"encoder": {}, "shipped": {}}  # case -> Dice, over the folds kept per image (disjoint)
for k in range(1, folds + 1):
    d, cases = {}, {}
    for recipe in ("shipped", "encoder"):
        f = out / f"ph2-cv{k}-{recipe}-val.json"
        result = json.loads(f.read_text()) if f.exists() else None
        d[recipe] = result["summary"]["dice"]["mean"] if result else None
        # A result kept only as its mean (its per-image rows were lost with a machine) has cases null.
        cases[recipe] = {c["id"]: c["dice"] for c in result["cases"]} if result and result["cases"] else None
    rows.append((k, d))
    if None not in d.values():
        pairs.append(d["encoder"] - d["shipped"])
    if None not in cases.values():
        for recipe, dice in cases.items():
            per_image[recipe].update(dice)
print("| fold (30 val images) | shipped recipe | encoder's adapters tuned | difference |")
print("| --- | --- | --- | --- |")
fmt = lambda v: "-" if v is None else f"{v:.4f}"
for k, d in rows:
    diff = None if None in d.values() else d["encoder"] - d["shipped"]
    print(f"| {k}/{folds} | {fmt(d['shipped'])} | {fmt(d['encoder'])} | {'-' if diff is None else f'{diff:+.4f}'} |")
if pairs:
    mean = sum(pairs) / len(pairs)
    print(f"\nfolds with both recipes: {len(pairs)} of {folds}; mean difference (encoder - shipped) {mean:+.4f}; "
          f"encoder better on {sum(p > 0 for p in pairs)} of {len(pairs)}")
if per_image["shipped"]:
    # The same difference per image, paired, with eval's bootstrap 95% interval over the images.
    ci, better, n = paired_difference(per_image["encoder"], per_image["shipped"])
    print(f"per image, paired ({n} images): {ci.mean:+.4f} [95% CI {ci.low:+.4f}, {ci.high:+.4f}]; "
          f"encoder better on {better} of {n}")
PY
}
[ "${1:-}" = table ] && { table; exit 0; }

done_() { [ -f "$OUT/$1-val.json" ]; }  # a result kept: its run is not trained again

evaluate() {  # run, fold, name
  local f=$OUT/$3-val.json
  [ -f "$f" ] || $PY eval --model runs/$1/segment-best.pt --dataset ph2 --split val --fold "$2" --num-overlays 0 --json --out "$f" > /dev/null
  stamp "$3: val Dice $(.venv/bin/python -c "import json; print(round(json.load(open('$f'))['summary']['dice']['mean'], 4))")"
}

for k in $(seq 1 "$FOLDS"); do
  fold=$k/$FOLDS
  done_ ph2-cv$k-shipped && done_ ph2-cv$k-encoder && continue
  # The shipped recipe's phases; only teacher and student when its result is kept but the encoder
  # run still needs the fold's student (seeded, yet not bit for bit the same student on another machine).
  phases=teacher,student,segment
  done_ ph2-cv$k-shipped && phases=teacher,student
  stamp "fold $fold: shipped recipe ($phases)"
  $PY train --config lite --dataset ph2 --run ph2-cv$k --fold "$fold" --intensity "$I" --phase $phases \
    --epochs teacher=30,student=30,segment=30 --resume
  done_ ph2-cv$k-shipped || evaluate ph2-cv$k "$fold" ph2-cv$k-shipped
  done_ ph2-cv$k-encoder && continue
  stamp "fold $fold: encoder's adapters tuned end to end (the fold's student as detector)"
  $PY train --config lite-adapters --tune encoder --dataset ph2 --run ph2-cv$k-encoder --fold "$fold" --intensity "$I" \
    --phase segment --epochs segment=30 --detector-from runs/ph2-cv$k/student-best.pt --resume
  evaluate ph2-cv$k-encoder "$fold" ph2-cv$k-encoder
done
table
stamp done
