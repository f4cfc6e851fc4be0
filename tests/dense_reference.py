"""Independent dense float64 reference of InvGC, written from SCIENCE.md section 1.

Plain numpy over the full N x M similarity matrix: no faiss, no Numba, no batching. Slow and
memory-hungry on purpose; tests and benchmarks compare the library against it.
"""
import math

import numpy as np


def normalize(y):
    """Row-wise ``y / ||y||``, with ``normalize(0) = 0``."""
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return np.divide(y, norms, out=np.zeros_like(y), where=norms > 0)


def localadj_bank(x, bank, r, pool_rate):
    """``x_B`` and ``deg(x)`` for one bank, LocalAdj (SCIENCE.md 1a)."""
    x = np.asarray(x, np.float64)
    bank = np.asarray(bank, np.float64)
    m = bank.shape[0]
    k = max(1, math.floor(pool_rate * m))
    s = x @ bank.T                                   # (n, M)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    s_top = np.take_along_axis(s, top, axis=1)       # (n, k)
    off = np.einsum("nk,nkd->nd", s_top, bank[top]) / k
    return normalize(x - r * off), s_top.sum(axis=1)


def full_bank(x, bank, r, gallery_mean=None):
    """``x_B`` for one bank, full adjacency (SCIENCE.md 1b): ``mu`` = mean of ``W = X B^T``
    over the given gallery, or ``gallery_mean . b_mean`` when a gallery mean is given."""
    x = np.asarray(x, np.float64)
    bank = np.asarray(bank, np.float64)
    w = x @ bank.T
    mu = w.mean() if gallery_mean is None else float(np.asarray(gallery_mean) @ bank.mean(axis=0))
    return normalize(x - (r / bank.shape[0]) * (w - mu) @ bank)


def invgc(x, banks, rates, variant="localadj", pool_rate=0.01, gallery_mean=None):
    """Corrected gallery ``x'`` (SCIENCE.md 1c) for one or two banks, float64 (n, d)."""
    if variant == "localadj":
        parts = [localadj_bank(x, b, r, pool_rate)[0] for b, r in zip(banks, rates)]
    else:
        parts = [full_bank(x, b, r, gallery_mean) for b, r in zip(banks, rates)]
    if len(parts) == 1:
        return parts[0]
    return normalize(0.5 * parts[0] + 0.5 * parts[1])
