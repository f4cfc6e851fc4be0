"""Building an InvGC index on a dask.distributed cluster (optional extra ``dask``).

The fitted correction (banks, bank search indexes, statistics) and the empty trained inner index
are sent to every worker once (``client.scatter(..., broadcast=True)``). Each task corrects one
gallery chunk and adds it to its own copy of the inner index -- so every shard shares the one
trained quantizer -- and returns the shard; the client merges the shards in chunk order
(``merge_from``), which leaves internal ids ``0 .. n-1`` exactly as one process adding the chunks
in order would. Search results equal the single-process build.

Chunks come either from an array-like on the client (sent to the workers) or, for a real cluster,
from a ``.npy`` path on storage every worker can read (each worker reads its own rows).

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")          # or LocalCluster() for one machine
    index = InvGCIndex(faiss.index_factory(d, "IVF4096,Flat", IP), gallery_bank=Bg, query_bank=Bq)
    index.train(xt)
    build_distributed(client, index, "/shared/gallery.npy", chunk_size=200_000)
"""
import faiss
import numpy as np

from .index import InvGCIndex
from .validation import check_positive_int


def _correct_chunk(payload, chunk, start):
    """Worker task: correct one chunk and add it to a copy of the empty inner index.

    Returns the serialized shard and the chunk's item-table rows."""
    correction, inner_bytes = payload
    if isinstance(chunk, tuple):  # (path, start, stop): read the rows here, on the worker
        path, begin, end = chunk
        chunk = np.load(path, mmap_mode="r")[begin:end]
    x = correction.check_input(chunk, name=f"chunk at row {start}")
    corrected, degrees = correction.correct(x, start)
    shard = faiss.deserialize_index(inner_bytes)
    if faiss.try_extract_index_ivf(shard) is not None:
        shard.add_with_ids(corrected, np.arange(start, start + len(x), dtype=np.int64))
    else:
        shard.add(corrected)
    return faiss.serialize_index(shard), degrees


def build_distributed(client, index, source, *, chunk_size=100_000, progress=None):
    """Correct ``source`` on the cluster and fill the empty ``index`` with it.

    Parameters
    ----------
    client : dask.distributed.Client
    index : InvGCIndex
        Empty (and trained if its inner index needs training); flat or IVF inner index (shards
        are merged with ``merge_from``). ``keep_originals`` is not supported here.
    source : array_like of shape (n, d) or str
        Gallery rows on the client (np.ndarray, np.memmap), or the path of a ``.npy`` file that
        every worker can read.
    chunk_size : int
    progress : callable(n_done_increment, total), optional

    Returns
    -------
    InvGCIndex : ``index``, holding the n corrected vectors under ids 0 .. n-1
    """
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if type(index) is not InvGCIndex:
        raise TypeError(f"build_distributed builds a baked InvGCIndex, got {type(index).__name__}")
    if index.ntotal:
        raise ValueError(f"build_distributed needs an empty index, it holds {index.ntotal}")
    if index.keep_originals:
        raise ValueError("build_distributed does not keep originals; use keep_originals=False")
    if not index.is_trained:
        raise ValueError("train the index before build_distributed")
    from_path = isinstance(source, str)
    n = np.load(source, mmap_mode="r").shape[0] if from_path else len(source)
    # hash=False: a fresh key per build. With content hashing, two builds of equal payloads share
    # one key, and the first build's release can drop the data the second one's tasks still need
    # ("lost dependencies", seen once in CI)
    payload = client.scatter((index.correction, faiss.serialize_index(index.index)),
                             broadcast=True, hash=False)
    futures = []
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        chunk = (source, start, stop) if from_path else np.asarray(source[start:stop])
        futures.append(client.submit(_correct_chunk, payload, chunk, start, pure=False))
    merged, degrees = None, []
    for future in futures:  # chunk order: positions follow the source rows
        shard_bytes, chunk_degrees = future.result()
        shard = faiss.deserialize_index(shard_bytes)
        if merged is None:
            merged = shard
        else:
            merged.merge_from(shard, 0)
        degrees.append(chunk_degrees)
        future.release()
        if progress is not None:
            progress(len(chunk_degrees), n)
    if merged is None:
        return index
    index._attach(merged, np.arange(n, dtype=np.int64),
                  {"degrees": np.concatenate(degrees)}, True)
    return index
