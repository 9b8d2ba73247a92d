"""The pure-Python mode: NNDL_FAST_PUREPYTHON=1, or an extension that cannot be imported.

Tests marked ``purepython`` run in whichever mode this process is in; the
main suite runs them compiled, and ``test_purepython_subset`` runs them all
again in a subprocess with ``NNDL_FAST_PUREPYTHON=1``.
"""
import io
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nndl_fast import _config, _fallback, mnist_loader, network, show_config
from nndl_fast.reference import network as ref_network
from nndl_fast.reference import network2 as ref_network2

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ENV_SET = _config._env_flag(_config.PURE_PYTHON_ENV)


def _tiny_data(n=40, n_in=6, n_out=3, seed=3):
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        x = rng.random((n_in, 1))
        y = np.zeros((n_out, 1))
        y[rng.integers(0, n_out)] = 1.0
        data.append((x, y))
    return data


def _subprocess_env(**extra):
    """This environment, less the mode switch, importing the same nndl_fast as we do
    (a source checkout on PYTHONPATH, or the installed package)."""
    env = dict(os.environ)
    env.pop(_config.PURE_PYTHON_ENV, None)
    env.update(extra)
    import nndl_fast
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(nndl_fast.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@pytest.mark.purepython
def test_mode_matches_environment():
    # The main suite must really run compiled: a silent fallback there would hide
    # a broken build. Under NNDL_FAST_PUREPYTHON=1 the chapter modules must not.
    import nndl_fast
    assert _config.pure_python() == ENV_SET == nndl_fast.pure_python()
    uses_reference = issubclass(network.Network, _fallback.ReferenceDenseMixin)
    assert uses_reference == ENV_SET
    assert network.Network.__mro__[-2] is ref_network.Network


@pytest.mark.purepython
def test_show_config_reports_mode():
    buf = io.StringIO()
    show_config(file=buf)
    out = buf.getvalue()
    if ENV_SET:
        assert "mode:            pure Python" in out
        assert _config.PURE_PYTHON_ENV in out
        assert _config.config_dict()["openmp_enabled"] is False
    else:
        assert "mode:            compiled" in out


@pytest.mark.purepython
def test_network_same_numbers_as_reference(quiet):
    training = _tiny_data()
    test = [(x, int(np.argmax(y))) for x, y in _tiny_data(seed=4)]
    np.random.seed(1)
    net = network.Network([6, 5, 3], num_threads=1)
    np.random.seed(1)
    ref = ref_network.Network([6, 5, 3])
    random.seed(2)
    t1 = list(training)
    with quiet() as out1:
        net.SGD(t1, 3, 7, 2.0, test_data=test)
    random.seed(2)
    t2 = list(training)
    with quiet() as out2:
        ref.SGD(t2, 3, 7, 2.0, test_data=test)
    assert out1.getvalue() == out2.getvalue()
    assert [id(p) for p in t1] == [id(p) for p in t2]  # the caller's list, shuffled alike
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert net.evaluate(test) == ref.evaluate(test)
    x = test[0][0]
    np.testing.assert_allclose(net.feedforward(x), ref.feedforward(x), rtol=1e-10)


@pytest.mark.purepython
def test_network_keywords_and_dtype(quiet):
    np.random.seed(0)
    net = network.Network([6, 4, 3], dtype=np.float32, num_threads=2)
    assert net.dtype == np.float32
    assert all(w.dtype == np.float32 for w in net.weights + net.biases)
    with quiet():
        net.SGD(_tiny_data(), 2, 5, 1.0)
    net.update_mini_batch(_tiny_data(n=3), 0.5)
    assert all(w.dtype == np.float32 for w in net.weights + net.biases)
    assert net.feedforward(_tiny_data(n=1)[0][0].astype(np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        network.Network([6, 3], dtype=np.int32)
    with pytest.raises(ValueError, match="expected \\(6, 1\\)"):
        net.feedforward(np.zeros((5, 1)))
    with pytest.raises(ValueError):
        net.SGD([], 1, 10, 1.0)


@pytest.mark.purepython
def test_mnist_loader_works(mnist_wrapped):
    tr, va, te = mnist_wrapped
    assert (len(tr), len(va), len(te)) == (50000, 10000, 10000)
    assert tr[0][0].shape == (784, 1) and te[0][1] == 7


@pytest.mark.purepython
@pytest.mark.parametrize("reg", ["L2", "L1"])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_fallback_mixin_matches_reference_network2(reg, momentum, quiet):
    # The hooks network2-style classes call: lmbda, L1/L2 and momentum.
    class Net2(_fallback.ReferenceDenseMixin, ref_network2.Network):
        pass

    training = _tiny_data(n=30)
    np.random.seed(5)
    net = Net2([6, 4, 3])
    net._set_dtype(np.float64)
    np.random.seed(5)
    ref = ref_network2.Network([6, 4, 3])
    X = np.concatenate([x.T for x, _ in training])
    Y = np.concatenate([y.T for _, y in training])
    epochs_seen = []
    random.seed(7)
    t1 = list(training)
    net._run_epochs(X, Y, t1, 2, 4, 0.5, lambda j, s: epochs_seen.append(j), lmbda=3.0,
                    reg=getattr(_fallback.Regularization, reg), momentum=momentum)
    random.seed(7)
    t2 = list(training)
    with quiet():
        ref.SGD(t2, 2, 4, 0.5, lmbda=3.0, regularization=reg, momentum=momentum)
    assert epochs_seen == [0, 1]
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_enum_mirrors_match_compiled():
    if _config.pure_python():
        pytest.skip("the compiled _dense is not in use")
    from nndl_fast import _dense
    for name in ("QUADRATIC", "CROSS_ENTROPY", "LOG_LIKELIHOOD"):
        assert int(getattr(_fallback.CostKind, name)) == int(getattr(_dense.CostKind, name))
    for name in ("L2", "L1"):
        assert int(getattr(_fallback.Regularization, name)) == \
            int(getattr(_dense.Regularization, name))


def test_env_flag_values():
    assert _config._env_flag("NNDL_FAST_TEST_UNSET_VARIABLE") is False
    for value, expected in [("1", True), ("yes", True), ("0", False), ("", False),
                            ("false", False), ("off", False)]:
        os.environ["NNDL_FAST_TEST_FLAG"] = value
        try:
            assert _config._env_flag("NNDL_FAST_TEST_FLAG") is expected
        finally:
            del os.environ["NNDL_FAST_TEST_FLAG"]


SIMULATED_FAILURE = textwrap.dedent("""
    import importlib.abc, sys, warnings

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "nndl_fast._dense":
                raise ImportError("simulated: undefined symbol dgemm_")
            return None

    sys.meta_path.insert(0, Block())
    import random
    import numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from nndl_fast import network, _config
    msgs = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(msgs) == 1, msgs
    assert "simulated: undefined symbol dgemm_" in msgs[0], msgs
    assert "nndl_fast._dense" in msgs[0], msgs
    assert _config.pure_python()
    assert "nndl_fast._dense" not in sys.modules
    np.random.seed(0); random.seed(0)
    net = network.Network([4, 3, 2], num_threads=4)
    x = np.ones((4, 1)); y = np.array([[1.0], [0.0]])
    net.SGD([(x, y)] * 6, 2, 3, 1.0)
    print(net.feedforward(x).shape)
    import nndl_fast
    nndl_fast.show_config()
""")


def test_simulated_import_failure_falls_back_with_warning():
    proc = subprocess.run([sys.executable, "-c", SIMULATED_FAILURE], capture_output=True,
                          text=True, env=_subprocess_env(), timeout=300, cwd=TESTS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Epoch 1 complete" in proc.stdout
    assert "(2, 1)" in proc.stdout
    assert "mode:            pure Python" in proc.stdout
    assert "cannot import nndl_fast._dense" in proc.stdout


def test_env_variable_selects_pure_python_without_warning():
    code = ("import warnings; warnings.simplefilter('error');"
            "from nndl_fast import network, _config, _fallback;"
            "assert _config.pure_python();"
            "assert issubclass(network.Network, _fallback.ReferenceDenseMixin);"
            "import sys; assert 'nndl_fast._dense' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_subprocess_env(NNDL_FAST_PUREPYTHON="1"), timeout=300,
                          cwd=TESTS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"


def test_purepython_subset():
    """Every test marked ``purepython`` (any test file) again, in pure-Python mode."""
    if ENV_SET:
        pytest.skip("already running in pure-Python mode")
    cmd = [sys.executable, "-m", "pytest", TESTS_DIR, "-m", "purepython", "-q",
           "-p", "no:cacheprovider"]
    env = _subprocess_env(NNDL_FAST_PUREPYTHON="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900,
                          cwd=TESTS_DIR)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "failed" not in proc.stdout, tail
