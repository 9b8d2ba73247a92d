"""Every kernel path this processor runs (AVX-512, AVX2, the baseline) passes
the kernel, property and chapter tests, each in a fresh interpreter with
NNDL_FAST_KERNELS set; a path that cannot run, or an unknown name, is refused
with a clear error."""
import os
import subprocess
import sys

import pytest

from nndl_fast import _config

pytestmark = pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# The tests that compare the kernels with the reference and with each other: the
# kernel and property tests, and the chapters' comparisons with the reference.
KERNEL_TESTS = ["test_sparse_inputs.py", "test_properties.py", "test_conv_kernels.py",
                "test_small_gemm.py", "test_sparse_layers.py",
                "test_network.py", "test_network2.py", "test_network2_activation.py",
                "test_network3.py"]
SELECT = "not (slow or purepython) and (sparse or propert or conv or kernel or reference " \
         "or agree or identical or matches)"


def _env(**extra):
    env = dict(os.environ)
    env.pop(_config.KERNELS_ENV, None)
    env.update(extra)
    return env


def _other_paths():
    if not _config.use_compiled():
        return []
    from nndl_fast import _dense
    return [p for p in _dense.kernel_paths() if p != _dense.kernel_isa()]


def test_default_is_the_fastest_path_that_runs():
    from nndl_fast import _dense
    paths = _dense.kernel_paths()
    assert paths[-1] == "generic"
    assert paths == [p for p in _config.KERNEL_PATHS if p in paths]
    if _config.requested_kernel_path() is None:
        assert _dense.kernel_isa() == paths[0]


@pytest.mark.parametrize("path", _other_paths())
def test_kernel_tests_pass_on_path(path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           "-k", SELECT] + KERNEL_TESTS
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=TESTS_DIR, timeout=900,
                          env=_env(**{_config.KERNELS_ENV: path}))
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "failed" not in proc.stdout, tail


def _info(value):
    return subprocess.run([sys.executable, "-m", "nndl_fast", "info"], capture_output=True,
                          text=True, cwd=TESTS_DIR, timeout=120,
                          env=_env(**{_config.KERNELS_ENV: value}))


@pytest.mark.parametrize("path", ["avx512", "avx2", "generic"])
def test_forced_path_is_used_or_refused(path):
    from nndl_fast import _dense
    proc = _info(path)
    if path in _dense.kernel_paths():
        assert proc.returncode == 0, proc.stderr
        assert "kernels:         %s (" % path in proc.stdout
    else:
        assert proc.returncode != 0
        assert "cannot run the %s kernels" % path in proc.stderr


def test_unknown_path_is_refused():
    proc = _info("sse9")
    assert proc.returncode != 0
    assert "NNDL_FAST_KERNELS=sse9: expected one of avx512, avx2, generic" in proc.stderr
