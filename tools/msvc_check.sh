#!/usr/bin/env bash
# The Windows branch of src_c/nf_runtime.h (the team's barrier on MSVC's
# Interlocked intrinsics, SwitchToThread, __declspec(align)), compiled where no
# MSVC is: by clang in its MSVC mode, for x64 and ARM64 Windows, with stand-ins
# for the few system headers it reads. clang-cl itself takes the GCC-style
# branch (it defines __clang__), so the check compiles a copy of the header
# with that exclusion lifted, then looks in the object code for what the
# barrier must be made of: a locked decrement, exchanges and pause on x64;
# load-acquire/store-release exclusives and a dmb ish barrier on ARM64.
#
#   tools/msvc_check.sh
#
# Without clang it prints "skipped: ..." and does not fail. Exit status: 0
# when both targets compiled and held those instructions, 1 otherwise.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v clang >/dev/null; then
    echo "msvc_check: skipped: clang is not installed"
    exit 0
fi
objdump=""
for tool in llvm-objdump $(compgen -c llvm-objdump- | sort -u); do
    if command -v "$tool" >/dev/null; then objdump="$tool"; break; fi
done
if [ -z "$objdump" ]; then
    echo "msvc_check: skipped: llvm-objdump is not installed"
    exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/nndl_fast_msvc_check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub"
# What the header and clang's intrinsics headers include, declared only.
echo 'int __stdcall SwitchToThread(void);' > "$work/stub/windows.h"
echo 'double exp(double); float expf(float);' > "$work/stub/math.h"
printf 'typedef unsigned long long size_t;\nvoid *malloc(size_t); void free(void *);\n' \
    > "$work/stub/stdlib.h"
echo 'void *_aligned_malloc(unsigned long long, unsigned long long); void _aligned_free(void *);' \
    > "$work/stub/malloc.h"
echo 'typedef int jmp_buf[64];' > "$work/stub/setjmp.h"
sed 's/defined(_MSC_VER) && !defined(__clang__)/defined(_MSC_VER)/' \
    "$here/src_c/nf_runtime.h" > "$work/nf_runtime.h"
cat > "$work/t.c" <<'EOF'
#include "nf_runtime.h"
nf_barrier b;
int main(int argc, char **argv)
{
    int sense = 0;
    float z[3] = {1, 2, 3}, p[3];
    (void)argv;
    nf_barrier_init(&b, argc, 10);
    nf_barrier_wait(&b, &sense);
    nf_softmax_f(z, p, 3);
    return (int)p[0];
}
EOF
status=0
for target in x86_64 aarch64; do
    obj="$work/t_$target.obj"
    if ! clang -target "$target-pc-windows-msvc" -fms-extensions -fms-compatibility \
            -nostdlibinc -I"$work/stub" -I"$work" -O2 -Wall -Werror -c "$work/t.c" \
            -o "$obj"; then
        echo "msvc_check: FAILED to compile for $target-pc-windows-msvc"
        status=1
        continue
    fi
    asm="$("$objdump" -d "$obj")"
    if [ "$target" = x86_64 ]; then
        wanted="lock xchg pause"
    else
        wanted="ldaxr stlxr dmb"
    fi
    for insn in $wanted; do
        if ! grep -qE "[[:space:]]$insn" <<<"$asm"; then
            echo "msvc_check: FAILED: no $insn in the $target barrier"
            status=1
        fi
    done
    [ $status -eq 0 ] && echo "== $target-pc-windows-msvc: compiled; barrier uses: $wanted"
done
[ $status -eq 0 ] && echo "msvc_check: OK"
exit $status
