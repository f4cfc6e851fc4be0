"""Numba kernels of the InvGC correction and of rerank scoring.

Kernels trust their inputs (float32 C-contiguous, shapes as documented, validated by the caller)
and write into preallocated outputs. Most are serial and ``nogil``, called per row block or row
chunk on the block pool (:mod:`invgc_faiss.row_blocks`); the rest use ``parallel=True`` with
``prange`` on the outer row loop only. Sums are accumulated in float64 (the reduced pool sum:
float32, in a fixed order per row) so results match the float64 dense reference to ~1e-7.
"""
import numba
import numpy as np
from numba import njit, prange

#: Batches of fewer rows run the gather on the calling thread
#: (``weighted_neighbour_mean_serial``): numpy's BLAS threads spin for a while after each
#: product, and waking numba's threads beside them stalled a small batch by 8-16 ms on 2 cores
#: (a one-row add took 17 ms, not 1.5). Results are the same either way: rows are independent.
SERIAL_ROWS = 1024


#: The gather reads the bank in blocks of about this many bytes (a block stays in the L3 cache
#: while every row of a chunk takes its neighbours from it) ...
GATHER_BLOCK_BYTES = 6 << 20
#: ... for chunks of this many gallery rows (their float64 sums: 12 MiB at d = 384)
GATHER_CHUNK_ROWS = 4096


def _weighted_neighbour_mean(bank, sims, nbrs, offsets, degrees, found, block_rows=0):
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


#: :func:`_weighted_neighbour_mean` over all numba threads (``prange``), and compiled from the
#: same body for the calling thread alone (``nogil``), for batches under :data:`SERIAL_ROWS`
#: rows such as the fit's few hundred probe rows
weighted_neighbour_mean = njit(parallel=True, cache=True)(_weighted_neighbour_mean)
weighted_neighbour_mean_serial = njit(cache=True, nogil=True)(_weighted_neighbour_mean)


#: Most buckets of the histogram :func:`_kth_largest` counts a row into (a quarter of the row's
#: length, at least 16), so that the bucket holding the k-th largest value holds a few entries
HIST_BUCKETS = 4096


@njit(cache=True)
def hist_buckets(m):
    """Buckets of the histogram for rows of ``m`` entries."""
    return max(16, min(HIST_BUCKETS, m // 4))


@njit(cache=True)
def _kth_by_histogram(row, k, counts, candidates):
    """:func:`_kth_largest` where the counting passes do not close in (ties, odd shapes). No
    sort and no heap: one pass finds the row's
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


#: The counting passes of :func:`_bracket` stop once at most this many entries lie between the
#: two thresholds (they are then collected and the k-th found among them)
WINDOW = 64
#: ... or after this many passes, leaving the row to the histogram (:func:`_kth_by_histogram`)
BRACKET_PASSES = 8


@njit(cache=True, nogil=True)
def _normal_quantile(p):
    """z with P(Z > z) = p for a standard normal Z, 0 < p < 1, to about 5e-4 (Abramowitz and
    Stegun 26.2.23): only a first guess of where the k-th largest of a row lies."""
    q = min(p, 1.0 - p)
    t = np.sqrt(-2.0 * np.log(q))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (
        1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
    return z if p <= 0.5 else -z


@njit(cache=True, nogil=True)
def _count_two(row, a, b):
    """How many entries of ``row`` are >= ``a`` and >= ``b`` (one vectorized pass)."""
    ca = 0
    cb = 0
    for j in range(row.shape[0]):
        v = row[j]
        ca += v >= a
        cb += v >= b
    return ca, cb


@njit(cache=True, nogil=True)
def _bracket(row, k):
    """Thresholds ``lo < hi`` with ``#(row >= lo) >= k > #(row >= hi)`` and at most
    :data:`WINDOW` entries in ``[lo, hi)``: ``(lo, n_lo, hi, n_hi, True)``, the counts
    ``n = #(row >= threshold)``; ``(.., False)`` when :data:`BRACKET_PASSES` passes do not get
    there. The first guess is a normal fit to 128 strided entries; each pass counts two
    thresholds around the guess, and the next guess moves by the counts seen (their spacing
    gives the density of entries there). Every threshold is a float32 the row is compared
    with, so the counts, and what is derived from them, are exact."""
    m = row.shape[0]
    stride = max(1, m // 128)
    s1 = 0.0
    s2 = 0.0
    ns = 0
    for j in range(0, m, stride):
        v = np.float64(row[j])
        s1 += v
        s2 += v * v
        ns += 1
    mean = s1 / ns
    var = s2 / ns - mean * mean
    lo, n_lo, hi, n_hi = -np.inf, m, np.inf, 0
    if not var > 1e-14 or k >= m:
        return np.float32(lo), n_lo, np.float32(hi), n_hi, False
    std = np.sqrt(var)
    z = _normal_quantile(k / m)
    density = m * np.exp(-0.5 * z * z) / (2.5066282746310002 * std)  # entries per unit
    centre = mean + z * std
    for _ in range(BRACKET_PASSES):
        half = 16.0 / density
        a = np.float32(centre - half)
        b = np.float32(centre + half)
        if lo > -np.inf and hi < np.inf:
            a = a if a > lo else np.float32(lo)
            b = b if b < hi else np.float32(hi)
        ca, cb = _count_two(row, a, b)
        if ca >= k:
            if a > lo:
                lo, n_lo = a, ca
        elif a < hi:
            hi, n_hi = a, ca
        if cb >= k:
            if b > lo:
                lo, n_lo = b, cb
        elif b < hi:
            hi, n_hi = b, cb
        if lo > -np.inf and hi < np.inf and n_lo - n_hi <= WINDOW:
            return np.float32(lo), n_lo, np.float32(hi), n_hi, True
        if ca > cb and b > a:
            density = (ca - cb) / (np.float64(b) - np.float64(a))
        centre = np.float64(a) + (ca - k) / density
        if lo > -np.inf and hi < np.inf and not (lo < centre < hi):
            centre = 0.5 * (np.float64(lo) + np.float64(hi))
    return np.float32(lo), n_lo, np.float32(hi), n_hi, False


@njit(cache=True, nogil=True)
def _select_descending(buf, n, r):
    """The ``r``-th largest (from 0) of ``buf[:n]``, reordering it in place (quickselect,
    median-of-three pivots)."""
    left, right = 0, n - 1
    while left < right:
        mid = (left + right) // 2
        a, b, c = buf[left], buf[mid], buf[right]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = left, right
        while i <= j:
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if r <= j:
            right = j
        elif r >= i:
            left = i
        else:
            return buf[r]
    return buf[left]


@njit(cache=True, nogil=True)
def _kth_largest(row, k, counts, candidates):
    """The k-th largest value of ``row`` (m,) float32 (1 <= k < m, finite values) and how many
    entries are greater than it and equal to it; ``counts`` (nb,) int32 and ``candidates``
    (m,) float32 are scratch. Counting passes close in on it (:func:`_bracket`, two or three
    vectorized passes on most rows), one pass collects the entries between the two thresholds
    and a quickselect finds it among them; rows where the passes do not close in go to
    :func:`_kth_by_histogram`. Exact either way."""
    lo, n_lo, hi, n_hi, ok = _bracket(row, k)
    if not ok:
        return _kth_by_histogram(row, k, counts, candidates)
    found = 0
    for j in range(row.shape[0]):  # branch-free: every entry is written, those between advance
        v = row[j]
        candidates[found] = v
        found += (v >= lo) & (v < hi)
    kth = _select_descending(candidates, found, k - n_hi - 1)  # reorders candidates[:found]
    greater, equal = n_hi, 0
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


@njit(cache=True, nogil=True)
def _pool_columns(row, k, columns, candidates, candidate_columns, counts):
    """The columns of ``row``'s ``k`` largest entries into ``columns[:k]`` (the same entries as
    :func:`top_k_of_rows`, ties at rank k to the lowest columns): those above the bracket's
    upper threshold first, then those from between the thresholds, each in column order. One
    pass collects both (:func:`_bracket`); rows it does not close in on take the histogram."""
    m = row.shape[0]
    lo, n_lo, hi, n_hi, ok = _bracket(row, k)
    if ok:
        sure = 0
        found = 0
        for j in range(m):  # branch-free
            v = row[j]
            columns[sure] = j
            sure += v >= hi
            candidates[found] = v
            candidate_columns[found] = j
            found += (v >= lo) & (v < hi)
        scratch = candidates[m:m + found]
        scratch[:] = candidates[:found]
        kth = _select_descending(scratch, found, k - n_hi - 1)
        greater = 0
        for t in range(found):
            greater += candidates[t] > kth
        ties = k - n_hi - greater
        slot = sure
        for t in range(found):
            v = candidates[t]
            keep = v > kth or (v == kth and ties > 0)
            ties -= keep and v == kth
            columns[slot] = candidate_columns[t]
            slot += keep
        return
    kth, greater, equal = _kth_by_histogram(row, k, counts, candidates)
    ties = k - greater
    slot = 0
    for j in range(m):
        v = row[j]
        keep = v > kth or (v == kth and ties > 0)
        ties -= keep and v == kth
        columns[slot] = j
        slot += keep


@njit(cache=True, nogil=True)
def reduced_pool_means(scores, k, bank, offsets, degrees):
    """LocalAdj offsets in a reduced space: for each row, its ``k`` largest ``scores`` (the
    entries :func:`top_k_of_rows` keeps) weight the matching ``bank`` rows,
    ``offsets[i] = (1/k) sum_j s_ij bank[j]``, ``degrees[i] = sum_j s_ij`` (float64
    accumulation). Serial and ``nogil`` (one call per row block). The bank rows are summed in
    float32, in a fixed order per row (``_pool_columns``), so a row's result depends on nothing
    else.

    Parameters
    ----------
    scores : ndarray of shape (n, m), float32, a row block's similarities to the bank rows
    k : int, 1 <= k <= m
    bank : ndarray of shape (m, p), float32
    offsets : ndarray of shape (n, p), float32, output
    degrees : ndarray of shape (n,), float32, output
    """
    n, m = scores.shape
    p = bank.shape[1]
    columns = np.arange(m + 1)
    candidates = np.empty(2 * m, np.float32)
    candidate_columns = np.empty(m + 1, np.int64)
    counts = np.empty(hist_buckets(m), np.int32)
    total = np.empty(p, np.float32)
    inv_k = np.float32(1.0 / k)
    for i in range(n):
        row = scores[i]
        if k < m:
            _pool_columns(row, k, columns, candidates, candidate_columns, counts)
        total[:] = 0.0
        s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
        q = 0
        while q + 4 <= k:  # four bank rows a step: a quarter of the loads and stores of total
            j0, j1, j2, j3 = columns[q], columns[q + 1], columns[q + 2], columns[q + 3]
            w0, w1, w2, w3 = row[j0], row[j1], row[j2], row[j3]
            s0 += w0
            s1 += w1
            s2 += w2
            s3 += w3
            for c in range(p):
                total[c] += (w0 * bank[j0, c] + w1 * bank[j1, c]) + (
                    w2 * bank[j2, c] + w3 * bank[j3, c])
            q += 4
        while q < k:
            j = columns[q]
            w = row[j]
            s0 += w
            for c in range(p):
                total[c] += w * bank[j, c]
            q += 1
        degrees[i] = (s0 + s1) + (s2 + s3)
        for c in range(p):
            offsets[i, c] = total[c] * inv_k


@njit(cache=True, nogil=True)
def row_dots(x, offsets, x_dot_o, o_dot_o):
    """``x_dot_o[i] = x[i] . offsets[i]`` and ``o_dot_o[i] = offsets[i] . offsets[i]``,
    float64 sums of float32 rows (n, d), written into the float64 (n,) outputs. Serial and
    ``nogil``: callers run row chunks side by side (:func:`invgc_faiss.row_blocks.map_rows`)."""
    n, d = x.shape
    for i in range(n):
        xo = 0.0
        oo = 0.0
        for c in range(d):
            o = np.float64(offsets[i, c])
            xo += np.float64(x[i, c]) * o
            oo += o * o
        x_dot_o[i] = xo
        o_dot_o[i] = oo


@njit(cache=True, nogil=True)
def subtract_normalize_combine(x, offsets, rates, out):
    """Combine per-bank corrections into the stored vectors (docs/science.md §1a, §1b).

    For each row ``i``, with ``nb`` banks and a rate per bank *and row*::

        x_b    = normalize(x[i] - rates[b, i] * offsets[b, i])
        out[i] = normalize(sum_b x_b)          # = normalize(1/2 x_g + 1/2 x_q) for two banks

    The paper's form passes the same rate for every row; the projection form passes
    ``rho_b (x . o_b) / (o_b . o_b)`` (see :mod:`invgc_faiss.rates`).
    ``normalize(0) = 0``: a row cancelled exactly stays zero instead of becoming NaN. Serial
    and ``nogil``: callers run row chunks side by side (:func:`invgc_faiss.row_blocks.map_rows`).

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (nb, n, d), float32
    rates : ndarray of shape (nb, n), float64
    out : ndarray of shape (n, d), float32, output
    """
    nb, n, d = offsets.shape
    total = np.empty(d, dtype=np.float64)
    y = np.empty(d, dtype=np.float64)
    for i in range(n):
        total[:] = 0.0
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
