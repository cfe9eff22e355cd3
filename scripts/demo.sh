#!/usr/bin/env bash
# The main job on the built-in dataset: sets up .venv, generates the data, trains a teacher, then
# a baseline, a LAD and a SoLAD student with identical budgets, prints their AP side by side
# (paper Table 2 in miniature) and writes detection and assignment pictures to runs/demo/<budget>/
# (runs/demo/small/ by default). Run it again after an interruption: finished runs are reused and
# the interrupted one resumes from its latest.pth. Disk: about 0.7 GB per budget folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m ladet.reproduce --out runs/demo "$@"
