"""``InvGCIndex``: a genuine faiss index that applies InvGC to the gallery during ``add()``.

``train``, ``add`` and ``add_with_ids`` correct the vectors (:class:`invgc_faiss.InvGC`) before
the inner index sees them; everything else -- ``search``, ``range_search``, ``reconstruct`` -- is
faiss's own code over the corrected vectors, queries untouched. Because the object *is* an
``IndexIDMap2`` (:class:`invgc_faiss.base.InvGCBase`: ids, lock, removal), ``faiss.write_index``,
``faiss.clone_index`` and faiss clients accept it (they store the corrected vectors; the
correction itself travels only with :func:`invgc_faiss.write_index`), and ``index.index`` is a
plain faiss index any deployment can serve.
"""
import faiss

from .base import InvGCBase, fitted_correction, prepare_inner
from .rebalance import Alignment
from .validation import as_float_matrix, check_positive_int


class InvGCIndex(InvGCBase):
    """A faiss index whose gallery is corrected by InvGC at add time.

    Parameters
    ----------
    index : faiss.Index
        Empty inner index of dimension d (any type: flat, IVF, PQ, HNSW, a factory product). An
        empty IndexIDMap/IndexIDMap2 is unwrapped: this class is the id map. Inner product is
        natural; L2 ranks the same since corrected vectors have unit norm.
    query_bank : array_like of shape (M_q, d), optional
        Reference items of the query's modality (e.g. training-set captions).
    gallery_bank : array_like of shape (M_g, d), optional
        Reference items of the gallery's modality (e.g. training-set images).
    keep_originals : bool
        Also keep each added vector as given (d float32 per item), for :meth:`get_originals`.
    alignment : invgc_faiss.rebalance.Alignment, optional
        A fitted alignment of the two sides. Gallery rows are mapped by its gallery side before
        the correction, queries by its query side inside ``search`` / ``range_search``, and the
        banks by their own sides before the correction is fitted (a given ``correction`` must
        already have aligned banks). Saved and loaded with the index.
    correction : InvGC, optional
        An already fitted correction; the banks and ``params`` are then not used.
    device : {"cpu", "gpu"}
        ``"gpu"``: the inner index is copied to GPU 0 and exact LocalAdj banks are searched there
        (:mod:`invgc_faiss.gpu`); without a usable GPU a RuntimeWarning says why and the CPU
        runs it. ``remove_ids`` raises where the GPU index does not support it (flat).
    **params
        The correction's parameters (:class:`invgc_faiss.InvGC`): ``form``, ``rho_g``,
        ``rho_q``, ``r_g``, ``r_q``, ``variant``, ``pool_rate``, ``max_bank_size``, bank search
        and the rest. Defaults, measured on six real retrieval directions: the projection form,
        ``rho_q = 1`` on the query bank only, ``pool_rate = 0.2``, ``max_bank_size = 2048``.

    Attributes
    ----------
    correction : InvGC
    alignment : Alignment or None
    items : ItemTable, per-item ``degrees`` and, if kept, ``originals``
    """

    alignment = None

    def __init__(self, index, *, query_bank=None, gallery_bank=None, keep_originals=False,
                 alignment=None, correction=None, device="cpu", **params):
        inner, device = prepare_inner(index, device)
        if alignment is not None and alignment.d_ is None:
            raise ValueError(f"the {type(alignment).__name__} is not fitted: call fit() first")
        if alignment is not None and alignment.d_ != inner.d:
            raise ValueError(f"alignment has dimension {alignment.d_}, inner index has d = {inner.d}")
        if alignment is not None and correction is None:
            gallery_bank = None if gallery_bank is None else alignment.transform_gallery(
                gallery_bank)
            query_bank = None if query_bank is None else alignment.transform_query(query_bank)
        correction = fitted_correction(inner.d, correction, query_bank, gallery_bank,
                                       device=device, **params)
        super().__init__(inner, correction, given=index, keep_originals=keep_originals)
        self.alignment = alignment

    def _gallery_rows(self, x, start=0):
        """Validated gallery rows mapped by the alignment's gallery side (as given without one)."""
        return x if self.alignment is None else self.alignment.transform_gallery(x, start)

    def _vectors(self, x):
        return self.correction.correct(x)[0]

    def _prepare_rows(self, x, start):
        """The corrected vectors, and the degrees (and originals, if kept) for the table."""
        corrected, degrees = self.correction.correct(self._gallery_rows(x, start), start)
        rows = {"degrees": degrees}
        if self.keep_originals:
            rows["originals"] = x
        return corrected, rows

    def _queries(self, x):
        """Queries validated and mapped by the alignment's query side (as given without one)."""
        x = as_float_matrix(x, self.d, name="queries", allow_empty=True)
        return x if self.alignment is None else self.alignment.transform_query(x)

    def search(self, x, k, *, params=None, D=None, I=None):
        """``D, I = index.search(x, k)``: faiss search of the queries ``x`` (n, d) -- untouched
        by InvGC, mapped by the alignment's query side if there is one -- against the corrected
        gallery. ``k > ntotal`` pads with ``I = -1`` as faiss does."""
        x = self._queries(x)
        k = check_positive_int(k, "k")
        with self._searching():
            return super().search(x, k, params=params, D=D, I=I)

    def range_search(self, x, thresh, *, params=None):
        """``lims, D, I = index.range_search(x, thresh)`` over the corrected gallery."""
        x = self._queries(x)
        with self._searching():
            return super().range_search(x, thresh, params=params)

    def _file_state(self):
        if self.alignment is None:
            return {"alignment": None}, {}
        get_params = getattr(self.alignment, "get_params", None)
        header = {"name": self.alignment.name, "d": self.alignment.d_,
                  "params": get_params() if get_params is not None else {}}
        arrays = {f"alignment_{side}": matrix
                  for side, matrix in self.alignment.matrices().items()}
        return {"alignment": header}, arrays

    @classmethod
    def _restore_kwargs(cls, header, arrays):
        """An alignment comes back as a plain :class:`invgc_faiss.rebalance.Alignment` with the
        same matrices (so the same searches)."""
        aligned = header.get("alignment")
        if aligned is None:
            return {}
        return {"alignment": Alignment.from_matrices(
            {key[len("alignment_"):]: value for key, value in arrays.items()
             if key.startswith("alignment_")}, d=aligned["d"], name=aligned["name"])}


def index_factory(d, description, metric=faiss.METRIC_L2, **invgc_params):
    """``faiss.index_factory`` wrapped in an :class:`InvGCIndex`.

    Parameters
    ----------
    d : int
    description : str
        Any faiss factory string, e.g. ``"IVF256,Flat"``, ``"HNSW32"``, ``"IDMap2,Flat"``.
    metric : int
        faiss metric, default ``METRIC_L2`` as in faiss (corrected vectors are unit, so L2 and
        inner product rank alike); ``METRIC_INNER_PRODUCT`` gives cosine scores.
    **invgc_params
        Keyword arguments of :class:`InvGCIndex` (banks, rates, variant, ...).
    """
    d = check_positive_int(d, "d")
    try:
        inner = faiss.index_factory(d, description, metric)
    except RuntimeError as exc:
        raise ValueError(f"bad faiss factory string {description!r}: {exc}") from None
    return InvGCIndex(inner, **invgc_params)
