#!/usr/bin/env bash
# Runs the whole ladet test suite on the CPU (sets up .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q "$@"
