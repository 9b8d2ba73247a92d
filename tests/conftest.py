import contextlib
import io
import os
import random
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_wrapped():
    """The book's load_data_wrapper() lists (loaded once per test session)."""
    from nndl_fast import mnist_loader
    return mnist_loader.load_data_wrapper()


@pytest.fixture
def small_training(mnist_wrapped):
    """A fresh list of the first 1,000 training pairs (SGD shuffles it in place)."""
    return list(mnist_wrapped[0][:1000])


@pytest.fixture
def small_test(mnist_wrapped):
    return list(mnist_wrapped[2][:500])


@pytest.fixture
def quiet():
    """Context manager that captures stdout and returns the buffer."""
    @contextlib.contextmanager
    def _quiet():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            yield buf
    return _quiet


def seed_all(np_seed=0, py_seed=0):
    np.random.seed(np_seed)
    random.seed(py_seed)


@pytest.fixture
def run_with_kernels(tmp_path):
    """run(script, kernels) runs ``python -c script OUT.npy`` in a fresh interpreter
    with the default compiled kernels ("default") or NNDL_FAST_KERNELS=generic
    ("generic"), and returns (its stdout, stripped; the array it saved to OUT.npy)."""
    def run(script, kernels):
        env = dict(os.environ)
        env.pop("NNDL_FAST_KERNELS", None)
        if env.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in
                                                env["PYTHONPATH"].split(os.pathsep))
        if kernels == "generic":
            env["NNDL_FAST_KERNELS"] = "generic"
        path = tmp_path / (kernels + ".npy")
        # (Run from tmp_path: "python -c" puts the working directory first on
        # sys.path, which in a checkout is the uncompiled source tree.)
        proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                              capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip(), np.load(path)
    return run
