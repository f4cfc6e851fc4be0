"""Row blocks on a fixed grid: the BLAS products a row meets do not depend on the batch it came in.

BLAS rounds an entry of a product by the product's shape, by where the row sits in it and by the
number of BLAS threads: OpenBLAS's AVX2 kernels (``OPENBLAS_CORETYPE=Haswell``, ``Zen``) gave
other float32 similarities, by 1 ulp, for a row at another position of a block of the same shape,
and for the same block on one thread or two (docs/reproducibility.md). So every product of
gallery rows with a bank goes through :func:`map_blocks`:

* rows are cut into blocks of a fixed number of rows on a grid anchored at the gallery's row 0 --
  ``start`` is the position of the batch's first row (an index passes its ``ntotal``), and a
  batch that begins or ends inside a block fills the rest of it with zero rows;
* each block is one call of ``work`` on a ``(rows, d)`` array of its own, whose BLAS products
  run on one BLAS thread (:func:`one_blas_thread`);
* blocks run side by side on a pool of ``numba.get_num_threads()`` threads.

A row then meets the same calls at the same place whatever batch it came in and whatever thread
counts are set, on every BLAS kernel. Rows are independent in everything else the correction does
(the Numba kernels compute each row alone).
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np
import threadpoolctl

#: Rows per block: a one-row add computes this many (2 ms against a 2,048-row bank at d = 384);
#: 64-row blocks corrected 50,000 rows as fast as 256-row ones and 1.3x faster than the
#: previous one-product-per-8,192-rows path, on 2 cores (benchmarks/bench_blocks.py)
BLOCK_ROWS = 64
#: ... fewer where a block's similarities (rows x M float32) would pass this many bytes
BLOCK_BYTES = 64 << 20
#: Blocks are multiples of this many rows (a whole number of SIMD lanes)
ROW_ALIGN = 8


def block_rows(width):
    """Rows per block for products ``(rows, d) @ (d, width)``: :data:`BLOCK_ROWS`, fewer (a
    multiple of :data:`ROW_ALIGN`, at least that) where the result would pass
    :data:`BLOCK_BYTES`. A function of ``width`` alone, so a saved correction blocks alike."""
    fit = BLOCK_BYTES // (4 * max(1, int(width)))
    return max(ROW_ALIGN, min(BLOCK_ROWS, fit // ROW_ALIGN * ROW_ALIGN))


_limit_lock = threading.Lock()
_limit_users = 0
_limit = None
_controller = None


@contextmanager
def one_blas_thread():
    """Run the BLAS products inside on one BLAS thread (every BLAS library threadpoolctl finds;
    restored when the last concurrent user leaves). Parallelism comes from the block pool."""
    global _limit_users, _limit, _controller
    with _limit_lock:
        if _limit_users == 0:
            if _controller is None:
                _controller = threadpoolctl.ThreadpoolController()
            _limit = _controller.limit(limits=1, user_api="blas")
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _limit.restore_original_limits()
                _limit = None


_pools = {}
_pools_pid = None
_pools_lock = threading.Lock()


def _executor(workers):
    """A block pool of ``workers`` threads, one per size, kept for the process (at most one per
    numba thread count; made anew after a fork, where the parent's threads do not exist)."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():
            _pools.clear()
            _pools_pid = os.getpid()
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="invgc-blocks")
        return _pools[workers]


def spans(n, start, rows):
    """``(first, stop, offset)`` for each block of a batch of ``n`` rows whose first row sits at
    grid position ``start``: the batch's rows ``first:stop`` fill the block's rows
    ``offset:offset + stop - first``."""
    first, offset = 0, start % rows
    while first < n:
        stop = min(n, first + rows - offset)
        yield first, stop, offset
        first, offset = stop, 0


def map_blocks(x, start, rows, work, outputs):
    """Apply ``work`` block by block and gather its results into ``outputs``.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    start : int >= 0, the grid position of ``x[0]``
    rows : int, rows per block (:func:`block_rows`)
    work : callable(block) -> tuple of ndarray
        ``block`` is a fresh (rows, d) float32 array, zero outside the batch's rows; each returned
        array has ``rows`` leading rows, row ``i`` the result of block row ``i``. Called from pool
        threads, BLAS on one thread: it must be thread-safe (numpy, Numba ``nogil`` kernels).
    outputs : tuple of ndarray, each with ``n`` leading rows, written in place
    """
    n, d = x.shape

    def one(span):
        first, stop, offset = span
        block = np.zeros((rows, d), dtype=np.float32)
        block[offset:offset + stop - first] = x[first:stop]
        for out, result in zip(outputs, work(block)):
            out[first:stop] = result[offset:offset + stop - first]

    blocks = list(spans(n, start, rows))
    workers = min(len(blocks), numba.get_num_threads())
    with one_blas_thread():
        if workers <= 1:
            for span in blocks:
                one(span)
        else:
            for _ in _executor(numba.get_num_threads()).map(one, blocks):
                pass


#: :func:`map_rows` runs batches of fewer rows on the calling thread, and cuts larger ones into
#: chunks of at least this many rows
CHUNK_ROWS = 1024


def map_rows(n, work):
    """Call ``work(first, stop)`` over chunks of ``range(n)`` side by side on the block pool,
    for per-row kernels (serial ``nogil`` Numba kernels) whose rows do not depend on each other:
    the result is the same whatever the chunks. Batches under :data:`CHUNK_ROWS` rows run on
    the calling thread (no pool wake-up for a small add)."""
    workers = numba.get_num_threads()
    if n < CHUNK_ROWS or workers <= 1:
        work(0, n)
        return
    size = max(CHUNK_ROWS, -(-n // (4 * workers)))
    chunks = [(first, min(n, first + size)) for first in range(0, n, size)]
    for _ in _executor(workers).map(lambda span: work(*span), chunks):
        pass


def product(x, matrix, start=0):
    """``x @ matrix`` computed block by block (:func:`map_blocks`): a row's result does not
    depend on its batch.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    matrix : ndarray of shape (d, m) or (d,)
    start : int, the grid position of ``x[0]``

    Returns
    -------
    ndarray of shape (n, m) or (n,)
    """
    out = np.empty((x.shape[0],) + matrix.shape[1:], dtype=np.result_type(x, matrix))
    width = matrix.shape[1] if matrix.ndim == 2 else 1
    map_blocks(x, start, block_rows(width), lambda block: (block @ matrix,), (out,))
    return out
