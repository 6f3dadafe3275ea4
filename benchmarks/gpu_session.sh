#!/usr/bin/env bash
# The GPU session (issue 26): one prepared script for a lent GPU machine, whose time is short
# (15 minutes a session, a machine's start included; 10 minutes a command). In stages, in order
# of what matters most, each with its own time limit, under one deadline for the whole call:
#
#   tests       the GPU tests (CUDA graphs train as eager, the pinned prefetch) with the engine's
#               and the placements' suites; CUDA graphs are used below only if they pass
#   cv-warwick  RESULTS.md's WARWICK target (test Dice >= 0.90 for a fold ensemble chosen by
#               out-of-fold Dice): the recorded GPU search's top 3 configurations
#               (reproduction/cv/warwick-gpu-top3.yaml) trained on the one split (200 epochs;
#               with CUDA graphs this is also the graphed rerun of the recorded eager search),
#               then `analyze --cv 5 --refit`: 15 fold trainings at once, ranked out of fold,
#               each fold ensemble tested once, the winner refit on all 85 images
#   cv-mnist    the same for MNIST's target (accuracy >= 0.996): its top 2
#               (reproduction/cv/mnist-gpu-top2.yaml), 15 epochs, 10 fold trainings
#   placement   benchmarks/gpu_placement.py: four trials per GPU on a set larger than a quarter of
#               the GPU's memory (served from shared host memory) against the on-device placement,
#               GPU memory and utilisation sampled
#   loop        benchmarks/loop_throughput.py: the engine with and without CUDA graphs against
#               the textbook DataLoader loop
#
# Then summary.md (benchmarks/gpu_session_summary.py) and, where the device tool's $OUT is set,
# the results folder packed into $OUT (gpu-session.tar.gz, checkpoints left out) with summary.md
# and the log beside it. A stage that would not end before the deadline is skipped and says so;
# a second call with STAGES naming the rest finishes the session (DEVELOPERS.md: GPU sessions).
#
#   GPU_REVISION=abc1234 benchmarks/gpu_session.sh                 # on the GPU machine
#   STAGES="placement loop" BUDGET_S=240 benchmarks/gpu_session.sh  # a second call
#   REHEARSE=1 benchmarks/gpu_session.sh                           # here, on the CPU, tiny settings
#
# Environment: STAGES (default: all, in the order above), BUDGET_S (the deadline, seconds from
# the start; default 540), DEST (the results folder; default /tmp/gpu-session), REHEARSE=1 (CPU,
# one or two epochs, small data: checks the script, not the figures), GPU_REVISION (the commit
# the device copy holds: its git metadata can be stale), PYTHON.
# Packages: where `ray` is missing (the GPU machine's image has torch but not Ray or Optuna),
# .gpu/site.tar.xz (benchmarks/gpu_bundle.sh) is unpacked and put on PYTHONPATH; the data sets
# are read from $VISIONTUNE_DATA, else from .gpu/data.
set -uo pipefail
main() {  # the whole script as one function: bash parses it before running, so an edit made
          # while a (long) session runs cannot change what it runs
cd "$(dirname "$0")/.."
START=$SECONDS
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
STAGES=${STAGES:-tests cv-warwick cv-mnist placement loop}
BUDGET_S=${BUDGET_S:-540}
DEST=${DEST:-/tmp/gpu-session}
REHEARSE=${REHEARSE:-0}
RESERVE_S=25  # the summary and the packing, after the last stage
RUNS=$DEST/runs
mkdir -p "$DEST" "$RUNS"
LOG=$DEST/session.log
export PYTHONUNBUFFERED=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# The placement's large set (tens of GB) goes into the cache: on the repo's disk, not /tmp, which
# may be memory (tmpfs) and would then count as used memory.
export XDG_CACHE_HOME=${GPU_SESSION_CACHE:-$PWD/.gpu-cache}
say() { echo "[$((SECONDS - START))s] $*" | tee -a "$LOG"; }

# ---------------------------------------------------------------- packages and data
if ! "$PY" -c "import ray, optuna" 2>/dev/null; then
    [ -f .gpu/site.tar.xz ] || { say "no ray/optuna and no .gpu/site.tar.xz (run benchmarks/gpu_bundle.sh here)"; exit 1; }
    # Python's tarfile, not tar -J: the image need not have the xz program.
    "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
        .gpu/site.tar.xz /tmp/site || { say "could not unpack .gpu/site.tar.xz"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${VISIONTUNE_DATA:-}" ] && [ -d .gpu/data ]; then export VISIONTUNE_DATA=$PWD/.gpu/data; fi
: "${VISIONTUNE_DATA:?set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/, or carry .gpu/data}"

if [ "$REHEARSE" = 1 ]; then
    GPU=0; GRAPHS=false; LIMIT_SCALE=8  # two CPU cores, not sixteen and a GPU
    # The WARWICK grid without its 8-view test-time augmentation, which takes minutes on two cores.
    W_SPACE=$DEST/warwick-rehearsal.yaml; sed 's/tta: d4/tta: none/' reproduction/cv/warwick-gpu-top3.yaml > "$W_SPACE"
    W_EPOCHS=1; W_DATA="--train-limit 20"; W_CV="--cv-epochs 1"; W_SHARES="--cpus-per-trial 1"; W_FOLD_SHARES="--cpus-per-trial 1"
    M_EPOCHS=1; M_DATA="--train-limit 1000 --val-size 500"; M_SHARES="--cpus-per-trial 1"; M_FOLD_SHARES="--cpus-per-trial 1"
    PLACEMENT_ARGS="--gb 0.2 --rows 200 --epochs 2 --cpus-per-trial 0.5"
    LOOP_ARGS="--device cpu --quick --repeats 1"
else
    GPU=1; GRAPHS=false; LIMIT_SCALE=1
    W_SPACE=reproduction/cv/warwick-gpu-top3.yaml; W_EPOCHS=200; W_DATA=""; W_CV=""; W_SHARES="--gpus-per-trial 0.3 --cpus-per-trial 5"
    W_FOLD_SHARES="--gpus-per-trial 0.06 --cpus-per-trial 1"   # 15 fold trainings at once
    M_EPOCHS=15; M_DATA=""; M_SHARES="--gpus-per-trial 0.3 --cpus-per-trial 5"
    M_FOLD_SHARES="--gpus-per-trial 0.06 --cpus-per-trial 1"
    PLACEMENT_ARGS="--rows 10000 --epochs 2 --cpus-per-trial 4"
    LOOP_ARGS="--device cuda --repeats 3"
fi

{
    echo "revision: ${GPU_REVISION:-$(git rev-parse --short HEAD 2>/dev/null)} (GPU_REVISION: ${GPU_REVISION:-unset})"
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); stages: $STAGES; budget ${BUDGET_S}s; rehearsal: $REHEARSE"
    nproc | sed 's/^/cpus: /'
    df -h "$PWD" /tmp /dev/shm 2>/dev/null | sed 's/^/disk: /'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
    "$PY" -c "import sys, torch, torchvision, ray, optuna, numpy; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| ray', ray.__version__, '| optuna', optuna.__version__, '| numpy', numpy.__version__, '| cuda', torch.cuda.is_available())"
    "$PY" -c "import importlib.metadata as m
print('versions:', ', '.join(f'{n} {m.version(n)}' for n in ('typing-extensions', 'pydantic', 'packaging', 'msgpack', 'protobuf', 'pyarrow', 'pandas', 'scikit-image', 'matplotlib')))"
} > "$DEST/env.txt" 2>&1
cat "$DEST/env.txt" | tee -a "$LOG"
if [ "$GPU" = 1 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    say "no CUDA GPU visible to torch (REHEARSE=1 runs the script on the CPU)"; exit 1
fi

# ---------------------------------------------------------------- stages
: > "$DEST/stages.tsv"
stage() {  # stage NAME LIMIT_S COMMAND...: run within min(LIMIT_S, time left), log it, record its status
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET_S - (SECONDS - START) - RESERVE_S))
    if [ "$left" -lt 30 ]; then
        say "$name: skipped, ${left}s left of the budget"; printf '%s\tskipped\t0\n' "$name" >> "$DEST/stages.tsv"; return 1
    fi
    limit=$((limit * LIMIT_SCALE)); [ "$limit" -gt "$left" ] && limit=$left
    say "$name: up to ${limit}s: $*"
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$DEST/$name.log" 2>&1
    local rc=$?
    local status=passed; [ $rc -ne 0 ] && status="failed (rc $rc$([ $rc -eq 124 ] && echo ', time limit'))"
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - began))" >> "$DEST/stages.tsv"
    say "$name: $status after $((SECONDS - began))s; last lines:"; tail -n 4 "$DEST/$name.log" | tee -a "$LOG"
    return $rc
}

cross_validate() {  # cross_validate TASK SPACE TOP EPOCHS DATA SHARES FOLD_SHARES CV_ARGS
    local task=$1 space=$2 top=$3 epochs=$4 data=$5 shares=$6 fold_shares=$7 cv_args=$8
    rm -rf "${RUNS:?}/cv-$task"
    # shellcheck disable=SC2086  # the option strings split into words on purpose
    "$PY" -m visiontune search "$task" --space "$space" --searcher grid --scheduler none --max-epochs "$epochs" --top-k "$top" \
        --set cuda_graphs=$GRAPHS $data $shares --storage "$RUNS" --name "cv-$task" --no-report &&
    "$PY" -m visiontune analyze "$RUNS/cv-$task" --top "$top" --cv 5 --refit $cv_args $fold_shares \
        --out "$RUNS/cv-$task/analysis-cv"
}

export -f cross_validate  # run by `timeout` in a child bash, with what it reads
export PY RUNS
for name in $STAGES; do
    case $name in
        tests)
            stage tests 150 "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_cuda_graphs.py \
                tests/test_engine.py tests/test_placement.py
            # Graphs for the searches only where their tests ran on this GPU and passed.
            if [ $? -eq 0 ] && [ "$GPU" = 1 ] && ! grep -q "SKIPPED.*test_cuda_graphs" "$DEST/tests.log"; then
                GRAPHS=true
            fi
            say "cuda_graphs for the searches: $GRAPHS" ;;
        cv-warwick)
            export GRAPHS
            stage cv-warwick 360 bash -c 'cross_validate "$@"' _ warwick "$W_SPACE" 3 "$W_EPOCHS" "$W_DATA" \
                "$W_SHARES" "$W_FOLD_SHARES" "$W_CV" ;;
        cv-mnist)
            export GRAPHS
            stage cv-mnist 180 bash -c 'cross_validate "$@"' _ mnist reproduction/cv/mnist-gpu-top2.yaml 2 "$M_EPOCHS" "$M_DATA" \
                "$M_SHARES" "$M_FOLD_SHARES" "" ;;
        placement)
            # shellcheck disable=SC2086
            stage placement 200 "$PY" benchmarks/gpu_placement.py $PLACEMENT_ARGS --out "$DEST/placement/gpu_placement.json" ;;
        loop)
            # shellcheck disable=SC2086
            VISIONTUNE_BENCHMARK_RESULTS=$DEST stage loop 150 "$PY" benchmarks/loop_throughput.py $LOOP_ARGS ;;
        *) say "unknown stage $name (tests, cv-warwick, cv-mnist, placement, loop)"; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- summary and packing
"$PY" benchmarks/gpu_session_summary.py "$DEST" > "$DEST/summary.md" 2>> "$LOG" || say "summary failed"
say "summary: $DEST/summary.md"
if [ -n "${OUT:-}" ]; then  # the device tool brings back at most 8 files of 16 MiB: one archive
    tar -czf "$OUT/gpu-session.tar.gz" -C "$(dirname "$DEST")" --exclude='checkpoint_*' --exclude='*.pt' \
        --exclude='*.pkl' --exclude='events.out.tfevents*' "$(basename "$DEST")"
    cp "$DEST/summary.md" "$LOG" "$OUT/"
    ls -l "$OUT" | tee -a "$LOG"
fi
! grep -q failed "$DEST/stages.tsv"
}; main "$@"; exit  # on the line bash reads with the brace: nothing after it is read
