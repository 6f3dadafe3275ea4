#!/usr/bin/env bash
# The searches behind RESULTS.md, on one GPU: each chooses its configurations on validation,
# then the top configurations (MNIST: two, WARWICK: three) are retrained with two more seeds
# (three runs each, the search's own included), ranked by mean validation score, and tested
# once per run.
#
#   reproduction/results_gpu.sh [STORAGE] [TASKS]   # defaults: runs/results, "mnist warwick"
#
# Then (CV=0 skips it) the same top configurations are cross-validated on 5 folds of
# train+validation (analyze --cv 5, nnU-Net's protocol): ranked by the out-of-fold metric, and
# each one's 5-model fold ensemble tested once; WARWICK's winner also refit on all 85 images.
# RESULTS.md's cross-validation targets (WARWICK Dice >= 0.90, MNIST accuracy >= 0.996) are for
# these fold ensembles; the fold trainings add about 3 (MNIST) and 6 (WARWICK) minutes.
#
# About 1 minute (MNIST) and 6 minutes (WARWICK) on one H100 or H200. MNIST's search is the one
# benchmarks/gpu_check.sh runs (16 trials of the mnist-gpu space, four per GPU); if its run
# folder is in STORAGE already, it is not run again.
# Needs visiontune installed (.venv, or PYTHON=...) and the data sets under $VISIONTUNE_DATA.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STORAGE=${1:-runs/results}
TASKS=${2:-mnist warwick}
export PYTHONUNBUFFERED=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
: "${VISIONTUNE_DATA:?set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/}"
mkdir -p "$STORAGE"
status=0

if [[ " $TASKS " == *" mnist "* ]]; then
    if [ ! -f "$STORAGE/gpu-mnist/search.json" ]; then
        "$PY" -m visiontune search mnist --space mnist-gpu --trials 16 --max-epochs 15 --searcher tpe \
            --gpus-per-trial 0.25 --cpus-per-trial 2 --storage "$STORAGE" --name gpu-mnist --no-report
    fi
    "$PY" -m visiontune analyze "$STORAGE/gpu-mnist" --top 2 --reseed 2 --gpus-per-trial 0.25 || status=1
    if [ "${CV:-1}" != 0 ]; then
        "$PY" -m visiontune analyze "$STORAGE/gpu-mnist" --top 2 --cv 5 --gpus-per-trial 0.25 --cpus-per-trial 2 \
            --out "$STORAGE/gpu-mnist/analysis-cv" || status=1
    fi
fi
if [[ " $TASKS " == *" warwick "* ]]; then
    # Twelve trials share the GPU (each needs one CPU core); the six retrains run at once.
    "$PY" -m visiontune search warwick --space warwick-unet-gpu --trials 40 --max-epochs 200 --searcher tpe \
        --gpus-per-trial 0.08 --cpus-per-trial 1 --time-budget 5m --storage "$STORAGE" --name gpu-warwick \
        --no-report || status=1
    "$PY" -m visiontune analyze "$STORAGE/gpu-warwick" --top 3 --reseed 2 --gpus-per-trial 0.16 || status=1
    if [ "${CV:-1}" != 0 ]; then
        # Fifteen fold trainings (3 configurations x 5 folds) share the GPU, then the refit.
        "$PY" -m visiontune analyze "$STORAGE/gpu-warwick" --top 3 --cv 5 --refit --gpus-per-trial 0.06 \
            --cpus-per-trial 1 --out "$STORAGE/gpu-warwick/analysis-cv" || status=1
    fi
fi
exit $status
