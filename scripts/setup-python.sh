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
echo "setup-python: $venv ready ($("$venv/bin/python" -c 'import pydicom,numpy;print("pydicom",pydicom.__version__,"numpy",numpy.__version__)'))"
