"""Renormalization (Ren, Sun, Liang, arXiv 2511.11041): remove each side's mean, then renormalize.

Embeddings of one side share a mean ``mu`` that is nearly the same for every input; removing it
is the simplest cure for a crowded cone, and the baseline InvGC must beat (docs/science.md §1e).
Two kinds, per side (``mu`` the mean of that side's bank rows, ``û = mu / |mu|``)::

    R1:  x -> normalize(x - mu)
    R2:  x -> normalize(x - (x . û) û)

Both are self-limiting: where a side's mean is near zero they change nearly nothing.

:class:`Renormalization` fits the maps on the banks (``sides="both"``: queries with the query
bank's mean, gallery rows with the gallery bank's; ``sides="query"``: the queries only) and is an
:class:`invgc_faiss.rebalance.Alignment`, so ``InvGCIndex(inner, alignment=renorm, ...)`` bakes the
gallery map at ``add``, maps the queries in ``search``, fits any InvGC correction on the
renormalized banks, and saves it all. A query-only renormalization also wraps a filled index that
is never rebuilt: :func:`renormalized_queries` (a ``faiss.IndexPreTransform``, as
:func:`invgc_faiss.query_corrected`).
"""
import faiss
import numpy as np

from .rebalance.alignment import Alignment
from .validation import as_float_matrix, as_unit_rows

KINDS = ("R1", "R2")
SIDES = ("both", "query")


def _side_map(bank, kind):
    """``(matrix or None, shift or None)`` of one side from its bank rows (M, d)."""
    mean = np.asarray(bank).mean(axis=0, dtype=np.float64)
    if kind == "R1":
        return None, mean.astype(np.float32)
    norm = np.linalg.norm(mean)
    if not norm > 1e-12:  # no mean direction: R2 changes nothing
        return None, None
    unit = mean / norm
    return (np.eye(mean.size) - np.outer(unit, unit)).astype(np.float32), None


class Renormalization(Alignment):
    """Renormalization of one or both sides (scikit-learn conventions; module docstring).

    Parameters
    ----------
    kind : {"R1", "R2"}
        R1 subtracts the side's mean, R2 its component along the mean's direction.
    sides : {"both", "query"}
        "both": queries by the query bank's mean, gallery rows by the gallery bank's.
        "query": the queries only (the gallery bank is not needed).
    normalize_input : bool
        Normalize the bank rows first (else they must be unit).

    Attributes
    ----------
    query_matrix_, gallery_matrix_, query_shift_, gallery_shift_ : the maps (see
        :class:`invgc_faiss.rebalance.Alignment`)
    d_ : int
    """

    def __init__(self, kind="R1", sides="both", *, normalize_input=False):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if sides not in SIDES:
            raise ValueError(f"sides must be one of {SIDES}, got {sides!r}")
        self.kind, self.sides, self.normalize_input = kind, sides, bool(normalize_input)
        self.name = f"renormalization-{kind}-{sides}"

    def get_params(self):
        return {"kind": self.kind, "sides": self.sides}

    def fit(self, query_bank, gallery_bank=None):
        """Take each side's mean from its bank: ``query_bank`` (M_q, d), and ``gallery_bank``
        (M_g, d) when ``sides="both"``; unit rows."""
        banks = {"query": query_bank, "gallery": gallery_bank if self.sides == "both" else None}
        if self.sides == "both" and gallery_bank is None:
            raise ValueError("sides='both' renormalizes the gallery by the gallery bank's mean: "
                             "pass gallery_bank (or use sides='query')")
        d = None
        for side, bank in banks.items():
            matrix = shift = None
            if bank is not None:
                bank = as_unit_rows(as_float_matrix(bank, d, name=f"{side}_bank"),
                                    name=f"{side}_bank", normalize=self.normalize_input)
                d = bank.shape[1]
                matrix, shift = _side_map(bank, self.kind)
            setattr(self, f"{side}_matrix_", matrix)
            setattr(self, f"{side}_shift_", shift)
        self.d_ = d
        return self

    def query_transform(self):
        """The query map without its final normalization (a scale per query does not change its
        ranking), as a ``faiss.LinearTransform``: ``A = I - û ûᵀ`` (R2) or ``A = I``,
        ``b = -mu`` (R1)."""
        self._check_fitted()
        transform = faiss.LinearTransform(self.d_, self.d_, self.query_shift_ is not None)
        matrix = np.eye(self.d_, dtype=np.float32) if self.query_matrix_ is None else \
            self.query_matrix_
        faiss.copy_array_to_vector(np.ascontiguousarray(matrix.T).ravel(), transform.A)
        if self.query_shift_ is not None:
            faiss.copy_array_to_vector(-self.query_shift_, transform.b)
        transform.is_trained = True
        return transform


def renormalized_queries(index, renormalization):
    """``index`` searched with renormalized queries: a ``faiss.IndexPreTransform`` around it
    (query-only renormalization; the index may already hold vectors, which are not touched).

    Parameters
    ----------
    index : faiss.Index, inner-product metric
    renormalization : fitted :class:`Renormalization` with ``sides="query"``

    Returns
    -------
    faiss.IndexPreTransform
        ``search`` maps the queries (``q - mu`` for R1, ``q - (q . û) û`` for R2; no final
        normalization, which does not change a query's ranking). ``add`` maps rows with the same
        map: for R2 they then rank as if added untouched (``q~ . P x = q~ . x``); for R1 each
        added row would lose ``q~ . mu`` against the rows already there, so add rows to
        ``index`` itself.
    """
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss index, got {type(index).__name__}")
    if renormalization.sides != "query":
        raise ValueError("renormalized_queries moves the queries only; a renormalization of "
                         "both sides bakes the gallery: InvGCIndex(inner, alignment=...)")
    transform = renormalization.query_transform()
    if index.d != renormalization.d_:
        raise ValueError(f"the index has dimension {index.d}, the renormalization "
                         f"{renormalization.d_}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError("renormalized queries rank by inner product: the index must use "
                         "faiss.METRIC_INNER_PRODUCT")
    wrapped = faiss.IndexPreTransform(transform, index)
    wrapped.referenced_objects = [transform, index]
    return wrapped
