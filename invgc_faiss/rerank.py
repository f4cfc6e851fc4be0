"""Rerank mode: InvGC on an index that keeps the original vectors, rates adjustable at search time.

The inner index stores the vectors as given; per item the wrapper stores what exact rescoring of
``q . x'`` needs. With ``u_b = x - r_b o_b`` (``o_b`` the bank-b offset of docs/science.md §1a) and
``x' = normalize(sum_b normalize(u_b))``::

    n_b  = ||u_b||^2 = x.x - 2 r_b x.o_b + r_b^2 o_b.o_b          a_b = 1 / sqrt(n_b)  (0 if n_b = 0)
    q.y  = sum_b a_b (q.x - r_b q.o_b)                              y = sum_b a_b u_b
    ||y||^2 = sum_b a_b^2 n_b + 2 a_0 a_1 u_0.u_1,   u_0.u_1 = x.x - r_0 x.o_0 - r_1 x.o_1 + r_0 r_1 o_0.o_1
    q.x' = q.y / ||y||                                  (one bank: q.x' = a_0 (q.x - r_0 q.o_0))

``q.x`` comes from the inner index's own search (inner product, or recovered from L2 distance),
``q.o_b`` from the stored offsets, the rest from six stored scalars ``x.x, x.o_0, x.o_1,
o_0.o_0, o_1.o_1, o_0.o_1``. Nothing depends on the rates, so ``r_g, r_q`` change at search time
(:meth:`InvGCRerankIndex.set_rates`) without touching stored data; ``r_g = r_q = 0`` scores
``q.x``, the plain index. Memory per item: ``n_banks * d`` offsets (float16 by default: 2 bytes,
score error measured <= 1e-3; float32: 4 bytes) + 6 float32 scalars + ``n_banks`` float32 degrees
(e.g. 2 banks, d = 384, float16: 1,568 bytes).

Search follows faiss's ``IndexRefine``: fetch ``k * k_factor`` candidates by raw score, rescore
them, keep the best ``k``. A true neighbour that the raw ranking puts below ``k * k_factor`` is
missed; with ``k * k_factor >= ntotal`` the result equals the baked :class:`InvGCIndex` exactly.
"""
import faiss
import numpy as np

from . import forms, kernels
from .index import InvGCIndex
from .item_table import ItemTable
from .validation import as_float_matrix, check_positive_int, check_rate

OFFSET_DTYPES = ("float16", "float32")
N_SCALARS = 6
#: every float16 bit pattern decoded to float32, for the rescoring kernel
HALF_TABLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def rerank_scalars(x, offsets):
    """The six per-item scalars ``[x.x, x.o_0, x.o_1, o_0.o_0, o_1.o_1, o_0.o_1]``.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (n_banks, n, d), float32, n_banks in {1, 2}

    Returns
    -------
    ndarray of shape (n, 6), float32 (bank-1 terms are 0 with one bank)
    """
    x64 = x.astype(np.float64)
    o0 = offsets[0].astype(np.float64)
    o1 = offsets[1].astype(np.float64) if offsets.shape[0] == 2 else np.zeros_like(o0)

    def dot(a, b):
        return np.einsum("ij,ij->i", a, b)

    return np.column_stack([dot(x64, x64), dot(x64, o0), dot(x64, o1), dot(o0, o0), dot(o1, o1),
                            dot(o0, o1)]).astype(np.float32)


def corrected_scores(qx, qo, scalars, rates, form="paper"):
    """``q . x'`` from raw scores and per-item quantities (module docstring), vectorized.

    The projection form (:mod:`invgc_faiss.forms`) is the same algebra with the per-item rate
    ``r_b(x) = rho_b (x.o_b) / (o_b.o_b)``, read from the stored scalars, over the banks with
    ``rho_b > 0`` only.

    Parameters
    ----------
    qx : ndarray of shape S, raw scores ``q . x``
    qo : ndarray of shape (n_banks,) + S, ``q . o_b``
    scalars : ndarray of shape S + (6,), from :func:`rerank_scalars`
    rates : sequence of n_banks floats (``r`` or ``rho``)
    form : {"paper", "projection"}

    Returns
    -------
    ndarray of shape S, float64
    """
    qx = np.asarray(qx, dtype=np.float64)
    active = forms.active_banks(form, rates)
    if not active:
        return qx
    s = np.asarray(scalars, dtype=np.float64)
    xx = s[..., 0]
    numerator = np.zeros_like(qx)
    weights, sq_norms, item_rates = [], [], []
    for b in active:
        r = forms.item_rates(form, rates[b], s[..., 1 + b], s[..., 3 + b])
        n_b = xx - 2 * r * s[..., 1 + b] + r * r * s[..., 3 + b]
        a_b = np.where(n_b > 0, 1 / np.sqrt(np.maximum(n_b, 1e-300)), 0.0)
        numerator += a_b * (qx - r * qo[b])
        weights.append(a_b)
        sq_norms.append(n_b)
        item_rates.append(r)
    if len(active) == 1:
        return numerator
    r0, r1 = item_rates
    u0u1 = xx - r0 * s[..., 1] - r1 * s[..., 2] + r0 * r1 * s[..., 5]
    yy = (weights[0] ** 2 * sq_norms[0] + weights[1] ** 2 * sq_norms[1]
          + 2 * weights[0] * weights[1] * u0u1)
    return np.where(yy > 0, numerator / np.sqrt(np.maximum(yy, 1e-300)), 0.0)


class InvGCRerankIndex(InvGCIndex):
    """InvGC by rescoring: the inner index keeps the original vectors (see module docstring).

    Parameters
    ----------
    index : faiss.Index
        Empty inner index (use :meth:`from_existing` to attach to a filled one).
    k_factor : int
        Candidates fetched per requested result.
    offset_dtype : {"float16", "float32"}
        Storage of the per-item offsets.
    **params
        As for :class:`InvGCIndex` (banks, ``r_g``, ``r_q``, variant, pool_rate, ...), except
        ``alignment``: rerank mode keeps the stored vectors as given, so it takes none.

    Attributes
    ----------
    rates : ndarray of shape (n_banks,), float64
        The rates used at search time (``r`` or ``rho``, by ``correction.form_``), in
        ``correction.bank_names_`` order.
    """

    _searches_all_banks = True
    k_factor = None
    offset_dtype = "float16"
    rates = None

    def __init__(self, index, *, k_factor=8, offset_dtype="float16", **params):
        if params.get("alignment") is not None:
            raise ValueError("an alignment is applied by InvGCIndex (baked mode) only; rerank mode "
                             "does not take one")
        super().__init__(index, **params)
        if offset_dtype not in OFFSET_DTYPES:
            raise ValueError(f"offset_dtype must be one of {OFFSET_DTYPES}, got {offset_dtype!r}")
        self.k_factor = check_positive_int(k_factor, "k_factor")
        self.offset_dtype = offset_dtype
        self.items = ItemTable(*self._item_layout())
        self.rates = self.correction.rates_.copy()

    def _item_layout(self):
        widths, dtypes = super()._item_layout()
        for b in range(len(self.correction.offsets_)):
            widths[f"offsets_{b}"] = self.correction.d_
            dtypes[f"offsets_{b}"] = self.offset_dtype
        widths["scalars"] = N_SCALARS
        return widths, dtypes

    def set_rates(self, r_g=None, r_q=None, *, rho_g=None, rho_q=None):
        """Change the rates used by later searches; stored data is untouched. Rates of the
        index's form only: ``r_g``/``r_q`` (paper) or ``rho_g``/``rho_q`` (projection)."""
        form = self.correction.form_
        paper, projection = (r_g, r_q), (rho_g, rho_q)
        if any(v is not None for v in (projection if form == "paper" else paper)):
            raise ValueError(f"this index uses the {form} form: set its rates "
                             f"{forms.RATE_NAMES[form]}")
        given = dict(zip(("gallery", "query"), paper if form == "paper" else projection))
        rates = self.rates.copy()
        for b, name in enumerate(self.correction.bank_names_):
            if given[name] is not None:
                rates[b] = check_rate(given[name],
                                      forms.RATE_NAMES[form][("gallery", "query").index(name)])
        self.rates = rates

    def train(self, x):
        """Train the inner index on ``x`` as given (it stores originals); the full variant takes its
        gallery mean from ``x``."""
        x = self.correction.check_input(x)
        with self._lock.writing():
            if self.correction.variant == "full":
                self.correction.fit_gallery_mean(x.mean(axis=0, dtype=np.float64))
            faiss.IndexIDMap2.train(self, x)

    def _prepare_rows(self, x):
        """Original vectors for the inner index; offsets, scalars and degrees for the table."""
        n = x.shape[0]
        nb = len(self.correction.offsets_)
        rows = {"degrees": np.empty((n, nb), np.float32),
                "scalars": np.empty((n, N_SCALARS), np.float32)}
        for b in range(nb):
            rows[f"offsets_{b}"] = np.empty((n, x.shape[1]), self.offset_dtype)
        for start in range(0, n, self.correction.batch_size):
            stop = min(n, start + self.correction.batch_size)
            offsets, degrees = self.correction.offsets(x[start:stop])
            rows["degrees"][start:stop] = degrees.T
            rows["scalars"][start:stop] = rerank_scalars(x[start:stop], offsets)
            for b in range(nb):
                rows[f"offsets_{b}"][start:stop] = offsets[b]
        if self.keep_originals:
            rows["originals"] = x
        return x, rows

    def search(self, x, k, *, params=None, D=None, I=None):
        """``D, I = index.search(x, k)``: ``k * k_factor`` raw candidates rescored with the current
        rates. Scores are ``q . x'`` (inner product) or ``||q - x'||^2`` (L2, ``x'`` unit)."""
        x = as_float_matrix(x, self.d, name="queries", allow_empty=True)
        k = check_positive_int(k, "k")
        n = x.shape[0]
        l2 = self.metric_type == faiss.METRIC_L2
        D_out = np.full((n, k), np.inf if l2 else -np.inf, dtype=np.float32)
        I_out = np.full((n, k), -1, dtype=np.int64)
        with self._searching():
            n_candidates = min(self.ntotal, k * self.k_factor)
            if n and n_candidates:
                raw, positions = self._candidates(x, n_candidates, params)
                scores = self._rescore(x, raw, positions)
                id_view = faiss.rev_swig_ptr(self.id_map.data(), self.ntotal)
                candidate_ids = np.where(positions >= 0, id_view[np.maximum(positions, 0)], -1)
        if n and n_candidates:
            keep = min(k, n_candidates)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
            best = np.take_along_axis(scores, order, axis=1)
            chosen = np.take_along_axis(candidate_ids, order, axis=1)
            found = np.take_along_axis(positions, order, axis=1) >= 0
            I_out[:, :keep] = chosen
            if l2:
                best = (x * x).sum(axis=1, keepdims=True) + 1 - 2 * best
            D_out[:, :keep] = np.where(found, best, D_out[:, :keep])
        if D is not None:
            D[:] = D_out
        if I is not None:
            I[:] = I_out
        return D_out, I_out

    def _candidates(self, x, n_candidates, params):
        """Raw scores ``q . x`` and internal positions of the top candidates of the inner index;
        an ``IDSelector`` in ``params`` (on the caller's ids) is translated to positions."""
        inner = self.index
        sel = getattr(params, "sel", None) if params is not None else None
        if sel is not None:
            translated = faiss.IDSelectorTranslated(self.id_map, sel)
            params = _copy_with_selector(params, translated)
        D, P = inner.search(x, n_candidates, params=params)
        if self.metric_type == faiss.METRIC_L2:
            xx = self.items.columns["scalars"][np.maximum(P, 0), 0]
            D = ((x * x).sum(axis=1, keepdims=True) + xx - D) / 2
        return D, P

    def _rescore(self, x, raw, positions):
        """Corrected scores (nq, n_candidates), float64; -inf where no candidate."""
        nb = len(self.rates)
        qo = np.empty((nb,) + positions.shape, dtype=np.float64)
        for b in range(nb):
            rows = self.items.columns[f"offsets_{b}"]
            if rows.dtype == np.float16:
                kernels.candidate_dots_half(x, positions, rows.view(np.uint16), HALF_TABLE, qo[b])
            else:
                kernels.candidate_dots(x, positions, rows, qo[b])
        scalars = self.items.columns["scalars"][np.maximum(positions, 0)]
        scores = corrected_scores(raw, qo, scalars, self.rates, self.correction.form_)
        scores[positions < 0] = -np.inf
        return scores

    def range_search(self, x, thresh, *, params=None):
        """Not offered: rerank mode rescores a bounded candidate list, and a range query would
        need every stored vector rescored. Use the baked :class:`InvGCIndex`."""
        raise NotImplementedError("range_search is not available in rerank mode; use InvGCIndex")

    @classmethod
    def from_existing(cls, index, *, vectors=None, batch_size=65536, progress=None, **params):
        """Attach to an already-built faiss index without re-adding anything.

        Parameters
        ----------
        index : faiss.Index
            Flat, IVF (with its default sequential ids), HNSW, or an IndexIDMap/IndexIDMap2 around
            one of those. It becomes this index's storage: do not modify it through the original
            object afterwards.
        vectors : array_like of shape (ntotal, d), optional
            The stored vectors in internal order, for indexes that cannot reconstruct them (PQ,
            lossy codes) or to save the reconstruction; any array slicing into batches
            (``np.memmap`` included). Default: ``reconstruct_n`` in batches (an IVF gets a direct
            map while it runs).
        batch_size : int
        progress : callable(n_done_increment, total), optional
        **params
            As for the constructor (banks, rates, ``k_factor``, ``offset_dtype``, ...).
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        given = index
        outer = faiss.downcast_index(index)
        if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            inner = faiss.downcast_index(outer.index)
            ids = faiss.vector_to_array(outer.id_map).astype(np.int64)
            sequential = False
        else:
            inner = outer
            ids = np.arange(inner.ntotal, dtype=np.int64)
            sequential = True
        n = inner.ntotal
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None and n:
            _check_positional_ivf_ids(ivf)
        self = cls(faiss.IndexFlat(inner.d, inner.metric_type), **params)
        if vectors is not None and (len(vectors) != n or np.shape(vectors[:1])[1:] != (inner.d,)):
            raise ValueError(f"vectors must have shape ({n}, {inner.d}), got "
                             f"({len(vectors)}, ...{np.shape(vectors[:1])[1:]})")
        added_direct_map = (vectors is None and ivf is not None
                            and ivf.direct_map.type == faiss.DirectMap.NoMap)
        if added_direct_map:
            ivf.make_direct_map()
        try:
            parts = []
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                batch = vectors[start:stop] if vectors is not None else inner.reconstruct_n(start, stop - start)
                parts.append(self._prepare_rows(self.correction.check_input(batch, name="vectors"))[1])
                if progress is not None:
                    progress(stop - start, n)
        finally:
            if added_direct_map:
                ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        columns = {name: (np.concatenate([p[name] for p in parts]) if parts
                          else self.items.columns[name]) for name in self.items.widths}
        self._attach(inner, ids, columns, sequential if n else None)
        self.referenced_objects.append(given)
        return self


def _copy_with_selector(params, sel):
    """A new search-parameters object of the same type and fields, with ``sel`` as selector.

    The caller's object is not modified: reassigning a faiss parameter's ``sel`` drops the
    reference that keeps the old selector alive."""
    copy = type(params)()
    for name in dir(type(params)):
        if (isinstance(getattr(type(params), name, None), property)
                and name not in ("sel", "thisown") and not name.startswith("_")):
            setattr(copy, name, getattr(params, name))
    copy.sel = sel
    copy.referenced_objects = [params, sel]
    return copy


def _check_positional_ivf_ids(ivf):
    """Rerank mode reads per-item data by internal position: the IVF's ids must be 0..ntotal-1."""
    invlists = ivf.invlists
    seen = np.zeros(ivf.ntotal, dtype=bool)
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            if ids.min() < 0 or ids.max() >= ivf.ntotal:
                raise ValueError(
                    "the IVF index holds custom ids; wrap it as IndexIDMap2 over sequential ids "
                    "(or rebuild) to attach rerank mode")
            seen[ids] = True
    if not seen.all():
        raise ValueError("the IVF index's ids are not 0..ntotal-1")
