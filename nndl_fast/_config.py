"""Thread policy, compiled/pure-Python mode and build/runtime facts (``show_config``).

Policy: ``set_num_threads(None)`` (the default) means ``OMP_NUM_THREADS`` when it
is set, otherwise the CPUs this process may run on. Our OpenMP regions use that
many threads; BLAS is limited to one thread inside them (threadpoolctl), so the
two pools never fight. Runs that train at the same time in one process (Python
threads) share those threads: each takes ``get_num_threads() // runs`` (see
:func:`shared_num_threads`) unless it was given ``num_threads``.

Mode: the chapter modules run on the compiled extensions unless
``NNDL_FAST_PUREPYTHON=1`` was set when nndl_fast was imported, or an extension
cannot be imported (then a ``RuntimeWarning`` names the import error). In either
case they run on the pure-NumPy reference, with the same public API. Chapter
modules ask :func:`use_compiled` which one to take; read the mode with
:func:`pure_python` (or ``_config.PURE_PYTHON``, never a copy of it taken at
import time, since a later failed import can still switch it on).
"""
import contextlib
import importlib
import os
import platform
import sys
import threading
import warnings

PURE_PYTHON_ENV = "NNDL_FAST_PUREPYTHON"

_num_threads = None


def _env_flag(name):
    value = os.environ.get(name, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


#: True when the chapter modules run on the pure-NumPy reference.
PURE_PYTHON = _env_flag(PURE_PYTHON_ENV)
#: Why PURE_PYTHON is true (None while it is false).
PURE_PYTHON_REASON = ("%s=%s" % (PURE_PYTHON_ENV, os.environ.get(PURE_PYTHON_ENV))
                      if PURE_PYTHON else None)

#: The kernel paths, fastest first; NNDL_FAST_KERNELS=<path> forces one.
KERNEL_PATHS = ("avx512", "avx2", "generic")
KERNELS_ENV = "NNDL_FAST_KERNELS"


def requested_kernel_path():
    """The kernel path NNDL_FAST_KERNELS asks for, or None (the fastest here)."""
    value = os.environ.get(KERNELS_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in KERNEL_PATHS:
        raise ValueError("%s=%s: expected one of %s (or auto)"
                         % (KERNELS_ENV, os.environ.get(KERNELS_ENV), ", ".join(KERNEL_PATHS)))
    return value


# The extensions every compiled chapter module needs.
CORE_EXTENSIONS = ("_openmp_helpers", "_blas", "_dense", "_shuffle")


def pure_python():
    """True when nndl_fast runs on its pure-NumPy reference instead of compiled code."""
    return PURE_PYTHON


def use_compiled(*extensions):
    """Whether a chapter module should use the compiled extensions.

    Imports ``nndl_fast.<name>`` for the core extensions and each name given
    (e.g. ``use_compiled("_conv")``). Returns False in pure-Python mode. When an
    import fails, switches the package to pure-Python mode for good, warns with a
    ``RuntimeWarning`` naming the error, and returns False; chapter modules
    imported afterwards then take the reference path too.
    """
    global PURE_PYTHON, PURE_PYTHON_REASON
    if PURE_PYTHON:
        return False
    for name in CORE_EXTENSIONS + tuple(extensions):
        try:
            importlib.import_module("%s.%s" % (__package__, name))
        except ImportError as exc:
            _refuse_unbuilt_checkout()
            PURE_PYTHON = True
            PURE_PYTHON_REASON = "cannot import nndl_fast.%s: %s: %s" % (
                name, type(exc).__name__, exc)
            warnings.warn(
                "nndl_fast: the compiled extensions could not be imported (%s); "
                "running on the pure-NumPy reference, which is much slower. "
                "Reinstall nndl_fast (a wheel, or a build with a C compiler), or set "
                "%s=1 to choose this mode without the warning."
                % (PURE_PYTHON_REASON, PURE_PYTHON_ENV),
                RuntimeWarning, stacklevel=2)
            return False
    return True


def import_optional(name):
    """``nndl_fast.<name>`` when that module is present in this installation, else None."""
    try:
        return importlib.import_module("%s.%s" % (__package__, name))
    except ModuleNotFoundError as exc:
        if exc.name != "%s.%s" % (__package__, name):
            raise
        return None


def _built_copy_elsewhere():
    """When this package is an unbuilt source checkout's ``nndl_fast/`` (imported
    because Python puts the current directory first on ``sys.path``), the
    directory of another nndl_fast on ``sys.path`` that has the compiled
    extensions (say, one ``pip install .`` put in site-packages); else None."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not (os.path.isfile(os.path.join(root, "setup.py"))
            and os.path.isdir(os.path.join(root, "src_c"))):
        return None
    from importlib.machinery import EXTENSION_SUFFIXES
    for entry in sys.path:
        other = os.path.join(os.path.abspath(entry or os.getcwd()), __package__)
        if os.path.normcase(other) != os.path.normcase(here) and any(
                os.path.isfile(os.path.join(other, "_dense" + suffix))
                for suffix in EXTENSION_SUFFIXES):
            return other
    return None


def _refuse_unbuilt_checkout():
    """Raise ImportError, saying what to do, rather than fall back to the slow
    reference because of the directory Python was started in."""
    other = _built_copy_elsewhere()
    if other is None:
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    raise ImportError(
        "nndl_fast was imported from the source checkout %s, whose compiled extensions "
        "are not built, instead of the built copy installed at %s (Python looks in the "
        "current directory first). Build the checkout in place: run 'pip install -e .' "
        "in %s; or run from another directory, or use the 'nndl-fast' command."
        % (root, other, root))


def _openmp_enabled():
    if not use_compiled():
        return False
    from . import _openmp_helpers
    return bool(_openmp_helpers.openmp_enabled())


def _available_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _env_threads():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n > 0 else None


def set_num_threads(n=None):
    """Set the number of threads our compiled kernels use.

    ``None`` restores the default (``OMP_NUM_THREADS`` or all available CPUs).
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError("num_threads must be an int or None, got %r" % (n,))
    n = int(n.__index__() if hasattr(n, "__index__") else n)
    if n < 1:
        raise ValueError("num_threads must be >= 1, got %d" % n)
    _num_threads = n


def get_num_threads():
    """The number of threads the compiled kernels will use.

    1 without OpenMP and in pure-Python mode (where only BLAS may use threads).
    """
    if not _openmp_enabled():
        return 1
    if _num_threads is not None:
        return _num_threads
    return _env_threads() or _available_cpus()


def resolve_num_threads(num_threads):
    """Per-call override: None → the global policy, else a validated int."""
    if num_threads is None:
        return get_num_threads()
    if isinstance(num_threads, bool) or not hasattr(num_threads, "__index__"):
        raise TypeError("num_threads must be an int or None, got %r" % (num_threads,))
    n = num_threads.__index__()
    if n < 1:
        raise ValueError("num_threads must be >= 1, got %d" % n)
    return n if _openmp_enabled() else 1


def _kernel_path():
    if not use_compiled():
        return None
    from . import _dense
    return _dense.kernel_isa()


def _kernel_paths():
    if not use_compiled():
        return []
    from . import _dense
    return _dense.kernel_paths()


_runs_lock = threading.Lock()
_active_runs = 0


@contextlib.contextmanager
def training_run():
    """Count a training run (an SGD call) as active in this process while the block runs."""
    global _active_runs
    with _runs_lock:
        _active_runs += 1
    try:
        yield
    finally:
        with _runs_lock:
            _active_runs -= 1


def active_runs():
    """How many training runs are active in this process now."""
    return _active_runs


def shared_num_threads():
    """The threads one run with ``num_threads=None`` takes now: the policy's
    ``get_num_threads()`` divided among the runs training at the same time in
    this process (at least 1).

    So k runs in Python threads (``GridSearchCV(n_jobs=k)`` on joblib's threading
    backend, a Dask worker with k threads, an ensemble trained side by side) get
    ``cores // k`` threads each instead of k times the cores. Runs ask again at
    every epoch; results do not depend on the thread count.
    """
    return max(1, get_num_threads() // max(1, _active_runs))


def config_dict():
    """Everything show_config prints, as a dict."""
    from threadpoolctl import threadpool_info
    from ._version import __version__
    import numpy
    import scipy
    return {
        "nndl_fast": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "mode": "pure Python" if PURE_PYTHON else "compiled",
        "pure_python_reason": PURE_PYTHON_REASON,
        "openmp_enabled": _openmp_enabled(),
        "kernels": _kernel_path(),
        "kernel_paths": _kernel_paths(),
        "num_threads": get_num_threads(),
        "available_cpus": _available_cpus(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads",
                                       "threading_layer", "architecture", "filepath")}
            for info in threadpool_info() if info.get("user_api") == "blas"
        ],
    }


def show_config(file=None):
    """Print version, OpenMP status, thread count and the BLAS in use."""
    cfg = config_dict()
    out = file or sys.stdout
    print("nndl_fast %s" % cfg["nndl_fast"], file=out)
    print("  python:          %s (%s)" % (cfg["python"], cfg["platform"]), file=out)
    print("  numpy / scipy:   %s / %s" % (cfg["numpy"], cfg["scipy"]), file=out)
    if cfg["mode"] == "compiled":
        print("  mode:            compiled", file=out)
        print("  OpenMP:          %s" % ("enabled" if cfg["openmp_enabled"] else
                                         "disabled (serial build)"), file=out)
        print("  kernels:         %s (this processor runs: %s; %s=<path> forces one)"
              % (cfg["kernels"], ", ".join(cfg["kernel_paths"]), KERNELS_ENV), file=out)
    else:
        print("  mode:            pure Python (NumPy reference; %s)"
              % cfg["pure_python_reason"], file=out)
        print("  OpenMP:          not used", file=out)
    print("  threads:         %d (available CPUs %d, OMP_NUM_THREADS=%s)"
          % (cfg["num_threads"], cfg["available_cpus"], cfg["OMP_NUM_THREADS"]), file=out)
    if not cfg["blas"]:
        print("  BLAS:            none loaded yet", file=out)
    for b in cfg["blas"]:
        print("  BLAS:            %s %s (%s, %s threads) %s"
              % (b["internal_api"], b["version"], b["architecture"], b["num_threads"],
                 b["filepath"]), file=out)
    return None
