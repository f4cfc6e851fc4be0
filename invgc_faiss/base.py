"""What the baked and the rerank index share: the id map, the lock, the item table, removal, files.

:class:`InvGCBase` is a genuine ``faiss.IndexIDMap2`` around any inner faiss index. It owns what
does not depend on how an item is stored: ids, the readers-writer lock, the per-item table,
``add``/``add_with_ids`` (validate, prepare outside the lock, commit all or nothing under it),
``remove_ids``, ``reset``, ``train`` and the hooks that files use. Its two subclasses decide what
the inner index stores: :class:`invgc_faiss.InvGCIndex` the corrected vectors ("baked"),
:class:`invgc_faiss.InvGCRerankIndex` the vectors as given plus what rescoring needs.

Ids, chosen to match what faiss users expect:

* ``add(x)`` gives sequential ids like a plain ``IndexFlat``: ``ntotal .. ntotal + n - 1``, and
  ``remove_ids`` renumbers the remaining vectors ``0 .. ntotal - 1`` in order.
* ``add_with_ids(x, ids)`` keeps the caller's ids (non-negative, unique) across removals, like
  ``IndexIDMap2``.
* One index holds one kind: mixing the two raises ``ValueError`` until ``reset()``.

``remove_ids`` is reimplemented so that it stays correct over IVF inner indexes (faiss's own
``IndexIDMap`` mis-maps ids there after a removal, because IVF does not renumber its lists).

Thread safety goes beyond faiss's: any number of threads may search while others ``add``,
``remove_ids`` or ``reset``: a readers-writer lock (:mod:`invgc_faiss.locking`) lets searches run
together and gives each writer's short commit exclusive access, so every search sees the index
before or after a whole batch, never half of it. Calls made directly on ``index.index`` bypass the
lock. Over a GPU inner index searches take turns too: faiss's GPU objects are not thread-safe.
"""
import faiss
import numpy as np

from . import gpu
from .correction import InvGC
from .item_table import ItemTable
from .locking import ReadWriteLock
from .validation import as_ids


def prepare_inner(index, device):
    """The inner index a wrapper stores into, and the device that runs: ``index`` downcast, an
    empty IndexIDMap/IndexIDMap2 replaced by the index it wraps, moved to the GPU when
    ``device="gpu"`` can run here (else ``"cpu"``, with a warning);
    ``TypeError``/``ValueError`` for a non-index or a non-empty one."""
    if not isinstance(index, faiss.Index):
        raise TypeError(f"index must be a faiss.Index, got {type(index).__name__}")
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        if index.ntotal:
            raise ValueError(f"the inner IndexIDMap already holds {index.ntotal} vectors; pass an "
                             "empty one")
        index = faiss.downcast_index(index.index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        raise ValueError("nested IndexIDMap inside IndexIDMap is not supported")
    if index.ntotal:
        raise ValueError(f"the inner index already holds {index.ntotal} uncorrected vectors; "
                         "InvGC corrects vectors as they are added, so it needs an empty inner "
                         "index")
    device = gpu.resolve_device(device)
    if device == "gpu" and not gpu.is_gpu_index(index):
        index = gpu.index_to_gpu(index)
    return index, device


def fitted_correction(d, correction, query_bank, gallery_bank, **params):
    """``correction`` checked against the index dimension ``d``, or a new :class:`InvGC` of
    ``params`` fitted on the banks (each checked against ``d`` first)."""
    if correction is not None:
        if correction.d_ != d:
            raise ValueError(f"correction has dimension {correction.d_}, inner index has d = {d}")
        return correction
    for name, bank in (("gallery_bank", gallery_bank), ("query_bank", query_bank)):
        if bank is not None and np.ndim(bank) == 2 and np.shape(bank)[1] != d:
            raise ValueError(f"{name} has dimension {np.shape(bank)[1]}, expected d = {d}")
    return InvGC(**params).fit(query_bank=query_bank, gallery_bank=gallery_bank)


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


class InvGCBase(faiss.IndexIDMap2):
    """The shared base (module docstring); use :class:`~invgc_faiss.InvGCIndex` or
    :class:`~invgc_faiss.InvGCRerankIndex`.

    Subclasses say what the inner index stores with ``_prepare_rows`` (validated rows ->
    vectors and item-table rows), ``_vectors`` (what ``train`` trains on) and
    ``_gallery_rows``, and may add item columns (``_item_layout``) and file state
    (``_file_state`` / ``_restore_kwargs``).

    Attributes
    ----------
    correction : InvGC, fitted
    items : ItemTable
        Per-item ``degrees`` (n_banks columns, ``correction.bank_names_`` order) and, if kept,
        ``originals``, in internal order.
    keep_originals : bool
    sequential_ids : bool or None
        True after ``add``, False after ``add_with_ids``, None while empty.
    device_ : str, ``"gpu"`` when the inner index is a GPU index, else ``"cpu"``
    """

    correction = None
    items = None
    keep_originals = None
    sequential_ids = None
    device_ = None
    _lock = None

    def __init__(self, inner, correction, *, given=None, keep_originals=False):
        super().__init__(inner)
        self.referenced_objects.extend([given, inner])
        self.device_ = "gpu" if gpu.is_gpu_index(inner) else "cpu"
        self.correction = correction
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

    @property
    def index(self):
        """The inner faiss index (downcast), holding the stored vectors under internal ids."""
        return faiss.downcast_index(faiss.IndexIDMap2.index.__get__(self))

    # ---- files and other storage ------------------------------------------------------------

    @classmethod
    def restore(cls, inner, ids, correction, *, keep_originals, columns, sequential_ids, **kwargs):
        """Rebuild an index around an inner index that already holds its vectors.

        ``ids`` (ntotal,) int64 are the stored ids in internal order, ``columns`` the
        :class:`ItemTable` columns row-aligned with them; ``kwargs`` go to the constructor.
        """
        self = cls(faiss.IndexFlat(inner.d, inner.metric_type), correction=correction,
                   keep_originals=keep_originals, **kwargs)
        self._attach(inner, ids, columns, sequential_ids)
        return self

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

    def _file_state(self):
        """What a file keeps beyond the shared state: ``(header fields, arrays)``."""
        return {}, {}

    @classmethod
    def _restore_kwargs(cls, header, arrays):
        """Constructor keywords that :meth:`restore` needs from a file's header and arrays."""
        return {}

    def _restore_state(self, header, arrays):
        """What a file sets on the restored index after :meth:`restore`."""

    # ---- adding ----------------------------------------------------------------------------

    def _gallery_rows(self, x, start=0):
        """Validated gallery rows as this index's correction sees them (the first at gallery
        position ``start``)."""
        return x

    def _vectors(self, x):
        """What the inner index stores (and trains on) for rows from :meth:`_gallery_rows`."""
        raise NotImplementedError

    def _prepare_rows(self, x, start):
        """The vectors for the inner index and the item-table rows of validated rows ``x``, the
        first at gallery position ``start`` (:meth:`invgc_faiss.InvGC.transform`)."""
        raise NotImplementedError

    def train(self, x):
        """Train the inner index on ``x`` (n, d) as it will store it; the full variant also
        takes its gallery mean ``x_mean`` from ``x``."""
        x = self._gallery_rows(self.correction.check_input(x))
        with self._lock.writing():
            if self.correction.variant == "full":
                self.correction.fit_gallery_mean(x.mean(axis=0, dtype=np.float64))
            faiss.IndexIDMap2.train(self, self._vectors(x))

    def add(self, x):
        """Add ``x`` (n, d) under sequential ids ``ntotal .. ntotal + n - 1``."""
        self._store(self._check_add(x), None)

    def add_with_ids(self, x, ids):
        """Add ``x`` (n, d) under the caller's ``ids`` (n,), int, >= 0, unique and not already
        stored."""
        x = self._check_add(x)
        self._store(x, as_ids(ids, x.shape[0]))

    def _check_add(self, x):
        if not self.is_trained:
            raise ValueError(f"the inner {type(self.index).__name__} is not trained: call train() "
                             "before add()")
        return self.correction.check_input(x, allow_empty=True)

    def _store(self, x, ids):
        """Add validated rows under ``ids`` (None: sequential). The rows are prepared outside the
        lock; the commit under it changes state only once everything succeeded."""
        if x.shape[0] == 0:  # an empty batch is a no-op, as in faiss
            return
        vectors, rows = self._prepare_rows(x, self.ntotal)
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
                    raise ValueError(f"{int(taken.sum())} id(s) already stored, e.g. "
                                     f"{int(ids[np.argmax(taken)])}; remove_ids them first")
            staged = self.items.staged(**rows)
            faiss.IndexIDMap2.add_with_ids(self, vectors, ids)
            self.items.commit(staged)
            self.sequential_ids = sequential

    # ---- removing --------------------------------------------------------------------------

    def remove_ids(self, x):
        """Remove the vectors whose ids are in ``x`` (array of ids, or a faiss.IDSelector).

        Returns the number removed. Sequential ids are renumbered afterwards (like IndexFlat);
        ids given to add_with_ids are kept. Where the inner index refuses (HNSW, an IVF with a
        direct map, a GPU flat index) faiss's ``RuntimeError`` propagates and the index is
        unchanged."""
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
                raise TypeError(f"remove_ids takes a 1-D integer array or a faiss.IDSelector, got "
                                f"{arr.dtype} array of shape {arr.shape}")
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
        self.items.commit(self.items.kept(keep))
        if self.ntotal == 0:
            self.sequential_ids = None
        return int(removed)

    def reset(self):
        """Remove every vector (the correction and the inner index's training stay)."""
        with self._lock.writing():
            super().reset()
            self.items.reset()
            self.sequential_ids = None

    # ---- searching and inspection ----------------------------------------------------------

    def _searching(self):
        """The lock side a search takes: shared, or exclusive over a GPU inner index."""
        return self._lock.writing() if self.device_ == "gpu" else self._lock.reading()

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
        ``correction.bank_names_`` order (NaN for a bank not searched)."""
        return self.items.take("degrees", self.positions_of(ids))

    def get_originals(self, ids):
        """The vectors as given to add (after normalization if ``normalize_input``), float32 (n, d).
        Needs ``keep_originals=True``."""
        if not self.keep_originals:
            raise ValueError("originals are not kept: build the index with keep_originals=True")
        return self.items.take("originals", self.positions_of(ids))
