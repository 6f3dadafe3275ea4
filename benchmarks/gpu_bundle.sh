#!/usr/bin/env bash
# What must travel to a lent GPU machine, whose image has torch and most of the scientific stack
# but not Ray or Optuna, and which cannot reach a package index. Writes, at the repo's root:
#   .gpu/site.tar.xz  the packages that image lacks (ray[tune], optuna and their dependencies,
#                     pinned to .venv's versions), unpacked from their wheels into one site folder
#                     and slimmed: Ray's Java jars, dashboard web UI, RLlib, Serve, LLM and test
#                     folders are dropped (none is used by ray.tune; Ray runs with
#                     include_dashboard=False), .dist-info folders kept;
#   .gpu/data/        copies of $VISIONTUNE_DATA's mnist/, WARWICK/ and README.md.
# The device tool carries at most 64 MiB (the tracked files plus `carry`); this script prints the
# sizes and fails over 62 MiB. Reruns replace .gpu/.
#
#   benchmarks/gpu_bundle.sh        # for the GPU machine (Python 3.12)
#   benchmarks/gpu_bundle.sh 3.11   # a rehearsal with this machine's .venv (Python 3.11)
#
# There (run's carry: [".gpu"]), before anything imports ray:
#   mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site &&
#     export PYTHONPATH=/tmp/site:$PWD VISIONTUNE_DATA=$PWD/.gpu/data
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
: "${VISIONTUNE_DATA:?set VISIONTUNE_DATA to the folder holding mnist/ and WARWICK/}"
LIMIT_MIB=62

# The closure of the project's dependencies (pyproject.toml; ray with its tune extra) less what the
# GPU image holds (/work/.library/device/KINDS.md, "Python packages already there").
# typing-extensions is there, but in a version not read here: pydantic (through ray's tune extra)
# needs a recent one, so ours travels too and comes first on PYTHONPATH.
MISSING="ray optuna alembic annotated-types colorlog jsonschema jsonschema-specifications mako
    pydantic pydantic-core referencing rpds-py sqlalchemy tensorboardx typing-inspection typing-extensions"
PINS=$(.venv/bin/python -c 'import sys, importlib.metadata as m
print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $MISSING)
echo "packages: $PINS"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$TMP/whl" $PINS
SITE=$TMP/site
for w in "$TMP"/whl/*.whl; do unzip -q -o "$w" -d "$SITE"; done
wheels=$(du -cb "$TMP"/whl/*.whl | tail -1 | cut -f1)
before=$(du -sb "$SITE" | cut -f1)
rm -rf "$SITE"/ray/{jars,dashboard/client/build,rllib,serve,llm}
find "$SITE/ray" -type d -name tests -prune -exec rm -rf {} +
find "$SITE" -name '*.js.map' -delete
after=$(du -sb "$SITE" | cut -f1)

mkdir -p .gpu
rm -rf .gpu/site.tar.xz .gpu/data
tar -C "$SITE" -cf - . | xz -9 -T1 > .gpu/site.tar.xz
mkdir -p .gpu/data
cp -r --no-preserve=mode "$VISIONTUNE_DATA"/{mnist,WARWICK,README.md} .gpu/data/

mib() { awk -v b="$1" 'BEGIN { printf "%6.1f MiB", b / 1048576 }'; }
# What travels: tracked and untracked-but-not-ignored files (.gpu/ is ignored), plus .gpu.
tree=$(git ls-files -z --cached --others --exclude-standard | { du --files0-from=- -cb 2>/dev/null || true; } | tail -1 | cut -f1)
site=$(stat -c %s .gpu/site.tar.xz)
data=$(du -sb .gpu/data | cut -f1)
total=$((tree + $(du -sb .gpu | cut -f1)))
echo "wheels          $(mib "$wheels")"
echo "site folder     $(mib "$before") unpacked, $(mib "$after") slimmed"
echo "site.tar.xz     $(mib "$site")"
echo "data            $(mib "$data")"
echo "working tree    $(mib "$tree")"
echo "total travels   $(mib "$total") (limit 64 MiB)"
if ((total > LIMIT_MIB * 1048576)); then
    echo "gpu_bundle: $(mib "$total") would travel, over the ${LIMIT_MIB} MiB this script allows" >&2
    exit 1
fi
