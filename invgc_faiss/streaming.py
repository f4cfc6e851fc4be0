"""Adding a gallery larger than memory: batches from a memory-mapped array or a generator.

``index.add(x)`` is atomic for one array, so it holds that array in memory. For a gallery that
does not fit, :func:`add_in_batches` reads it slice by slice (``np.memmap``, h5py/zarr datasets,
anything with ``len`` and slicing) or takes an iterable of batches (:func:`read_npy_batches`
reads a ``.npy`` file without mapping it), and adds batch after batch: working memory stays
O(batch), and the corrected vectors go straight into the inner index. Each batch is
validated and added atomically; if one is refused, every earlier batch stays added and the error
names the batch's first row. :func:`transform_in_batches` writes the corrected vectors to an
output array instead (e.g. a ``.npy`` memory map) for tools that build their own index from files,
such as autofaiss.
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


def for_each_batch(source, batch_size, apply, progress=None):
    """Call ``apply(start_row, batch)`` on each batch of ``source`` (see :func:`iter_batches`);
    a ``ValueError``/``TypeError`` it raises is re-raised naming the batch's first row. Returns
    the rows done; ``progress(n_done_increment, total or None)`` after each batch."""
    total = len(source) if hasattr(source, "__len__") else None
    done = 0
    for start, batch in iter_batches(source, batch_size):
        try:
            apply(start, batch)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"batch starting at row {start}: {exc}") from exc
        done += len(batch)
        if progress is not None:
            progress(len(batch), total)
    return done


def read_npy_batches(path, batch_size):
    """Yield row batches of a 2-D ``.npy`` file by plain reads (not a memory map, whose touched
    pages would stay in the resident set): memory stays one batch.

    Parameters
    ----------
    path : str
    batch_size : int

    Yields
    ------
    ndarray of shape (<= batch_size, d), the file's dtype
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if len(shape) != 2 or fortran:
            raise ValueError(f"{path}: expected a C-ordered 2-D array, got shape {shape}")
        n, d = shape
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            batch = np.fromfile(f, dtype=dtype, count=rows * d)
            if batch.size != rows * d:
                raise ValueError(f"{path} is truncated at row {start + batch.size // d}")
            yield batch.reshape(rows, d)


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
    def add(start, batch):
        if ids is None:
            index.add(batch)
        else:
            index.add_with_ids(batch, np.asarray(ids[start:start + len(batch)]))

    return for_each_batch(source, batch_size, add, progress)


def transform_in_batches(correction, source, out, *, batch_size=65536, progress=None):
    """Write the corrected rows of a gallery into ``out``, batch by batch.

    ``out[i] = correction.transform(source[i])`` (an InvGC or any object whose
    ``transform(batch, start=...)`` takes the position of the batch's first row); working memory
    stays O(batch). The rows are those one ``transform(source)`` would give, bit for bit
    (docs/reproducibility.md). For a file another tool indexes::

        out = np.lib.format.open_memmap("corrected/part0.npy", "w+", np.float32, source.shape)
        transform_in_batches(index.correction, np.load("gallery.npy", mmap_mode="r"), out)
        out.flush()

    Parameters
    ----------
    correction : fitted InvGC (``InvGCIndex.correction``)
    source : array_like of shape (n, d) or an iterable of (b, d) batches
    out : writable array of shape (n, d), float32 (``np.memmap`` included)
    batch_size : int
    progress : callable(n_done_increment, total or None), optional

    Returns
    -------
    int : rows written
    """
    def write(start, batch):
        if start + len(batch) > len(out):
            raise ValueError(f"out has {len(out)} rows, the source has more")
        out[start:start + len(batch)] = correction.transform(batch, start=start)

    written = for_each_batch(source, batch_size, write, progress)
    if written != len(out):
        raise ValueError(f"the source had {written} rows, out has {len(out)}")
    return written
