#!/usr/bin/env bash
# Issue 15: ldfsam-ph2 3.0.0 = the encoder-tuned recipe (`lite-adapters`, `--tune encoder`) trained
# on the project split. Run it only when scripts/ph2-cv.sh has decided for that recipe (its rule:
# the mean Dice over the 4 folds' validation images); it refuses otherwise.
# Steps (each resumable, or kept and skipped when run again):
#   1. the prompt generator as shipped: YOLOv8s teacher, YOLOv8n student distilled (LD), 30 epochs each;
#   2. phase 2 with the encoder's adapters tuned end to end on that student, 30 epochs;
#   3. the clean-ups chosen on validation: plain, fill holes, fill holes + largest component; the best
#      validation Dice, a tie going to the one with more clean-ups (no loss, fewer stray pieces);
#   4. scripts/ph2-release.sh: publish into a candidate folder (int8-fp16 behind the test Dice gate;
#      the test split measured there, once) and the presence gate; the candidate replaces
#      models/ldfsam-ph2 only when the gate's report meets every test bar (2026-12-07 the first fit
#      did not, see models/README "ldfsam-ph2 3.0.0").
# Results (validation, the choice, the presence report, the candidate's model.json) go to
# results/ph2-ship/ (tracked).
# Cost on the 2-core machine at rest: ~12 min detector + ~55 min phase 2 + evaluations and publish
# ~10 min + presence ~5 min.
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
PY=".venv/bin/python -m ldfsam_models"
I='{"default": {"kind": "minmax"}}'
OUT=results/ph2-ship
RUN=ph2-encoder3
VERSION=${PH2_SHIP_VERSION:-3.0.0}
mkdir -p $OUT runs
stamp() { echo "$(date -u +%H:%M:%S) $*"; }

# The cross-validation's verdict, from its kept results: all 4 folds, encoder-tuned mean above.
.venv/bin/python - <<'PY'
import json, sys
from pathlib import Path
means = {}
for recipe in ("shipped", "encoder"):
    files = [Path(f"results/ph2-cv/ph2-cv{k}-{recipe}-val.json") for k in range(1, 5)]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"the cross-validation is not finished ({', '.join(missing)} missing): run scripts/ph2-cv.sh first")
    # 30 validation images per fold: the mean over the 120 is the mean of the fold means.
    means[recipe] = sum(json.loads(f.read_text())["summary"]["dice"]["mean"] for f in files) / 4
print(f"cross-validation: shipped recipe {means['shipped']:.4f}, encoder-tuned {means['encoder']:.4f}")
if not means["encoder"] > means["shipped"]:
    sys.exit("the cross-validation keeps the shipped recipe: nothing to ship")
PY

stamp "prompt generator (teacher, student)"
$PY train --config lite --dataset ph2 --run ph2-ship-detector --intensity "$I" --phase teacher,student \
  --epochs teacher=30,student=30 --resume
stamp "phase 2, the encoder's adapters tuned end to end"
$PY train --config lite-adapters --tune encoder --dataset ph2 --run $RUN --intensity "$I" --phase segment \
  --epochs segment=30 --detector-from runs/ph2-ship-detector/student-best.pt --resume

CANDIDATES=('{}' '{"fillHoles": true}' '{"fillHoles": true, "largestComponentOnly": true}')
for i in "${!CANDIDATES[@]}"; do
  f=$OUT/val-cleanup-$i.json
  [ -f "$f" ] || $PY eval --model runs/$RUN/segment-best.pt --dataset ph2 --split val --postprocessing "${CANDIDATES[$i]}" \
    --num-overlays 0 --json --out "$f" > /dev/null
done
CHOSEN=$(.venv/bin/python - "$OUT" "${CANDIDATES[@]}" <<'PY'
import json, sys
from pathlib import Path
out, candidates = Path(sys.argv[1]), sys.argv[2:]
dice = [json.loads((out / f"val-cleanup-{i}.json").read_text())["summary"]["dice"]["mean"] for i in range(len(candidates))]
best = max(range(len(dice)), key=lambda i: (round(dice[i], 4), i))  # a tie (4 decimals) goes to more clean-ups
lines = [f"| `{c}` | {d:.4f} | {'yes' if i == best else ''} |" for i, (c, d) in enumerate(zip(candidates, dice))]
(out / "cleanup-choice.md").write_text("| clean-ups | val Dice | chosen |\n| --- | --- | --- |\n" + "\n".join(lines) + "\n")
print(candidates[best])
PY
)
stamp "clean-ups chosen on validation: $CHOSEN ($OUT/cleanup-choice.md)"

scripts/ph2-release.sh $RUN "$VERSION" "$CHOSEN" $OUT "$VERSION: the recipe chosen by 4-fold cross-validation over \
PH2's training + validation subjects (models/README)."
