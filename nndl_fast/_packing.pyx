"""Turning the book's lists of (x, y) column pairs into matrices, in one C loop.

The book's data are Python lists of 50,000 ``(x, y)`` tuples holding (784, 1)
arrays. Checking and copying them item by item in Python is slow; here each
item is checked (type, shape, dtype) and copied row by row into a preallocated
(n, n_rows) matrix, with the same error messages.

Lists in ``mnist_loader``'s layout, whose x's are all the rows of one array,
are not copied at all (:func:`shared_rows`). Either way the packed matrix is
then read once (:func:`scan_rows`) for what the rest needs: are all entries
finite, which are nonzero (the sparse rows' bits), each row's byte hash (the
first fingerprint). The class labels of evaluation data are read in one loop
too (:func:`labels`).
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

cnp.import_array()


# One wording of the errors for this loop and for the pure-Python one.
from nndl_fast._validation import _column_error as _shape_error


def pack_columns(seq, int which, Py_ssize_t n_rows, cnp.ndarray out, what, pair_what):
    """``out[i] = seq[i][which][:, 0]`` for every pair of ``seq``; returns float32-ness.

    ``out`` is a C-contiguous float32 or float64 array (len(seq), n_rows). Each
    element must be a float32/float64 ndarray of shape (n_rows, 1), any strides,
    either byte order. Returns True when every element was float32.
    """
    cdef Py_ssize_t n = len(seq), i, r
    cdef object item, obj
    cdef cnp.ndarray arr
    cdef int typenum
    cdef int out_type = cnp.PyArray_TYPE(out)
    cdef bint all_f32 = True
    cdef char *src
    cdef Py_ssize_t stride
    cdef double *dst_d
    cdef float *dst_f
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] != n_rows \
            or not cnp.PyArray_IS_C_CONTIGUOUS(out) \
            or out_type not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
        raise ValueError("out must be a C-contiguous float array of shape (%d, %d)"
                         % (n, n_rows))
    for i in range(n):
        item = seq[i]
        # Subclasses (named tuples) are pairs too, as in the Python-level checks.
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError("%s item %d must be a pair (x, y), got %s"
                            % (pair_what, i, type(item).__name__))
        obj = item[which]
        if not cnp.PyArray_Check(obj):
            raise _shape_error(what, i, obj, n_rows)
        arr = <cnp.ndarray> obj
        if not cnp.PyArray_ISNOTSWAPPED(arr):
            # The raw copies below assume native byte order (a '>f8' array has
            # the same type number as a native one).
            arr = arr.astype(arr.dtype.newbyteorder("="))
        typenum = cnp.PyArray_TYPE(arr)
        if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] != 1 \
                or typenum not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise _shape_error(what, i, obj, n_rows)
        src = <char *> cnp.PyArray_DATA(arr)
        stride = arr.strides[0]
        if typenum != cnp.NPY_FLOAT32:
            all_f32 = False
        if out_type == cnp.NPY_FLOAT64:
            dst_d = (<double *> cnp.PyArray_DATA(out)) + i * n_rows
            if typenum == cnp.NPY_FLOAT64:
                if stride == sizeof(double):
                    memcpy(dst_d, src, n_rows * sizeof(double))
                else:
                    for r in range(n_rows):
                        dst_d[r] = (<double *> (src + r * stride))[0]
            else:
                for r in range(n_rows):
                    dst_d[r] = (<float *> (src + r * stride))[0]
        else:
            dst_f = (<float *> cnp.PyArray_DATA(out)) + i * n_rows
            if typenum == cnp.NPY_FLOAT32:
                if stride == sizeof(float):
                    memcpy(dst_f, src, n_rows * sizeof(float))
                else:
                    for r in range(n_rows):
                        dst_f[r] = (<float *> (src + r * stride))[0]
            else:
                for r in range(n_rows):
                    dst_f[r] = <float> (<double *> (src + r * stride))[0]
    return all_f32


# --- fingerprints: has a list of (x, y) pairs changed since it was packed? ---------
#
# A fingerprint is a 64-bit sum over the list's items of mix(h(item) ^ key(row)),
# where h hashes both elements of the pair (an array's dtype, shape and bytes,
# or an int label's value) and row is the row of the packed matrix that holds
# the item. The sum does not depend on the list's order, so after SGD shuffles
# the list (and the caller permutes ``rows`` alike) it is unchanged; an item
# replaced, an array changed in place or two arrays' contents swapped change it.
# Reading the bytes runs at memory speed, on several threads: much quicker than
# packing the list again.

cdef extern from *:
    """
    static inline uint64_t nf_fp_mix(uint64_t z) {
        z ^= z >> 30; z *= 0xBF58476D1CE4E5B9ULL;
        z ^= z >> 27; z *= 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    #define NF_FP_STEP 0x9E3779B97F4A7C15ULL
    /* acc plus words k0.. of p (nbytes long), each xor'ed with a key of its
       position, and the last partial word (zero-padded) with the next key. */
    static uint64_t nf_fp_words(const char *p, Py_ssize_t nbytes, Py_ssize_t k0, uint64_t acc) {
        uint64_t w, key = (uint64_t) k0 * NF_FP_STEP;
        Py_ssize_t k, nw = nbytes >> 3;
        for (k = k0; k < nw; k++) {
            memcpy(&w, p + 8 * k, 8);
            acc += w ^ key;
            key += NF_FP_STEP;
        }
        w = 0;
        memcpy(&w, p + 8 * nw, (size_t) (nbytes & 7));
        return acc + (w ^ key);
    }
    /* Words of the bytes, each xor'ed with a key of its position, summed: any
       change of one word changes the sum. */
    static uint64_t nf_fp_bytes(const char *p, Py_ssize_t nbytes) {
        if (nbytes <= 0)
            return 0;
        return nf_fp_words(p, nbytes, 0, (uint64_t) nbytes);
    }
    """
    uint64_t nf_fp_mix(uint64_t z) noexcept nogil
    uint64_t nf_fp_bytes(const char *p, Py_ssize_t nbytes) noexcept nogil
    uint64_t nf_fp_words(const char *p, Py_ssize_t nbytes, Py_ssize_t k0,
                         uint64_t acc) noexcept nogil


cdef bint _element(object obj, int64_t *addr, int64_t *nbytes, uint64_t *meta):
    """The address, size and (dtype, shape) hash of a C-contiguous array, or the
    hash of an int label; False for anything else (not fingerprinted)."""
    cdef cnp.ndarray arr
    cdef int d
    cdef uint64_t h
    if cnp.PyArray_Check(obj):
        arr = <cnp.ndarray> obj
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            return False
        h = nf_fp_mix(<uint64_t> cnp.PyArray_TYPE(arr) * 31 + <uint64_t> arr.ndim
                      + (<uint64_t> (not cnp.PyArray_ISNOTSWAPPED(arr)) << 40))
        for d in range(arr.ndim):
            h = nf_fp_mix(h + <uint64_t> arr.shape[d])
        addr[0] = <int64_t> cnp.PyArray_DATA(arr)
        nbytes[0] = cnp.PyArray_NBYTES(arr)
        meta[0] = h
        return True
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, (bool, np.bool_)):
        addr[0] = 0
        nbytes[0] = 0
        meta[0] = nf_fp_mix(<uint64_t> (int(obj) & 0xFFFFFFFFFFFFFFFF) ^ 0x5851F42D4C957F2DULL)
        return True
    return False


def fingerprint(list seq, const int64_t[::1] rows, int num_threads=1, known=None):
    """The fingerprint (an int) of ``seq``, whose item ``p`` sits in row ``rows[p]``
    of its packed matrices (``rows``: a permutation of 0..len(seq)-1); None when
    an item is not a pair of C-contiguous arrays or int labels (such lists are
    packed again on every call).

    ``known``: ``(M, hashes)``, a C-contiguous matrix and its rows' byte hashes
    from :func:`scan_rows`, just made: an item's x that *is* row ``rows[p]`` of
    M (the same memory, as for :func:`shared_rows`' lists) is not read again.
    The fingerprint is the same with or without it.
    """
    cdef Py_ssize_t n = len(seq), p, r
    if rows.shape[0] != n:
        raise ValueError("rows has %d entries for a list of %d items" % (rows.shape[0], n))
    cdef cnp.ndarray M
    cdef int64_t known_start = 0, known_row = 0
    cdef const uint64_t[::1] known_hash = None
    if known is not None:
        M, hashes = known
        if M.ndim != 2 or not cnp.PyArray_IS_C_CONTIGUOUS(M) or len(hashes) != M.shape[0] \
                or M.shape[0] != n:
            raise ValueError("known: expected a C-contiguous (%d, m) matrix and %d hashes"
                             % (n, n))
        known_hash = hashes
        known_start = <int64_t> cnp.PyArray_DATA(M)
        known_row = M.shape[1] * cnp.PyArray_ITEMSIZE(M)
    use_known = np.zeros(n, np.uint8)
    cdef unsigned char[::1] uk = use_known
    # Items are visited in row order, which is their order when packed: after a
    # shuffle that is still the order of their memory (for the loader's data),
    # which reads faster than the list's shuffled order (it stays sequential).
    item_of_row = np.full(n, -1, np.int64)
    cdef int64_t[::1] inv = item_of_row
    for p in range(n):
        r = rows[p]
        if r < 0 or r >= n or inv[r] >= 0:
            raise ValueError("rows is not a permutation of 0..%d" % (n - 1))
        inv[r] = p
    addr = np.empty((n, 2), np.int64)
    size = np.empty((n, 2), np.int64)
    meta = np.empty((n, 2), np.uint64)
    cdef int64_t[:, ::1] a = addr
    cdef int64_t[:, ::1] s = size
    cdef uint64_t[:, ::1] m = meta
    # The items (and through them their arrays) stay alive while the bytes are
    # read without the GIL, whatever another thread does to the list.
    cdef list keep = list(seq)
    cdef object item
    for r in range(n):
        item = keep[inv[r]]
        if type(item) is tuple:
            if len(<tuple> item) != 2:
                return None
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            keep.append(item[0])
            keep.append(item[1])
        else:
            return None
        if not (_element(item[0], &a[r, 0], &s[r, 0], &m[r, 0])
                and _element(item[1], &a[r, 1], &s[r, 1], &m[r, 1])):
            return None
        if known_row and s[r, 0] == known_row and a[r, 0] == known_start + r * known_row:
            uk[r] = 1
    cdef uint64_t total = 0, h
    for r in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        if uk[r]:
            h = nf_fp_mix(m[r, 0] + known_hash[r])
        else:
            h = nf_fp_mix(m[r, 0] + nf_fp_bytes(<const char *> a[r, 0], s[r, 0]))
        h = nf_fp_mix(h + m[r, 1] + nf_fp_bytes(<const char *> a[r, 1], s[r, 1]))
        total += nf_fp_mix(h ^ (<uint64_t> r * 0xD6E8FEB86659FD93ULL))
    return int(total)


# --- the loader's layout: every column a row of one array ----------------------------

def shared_rows(list seq, int which, Py_ssize_t n_rows):
    """``(base, rows)`` when element ``which`` of item ``p`` of ``seq`` is, for every
    ``p``, row ``rows[p]`` of one array ``base`` (a float32/float64 C-contiguous
    (len(seq), n_rows) array in native byte order, of the items' dtype), seen as
    an (n_rows, 1) column, and ``rows`` is a permutation: the layout
    ``mnist_loader`` makes (``np.reshape(x, (784, 1))`` of the rows of one array).
    None otherwise, including for any item the copying packer would reject.

    Only the items' headers are read. ``base`` is returned as a read-only view:
    callers must never write into it (it is the caller's data).
    """
    cdef Py_ssize_t n = len(seq), p, k, offset
    cdef object item, obj, owner = None
    cdef cnp.ndarray arr, base
    cdef int typenum = -1
    cdef Py_ssize_t itemsize = 0, row_bytes = 0
    cdef char *start = NULL
    if n == 0 or n_rows < 1:
        return None
    rows = np.empty(n, np.int64)
    seen = np.zeros(n, np.uint8)
    cdef int64_t[::1] r = rows
    cdef unsigned char[::1] s = seen
    for p in range(n):
        item = seq[p]
        if type(item) is not tuple or len(<tuple> item) != 2:
            return None
        obj = (<tuple> item)[which]
        if not cnp.PyArray_CheckExact(obj):
            return None
        arr = <cnp.ndarray> obj
        if p == 0:
            if cnp.PyArray_BASE(arr) == NULL:
                return None
            owner = <object> cnp.PyArray_BASE(arr)
            if not cnp.PyArray_Check(owner):
                return None
            base = <cnp.ndarray> owner
            typenum = cnp.PyArray_TYPE(base)
            if base.ndim != 2 or base.shape[0] != n or base.shape[1] != n_rows \
                    or not cnp.PyArray_IS_C_CONTIGUOUS(base) \
                    or not cnp.PyArray_ISNOTSWAPPED(base) \
                    or typenum not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
                return None
            itemsize = cnp.PyArray_ITEMSIZE(base)
            row_bytes = itemsize * n_rows
            start = <char *> cnp.PyArray_DATA(base)
        elif <void *> cnp.PyArray_BASE(arr) != <void *> owner:
            return None
        if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] != 1 \
                or cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISNOTSWAPPED(arr) \
                or (n_rows > 1 and arr.strides[0] != itemsize):
            return None
        offset = <char *> cnp.PyArray_DATA(arr) - start
        if offset < 0 or offset % row_bytes != 0:
            return None
        k = offset // row_bytes
        if k >= n or s[k]:
            return None
        s[k] = 1
        r[p] = k
    X = (<cnp.ndarray> owner).view(np.ndarray)
    X.flags.writeable = False
    return X, rows


# --- one read of a packed matrix: finite? which entries are nonzero? ------------------

cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #include <emmintrin.h>
    #define NF_SCAN_SSE2 1
    #endif
    /* Row x of m float32/float64 values: its nonzero entries as bits (bit k of
       word w for entry 64w + k; -0.0 is zero, NaN is not, as for x != 0), the
       hash of its bytes as the fingerprint reads them (nf_fp_bytes) into
       *hash, and 1 if an entry is NaN or infinite (all exponent bits set).
       Integer tests on the bits, 16 bytes at a time with SSE2, else one
       entry at a time. */
    #ifdef NF_SCAN_SSE2
    static uint64_t nf_sse_sum(__m128i v) {
        uint64_t lanes[2];
        _mm_storeu_si128((__m128i *) lanes, v);
        return lanes[0] + lanes[1];
    }
    #endif
    static int nf_scan_f32(const uint32_t *x, Py_ssize_t m, uint64_t *bits, uint64_t *hash) {
        uint32_t bad = 0;
        uint64_t word = 0, acc = (uint64_t) m * 4;
        Py_ssize_t k = 0;
    #ifdef NF_SCAN_SSE2
        const __m128i absm = _mm_set1_epi32(0x7FFFFFFF), expm = _mm_set1_epi32(0x7F800000);
        const __m128i step = _mm_set1_epi64x((long long) (2 * NF_FP_STEP));
        __m128i vbad = _mm_setzero_si128(), vacc = _mm_setzero_si128();
        __m128i key = _mm_set_epi64x((long long) NF_FP_STEP, 0);
        for (; k + 4 <= m; k += 4) {
            __m128i raw = _mm_loadu_si128((const __m128i *) (x + k));
            __m128i v = _mm_and_si128(raw, absm);
            int zero;
            vacc = _mm_add_epi64(vacc, _mm_xor_si128(raw, key));
            key = _mm_add_epi64(key, step);
            vbad = _mm_or_si128(vbad, _mm_cmpeq_epi32(_mm_and_si128(v, expm), expm));
            zero = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, _mm_setzero_si128())));
            word |= (uint64_t) (~zero & 15) << (k & 63);
            if ((k & 63) == 60) {
                bits[k >> 6] = word;
                word = 0;
            }
        }
        bad = _mm_movemask_epi8(vbad) != 0;
        acc += nf_sse_sum(vacc);
    #endif
        if (m)
            *hash = nf_fp_words((const char *) x, m * 4, k / 2, acc);
        else
            *hash = 0;
        for (; k < m; k++) {
            uint32_t b = x[k] & 0x7FFFFFFFu;
            bad |= (uint32_t) (b >= 0x7F800000u);
            word |= (uint64_t) (b != 0) << (k & 63);
            if ((k & 63) == 63) {
                bits[k >> 6] = word;
                word = 0;
            }
        }
        if (m & 63)
            bits[m >> 6] = word;
        return (int) bad;
    }
    static int nf_scan_f64(const uint64_t *x, Py_ssize_t m, uint64_t *bits, uint64_t *hash) {
        uint64_t bad = 0;
        uint64_t word = 0, acc = (uint64_t) m * 8;
        Py_ssize_t k = 0;
    #ifdef NF_SCAN_SSE2
        /* 32-bit lanes: low and high halves of each value; the exponent is in
           the high half, and a value is zero when both halves are. */
        const __m128i absm = _mm_set_epi32(0x7FFFFFFF, -1, 0x7FFFFFFF, -1);
        const __m128i expm = _mm_set_epi32(0x7FF00000, 0, 0x7FF00000, 0);
        const __m128i step = _mm_set1_epi64x((long long) (2 * NF_FP_STEP));
        __m128i vbad = _mm_setzero_si128(), vacc = _mm_setzero_si128();
        __m128i key = _mm_set_epi64x((long long) NF_FP_STEP, 0);
        for (; k + 2 <= m; k += 2) {
            __m128i raw = _mm_loadu_si128((const __m128i *) (x + k));
            __m128i v = _mm_and_si128(raw, absm);
            __m128i z = _mm_cmpeq_epi32(v, _mm_setzero_si128());
            int zero;
            vacc = _mm_add_epi64(vacc, _mm_xor_si128(raw, key));
            key = _mm_add_epi64(key, step);
            vbad = _mm_or_si128(vbad, _mm_cmpeq_epi32(_mm_and_si128(v, expm), expm));
            z = _mm_and_si128(z, _mm_shuffle_epi32(z, _MM_SHUFFLE(2, 3, 0, 1)));
            zero = _mm_movemask_pd(_mm_castsi128_pd(z));
            word |= (uint64_t) (~zero & 3) << (k & 63);
            if ((k & 63) == 62) {
                bits[k >> 6] = word;
                word = 0;
            }
        }
        bad = (_mm_movemask_ps(_mm_castsi128_ps(vbad)) & 0xA) != 0;
        acc += nf_sse_sum(vacc);
    #endif
        if (m)
            *hash = nf_fp_words((const char *) x, m * 8, k, acc);
        else
            *hash = 0;
        for (; k < m; k++) {
            uint64_t b = x[k] & 0x7FFFFFFFFFFFFFFFULL;
            bad |= (uint64_t) (b >= 0x7FF0000000000000ULL);
            word |= (uint64_t) (b != 0) << (k & 63);
            if ((k & 63) == 63) {
                bits[k >> 6] = word;
                word = 0;
            }
        }
        if (m & 63)
            bits[m >> 6] = word;
        return (int) bad;
    }
    """
    int nf_scan_f32(const uint32_t *x, Py_ssize_t m, uint64_t *bits,
                    uint64_t *hash) noexcept nogil
    int nf_scan_f64(const uint64_t *x, Py_ssize_t m, uint64_t *bits,
                    uint64_t *hash) noexcept nogil


def scan_rows(cnp.ndarray M, int num_threads=1):
    """``(first_bad, bits, hashes)`` of a C-contiguous float32/float64 (n, m)
    matrix, in one parallel read: the first row holding a NaN or infinity (-1
    if none); which entries are nonzero, as ``_dense.sparse_rows`` keeps them:
    an (n, max(1, ceil(m / 64))) uint64 array, bit k of word w of row i set
    when ``M[i, 64 w + k] != 0``; and the hash of each row's bytes as
    :func:`fingerprint` reads an array's (uint64, for its ``known`` rows)."""
    if M.ndim != 2 or not cnp.PyArray_IS_C_CONTIGUOUS(M) \
            or not cnp.PyArray_ISNOTSWAPPED(M) \
            or cnp.PyArray_TYPE(M) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
        raise ValueError("expected a C-contiguous float32/float64 matrix, got %s %s"
                         % (M.dtype, (<object> M).shape))
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], i
    cdef Py_ssize_t n_words = max(1, (m + 63) // 64)
    cdef bint f32 = cnp.PyArray_TYPE(M) == cnp.NPY_FLOAT32
    cdef const char *data = <const char *> cnp.PyArray_DATA(M)
    cdef Py_ssize_t row_bytes = m * cnp.PyArray_ITEMSIZE(M)
    bits = np.zeros((n, n_words), np.uint64)
    hashes = np.zeros(n, np.uint64)
    bad = np.zeros(n, np.uint8)
    cdef uint64_t[:, ::1] w = bits
    cdef uint64_t[::1] h = hashes
    cdef unsigned char[::1] b = bad
    cdef int any_bad = 0
    if n and m:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            if f32:
                b[i] = <unsigned char> nf_scan_f32(<const uint32_t *> (data + i * row_bytes),
                                                  m, &w[i, 0], &h[i])
            else:
                b[i] = <unsigned char> nf_scan_f64(<const uint64_t *> (data + i * row_bytes),
                                                  m, &w[i, 0], &h[i])
            any_bad |= b[i]
    if any_bad:
        return int(np.flatnonzero(bad)[0]), bits, hashes
    return -1, bits, hashes


# --- class labels ---------------------------------------------------------------------

def labels(list seq, Py_ssize_t n_out):
    """The int64 class label of each (x, y) pair of ``seq``, y an int (or NumPy
    integer) in 0..n_out-1 or a float64 (n_out, 1) column (its argmax, the first
    NaN or else the first maximum, as ``np.argmax``). None as soon as an item is
    anything else: the caller's Python loop then reads the other forms or
    raises its errors."""
    cdef Py_ssize_t n = len(seq), p, j, best, stride
    cdef object item, y
    cdef cnp.ndarray arr
    cdef long long v
    cdef double x, top
    cdef const char *src
    out = np.empty(n, np.int64)
    cdef int64_t[::1] o = out
    for p in range(n):
        item = seq[p]
        if type(item) is not tuple or len(<tuple> item) != 2:
            return None
        y = (<tuple> item)[1]
        if type(y) is int or isinstance(y, np.integer):
            try:
                v = y
            except (OverflowError, TypeError):
                return None
        elif cnp.PyArray_CheckExact(y):
            arr = <cnp.ndarray> y
            if arr.ndim != 2 or arr.shape[0] != n_out or arr.shape[1] != 1 or n_out < 1 \
                    or cnp.PyArray_TYPE(arr) != cnp.NPY_FLOAT64 \
                    or not cnp.PyArray_ISNOTSWAPPED(arr):
                return None
            src = <const char *> cnp.PyArray_DATA(arr)
            stride = arr.strides[0]
            best = 0
            top = (<const double *> src)[0]
            if top == top:
                for j in range(1, n_out):
                    x = (<const double *> (src + j * stride))[0]
                    if x != x:
                        best = j
                        break
                    if x > top:
                        top = x
                        best = j
            v = best
        else:
            return None
        if v < 0 or v >= n_out:
            return None
        o[p] = v
    return out
