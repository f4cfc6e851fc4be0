"""Design B of the LocalAdj hot path, kept here for the benchmark only.

numpy BLAS block ``S = X_b B^T`` (batch x M), a Numba parallel top-k select per row, then the
library's own weighted gather kernel. Same output as the library's design A (faiss top-k + gather),
O(batch x M) working memory.
"""
import numpy as np
from numba import njit, prange

from invgc_faiss import kernels


@njit(parallel=True, cache=True)
def top_k_select(scores, k, sims, nbrs):
    """Top-k (unordered) of each row of ``scores`` (n, M) into ``sims``/``nbrs`` (n, k)."""
    n, m = scores.shape
    for i in prange(n):
        row = scores[i]
        thr = np.partition(row, m - k)[m - k]
        j = 0
        for c in range(m):  # strictly above the threshold first
            if row[c] > thr:
                sims[i, j] = row[c]
                nbrs[i, j] = c
                j += 1
        for c in range(m):  # then ties at the threshold until k
            if j == k:
                break
            if row[c] == thr:
                sims[i, j] = row[c]
                nbrs[i, j] = c
                j += 1


def localadj_offsets_blas_select(x, bank, k, batch_size=2048):
    """LocalAdj offsets (n, d) and degrees (n,) of ``x`` against one bank, design B."""
    n, d = x.shape
    offsets = np.empty((n, d), dtype=np.float32)
    degrees = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        scores = xb @ bank.T
        sims = np.empty((xb.shape[0], k), dtype=np.float32)
        nbrs = np.empty((xb.shape[0], k), dtype=np.int64)
        top_k_select(scores, k, sims, nbrs)
        kernels.weighted_neighbour_mean(bank, sims, nbrs, offsets[start:start + batch_size],
                                        degrees[start:start + batch_size],
                                        np.empty(xb.shape[0], np.int64))
    return offsets, degrees
