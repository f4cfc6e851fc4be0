"""Rerank mode: InvGC on an index that keeps the original vectors, rates adjustable at search time.

The inner index stores the vectors as given; per item the wrapper stores each bank's offset
(float16 by default: score error measured <= 1e-3; float32: exact) and the six scalars of
:mod:`invgc_faiss.scoring`, from which ``q . x'`` is computed exactly for any rates of the
index's form. Nothing stored depends on the rates, so they change at search time
(:meth:`InvGCRerankIndex.set_rates`); all rates 0 score ``q . x``, the plain index. Memory per
item: ``n_banks * d`` offsets + 6 float32 scalars + ``n_banks`` float32 degrees + ``x . m``
(2 banks, d = 384, float16: 1,572 bytes).

Search follows faiss's ``IndexRefine``: fetch ``k_factor * max(k, 10)`` candidates from the
inner index (``k * k_factor`` for raw candidates), rescore them, keep the best ``k``; with ``k * k_factor >= ntotal`` the result equals
the baked :class:`InvGCIndex` exactly. Which candidates (``candidates=``):

* ``"raw"``: the top of ``q . x``, faiss's own. On hubby data the right item often sits deep in
  that ranking (the hubs crowd it out), so it is found only with a large ``k_factor``;
* ``"projected"``: the top of ``q~ . x`` with ``q~ = q - (q . m) m``, ``m`` the normalized mean of
  the correction's query bank (of its gallery bank without one): the query-side correction
  (:mod:`invgc_faiss.query_side`), which ranks nearly as the corrected gallery does;
* ``"union"`` (default): both lists, searched in one call (the defaults, union at k_factor 2,
  came within 0.3 R@1 of the baked index, or above it, on six real directions over flat, IVF
  and HNSW indexes at faiss's default search settings: docs/results.md).

The raw score of a projected candidate is ``q . x = q~ . x + (q . m)(x . m)``, with ``x . m``
kept per item, so every candidate is rescored exactly whichever search found it. Without any
active rate (the plain index) the raw candidates are used.
"""
import contextlib

import faiss
import numpy as np

from . import gpu, kernels, row_blocks
from .base import InvGCBase, fitted_correction, prepare_inner
from .query_side import bank_direction
from .rates import Rates
from .scoring import N_SCALARS, corrected_scores, rerank_scalars
from .validation import as_float_matrix, check_positive_int

OFFSET_DTYPES = ("float16", "float32")
CANDIDATES = ("union", "projected", "raw")
#: Defaults chosen by benchmarks/rerank_candidates.py (docs/results.md, "Rerank candidates")
DEFAULT_CANDIDATES = "union"
DEFAULT_K_FACTOR = 2
#: Candidates per list are ``k_factor * max(k, MIN_CANDIDATES)`` (``k * k_factor`` for
#: ``candidates="raw"``, as faiss's IndexRefine and 0.3): with ``k * k_factor`` alone, union at
#: k = 1 lost up to 3.9 R@1 against the baked index (zho->eng); for k <= 10 the candidates are
#: those of k = 10, so ``search(x, 1)`` is the first column of ``search(x, 10)``
MIN_CANDIDATES = 10
#: every float16 bit pattern decoded to float32, for the rescoring kernel
HALF_TABLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


class InvGCRerankIndex(InvGCBase):
    """InvGC by rescoring: the inner index keeps the original vectors (see module docstring).

    Parameters
    ----------
    index : faiss.Index
        Empty inner index (use :meth:`from_existing` to attach to a filled one).
    query_bank, gallery_bank, keep_originals, correction, device
        As for :class:`invgc_faiss.InvGCIndex`.
    k_factor : int
        Candidates fetched per requested result, ``k_factor * max(k, 10)`` (per list with
        ``candidates="union"``).
    candidates : {"union", "projected", "raw"}
        Where the candidates come from (module docstring).
    offset_dtype : {"float16", "float32"}
        Storage of the per-item offsets.
    **params
        The correction's parameters, as for :class:`invgc_faiss.InvGCIndex`; its rates are the
        first search-time rates. Every bank given is checked at fit (the rates may change).

    Attributes
    ----------
    rates : Rates
        The rates used at search time (form and rate per bank).
    axis_ : ndarray of shape (d,), float32, or None
        ``m``, the direction projected candidates remove from the query (None for
        ``candidates="raw"``).
    """

    k_factor = None
    offset_dtype = "float16"
    candidates = None
    rates = None
    axis_ = None

    def __init__(self, index, *, query_bank=None, gallery_bank=None, k_factor=DEFAULT_K_FACTOR,
                 candidates=DEFAULT_CANDIDATES, offset_dtype="float16", keep_originals=False,
                 correction=None, device="cpu", **params):
        if params.get("alignment") is not None:
            raise ValueError("rerank mode takes no alignment: it stores the vectors as given and "
                             "rescores the raw candidates of unmapped queries; use InvGCIndex")
        params.pop("alignment", None)
        if offset_dtype not in OFFSET_DTYPES:
            raise ValueError(f"offset_dtype must be one of {OFFSET_DTYPES}, got {offset_dtype!r}")
        if candidates not in CANDIDATES:
            raise ValueError(f"candidates must be one of {CANDIDATES}, got {candidates!r}")
        k_factor = check_positive_int(k_factor, "k_factor")
        inner, device = prepare_inner(index, device)
        correction = fitted_correction(inner.d, correction, query_bank, gallery_bank,
                                       device=device, fixed_rates=False, **params)
        # before the base builds the item table
        self.offset_dtype = offset_dtype
        self.axis_ = None if candidates == "raw" else _candidate_axis(correction)
        super().__init__(inner, correction, given=index, keep_originals=keep_originals)
        self.k_factor = k_factor
        self.candidates = candidates
        self.rates = correction.rates_

    def _item_layout(self):
        widths, dtypes = super()._item_layout()
        for b in range(len(self.correction.offsets_)):
            widths[f"offsets_{b}"] = self.correction.d_
            dtypes[f"offsets_{b}"] = self.offset_dtype
        widths["scalars"] = N_SCALARS
        if self.axis_ is not None:
            widths["axis_dots"] = 1
        return widths, dtypes

    def set_rates(self, r_g=None, r_q=None, *, rho_g=None, rho_q=None):
        """Change the rates used by later searches; stored data is untouched. Rates of the
        index's form only: ``r_g``/``r_q`` (paper) or ``rho_g``/``rho_q`` (projection)."""
        given = {name: value for name, value in (("r_g", r_g), ("r_q", r_q), ("rho_g", rho_g),
                                                 ("rho_q", rho_q)) if value is not None}
        self.rates = self.rates.replaced(**given)

    def _vectors(self, x):
        return x

    def _prepare_rows(self, x, start):
        """Original vectors for the inner index; offsets, scalars and degrees for the table."""
        n, nb = x.shape[0], len(self.correction.offsets_)
        rows = {"degrees": np.empty((n, nb), np.float32),
                "scalars": np.empty((n, N_SCALARS), np.float32)}
        for b in range(nb):
            rows[f"offsets_{b}"] = np.empty((n, x.shape[1]), self.offset_dtype)
        for first in range(0, n, self.correction.batch_size):
            stop = min(n, first + self.correction.batch_size)
            offsets, degrees = self.correction.offsets(x[first:stop], start=start + first)
            rows["degrees"][first:stop] = degrees.T
            rows["scalars"][first:stop] = rerank_scalars(x[first:stop], offsets)
            for b in range(nb):
                rows[f"offsets_{b}"][first:stop] = offsets[b]
        if self.axis_ is not None:
            rows["axis_dots"] = row_blocks.product(x, self.axis_, start)[:, None]
        if self.keep_originals:
            rows["originals"] = x
        return x, rows

    def search(self, x, k, *, params=None, D=None, I=None):
        """``D, I = index.search(x, k)``: ``k_factor * max(k, 10)`` candidates per list (raw:
        ``k * k_factor``) rescored with the current rates. Scores are ``q . x'`` (inner
        product) or ``||q - x'||^2`` (L2, ``x'`` unit)."""
        x = as_float_matrix(x, self.d, name="queries", allow_empty=True)
        k = check_positive_int(k, "k")
        n = x.shape[0]
        l2 = self.metric_type == faiss.METRIC_L2
        D_out = np.full((n, k), np.inf if l2 else -np.inf, dtype=np.float32)
        I_out = np.full((n, k), -1, dtype=np.int64)
        with self._searching():
            n_candidates = min(self.ntotal, _per_list(k, self.candidates) * self.k_factor)
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
        """Raw scores ``q . x`` and internal positions (-1: none) of the candidates, (nq, c) each
        (module docstring); an ``IDSelector`` in ``params`` (on the caller's ids) is translated
        to positions."""
        sel = getattr(params, "sel", None) if params is not None else None
        if sel is not None:
            translated = faiss.IDSelectorTranslated(self.id_map, sel)
            params = _copy_with_selector(params, translated)
        mode = self.candidates if self.rates.active(self.correction.bank_names_) else "raw"
        if mode != "raw" and self.axis_ is None:
            raise ValueError(f"candidates={mode!r} needs the x . m this index does not keep (built "
                             "with candidates='raw', or a file before format 3): use 'raw'")
        if mode == "raw":
            return self._inner_dots(x, n_candidates, params)
        axis_dots = self.items.columns["axis_dots"][:, 0]
        if sel is None and _is_flat_ip(self.index):
            return _flat_candidates(self.index, x, self.axis_, axis_dots, n_candidates, mode)
        along = x @ self.axis_
        projected = x - np.outer(along, self.axis_)
        searched = projected if mode == "projected" else np.vstack([x, projected])
        D, P = self._inner_dots(searched, n_candidates, params)
        D[-len(x):] += along[:, None] * axis_dots[np.maximum(P[-len(x):], 0)]
        return (D, P) if mode == "projected" else _union(D[:len(x)], P[:len(x)], D[len(x):],
                                                         P[len(x):])

    def _inner_dots(self, queries, n, params):
        """The inner index's top ``n`` of ``queries``: ``(queries . x, positions)``, float64 (nq,
        n) and int64 (nq, n); L2 distances are turned into inner products."""
        D, P = self.index.search(queries, n, params=params)
        D = D.astype(np.float64)
        if self.metric_type == faiss.METRIC_L2:
            xx = self.items.columns["scalars"][np.maximum(P, 0), 0]
            D = ((queries * queries).sum(axis=1, keepdims=True) + xx - D) / 2
        return D, P

    def _rescore(self, x, raw, positions):
        """Corrected scores (nq, n_candidates), float64; -inf where no candidate."""
        names = self.correction.bank_names_
        columns = self.items.columns
        qo = np.empty((len(names),) + positions.shape, dtype=np.float64)
        for b in range(len(names)):
            rows = columns[f"offsets_{b}"]
            if rows.dtype == np.float16:
                kernels.candidate_dots_half(x, positions, rows.view(np.uint16), HALF_TABLE, qo[b])
            else:
                kernels.candidate_dots(x, positions, rows, qo[b])
        scalars = columns["scalars"][np.maximum(positions, 0)]
        scores = corrected_scores(raw, qo, scalars, self.rates, names)
        scores[positions < 0] = -np.inf
        return scores

    def range_search(self, x, thresh, *, params=None):
        """Not offered: rerank mode rescores a bounded candidate list, and a range query would
        need every stored vector rescored. Use the baked :class:`InvGCIndex`."""
        raise NotImplementedError("range_search is not available in rerank mode (it rescores a "
                                  "bounded candidate list, a range would need every item "
                                  "rescored); use InvGCIndex")

    def _file_state(self):
        arrays = {} if self.axis_ is None else {"rerank_axis": self.axis_}
        return {"rerank": {"k_factor": self.k_factor, "offset_dtype": self.offset_dtype,
                           "candidates": self.candidates, "rates": self.rates.to_dict()}}, arrays

    @classmethod
    def _restore_kwargs(cls, header, arrays):
        """Files before 0.4 keep no ``x . m``: their indexes search raw candidates."""
        saved = header["rerank"]
        return {"k_factor": saved["k_factor"], "offset_dtype": saved["offset_dtype"],
                "candidates": saved.get("candidates", "raw")}

    def _restore_state(self, header, arrays):
        """The search-time rates of a file (a list in bank order before 0.2) and its axis."""
        if "rerank_axis" in arrays:
            self.axis_ = arrays["rerank_axis"]
        saved = header["rerank"]["rates"]
        if isinstance(saved, dict):
            self.rates = Rates.from_dict(saved)
        else:
            form = self.rates.form
            self.rates = Rates(form, **dict(zip(self.correction.bank_names_, map(float, saved))))

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
        inner, ids, sequential = _unwrapped(index)
        n = inner.ntotal
        _check_positional_ivf_ids(inner)
        self = cls(faiss.IndexFlat(inner.d, inner.metric_type), **params)
        if vectors is not None and (len(vectors) != n or np.shape(vectors[:1])[1:] != (inner.d,)):
            raise ValueError(f"vectors must have shape ({n}, {inner.d}), got "
                             f"({len(vectors)}, ...{np.shape(vectors[:1])[1:]})")
        with contextlib.closing(_stored_batches(inner, vectors, batch_size)) as batches:
            for batch in batches:  # gallery position: the rows before it, len(self.items)
                rows = self._prepare_rows(self.correction.check_input(batch, name="vectors"),
                                          len(self.items))[1]
                self.items.commit(self.items.staged(**rows))
                if progress is not None:
                    progress(batch.shape[0], n)
        self._attach(inner, ids, self.items.columns, sequential if n else None)
        self.referenced_objects.append(index)
        return self


def _per_list(k, candidates):
    """Candidates per list and unit of ``k_factor``: ``max(k, MIN_CANDIDATES)``; ``k`` for raw
    candidates (faiss's IndexRefine, and 0.3)."""
    return k if candidates == "raw" else max(k, MIN_CANDIDATES)


def _candidate_axis(correction):
    """``m`` of projected candidates: the normalized mean of the correction's query bank (its
    gallery bank without one)."""
    names = correction.bank_names_
    bank = correction.offsets_[names.index("query" if "query" in names else "gallery")].bank
    return bank_direction(bank, name=f"{names[0]} bank")


def _unwrapped(index):
    """``(inner index, ids in internal order, sequential?)`` of a filled index, downcast and
    taken out of an IndexIDMap/IndexIDMap2."""
    outer = faiss.downcast_index(index)
    if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return (faiss.downcast_index(outer.index),
                faiss.vector_to_array(outer.id_map).astype(np.int64), False)
    return outer, np.arange(outer.ntotal, dtype=np.int64), True


def _stored_batches(inner, vectors, batch_size):
    """The stored vectors in internal order, in batches: ``vectors`` sliced, or reconstructed
    (an IVF without a direct map gets one until the generator is closed)."""
    n = inner.ntotal
    ivf = faiss.try_extract_index_ivf(inner)
    added_direct_map = (vectors is None and ivf is not None
                        and ivf.direct_map.type == faiss.DirectMap.NoMap)
    if added_direct_map:
        ivf.make_direct_map()
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield (np.asarray(vectors[start:stop]) if vectors is not None
                   else inner.reconstruct_n(start, stop - start))
    finally:
        if added_direct_map:
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)


def _is_flat_ip(inner):
    """Whether ``inner`` is a CPU flat inner-product index (its rows readable in place)."""
    return (type(inner) in (faiss.IndexFlatIP, faiss.IndexFlat) and not gpu.is_gpu_index(inner)
            and inner.metric_type == faiss.METRIC_INNER_PRODUCT)


def _flat_rows(inner):
    """The rows a flat index stores, a float32 (ntotal, d) view (valid under the read lock)."""
    return faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal,
                                                                              inner.d)


def _flat_candidates(inner, x, axis, axis_dots, n, mode):
    """The candidates of a flat inner-product index from one BLAS product per block of queries
    (:func:`invgc_faiss.row_blocks.map_blocks`): the raw list from ``q . x``, then the projected
    list from the same scores less ``(q . m)(x . m)``, each by an O(ntotal) selection
    (``kernels.top_k_of_rows``). faiss's own flat search (a k-heap per query) took 4x the product
    here; two of them cost twice."""
    nq, lists = x.shape[0], 2 if mode == "union" else 1
    stored = _flat_rows(inner)
    rows = row_blocks.block_rows(stored.shape[0])

    def work(block):
        scores = block @ stored.T
        along = block @ axis
        D = np.empty((rows, lists * n), dtype=np.float64)
        P = np.empty((rows, lists * n), dtype=np.int64)
        sims = np.empty((rows, n), dtype=np.float32)
        if lists == 2:
            kernels.top_k_of_rows(scores, n, sims, P[:, :n])
            D[:, :n] = sims
        scores -= np.outer(along, axis_dots)
        kernels.top_k_of_rows(scores, n, sims, P[:, -n:])
        D[:, -n:] = sims + along[:, None] * axis_dots[P[:, -n:]]
        return D, P

    D = np.empty((nq, lists * n), dtype=np.float64)
    P = np.empty((nq, lists * n), dtype=np.int64)
    row_blocks.map_blocks(x, 0, rows, work, (D, P))
    if lists == 1:
        return D, P
    return _union(D[:, :n], P[:, :n], D[:, n:], P[:, n:])


def _union(D_raw, P_raw, D_projected, P_projected):
    """Both candidate lists side by side, each position once: a repeat's position becomes -1."""
    D, P = np.hstack([D_raw, D_projected]), np.hstack([P_raw, P_projected])
    order = np.argsort(P, axis=1, kind="stable")
    in_order = np.take_along_axis(P, order, axis=1)
    repeated = np.zeros(P.shape, dtype=bool)
    repeated[:, 1:] = (in_order[:, 1:] == in_order[:, :-1]) & (in_order[:, 1:] >= 0)
    np.put_along_axis(P, order, np.where(repeated, -1, in_order), axis=1)
    return D, P


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


def _check_positional_ivf_ids(inner):
    """Rerank mode reads per-item data by internal position: an IVF's ids must be 0..ntotal-1."""
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is None or not ivf.ntotal:
        return
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
