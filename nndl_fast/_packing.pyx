"""Turning the book's lists of (x, y) column pairs into matrices, in one C loop.

The book's data are Python lists of 50,000 ``(x, y)`` tuples holding (784, 1)
arrays. Checking and copying them item by item in Python costs about a second;
here each item is checked (type, shape, dtype) and copied row by row into a
preallocated (n, n_rows) matrix, with the same error messages.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy

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
