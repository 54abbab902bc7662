#!/usr/bin/env bash
# ldfsam-ph2 3.1.0 = 3.0.0's checkpoint (runs/ph2-encoder3) with a second decoder pass inside
# model.onnx, prompted by the first mask's box (publish --second-pass). Run it only when
# scripts/ph2-additions.sh has adopted that addition by the rule written before it ran (models/README,
# "PH2: inference-time additions within the budget": the highest mean Dice over the 72 validation
# images, above 3.0.0's); it refuses otherwise. Then scripts/ph2-release.sh: publish with 3.0.0's
# clean-ups (the test split measured there, once) and the presence gate refitted by 3.0.0's procedure;
# the candidate replaces models/ldfsam-ph2 only when every release gate holds, whatever its test Dice.
# Results go to results/ph2-ship-3.1.0/ (tracked). About 6 min on the 2 cores at rest (2026-12-07).
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
RUN=ph2-encoder3
VERSION=3.1.0
OUT=results/ph2-ship-$VERSION
[ -f runs/$RUN/segment-best.pt ] || { echo "runs/$RUN/segment-best.pt is missing: 3.0.0's checkpoint (scripts/ph2-ship-encoder.sh)" >&2; exit 1; }

# The rule's verdict, from the kept evaluations of scripts/ph2-additions.sh.
ADOPTED=$(scripts/ph2-additions.sh verdict)
[ "$ADOPTED" = R ] || { echo "the rule adopts $ADOPTED, not the second pass: nothing to ship here" >&2; exit 1; }
# The clean-ups the additions were measured with (3.0.0's), as box_candidates.py recorded them.
CLEANUPS=$(.venv/bin/python -c "import json; print(json.dumps(json.load(open('results/ph2-additions/project-val.json'))['postprocessing']))")
scripts/ph2-release.sh $RUN $VERSION "$CLEANUPS" $OUT "3.0.0: the recipe chosen by 4-fold cross-validation over PH2's \
training + validation subjects; $VERSION: the same network with a second decoder pass prompted by the first mask's box, \
adopted on 72 validation images (models/README)." --second-pass
