"""``InvGCIndex``: a genuine faiss index that applies InvGC to the gallery during ``add()``.

``InvGCIndex`` subclasses ``faiss.IndexIDMap2`` around any inner faiss index. ``train``, ``add``
and ``add_with_ids`` correct the vectors (:class:`invgc_faiss.correction.InvGC`) before the inner
index sees them; everything else -- ``search``, ``range_search``, ``reconstruct`` -- is faiss's own
code over the corrected vectors, queries untouched. Because the object *is* an ``IndexIDMap2``,
``faiss.write_index``, ``faiss.clone_index`` and faiss clients accept it (they store the corrected
vectors; the correction itself travels only with :func:`invgc_faiss.write_index`), and
``index.index`` is a plain faiss index any deployment can serve.

Ids, chosen to match what faiss users expect:

* ``add(x)`` gives sequential ids like a plain ``IndexFlat``: ``ntotal .. ntotal + n - 1``, and
  ``remove_ids`` renumbers the remaining vectors ``0 .. ntotal - 1`` in order.
* ``add_with_ids(x, ids)`` keeps the caller's ids (non-negative, unique) across removals, like
  ``IndexIDMap2``.
* One index holds one kind: mixing the two raises ``ValueError`` until ``reset()``.

``remove_ids`` is reimplemented so that it stays correct over IVF inner indexes (faiss's own
``IndexIDMap`` mis-maps ids there after a removal, because IVF does not renumber its lists).

Thread safety goes beyond faiss's: any number of threads may ``search`` while others ``add``,
``remove_ids`` or ``reset``: a readers-writer lock (:mod:`invgc_faiss.locking`) lets searches run
together and gives each writer's short commit exclusive access, so every search sees the index
before or after a whole batch, never half of it. (faiss itself allows concurrent searches only.)
Calls made directly on ``index.index`` bypass the lock. Over a GPU inner index (``device="gpu"``)
searches take turns too: faiss's GPU indexes and resources are not thread-safe.
"""
import faiss
import numpy as np

from . import gpu
from .correction import DEFAULT_MAX_BANK_SIZE, DEFAULT_POOL_RATE, InvGC
from .item_table import ItemTable
from .locking import ReadWriteLock
from .validation import as_float_matrix, as_ids, check_positive_int


def _unwrap_inner(index):
    """Downcast ``index``; an (empty) IndexIDMap/IndexIDMap2 is replaced by the index it wraps."""
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss.Index, got {type(index).__name__}")
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        if index.ntotal:
            raise ValueError(f"the inner IndexIDMap already holds {index.ntotal} vectors; pass an empty one")
        index = faiss.downcast_index(index.index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        raise ValueError("nested IndexIDMap inside IndexIDMap is not supported")
    if index.ntotal:
        raise ValueError(
            f"the inner index already holds {index.ntotal} uncorrected vectors; InvGCIndex corrects "
            "vectors as they are added, so it needs an empty inner index"
        )
    return index


def _renumber_ivf_lists(ivf, removed):
    """After ``ivf.remove_ids`` of sorted internal ids ``removed``, shift every remaining id down by
    the number of removed ids below it, so internal ids are again ``0 .. ntotal - 1``.

    faiss removes from an IVF only without a direct map (an Array map refuses, a Hashtable map
    needs IDSelectorArray), so there is no direct map to renumber here; call
    ``make_direct_map()`` after removals to reconstruct."""
    invlists = ivf.invlists
    in_place = isinstance(faiss.downcast_InvertedLists(invlists), faiss.ArrayInvertedLists)
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
        new_ids = ids - np.searchsorted(removed, ids)
        if in_place:
            ids[:] = new_ids
        else:
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size).copy()
            invlists.update_entries(list_no, 0, size, faiss.swig_ptr(new_ids), faiss.swig_ptr(codes))


class InvGCIndex(faiss.IndexIDMap2):
    """A faiss index whose gallery is corrected by InvGC at add time.

    Parameters
    ----------
    index : faiss.Index
        Empty inner index of dimension d (any type: flat, IVF, PQ, HNSW, a factory product). An
        empty IndexIDMap/IndexIDMap2 is unwrapped: this class is the id map. Inner-product metric
        is natural; L2 ranks the same since corrected vectors have unit norm.
    gallery_bank : array_like of shape (M_g, d), optional
        Reference items of the gallery's modality (e.g. training-set images).
    query_bank : array_like of shape (M_q, d), optional
        Reference items of the query's modality (e.g. training-set captions).
    form, rho_g, rho_q, r_g, r_q
        Which correction and its rates (:mod:`invgc_faiss.forms`). Defaults, measured on six real
        retrieval directions: the projection form, ``rho_q = 1`` on the query bank only (with a
        gallery bank alone, the identity and a warning). Giving ``r_g``/``r_q`` selects the paper's
        form.
    variant, pool_rate, gallery_bank_index, query_bank_index, bank_search_params,
    max_bank_size, bank_seed, normalize_input, batch_size
        See :class:`invgc_faiss.correction.InvGC` (defaults ``pool_rate=0.2``,
        ``max_bank_size=4096``). Inputs must be unit-norm unless ``normalize_input=True``;
        queries are never modified either way.
    keep_originals : bool
        Also keep each added vector as given (d float32 per item), for :meth:`get_originals`.
    device : {"cpu", "gpu"}
        ``"gpu"``: the inner index is copied to GPU 0 (``faiss.index_cpu_to_gpu``) and exact
        LocalAdj banks are searched there (:mod:`invgc_faiss.gpu`); needs faiss with GPU support
        and PyTorch with CUDA, else a RuntimeWarning says why and everything stays on the CPU.
        ``faiss.write_index`` cannot write a GPU index; :func:`invgc_faiss.write_index` writes
        its CPU copy. ``remove_ids`` raises where the GPU index does not support it (flat).
    correction : InvGC, optional
        An already fitted correction (persistence uses this); the bank and rate arguments are then
        ignored.
    alignment : invgc_faiss.rebalance.Alignment, optional
        A fitted alignment of the two sides (e.g. a
        :class:`~invgc_faiss.rebalance.RebalancingAdapter`). Gallery rows are mapped by its
        gallery side before the InvGC correction, queries by its query side inside ``search`` /
        ``range_search``, and the banks by their own sides before the correction is fitted (a
        given ``correction`` must already have aligned banks). Saved and loaded with the index.

    Attributes
    ----------
    correction : InvGC
    alignment : Alignment or None
    items : ItemTable
        Per-item ``degrees`` (n_banks columns) and, if kept, ``originals``, in internal order.
    sequential_ids : bool or None
        True after ``add``, False after ``add_with_ids``, None while empty.
    device_ : str
        ``"gpu"`` when the inner index is a GPU index, else ``"cpu"``.
    """

    #: whether search-time rates need every bank's offsets (rerank mode) or only the used ones
    _searches_all_banks = False
    correction = None
    alignment = None
    tune_result = None
    items = None
    keep_originals = None
    sequential_ids = None
    device_ = None
    _lock = None

    def __init__(self, index, *, gallery_bank=None, query_bank=None, form=None, rho_g=None,
                 rho_q=None, r_g=None, r_q=None, variant="localadj", pool_rate=DEFAULT_POOL_RATE,
                 gallery_bank_index=None, query_bank_index=None, bank_search_params=None,
                 max_bank_size=DEFAULT_MAX_BANK_SIZE, bank_seed=0, normalize_input=False,
                 keep_originals=False, batch_size=16384, device="cpu", correction=None,
                 alignment=None):
        given = index
        inner = _unwrap_inner(index)
        device = gpu.resolve_device(device)
        if device == "gpu" and not gpu.is_gpu_index(inner):
            inner = gpu.index_to_gpu(inner)
        if alignment is not None and alignment.d_ is None:
            raise ValueError(f"the {type(alignment).__name__} is not fitted: call fit() first")
        if alignment is not None and alignment.d_ != inner.d:
            raise ValueError(f"alignment has dimension {alignment.d_}, inner index has d = {inner.d}")
        if correction is None:
            if alignment is not None:
                gallery_bank = None if gallery_bank is None else alignment.transform_gallery(
                    gallery_bank)
                query_bank = None if query_bank is None else alignment.transform_query(query_bank)
            correction = InvGC(form=form, rho_g=rho_g, rho_q=rho_q, r_g=r_g, r_q=r_q,
                               variant=variant, pool_rate=pool_rate,
                               gallery_bank_index=gallery_bank_index,
                               query_bank_index=query_bank_index,
                               bank_search_params=bank_search_params, max_bank_size=max_bank_size,
                               bank_seed=bank_seed, normalize_input=normalize_input,
                               batch_size=batch_size, device=device)
            correction.fit(gallery_bank=gallery_bank, query_bank=query_bank, d=inner.d,
                           all_banks=self._searches_all_banks)
        elif correction.d_ != inner.d:
            raise ValueError(f"correction has dimension {correction.d_}, inner index has d = {inner.d}")
        super().__init__(inner)
        self.referenced_objects.extend([given, inner])
        self.device_ = "gpu" if gpu.is_gpu_index(inner) else "cpu"
        self.correction = correction
        self.alignment = alignment
        self.keep_originals = bool(keep_originals)
        self.items = ItemTable(*self._item_layout())
        self.sequential_ids = None
        self._lock = ReadWriteLock()

    def _item_layout(self):
        """Per-item columns: ``(widths, dtypes)`` for :class:`ItemTable`."""
        widths = {"degrees": len(self.correction.offsets_)}
        if self.keep_originals:
            widths["originals"] = self.correction.d_
        return widths, {}

    @classmethod
    def restore(cls, inner, ids, correction, *, keep_originals, columns, sequential_ids, **kwargs):
        """Rebuild an index around an inner index that already holds its vectors.

        Used by :func:`invgc_faiss.read_index`. ``ids`` (ntotal,) int64 are the stored ids in
        internal order, ``columns`` the :class:`ItemTable` columns row-aligned with them;
        ``kwargs`` go to the constructor.
        """
        self = cls(faiss.IndexFlat(inner.d, inner.metric_type), correction=correction,
                   keep_originals=keep_originals, **kwargs)
        self._attach(inner, ids, columns, sequential_ids)
        return self

    @classmethod
    def tuned(cls, inner, query_bank, gallery_bank, **tune_params):
        """Tune on paired banks with :func:`invgc_faiss.tune` and build the index it chose
        around the empty ``inner`` (all pairs as banks). The :class:`~invgc_faiss.tuning.TuneResult`
        is kept as ``index.tune_result``."""
        from .tuning import tune  # tuning builds indexes of this class

        result = tune(query_bank, gallery_bank, **tune_params)
        index = result.index(inner)
        index.tune_result = result
        return index

    def _attach(self, inner, ids, columns, sequential_ids):
        """Make a non-empty ``inner`` this (empty) index's storage, with its ids and item columns."""
        if ids.shape[0] != inner.ntotal:
            raise ValueError(f"{ids.shape[0]} ids for an inner index of {inner.ntotal} vectors")
        for name, width in self.items.widths.items():
            if (name not in columns or columns[name].shape != (inner.ntotal, width)
                    or columns[name].dtype != self.items.dtypes[name]):
                raise ValueError(f"item column {name!r} is missing or has the wrong shape")
        faiss.IndexIDMap2.index.__set__(self, inner)
        self.referenced_objects = [inner]
        self.device_ = "gpu" if gpu.is_gpu_index(inner) else "cpu"
        self.metric_type = inner.metric_type
        self.metric_arg = inner.metric_arg
        self.is_trained = inner.is_trained
        faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), self.id_map)
        self.ntotal = inner.ntotal
        self.construct_rev_map()
        self.items.replace({name: columns[name] for name in self.items.widths})
        self.sequential_ids = sequential_ids

    @property
    def index(self):
        """The inner faiss index (downcast), holding the corrected vectors under internal ids."""
        return faiss.downcast_index(faiss.IndexIDMap2.index.__get__(self))

    # ---- adding ---------------------------------------------------------------------------

    def train(self, x):
        """Train the inner index on the corrected ``x`` (n, d); the full variant also takes its
        gallery mean ``x_mean`` from ``x``."""
        x = self._aligned_gallery(self.correction.check_input(x))
        with self._lock.writing():
            if self.correction.variant == "full":
                self.correction.fit_gallery_mean(x.mean(axis=0, dtype=np.float64))
            corrected, _ = self.correction.correct(x)
            super().train(corrected)

    def add(self, x):
        """Correct and add ``x`` (n, d) under sequential ids ``ntotal .. ntotal + n - 1``."""
        self._store(self._check_add(x), None)

    def add_with_ids(self, x, ids):
        """Correct and add ``x`` (n, d) under the caller's ``ids`` (n,), int, >= 0, unique and not
        already stored."""
        x = self._check_add(x)
        self._store(x, as_ids(ids, x.shape[0]))

    def _check_add(self, x):
        if not self.is_trained:
            raise ValueError(
                f"the inner {type(self.index).__name__} is not trained: call train() before add()"
            )
        return self.correction.check_input(x, allow_empty=True)

    def _store(self, x, ids):
        """Add validated rows under ``ids`` (None: sequential). The correction runs outside the
        lock; the commit under it changes state only once everything succeeded."""
        if x.shape[0] == 0:  # an empty batch is a no-op, as in faiss
            return
        vectors, rows = self._prepare_rows(x)
        sequential = ids is None
        with self._lock.writing():
            if self.sequential_ids is (not sequential):
                raise ValueError(
                    "this index holds ids given to add_with_ids; keep using add_with_ids (or "
                    "reset())" if sequential else
                    "this index holds sequential ids from add(); keep using add (or reset())")
            if sequential:
                ids = np.arange(self.ntotal, self.ntotal + x.shape[0], dtype=np.int64)
            else:
                taken = np.isin(ids, self.stored_ids())
                if taken.any():
                    raise ValueError(
                        f"{int(taken.sum())} id(s) already stored, e.g. "
                        f"{int(ids[np.argmax(taken)])}; remove_ids them first")
            columns = self.items.appended(**rows)
            faiss.IndexIDMap2.add_with_ids(self, vectors, ids)
            self.items.replace(columns)
            self.sequential_ids = sequential

    def _prepare_rows(self, x):
        """What to store for validated rows ``x``: the vectors for the inner index (here the
        corrected ones) and the item-table rows."""
        corrected, degrees = self.correction.correct(self._aligned_gallery(x))
        rows = {"degrees": degrees}
        if self.keep_originals:
            rows["originals"] = x
        return corrected, rows

    def _aligned_gallery(self, x):
        """Validated gallery rows mapped by the alignment's gallery side (as given without one)."""
        return x if self.alignment is None else self.alignment.transform_gallery(x)

    def _aligned_queries(self, x):
        """Validated queries mapped by the alignment's query side (as given without one)."""
        return x if self.alignment is None else self.alignment.transform_query(x)

    # ---- removing -------------------------------------------------------------------------

    def remove_ids(self, x):
        """Remove the vectors whose ids are in ``x`` (array of ids, or a faiss.IDSelector).

        Returns the number removed. Sequential ids are renumbered afterwards (like IndexFlat);
        ids given to add_with_ids are kept. Where the inner index refuses (HNSW, an IVF with a
        direct map) faiss's ``RuntimeError`` propagates and the index is unchanged."""
        with self._lock.writing():
            return self._remove(x)

    def _remove(self, x):
        """:meth:`remove_ids` under the write lock."""
        stored = self.stored_ids()
        if isinstance(x, faiss.IDSelector):
            drop = np.fromiter((x.is_member(int(i)) for i in stored), dtype=bool, count=stored.size)
        else:
            arr = np.asarray(x)
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise TypeError(
                    f"remove_ids takes a 1-D integer array or a faiss.IDSelector, got "
                    f"{arr.dtype} array of shape {arr.shape}"
                )
            drop = np.isin(stored, arr.astype(np.int64))
        positions = np.flatnonzero(drop).astype(np.int64)
        if positions.size == 0:
            return 0
        inner = self.index
        removed = inner.remove_ids(faiss.IDSelectorBatch(positions))
        if removed != positions.size:
            raise RuntimeError(f"inner index removed {removed} vectors, expected {positions.size}")
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            _renumber_ivf_lists(ivf, positions)
        keep = ~drop
        kept_ids = np.arange(keep.sum(), dtype=np.int64) if self.sequential_ids else stored[keep]
        faiss.copy_array_to_vector(kept_ids, self.id_map)
        self.ntotal = kept_ids.size
        self.construct_rev_map()
        self.items.replace(self.items.kept(keep))
        if self.ntotal == 0:
            self.sequential_ids = None
        return int(removed)

    def reset(self):
        """Remove every vector (the correction and the inner index's training stay)."""
        with self._lock.writing():
            super().reset()
            self.items.reset()
            self.sequential_ids = None

    # ---- searching ------------------------------------------------------------------------

    def search(self, x, k, *, params=None, D=None, I=None):
        """``D, I = index.search(x, k)``: faiss search of the queries ``x`` (n, d) -- untouched
        by InvGC, mapped by the alignment's query side if there is one -- against the corrected
        gallery. ``k > ntotal`` pads with ``I = -1`` as faiss does."""
        x = self._aligned_queries(as_float_matrix(x, self.d, name="queries", allow_empty=True))
        k = check_positive_int(k, "k")
        with self._searching():
            return super().search(x, k, params=params, D=D, I=I)

    def range_search(self, x, thresh, *, params=None):
        """``lims, D, I = index.range_search(x, thresh)`` over the corrected gallery."""
        x = self._aligned_queries(as_float_matrix(x, self.d, name="queries", allow_empty=True))
        with self._searching():
            return super().range_search(x, thresh, params=params)

    def _searching(self):
        """The lock side a search takes: shared, or exclusive over a GPU inner index."""
        return self._lock.writing() if self.device_ == "gpu" else self._lock.reading()

    # ---- inspection -----------------------------------------------------------------------

    def stored_ids(self):
        """Ids of the stored vectors in internal order, int64 (ntotal,), a copy."""
        return faiss.vector_to_array(self.id_map).astype(np.int64, copy=False)

    def positions_of(self, ids):
        """Internal positions of ``ids`` (n,); raises ``KeyError`` for an id not stored."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        stored = self.stored_ids()
        order = np.argsort(stored, kind="stable")
        sorted_ids = stored[order]
        found = np.searchsorted(sorted_ids, ids)
        hit = found < sorted_ids.size
        hit[hit] = sorted_ids[found[hit]] == ids[hit]
        if not hit.all():
            raise KeyError(f"id(s) not stored: {ids[~hit][:5].tolist()}")
        return order[found]

    def get_degrees(self, ids):
        """LocalAdj degrees ``deg(x)`` of stored items, float32 (n, n_banks) in
        ``correction.bank_names_`` order."""
        return self.items.take("degrees", self.positions_of(ids))

    def get_originals(self, ids):
        """The vectors as given to add (after normalization if ``normalize_input``), float32 (n, d).
        Needs ``keep_originals=True``."""
        if not self.keep_originals:
            raise ValueError("originals are not kept: build the index with keep_originals=True")
        return self.items.take("originals", self.positions_of(ids))


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
