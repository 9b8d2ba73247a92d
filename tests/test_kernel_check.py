"""The C kernels' test driver (tools/kernel_check.c), built and run by
tools/arm64_check.sh with no Python: natively for every x86-64 path this
processor runs (GCC, its struct-of-lanes fallback, clang), and for ARM64 under
qemu where Debian's cross compiler and qemu-user-static are installed."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "arm64_check.sh")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SCRIPT), reason="tools/arm64_check.sh not present"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"),
]


@pytest.fixture(scope="module")
def kernel_check():
    """(exit status, output) of one run of the script over every part this
    machine can build: its builds then share the processors."""
    parts = []
    if shutil.which(os.environ.get("CC", "gcc")) is not None:
        parts.append("native")
    if shutil.which("aarch64-linux-gnu-gcc") is not None \
            and shutil.which("qemu-aarch64-static") is not None:
        parts.append("arm64")
    if not parts:
        pytest.skip("needs a C compiler (gcc or $CC)")
    proc = subprocess.run(["bash", SCRIPT] + parts, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, VERBOSE="0"))
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None,
                    reason="needs a C compiler (gcc or $CC)")
def test_kernel_check_native(kernel_check):
    status, out = kernel_check
    assert status == 0, out[-6000:]
    assert "arm64_check: OK" in out, out[-6000:]
    # every path the driver lists was run, in each build
    for build in ("native-gcc", "native-gcc-novector"):
        assert "== %s, generic path: kernel_check generic: all checks passed" % build in out
    assert "FAIL" not in out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None
                    or shutil.which("qemu-aarch64-static") is None,
                    reason="needs Debian's gcc-aarch64-linux-gnu and qemu-user-static")
def test_kernel_check_arm64(kernel_check):
    status, out = kernel_check
    assert status == 0, out[-6000:]
    if "skipped: ARM64" in out:
        pytest.skip([line for line in out.splitlines() if "skipped: ARM64" in line][0])
    assert "== arm64-gcc, generic path" in out, out
    assert "kernel_check generic: all checks passed" in out, out
    # the ARM64 run prints each kernel's line
    for kernel in ("fwd_d", "upd_idx_s", "sigmoid_block_d", "act_block_s", "bwd_s",
                   "csr_first_d", "csr_step_d", "csr_step_s", "convert_f2d",
                   "small_gemm_d", "small_gemm_s", "conv_net1_d", "conv_net1_s",
                   "conv_net2_d", "conv_net2_s", "dropout_mask"):
        assert "PASS " + kernel in out, out
    assert "FAIL" not in out


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang")
def test_msvc_branch_of_the_runtime_compiles():
    proc = subprocess.run(["bash", os.path.join(REPO, "tools", "msvc_check.sh")],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    if "skipped:" in out:
        pytest.skip(out.strip().splitlines()[-1])
    assert "x86_64-pc-windows-msvc: compiled" in out and "msvc_check: OK" in out, out
