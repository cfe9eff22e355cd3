#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs ladet into it, with the test extras when asked.
# Usage: scripts/bootstrap.sh [test]
# torch/torchvision are pinned to versions that pip finds locally on the project machines;
# elsewhere pip downloads them (pyproject.toml accepts torch 2.3..2.14.1 with its torchvision).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
stamp=".venv/.ladet-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import ladet, torch, torchvision" 
  touch "$stamp"
fi
