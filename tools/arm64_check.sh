#!/usr/bin/env bash
# The C kernels (src_c/dense.c, and src_c/convnet.c's conv-net engine) against
# tools/kernel_check.c, with no Python: cross-compiled for ARM64 (NEON, the
# "generic" path there) and run
# under qemu, and built natively for every x86-64 path this processor runs,
# and as MSVC builds it (the baseline path alone, in the struct-of-lanes
# fallback of compilers without vector extensions). Each build uses the flags setup.py gives the
# extensions (-O3 -fno-trapping-math).
#
#   tools/arm64_check.sh                # ARM64 and native
#   tools/arm64_check.sh arm64          # ARM64 only
#   tools/arm64_check.sh native         # native only
#   VERBOSE=1 tools/arm64_check.sh      # every kernel's PASS line for every run
#
# ARM64 needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# qemu-user-static; without them that part prints "skipped: ..." and does not
# fail. clang, where present, builds for ARM64 (the compiler of macOS) and
# natively too. Exit status: 0 when every run passed, 1 when a check failed,
# 2 when a build failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
parts="${*:-arm64 native}"
cflags=(-O3 -fno-trapping-math -I"$here/src_c")
sources=("$here/tools/kernel_check.c" "$here/src_c/dense.c" "$here/src_c/convnet.c")
work="$(mktemp -d "${TMPDIR:-/tmp}/nndl_fast_kernel_check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for part in $parts; do
    case "$part" in arm64|native) ;; *)
        echo "usage: $0 [arm64] [native]" >&2; exit 2;;
    esac
done
wants() { [[ " $parts " == *" $1 "* ]]; }

# ------------------------------------------------------------ builds
# Each build (name, then the compiler command) runs in the background; its log
# is kept for a failure's report.
names=()
pids=()
build() {
    local name="$1"
    shift
    ("$@" "${cflags[@]}" "${sources[@]}" -lm -o "$work/$name" > "$work/$name.log" 2>&1) &
    names+=("$name")
    pids+=("$!")
}

# Whether compiler command "$@" links a static ARM64 program.
links_arm64() {
    printf 'int main(void) { return 0; }\n' > "$work/probe.c"
    "$@" -static "$work/probe.c" -o "$work/probe" > "$work/probe.log" 2>&1
}

arm64_runner=""
if wants arm64; then
    if ! command -v aarch64-linux-gnu-gcc > /dev/null; then
        echo "arm64_check: skipped: ARM64: no cross compiler aarch64-linux-gnu-gcc" \
             "(Debian package gcc-aarch64-linux-gnu)"
    elif ! command -v qemu-aarch64-static > /dev/null; then
        echo "arm64_check: skipped: ARM64: no qemu-aarch64-static" \
             "(Debian package qemu-user-static)"
    elif ! links_arm64 aarch64-linux-gnu-gcc; then
        echo "arm64_check: skipped: ARM64: aarch64-linux-gnu-gcc cannot link a static program" \
             "(Debian package libc6-dev-arm64-cross)"
    else
        arm64_runner=qemu-aarch64-static
        build arm64-gcc aarch64-linux-gnu-gcc -static
        if command -v clang > /dev/null && links_arm64 clang --target=aarch64-linux-gnu; then
            build arm64-clang clang --target=aarch64-linux-gnu -static
        fi
    fi
fi
if wants native; then
    build native-gcc "${CC:-gcc}"
    # what MSVC builds: structs of lanes, the baseline path alone
    build native-gcc-novector "${CC:-gcc}" -DNF_NO_VECTOR_EXT -DNF_BASELINE_ONLY
    if command -v clang > /dev/null; then
        build native-clang clang
    fi
fi

built=()
for i in "${!names[@]}"; do
    if wait "${pids[$i]}"; then
        built+=("${names[$i]}")
    else
        echo "arm64_check: FAILED to build ${names[$i]}:"
        tail -40 "$work/${names[$i]}.log"
        exit 2
    fi
done

# ------------------------------------------------------------ runs
failed=0
runs=0
run() {   # name, path
    local name="$1" path="$2" runner=()
    [[ "$name" == arm64-* ]] && runner=("$arm64_runner")
    local out status=0
    out="$("${runner[@]}" "$work/$name" "$path" 2>&1)" || status=$?
    runs=$((runs + 1))
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "== $name, $path path: FAILED (exit status $status)"
        echo "$out"
    elif [ "${VERBOSE:-0}" != 0 ] || [[ "$name" == arm64-gcc ]]; then
        echo "== $name, $path path"
        echo "$out"
    else
        echo "== $name, $path path: $(echo "$out" | tail -1)"
    fi
}

for name in "${built[@]}"; do
    runner=()
    [[ "$name" == arm64-* ]] && runner=("$arm64_runner")
    paths="$("${runner[@]}" "$work/$name" --list)" || {
        echo "arm64_check: $name --list failed"; exit 1; }
    for path in $paths; do
        run "$name" "$path"
    done
done

if [ "$failed" -ne 0 ]; then
    echo "arm64_check: FAILED"
    exit 1
fi
if [ "$runs" -eq 0 ]; then
    echo "arm64_check: nothing was run"
    exit 0
fi
echo "arm64_check: OK ($runs runs: ${built[*]})"
