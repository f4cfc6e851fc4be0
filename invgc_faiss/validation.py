"""Input checks, done once where data enters the library.

Every public entry point converts its arrays here first: the result is a float32 (or int64)
C-contiguous array of the right shape, finite, and -- for gallery vectors and banks -- of unit
L2 norm. Each failure raises ``TypeError`` (a dtype that cannot be converted safely) or
``ValueError`` (wrong shape, wrong dimension, NaN/inf, non-unit rows, bad ids) with the offending
values in the message. Nothing here mutates caller data. Warnings are attributed to the user's
line, however deep in the library they arise (:func:`warn_caller`).
"""
import numbers
import os
import sys
import warnings

import numpy as np

#: Rows whose L2 norm differs from 1 by more than this are "not unit".
UNIT_NORM_TOLERANCE = 1e-3


def as_float_matrix(x, d=None, *, name="x", allow_empty=False):
    """Convert ``x`` to a float32 C-contiguous matrix and check it.

    Parameters
    ----------
    x : array_like of shape (n, d)
        Real numbers. Integer, bool and float dtypes are accepted; complex, object and string
        dtypes raise ``TypeError``.
    d : int or None
        Expected number of columns.
    name : str
        Used in error messages.
    allow_empty : bool
        Whether ``n == 0`` is acceptable.

    Returns
    -------
    ndarray of shape (n, d), float32, C-contiguous
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers, got dtype {arr.dtype}; convert it to float32 first"
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n, d), got shape {arr.shape}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected d = {d}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(
            f"{name} contains NaN or inf in {bad.size} row(s), first at row {int(bad[0])}"
        )
    return arr


def row_norms(x):
    """L2 norm of every row, accumulated in float64; shape (n,)."""
    return np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))


def as_unit_rows(x, *, name="x", normalize=False):
    """Check (or make) every row of a float32 matrix unit-norm.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32, from :func:`as_float_matrix`
    normalize : bool
        False: rows whose norm is off 1 by more than ``UNIT_NORM_TOLERANCE`` raise ``ValueError``.
        True: rows are divided by their norm (a new array is returned); zero rows still raise.

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    if not normalize:  # a check to 1e-3: float32 sums of squares (1e-6 off) are ample
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        off = np.flatnonzero(np.abs(norms.astype(np.float64) - 1.0) > UNIT_NORM_TOLERANCE)
        if off.size:
            i = int(off[0])
            raise ValueError(
                f"{name} must have unit L2 norm rows (dual-encoder embeddings), but {off.size} "
                f"row(s) do not: row {i} has norm {row_norms(x[i:i + 1])[0]:.6g}; L2-normalize "
                "them or pass normalize_input=True"
            )
        return x
    norms = row_norms(x)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(
            f"{name} has {zero.size} zero row(s) (first at row {int(zero[0])}) that cannot be "
            "normalized"
        )
    return (x / norms[:, None]).astype(np.float32)


def as_unit_banks(query_bank, gallery_bank, *, normalize=False):
    """Both reference banks validated as :func:`as_unit_rows` matrices of one dimension ``d``
    (the query bank's); returns ``(query_bank, gallery_bank)``."""
    query_bank = as_unit_rows(as_float_matrix(query_bank, name="query_bank"), name="query_bank",
                              normalize=normalize)
    gallery_bank = as_unit_rows(as_float_matrix(gallery_bank, query_bank.shape[1],
                                                name="gallery_bank"),
                                name="gallery_bank", normalize=normalize)
    return query_bank, gallery_bank


def as_ids(ids, n, *, name="ids"):
    """Convert ids to an int64 vector of length ``n`` and check them.

    Ids must be integers (bool, float, object dtypes raise ``TypeError``), non-negative (``-1``
    marks a missing result in faiss) and unique within the batch.
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the vectors, got {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64, got max {arr.max()}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0 (-1 marks missing results), got {arr.min()}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name} contains duplicates")
    return arr


def check_positive_int(value, name):
    """Return ``value`` as int if it is an integer >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_start(value, name="start"):
    """Return ``value`` as int if it is an integer >= 0 (a row position), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def check_rate(value, name):
    """Return ``value`` as float if it is a finite real >= 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def check_pool_rate(value):
    """Return ``value`` as float if it lies in (0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"pool_rate must be a real number, got {type(value).__name__}")
    if not (0.0 < value <= 1.0):
        raise ValueError(f"pool_rate must be in (0, 1], got {value}")
    return float(value)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _in_package(path):
    return os.path.abspath(path).startswith(_PACKAGE)


def warn_caller(message, category):
    """``warnings.warn`` attributed to the first caller outside this package (the user's line),
    however deep inside the library the warning arises."""
    frame, level = sys._getframe(0), 1
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
