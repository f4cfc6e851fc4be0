"""Retrieval, hubness and degeneration metrics (docs/science.md §5). All ranks are 1-based.

Inputs are faiss-shaped: ``I`` (nq, k) int64 labels from ``index.search``, ``-1`` for missing.
"""
import math

import faiss
import numpy as np

from ..measures import recalls, skewness


def ground_truth_ranks(I, ground_truth):
    """1-based rank of the best ground-truth item in each result row.

    Parameters
    ----------
    I : ndarray of shape (nq, k), int
        Search results, best first.
    ground_truth : ndarray of shape (nq,) or (nq, m), int
        The relevant id(s) of each query; ``-1`` pads rows with fewer than m.

    Returns
    -------
    ndarray of shape (nq,), int64
        Rank of the first relevant id; ``k + 1`` where none is in the row (censored: exact for
        R@K with K <= k, and MdR/MnR are exact only when ``k`` covers the whole gallery).
    """
    I = np.asarray(I)
    gt = np.asarray(ground_truth)
    if gt.ndim == 1:
        gt = gt[:, None]
    nq, k = I.shape
    if gt.shape[0] != nq:
        raise ValueError(f"ground_truth has {gt.shape[0]} rows, results have {nq}")
    hit = (I[:, :, None] == gt[:, None, :]) & (gt[:, None, :] >= 0)
    hit = hit.any(axis=2)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, k + 1).astype(np.int64)


def retrieval_metrics(ranks, ks=(1, 5, 10)):
    """R@K (percent), MdR and MnR from 1-based ranks (nq,).

    Returns
    -------
    dict with keys ``"R@1"``, ``"R@5"``, ``"R@10"`` (for the given ks), ``"MdR"``, ``"MnR"``
    """
    ranks = np.asarray(ranks)
    return {**recalls(ranks, ks), "MdR": float(np.median(ranks)), "MnR": float(np.mean(ranks))}


def k_occurrence(I, n_items):
    """``N_k(x)``: how many result rows contain each item; ``I`` holds positions 0..n_items-1
    (``-1`` ignored). Returns int64 (n_items,)."""
    labels = np.asarray(I).ravel()
    return np.bincount(labels[labels >= 0], minlength=n_items).astype(np.int64)


def hubness(I, n_items):
    """Hubness of a gallery under a query set from top-k results ``I`` (nq, k).

    Returns
    -------
    dict with
        ``"k_skewness"``: third standardized moment of ``N_k``;
        ``"robin_hood"``: ``sum |N_k - mean N_k| / (2 sum N_k)``, the share of occurrences that
        would have to move to make ``N_k`` uniform;
        ``"hub_occurrence"``: share of all top-k slots taken by the top 1% items
        (``ceil(0.01 n)`` items with the largest ``N_k``);
        ``"antihub_rate"``: share of items with ``N_k = 0``.
    """
    counts = k_occurrence(I, n_items).astype(np.float64)
    total = counts.sum()
    centred = counts - counts.mean()
    n_hubs = max(1, math.ceil(0.01 * n_items))
    return {
        "k_skewness": skewness(counts),
        "robin_hood": float(np.abs(centred).sum() / (2 * total)) if total else 0.0,
        "hub_occurrence": float(np.sort(counts)[::-1][:n_hubs].sum() / total) if total else 0.0,
        "antihub_rate": float(np.mean(counts == 0)),
    }


def mean_pairwise_cosine(x):
    """Mean cosine over pairs ``i != j`` of unit rows (n, d): ``(||sum x||^2 - n) / (n (n - 1))``,
    O(n d). The narrowness of the cone: near 1 means degenerate."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"mean_pairwise_cosine needs at least 2 rows, got {n}")
    s = x.sum(axis=0)
    return float((s @ s - np.einsum("ij,ij->", x, x)) / (n * (n - 1)))


def mean_nearest_neighbour_cosine(x):
    """Mean over rows of the cosine to their nearest other row (exact faiss flat search)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"mean_nearest_neighbour_cosine needs at least 2 rows, got {n}")
    nearest = self_neighbours(x, 1)[:, 0]
    return float(np.einsum("ij,ij->i", x, x[nearest], dtype=np.float64).mean())


def degeneration(x):
    """``{"mean_cos": ..., "nn_cos": ...}``: mean pairwise and mean nearest-neighbour cosine of
    unit rows (n, d)."""
    return {"mean_cos": mean_pairwise_cosine(x), "nn_cos": mean_nearest_neighbour_cosine(x)}


def self_neighbours(x, k):
    """Top-``k`` neighbours of every row of ``x`` among the other rows, by inner product.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    k : int, ``k < n``

    Returns
    -------
    ndarray of shape (n, k), int64: row numbers of ``x``, best first, never ``i`` itself
    """
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, n - 1] for n = {n} rows, got k = {k}")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    _, I = index.search(np.ascontiguousarray(x, dtype=np.float32), k + 1)
    not_self = I != np.arange(n)[:, None]
    not_self[not_self.all(axis=1), k] = False  # self not found (ties): drop the last instead
    return I[not_self].reshape(n, k)


def ndcg_rows(I, relevance, ks=(10, 20, 50)):
    """NDCG@k of each ranked list against graded relevance, the query itself excluded.

    ``DCG@k(i) = sum_{r=1..k} relevance[i, I[i, r-1]] / log2(r + 1)``, and ``IDCG@k(i)`` is the
    same sum over row i's ``k`` largest relevances among the other items.

    Parameters
    ----------
    I : ndarray of shape (n, >= max(ks)), int64, retrieved item numbers per query (no self)
    relevance : ndarray of shape (n, n), graded relevance of item j to query i, >= 0
    ks : sequence of int

    Returns
    -------
    dict ``{"NDCG@k": ndarray (n,)}``, float64 percent; NaN where IDCG is 0 (nothing relevant)
    """
    n, kmax = relevance.shape[0], max(ks)
    if relevance.shape != (n, n) or I.shape[0] != n or I.shape[1] < kmax:
        raise ValueError(f"need relevance (n, n) and I (n, >= {kmax}), got {relevance.shape} and "
                         f"{I.shape}")
    others = relevance.astype(np.float64, copy=True)
    np.fill_diagonal(others, -np.inf)
    ideal = -np.sort(-others, axis=1)[:, :kmax]
    ideal[~np.isfinite(ideal)] = 0.0
    gained = np.take_along_axis(relevance.astype(np.float64), I[:, :kmax], axis=1)
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    out = {}
    for k in ks:
        dcg, idcg = gained[:, :k] @ discount[:k], ideal[:, :k] @ discount[:k]
        out[f"NDCG@{k}"] = np.full(n, np.nan)
        np.divide(100.0 * dcg, idcg, out=out[f"NDCG@{k}"], where=idcg > 0)
    return out


def ndcg(I, relevance, ks=(10, 20, 50)):
    """Mean NDCG@k (percent) of :func:`ndcg_rows` for each k, rows with nothing relevant left
    out: dict ``{"NDCG@k": percent}``."""
    return mean_ndcg(ndcg_rows(I, relevance, ks))


def mean_ndcg(rows):
    """``{"NDCG@k": percent}`` from :func:`ndcg_rows`' per-row values (0 where none is defined)."""
    return {name: float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for name, v in rows.items()}


def neighbour_overlap(I, J, k=10):
    """Mean share (percent) of the top-``k`` lists ``I`` and ``J`` (n, >= k) that coincide:
    ``100 * mean_i |I[i, :k] & J[i, :k]| / k``."""
    common = [np.intersect1d(a, b, assume_unique=True).size for a, b in zip(I[:, :k], J[:, :k])]
    return 100.0 * float(np.mean(common)) / k
