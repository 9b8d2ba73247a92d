#!/usr/bin/env bash
# Build the compiled extensions with AddressSanitizer in a scratch copy of the
# source tree and run the kernel tests there, once per kernel path this processor
# can run. The in-place build of this tree is left untouched.
#
#   tools/asan_check.sh                      # default test selection, every path
#   tools/asan_check.sh tests/test_network.py -k thread
#   KERNELS=generic tools/asan_check.sh      # the portable kernels only
#
# Kernel paths: every one this build has and this processor runs
# (nndl_fast._dense.kernel_paths(): "avx512", "avx2", "generic"), each forced by
# NNDL_FAST_KERNELS=<path>, which selects the dense and the conv kernels alike.
#
# Environment: KEEP=1 keeps the scratch copy; JOBS=n parallel compile jobs (2);
# KERNELS="avx2 generic" the paths to run (default: all of them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
libasan="$(${CC:-gcc} -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "asan_check: libasan.so not found (needs gcc with AddressSanitizer)" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/nndl_fast_asan.XXXXXX")"
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "scratch copy kept: $work" || rm -rf "$work"; }
trap cleanup EXIT

# Sources only (tracked and untracked-but-not-ignored files): every extension is
# regenerated and recompiled with the sanitizer.
(cd "$here" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$here" && xargs -0 tar cf - --ignore-failed-read 2>/dev/null) \
    | (cd "$work" && tar xf -)
# The bundled MNIST is ignored by git in some checkouts; link it when present.
if [ ! -e "$work/nndl_fast/data/train-images-idx3-ubyte.gz" ] && [ -d "$here/nndl_fast/data" ]; then
    mkdir -p "$work/nndl_fast/data"
    cp -n "$here"/nndl_fast/data/*.gz "$work/nndl_fast/data/" 2>/dev/null || true
fi

echo "asan_check: building in $work with -fsanitize=address"
(cd "$work" && NNDL_FAST_SANITIZE=address NNDL_FAST_DEBUG_CHECKS=1 \
    "$python" setup.py build_ext --inplace -j "${JOBS:-2}" > build.log 2>&1) || {
    tail -30 "$work/build.log"; echo "asan_check: build failed" >&2; exit 2; }

# Make sure the sanitizer really is compiled in.
so="$(ls "$work"/nndl_fast/_dense*.so | head -1)"
if [ "$(nm -D "$so" 2>/dev/null | grep -c __asan_)" = 0 ]; then
    echo "asan_check: $so is not instrumented" >&2; exit 2
fi

if [ "$#" -eq 0 ]; then
    # The dense kernels (chapters 1 and 3), then the chapter-6 conv kernels.
    set -- tests/test_properties.py tests/test_validation.py tests/test_network.py \
           tests/test_reliability.py tests/test_network3.py tests/test_conv_kernels.py \
           tests/test_threads.py tests/test_kernel_paths.py
fi
existing=()
for t in "$@"; do
    case "$t" in -*) existing+=("$t");; *) [ -e "$work/${t%%::*}" ] && existing+=("$t");; esac
done

# CPython itself is not built with ASan: preload the runtime, and do not report
# the interpreter's intentional leaks at exit.
cd "$work"
export LD_PRELOAD="$libasan" PYTHONPATH="$work" NNDL_FAST_ASAN=1 \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:${ASAN_OPTIONS:-}"
kernels="${KERNELS:-$(env -u NNDL_FAST_KERNELS "$python" -c \
    'from nndl_fast import _dense; print(" ".join(_dense.kernel_paths()))')}"
status=0
for k in $kernels; do
    export NNDL_FAST_KERNELS="$k"
    echo "asan_check: kernels $k: running ${existing[*]}"
    s=0
    "$python" -m pytest -q -p no:cacheprovider -x "${existing[@]}" || s=$?
    if [ "$s" -eq 0 ]; then
        echo "asan_check: kernels $k: OK (no AddressSanitizer reports)"
    else
        echo "asan_check: kernels $k: FAILED (pytest exit status $s)" >&2
        status=$s
    fi
done
exit "$status"
