#!/usr/bin/env bash
# Runs the whole ladet check on the CPU (sets up .venv first): lint, format, types, then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy src/ladet"; .venv/bin/mypy src/ladet
echo "== pytest"
exec .venv/bin/python -m pytest -q "$@"
