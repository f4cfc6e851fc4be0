"""Independent dense float64 reference of InvGC, written from docs/science.md §1.

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
    """``x_B`` and ``deg(x)`` for one bank, LocalAdj (docs/science.md §1a)."""
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
    """``x_B`` for one bank, full adjacency (docs/science.md §1a): ``mu`` = mean of ``W = X B^T``
    over the given gallery, or ``gallery_mean . b_mean`` when a gallery mean is given."""
    x = np.asarray(x, np.float64)
    bank = np.asarray(bank, np.float64)
    w = x @ bank.T
    mu = w.mean() if gallery_mean is None else float(np.asarray(gallery_mean) @ bank.mean(axis=0))
    return normalize(x - (r / bank.shape[0]) * (w - mu) @ bank)


def invgc(x, banks, rates, variant="localadj", pool_rate=0.01, gallery_mean=None):
    """Corrected gallery ``x'`` (docs/science.md §1b) for one or two banks, float64 (n, d)."""
    if variant == "localadj":
        parts = [localadj_bank(x, b, r, pool_rate)[0] for b, r in zip(banks, rates)]
    else:
        parts = [full_bank(x, b, r, gallery_mean) for b, r in zip(banks, rates)]
    if len(parts) == 1:
        return parts[0]
    return normalize(0.5 * parts[0] + 0.5 * parts[1])


def localadj_offset(x, bank, pool_rate, keep=None):
    """LocalAdj offset ``off(x)`` (n, d) float64 over the top-k bank rows (docs/science.md §1a); with
    ``keep`` (n, k) bool, only the kept ones of those k count and the mean is over them (0 if
    none): what a bank search returning fewer than k rows should give."""
    x = np.asarray(x, np.float64)
    bank = np.asarray(bank, np.float64)
    k = max(1, math.floor(pool_rate * bank.shape[0]))
    s = x @ bank.T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    s_top = np.take_along_axis(s, top, axis=1)
    if keep is None:
        keep = np.ones_like(s_top, dtype=bool)
    weights = np.where(keep, s_top, 0.0)
    count = keep.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, bank[top]) / np.maximum(count, 1)


def projection_invgc(x, banks, rhos, pool_rate, keeps=None):
    """Projection form (docs/science.md §1b): per bank ``x_B = normalize(x - rho (x.ô) ô)``,
    ``ô = off/|off|`` (``x_B = x`` where ``off = 0``); ``x' = normalize(sum of x_B over the
    banks with rho > 0)``, ``x`` itself when there is none. float64 (n, d)."""
    x = np.asarray(x, np.float64)
    keeps = keeps or [None] * len(banks)
    parts = []
    for bank, rho, keep in zip(banks, rhos, keeps):
        if rho <= 0:
            continue
        unit_offset = normalize(localadj_offset(x, bank, pool_rate, keep))
        along = np.einsum("nd,nd->n", x, unit_offset)[:, None]
        parts.append(normalize(x - rho * along * unit_offset))
    if not parts:
        return x.copy()
    return normalize(np.sum(parts, axis=0))


def reduced_localadj_offset(x, bank, pool_rate, n_components):
    """LocalAdj offset computed in the bank's top ``n_components`` uncentred principal
    directions (docs/science.md §1f): ``V`` = the top eigenvectors of ``B^T B`` (float64), the
    similarities ``(x V^T) . (b V^T)``, their stable top k, ``off = (1/k) sum s~ (b V^T) V``.
    Returns ``(off (n, d), top (n, k) bank rows kept, kth (n,) the k-th similarity)``."""
    x = np.asarray(x, np.float64)
    bank = np.asarray(bank, np.float64)
    k = max(1, math.floor(pool_rate * bank.shape[0]))
    _, vectors = np.linalg.eigh(bank.T @ bank)
    basis = vectors[:, ::-1][:, :n_components].T           # (p, d)
    reduced_bank = bank @ basis.T                           # (M, p)
    s = (x @ basis.T) @ reduced_bank.T                      # (n, M)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    s_top = np.take_along_axis(s, top, axis=1)
    off = np.einsum("nk,nkp->np", s_top, reduced_bank[top]) @ basis / k
    return off, top, s_top[:, -1]
