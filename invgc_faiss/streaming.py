"""Adding a gallery larger than memory: batches from a memory-mapped array or a generator.

``index.add(x)`` is atomic for one array, so it holds that array in memory. For a gallery that
does not fit, :func:`add_in_batches` reads it slice by slice (``np.memmap``, h5py/zarr datasets,
anything with ``len`` and slicing) or takes an iterable of batches, and adds batch after batch:
memory stays O(batch), and the corrected vectors go straight into the inner index. Each batch is
validated and added atomically; if one is refused, every earlier batch stays added and the error
names the batch's first row.
"""
import numpy as np

from .validation import check_positive_int


def iter_batches(source, batch_size):
    """Yield ``(start_row, batch)`` from a sliceable array-like or an iterable of 2-D batches."""
    batch_size = check_positive_int(batch_size, "batch_size")
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        for start in range(0, len(source), batch_size):
            yield start, np.asarray(source[start:start + batch_size])
    else:
        start = 0
        for batch in source:
            batch = np.asarray(batch)
            yield start, batch
            start += batch.shape[0] if batch.ndim else 0


def add_in_batches(index, source, *, ids=None, batch_size=65536, progress=None):
    """Add a gallery to ``index`` batch by batch.

    Parameters
    ----------
    index : InvGCIndex (or any faiss index)
    source : array_like of shape (n, d) (``np.memmap`` included), or an iterable of (b, d) batches
    ids : array_like of shape (n,), optional
        Ids for ``add_with_ids`` (sliced alongside the batches); default ``add``.
    batch_size : int
        Rows per batch for sliceable sources.
    progress : callable(n_done_increment, total or None), optional

    Returns
    -------
    int : rows added
    """
    total = len(source) if hasattr(source, "__len__") else None
    added = 0
    for start, batch in iter_batches(source, batch_size):
        try:
            if ids is None:
                index.add(batch)
            else:
                index.add_with_ids(batch, np.asarray(ids[start:start + len(batch)]))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"batch starting at row {start}: {exc}") from exc
        added += len(batch)
        if progress is not None:
            progress(len(batch), total)
    return added
