#!/usr/bin/env bash
# CUDA self-check of ladet on a machine with a GPU: one line per check (AMP float16/bfloat16
# training of PAA-R50 at 800x1333, LAD with an R101 teacher, host syncs of the assignment,
# deterministic mode, evaluation/predict voted boxes against fp32, 2-process NCCL when two GPUs
# are present). Under 8 minutes on one H100. Without CUDA it says so and exits 0.
#
#   bash scripts/gpu_check.sh                 # all checks on cuda:0
#   bash scripts/gpu_check.sh --iterations 5  # more timed steps per check
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
[ -x "$python" ] || python="python"
exec "$python" -m ladet.selfcheck --device cuda "$@"
