import contextlib
import io
import random

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
