#!/usr/bin/env bash
# GPU check: one prepared script that runs within 8 minutes on one H100 and prints
#   1. loop throughput of both tasks, fp32 and bf16, each with and without CUDA graphs, against
#      the textbook DataLoader loop;
#   2. a 16-trial MNIST search of the mnist-gpu space (up to 15 epochs a trial) packed four
#      trials per GPU (--gpus-per-trial 0.25), with the GPU's utilisation sampled every half
#      second while it runs;
#   3. the time until that search's first configuration reached 0.99 validation accuracy.
# The whole GPU session of issue 26 (tests, cross-validations, placements, loop) is gpu_session.sh.
# Needs visiontune installed (.venv, or PYTHON=...) and the data sets under $VISIONTUNE_DATA.
# Figures go to ${GPU_CHECK_DEST:-benchmarks/results/gpu-check}/, the search's run folder to
# ${GPU_CHECK_RUNS:-runs}/gpu-mnist (reproduction/results_gpu.sh goes on from it); the last line
# is the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=${GPU_CHECK_DEST:-benchmarks/results/gpu-check}
RUNS=${GPU_CHECK_RUNS:-runs}
mkdir -p "$DEST" "$RUNS"
export PYTHONUNBUFFERED=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
: "${VISIONTUNE_DATA:?set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }

echo "== 1. loop throughput (cuda: fp32, bf16, with and without CUDA graphs)"
timeout 200 "$PY" benchmarks/loop_throughput.py --device cuda --repeats 3 | tee "$DEST/loop.txt"

echo "== 2. 16-trial MNIST search, four trials per GPU"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$DEST/gpu_utilisation.csv" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null' EXIT
rm -rf "$RUNS/gpu-mnist"
timeout 300 "$PY" -m visiontune search mnist --space mnist-gpu --trials 16 --max-epochs 15 \
    --gpus-per-trial 0.25 --cpus-per-trial 2 --storage "$RUNS" --name gpu-mnist --no-report \
    | tee "$DEST/search.txt"
kill $SAMPLER 2>/dev/null

echo "== 3. summary"
"$PY" benchmarks/gpu_summary.py "$DEST/gpu_utilisation.csv" "$RUNS/gpu-mnist" "$DEST/loop.txt" \
    | tee "$DEST/summary.txt"
