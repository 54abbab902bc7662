#!/usr/bin/env bash
# npm run lint (also a step of npm test): ESLint over the TypeScript and JavaScript (eslint.config.js),
# prettier --check over the code (.prettierrc), ruff over the Python (models/pyproject.toml's
# [tool.ruff], also for test/tools/ and bench/). All three run; the status is 1 when any found something.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$root/node_modules/.bin"
ruff="$root/models/.venv/bin/ruff"
status=0
echo "lint: eslint"
"$bin/eslint" --max-warnings 0 . || status=1
echo "lint: prettier --check"
"$bin/prettier" --check --log-level warn '{server,extension,test,bench,scripts}/**/*.{ts,js,mjs,json}' '*.{ts,js}' || status=1
echo "lint: ruff"
if [ -x "$ruff" ]; then
  "$ruff" check --output-format concise --config models/pyproject.toml test/tools bench models/tests models/ldfsam_models || status=1
else
  echo "lint: $ruff is missing: run npm run setup:python (ruff is pinned in models/pyproject.toml)" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "lint: clean"
exit "$status"
