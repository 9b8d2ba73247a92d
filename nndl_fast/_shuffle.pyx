"""The stdlib ``random.shuffle`` of a list, reproduced in C.

``shuffle_permutation(n, rng)`` returns the permutation ``p`` that
``rng.shuffle(lst)`` would apply to a list of length ``n`` (``new[k] == old[p[k]]``)
and advances ``rng`` exactly as that call would. It runs CPython's algorithm —
Fisher–Yates from the end, ``_randbelow`` by rejection on ``getrandbits`` — on
the generator's own Mersenne Twister state, so the result is identical to
``random.shuffle`` for every seed, at C speed.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint32_t, int64_t

cnp.import_array()

cdef enum:
    MT_N = 624
    MT_M = 397

cdef struct MT:
    uint32_t state[MT_N]
    int index


cdef inline uint32_t _genrand(MT *mt) noexcept nogil:
    cdef uint32_t y
    cdef int kk
    cdef uint32_t *s = mt.state
    if mt.index >= MT_N:
        for kk in range(MT_N - MT_M):
            y = (s[kk] & 0x80000000U) | (s[kk + 1] & 0x7fffffffU)
            s[kk] = s[kk + MT_M] ^ (y >> 1) ^ (0x9908b0dfU if (y & 1U) else 0U)
        for kk in range(MT_N - MT_M, MT_N - 1):
            y = (s[kk] & 0x80000000U) | (s[kk + 1] & 0x7fffffffU)
            s[kk] = s[kk + (MT_M - MT_N)] ^ (y >> 1) ^ (0x9908b0dfU if (y & 1U) else 0U)
        y = (s[MT_N - 1] & 0x80000000U) | (s[0] & 0x7fffffffU)
        s[MT_N - 1] = s[MT_M - 1] ^ (y >> 1) ^ (0x9908b0dfU if (y & 1U) else 0U)
        mt.index = 0
    y = s[mt.index]
    mt.index += 1
    y ^= (y >> 11)
    y ^= (y << 7) & 0x9d2c5680U
    y ^= (y << 15) & 0xefc60000U
    y ^= (y >> 18)
    return y


cdef inline int _bit_length(uint32_t n) noexcept nogil:
    cdef int k = 0
    while n:
        k += 1
        n >>= 1
    return k


def shuffle_permutation(Py_ssize_t n, rng=None):
    """Permutation that ``rng.shuffle`` applies to a length-``n`` list; advances ``rng``.

    ``rng`` is a ``random.Random`` (default: the ``random`` module's generator).
    """
    import random as _random
    if rng is None:
        rng = _random
    if n < 0:
        raise ValueError("n must be >= 0, got %d" % n)
    if n > 0xFFFFFFFF:
        raise ValueError("lists longer than 2**32 - 1 are not supported, got %d" % n)
    version, internal, gauss = rng.getstate()
    if version != 3 or not isinstance(internal, tuple) or len(internal) != MT_N + 1:
        raise ValueError("unsupported random generator state (version %r)" % (version,))
    # A state not made by random.Random could index outside the table.
    if not all(type(v) is int and 0 <= v <= 0xFFFFFFFF for v in internal) \
            or internal[MT_N] > MT_N:
        raise ValueError("invalid Mersenne Twister state: expected %d words in [0, 2**32) "
                         "and a position in [0, %d]" % (MT_N, MT_N))
    cdef MT mt
    cdef int i
    for i in range(MT_N):
        mt.state[i] = <uint32_t> internal[i]
    mt.index = internal[MT_N]
    cdef cnp.ndarray[int64_t, ndim=1] perm_arr = np.arange(n, dtype=np.int64)
    cdef int64_t *perm = <int64_t *> cnp.PyArray_DATA(perm_arr)
    cdef Py_ssize_t pos, j
    cdef uint32_t bound, r
    cdef int k
    cdef int64_t tmp
    with nogil:
        pos = n - 1
        while pos >= 1:
            bound = <uint32_t> (pos + 1)
            k = _bit_length(bound)
            r = _genrand(&mt) >> (32 - k)
            while r >= bound:
                r = _genrand(&mt) >> (32 - k)
            j = r
            tmp = perm[pos]
            perm[pos] = perm[j]
            perm[j] = tmp
            pos -= 1
    rng.setstate((version, tuple([mt.state[i] for i in range(MT_N)]) + (mt.index,), gauss))
    return perm_arr


def apply_permutation(list items, const int64_t[::1] perm):
    """Reorder the list in place: ``items[k] = old[perm[k]]``."""
    cdef Py_ssize_t n = len(items), k
    if perm.shape[0] != n:
        raise ValueError("permutation of length %d for a list of length %d"
                         % (perm.shape[0], n))
    for k in range(n):
        if perm[k] < 0 or perm[k] >= n:
            raise ValueError("permutation entry %d is %d, outside [0, %d)" % (k, perm[k], n))
    cdef list old = list(items)
    for k in range(n):
        items[k] = old[perm[k]]
