#!/usr/bin/env bash
# PH2 prompt generator trained longer (teacher 90 epochs, student 30 as shipped; the shipped recipe's 30/30 was still
# rising at its last epoch), same everything else. Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."  # models/
export PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
echo "$(date -u +%H:%M:%S) start"
.venv/bin/python -m ldfsam_models train --config lite --dataset ph2 --run ph2-det --intensity '{"default": {"kind": "minmax"}}' \
  --phase teacher,student --epochs teacher=90,student=30 --resume
echo "$(date -u +%H:%M:%S) done"
