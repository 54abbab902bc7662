#!/usr/bin/env bash
# Runs the Python tests of models/ in the project's venv (npm run test:models).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/models/.venv/bin/python"
[ -x "$py" ] || { echo "test:models: $py is missing; run npm run setup:python" >&2; exit 1; }
cd "$root/models"
exec "$py" -m pytest -q "$@"
