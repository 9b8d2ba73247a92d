#!/usr/bin/env bash
# Install the repaired wheel into a fresh virtual environment WITHOUT a compiler
# and run the test suite against the installed package, from outside the checkout.
#
#   tools/build_wheels.sh && tools/test_installed_wheel.sh
#
# WHEELHOUSE (default wheelhouse/) holds the wheel; PYTHON picks the interpreter
# for the venv (default python3); NNDL_FAST_TEST_VENV reuses a venv path.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-python3}"
WHEELHOUSE="$(cd "${WHEELHOUSE:-wheelhouse}" && pwd)"
ls "$WHEELHOUSE"/nndl_fast-*.whl >/dev/null 2>&1 || {
    echo "test_installed_wheel.sh: no nndl_fast wheel in $WHEELHOUSE (run tools/build_wheels.sh)" >&2
    exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VENV="${NNDL_FAST_TEST_VENV:-$WORK/venv}"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"

# No compiler may be used: binaries only, and any attempt to compile fails.
export CC=/bin/false CXX=/bin/false LDSHARED=/bin/false
"$PY" -m pip install --quiet --only-binary=:all: numpy scipy threadpoolctl pytest hypothesis
"$PY" -m pip install --no-index --find-links "$WHEELHOUSE" --only-binary=:all: nndl_fast
"$PY" -m pip show nndl_fast | sed -n '1,3p'

# Outside the checkout, so "import nndl_fast" can only find the installed package;
# test_packaging.py checks that it did (NNDL_FAST_EXPECT_INSTALLED=1).
cd "$WORK"
"$PY" -c "import nndl_fast, sys; print('nndl_fast from', nndl_fast.__file__)"
NNDL_FAST_EXPECT_INSTALLED=1 "$PY" -m pytest "$REPO/tests" -p no:cacheprovider -q "$@"
