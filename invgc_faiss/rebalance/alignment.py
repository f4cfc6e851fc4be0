"""Fitted alignments between the two sides of a paired retrieval task, and the closed-form ones.

An alignment holds one (d, d) matrix per side, or ``None`` for a side left as it is, and
optionally a shift per side (renormalization's R1 subtracts a side's mean), and maps::

    query row x    ->  normalize((x - s_q) M_q)     (no shift / x unchanged when None)
    gallery row x  ->  normalize((x - s_g) M_g)

Every fitter in :mod:`invgc_faiss.rebalance` produces one (learned state ``query_matrix_``,
``gallery_matrix_``, ``d_``), so :class:`invgc_faiss.InvGCIndex` and the file format handle them
all alike. Closed-form fitters (baselines of docs/science.md §4), given reference pairs
``Q``, ``G`` (n, d) with row i matching row i; both map the query side onto the gallery side:

* :class:`IdentityAlignment`: nothing changes.
* :class:`ProcrustesAlignment`: ``M_q = argmin_{R orthogonal} ||Q R - G||_F = U V^T`` where
  ``Q^T G = U S V^T``.
* :class:`LeastSquaresAlignment`: ``M_q = argmin_W ||Q W - G||_F`` (numpy lstsq).
"""
import numpy as np

from .. import row_blocks
from ..validation import as_float_matrix, check_start
from .maps import normalize_rows


def check_pairs(queries, gallery, min_pairs=2):
    """Validated float32 copies of paired reference rows ``queries``, ``gallery`` (n, d)."""
    q = as_float_matrix(queries, name="queries")
    g = as_float_matrix(gallery, q.shape[1], name="gallery")
    if q.shape[0] != g.shape[0]:
        raise ValueError(f"queries and gallery must be paired row by row, got {q.shape[0]} and "
                         f"{g.shape[0]} rows")
    if q.shape[0] < min_pairs:
        raise ValueError(f"need at least {min_pairs} reference pairs, got {q.shape[0]}")
    return q, g


class Alignment:
    """A fitted alignment; see the module docstring.

    Parameters
    ----------
    query_matrix, gallery_matrix : ndarray of shape (d, d) or None
    d : int
    name : str, what produced it (saved with an index)
    query_shift, gallery_shift : ndarray of shape (d,) or None
    """

    name = "identity"
    query_matrix_ = None
    gallery_matrix_ = None
    query_shift_ = None
    gallery_shift_ = None
    d_ = None

    def __init__(self, query_matrix=None, gallery_matrix=None, *, d, name="identity",
                 query_shift=None, gallery_shift=None):
        self.d_ = int(d)
        self.query_matrix_ = None if query_matrix is None else as_float_matrix(
            query_matrix, self.d_, name="query_matrix")
        self.gallery_matrix_ = None if gallery_matrix is None else as_float_matrix(
            gallery_matrix, self.d_, name="gallery_matrix")
        self.query_shift_, self.gallery_shift_ = (
            None if shift is None else as_float_matrix(np.reshape(shift, (1, -1)), self.d_,
                                                       name=f"{side}_shift")[0]
            for side, shift in (("query", query_shift), ("gallery", gallery_shift)))
        self.name = name

    def _check_fitted(self):
        if self.d_ is None:
            raise ValueError(f"this {type(self).__name__} is not fitted: call fit() first")

    def _apply(self, x, matrix, shift, name, start):
        self._check_fitted()
        x = as_float_matrix(x, self.d_, name=name, allow_empty=True)
        if matrix is None and shift is None:
            return x
        if shift is not None:
            x = x - shift
        if matrix is not None:
            x = row_blocks.product(x, matrix, start)
        return np.ascontiguousarray(normalize_rows(x)[0], dtype=np.float32)

    def transform_query(self, x, start=0):
        """Query-side rows ``x`` (n, d) -> aligned rows (n, d) float32 (``start``: the position
        of ``x[0]``, as for :meth:`invgc_faiss.InvGC.transform`)."""
        return self._apply(x, self.query_matrix_, self.query_shift_, "queries",
                           check_start(start))

    def transform_gallery(self, x, start=0):
        """Gallery-side rows ``x`` (n, d) -> aligned rows (n, d) float32; a row's result is the
        same bit for bit in any batch that gives its first row's position ``start``
        (docs/reproducibility.md)."""
        return self._apply(x, self.gallery_matrix_, self.gallery_shift_, "gallery",
                           check_start(start))

    def swapped(self):
        """The same maps with the sides' roles exchanged (for the reverse retrieval direction)."""
        self._check_fitted()
        return Alignment(self.gallery_matrix_, self.query_matrix_, d=self.d_, name=self.name,
                         query_shift=self.gallery_shift_, gallery_shift=self.query_shift_)

    def matrices(self):
        """``{"query": M_q, "gallery": M_g, "query_shift": s_q, "gallery_shift": s_g}`` without
        the sides left as they are (for saving; :meth:`from_matrices` is the inverse)."""
        self._check_fitted()
        return {key: m for key, m in (("query", self.query_matrix_),
                                      ("gallery", self.gallery_matrix_),
                                      ("query_shift", self.query_shift_),
                                      ("gallery_shift", self.gallery_shift_)) if m is not None}

    @classmethod
    def from_matrices(cls, arrays, *, d, name):
        """A plain :class:`Alignment` with the maps of :meth:`matrices` (``arrays`` may lack
        any key)."""
        return Alignment(arrays.get("query"), arrays.get("gallery"), d=d, name=name,
                         query_shift=arrays.get("query_shift"),
                         gallery_shift=arrays.get("gallery_shift"))


class IdentityAlignment(Alignment):
    """Leaves both sides as they are (the baseline)."""

    def __init__(self):
        pass

    def fit(self, queries, gallery):
        q, _ = check_pairs(queries, gallery, min_pairs=1)
        self.d_ = q.shape[1]
        return self


class _QueryMapAlignment(Alignment):
    """A closed-form map of the query side onto the gallery side; subclasses give ``solve``."""

    def __init__(self):
        pass

    @staticmethod
    def solve(q, g):
        """The (d, d) float64 matrix for reference pairs ``q``, ``g`` (n, d) float64."""
        raise NotImplementedError

    def fit(self, queries, gallery):
        q, g = check_pairs(queries, gallery)
        self.query_matrix_ = self.solve(q.astype(np.float64), g.astype(np.float64)).astype(np.float32)
        self.d_ = q.shape[1]
        return self


class ProcrustesAlignment(_QueryMapAlignment):
    """Orthogonal map of the query side onto the gallery side (module docstring)."""

    name = "procrustes"

    @staticmethod
    def solve(q, g):
        u, _, vt = np.linalg.svd(q.T @ g)
        return u @ vt


class LeastSquaresAlignment(_QueryMapAlignment):
    """Least-squares linear map of the query side onto the gallery side (module docstring)."""

    name = "lstsq"

    @staticmethod
    def solve(q, g):
        return np.linalg.lstsq(q, g, rcond=None)[0]
