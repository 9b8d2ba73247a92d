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
"""
import functools
import threading
import weakref

__all__ = ["network_lock", "serialised", "NetworkLockMixin"]

_registry_lock = threading.Lock()
_locks = weakref.WeakKeyDictionary()


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
