#!/usr/bin/env bash
# The searches behind RESULTS.md, on one GPU: each chooses its configurations on validation,
# then the top configurations (MNIST: two, WARWICK: one) are retrained with two more seeds
# (three runs each, the search's own included), ranked by mean validation score, and tested
# once per run.
#
#   reproduction/results_gpu.sh [STORAGE]          # default runs/results; about 6 minutes on one H100
#
# MNIST's search is the one benchmarks/gpu_check.sh runs (16 trials of the mnist-gpu space,
# four per GPU); if its run folder is not in STORAGE yet, this script runs it first.
# Needs visiontune installed (.venv, or PYTHON=...) and the data sets under $VISIONTUNE_DATA.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STORAGE=${1:-runs/results}
export PYTHONUNBUFFERED=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
: "${VISIONTUNE_DATA:?set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/}"
mkdir -p "$STORAGE"

if [ ! -f "$STORAGE/gpu-mnist/search.json" ]; then
    "$PY" -m visiontune search mnist --space mnist-gpu --trials 16 --max-epochs 15 \
        --gpus-per-trial 0.25 --cpus-per-trial 2 --storage "$STORAGE" --name gpu-mnist --no-report
fi
# MNIST's retraining runs beside the WARWICK search: both fit on the GPU at once.
"$PY" -m visiontune analyze "$STORAGE/gpu-mnist" --top 2 --reseed 2 > "$STORAGE/gpu-mnist-reseed.log" 2>&1 &
MNIST_RESEED=$!
"$PY" -m visiontune search warwick --space warwick-unet-gpu --trials 32 --max-epochs 120 \
    --gpus-per-trial 0.125 --cpus-per-trial 1 --storage "$STORAGE" --name gpu-warwick --no-report
"$PY" -m visiontune analyze "$STORAGE/gpu-warwick" --top 1 --reseed 2
wait $MNIST_RESEED
status=$?
cat "$STORAGE/gpu-mnist-reseed.log"
exit $status
