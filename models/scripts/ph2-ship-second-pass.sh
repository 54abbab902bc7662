#!/usr/bin/env bash
# ldfsam-ph2 3.1.0 = 3.0.0's checkpoint (runs/ph2-encoder3) with a second decoder pass inside
# model.onnx, prompted by the first mask's box (publish --second-pass). Run it only when
# scripts/ph2-additions.sh has adopted that addition by the rule written before it ran (models/README,
# "PH2: inference-time additions within the budget": the highest mean Dice over the 72 validation
# images, above 3.0.0's); it refuses otherwise. Then scripts/ph2-release.sh: publish with 3.0.0's
# clean-ups (the test split measured there, once) and the presence gate refitted by 3.0.0's procedure;
# the candidate replaces models/ldfsam-ph2 only when every release gate holds, whatever its test Dice.
# Results go to results/ph2-ship-3.1.0/ (tracked). About 25 min on the 2 cores at rest.
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
RUN=ph2-encoder3
VERSION=3.1.0
OUT=results/ph2-ship-$VERSION
[ -f runs/$RUN/segment-best.pt ] || { echo "runs/$RUN/segment-best.pt is missing: 3.0.0's checkpoint (scripts/ph2-ship-encoder.sh)" >&2; exit 1; }

# The rule's verdict, from the kept evaluations of scripts/ph2-additions.sh.
.venv/bin/python - <<'PY'
import json, sys
from pathlib import Path
files = [Path(f"results/ph2-additions/{n}-val.json") for n in ("cv3", "cv4", "project")]
if not all(f.exists() for f in files):
    sys.exit("scripts/ph2-additions.sh has not run: nothing adopted")
cases = [c for f in files for c in json.loads(f.read_text())["cases"]]
candidates = {"none": "top box", "R": "second pass on the first mask's box",
              "H-mean": "hflip mean: mean of the top boxes of the slice and its flip", "H-best": "hflip best: the higher-scoring of the two top boxes"}
means = {name: sum(c[key] for c in cases) / len(cases) for name, key in candidates.items()}
best = max(means, key=lambda n: (means[n], n == "none"))  # a tie keeps none
print(f"{len(cases)} validation images: " + ", ".join(f"{n} {m:.4f}" for n, m in means.items()))
if best != "R":
    sys.exit(f"the rule adopts {best}, not the second pass: nothing to ship here")
PY

CLEANUPS=$(.venv/bin/python -c "import json; p = json.load(open('ldfsam-ph2/model.json'))['postprocessing']; \
print(json.dumps({k: p[k] for k in ('fillHoles', 'largestComponentOnly') if p.get(k)}))")
scripts/ph2-release.sh $RUN $VERSION "$CLEANUPS" $OUT "LDFSAM on LiteMedSAM (lite-adapters configuration): LiteMedSAM's \
TinyViT encoder at 128x128 with a bottleneck adapter after each attention (LiteMedSAM's weights frozen, the adapters \
tuned end to end), a YOLOv8n prompt generator distilled from YOLOv8s (box prompt + Dense and Sparse Feature Prompts), \
SAM's prompt encoder and mask decoder fine-tuned on PH2 dermoscopy; aspect kept (longest side 256 + padding); \
clean-ups chosen on validation: $CLEANUPS. Automatic and promptable (box, clicks). 3.0.0: the recipe chosen by \
4-fold cross-validation over PH2's training + validation subjects; $VERSION: the same network with a second decoder \
pass prompted by the first mask's box, adopted on 72 validation images (models/README)." --second-pass
