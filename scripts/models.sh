#!/usr/bin/env bash
# npm run model:* -> python -m ldfsam_models in the project's venv (see models/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/models/.venv/bin/python"
[ -x "$py" ] || { echo "models: $py is missing; run npm run setup:python" >&2; exit 1; }
exec "$py" -m ldfsam_models "$@"
