"""One call at a time on each network: the lock behind every chapter's thread contract.

A network's parameters are updated in place by compiled code that runs with
the GIL released, so two Python threads working on the *same* network at once
could each see (or write) the other's half-done update. Every public method
that reads or writes a network's parameters therefore holds that network's
lock for its whole call (``serialised``): calls from several threads on one
network run one after another, each on the parameters as the previous call
left them. Different networks have different locks and run in parallel.

The lock is re-entrant (SGD evaluates the network while it holds it) and is
not stored on the network, so networks still pickle and copy. ``net.lock``
(``NetworkLockMixin``) hands it out, for a group of calls that must see the
same parameters (``with net.lock: ...``). See docs/threads.md.

``blas_single_thread()`` holds BLAS to one thread while nndl_fast computes: the
compiled kernels run their own OpenMP team (BLAS threads would spin against it),
and the small products of the reference path gain nothing from more.
"""
import functools
import threading
import weakref

__all__ = ["network_lock", "serialised", "NetworkLockMixin", "blas_single_thread"]

_registry_lock = threading.Lock()
_locks = weakref.WeakKeyDictionary()

# threadpoolctl's limit is process-wide, and restoring it on exit would undo it
# for calls still running in other Python threads: the first entry sets it (one
# threadpoolctl call), nested and concurrent entries only count, the last exit
# restores it.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None
_controller = None


def network_lock(net):
    """The re-entrant lock of ``net``, made on first use and dropped with ``net``."""
    with _registry_lock:
        lock = _locks.get(net)
        if lock is None:
            lock = _locks[net] = threading.RLock()
        return lock


def serialised(method):
    """``method`` run while holding its network's lock."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with network_lock(self):
            return method(self, *args, **kwargs)
    return call


class NetworkLockMixin(object):
    """``net.lock``: the lock every public method of the network holds."""

    @property
    def lock(self):
        """The network's re-entrant lock (``with net.lock:`` groups several calls)."""
        return network_lock(self)


class _SingleThreadBlas(object):
    """One entry into the shared BLAS limit (see ``blas_single_thread``)."""

    def __enter__(self):
        global _controller, _blas_users, _blas_limit
        with _blas_lock:
            if _blas_users == 0:
                from threadpoolctl import ThreadpoolController
                if _controller is None:
                    _controller = ThreadpoolController()
                limit = _controller.limit(limits=1, user_api="blas")
                limit.__enter__()
                _blas_limit = limit
            _blas_users += 1
        return self

    def __exit__(self, *exc):
        global _blas_users, _blas_limit
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                limit, _blas_limit = _blas_limit, None
                limit.__exit__(None, None, None)
        return False


def blas_single_thread():
    """Context manager: BLAS limited to one thread; re-entrant and shared by all
    Python threads (one limit for a whole block of calls, too)."""
    return _SingleThreadBlas()
