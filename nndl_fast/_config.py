"""Thread policy and build/runtime facts (``show_config``).

Policy: ``set_num_threads(None)`` (the default) means ``OMP_NUM_THREADS`` when it
is set, otherwise the CPUs this process may run on. Our OpenMP regions use that
many threads; BLAS is limited to one thread inside them (threadpoolctl), so the
two pools never fight.
"""
import os
import platform
import sys

_num_threads = None


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
    """The number of threads the compiled kernels will use (1 without OpenMP)."""
    from . import _openmp_helpers
    if not _openmp_helpers.openmp_enabled():
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
    from . import _openmp_helpers
    return n if _openmp_helpers.openmp_enabled() else 1


def config_dict():
    """Everything show_config prints, as a dict."""
    from threadpoolctl import threadpool_info
    from . import _openmp_helpers
    from ._version import __version__
    import numpy
    import scipy
    return {
        "nndl_fast": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "openmp_enabled": _openmp_helpers.openmp_enabled(),
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
    print("  OpenMP:          %s" % ("enabled" if cfg["openmp_enabled"] else
                                     "disabled (serial build)"), file=out)
    print("  threads:         %d (available CPUs %d, OMP_NUM_THREADS=%s)"
          % (cfg["num_threads"], cfg["available_cpus"], cfg["OMP_NUM_THREADS"]), file=out)
    if not cfg["blas"]:
        print("  BLAS:            none loaded yet", file=out)
    for b in cfg["blas"]:
        print("  BLAS:            %s %s (%s, %s threads) %s"
              % (b["internal_api"], b["version"], b["architecture"], b["num_threads"],
                 b["filepath"]), file=out)
    return None
