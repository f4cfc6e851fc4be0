"""Query-side correction: InvGC's gain for an index that is never rebuilt.

The projection form moves a gallery row ``x`` off the direction ``o(x)`` of its bank neighbours'
mean: ``x' ~ x - rho (x . o) o``. Where ``o(x)`` is close to one direction ``m`` for every row
(the normalized mean of the query bank: a narrow cone), a query scores

    q . x' ~ q . x - rho (x . m)(q . m) = (q - rho (q . m) m) . x = q~ . x,

so moving the *query* off ``m`` ranks the untouched gallery nearly as the corrected one would.
What it leaves out: each row's own direction ``o(x)`` (rows far from the cone's axis) and the
row norm ``1 / |x'|`` that the baked index divides by (docs/science.md).

``q~ = (I - rho m m^T) q`` is linear, so it is a faiss ``LinearTransform`` and
:func:`query_corrected` wraps any faiss index in a ``faiss.IndexPreTransform``: a plain faiss
index that ``faiss.write_index`` saves with the transform. Rows added through the wrapper are
mapped too, which ranks them exactly as if added untouched: ``q~ . x~ = q~ . x`` because ``q~``
is orthogonal to ``m``.
"""
import faiss
import numpy as np

from .validation import as_float_matrix, as_unit_rows, check_rate


def bank_direction(bank, name="bank"):
    """``m``: the normalized mean of a bank's unit rows (M, d), float32 (d,); ``ValueError``
    where the mean is zero (no direction to remove)."""
    mean = np.asarray(bank).mean(axis=0, dtype=np.float64)
    norm = np.linalg.norm(mean)
    if not norm > 1e-6:
        raise ValueError(f"the {name}'s mean is zero: it has no direction to remove")
    return (mean / norm).astype(np.float32)


#: Default ``rho``: 1, all of the component, the one rate at which ``I - rho m m^T`` is a
#: projection, so rows added through :func:`query_corrected`'s wrapper rank as if added
#: untouched. Lower rates ranked better on the six real directions' test pairs (0.8: +0.65 to
#: +1.62 R@1; benchmarks/query_side.py, docs/results.md) and ``tune``'s query-side form picks
#: them (0.7-0.9 there); with ``rho < 1`` add rows to the inner index itself (see
#: :func:`query_corrected`)
DEFAULT_RHO = 1.0


class QueryCorrection:
    """Move queries off the query bank's mean direction (scikit-learn conventions).

    Parameters
    ----------
    rho : float, >= 0
        How much of the query's component along ``m`` is removed (1: all of it; 0: the
        identity; default :data:`DEFAULT_RHO`).
    normalize_input : bool
        Normalize the query bank's rows first (else they must be unit).

    Attributes
    ----------
    direction_ : ndarray of shape (d,), float32
        ``m``: the normalized mean of the query bank.
    d_ : int
    """

    def __init__(self, rho=DEFAULT_RHO, *, normalize_input=False):
        self.rho = check_rate(rho, "rho")
        self.normalize_input = bool(normalize_input)

    def fit(self, query_bank):
        """Take ``m`` from ``query_bank`` (M, d): unit rows, reference data of the query side."""
        bank = as_float_matrix(query_bank, name="query_bank")
        bank = as_unit_rows(bank, name="query_bank", normalize=self.normalize_input)
        self.direction_ = bank_direction(bank, name="query_bank")
        self.d_ = bank.shape[1]
        return self

    def transform(self, queries):
        """``q - rho (q . m) m`` for each row of ``queries`` (n, d), float32 (n, d). Rows need
        not be unit: a scale per query does not change its ranking."""
        self._check_fitted()
        q = as_float_matrix(queries, self.d_, name="queries", allow_empty=True)
        return q - np.float32(self.rho) * np.outer(q @ self.direction_, self.direction_)

    def linear_transform(self):
        """The same map as a ``faiss.LinearTransform`` (``A = I - rho m m^T``, no bias)."""
        self._check_fitted()
        m = self.direction_.astype(np.float64)
        matrix = np.eye(self.d_) - self.rho * np.outer(m, m)
        transform = faiss.LinearTransform(self.d_, self.d_, False)
        faiss.copy_array_to_vector(matrix.astype(np.float32).ravel(), transform.A)
        transform.is_trained = True
        return transform

    def _check_fitted(self):
        if not hasattr(self, "direction_"):
            raise ValueError("this QueryCorrection is not fitted: call fit(query_bank) first")


def query_corrected(index, correction):
    """``index`` searched with corrected queries: a ``faiss.IndexPreTransform`` around it.

    Parameters
    ----------
    index : faiss.Index, inner-product metric, of the correction's dimension; it may already
        hold vectors (they are not touched)
    correction : fitted :class:`QueryCorrection`

    Returns
    -------
    faiss.IndexPreTransform
        ``search`` maps the queries, then searches ``index``; ``faiss.write_index`` saves the
        map. ``add`` maps the rows too: at ``rho = 1`` that leaves their ranking as it would be
        unmapped; at ``rho < 1`` a row added through the wrapper scores
        ``q . x - (2 rho - rho^2)(q . m)(x . m)`` instead of ``q . x - rho (q . m)(x . m)``
        (the map applied twice), so add rows to ``index`` itself to score them like the rows
        already there.
    """
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss index, got {type(index).__name__}")
    correction._check_fitted()
    if index.d != correction.d_:
        raise ValueError(f"the index has dimension {index.d}, the correction {correction.d_}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError("the query-side correction ranks by inner product: the index must use "
                         "faiss.METRIC_INNER_PRODUCT")
    transform = correction.linear_transform()
    wrapped = faiss.IndexPreTransform(transform, index)
    wrapped.referenced_objects = [transform, index]  # SWIG holds raw pointers: keep both alive
    return wrapped
