"""A network's own random generators (``seed=`` / ``rng=``), or the book's global ones.

The book draws initial values from the global ``np.random`` and shuffles with
the global ``random`` module, so two runs in parallel threads would take
numbers from the same streams in an order that depends on scheduling. A
network built with ``seed=`` or ``rng=`` owns its generators instead:

* ``seed=s`` (an int): initial values from ``np.random.RandomState(s)`` and
  shuffles from ``random.Random(s)``, which give exactly the numbers the book's
  code gives after ``np.random.seed(s); random.seed(s)``, without touching the
  global generators.
* ``rng=r``: a ``np.random.RandomState`` or ``np.random.Generator`` for the
  initial values; the shuffle generator is then ``random.Random(k)`` with ``k``
  one 32-bit number drawn from ``r`` after the initial values.

Neither (the default) keeps the book's global generators.
"""
import numbers
import random

import numpy as np

from ._validation import describe

__all__ = ["Generators", "make_generators"]


class Generators(object):
    """The generators one network draws from: ``init`` for initial values (None: the
    global ``np.random``) and ``shuffle`` for SGD's shuffles (None: the global
    ``random``)."""

    __slots__ = ("init", "shuffle", "_pending_rng")

    def __init__(self, init=None, shuffle=None):
        self.init = init
        self.shuffle = shuffle
        self._pending_rng = None

    @property
    def own(self):
        """True when the network has generators of its own."""
        return self.init is not None

    def init_module(self):
        """What to call ``randn`` / ``normal`` on: the own generator or ``np.random``."""
        return np.random if self.init is None else self.init

    def randn(self, *shape):
        """``np.random.randn(*shape)`` from the network's generator."""
        gen = self.init_module()
        if isinstance(gen, np.random.Generator):
            return gen.standard_normal(shape)
        return gen.randn(*shape)

    def normal(self, loc, scale, size):
        """``np.random.normal(loc, scale, size)`` from the network's generator."""
        return self.init_module().normal(loc=loc, scale=scale, size=size)

    def initialized(self):
        """Call once the initial values are drawn: an ``rng=`` network's shuffle
        generator is seeded from its generator now (so that it follows the
        initial values, as in the book's order)."""
        if self._pending_rng is not None:
            rng, self._pending_rng = self._pending_rng, None
            if isinstance(rng, np.random.Generator):
                k = int(rng.integers(0, 2 ** 32))
            else:
                k = int(rng.randint(0, 2 ** 32, dtype=np.uint64))
            self.shuffle = random.Random(k)

    def shuffle_module(self):
        """What ``shuffle_permutation`` draws from: the own generator or ``random``."""
        self.initialized()
        return random if self.shuffle is None else self.shuffle


def make_generators(seed=None, rng=None):
    """``Generators`` for a network's ``seed=`` / ``rng=`` keywords (see the module
    docstring); both None gives the book's global generators."""
    if seed is not None and rng is not None:
        raise ValueError("give seed= or rng=, not both (got seed=%r and rng=%s)"
                         % (seed, describe(rng)))
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) \
                or not 0 <= int(seed) < 2 ** 32:
            raise ValueError("seed must be an int in [0, 2**32), got %r" % (seed,))
        seed = int(seed)
        return Generators(np.random.RandomState(seed), random.Random(seed))
    if rng is not None:
        if not isinstance(rng, (np.random.RandomState, np.random.Generator)):
            raise TypeError("rng must be a numpy.random.RandomState or numpy.random.Generator, "
                            "got %s" % describe(rng))
        gens = Generators(rng, None)
        gens._pending_rng = rng
        return gens
    return Generators()
