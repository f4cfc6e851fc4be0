"""Numba kernels of the InvGC correction and of rerank scoring.

Kernels trust their inputs (float32 C-contiguous, shapes as documented, validated by the caller)
and write into preallocated outputs. ``parallel=True`` with ``prange`` on the outer row loop only;
sums are accumulated in float64 so results match the float64 dense reference to ~1e-7.
"""
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

#: Batches of fewer rows run their kernels on one thread (:func:`threads_for`). Default add
#: (4,096-row bank, k = 819, d = 384), 2 cores, one thread against two: 32 rows 4.1 ms against
#: 12.5, 256 rows 26 against 38, 1,024 rows 97 against 108; 32,768 rows 2.9-3.7 s against 2.6-2.9
SERIAL_ROWS = 1024


@contextmanager
def threads_for(rows):
    """Run the kernels called inside on one thread when the batch has fewer than
    ``SERIAL_ROWS`` rows (numba's thread count is per calling thread, so other threads are not
    affected). numpy's BLAS threads spin for a while after each product; waking numba's threads
    beside them stalled a small batch by 8-16 ms on 2 cores (a one-row add took 17 ms, not 1.5).
    Results are the same either way: rows are independent and each is computed alike."""
    if rows >= SERIAL_ROWS:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


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


#: Most buckets of the histogram :func:`_kth_largest` counts a row into (a quarter of the row's
#: length, at least 16), so that the bucket holding the k-th largest value holds a few entries
HIST_BUCKETS = 4096


@njit(cache=True)
def hist_buckets(m):
    """Buckets of the histogram for rows of ``m`` entries."""
    return max(16, min(HIST_BUCKETS, m // 4))


@njit(cache=True)
def _kth_largest(row, k, counts, candidates):
    """The k-th largest value of ``row`` (m,) float32 (1 <= k < m, finite values) and how many
    entries are greater than it and equal to it. No sort and no heap: one pass finds the row's
    range, one counts the entries into ``counts`` (nb,) int32 equal buckets of it, a walk down
    from the top bucket finds the bucket holding the k-th largest, and one pass collects that
    bucket's entries into ``candidates`` (m,), where a partition finds the value. The bucket of
    ``v`` is ``int((v - lo) * scale)``, the same float32 expression in both passes: it never
    decreases as ``v`` grows, so every entry of a higher bucket is greater than every entry of
    the chosen one, and the result is exact."""
    m, nb = row.shape[0], counts.shape[0]
    lo, hi = row[0], row[0]
    for j in range(1, m):
        v = row[j]
        lo = min(lo, v)
        hi = max(hi, v)
    if not hi > lo:  # every entry equal
        return hi, 0, m
    scale = np.float32((nb - 1) / (np.float64(hi) - np.float64(lo)))
    counts[:] = 0
    for j in range(m):
        counts[min(nb - 1, np.int32((row[j] - lo) * scale))] += 1
    above, bucket = 0, nb - 1
    while above + counts[bucket] < k:
        above += counts[bucket]
        bucket -= 1
    found = 0
    for j in range(m):  # branch-free: every entry is written, only the bucket's advance
        v = row[j]
        candidates[found] = v
        found += min(nb - 1, np.int32((v - lo) * scale)) == bucket
    need = k - above
    kth = np.partition(candidates[:found], found - need)[found - need]
    greater, equal = above, 0
    for t in range(found):
        greater += candidates[t] > kth
        equal += candidates[t] == kth
    return kth, greater, equal


@njit(cache=True, nogil=True)
def top_k_of_rows(scores, k, sims, nbrs):
    """Each row's ``k`` largest entries, in column order: an exact top-k in O(m) per row.

    Serial and ``nogil``: it runs once per row block, blocks side by side
    (:func:`invgc_faiss.row_blocks.map_blocks`).

    Exactly ``k`` entries per row: every entry above the row's k-th largest value, then entries
    equal to it in column order (ties at rank k go to the lowest columns, as a stable descending
    sort would order them). No heap: :func:`_kth_largest` finds the k-th value, one pass copies.

    Parameters
    ----------
    scores : ndarray of shape (n, m), float32
    k : int, 1 <= k <= m
    sims : ndarray of shape (n, k), float32, output: the kept entries
    nbrs : ndarray of shape (n, k), int64, output: their columns, ascending
    """
    n, m = scores.shape
    nb = hist_buckets(m)
    for i in range(n):
        row = scores[i]
        if k >= m:
            for j in range(m):
                sims[i, j] = row[j]
                nbrs[i, j] = j
            continue
        kth, greater, equal = _kth_largest(row, k, np.empty(nb, np.int32),
                                           np.empty(m, np.float32))
        ties = k - greater
        if ties == equal:  # every entry at the k-th value is kept: copy branch-free
            kept_sims = np.empty(k + 1, np.float32)
            kept_rows = np.empty(k + 1, np.int64)
            slot = 0
            for j in range(m):
                v = row[j]
                kept_sims[slot] = v
                kept_rows[slot] = j
                slot += v >= kth
            sims[i, :] = kept_sims[:k]
            nbrs[i, :] = kept_rows[:k]
            continue
        slot = 0
        for j in range(m):
            v = row[j]
            if v > kth or (v == kth and ties > 0):
                ties -= v == kth
                sims[i, slot] = v
                nbrs[i, slot] = j
                slot += 1


@njit(cache=True, nogil=True)
def keep_top_k(scores, k, degrees):
    """Keep each row's ``k`` largest entries in place (the same entries as
    :func:`top_k_of_rows`) and zero the rest; ``degrees`` (n,) float32 gets their sums (float64
    accumulation). Serial and ``nogil``, as :func:`top_k_of_rows`.

    Parameters
    ----------
    scores : ndarray of shape (n, m), float32, changed in place
    k : int, 1 <= k <= m
    degrees : ndarray of shape (n,), float32, output
    """
    n, m = scores.shape
    nb = hist_buckets(m)
    for i in range(n):
        row = scores[i]
        total = 0.0
        if k >= m:
            for j in range(m):
                total += np.float64(row[j])
            degrees[i] = total
            continue
        kth, greater, equal = _kth_largest(row, k, np.empty(nb, np.int32),
                                           np.empty(m, np.float32))
        ties = k - greater
        if ties == equal:  # every entry at the k-th value is kept: branch-free
            for j in range(m):
                kept = row[j] if row[j] >= kth else np.float32(0.0)
                row[j] = kept
                total += kept
        else:
            for j in range(m):
                v = row[j]
                keep = v > kth or (v == kth and ties > 0)
                ties -= keep and v == kth
                if keep:
                    total += np.float64(v)
                else:
                    row[j] = 0.0
        degrees[i] = total


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
