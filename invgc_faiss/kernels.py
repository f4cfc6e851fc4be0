"""Numba kernels of the InvGC correction and of rerank scoring.

Kernels trust their inputs (float32 C-contiguous, shapes as documented, validated by the caller)
and write into preallocated outputs. ``parallel=True`` with ``prange`` on the outer row loop only;
sums are accumulated in float64 so results match the float64 dense reference to ~1e-7.
"""
import numpy as np
from numba import njit, prange


#: The gather reads the bank in blocks of about this many bytes (a block stays in the L3 cache
#: while every row of a chunk takes its neighbours from it) ...
GATHER_BLOCK_BYTES = 6 << 20
#: ... for chunks of this many gallery rows (their float64 sums: 12 MiB at d = 384)
GATHER_CHUNK_ROWS = 4096


@njit(parallel=True, cache=True)
def weighted_neighbour_mean(bank, sims, nbrs, offsets, degrees, found, block_rows=0):
    """LocalAdj offsets and degrees from a top-k bank search, over the neighbours found.

    For each row ``i``, with ``F_i = {j : nbrs[i, j] >= 0}`` the neighbours the bank index found
    (``-1`` = none found there, which only an approximate bank index returns)::

        found[i]   = |F_i|
        offsets[i] = (1/|F_i|) * sum_{j in F_i} sims[i, j] * bank[nbrs[i, j]]   (0 if F_i is empty)
        degrees[i] = sum_{j in F_i} sims[i, j]

    With all ``k`` found this is docs/science.md §1a exactly (divisor ``k``). Dividing by the count found
    instead of ``k`` keeps the offset's scale when an IVF/HNSW bank search comes back short: a
    divisor kept at ``k`` shrinks the offset and moves the correction off its optimum.

    Cache blocking: each row's neighbours are first ordered by bank block (a counting sort; blocks
    of ``GATHER_BLOCK_BYTES``, at most ``k`` of them, so the scratch is O(n k) like the search
    result); then, for chunks of ``GATHER_CHUNK_ROWS`` rows, the bank is walked block by block
    and every row of the chunk adds its neighbours in that block. A bank row is thus read from
    memory about once per chunk instead of once per neighbour entry: on a 200k x 384 bank at
    k = 2,000 the gather of 5,000 rows took 0.45 s instead of 1.4 s. Sums are float64, so the
    order of the terms changes nothing at float32 precision.

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32
    sims : ndarray of shape (n, k), float32, similarities ``x_i . bank[nbrs[i, j]]``
    nbrs : ndarray of shape (n, k), int64, bank row numbers or -1
    offsets : ndarray of shape (n, d), float32, output
    degrees : ndarray of shape (n,), float32, output
    found : ndarray of shape (n,), int64, output
    block_rows : int
        Bank rows per block; 0 (default): ``GATHER_BLOCK_BYTES`` worth. Either way raised so
        that there are at most ``k`` blocks.
    """
    n, k = nbrs.shape
    d = bank.shape[1]
    block = block_rows if block_rows > 0 else GATHER_BLOCK_BYTES // (4 * d)
    # at most k blocks, so that the table of block starts is no larger than the search result
    block = max(1, block, (bank.shape[0] + k - 1) // max(k, 1))
    n_blocks = (bank.shape[0] + block - 1) // block
    starts = np.zeros((n, n_blocks + 1), np.int32)  # row i's entries of block b: starts[i, b:b+2]
    sorted_nbrs = np.empty((n, k), np.int32)  # bank rows < 2**31
    sorted_sims = np.empty((n, k), np.float32)
    for i in prange(n):
        count = 0
        deg = 0.0
        for j in range(k):
            b = nbrs[i, j]
            if b >= 0:
                count += 1
                deg += np.float64(sims[i, j])
                starts[i, b // block + 1] += 1
        for blk in range(n_blocks):
            starts[i, blk + 1] += starts[i, blk]
        fill = starts[i, :n_blocks].copy()
        for j in range(k):
            b = nbrs[i, j]
            if b >= 0:
                slot = fill[b // block]
                sorted_nbrs[i, slot] = b
                sorted_sims[i, slot] = sims[i, j]
                fill[b // block] = slot + 1
        found[i] = count
        degrees[i] = deg
    for first in range(0, n, GATHER_CHUNK_ROWS):
        rows = min(n, first + GATHER_CHUNK_ROWS) - first
        acc = np.zeros((rows, d), np.float64)
        for blk in range(n_blocks):
            for r in prange(rows):
                i = first + r
                for p in range(starts[i, blk], starts[i, blk + 1]):
                    s = np.float64(sorted_sims[i, p])
                    b = sorted_nbrs[i, p]
                    for c in range(d):
                        acc[r, c] += s * bank[b, c]
        for r in prange(rows):
            i = first + r
            inv = 1.0 / found[i] if found[i] > 0 else 0.0
            for c in range(d):
                offsets[i, c] = acc[r, c] * inv


@njit(parallel=True, cache=True)
def subtract_normalize_combine(x, offsets, rates, out):
    """Combine per-bank corrections into the stored vectors (docs/science.md §1a, §1b).

    For each row ``i``, with ``nb`` banks and a rate per bank *and row*::

        x_b    = normalize(x[i] - rates[b, i] * offsets[b, i])
        out[i] = normalize(sum_b x_b)          # = normalize(1/2 x_g + 1/2 x_q) for two banks

    The paper's form passes the same rate for every row; the projection form passes
    ``rho_b (x . o_b) / (o_b . o_b)`` (see :mod:`invgc_faiss.rates`).
    ``normalize(0) = 0``: a row cancelled exactly stays zero instead of becoming NaN.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (nb, n, d), float32
    rates : ndarray of shape (nb, n), float64
    out : ndarray of shape (n, d), float32, output
    """
    nb, n, d = offsets.shape
    for i in prange(n):
        total = np.zeros(d, dtype=np.float64)
        y = np.empty(d, dtype=np.float64)
        for b in range(nb):
            sq = 0.0
            r = rates[b, i]
            for c in range(d):
                v = np.float64(x[i, c]) - r * offsets[b, i, c]
                y[c] = v
                sq += v * v
            if sq > 0.0:
                inv = 1.0 / np.sqrt(sq)
                for c in range(d):
                    total[c] += y[c] * inv
        sq = 0.0
        for c in range(d):
            sq += total[c] * total[c]
        inv = 1.0 / np.sqrt(sq) if sq > 0.0 else 0.0
        for c in range(d):
            out[i, c] = total[c] * inv


@njit(parallel=True, cache=True, fastmath=True)
def candidate_dots(queries, positions, rows, out):
    """``out[i, j] = queries[i] . rows[positions[i, j]]`` (0 where ``positions[i, j] < 0``).

    float32 sums with fastmath (vectorized): tests/core/test_rerank.py checks the rescored scores
    against the float64 dense reference to 1e-5.

    Parameters
    ----------
    queries : ndarray of shape (nq, d), float32
    positions : ndarray of shape (nq, kc), int64
    rows : ndarray of shape (N, d), float32
    out : ndarray of shape (nq, kc), float64, output
    """
    nq, kc = positions.shape
    d = queries.shape[1]
    for i in prange(nq):
        q = queries[i]
        for j in range(kc):
            p = positions[i, j]
            acc = np.float32(0.0)
            if p >= 0:
                row = rows[p]
                for c in range(d):
                    acc += q[c] * row[c]
            out[i, j] = acc


@njit(parallel=True, cache=True, fastmath=True)
def candidate_dots_half(queries, positions, bits, half_table, out):
    """:func:`candidate_dots` over float16 rows given as their uint16 ``bits`` (N, d), decoded
    through ``half_table`` (65536,) float32 (Numba has no float16 arithmetic on the CPU)."""
    nq, kc = positions.shape
    d = queries.shape[1]
    for i in prange(nq):
        q = queries[i]
        for j in range(kc):
            p = positions[i, j]
            acc = np.float32(0.0)
            if p >= 0:
                row = bits[p]
                for c in range(d):
                    acc += q[c] * half_table[row[c]]
            out[i, j] = acc
